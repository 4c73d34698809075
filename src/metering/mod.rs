//! Metering: call records from the gateway, through the api's recording policy, into the
//! aggregation table — deduplicated by record id, committed before they are acknowledged.

pub mod directory;
pub mod formats;
pub mod key;
mod lenient;
pub mod meters;
pub mod record;
pub mod stats;
pub mod thresholds;
pub mod writer;

use crate::store::StoredRecord;
use directory::DirectoryView;
use record::{CallRecord, Rejection, units_micros};
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
    /// `invalid_record`, `invalid_units`, `invalid_quantity`, `invalid_dimension`,
    /// `invalid_property`, `dimension_limit`, `unknown_consumer`, `unknown_api`, `api_mismatch`,
    /// `too_old`, `in_future`, `before_subscription`; for usage events also `unknown_meter`,
    /// `unknown_subscription`, `after_cancellation`.
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

impl BodyError {
    pub fn at(line: usize, error: &serde_json::Error) -> Self {
        Self {
            line,
            column: error.column(),
            message: crate::domain::field::without_position(&error.to_string()).to_owned(),
        }
    }
}

/// The records of a body: a JSON array, one JSON document, or one JSON object per line (NDJSON).
/// A line that is not JSON (a truncated last line, say) is rejected by its index, and the other
/// lines still count; an array that is not JSON fails the body.
pub fn split_body(body: &str) -> Result<Vec<Result<&RawValue, Rejection>>, BodyError> {
    let start = body.trim_start();
    if start.starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(body).map_err(|e| BodyError::at(e.line(), &e))?;
        return Ok(items.into_iter().map(Ok).collect());
    }
    // One document over several lines (a pretty-printed object).
    if start.starts_with('{')
        && body.trim_end().contains('\n')
        && let Ok(one) = serde_json::from_str::<&RawValue>(body)
    {
        return Ok(vec![Ok(one)]);
    }
    Ok(body
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str::<&RawValue>(line).map_err(|e| {
                let at = BodyError::at(number + 1, &e);
                Rejection::new(
                    "invalid_record",
                    format!("line {}: not JSON: {}", at.line, at.message),
                )
            })
        })
        .collect())
}

/// Checks each record and turns the good ones into rows; bad ones become rejections by index.
pub fn prepare(
    reads: &[Result<CallRecord<'_>, Rejection>],
    directory: &DirectoryView,
    window: TimeWindow,
) -> (Vec<(usize, StoredRecord)>, Vec<RejectedRecord>) {
    let mut ready = Vec::with_capacity(reads.len());
    let mut rejected = Vec::new();
    for (index, read) in reads.iter().enumerate() {
        match read
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|record| prepare_one(record, directory, window))
        {
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
    record: &CallRecord<'_>,
    directory: &DirectoryView,
    window: TimeWindow,
) -> Result<StoredRecord, Rejection> {
    let occurred_at = record.occurred_at;
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
    let named = if record.api.is_empty() {
        // A mapped format that names no api: the api routed where the call was made.
        let path = record.path.as_deref().unwrap_or("/");
        directory
            .route(record.host.as_deref(), path)
            .ok_or_else(|| {
                Rejection::new(
                    "unknown_api",
                    format!(
                        "api: the record names none, the gateway's `ingest.api` is unset, and no \
                         api is routed at host `{}` and path `{path}`",
                        record.host.as_deref().unwrap_or("")
                    ),
                )
            })?
            .to_owned()
    } else {
        record.api.to_string()
    };
    let api = directory.api(&named).ok_or_else(|| {
        Rejection::new("unknown_api", format!("api: `{named}` is not a known api"))
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
                record.consumer, named
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
        units_micros(record, api.policy.units_header.as_ref().map(|h| h.as_str()))?
    } else {
        0
    };
    let readings = match &api.meters {
        Some(meters) => {
            meters::read_call(record, meters, &api.id, billable, directory.dimensions())?
        }
        None => crate::store::Readings::default(),
    };
    Ok(StoredRecord {
        record_key: key::record_key(&record.id),
        record_id: record.id.to_string(),
        subscription_id: consumer.subscription_id.to_string(),
        occurred_at,
        status: record.status,
        billable,
        units_micros: units,
        method: record.method.as_ref().map(|m| m.to_ascii_uppercase()),
        path: record.path.as_ref().map(|p| p.to_string()),
        latency_ms: record.latency_ms,
        upstream_answered: record.upstream_answered,
        readings,
    })
}

/// Deletes the raw records of calls older than the retention window, a slice at a time so that
/// ingestion is never blocked for long, and the notifications delivered before it. Aggregates
/// are kept, and notifications not delivered. Answers how many records were deleted.
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
        // Call records first, then usage events: each deduplicates only within the window.
        let mut slice = tx.purge_call_records(before, SLICE).await?;
        if slice < u64::try_from(SLICE).unwrap_or(u64::MAX) {
            slice += tx.purge_usage_events(before, SLICE).await?;
        }
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
    tx.purge_delivered_notifications(before).await?;
    tx.commit().await?;
    Ok(deleted)
}
