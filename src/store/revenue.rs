//! What the revenue report reads in bulk: every period's usage totals, billed lines, billing
//! cursors and invoices, each in one query.

use super::{StoreResult, StoredInvoice, Tx, on_tx};
use rust_decimal::Decimal;

/// One billed line of the ledger, with where it belongs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerLine {
    pub subscription_id: String,
    pub period_start: i64,
    pub line: String,
    pub amount_minor: i64,
    pub late: bool,
}

/// A subscription's usage over a span of whole days, from `usage_daily`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub billable_calls: i64,
    pub billable_units: Decimal,
    pub failed_calls: i64,
    pub total_calls: i64,
}

impl Tx {
    /// The usage of each `(subscription, from, to)`, summed over the days `from <= day < to`
    /// (midnights, in Unix ms), in the order asked; a span without usage is all zeros.
    pub async fn usage_totals(
        &mut self,
        spans: &[(&str, i64, i64)],
    ) -> StoreResult<Vec<UsageTotals>> {
        let mut totals = vec![UsageTotals::default(); spans.len()];
        if spans.is_empty() {
            return Ok(totals);
        }
        type Sums = (i64, i64, i64, i64, i64, i64);
        let rows: Vec<Sums> = match self {
            Tx::Sqlite(tx) => {
                let spans = serde_json::to_string(
                    &spans.iter().map(|(s, f, t)| (s, f, t)).collect::<Vec<_>>(),
                )
                .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
                let sql = "SELECT CAST(j.key AS BIGINT), CAST(SUM(u.billable_calls) AS BIGINT), \
                           CAST(SUM(u.billable_units_whole) AS BIGINT), \
                           CAST(SUM(u.billable_units_micros) AS BIGINT), CAST(SUM(u.failed_calls) AS BIGINT), \
                           CAST(SUM(u.total_calls) AS BIGINT) \
                           FROM json_each($1) j CROSS JOIN usage_daily u \
                           ON u.subscription_id = json_extract(j.value, '$[0]') \
                           AND u.day >= json_extract(j.value, '$[1]') AND u.day < json_extract(j.value, '$[2]') \
                           GROUP BY j.key";
                sqlx::query_as(sql).bind(spans).fetch_all(&mut **tx).await?
            }
            Tx::Postgres(tx) => {
                let sql = "SELECT p.i - 1, SUM(u.billable_calls)::int8, SUM(u.billable_units_whole)::int8, \
                           SUM(u.billable_units_micros)::int8, SUM(u.failed_calls)::int8, SUM(u.total_calls)::int8 \
                           FROM unnest($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS p(s, f, t, i) \
                           JOIN usage_daily u ON u.subscription_id = p.s AND u.day >= p.f AND u.day < p.t \
                           GROUP BY p.i";
                sqlx::query_as(sql)
                    .bind(spans.iter().map(|s| s.0).collect::<Vec<_>>())
                    .bind(spans.iter().map(|s| s.1).collect::<Vec<_>>())
                    .bind(spans.iter().map(|s| s.2).collect::<Vec<_>>())
                    .fetch_all(&mut **tx)
                    .await?
            }
        };
        for (index, calls, whole, micros, failed, total) in rows {
            let Some(slot) = usize::try_from(index).ok().and_then(|i| totals.get_mut(i)) else {
                continue;
            };
            *slot = UsageTotals {
                billable_calls: calls,
                billable_units: Decimal::from(whole) + Decimal::new(micros, 6),
                failed_calls: failed,
                total_calls: total,
            };
        }
        Ok(totals)
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

    /// Billable calls of all subscriptions by UTC day for the days `from <= day < to`
    /// (midnights): `(day start, calls)`, oldest first, days without calls left out.
    pub async fn usage_by_day(&mut self, from: i64, to: i64) -> StoreResult<Vec<(i64, i64)>> {
        let sql = "SELECT day, CAST(SUM(billable_calls) AS BIGINT) FROM usage_daily \
                   WHERE day >= $1 AND day < $2 GROUP BY day ORDER BY day";
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
