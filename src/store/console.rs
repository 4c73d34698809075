//! The console's sessions and the portal's links.

use super::{StoreResult, Tx, now_ms, on_tx};

/// A signed-in console session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsoleSession {
    pub csrf_token: String,
    pub expires_at: i64,
}

/// A subscriber portal link as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PortalLink {
    pub id: String,
    pub subscription_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

const LINK_SELECT: &str =
    "SELECT id, subscription_id, created_at, expires_at, revoked_at FROM portal_links";

impl Tx {
    /// Keeps a new session (by its cookie's hash), and forgets sessions that expired.
    pub async fn insert_console_session(
        &mut self,
        id_hash: &str,
        csrf_token: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        let now = now_ms();
        on_tx!(self, |conn| sqlx::query(
            "DELETE FROM console_sessions WHERE expires_at <= $1"
        )
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected());
        let sql = "INSERT INTO console_sessions (id_hash, csrf_token, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4)";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id_hash)
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The session whose cookie hashes to `id_hash`, if it has not expired.
    pub async fn console_session(&mut self, id_hash: &str) -> StoreResult<Option<ConsoleSession>> {
        let sql = "SELECT csrf_token, expires_at FROM console_sessions \
                   WHERE id_hash = $1 AND expires_at > $2";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id_hash)
            .bind(now_ms())
            .fetch_optional(conn)
            .await?))
    }

    pub async fn delete_console_session(&mut self, id_hash: &str) -> StoreResult<()> {
        on_tx!(self, |conn| sqlx::query(
            "DELETE FROM console_sessions WHERE id_hash = $1"
        )
        .bind(id_hash)
        .execute(conn)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn insert_portal_link(&mut self, link: &PortalLink) -> StoreResult<()> {
        let sql = "INSERT INTO portal_links (id, subscription_id, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4)";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(&link.id)
            .bind(&link.subscription_id)
            .bind(link.created_at)
            .bind(link.expires_at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn portal_link(&mut self, id: &str) -> StoreResult<Option<PortalLink>> {
        let sql = const_format::concatcp!(LINK_SELECT, " WHERE id = $1");
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(conn)
            .await?))
    }

    /// A subscription's links, newest first.
    pub async fn portal_links_of(&mut self, subscription_id: &str) -> StoreResult<Vec<PortalLink>> {
        let sql = const_format::concatcp!(
            LINK_SELECT,
            " WHERE subscription_id = $1 ORDER BY created_at DESC, id DESC"
        );
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .fetch_all(conn)
            .await?))
    }

    /// Revokes a link of the subscription; answers whether it was there (revoked before or now).
    pub async fn revoke_portal_link(
        &mut self,
        subscription_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let sql = "UPDATE portal_links SET revoked_at = COALESCE(revoked_at, $3) \
                   WHERE id = $1 AND subscription_id = $2";
        Ok(on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(subscription_id)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected())
            > 0)
    }

    /// A setting, made with `make` by whoever reads it first; every replica gets the same value.
    pub async fn setting_or_insert(&mut self, name: &str, make: String) -> StoreResult<String> {
        let sql =
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(name)
            .bind(&make)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(self.setting(name).await?.unwrap_or(make))
    }
}
