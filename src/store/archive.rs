//! Archiving apis, tiers and subscribers: the live subscriptions that keep one from it, and the
//! parents a new subscription needs alive. On PostgreSQL an archive and a new subscription on the
//! same rows wait for each other (the archive's UPDATE against the subscription's `FOR SHARE`),
//! so neither commits past the other's check; on SQLite writers are serialized anyway.

use super::{StoreResult, Tx, now_ms, on_tx};

/// What can be archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archivable {
    Api,
    Tier,
    Subscriber,
}

impl Archivable {
    pub fn name(self) -> &'static str {
        match self {
            Archivable::Api => "api",
            Archivable::Tier => "tier",
            Archivable::Subscriber => "subscriber",
        }
    }
}

/// The live (not canceled) subscriptions that depend on a row: how many, and the first few by
/// external id.
#[derive(Debug, Clone, Default)]
pub struct LiveSubscriptions {
    pub count: i64,
    pub first: Vec<String>,
}

const LIVE: &str = " FROM subscriptions s \
     JOIN tier_versions v ON v.id = s.tier_version_id \
     JOIN tiers t ON t.id = v.tier_id \
     WHERE s.status <> 'canceled' AND ";

impl Tx {
    /// Archives a row (keeping the time it was first archived) or restores it.
    pub async fn set_archived(
        &mut self,
        kind: Archivable,
        id: &str,
        archived: bool,
    ) -> StoreResult<()> {
        // With `$2`, the time: an archive's, and the `updated_at` of the tables that have one.
        let (sql, timed) = match (kind, archived) {
            (Archivable::Api, true) => (
                "UPDATE apis SET archived_at = COALESCE(archived_at, $2), updated_at = $2 WHERE id = $1",
                true,
            ),
            (Archivable::Api, false) => (
                "UPDATE apis SET archived_at = NULL, updated_at = $2 WHERE id = $1",
                true,
            ),
            (Archivable::Tier, true) => (
                "UPDATE tiers SET archived_at = COALESCE(archived_at, $2) WHERE id = $1",
                true,
            ),
            (Archivable::Tier, false) => {
                ("UPDATE tiers SET archived_at = NULL WHERE id = $1", false)
            }
            (Archivable::Subscriber, true) => (
                "UPDATE subscribers SET archived_at = COALESCE(archived_at, $2), updated_at = $2 \
                 WHERE id = $1",
                true,
            ),
            (Archivable::Subscriber, false) => (
                "UPDATE subscribers SET archived_at = NULL, updated_at = $2 WHERE id = $1",
                true,
            ),
        };
        on_tx!(self, |conn| {
            let query = sqlx::query(sql).bind(id);
            let query = if timed { query.bind(now_ms()) } else { query };
            query.execute(conn).await?.rows_affected()
        });
        Ok(())
    }

    /// The live subscriptions on an api's tiers, on a tier (any of its versions), or of a
    /// subscriber.
    pub async fn live_subscriptions_on(
        &mut self,
        kind: Archivable,
        id: &str,
    ) -> StoreResult<LiveSubscriptions> {
        let (count_sql, first_sql) = match kind {
            Archivable::Api => (
                const_format::concatcp!("SELECT COUNT(*)", LIVE, "t.api_id = $1"),
                const_format::concatcp!(
                    "SELECT s.external_id",
                    LIVE,
                    "t.api_id = $1 ORDER BY s.external_id LIMIT 5"
                ),
            ),
            Archivable::Tier => (
                const_format::concatcp!("SELECT COUNT(*)", LIVE, "t.id = $1"),
                const_format::concatcp!(
                    "SELECT s.external_id",
                    LIVE,
                    "t.id = $1 ORDER BY s.external_id LIMIT 5"
                ),
            ),
            Archivable::Subscriber => (
                const_format::concatcp!("SELECT COUNT(*)", LIVE, "s.subscriber_id = $1"),
                const_format::concatcp!(
                    "SELECT s.external_id",
                    LIVE,
                    "s.subscriber_id = $1 ORDER BY s.external_id LIMIT 5"
                ),
            ),
        };
        let count: i64 = on_tx!(self, |conn| sqlx::query_scalar(count_sql)
            .bind(id)
            .fetch_one(conn)
            .await?);
        if count == 0 {
            return Ok(LiveSubscriptions::default());
        }
        let first: Vec<String> = on_tx!(self, |conn| sqlx::query_scalar(first_sql)
            .bind(id)
            .fetch_all(conn)
            .await?);
        Ok(LiveSubscriptions { count, first })
    }

    /// Which of a subscription's parents (its tier's api, the tier, the subscriber) is archived,
    /// read under a share lock on PostgreSQL until this unit of work ends.
    pub async fn archived_parent(
        &mut self,
        tier_id: &str,
        subscriber_id: &str,
    ) -> StoreResult<Option<Archivable>> {
        const SELECT: &str = "SELECT a.archived_at, t.archived_at, b.archived_at \
             FROM tiers t JOIN apis a ON a.id = t.api_id, subscribers b \
             WHERE t.id = $1 AND b.id = $2";
        type Row = (Option<i64>, Option<i64>, Option<i64>);
        let row: Option<Row> = match self {
            Tx::Sqlite(tx) => {
                sqlx::query_as(SELECT)
                    .bind(tier_id)
                    .bind(subscriber_id)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            Tx::Postgres(tx) => {
                sqlx::query_as(const_format::concatcp!(SELECT, " FOR SHARE"))
                    .bind(tier_id)
                    .bind(subscriber_id)
                    .fetch_optional(&mut **tx)
                    .await?
            }
        };
        Ok(row.and_then(|(api, tier, subscriber)| {
            [
                (api, Archivable::Api),
                (tier, Archivable::Tier),
                (subscriber, Archivable::Subscriber),
            ]
            .into_iter()
            .find_map(|(at, kind)| at.map(|_| kind))
        }))
    }
}
