//! Payment state and the Stripe events that move it; what the access decision loads.

use super::{StoreResult, Tx, from_json, now_ms, on_tx};
use crate::domain::tier::TierSpec;

/// A subscription as the access decision needs it.
#[derive(Debug, Clone)]
pub struct AccessRow {
    pub subscription_id: String,
    pub status: String,
    pub past_due_since: Option<i64>,
    pub started_at: i64,
    pub tier: TierSpec,
    /// Whether its Stripe Subscription exists.
    pub mirrored: bool,
}

/// Where a subscription's payment stands, and from which Stripe time.
#[derive(Debug, Clone)]
pub struct PaymentState<'a> {
    pub status: &'a str,
    pub past_due_since: Option<i64>,
    /// Stripe's `created` of the event this state is taken from.
    pub changed_at: i64,
}

impl Tx {
    /// Records an event id; `false` when it was already recorded (a replay).
    pub async fn record_stripe_event(
        &mut self,
        id: &str,
        type_name: &str,
        created: i64,
        payload: &str,
    ) -> StoreResult<bool> {
        let sql = "INSERT INTO stripe_events (id, type, created, outcome, payload, received_at) \
                   VALUES ($1, $2, $3, 'received', $4, $5) ON CONFLICT (id) DO NOTHING";
        let inserted = on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(type_name)
            .bind(created)
            .bind(payload)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(inserted == 1)
    }

    pub async fn set_event_outcome(&mut self, id: &str, outcome: &str) -> StoreResult<()> {
        let sql = "UPDATE stripe_events SET outcome = $2 WHERE id = $1";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(outcome)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The subscription behind a Stripe Subscription id.
    pub async fn subscription_by_stripe_id(
        &mut self,
        stripe_id: &str,
    ) -> StoreResult<Option<String>> {
        let sql = "SELECT subscription_id FROM stripe_subscriptions WHERE stripe_id = $1";
        let row: Option<(String,)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(stripe_id)
            .fetch_optional(conn)
            .await?);
        Ok(row.map(|(id,)| id))
    }

    /// The live subscriptions whose Stripe Subscription belongs to a Stripe Customer.
    pub async fn subscriptions_of_customer(&mut self, customer: &str) -> StoreResult<Vec<String>> {
        let sql = "SELECT s.id FROM subscriptions s \
                   JOIN stripe_objects o ON o.kind = 'customer' AND o.local_id = s.subscriber_id \
                   JOIN stripe_subscriptions ss ON ss.subscription_id = s.id AND ss.account = o.account \
                   WHERE o.stripe_id = $1 AND s.status <> 'canceled'";
        let rows: Vec<(String,)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(customer)
            .fetch_all(conn)
            .await?);
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Takes a payment state from a Stripe event unless a newer event already set one, or the
    /// subscription is canceled (which nothing undoes). Answers whether it applied.
    pub async fn set_payment_state(
        &mut self,
        subscription_id: &str,
        state: &PaymentState<'_>,
    ) -> StoreResult<bool> {
        // A subscription already past due keeps the start of its grace period.
        let sql = "UPDATE subscriptions SET status = $2, \
                   past_due_since = CASE WHEN $2 = 'past_due' THEN COALESCE(past_due_since, $3) ELSE $3 END, \
                   state_changed_at = $4, \
                   canceled_at = CASE WHEN $2 = 'canceled' THEN $5 ELSE canceled_at END, updated_at = $5 \
                   WHERE id = $1 AND status <> 'canceled' AND state_changed_at <= $4";
        let changed = on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .bind(state.status)
            .bind(state.past_due_since)
            .bind(state.changed_at)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        if changed == 1 && state.status == "canceled" {
            self.set_consumer_keys(subscription_id, &[]).await?;
        }
        Ok(changed == 1)
    }

    /// A failure older than the one a past-due subscription's grace period runs from, delivered
    /// late: the grace period runs from it instead. False when that changes nothing.
    pub async fn move_grace_start_back(
        &mut self,
        subscription_id: &str,
        failed_at: i64,
    ) -> StoreResult<bool> {
        let sql = "UPDATE subscriptions SET past_due_since = $2, updated_at = $3 \
                   WHERE id = $1 AND status = 'past_due' AND past_due_since > $2";
        let changed = on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .bind(failed_at)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(changed == 1)
    }

    /// Forgets a Checkout link once the subscriber has added a payment method.
    pub async fn clear_checkout_url(&mut self, subscription_id: &str) -> StoreResult<()> {
        let sql = "UPDATE stripe_subscriptions SET checkout_url = NULL WHERE subscription_id = $1";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Every subscription that is not canceled, with its tier version.
    pub async fn access_rows(&mut self) -> StoreResult<Vec<AccessRow>> {
        self.access_rows_where("s.status <> 'canceled'", None).await
    }

    /// One subscription's access row, canceled or not.
    pub async fn access_row_of(&mut self, subscription_id: &str) -> StoreResult<Option<AccessRow>> {
        Ok(self
            .access_rows_where("s.id = $1", Some(subscription_id))
            .await?
            .pop())
    }

    async fn access_rows_where(
        &mut self,
        condition: &'static str,
        subscription_id: Option<&str>,
    ) -> StoreResult<Vec<AccessRow>> {
        let sql = format!(
            "SELECT s.id, s.status, s.past_due_since, s.started_at, v.spec, \
             EXISTS (SELECT 1 FROM stripe_subscriptions m WHERE m.subscription_id = s.id) \
             FROM subscriptions s \
             JOIN tier_versions v ON v.id = s.tier_version_id WHERE {condition}"
        );
        type Row = (String, String, Option<i64>, i64, String, bool);
        let rows: Vec<Row> = on_tx!(self, |conn| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            if let Some(id) = subscription_id {
                query = query.bind(id);
            }
            query.fetch_all(conn).await?
        });
        rows.into_iter()
            .map(
                |(subscription_id, status, past_due_since, started_at, spec, mirrored)| {
                    Ok(AccessRow {
                        subscription_id,
                        status,
                        past_due_since,
                        started_at,
                        tier: from_json("tier_versions.spec", &spec)?,
                        mirrored,
                    })
                },
            )
            .collect()
    }

    /// The subscriptions whose usage changed after aggregation-table revision `after`, and the
    /// newest revision seen.
    pub async fn usage_changed_since(&mut self, after: i64) -> StoreResult<(Vec<String>, i64)> {
        // Declared meters' rows take revisions from the same counter.
        let sql = "SELECT subscription_id, MAX(revision) FROM (\
                   SELECT subscription_id, revision FROM usage_hourly WHERE revision > $1 \
                   UNION ALL \
                   SELECT subscription_id, revision FROM usage_meters_hourly WHERE revision > $1\
                   ) AS changed GROUP BY subscription_id";
        let rows: Vec<(String, i64)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(after)
            .fetch_all(conn)
            .await?);
        let newest = rows.iter().map(|(_, r)| *r).max().unwrap_or(after);
        Ok((rows.into_iter().map(|(id, _)| id).collect(), newest))
    }

    /// Billable calls of a subscription in `[from, to)`.
    pub async fn billable_calls_between(
        &mut self,
        subscription_id: &str,
        from: i64,
        to: i64,
    ) -> StoreResult<i64> {
        let sql = "SELECT CAST(COALESCE(SUM(billable_calls), 0) AS BIGINT) FROM usage_hourly \
                   WHERE subscription_id = $1 AND hour >= $2 AND hour < $3";
        let (sum,): (i64,) = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .bind(from)
            .bind(to)
            .fetch_one(conn)
            .await?);
        Ok(sum)
    }
}
