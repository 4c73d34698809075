//! The declared meters' aggregation table (`usage_meters_hourly`), the values of unique_count
//! meters, usage events, and each api's dimension values. Written in the ingestion writer's
//! transaction, beside `usage_hourly`.

use super::metering::sqlite_values_sql;
use super::{StoreError, StoreResult, Tx, on_tx};
use crate::domain::meter::Aggregation;
use crate::domain::units::SplitUnits;
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A dimension value new to its api: `(api id, dimension, value)`.
pub type NewValue = (Arc<str>, String, String);

/// What one call or event gives one declared meter.
#[derive(Debug, Clone)]
pub struct Reading {
    pub meter: Arc<str>,
    pub aggregation: Aggregation,
    /// The value in millionths (one unit for a count and a unique_count).
    pub value_micros: i64,
    /// A unique_count meter's value.
    pub unique: Option<String>,
}

/// The readings of one call or event, with the dimension values they are kept under.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// `{"model":"large"}`, `{}` with none.
    pub dimensions: Arc<str>,
    pub list: Vec<Reading>,
    /// The api's id, whose dimension values these are (stored with the record, so the api's
    /// `dimension_values` hold every value of every record committed).
    pub api: Arc<str>,
}

/// What one subscription-hour of one meter and set of dimension values gains from a batch.
#[derive(Debug, Clone)]
pub struct MeterIncrement {
    pub subscription_id: String,
    pub hour: i64,
    pub meter: Arc<str>,
    pub dimensions: Arc<str>,
    pub aggregation: Aggregation,
    pub records: i64,
    pub sum_micros: i128,
    pub max_micros: i64,
    /// The time of the latest call or event (Unix ms), and its value.
    pub latest_at: i64,
    pub latest_micros: i64,
    /// A unique_count meter's values in this hour.
    pub uniques: HashSet<String>,
}

/// One row of `usage_meters_hourly`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MeterRow {
    pub subscription_id: String,
    pub hour: i64,
    pub meter: String,
    pub dimensions: String,
    pub aggregation: String,
    pub records: i64,
    pub sum_whole: i64,
    pub sum_micros: i64,
    pub max_micros: i64,
    pub latest_at: i64,
    pub latest_micros: i64,
    pub revision: i64,
}

impl MeterRow {
    pub fn aggregation(&self) -> Aggregation {
        Aggregation::parse(&self.aggregation).unwrap_or(Aggregation::Sum)
    }

    /// The hour's sum, exactly (for a unique_count meter, the values first seen in the hour).
    pub fn sum(&self) -> Decimal {
        SplitUnits {
            whole: self.sum_whole,
            micros: self.sum_micros,
        }
        .units()
    }

    /// The hour's quantity under its aggregation.
    pub fn quantity(&self) -> Decimal {
        match self.aggregation() {
            Aggregation::Count => Decimal::from(self.records),
            Aggregation::Sum | Aggregation::UniqueCount => self.sum(),
            Aggregation::Max => micros(self.max_micros),
            Aggregation::Latest => micros(self.latest_micros),
        }
    }
}

/// Millionths as a decimal.
pub fn micros(value: i64) -> Decimal {
    Decimal::new(value, crate::domain::units::UNIT_SCALE).normalize()
}

/// A value of a unique_count meter, with the first hour of a span it was seen in.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UniqueValue {
    pub meter: String,
    pub dimensions: String,
    pub value: String,
    pub first_hour: i64,
}

/// The distinct values of a unique_count meter in one bucket of a series.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UniqueCount {
    pub meter: String,
    pub dimensions: String,
    /// The bucket's start (Unix ms).
    pub bucket: i64,
    pub count: i64,
}

/// A usage event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub record_key: Vec<u8>,
    pub tracking_id: String,
    pub subscription_id: String,
    pub occurred_at: i64,
    /// The value as sent.
    pub value: String,
    pub readings: Readings,
}

const SQLITE_ROWS: usize = 500;

const METER_COLUMNS: &str = "subscription_id, hour, meter, dimensions, aggregation, records, \
     sum_whole, sum_micros, max_micros, latest_at, latest_micros, revision";

impl Tx {
    /// Adds a batch's meter increments: first the unique values (each hour's new ones counted
    /// into its sum), then the hourly rows, each taking the next revision.
    pub async fn add_meter_usage(&mut self, increments: &mut [MeterIncrement]) -> StoreResult<()> {
        if increments.is_empty() {
            return Ok(());
        }
        // The revisions first: every batch takes this lock before any row of the meters' tables,
        // so two batches never wait on each other in opposite orders.
        let count = i64::try_from(increments.len()).unwrap_or(i64::MAX);
        let sql = "UPDATE usage_revision SET value = value + $1 WHERE id = 1 RETURNING value";
        let last: i64 = on_tx!(self, |conn| sqlx::query_scalar(sql)
            .bind(count)
            .fetch_one(conn)
            .await?);
        let first = last - count + 1;
        self.add_unique_values(increments).await?;
        let sums = increments
            .iter()
            .map(|i| {
                SplitUnits::from_micros(i.sum_micros).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "a batch's `{}` for subscription {} does not fit",
                        i.meter, i.subscription_id
                    ))
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let upsert = |greatest: &str| {
            format!(
                " ON CONFLICT (subscription_id, hour, meter, dimensions) DO UPDATE SET \
                 aggregation = excluded.aggregation, \
                 records = t.records + excluded.records, \
                 sum_whole = t.sum_whole + excluded.sum_whole \
                     + (t.sum_micros + excluded.sum_micros) / 1000000, \
                 sum_micros = (t.sum_micros + excluded.sum_micros) % 1000000, \
                 max_micros = {greatest}(t.max_micros, excluded.max_micros), \
                 latest_micros = CASE WHEN excluded.latest_at >= t.latest_at \
                     THEN excluded.latest_micros ELSE t.latest_micros END, \
                 latest_at = {greatest}(t.latest_at, excluded.latest_at), \
                 revision = excluded.revision"
            )
        };
        let insert = format!("INSERT INTO usage_meters_hourly AS t ({METER_COLUMNS})");
        match self {
            Tx::Sqlite(tx) => {
                let mut revision = first;
                let rows: Vec<_> = increments.iter().zip(&sums).collect();
                for chunk in rows.chunks(SQLITE_ROWS) {
                    let sql = sqlite_values_sql(
                        &format!("{insert} VALUES "),
                        12,
                        chunk.len(),
                        &upsert("MAX"),
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (inc, sum) in chunk {
                        query = query
                            .bind(&inc.subscription_id)
                            .bind(inc.hour)
                            .bind(&*inc.meter)
                            .bind(&*inc.dimensions)
                            .bind(inc.aggregation.as_str())
                            .bind(inc.records)
                            .bind(sum.whole)
                            .bind(sum.micros)
                            .bind(inc.max_micros)
                            .bind(inc.latest_at)
                            .bind(inc.latest_micros)
                            .bind(revision);
                        revision += 1;
                    }
                    query.execute(&mut **tx).await?;
                }
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "{insert} SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], \
                     $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], \
                     $11::int8[], $12::int8[]){}",
                    upsert("GREATEST")
                );
                let column = |f: fn(&MeterIncrement) -> i64| -> Vec<i64> {
                    increments.iter().map(f).collect()
                };
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(
                        increments
                            .iter()
                            .map(|i| i.subscription_id.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(column(|i| i.hour))
                    .bind(increments.iter().map(|i| &*i.meter).collect::<Vec<_>>())
                    .bind(
                        increments
                            .iter()
                            .map(|i| &*i.dimensions)
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        increments
                            .iter()
                            .map(|i| i.aggregation.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(column(|i| i.records))
                    .bind(sums.iter().map(|s| s.whole).collect::<Vec<_>>())
                    .bind(sums.iter().map(|s| s.micros).collect::<Vec<_>>())
                    .bind(column(|i| i.max_micros))
                    .bind(column(|i| i.latest_at))
                    .bind(column(|i| i.latest_micros))
                    .bind((first..=last).collect::<Vec<_>>())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stores the unique_count values of a batch by hour; each increment's sum becomes the number
    /// of its values the hour had not seen.
    async fn add_unique_values(&mut self, increments: &mut [MeterIncrement]) -> StoreResult<()> {
        let mut rows: Vec<(usize, &str)> = increments
            .iter()
            .enumerate()
            .flat_map(|(index, inc)| inc.uniques.iter().map(move |v| (index, v.as_str())))
            .collect();
        // Increments come sorted by key; their values in order too, for one lock order.
        rows.sort_unstable();
        if rows.is_empty() {
            return Ok(());
        }
        type Key = (String, String, String, i64);
        let mut new: Vec<Key> = Vec::new();
        const INSERT: &str =
            "INSERT INTO usage_meter_values (subscription_id, meter, dimensions, value, hour)";
        const TAIL: &str =
            " ON CONFLICT DO NOTHING RETURNING subscription_id, meter, dimensions, hour";
        match self {
            Tx::Sqlite(tx) => {
                for chunk in rows.chunks(SQLITE_ROWS) {
                    let sql = sqlite_values_sql(&format!("{INSERT} VALUES "), 5, chunk.len(), TAIL);
                    let mut query = sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql));
                    for (index, value) in chunk {
                        let inc = &increments[*index];
                        query = query
                            .bind(&inc.subscription_id)
                            .bind(&*inc.meter)
                            .bind(&*inc.dimensions)
                            .bind(*value)
                            .bind(inc.hour);
                    }
                    new.extend(query.fetch_all(&mut **tx).await?);
                }
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "{INSERT} SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                     $5::int8[]){TAIL}"
                );
                let of = |index: &usize| &increments[*index];
                new = sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql))
                    .bind(
                        rows.iter()
                            .map(|(i, _)| of(i).subscription_id.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(rows.iter().map(|(i, _)| &*of(i).meter).collect::<Vec<_>>())
                    .bind(
                        rows.iter()
                            .map(|(i, _)| &*of(i).dimensions)
                            .collect::<Vec<_>>(),
                    )
                    .bind(rows.iter().map(|(_, v)| *v).collect::<Vec<_>>())
                    .bind(rows.iter().map(|(i, _)| of(i).hour).collect::<Vec<_>>())
                    .fetch_all(&mut **tx)
                    .await?;
            }
        }
        let mut counts: HashMap<Key, i128> = HashMap::new();
        for key in new {
            *counts.entry(key).or_default() += 1;
        }
        for inc in increments.iter_mut() {
            if inc.aggregation == Aggregation::UniqueCount {
                let key = (
                    inc.subscription_id.clone(),
                    inc.meter.to_string(),
                    inc.dimensions.to_string(),
                    inc.hour,
                );
                inc.sum_micros = counts.get(&key).copied().unwrap_or(0) * 1_000_000;
            }
        }
        Ok(())
    }

    /// Stores dimension values new to their api.
    pub async fn add_dimension_values(&mut self, values: &[NewValue]) -> StoreResult<()> {
        let sql = "INSERT INTO dimension_values (api_id, dimension, value) VALUES ($1, $2, $3) \
                   ON CONFLICT DO NOTHING";
        for (api, dimension, value) in values {
            on_tx!(self, |conn| sqlx::query(sql)
                .bind(&**api)
                .bind(dimension)
                .bind(value)
                .execute(conn)
                .await
                .map(|_| ())?);
        }
        Ok(())
    }

    /// Every api's dimension values: `(api id, dimension, value)`.
    pub async fn dimension_values(&mut self) -> StoreResult<Vec<(String, String, String)>> {
        let sql = "SELECT api_id, dimension, value FROM dimension_values";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .fetch_all(conn)
            .await?))
    }

    /// The meter rows of one subscription with `from <= hour < to`, oldest first.
    pub async fn meter_hours(
        &mut self,
        subscription_id: &str,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<MeterRow>> {
        let sql = const_format::concatcp!(
            "SELECT ",
            METER_COLUMNS,
            " FROM usage_meters_hourly WHERE subscription_id = $1 AND hour >= $2 AND hour < $3 \
             ORDER BY hour, meter, dimensions"
        );
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .bind(from)
            .bind(to)
            .fetch_all(conn)
            .await?))
    }

    /// Each distinct value of the subscription's unique_count meters seen in `from <= hour <
    /// to`, with the first hour it was seen in there.
    pub async fn meter_unique_values(
        &mut self,
        subscription_id: &str,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<UniqueValue>> {
        let sql = "SELECT meter, dimensions, value, MIN(hour) AS first_hour FROM usage_meter_values \
                   WHERE subscription_id = $1 AND hour >= $2 AND hour < $3 \
                   GROUP BY meter, dimensions, value";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .bind(from)
            .bind(to)
            .fetch_all(conn)
            .await?))
    }

    /// The distinct values of the subscription's unique_count meters in each bucket of `step`
    /// milliseconds of `from <= hour < to`.
    pub async fn meter_unique_counts(
        &mut self,
        subscription_id: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> StoreResult<Vec<UniqueCount>> {
        let sql = "SELECT meter, dimensions, (hour / $4) * $4 AS bucket, \
                   COUNT(DISTINCT value) AS count FROM usage_meter_values \
                   WHERE subscription_id = $1 AND hour >= $2 AND hour < $3 \
                   GROUP BY 1, 2, 3";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .bind(from)
            .bind(to)
            .bind(step)
            .fetch_all(conn)
            .await?))
    }

    /// Meter rows changed after revision `after`, in revision order: the export cursor's meters.
    pub async fn meter_changes(&mut self, after: i64, limit: u32) -> StoreResult<Vec<MeterRow>> {
        let sql = const_format::concatcp!(
            "SELECT ",
            METER_COLUMNS,
            " FROM usage_meters_hourly WHERE revision > $1 ORDER BY revision LIMIT $2"
        );
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await?))
    }

    /// Inserts the usage events whose key is not stored yet; answers the keys that were new.
    pub async fn insert_usage_events(
        &mut self,
        events: &[&StoredEvent],
        received_at: i64,
    ) -> StoreResult<HashSet<Vec<u8>>> {
        const INSERT: &str = "INSERT INTO usage_events (record_key, tracking_id, subscription_id, \
             meter, occurred_at, value, dimensions, received_at)";
        const TAIL: &str = " ON CONFLICT (record_key) DO NOTHING RETURNING record_key";
        let meter = |event: &StoredEvent| {
            event
                .readings
                .list
                .first()
                .map_or(String::new(), |r| r.meter.to_string())
        };
        let mut new_keys = HashSet::with_capacity(events.len());
        match self {
            Tx::Sqlite(tx) => {
                for chunk in events.chunks(SQLITE_ROWS) {
                    let sql = sqlite_values_sql(&format!("{INSERT} VALUES "), 8, chunk.len(), TAIL);
                    let mut query = sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql));
                    for event in chunk {
                        query = query
                            .bind(&event.record_key)
                            .bind(&event.tracking_id)
                            .bind(&event.subscription_id)
                            .bind(meter(event))
                            .bind(event.occurred_at)
                            .bind(&event.value)
                            .bind(&*event.readings.dimensions)
                            .bind(received_at);
                    }
                    new_keys.extend(query.fetch_all(&mut **tx).await?);
                }
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "{INSERT} SELECT k, t, s, m, o, v, d, $8 FROM UNNEST($1::bytea[], $2::text[], \
                     $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[]) \
                     AS u(k, t, s, m, o, v, d){TAIL}"
                );
                let keys: Vec<&[u8]> = events.iter().map(|e| e.record_key.as_slice()).collect();
                let rows: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(keys)
                    .bind(
                        events
                            .iter()
                            .map(|e| e.tracking_id.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        events
                            .iter()
                            .map(|e| e.subscription_id.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(events.iter().map(|e| meter(e)).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
                    .bind(events.iter().map(|e| e.value.as_str()).collect::<Vec<_>>())
                    .bind(
                        events
                            .iter()
                            .map(|e| &*e.readings.dimensions)
                            .collect::<Vec<_>>(),
                    )
                    .bind(received_at)
                    .fetch_all(&mut **tx)
                    .await?;
                new_keys.extend(rows);
            }
        }
        Ok(new_keys)
    }

    /// Deletes up to `limit` usage events that happened before `before`; answers how many.
    pub async fn purge_usage_events(&mut self, before: i64, limit: i64) -> StoreResult<u64> {
        let sql = "DELETE FROM usage_events WHERE record_key IN \
                   (SELECT record_key FROM usage_events WHERE occurred_at < $1 LIMIT $2)";
        Ok(on_tx!(self, |conn| sqlx::query(sql)
            .bind(before)
            .bind(limit)
            .execute(conn)
            .await?
            .rows_affected()))
    }
}
