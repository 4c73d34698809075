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

/// A subscription's usage over one billing period, from `usage_periods`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub billable_calls: i64,
    pub billable_units: Decimal,
    pub failed_calls: i64,
    pub total_calls: i64,
}

impl Tx {
    /// The rows of `usage_periods` whose period starts in `from..to`: `(subscription, period
    /// start, period end, totals)`. A period without its row is not made yet (see
    /// [`Tx::fill_period_totals`]).
    pub async fn period_totals(
        &mut self,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<(String, i64, i64, UsageTotals)>> {
        type Row = (String, i64, i64, i64, i64, i64, i64, i64);
        const COLUMNS: &str = "subscription_id, period_start, period_end, billable_calls, \
             billable_units_whole, billable_units_micros, failed_calls, total_calls";
        // Numbers, not text: written into the query as they are.
        let from_where =
            format!(" FROM usage_periods WHERE period_start >= {from} AND period_start < {to}");
        let rows: Vec<Row> = match self {
            Tx::Sqlite(tx) => {
                let row = format!("json_array({COLUMNS})");
                super::sqlite_json_rows(tx, &row, &from_where).await?
            }
            Tx::Postgres(tx) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS}{from_where}")))
                    .fetch_all(&mut **tx)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(
                |(subscription, start, end, calls, whole, micros, failed, total)| {
                    let totals = UsageTotals {
                        billable_calls: calls,
                        billable_units: Decimal::from(whole) + Decimal::new(micros, 6),
                        failed_calls: failed,
                        total_calls: total,
                    };
                    (subscription, start, end, totals)
                },
            )
            .collect())
    }

    /// Makes the `usage_periods` rows of `periods` that are missing, each the sum of its days in
    /// `usage_daily`. Called in a unit of work from [`super::Store::begin`]: it first holds the
    /// lock every writer of `usage_hourly` takes (`usage_revision`; SQLite's one write lock), so
    /// no hour written beside it can miss the row, and from its commit on the triggers keep it.
    pub async fn fill_period_totals(&mut self, periods: &[(&str, i64, i64)]) -> StoreResult<()> {
        if periods.is_empty() {
            return Ok(());
        }
        const INTO: &str = "INTO usage_periods (subscription_id, period_end, period_start, \
             billable_calls, billable_units_whole, billable_units_micros, failed_calls, total_calls)";
        match self {
            Tx::Sqlite(tx) => {
                let sql = format!(
                    "INSERT OR IGNORE {INTO} SELECT json_extract(j.value, '$[0]'), \
                     json_extract(j.value, '$[2]'), json_extract(j.value, '$[1]'), \
                     COALESCE(SUM(u.billable_calls), 0), \
                     COALESCE(SUM(u.billable_units_whole), 0) + COALESCE(SUM(u.billable_units_micros), 0) / 1000000, \
                     COALESCE(SUM(u.billable_units_micros), 0) % 1000000, \
                     COALESCE(SUM(u.failed_calls), 0), COALESCE(SUM(u.total_calls), 0) \
                     FROM json_each($1) j LEFT JOIN usage_daily u \
                     ON u.subscription_id = json_extract(j.value, '$[0]') \
                     AND u.day >= json_extract(j.value, '$[1]') AND u.day < json_extract(j.value, '$[2]') \
                     GROUP BY j.key"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(json_periods(periods)?)
                    .execute(&mut **tx)
                    .await?;
            }
            Tx::Postgres(tx) => {
                sqlx::query("SELECT value FROM usage_revision WHERE id = 1 FOR UPDATE")
                    .execute(&mut **tx)
                    .await?;
                let sql = format!(
                    "INSERT {INTO} SELECT a.s, a.t, a.f, COALESCE(SUM(u.billable_calls), 0)::int8, \
                     (COALESCE(SUM(u.billable_units_whole), 0) \
                       + div(COALESCE(SUM(u.billable_units_micros), 0), 1000000))::int8, \
                     mod(COALESCE(SUM(u.billable_units_micros), 0), 1000000)::int8, \
                     COALESCE(SUM(u.failed_calls), 0)::int8, COALESCE(SUM(u.total_calls), 0)::int8 \
                     FROM unnest($1::text[], $2::int8[], $3::int8[]) AS a(s, f, t) \
                     LEFT JOIN usage_daily u ON u.subscription_id = a.s AND u.day >= a.f AND u.day < a.t \
                     GROUP BY a.s, a.f, a.t ON CONFLICT DO NOTHING"
                );
                let (subscriptions, starts, ends) = columns(periods);
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(subscriptions)
                    .bind(starts)
                    .bind(ends)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
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
        let sql = "SELECT day, billable_calls FROM usage_days \
                   WHERE day >= $1 AND day < $2 AND billable_calls <> 0 ORDER BY day";
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

/// Periods as SQLite's `json_each` reads them: `[[subscription, from, to], …]`.
pub(super) fn json_periods(periods: &[(&str, i64, i64)]) -> StoreResult<String> {
    serde_json::to_string(periods).map_err(|e| super::StoreError::Corrupt(e.to_string()))
}

/// Periods as PostgreSQL's `unnest` reads them: one array per column.
pub(super) fn columns<'a>(periods: &[(&'a str, i64, i64)]) -> (Vec<&'a str>, Vec<i64>, Vec<i64>) {
    let mut columns = (
        Vec::with_capacity(periods.len()),
        Vec::with_capacity(periods.len()),
        Vec::with_capacity(periods.len()),
    );
    for &(subscription, from, to) in periods {
        columns.0.push(subscription);
        columns.1.push(from);
        columns.2.push(to);
    }
    columns
}
