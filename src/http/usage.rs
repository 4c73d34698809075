//! `/v1/usage`: a subscription's usage series, and the cursor export of every change to the
//! aggregation table for other billing systems.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, Query};
use super::timestamp;
use crate::billing::MeterFigure;
use crate::domain::FieldError;
use crate::domain::time::{DAY_MS, HOUR_MS, floor_to};
use crate::store::{MeterRow, UniqueCount, UsageRow};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(series))
        .routes(routes!(export))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SeriesQuery {
    /// The subscription's id or external_id (required).
    #[param(required, min_length = 1, pattern = "^[^\\x00]*$")]
    subscription: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD` (midnight UTC); 30 days before `to` when absent.
    #[param(schema_with = time_or_day)]
    from: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD`; an hour from now when absent. After `from`.
    #[param(schema_with = time_or_day)]
    to: Option<String>,
    /// `hour` (the default) or `day`.
    #[param(value_type = Option<Granularity>)]
    granularity: Option<String>,
}

/// `from` and `to` as documented: an RFC 3339 time or a day.
pub(super) fn time_or_day() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::KnownFormat;
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, SchemaFormat, Type};
    let string = |format| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(format)))
    };
    AnyOfBuilder::new()
        .item(string(KnownFormat::DateTime))
        .item(string(KnownFormat::Date))
        .build()
        .into()
}

/// The width of a usage bucket.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum Granularity {
    Hour,
    Day,
}

/// A subscription's usage, bucket by bucket.
#[derive(Serialize, utoipa::ToSchema)]
struct Series {
    subscription: String,
    external_id: String,
    granularity: Granularity,
    #[schema(format = DateTime)]
    from: String,
    #[schema(format = DateTime)]
    to: String,
    /// The buckets that had calls, oldest first.
    data: Vec<Bucket>,
}

/// One hour's or day's usage.
#[derive(Serialize, Default, utoipa::ToSchema)]
pub(super) struct Bucket {
    #[schema(format = DateTime)]
    pub start: String,
    #[serde(skip)]
    pub start_ms: i64,
    pub billable_calls: i64,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub billable_units: Decimal,
    pub failed_calls: i64,
    pub total_calls: i64,
    /// The api's declared meters in the bucket, one entry per meter and set of dimension values
    /// (a unique_count meter's quantity is the distinct values in the bucket).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<MeterFigure>,
}

/// `from`/`to` as RFC 3339 times or plain dates (midnight UTC).
pub(super) fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| {
            d.and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
                .timestamp_millis()
        })
        .map_err(|_| {
            bad(
                field,
                &format!("`{text}` is not an RFC 3339 time or a YYYY-MM-DD date"),
            )
        })
}

fn bad(field: &str, message: &str) -> ApiError {
    ApiError::invalid_field(FieldError::new(field, message))
}

/// A subscription's usage series.
#[utoipa::path(get, path = "/v1/usage", tag = "metering", operation_id = "usage_series",
    params(SeriesQuery),
    responses(
        (status = 200, description = "The series", body = Series),
        (status = 404, description = "`not_found`: no such subscription", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn series(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<SeriesQuery>,
) -> Result<Json<Series>, ApiError> {
    let key = query
        .subscription
        .ok_or_else(|| bad("subscription", "is required"))?;
    let (granularity, step) = match query.granularity.as_deref().unwrap_or("hour") {
        "hour" => (Granularity::Hour, HOUR_MS),
        "day" => (Granularity::Day, DAY_MS),
        other => return Err(bad("granularity", &format!("`{other}` is not hour or day"))),
    };
    let now = crate::store::now_ms();
    let to = query
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or(now + HOUR_MS);
    let from = query
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?
        .unwrap_or(to - 30 * DAY_MS);
    if from >= to {
        return Err(bad("from", "must be before `to`"));
    }
    let mut tx = state.store.begin_read().await?;
    let subscription = tx
        .find_subscription(&key)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription", &key))?;
    let rows = tx.usage_hours(&subscription.id, from, to).await?;
    let meter_rows = tx.meter_hours(&subscription.id, from, to).await?;
    let uniques = tx
        .meter_unique_counts(&subscription.id, from, to, step)
        .await?;
    let mut data = buckets(rows, step);
    add_meters(&mut data, &meter_rows, &uniques, step);
    Ok(Json(Series {
        subscription: subscription.id,
        external_id: subscription.external_id,
        granularity,
        from: timestamp(from),
        to: timestamp(to),
        data,
    }))
}

/// Puts the declared meters' rows into their buckets, folded by their aggregation; a bucket with
/// meters and no calls is made.
fn add_meters(buckets: &mut Vec<Bucket>, rows: &[MeterRow], uniques: &[UniqueCount], step: i64) {
    let mut by_start: BTreeMap<i64, (Vec<&MeterRow>, Vec<&UniqueCount>)> = BTreeMap::new();
    for row in rows {
        by_start
            .entry(floor_to(row.hour, step))
            .or_default()
            .0
            .push(row);
    }
    for unique in uniques {
        by_start.entry(unique.bucket).or_default().1.push(unique);
    }
    for (start, (rows, uniques)) in by_start {
        let at = match buckets.binary_search_by_key(&start, |b| b.start_ms) {
            Ok(at) => at,
            Err(at) => {
                buckets.insert(
                    at,
                    Bucket {
                        start: timestamp(start),
                        start_ms: start,
                        ..Bucket::default()
                    },
                );
                at
            }
        };
        let mut figures: Vec<MeterFigure> =
            crate::billing::meter_quantities(rows.into_iter(), std::iter::empty())
                .into_iter()
                .map(MeterFigure::from)
                .collect();
        figures.extend(uniques.into_iter().map(|u| {
            MeterFigure {
                meter: u.meter.clone(),
                aggregation: crate::domain::meter::Aggregation::UniqueCount,
                dimensions: crate::domain::meter::dimension_values(&u.dimensions)
                    .into_iter()
                    .collect(),
                quantity: Decimal::from(u.count),
            }
        }));
        figures.sort_by(|a, b| (&a.meter, &a.dimensions).cmp(&(&b.meter, &b.dimensions)));
        buckets[at].meters = figures;
    }
}

/// Hourly rows summed into buckets of `step` milliseconds, oldest first; buckets without calls
/// are left out.
pub(super) fn buckets(rows: Vec<UsageRow>, step: i64) -> Vec<Bucket> {
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    for row in rows {
        let start = floor_to(row.hour, step);
        let bucket = buckets.entry(start).or_insert_with(|| Bucket {
            start: timestamp(start),
            start_ms: start,
            ..Bucket::default()
        });
        bucket.billable_calls += row.billable_calls;
        bucket.billable_units += row.billable_units();
        bucket.failed_calls += row.failed_calls;
        bucket.total_calls += row.total_calls;
    }
    buckets.into_values().collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// The `next_after` of the previous answer; from the start when absent or empty.
    #[param(pattern = "^(|[+-]?[0-9]{1,18})$")]
    after: Option<String>,
    /// How many rows, 1 to 10,000; 1,000 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
}

/// Changes to the aggregation table after a cursor.
#[derive(Serialize, utoipa::ToSchema)]
struct ExportPage {
    /// Oldest change first.
    data: Vec<ExportRow>,
    /// The `after` of the next request.
    next_after: String,
    has_more: bool,
}

/// One subscription-hour's totals as of one change: of its calls, or (with `meter`) of one
/// declared meter and set of dimension values.
#[derive(Serialize, utoipa::ToSchema)]
struct ExportRow {
    subscription: String,
    #[schema(format = DateTime)]
    hour: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    billable_calls: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    billable_units: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_calls: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_calls: Option<i64>,
    /// A declared meter's row: the meter, its aggregation and dimension values, the calls and
    /// events it counted, and the hour's quantity (for unique_count, the values first seen in
    /// the hour).
    #[serde(skip_serializing_if = "Option::is_none")]
    meter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregation: Option<crate::domain::meter::Aggregation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    dimensions: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    quantity: Option<String>,
    revision: String,
}

impl From<UsageRow> for ExportRow {
    fn from(row: UsageRow) -> Self {
        let billable_units = row.billable_units();
        Self {
            subscription: row.subscription_id,
            hour: timestamp(row.hour),
            billable_calls: Some(row.billable_calls),
            billable_units: Some(billable_units.to_string()),
            failed_calls: Some(row.failed_calls),
            total_calls: Some(row.total_calls),
            meter: None,
            aggregation: None,
            dimensions: None,
            records: None,
            quantity: None,
            revision: row.revision.to_string(),
        }
    }
}

impl From<MeterRow> for ExportRow {
    fn from(row: MeterRow) -> Self {
        let quantity = row.quantity().normalize().to_string();
        Self {
            hour: timestamp(row.hour),
            billable_calls: None,
            billable_units: None,
            failed_calls: None,
            total_calls: None,
            aggregation: Some(row.aggregation()),
            dimensions: Some(
                crate::domain::meter::dimension_values(&row.dimensions)
                    .into_iter()
                    .collect(),
            ),
            records: Some(row.records),
            quantity: Some(quantity),
            revision: row.revision.to_string(),
            meter: Some(row.meter),
            subscription: row.subscription_id,
        }
    }
}

/// Every change to the aggregation table after the cursor, oldest first. Each row is the
/// subscription-hour's totals as of that change; a poller that stores `next_after` and asks again
/// sees every change once, with no gap, while records keep arriving.
#[utoipa::path(get, path = "/v1/usage/export", tag = "metering", operation_id = "export_usage",
    params(ExportQuery),
    responses((status = 200, description = "The changes after the cursor", body = ExportPage)),
    security(("admin_token" = [])))]
async fn export(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<ExportQuery>,
) -> Result<Json<ExportPage>, ApiError> {
    let after = match query.after.as_deref() {
        None | Some("") => 0,
        Some(text) => text.parse::<i64>().map_err(|_| {
            bad(
                "after",
                &format!("`{text}` is not a cursor from this endpoint"),
            )
        })?,
    };
    let limit = match query.limit.as_deref() {
        None => 1000,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| {
                bad(
                    "limit",
                    &format!("`{text}` is not a number from 1 to 10000"),
                )
            })?,
    };
    // Both tables take their revisions from one counter: merged, they are one ordered stream,
    // read from one snapshot so that no commit falls between the two reads.
    let mut tx = state.store.begin_snapshot().await?;
    let calls = tx.usage_changes(after, limit).await?;
    let meters = tx.meter_changes(after, limit).await?;
    drop(tx);
    let mut merged: Vec<(i64, ExportRow)> = calls
        .into_iter()
        .map(|r| (r.revision, ExportRow::from(r)))
        .chain(meters.into_iter().map(|r| (r.revision, ExportRow::from(r))))
        .collect();
    merged.sort_by_key(|(revision, _)| *revision);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    merged.truncate(limit);
    let next_after = merged.last().map_or(after, |(revision, _)| *revision);
    let has_more = merged.len() == limit;
    let data: Vec<ExportRow> = merged.into_iter().map(|(_, row)| row).collect();
    Ok(Json(ExportPage {
        data,
        next_after: next_after.to_string(),
        has_more,
    }))
}
