//! Call records and the hourly aggregation table: the ingestion hot path's SQL, written per
//! database (multi-row VALUES with plain `?` on SQLite, UNNEST arrays on PostgreSQL).

use super::{StoreError, StoreResult, Tx, on_tx};
use crate::domain::units::SplitUnits;
use rust_decimal::Decimal;
use std::collections::HashSet;

/// A call record as stored: the gateway's id, its dedupe key, and what billing needs of it.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub record_key: Vec<u8>,
    pub record_id: String,
    pub subscription_id: String,
    pub occurred_at: i64,
    pub status: u16,
    pub billable: bool,
    pub units_micros: i64,
    pub method: Option<String>,
    pub path: Option<String>,
    pub latency_ms: Option<i64>,
    /// False when the gateway answered the call itself: not counted as the api's failure (not a
    /// stored column: it only shapes the aggregate).
    pub upstream_answered: bool,
    /// What the call gives the api's declared meters.
    pub readings: super::meters::Readings,
}

/// What one subscription-hour gains from a batch of new records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageIncrement {
    pub subscription_id: String,
    pub hour: i64,
    pub billable_calls: i64,
    /// A batch's sum, which may pass `i64`: split into whole units and millionths when stored.
    pub billable_units_micros: i128,
    pub failed_calls: i64,
    pub total_calls: i64,
}

/// One row of the aggregation table, with the revision of its latest change.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub subscription_id: String,
    pub hour: i64,
    pub billable_calls: i64,
    /// Whole billable units.
    pub billable_units_whole: i64,
    /// Millionths of a unit past the whole ones, `0..1_000_000`.
    pub billable_units_micros: i64,
    pub failed_calls: i64,
    pub total_calls: i64,
    pub revision: i64,
}

impl UsageRow {
    /// The hour's billable units, exactly.
    pub fn billable_units(&self) -> Decimal {
        SplitUnits {
            whole: self.billable_units_whole,
            micros: self.billable_units_micros,
        }
        .units()
    }
}

/// Rows per INSERT statement on SQLite: 11 variables each stays far under SQLite's limit.
const SQLITE_ROWS_PER_STATEMENT: usize = 500;

const RECORD_COLUMNS: &str = "record_key, record_id, subscription_id, occurred_at, status, \
     billable, units_micros, method, path, latency_ms, received_at";

impl Tx {
    /// Inserts the records whose key is not stored yet; answers the keys that were new.
    pub async fn insert_call_records(
        &mut self,
        records: &[&StoredRecord],
        received_at: i64,
    ) -> StoreResult<HashSet<Vec<u8>>> {
        let mut new_keys = HashSet::with_capacity(records.len());
        match self {
            Tx::Sqlite(tx) => {
                for chunk in records.chunks(SQLITE_ROWS_PER_STATEMENT) {
                    let sql = sqlite_values_sql(
                        &format!("INSERT INTO call_records ({RECORD_COLUMNS}) VALUES "),
                        11,
                        chunk.len(),
                        " ON CONFLICT (record_key) DO NOTHING RETURNING record_key",
                    );
                    let mut query = sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql));
                    for r in chunk {
                        query = query
                            .bind(&r.record_key)
                            .bind(&r.record_id)
                            .bind(&r.subscription_id)
                            .bind(r.occurred_at)
                            .bind(i64::from(r.status))
                            .bind(r.billable)
                            .bind(r.units_micros)
                            .bind(&r.method)
                            .bind(&r.path)
                            .bind(r.latency_ms)
                            .bind(received_at);
                    }
                    new_keys.extend(query.fetch_all(&mut **tx).await?);
                }
            }
            Tx::Postgres(tx) => {
                let sql = "INSERT INTO call_records (record_key, record_id, subscription_id, \
                     occurred_at, status, billable, units_micros, method, path, latency_ms, received_at) \
                     SELECT k, i, s, o, st, b, u, m, p, l, $11 FROM UNNEST($1::bytea[], $2::text[], \
                     $3::text[], $4::int8[], $5::int4[], $6::int4[], $7::int8[], $8::text[], $9::text[], \
                     $10::int8[]) AS t(k, i, s, o, st, b, u, m, p, l) \
                     ON CONFLICT (record_key) DO NOTHING RETURNING record_key";
                let keys: Vec<&[u8]> = records.iter().map(|r| r.record_key.as_slice()).collect();
                let ids: Vec<&str> = records.iter().map(|r| r.record_id.as_str()).collect();
                let subs: Vec<&str> = records.iter().map(|r| r.subscription_id.as_str()).collect();
                let occurred: Vec<i64> = records.iter().map(|r| r.occurred_at).collect();
                let statuses: Vec<i32> = records.iter().map(|r| i32::from(r.status)).collect();
                let billable: Vec<i32> = records.iter().map(|r| i32::from(r.billable)).collect();
                let units: Vec<i64> = records.iter().map(|r| r.units_micros).collect();
                let methods: Vec<Option<&str>> =
                    records.iter().map(|r| r.method.as_deref()).collect();
                let paths: Vec<Option<&str>> = records.iter().map(|r| r.path.as_deref()).collect();
                let latencies: Vec<Option<i64>> = records.iter().map(|r| r.latency_ms).collect();
                let rows: Vec<Vec<u8>> = sqlx::query_scalar(sql)
                    .bind(keys)
                    .bind(ids)
                    .bind(subs)
                    .bind(occurred)
                    .bind(statuses)
                    .bind(billable)
                    .bind(units)
                    .bind(methods)
                    .bind(paths)
                    .bind(latencies)
                    .bind(received_at)
                    .fetch_all(&mut **tx)
                    .await?;
                new_keys.extend(rows);
            }
        }
        Ok(new_keys)
    }

    /// Adds increments to the aggregation table, each changed row taking the next revision.
    pub async fn add_usage(&mut self, increments: &[UsageIncrement]) -> StoreResult<()> {
        if increments.is_empty() {
            return Ok(());
        }
        let count = i64::try_from(increments.len()).unwrap_or(i64::MAX);
        // Taking the revisions locks the counter row until commit: revisions commit in order.
        let sql = "UPDATE usage_revision SET value = value + $1 WHERE id = 1 RETURNING value";
        let last: i64 = on_tx!(self, |conn| sqlx::query_scalar(sql)
            .bind(count)
            .fetch_one(conn)
            .await?);
        let first = last - count + 1;
        let units = increments
            .iter()
            .map(|i| {
                SplitUnits::from_micros(i.billable_units_micros).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "a batch's units for subscription {} do not fit",
                        i.subscription_id
                    ))
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // Whole units and millionths are kept apart so that no hour's sum can overflow.
        const UPSERT: &str = " ON CONFLICT (subscription_id, hour) DO UPDATE SET \
             billable_calls = usage_hourly.billable_calls + excluded.billable_calls, \
             billable_units_whole = usage_hourly.billable_units_whole + excluded.billable_units_whole \
                 + (usage_hourly.billable_units_micros + excluded.billable_units_micros) / 1000000, \
             billable_units_micros = (usage_hourly.billable_units_micros + excluded.billable_units_micros) % 1000000, \
             failed_calls = usage_hourly.failed_calls + excluded.failed_calls, \
             total_calls = usage_hourly.total_calls + excluded.total_calls, \
             revision = excluded.revision";
        const COLUMNS: &str = "INSERT INTO usage_hourly (subscription_id, hour, billable_calls, \
             billable_units_whole, billable_units_micros, failed_calls, total_calls, revision)";
        match self {
            Tx::Sqlite(tx) => {
                let mut revision = first;
                let rows: Vec<_> = increments.iter().zip(&units).collect();
                for chunk in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
                    let sql =
                        sqlite_values_sql(&format!("{COLUMNS} VALUES "), 8, chunk.len(), UPSERT);
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (inc, units) in chunk {
                        query = query
                            .bind(&inc.subscription_id)
                            .bind(inc.hour)
                            .bind(inc.billable_calls)
                            .bind(units.whole)
                            .bind(units.micros)
                            .bind(inc.failed_calls)
                            .bind(inc.total_calls)
                            .bind(revision);
                        revision += 1;
                    }
                    query.execute(&mut **tx).await?;
                }
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "{COLUMNS} SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], \
                     $5::int8[], $6::int8[], $7::int8[], $8::int8[]){UPSERT}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(
                        increments
                            .iter()
                            .map(|i| i.subscription_id.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(increments.iter().map(|i| i.hour).collect::<Vec<_>>())
                    .bind(
                        increments
                            .iter()
                            .map(|i| i.billable_calls)
                            .collect::<Vec<_>>(),
                    )
                    .bind(units.iter().map(|u| u.whole).collect::<Vec<_>>())
                    .bind(units.iter().map(|u| u.micros).collect::<Vec<_>>())
                    .bind(
                        increments
                            .iter()
                            .map(|i| i.failed_calls)
                            .collect::<Vec<_>>(),
                    )
                    .bind(increments.iter().map(|i| i.total_calls).collect::<Vec<_>>())
                    .bind((first..=last).collect::<Vec<_>>())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        self.add_day_totals(increments).await
    }

    /// Adds a batch's calls to the provider's totals by UTC day (`usage_days`): one row per day
    /// the batch touches, in the transaction of its hours.
    async fn add_day_totals(&mut self, increments: &[UsageIncrement]) -> StoreResult<()> {
        const DAY_MS: i64 = 86_400_000;
        let mut days: std::collections::BTreeMap<i64, [i64; 3]> = Default::default();
        for inc in increments {
            let sums = days
                .entry(inc.hour.div_euclid(DAY_MS) * DAY_MS)
                .or_default();
            for (sum, add) in
                sums.iter_mut()
                    .zip([inc.billable_calls, inc.failed_calls, inc.total_calls])
            {
                *sum = sum.checked_add(add).ok_or_else(|| {
                    StoreError::Corrupt("a batch's calls of one day do not fit".into())
                })?;
            }
        }
        const UPSERT: &str = " ON CONFLICT (day) DO UPDATE SET \
             billable_calls = usage_days.billable_calls + excluded.billable_calls, \
             failed_calls = usage_days.failed_calls + excluded.failed_calls, \
             total_calls = usage_days.total_calls + excluded.total_calls";
        const COLUMNS: &str =
            "INSERT INTO usage_days (day, billable_calls, failed_calls, total_calls)";
        match self {
            Tx::Sqlite(tx) => {
                let days: Vec<_> = days.into_iter().collect();
                for chunk in days.chunks(SQLITE_ROWS_PER_STATEMENT) {
                    let sql =
                        sqlite_values_sql(&format!("{COLUMNS} VALUES "), 4, chunk.len(), UPSERT);
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (day, [calls, failed, total]) in chunk {
                        query = query.bind(day).bind(calls).bind(failed).bind(total);
                    }
                    query.execute(&mut **tx).await?;
                }
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "{COLUMNS} SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[]){UPSERT}"
                );
                let column = |i: usize| days.values().map(|sums| sums[i]).collect::<Vec<_>>();
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(days.keys().copied().collect::<Vec<_>>())
                    .bind(column(0))
                    .bind(column(1))
                    .bind(column(2))
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// The hourly rows of one subscription with `from <= hour < to`, oldest first.
    pub async fn usage_hours(
        &mut self,
        subscription_id: &str,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<UsageRow>> {
        let sql = "SELECT subscription_id, hour, billable_calls, billable_units_whole, billable_units_micros, failed_calls, \
                   total_calls, revision FROM usage_hourly \
                   WHERE subscription_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .bind(from)
            .bind(to)
            .fetch_all(conn)
            .await?))
    }

    /// Rows changed after revision `after`, in revision order: the export cursor.
    pub async fn usage_changes(&mut self, after: i64, limit: u32) -> StoreResult<Vec<UsageRow>> {
        let sql = "SELECT subscription_id, hour, billable_calls, billable_units_whole, billable_units_micros, failed_calls, \
                   total_calls, revision FROM usage_hourly WHERE revision > $1 ORDER BY revision LIMIT $2";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await?))
    }

    /// Deletes up to `limit` raw records of calls made before `before`; answers how many.
    pub async fn purge_call_records(&mut self, before: i64, limit: i64) -> StoreResult<u64> {
        let sql = "DELETE FROM call_records WHERE record_key IN \
                   (SELECT record_key FROM call_records WHERE occurred_at < $1 LIMIT $2)";
        Ok(on_tx!(self, |conn| sqlx::query(sql)
            .bind(before)
            .bind(limit)
            .execute(conn)
            .await?
            .rows_affected()))
    }

    /// How many raw records are stored.
    pub async fn count_call_records(&mut self) -> StoreResult<i64> {
        let sql = "SELECT COUNT(*) FROM call_records";
        Ok(on_tx!(self, |conn| sqlx::query_scalar(sql)
            .fetch_one(conn)
            .await?))
    }
}

/// `prefix (?, ?, …), (?, …) suffix` for `rows` rows of `columns` plain `?` placeholders: numbered
/// placeholders make sqlx's SQLite binding quadratic.
pub(super) fn sqlite_values_sql(prefix: &str, columns: usize, rows: usize, suffix: &str) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::with_capacity(prefix.len() + rows * (row.len() + 2) + suffix.len());
    sql.push_str(prefix);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql.push_str(suffix);
    sql
}
