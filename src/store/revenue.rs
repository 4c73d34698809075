//! What the revenue report reads in bulk: every subscription's usage, billed lines, billing
//! cursor and invoices over a span, each in one query.

use super::{StoreResult, StoredInvoice, Tx, UsageRow, on_tx};

/// One billed line of the ledger, with where it belongs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerLine {
    pub subscription_id: String,
    pub period_start: i64,
    pub line: String,
    pub amount_minor: i64,
    pub late: bool,
}

impl Tx {
    /// Every subscription's hourly rows with `from <= hour < to`, by subscription, oldest first.
    pub async fn usage_hours_between(&mut self, from: i64, to: i64) -> StoreResult<Vec<UsageRow>> {
        let sql = "SELECT subscription_id, hour, billable_calls, billable_units_whole, \
                   billable_units_micros, failed_calls, total_calls, revision FROM usage_hourly \
                   WHERE hour >= $1 AND hour < $2 ORDER BY subscription_id, hour";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(from)
            .bind(to)
            .fetch_all(conn)
            .await?))
    }

    /// The ledger's lines of periods starting in `from..to`.
    pub async fn billed_lines_between(
        &mut self,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<LedgerLine>> {
        let sql = "SELECT subscription_id, period_start, line, amount_minor, late <> 0 AS late \
                   FROM billed_lines WHERE period_start >= $1 AND period_start < $2 \
                   ORDER BY subscription_id, period_start, line";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(from)
            .bind(to)
            .fetch_all(conn)
            .await?))
    }

    /// How far each subscription's periods are closed: `(subscription, closed until)`.
    pub async fn all_closed_until(&mut self) -> StoreResult<Vec<(String, i64)>> {
        let sql = "SELECT subscription_id, closed_until FROM billing_cursors";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .fetch_all(conn)
            .await?))
    }

    /// The invoices whose period starts in `from..to`.
    pub async fn invoices_between(
        &mut self,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<StoredInvoice>> {
        let sql = "SELECT stripe_id, subscription_id, status, currency, total, amount_due, \
                   amount_paid, period_start, period_end, number, hosted_invoice_url, \
                   payment_failed_at, event_created FROM invoices \
                   WHERE period_start >= $1 AND period_start < $2 ORDER BY stripe_id";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(from)
            .bind(to)
            .fetch_all(conn)
            .await?))
    }

    /// Billable calls of all subscriptions by UTC day with `from <= hour < to`:
    /// `(day start, calls)`, oldest first, days without calls left out.
    pub async fn usage_by_day(&mut self, from: i64, to: i64) -> StoreResult<Vec<(i64, i64)>> {
        let sql = "SELECT (hour / 86400000) * 86400000 AS day, \
                   CAST(SUM(billable_calls) AS BIGINT) FROM usage_hourly \
                   WHERE hour >= $1 AND hour < $2 GROUP BY (hour / 86400000) ORDER BY day";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(from)
            .bind(to)
            .fetch_all(conn)
            .await?))
    }

    /// Where the newest invoice of each subscription stands: `(subscription, state)`, the state
    /// as `GET /v1/subscriptions/{id}/invoices` names it.
    pub async fn latest_invoice_states(&mut self) -> StoreResult<Vec<(String, String)>> {
        let sql = "SELECT i.subscription_id, CASE \
                   WHEN i.status = 'open' AND i.payment_failed_at IS NOT NULL THEN 'failed' \
                   ELSE i.status END FROM invoices i \
                   WHERE NOT EXISTS (SELECT 1 FROM invoices n WHERE n.subscription_id = i.subscription_id \
                   AND (COALESCE(n.period_start, 0), n.stripe_id) > (COALESCE(i.period_start, 0), i.stripe_id))";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .fetch_all(conn)
            .await?))
    }
}
