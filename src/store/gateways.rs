//! Gateways: the callers that post call records. Only a key's SHA-256 is stored.

use super::{Page, PageRequest, StoreResult, Tx, from_json, now_ms, on_tx};
use crate::domain::gateway::GatewayAccess;
use crate::domain::ingest::GatewayIngest;

/// A stored gateway (its key is never stored, only its hash).
#[derive(Debug, Clone)]
pub struct Gateway {
    pub id: String,
    pub name: String,
    pub access: GatewayAccess,
    pub ingest: GatewayIngest,
    pub created_at: i64,
    /// When the key was last replaced by a rotation.
    pub key_rotated_at: Option<i64>,
    /// Until when the key before the last rotation is still taken.
    pub previous_key_expires_at: Option<i64>,
    /// When the gateway was revoked: none of its keys is taken since.
    pub revoked_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct GatewayRow {
    id: String,
    name: String,
    access: String,
    ingest: String,
    created_at: i64,
    key_rotated_at: Option<i64>,
    previous_key_expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<GatewayRow> for Gateway {
    type Error = super::StoreError;

    fn try_from(row: GatewayRow) -> StoreResult<Self> {
        Ok(Self {
            access: from_json("gateways.access", &row.access)?,
            ingest: from_json("gateways.ingest", &row.ingest)?,
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            key_rotated_at: row.key_rotated_at,
            previous_key_expires_at: row.previous_key_expires_at,
            revoked_at: row.revoked_at,
        })
    }
}

const COLUMNS: &str = "SELECT id, name, access, ingest, created_at, key_rotated_at, \
                       previous_key_expires_at, revoked_at FROM gateways";

impl Tx {
    pub async fn insert_gateway(
        &mut self,
        id: &str,
        name: &str,
        key_hash: &str,
        access: &GatewayAccess,
        ingest: &GatewayIngest,
    ) -> StoreResult<Gateway> {
        let sql = "INSERT INTO gateways (id, name, key_hash, access, ingest, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        let created_at = now_ms();
        let json = super::to_json(access)?;
        let ingest_json = super::to_json(ingest)?;
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(name)
            .bind(key_hash)
            .bind(&json)
            .bind(&ingest_json)
            .bind(created_at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(Gateway {
            id: id.to_owned(),
            name: name.to_owned(),
            access: access.clone(),
            ingest: ingest.clone(),
            created_at,
            key_rotated_at: None,
            previous_key_expires_at: None,
            revoked_at: None,
        })
    }

    /// Gives a gateway that is not revoked a new key. The key it had stays valid until
    /// `previous_expires_at`, or goes at once when that is `None`. Answers whether it was done.
    pub async fn rotate_gateway_key(
        &mut self,
        id: &str,
        key_hash: &str,
        previous_expires_at: Option<i64>,
    ) -> StoreResult<bool> {
        let now = now_ms();
        let rows = match previous_expires_at {
            Some(expires_at) => {
                let sql = "UPDATE gateways SET previous_key_hash = key_hash, \
                           previous_key_expires_at = $3, key_hash = $2, key_rotated_at = $4 \
                           WHERE id = $1 AND revoked_at IS NULL";
                on_tx!(self, |conn| sqlx::query(sql)
                    .bind(id)
                    .bind(key_hash)
                    .bind(expires_at)
                    .bind(now)
                    .execute(conn)
                    .await?
                    .rows_affected())
            }
            None => {
                let sql = "UPDATE gateways SET previous_key_hash = NULL, \
                           previous_key_expires_at = NULL, key_hash = $2, key_rotated_at = $3 \
                           WHERE id = $1 AND revoked_at IS NULL";
                on_tx!(self, |conn| sqlx::query(sql)
                    .bind(id)
                    .bind(key_hash)
                    .bind(now)
                    .execute(conn)
                    .await?
                    .rows_affected())
            }
        };
        Ok(rows == 1)
    }

    /// Revokes a gateway: neither its key nor a previous one is taken any more. Revoking a revoked
    /// gateway changes nothing.
    pub async fn revoke_gateway(&mut self, id: &str) -> StoreResult<()> {
        let sql = "UPDATE gateways SET revoked_at = $2, previous_key_hash = NULL, \
                   previous_key_expires_at = NULL WHERE id = $1 AND revoked_at IS NULL";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn list_gateways(&mut self, page: &PageRequest) -> StoreResult<Page<Gateway>> {
        let sql = const_format::concatcp!(COLUMNS, " WHERE id > $1 ORDER BY id LIMIT $2");
        let rows: Vec<GatewayRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(page.after())
            .bind(page.fetch_limit())
            .fetch_all(conn)
            .await?);
        let rows = rows
            .into_iter()
            .map(Gateway::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(rows, page.limit))
    }

    /// The gateway with this id, if any.
    pub async fn find_gateway(&mut self, id: &str) -> StoreResult<Option<Gateway>> {
        let sql = const_format::concatcp!(COLUMNS, " WHERE id = $1");
        let row: Option<GatewayRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(conn)
            .await?);
        row.map(Gateway::try_from).transpose()
    }
}

impl Tx {
    /// Writes one replica's totals for one gateway, whole.
    pub async fn save_ingest_stats(
        &mut self,
        gateway_id: &str,
        replica: &str,
        stats: &crate::metering::stats::GatewayStats,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO gateway_ingest_stats (gateway_id, replica, stats) VALUES ($1, $2, $3) \
                   ON CONFLICT (gateway_id, replica) DO UPDATE SET stats = excluded.stats";
        let json = super::to_json(stats)?;
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(gateway_id)
            .bind(replica)
            .bind(&json)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Every replica's totals for one gateway, but `except`'s.
    pub async fn ingest_stats(
        &mut self,
        gateway_id: &str,
        except: &str,
    ) -> StoreResult<Vec<crate::metering::stats::GatewayStats>> {
        let sql = "SELECT stats FROM gateway_ingest_stats WHERE gateway_id = $1 AND replica <> $2";
        let rows: Vec<String> = on_tx!(self, |conn| sqlx::query_scalar(sql)
            .bind(gateway_id)
            .bind(except)
            .fetch_all(conn)
            .await?);
        rows.iter()
            .map(|json| from_json("gateway_ingest_stats.stats", json))
            .collect()
    }
}
