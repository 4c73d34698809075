//! What the ingestion commit reads and writes to notify thresholds: the usage of the periods a
//! batch touched, and which thresholds each subscription has reached in a period.

use super::revenue::{columns, json_periods};
use super::{StoreResult, Tx, on_tx};
use rust_decimal::Decimal;

/// A subscription's billable usage over one billing period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodUsageSum {
    pub billable_calls: i64,
    pub billable_units: Decimal,
}

impl Tx {
    /// The billable usage of each `(subscription, period start, period end)`, as committed so
    /// far (in this transaction too), in the order asked. Periods run from midnight to midnight,
    /// so they are summed from `usage_daily`.
    pub async fn period_usage_sums(
        &mut self,
        periods: &[(&str, i64, i64)],
    ) -> StoreResult<Vec<PeriodUsageSum>> {
        if periods.is_empty() {
            return Ok(Vec::new());
        }
        type Row = (i64, i64, i64, i64);
        let rows: Vec<Row> = match self {
            Tx::Sqlite(tx) => {
                let sql = "SELECT j.key, COALESCE(SUM(u.billable_calls), 0), \
                     COALESCE(SUM(u.billable_units_whole), 0), COALESCE(SUM(u.billable_units_micros), 0) \
                     FROM json_each($1) j LEFT JOIN usage_daily u \
                     ON u.subscription_id = json_extract(j.value, '$[0]') \
                     AND u.day >= json_extract(j.value, '$[1]') AND u.day < json_extract(j.value, '$[2]') \
                     GROUP BY j.key";
                sqlx::query_as(sql)
                    .bind(json_periods(periods)?)
                    .fetch_all(&mut **tx)
                    .await?
            }
            Tx::Postgres(tx) => {
                let sql = "SELECT (a.n - 1)::int8, COALESCE(SUM(u.billable_calls), 0)::int8, \
                     COALESCE(SUM(u.billable_units_whole), 0)::int8, \
                     COALESCE(SUM(u.billable_units_micros), 0)::int8 \
                     FROM unnest($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS a(s, f, t, n) \
                     LEFT JOIN usage_daily u ON u.subscription_id = a.s AND u.day >= a.f AND u.day < a.t \
                     GROUP BY a.n";
                let (subscriptions, starts, ends) = columns(periods);
                sqlx::query_as(sql)
                    .bind(subscriptions)
                    .bind(starts)
                    .bind(ends)
                    .fetch_all(&mut **tx)
                    .await?
            }
        };
        let mut sums = vec![PeriodUsageSum::default(); periods.len()];
        for (index, calls, whole, micros) in rows {
            if let Some(sum) = usize::try_from(index).ok().and_then(|i| sums.get_mut(i)) {
                *sum = PeriodUsageSum {
                    billable_calls: calls,
                    billable_units: Decimal::from(whole) + Decimal::new(micros, 6),
                };
            }
        }
        Ok(sums)
    }

    /// Records that `subscription` reached `threshold` in the period starting `period_start`;
    /// `false` when it had already.
    pub async fn mark_threshold_reached(
        &mut self,
        subscription_id: &str,
        period_start: i64,
        threshold: &str,
        at: i64,
    ) -> StoreResult<bool> {
        let sql = "INSERT INTO threshold_crossings (subscription_id, period_start, threshold, reached_at) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let inserted = on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .bind(period_start)
            .bind(threshold)
            .bind(at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(inserted == 1)
    }
}
