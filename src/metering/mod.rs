//! Metering: call records from the gateway, through the api's recording policy, into the
//! aggregation table — deduplicated by record id, committed before they are acknowledged.

pub mod directory;
pub mod key;
pub mod record;
pub mod writer;

use crate::store::StoredRecord;
use directory::DirectoryView;
use record::{Rejection, occurred_at, parse_record, units_micros};
use serde::Serialize;
use serde_json::value::RawValue;

/// How far from now a record's time may be.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    pub now_ms: i64,
    /// Records older than this are refused (the retention window).
    pub max_age_ms: i64,
    /// Records further ahead than this are refused (clock skew).
    pub max_ahead_ms: i64,
}

/// The answer to a batch.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct BatchSummary {
    /// New records stored, billable or not.
    pub accepted: u64,
    /// Records whose id was already stored.
    pub duplicates: u64,
    /// Of the accepted, those the recording policy did not bill.
    pub not_billable: u64,
    pub rejected: Vec<RejectedRecord>,
}

/// A record not taken: its index in the body, why, and the field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectedRecord {
    pub index: usize,
    /// `invalid_record`, `invalid_units`, `unknown_consumer`, `unknown_api`, `api_mismatch`,
    /// `too_old`, `in_future`, `before_subscription`.
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
}

/// Why a body is not a JSON array or NDJSON, and where: line and column in the whole body.
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct BodyError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The records of a body: a JSON array, or one JSON object per line (NDJSON).
pub fn split_body(body: &str) -> Result<Vec<&RawValue>, BodyError> {
    let at = |line: usize, e: serde_json::Error| BodyError {
        line,
        column: e.column(),
        message: crate::domain::field::without_position(&e.to_string()).to_owned(),
    };
    if body.trim_start().starts_with('[') {
        return serde_json::from_str(body).map_err(|e| at(e.line(), e));
    }
    body.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        // Each line is its own document: its line in the body is its index + 1.
        .map(|(number, line)| {
            serde_json::from_str::<&RawValue>(line).map_err(|e| at(number + 1, e))
        })
        .collect()
}

/// Checks each record and turns the good ones into rows; bad ones become rejections by index.
pub fn prepare(
    raws: &[&RawValue],
    directory: &DirectoryView,
    window: TimeWindow,
) -> (Vec<(usize, StoredRecord)>, Vec<RejectedRecord>) {
    let mut ready = Vec::with_capacity(raws.len());
    let mut rejected = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        match prepare_one(raw, directory, window) {
            Ok(record) => ready.push((index, record)),
            Err(rejection) => rejected.push(RejectedRecord {
                index,
                code: rejection.code,
                message: rejection.message,
            }),
        }
    }
    (ready, rejected)
}

fn prepare_one(
    raw: &RawValue,
    directory: &DirectoryView,
    window: TimeWindow,
) -> Result<StoredRecord, Rejection> {
    let record = parse_record(raw)?;
    let occurred_at = occurred_at(&record)?;
    if occurred_at < window.now_ms - window.max_age_ms {
        return Err(Rejection::new(
            "too_old",
            "timestamp: older than the retention window",
        ));
    }
    if occurred_at > window.now_ms + window.max_ahead_ms {
        return Err(Rejection::new(
            "in_future",
            "timestamp: more than 5 minutes ahead of tollbooth's clock",
        ));
    }
    let api = directory.api(&record.api).ok_or_else(|| {
        Rejection::new(
            "unknown_api",
            format!("api: `{}` is not a known api", record.api),
        )
    })?;
    let consumer = directory.consumer(&record.consumer).ok_or_else(|| {
        Rejection::new(
            "unknown_consumer",
            format!(
                "consumer: `{}` is not a consumer key of a live subscription",
                record.consumer
            ),
        )
    })?;
    if consumer.api_id != api.id {
        return Err(Rejection::new(
            "api_mismatch",
            format!(
                "api: consumer `{}` is not subscribed to `{}`",
                record.consumer, record.api
            ),
        ));
    }
    if occurred_at < consumer.first_day_ms {
        return Err(Rejection::new(
            "before_subscription",
            "timestamp: before the day the consumer's subscription started",
        ));
    }
    let billable = api.policy.is_billable(
        record.status,
        record.method.as_deref(),
        record.path.as_deref(),
    );
    let units = if billable {
        units_micros(
            &record,
            api.policy.units_header.as_ref().map(|h| h.as_str()),
        )?
    } else {
        0
    };
    Ok(StoredRecord {
        record_key: key::record_key(&record.id),
        record_id: record.id.into_owned(),
        subscription_id: consumer.subscription_id.to_string(),
        occurred_at,
        status: record.status,
        billable,
        units_micros: units,
        method: record.method.map(|m| m.to_ascii_uppercase()),
        path: record.path.map(|p| p.into_owned()),
        latency_ms: record.latency_ms.and_then(|l| i64::try_from(l).ok()),
    })
}

/// Deletes the raw records of calls older than the retention window, a slice at a time so that
/// ingestion is never blocked for long. Aggregates are kept. Answers how many were deleted.
pub async fn purge_expired(
    store: &crate::store::Store,
    retention: std::time::Duration,
    now_ms: i64,
) -> crate::store::StoreResult<u64> {
    const SLICE: i64 = 10_000;
    let before = now_ms - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    loop {
        let mut tx = store.begin().await?;
        let slice = tx.purge_call_records(before, SLICE).await?;
        tx.commit().await?;
        deleted += slice;
        if slice < u64::try_from(SLICE).unwrap_or(u64::MAX) {
            break;
        }
    }
    // Replicas follow catalog changes every few seconds; one that fell a day behind reads the
    // whole catalog again when it sees the gap.
    let mut tx = store.begin().await?;
    tx.purge_catalog_changes(now_ms - crate::domain::time::DAY_MS)
        .await?;
    tx.commit().await?;
    Ok(deleted)
}
