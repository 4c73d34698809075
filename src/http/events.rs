//! `POST /v1/events`: the gateway's call records. Answered 202 only once they are committed.

use super::AppState;
use super::error::ApiError;
use super::extract::{GatewayCaller, body_bytes};
use crate::metering::writer::IngestError;
use crate::metering::{BatchSummary, TimeWindow, prepare, split_body};
use crate::store::now_ms;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

/// Calls may be stamped this far ahead of tollbooth's clock.
const MAX_AHEAD_MS: i64 = 5 * 60 * 1000;

pub fn router(max_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(ingest))
        .layer(DefaultBodyLimit::max(max_bytes))
}

async fn ingest(
    GatewayCaller(_gateway): GatewayCaller,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(request, &state).await?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let raws = split_body(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not a JSON array or NDJSON: {e}"),
        )
        .with_details(json!({ "line": e.line, "column": e.column }))
    })?;
    let limit = state.settings.events_max_records;
    if raws.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} records in one request; at most {limit} are taken",
                raws.len()
            ),
        ));
    }
    let window = TimeWindow {
        now_ms: now_ms(),
        max_age_ms: i64::try_from(state.settings.retention.0.as_millis()).unwrap_or(i64::MAX),
        max_ahead_ms: MAX_AHEAD_MS,
    };
    let (mut ready, mut rejected) = prepare(&raws, &state.directory.view(), window);
    let missed = rejected
        .iter()
        .any(|r| matches!(r.code, "unknown_consumer" | "unknown_api" | "api_mismatch"));
    // A subscription made by another replica since the last reload: look once more.
    if missed && state.directory.reload_after_miss().await {
        (ready, rejected) = prepare(&raws, &state.directory.view(), window);
    }

    let billable: Vec<bool> = ready.iter().map(|(_, r)| r.billable).collect();
    let records = ready.into_iter().map(|(_, r)| r).collect();
    let fresh = state.ingestor.submit(records).await.map_err(ingest_error)?;
    let mut summary = BatchSummary {
        rejected,
        ..BatchSummary::default()
    };
    for (new, billable) in fresh.into_iter().zip(billable) {
        match (new, billable) {
            (false, _) => summary.duplicates += 1,
            (true, true) => summary.accepted += 1,
            (true, false) => {
                summary.accepted += 1;
                summary.not_billable += 1;
            }
        }
    }
    Ok((StatusCode::ACCEPTED, Json(summary)).into_response())
}

fn ingest_error(error: IngestError) -> ApiError {
    match error {
        IngestError::QueueFull => busy("the ingestion queue is full; retry shortly", "queue_full"),
        IngestError::Stopped => busy(
            "tollbooth is shutting down; retry on another replica",
            "shutting_down",
        ),
        IngestError::Store(store) => {
            tracing::error!(error = %store, "records not written");
            busy(
                "the records could not be written; nothing was stored, retry",
                "write_failed",
            )
        }
    }
}

/// 503 with `Retry-After`: nothing of the request was stored, and sending it again is safe.
fn busy(message: &str, code: &'static str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}
