//! `POST /v1/events`: the gateway's call records. Answered 202 only once they are committed.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{GatewayCaller, body_bytes};
use crate::metering::writer::IngestError;
use crate::metering::{BatchSummary, TimeWindow, prepare, split_body};
use crate::store::now_ms;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Calls may be stamped this far ahead of tollbooth's clock.
const MAX_AHEAD_MS: i64 = 5 * 60 * 1000;

pub fn router(max_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest))
        .layer(DefaultBodyLimit::max(max_bytes))
}

/// Call records from a gateway: a JSON array of records, or NDJSON (one record a line; a lone
/// object is one line). Each record is checked on its own: one that does not parse or is refused
/// is listed in `rejected` with its index, and the rest still count. Answered once committed.
#[utoipa::path(post, path = "/v1/events", tag = "metering", operation_id = "ingest_events",
    request_body(content(
        (Vec<crate::metering::record::CallRecordInput> = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 202, description = "Committed: what was stored, seen before, not billable or rejected", body = BatchSummary),
        (status = 413, description = "`payload_too_large`: over `TOLLBOOTH_EVENTS_MAX_BYTES`; `too_many_records`: over `TOLLBOOTH_EVENTS_MAX_RECORDS`", body = ErrorBody),
        (status = 503, description = "`queue_full` · `shutting_down` · `write_failed`: nothing was stored; send again after `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
    security(("gateway_key" = [])))]
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
    if text.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the body holds no call records: send a JSON array or one JSON object per line",
        ));
    }
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
