//! Gateways: the callers that post call records. Only a key's SHA-256 is stored.

use super::{Page, PageRequest, StoreResult, Tx, now_ms, on_tx};

/// A stored gateway (its key is never stored, only its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Gateway {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

impl Tx {
    pub async fn insert_gateway(
        &mut self,
        id: &str,
        name: &str,
        key_hash: &str,
    ) -> StoreResult<Gateway> {
        let sql = "INSERT INTO gateways (id, name, key_hash, created_at) VALUES ($1, $2, $3, $4)";
        let created_at = now_ms();
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(name)
            .bind(key_hash)
            .bind(created_at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(Gateway {
            id: id.to_owned(),
            name: name.to_owned(),
            created_at,
        })
    }

    pub async fn list_gateways(&mut self, page: &PageRequest) -> StoreResult<Page<Gateway>> {
        let sql = "SELECT id, name, created_at FROM gateways WHERE id > $1 ORDER BY id LIMIT $2";
        let rows: Vec<Gateway> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(page.after())
            .bind(page.fetch_limit())
            .fetch_all(conn)
            .await?);
        Ok(Page::from_rows(rows, page.limit))
    }

    /// The gateway with this id, if any.
    pub async fn find_gateway(&mut self, id: &str) -> StoreResult<Option<Gateway>> {
        let sql = "SELECT id, name, created_at FROM gateways WHERE id = $1";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(conn)
            .await?))
    }

    /// The gateway whose key hashes to `key_hash`, if any.
    pub async fn find_gateway_by_key_hash(
        &mut self,
        key_hash: &str,
    ) -> StoreResult<Option<Gateway>> {
        let sql = "SELECT id, name, created_at FROM gateways WHERE key_hash = $1";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(key_hash)
            .fetch_optional(conn)
            .await?))
    }
}
