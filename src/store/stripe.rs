//! The Stripe mirror: which Stripe object stands for which row, and the outbox of Stripe writes.

use super::{StoreResult, Tx, now_ms, on_tx};

/// One Stripe write tollbooth owes, keyed by its Idempotency-Key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StripeIntent {
    pub seq: i64,
    pub idempotency_key: String,
    pub intent: String,
    pub subject_id: String,
    pub local_id: String,
    /// `''` is the platform account.
    pub account: String,
    pub state: String,
    pub stripe_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// A new intent: what to write, about which row, in which account.
#[derive(Debug, Clone)]
pub struct NewIntent<'a> {
    pub idempotency_key: &'a str,
    pub intent: &'a str,
    pub subject_id: &'a str,
    pub local_id: &'a str,
    pub account: &'a str,
}

/// The Stripe Subscription behind a subscription, as Stripe last described it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StripeSubscription {
    pub subscription_id: String,
    pub account: String,
    pub stripe_id: String,
    pub item_id: String,
    pub price_id: String,
    pub status: String,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub checkout_url: Option<String>,
}

/// How far the Stripe mirror of one catalog row has got.
#[derive(Debug, Clone, Default)]
pub struct MirrorState {
    pub pending: i64,
    pub done: i64,
    pub last_error: Option<String>,
}

const INTENT_COLUMNS: &str = "seq, idempotency_key, intent, subject_id, local_id, account, state, \
                              stripe_id, attempts, last_error";

impl Tx {
    /// Stripe writes owed: those not tried yet, and those whose last attempt failed.
    pub async fn stripe_intents_owed(&mut self) -> StoreResult<(i64, i64)> {
        let sql = "SELECT COALESCE(SUM(CASE WHEN attempts = 0 THEN 1 ELSE 0 END), 0), \
                          COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) \
                   FROM stripe_intents WHERE state = 'pending'";
        let counts: (i64, i64) = on_tx!(self, |conn| sqlx::query_as(sql).fetch_one(conn).await?);
        Ok(counts)
    }

    /// Records a Stripe write to make; the same key twice is one intent.
    pub async fn enqueue_intent(&mut self, intent: &NewIntent<'_>) -> StoreResult<()> {
        let sql = "INSERT INTO stripe_intents (idempotency_key, intent, subject_id, local_id, \
                   account, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) \
                   ON CONFLICT (idempotency_key) DO NOTHING";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(intent.idempotency_key)
            .bind(intent.intent)
            .bind(intent.subject_id)
            .bind(intent.local_id)
            .bind(intent.account)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// How many intents of `subject_id` have this key, or this key and a repeat suffix
    /// (`{key}-c2`, …). The subject's index bounds the walk to its own intents: the key's suffix
    /// form cannot use the key's index, and a walk of every intent grew with the catalog.
    pub async fn count_intents_keyed(&mut self, subject_id: &str, key: &str) -> StoreResult<i64> {
        let sql = "SELECT COUNT(*) FROM stripe_intents WHERE subject_id = $1 \
                   AND (idempotency_key = $2 OR substr(idempotency_key, 1, length($2) + 2) = $2 || '-c')";
        let (count,): (i64,) = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subject_id)
            .bind(key)
            .fetch_one(conn)
            .await?);
        Ok(count)
    }

    pub async fn find_intent(&mut self, key: &str) -> StoreResult<Option<StripeIntent>> {
        let sql = const_format::concatcp!(
            "SELECT ",
            INTENT_COLUMNS,
            " FROM stripe_intents WHERE idempotency_key = $1"
        );
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(conn)
            .await?))
    }

    /// Pending intents in run order, all of them or those of one subject, from `after_seq` on.
    pub async fn pending_intents(
        &mut self,
        subject_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<StripeIntent>> {
        let sql = const_format::concatcp!(
            "SELECT ",
            INTENT_COLUMNS,
            " FROM stripe_intents WHERE state = 'pending' AND seq > $1 \
              AND ($2 = '' OR subject_id = $2) ORDER BY seq LIMIT $3"
        );
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(after_seq)
            .bind(subject_id.unwrap_or(""))
            .bind(limit)
            .fetch_all(conn)
            .await?))
    }

    /// Marks an intent done with the Stripe object it made or changed.
    pub async fn finish_intent(&mut self, key: &str, stripe_id: &str) -> StoreResult<()> {
        let sql = "UPDATE stripe_intents SET state = 'done', stripe_id = $2, attempts = attempts + 1, \
                   last_error = NULL, updated_at = $3 WHERE idempotency_key = $1";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(key)
            .bind(stripe_id)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Leaves an intent pending with the error of its last attempt, to be run again.
    pub async fn fail_intent(&mut self, key: &str, error: &str) -> StoreResult<()> {
        let sql = "UPDATE stripe_intents SET attempts = attempts + 1, last_error = $2, updated_at = $3 \
                   WHERE idempotency_key = $1 AND state = 'pending'";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(key)
            .bind(error)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// How far the mirror of one catalog row has got.
    pub async fn mirror_state(&mut self, subject_id: &str) -> StoreResult<MirrorState> {
        let sql = "SELECT state, COUNT(*), MAX(last_error) FROM stripe_intents \
                   WHERE subject_id = $1 GROUP BY state";
        let rows: Vec<(String, i64, Option<String>)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subject_id)
            .fetch_all(conn)
            .await?);
        let mut state = MirrorState::default();
        for (name, count, error) in rows {
            if name == "pending" {
                state.pending = count;
                state.last_error = error;
            } else {
                state.done += count;
            }
        }
        Ok(state)
    }

    /// The Stripe object standing for a row in an account.
    pub async fn stripe_object(
        &mut self,
        kind: &str,
        local_id: &str,
        account: &str,
    ) -> StoreResult<Option<String>> {
        let sql = "SELECT stripe_id FROM stripe_objects \
                   WHERE kind = $1 AND local_id = $2 AND account = $3";
        let row: Option<(String,)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(kind)
            .bind(local_id)
            .bind(account)
            .fetch_optional(conn)
            .await?);
        Ok(row.map(|(id,)| id))
    }

    /// Every Stripe object of one kind standing for a row, with its account.
    pub async fn stripe_objects_of(
        &mut self,
        kind: &str,
        local_id: &str,
    ) -> StoreResult<Vec<(String, String)>> {
        let sql = "SELECT account, stripe_id FROM stripe_objects \
                   WHERE kind = $1 AND local_id = $2 ORDER BY account";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(kind)
            .bind(local_id)
            .fetch_all(conn)
            .await?))
    }

    /// Stores the Stripe object made for a row; the first one stored stays.
    pub async fn save_stripe_object(
        &mut self,
        kind: &str,
        local_id: &str,
        account: &str,
        stripe_id: &str,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO stripe_objects (kind, local_id, account, stripe_id, created_at) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, local_id, account) DO NOTHING";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(kind)
            .bind(local_id)
            .bind(account)
            .bind(stripe_id)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn stripe_subscription(
        &mut self,
        subscription_id: &str,
    ) -> StoreResult<Option<StripeSubscription>> {
        let sql = "SELECT subscription_id, account, stripe_id, item_id, price_id, status, \
                   current_period_start, current_period_end, cancel_at_period_end <> 0 AS cancel_at_period_end, \
                   checkout_url FROM stripe_subscriptions WHERE subscription_id = $1";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .fetch_optional(conn)
            .await?))
    }

    /// Stores what Stripe said about a subscription; a Checkout URL once stored is kept.
    pub async fn save_stripe_subscription(&mut self, row: &StripeSubscription) -> StoreResult<()> {
        let sql = "INSERT INTO stripe_subscriptions (subscription_id, account, stripe_id, item_id, \
                   price_id, status, current_period_start, current_period_end, cancel_at_period_end, \
                   checkout_url, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                   ON CONFLICT (subscription_id) DO UPDATE SET stripe_id = excluded.stripe_id, \
                   item_id = excluded.item_id, price_id = excluded.price_id, status = excluded.status, \
                   current_period_start = excluded.current_period_start, \
                   current_period_end = excluded.current_period_end, \
                   cancel_at_period_end = excluded.cancel_at_period_end, \
                   checkout_url = COALESCE(excluded.checkout_url, stripe_subscriptions.checkout_url), \
                   updated_at = excluded.updated_at";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(&row.subscription_id)
            .bind(&row.account)
            .bind(&row.stripe_id)
            .bind(&row.item_id)
            .bind(&row.price_id)
            .bind(&row.status)
            .bind(row.current_period_start)
            .bind(row.current_period_end)
            .bind(i32::from(row.cancel_at_period_end))
            .bind(&row.checkout_url)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The connected account of the api a tier belongs to; `''` for the platform account.
    pub async fn tier_account(&mut self, tier_id: &str) -> StoreResult<String> {
        let sql =
            "SELECT a.stripe_account FROM tiers t JOIN apis a ON a.id = t.api_id WHERE t.id = $1";
        let row: Option<(Option<String>,)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(tier_id)
            .fetch_optional(conn)
            .await?);
        Ok(row.and_then(|(account,)| account).unwrap_or_default())
    }

    /// Whether any tier prices this api: its Stripe account can no longer move.
    pub async fn api_has_tiers(&mut self, api_id: &str) -> StoreResult<bool> {
        let sql = "SELECT COUNT(*) FROM tiers WHERE api_id = $1";
        let (count,): (i64,) = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(api_id)
            .fetch_one(conn)
            .await?);
        Ok(count > 0)
    }

    /// Marks a subscription canceled now (its keys released) or at the end of its period.
    pub async fn cancel_subscription(&mut self, id: &str, now: bool) -> StoreResult<()> {
        let at = now_ms();
        if now {
            let sql = "UPDATE subscriptions SET status = 'canceled', canceled_at = $2, updated_at = $2 \
                       WHERE id = $1";
            on_tx!(self, |conn| sqlx::query(sql)
                .bind(id)
                .bind(at)
                .execute(conn)
                .await?
                .rows_affected());
            self.set_consumer_keys(id, &[]).await?;
        } else {
            let sql =
                "UPDATE subscriptions SET cancel_at_period_end = 1, updated_at = $2 WHERE id = $1";
            on_tx!(self, |conn| sqlx::query(sql)
                .bind(id)
                .bind(at)
                .execute(conn)
                .await?
                .rows_affected());
        }
        Ok(())
    }
}
