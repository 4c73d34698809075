//! `/v1/usage`: a subscription's usage series, and the cursor export of every change to the
//! aggregation table for other billing systems.

use super::AppState;
use super::error::ApiError;
use super::extract::{Admin, Query};
use super::timestamp;
use crate::domain::FieldError;
use crate::domain::time::{DAY_MS, HOUR_MS, floor_to};
use crate::store::UsageRow;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/usage", get(series))
        .route("/v1/usage/export", get(export))
}

#[derive(Deserialize)]
struct SeriesQuery {
    subscription: Option<String>,
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
}

#[derive(Serialize, Default)]
struct Bucket {
    start: String,
    billable_calls: i64,
    #[serde(with = "rust_decimal::serde::str")]
    billable_units: Decimal,
    failed_calls: i64,
    total_calls: i64,
}

/// `from`/`to` as RFC 3339 times or plain dates (midnight UTC).
fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
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

async fn series(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<SeriesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = query
        .subscription
        .ok_or_else(|| bad("subscription", "is required"))?;
    let step = match query.granularity.as_deref().unwrap_or("hour") {
        "hour" => HOUR_MS,
        "day" => DAY_MS,
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
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    for row in rows {
        let start = floor_to(row.hour, step);
        let bucket = buckets.entry(start).or_insert_with(|| Bucket {
            start: timestamp(start),
            ..Bucket::default()
        });
        bucket.billable_calls += row.billable_calls;
        bucket.billable_units += row.billable_units();
        bucket.failed_calls += row.failed_calls;
        bucket.total_calls += row.total_calls;
    }
    Ok(Json(serde_json::json!({
        "subscription": subscription.id,
        "external_id": subscription.external_id,
        "granularity": if step == HOUR_MS { "hour" } else { "day" },
        "from": timestamp(from),
        "to": timestamp(to),
        "data": buckets.into_values().collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct ExportQuery {
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct ExportRow {
    subscription: String,
    hour: String,
    billable_calls: i64,
    #[serde(with = "rust_decimal::serde::str")]
    billable_units: Decimal,
    failed_calls: i64,
    total_calls: i64,
    revision: String,
}

impl From<UsageRow> for ExportRow {
    fn from(row: UsageRow) -> Self {
        let billable_units = row.billable_units();
        Self {
            subscription: row.subscription_id,
            hour: timestamp(row.hour),
            billable_calls: row.billable_calls,
            billable_units,
            failed_calls: row.failed_calls,
            total_calls: row.total_calls,
            revision: row.revision.to_string(),
        }
    }
}

/// Every change to the aggregation table after the cursor, oldest first. Each row is the
/// subscription-hour's totals as of that change; a poller that stores `next_after` and asks again
/// sees every change once, with no gap, while records keep arriving.
async fn export(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<ExportQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let rows = state
        .store
        .begin_read()
        .await?
        .usage_changes(after, limit)
        .await?;
    let next_after = rows.last().map_or(after, |r| r.revision);
    let has_more = rows.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let data: Vec<ExportRow> = rows.into_iter().map(ExportRow::from).collect();
    Ok(Json(serde_json::json!({
        "data": data,
        "next_after": next_after.to_string(),
        "has_more": has_more,
    })))
}
