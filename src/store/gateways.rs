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
}

#[derive(sqlx::FromRow)]
struct GatewayRow {
    id: String,
    name: String,
    access: String,
    ingest: String,
    created_at: i64,
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
        })
    }
}

const COLUMNS: &str = "SELECT id, name, access, ingest, created_at FROM gateways";

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
        })
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

    /// The gateway whose key hashes to `key_hash`, if any.
    pub async fn find_gateway_by_key_hash(
        &mut self,
        key_hash: &str,
    ) -> StoreResult<Option<Gateway>> {
        let sql = const_format::concatcp!(COLUMNS, " WHERE key_hash = $1");
        let row: Option<GatewayRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(key_hash)
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
