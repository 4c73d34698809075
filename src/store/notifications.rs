//! The outbox of notifications to the provider: each written in the transaction of the change
//! it reports, then claimed, delivered and marked by whichever process gets to it first.

use super::{Page, PageRequest, StoreResult, Tx, on_tx};

/// A notification as stored, with where its delivery stands.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredNotification {
    pub id: String,
    pub kind: String,
    /// Deliveries go in order per subscription; `""` for a notification of none.
    pub subscription_id: String,
    /// The JSON body as delivered.
    pub body: String,
    pub created_at: i64,
    /// `pending`, `delivered` or `failed` (parked after its attempts).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

/// A notification claimed for one delivery attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedNotification {
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub body: String,
    pub attempts: i64,
}

const COLUMNS: &str = "SELECT id, kind, subscription_id, body, created_at, status, attempts, \
                       next_attempt_at, last_error, delivered_at FROM notifications";

impl Tx {
    /// Adds a notification to the outbox: due now, or already `delivered_at` (sent before its
    /// change committed, in blocking mode).
    pub async fn insert_notification(
        &mut self,
        id: &str,
        kind: &str,
        subscription_id: &str,
        body: &str,
        created_at: i64,
        delivered_at: Option<i64>,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO notifications (id, kind, subscription_id, body, created_at, status, \
                   attempts, next_attempt_at, claimed_until, delivered_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $5, 0, $8)";
        let (status, attempts) = match delivered_at {
            Some(_) => ("delivered", 1_i64),
            None => ("pending", 0),
        };
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(kind)
            .bind(subscription_id)
            .bind(body)
            .bind(created_at)
            .bind(status)
            .bind(attempts)
            .bind(delivered_at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Whether any notification is due at `now` and held by no process: a read, so that a
    /// process finding nothing to send takes no write lock.
    pub async fn any_notification_due(&mut self, now: i64) -> StoreResult<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM notifications WHERE status = 'pending' \
                   AND next_attempt_at <= $1 AND claimed_until < $1)";
        let due: bool = on_tx!(self, |conn| sqlx::query_scalar(sql)
            .bind(now)
            .fetch_one(conn)
            .await?);
        Ok(due)
    }

    /// Claims up to `limit` notifications due at `now` until `until`: for each subscription
    /// only its oldest pending one, so that deliveries go in order; none another process holds.
    pub async fn claim_notifications(
        &mut self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedNotification>> {
        const DUE: &str = "SELECT n.seq FROM notifications n WHERE n.status = 'pending' \
             AND n.next_attempt_at <= $1 AND n.claimed_until < $1 \
             AND NOT EXISTS (SELECT 1 FROM notifications e WHERE e.status = 'pending' \
                 AND e.subscription_id = n.subscription_id AND e.seq < n.seq) \
             ORDER BY n.seq LIMIT $3";
        let sql = match self {
            Tx::Sqlite(_) => const_format::concatcp!(
                "UPDATE notifications SET claimed_until = $2 WHERE seq IN (",
                DUE,
                ") RETURNING seq, id, kind, body, attempts"
            ),
            // Rows another replica is claiming are passed over, not waited for.
            Tx::Postgres(_) => const_format::concatcp!(
                "UPDATE notifications SET claimed_until = $2 WHERE seq IN (",
                DUE,
                " FOR UPDATE SKIP LOCKED) RETURNING seq, id, kind, body, attempts"
            ),
        };
        let mut claimed: Vec<ClaimedNotification> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(now)
            .bind(until)
            .bind(limit)
            .fetch_all(conn)
            .await?);
        claimed.sort_by_key(|c| c.seq);
        Ok(claimed)
    }

    /// Marks a claimed notification delivered.
    pub async fn notification_delivered(&mut self, seq: i64, now: i64) -> StoreResult<()> {
        let sql = "UPDATE notifications SET status = 'delivered', attempts = attempts + 1, \
                   claimed_until = 0, delivered_at = $2, last_error = NULL WHERE seq = $1";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(seq)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records a failed attempt: tried again at `retry_at`, or parked as `failed` without one.
    pub async fn notification_not_delivered(
        &mut self,
        seq: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> StoreResult<()> {
        let sql = "UPDATE notifications SET attempts = attempts + 1, claimed_until = 0, \
                   last_error = $2, \
                   status = CASE WHEN $3 IS NULL THEN 'failed' ELSE 'pending' END, \
                   next_attempt_at = COALESCE($3, next_attempt_at) WHERE seq = $1";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(seq)
            .bind(error)
            .bind(retry_at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Deletes the notifications delivered before `before`; pending and parked ones stay.
    pub async fn purge_delivered_notifications(&mut self, before: i64) -> StoreResult<u64> {
        let sql = "DELETE FROM notifications WHERE status = 'delivered' AND delivered_at < $1";
        Ok(on_tx!(self, |conn| sqlx::query(sql)
            .bind(before)
            .execute(conn)
            .await?
            .rows_affected()))
    }

    /// The notifications, oldest first, of one status or all.
    pub async fn list_notifications(
        &mut self,
        status: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<StoredNotification>> {
        let sql = const_format::concatcp!(
            COLUMNS,
            " WHERE id > $1 AND ($2 IS NULL OR status = $2) ORDER BY id LIMIT $3"
        );
        let rows: Vec<StoredNotification> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(page.after())
            .bind(status)
            .bind(page.fetch_limit())
            .fetch_all(conn)
            .await?);
        Ok(Page::from_rows(rows, page.limit))
    }

    pub async fn find_notification(&mut self, id: &str) -> StoreResult<Option<StoredNotification>> {
        let sql = const_format::concatcp!(COLUMNS, " WHERE id = $1");
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(conn)
            .await?))
    }

    /// Makes a notification due again with a fresh count of attempts, whatever its status; `None`
    /// for an unknown id.
    pub async fn retry_notification(
        &mut self,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<StoredNotification>> {
        let sql = "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = $2, \
                   claimed_until = 0, delivered_at = NULL WHERE id = $1";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected());
        self.find_notification(id).await
    }
}
