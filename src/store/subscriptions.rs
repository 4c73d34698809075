//! Subscriptions and the gateway consumer keys that identify their calls.

use super::{Page, PageRequest, StoreResult, Tx, now_ms, on_tx, taking};
use crate::domain::subscription::StoredKey;
use crate::domain::subscription::SubscriptionStatus;

/// A stored subscription, with the keys it names its subscriber and tier by.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub external_id: String,
    pub subscriber_id: String,
    pub subscriber: String,
    pub tier_version_id: String,
    pub tier: String,
    pub tier_version: i64,
    pub status: SubscriptionStatus,
    /// The live consumer keys' hashes.
    pub consumer_keys: Vec<String>,
    /// Their first characters, for answers (the keys themselves are not kept).
    pub consumer_key_prefixes: Vec<String>,
    pub started_at: i64,
    pub canceled_at: Option<i64>,
    /// A cancellation asked for at the end of the current period.
    pub cancel_at_period_end: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Also read from a JSON array of its fields in order (see [`super::sqlite_json_rows`]).
#[derive(sqlx::FromRow, serde::Deserialize)]
struct SubscriptionRow {
    id: String,
    external_id: String,
    subscriber_id: String,
    subscriber: String,
    tier_version_id: String,
    tier: String,
    tier_version: i64,
    status: String,
    started_at: i64,
    canceled_at: Option<i64>,
    cancel_at_period_end: bool,
    created_at: i64,
    updated_at: i64,
}

const FROM: &str = " FROM subscriptions s \
     JOIN subscribers b ON b.id = s.subscriber_id \
     JOIN tier_versions v ON v.id = s.tier_version_id \
     JOIN tiers t ON t.id = v.tier_id";

const SELECT: &str = const_format::concatcp!(
    "SELECT s.id, s.external_id, s.subscriber_id, b.external_id AS subscriber, \
     s.tier_version_id, t.slug AS tier, v.version AS tier_version, s.status, s.started_at, \
     s.canceled_at, s.cancel_at_period_end <> 0 AS cancel_at_period_end, s.created_at, s.updated_at",
    FROM
);

/// [`SubscriptionRow`]'s fields as one SQLite JSON array.
const JSON_ROW: &str = "json_array(s.id, s.external_id, s.subscriber_id, b.external_id, \
     s.tier_version_id, t.slug, v.version, s.status, s.started_at, s.canceled_at, \
     json(CASE WHEN s.cancel_at_period_end <> 0 THEN 'true' ELSE 'false' END), s.created_at, \
     s.updated_at)";

impl Tx {
    /// Finds a subscription by its id or its external id.
    pub async fn find_subscription(
        &mut self,
        id_or_key: &str,
    ) -> StoreResult<Option<Subscription>> {
        let sql = const_format::concatcp!(
            SELECT,
            " WHERE s.id = $1 OR s.external_id = $1 ORDER BY s.id = $1 DESC LIMIT 1"
        );
        let row: Option<SubscriptionRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id_or_key)
            .fetch_optional(conn)
            .await?);
        match row {
            Some(row) => Ok(Some(self.with_keys(row).await?)),
            None => Ok(None),
        }
    }

    pub async fn list_subscriptions(
        &mut self,
        page: &PageRequest,
    ) -> StoreResult<Page<Subscription>> {
        let sql = const_format::concatcp!(SELECT, " WHERE s.id > $1 ORDER BY s.id LIMIT $2");
        let rows: Vec<SubscriptionRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(page.after())
            .bind(page.fetch_limit())
            .fetch_all(conn)
            .await?);
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(self.with_keys(row).await?);
        }
        Ok(Page::from_rows(items, page.limit))
    }

    /// Every subscription, canceled ones too, without their consumer keys and in no order: for
    /// reports over all.
    pub async fn all_subscriptions(&mut self) -> StoreResult<Vec<Subscription>> {
        let rows: Vec<SubscriptionRow> = match self {
            Tx::Sqlite(tx) => super::sqlite_json_rows(tx, JSON_ROW, FROM).await?,
            Tx::Postgres(tx) => sqlx::query_as(SELECT).fetch_all(&mut **tx).await?,
        };
        rows.into_iter()
            .map(|row| without_keys(row, Vec::new(), Vec::new()))
            .collect()
    }

    /// The tier history of every subscription: `(subscription, version id, from)`, by subscription
    /// and then oldest first.
    pub async fn all_tier_history(&mut self) -> StoreResult<Vec<(String, String, i64)>> {
        match self {
            Tx::Sqlite(tx) => {
                let row = "json_array(subscription_id, tier_version_id, from_ms)";
                let mut rows: Vec<(String, String, i64)> =
                    super::sqlite_json_rows(tx, row, " FROM subscription_tiers").await?;
                rows.sort_unstable_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
                Ok(rows)
            }
            Tx::Postgres(tx) => {
                let sql = "SELECT subscription_id, tier_version_id, from_ms FROM subscription_tiers \
                           ORDER BY subscription_id, from_ms";
                Ok(sqlx::query_as(sql).fetch_all(&mut **tx).await?)
            }
        }
    }

    async fn with_keys(&mut self, row: SubscriptionRow) -> StoreResult<Subscription> {
        let (consumer_keys, consumer_key_prefixes) = self
            .live_consumer_keys(&row.id)
            .await?
            .into_iter()
            .map(|key| (key.hash, key.prefix))
            .unzip();
        without_keys(row, consumer_keys, consumer_key_prefixes)
    }

    async fn live_consumer_keys(&mut self, subscription_id: &str) -> StoreResult<Vec<StoredKey>> {
        let sql = "SELECT consumer_key, key_prefix FROM consumer_keys \
                   WHERE subscription_id = $1 AND released_at IS NULL ORDER BY created_at, consumer_key";
        let rows: Vec<(String, String)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .fetch_all(conn)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(hash, prefix)| StoredKey::read(hash, prefix))
            .collect())
    }

    /// Consumer keys written before they were kept as hashes: `(key, subscription, created_at)`.
    pub async fn unhashed_consumer_keys(&mut self) -> StoreResult<Vec<(String, String, i64)>> {
        let sql = "SELECT consumer_key, subscription_id, created_at FROM consumer_keys \
                   WHERE key_prefix = ''";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .fetch_all(conn)
            .await?))
    }

    /// Replaces a key written before hashing by its hash and prefix.
    pub async fn hash_consumer_key(
        &mut self,
        (key, subscription_id, created_at): &(String, String, i64),
    ) -> StoreResult<()> {
        let stored = StoredKey::of(key);
        let sql = "UPDATE consumer_keys SET consumer_key = $1, key_prefix = $2 \
                   WHERE consumer_key = $3 AND subscription_id = $4 AND created_at = $5 \
                   AND key_prefix = ''";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(&stored.hash)
            .bind(&stored.prefix)
            .bind(key)
            .bind(subscription_id)
            .bind(created_at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The subscription a live consumer key (by its hash) belongs to, if any.
    pub async fn consumer_key_owner(&mut self, key_hash: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT subscription_id FROM consumer_keys \
                   WHERE consumer_key = $1 AND released_at IS NULL";
        let row: Option<(String,)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(key_hash)
            .fetch_optional(conn)
            .await?);
        Ok(row.map(|(id,)| id))
    }

    pub async fn insert_subscription(
        &mut self,
        id: &str,
        external_id: &str,
        subscriber_id: &str,
        tier_version_id: &str,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO subscriptions (id, external_id, subscriber_id, tier_version_id, \
                   status, started_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)";
        let now = now_ms();
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(external_id)
            .bind(subscriber_id)
            .bind(tier_version_id)
            .bind(SubscriptionStatus::Active.as_str())
            .bind(now)
            .execute(conn)
            .await
            .map_err(taking(external_id))?
            .rows_affected());
        self.record_tier(id, tier_version_id, now).await
    }

    /// Notes that a subscription is on `tier_version_id` from `from_ms` on.
    async fn record_tier(
        &mut self,
        subscription_id: &str,
        tier_version_id: &str,
        from_ms: i64,
    ) -> StoreResult<()> {
        // Two moves in one millisecond: the later one is the tier from then on.
        let sql = "INSERT INTO subscription_tiers (subscription_id, tier_version_id, from_ms) \
                   VALUES ($1, $2, $3) ON CONFLICT (subscription_id, from_ms) \
                   DO UPDATE SET tier_version_id = excluded.tier_version_id";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .bind(tier_version_id)
            .bind(from_ms)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The tier versions a subscription has been on, oldest first: `(version id, from)`.
    pub async fn tier_history(&mut self, subscription_id: &str) -> StoreResult<Vec<(String, i64)>> {
        let sql = "SELECT tier_version_id, from_ms FROM subscription_tiers \
                   WHERE subscription_id = $1 ORDER BY from_ms";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .fetch_all(conn)
            .await?))
    }

    /// Moves a subscription to another tier version.
    pub async fn set_subscription_tier_version(
        &mut self,
        id: &str,
        tier_version_id: &str,
    ) -> StoreResult<()> {
        let sql = "UPDATE subscriptions SET tier_version_id = $2, updated_at = $3 WHERE id = $1";
        let now = now_ms();
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(tier_version_id)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected());
        self.record_tier(id, tier_version_id, now).await
    }

    /// Makes `keys` the live consumer keys of a subscription: keys it no longer lists are released,
    /// new ones are claimed (a key another live subscription holds is a conflict naming it).
    pub async fn set_consumer_keys(
        &mut self,
        subscription_id: &str,
        keys: &[StoredKey],
    ) -> StoreResult<()> {
        let now = now_ms();
        let current = self.live_consumer_keys(subscription_id).await?;
        for gone in current.iter().filter(|key| !keys.contains(key)) {
            let gone = &gone.hash;
            let sql = "UPDATE consumer_keys SET released_at = $3 \
                       WHERE subscription_id = $1 AND consumer_key = $2 AND released_at IS NULL";
            on_tx!(self, |conn| sqlx::query(sql)
                .bind(subscription_id)
                .bind(gone)
                .bind(now)
                .execute(conn)
                .await?
                .rows_affected());
        }
        for new in keys.iter().filter(|key| !current.contains(key)) {
            let sql = "INSERT INTO consumer_keys (consumer_key, key_prefix, subscription_id, \
                       created_at) VALUES ($1, $2, $3, $4)";
            on_tx!(self, |conn| sqlx::query(sql)
                .bind(&new.hash)
                .bind(&new.prefix)
                .bind(subscription_id)
                .bind(now)
                .execute(conn)
                .await
                .map_err(taking(&new.named))?
                .rows_affected());
        }
        Ok(())
    }
}

fn without_keys(
    row: SubscriptionRow,
    consumer_keys: Vec<String>,
    consumer_key_prefixes: Vec<String>,
) -> StoreResult<Subscription> {
    let status = SubscriptionStatus::parse(&row.status).ok_or_else(|| {
        super::StoreError::Corrupt(format!("subscriptions.status: `{}`", row.status))
    })?;
    Ok(Subscription {
        id: row.id,
        external_id: row.external_id,
        subscriber_id: row.subscriber_id,
        subscriber: row.subscriber,
        tier_version_id: row.tier_version_id,
        tier: row.tier,
        tier_version: row.tier_version,
        status,
        consumer_keys,
        consumer_key_prefixes,
        started_at: row.started_at,
        canceled_at: row.canceled_at,
        cancel_at_period_end: row.cancel_at_period_end,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
