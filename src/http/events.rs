//! `POST /v1/events`: the gateway's call records. Answered 202 only once they are committed.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{GatewayCaller, body_bytes};
use crate::metering::directory::GatewayEntry;
use crate::metering::formats::{self, Endpoint};
use crate::metering::writer::IngestError;
use crate::metering::{BatchSummary, TimeWindow, prepare};
use crate::store::now_ms;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use serde_json::json;
use std::io::Read as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Calls may be stamped this far ahead of tollbooth's clock.
const MAX_AHEAD_MS: i64 = 5 * 60 * 1000;

pub fn router(max_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest))
        .routes(routes!(ingest_cloudevents))
        .routes(routes!(ingest_otlp_logs))
        .layer(DefaultBodyLimit::max(max_bytes))
}

/// Call records from a gateway, in the format its `ingest.format` names (`auto`: told by the
/// body's shape): tollbooth's own records, Kong `http-log` entries, APISIX `http-logger`
/// entries, CloudEvents, an OTLP logs request, or JSON access-log lines (bare, Fluent Bit's,
/// Vector's). A JSON array, one JSON document, or NDJSON (one record a line); gzip or zstd with
/// `Content-Encoding: gzip` or `zstd`. Each record is checked on its own: one that does not parse or is
/// refused is listed in `rejected` with its index, and the rest still count. A body of which no
/// record could be read is a 400, never a 202. Answered once committed.
#[utoipa::path(post, path = "/v1/events", tag = "metering", operation_id = "ingest_events",
    request_body(content(
        (Vec<crate::metering::record::CallRecordInput> = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 202, description = "Committed: what was stored, seen before, not billable or rejected", body = BatchSummary),
        (status = 400, description = "`malformed_json` · `empty_body` · `no_readable_records` (every record rejected as unreadable; `details.rejected` says why) · `malformed_gzip` · `malformed_zstd`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over `TOLLBOOTH_EVENTS_MAX_BYTES` (after decompression); `too_many_records`: over `TOLLBOOTH_EVENTS_MAX_RECORDS`", body = ErrorBody),
        (status = 415, description = "`unsupported_encoding`: a `Content-Encoding` other than gzip, zstd or identity", body = ErrorBody),
        (status = 503, description = "`queue_full` · `shutting_down` · `write_failed`: nothing was stored; send again after `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
    security(("gateway_key" = [])))]
async fn ingest(
    GatewayCaller(gateway): GatewayCaller,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    take(Endpoint::Events, &gateway, &state, request).await
}

/// CloudEvents as OpenMeter's ingestion takes them (`application/cloudevents+json`: one event;
/// `application/cloudevents-batch+json`: an array): an OpenMeter client or Kong's metering plugin
/// pointed at tollbooth unchanged. `id` + `source` is the record's id, `subject` the caller's key.
#[utoipa::path(post, path = "/api/v1/events", tag = "metering", operation_id = "ingest_cloudevents",
    request_body(content(
        (serde_json::Value = "application/cloudevents+json"),
        (Vec<serde_json::Value> = "application/cloudevents-batch+json"),
    )),
    responses(
        (status = 202, description = "Committed", body = BatchSummary),
        (status = 400, description = "`malformed_json` · `empty_body` · `no_readable_records`", body = ErrorBody),
        (status = 413, description = "`payload_too_large` · `too_many_records`", body = ErrorBody),
        (status = 503, description = "Nothing was stored; send again after `Retry-After`", body = ErrorBody),
    ),
    security(("gateway_key" = [])))]
async fn ingest_cloudevents(
    GatewayCaller(gateway): GatewayCaller,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    take(Endpoint::CloudEvents, &gateway, &state, request).await
}

/// OTLP/HTTP logs (`ExportLogsServiceRequest`), as an OpenTelemetry collector's `otlphttp`
/// exporter or Envoy's OpenTelemetry access logger (`http_service`) posts them, in JSON or in
/// protobuf (`application/x-protobuf`, answered in protobuf with OTLP's `partial_success`): each
/// log record is a call, read from the OpenTelemetry HTTP attributes.
#[utoipa::path(post, path = "/v1/logs", tag = "metering", operation_id = "ingest_otlp_logs",
    request_body(content(
        (serde_json::Value = "application/json"),
        (Vec<u8> = "application/x-protobuf"),
    )),
    responses(
        (status = 202, description = "Committed (a JSON request)", body = BatchSummary),
        (status = 200, description = "Committed (a protobuf request): an `ExportLogsServiceResponse`, its `partial_success` counting the rejected records", content_type = "application/x-protobuf", body = Vec<u8>),
        (status = 400, description = "`malformed_json` · `empty_body` · `no_readable_records`", body = ErrorBody),
        (status = 413, description = "`payload_too_large` · `too_many_records`", body = ErrorBody),
        (status = 503, description = "Nothing was stored; send again after `Retry-After`", body = ErrorBody),
    ),
    security(("gateway_key" = [])))]
async fn ingest_otlp_logs(
    GatewayCaller(gateway): GatewayCaller,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    if is_protobuf(request.headers()) {
        return take_otlp_protobuf(&gateway, &state, request).await;
    }
    take(Endpoint::OtlpLogs, &gateway, &state, request).await
}

/// Whether a body is protobuf by its `Content-Type` (OTLP's `application/x-protobuf`).
fn is_protobuf(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|kind| {
            let kind = kind.trim();
            kind.eq_ignore_ascii_case("application/x-protobuf")
                || kind.eq_ignore_ascii_case("application/protobuf")
        })
}

/// An OTLP/HTTP protobuf body: read, committed, and answered as OTLP says, 200 with an
/// `ExportLogsServiceResponse` whose `partial_success` counts the records not taken.
async fn take_otlp_protobuf(
    gateway: &GatewayEntry,
    state: &AppState,
    request: Request,
) -> Result<Response, ApiError> {
    let encoding = content_encoding(&request);
    let bytes = body_bytes(request, state).await?;
    let bytes = decoded(encoding.as_deref(), bytes, state.settings.events_max_bytes)?;
    let export = otlp_request(&bytes)?;
    let reads = formats::otlp_protobuf(&export, &gateway.ingest);
    let summary = commit(&reads, gateway, state).await?;
    let answer = prost::Message::encode_to_vec(&otlp_response(&summary));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        answer,
    )
        .into_response())
}

/// An `ExportLogsServiceRequest` in protobuf; one that does not decode is a 400.
pub(super) fn otlp_request(bytes: &[u8]) -> Result<ExportLogsServiceRequest, ApiError> {
    <ExportLogsServiceRequest as prost::Message>::decode(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_protobuf",
            format!("the body is not an OTLP ExportLogsServiceRequest in protobuf: {e}"),
        )
    })
}

/// OTLP's answer to a committed request: the records not taken, counted, and the first reasons.
pub(super) fn otlp_response(summary: &BatchSummary) -> ExportLogsServiceResponse {
    if summary.rejected.is_empty() {
        return ExportLogsServiceResponse::default();
    }
    let reasons: Vec<String> = summary
        .rejected
        .iter()
        .take(5)
        .map(|r| format!("record {}: {} ({})", r.index, r.message, r.code))
        .collect();
    ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(summary.rejected.len()).unwrap_or(i64::MAX),
            error_message: format!(
                "{} of the log records were not taken; {}",
                summary.rejected.len(),
                reasons.join("; ")
            ),
        }),
    }
}

fn content_encoding(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// Reads, checks and commits a body of call records from `gateway`.
async fn take(
    endpoint: Endpoint,
    gateway: &GatewayEntry,
    state: &AppState,
    request: Request,
) -> Result<Response, ApiError> {
    let encoding = content_encoding(&request);
    let bytes = body_bytes(request, state).await?;
    let bytes = decoded(encoding.as_deref(), bytes, state.settings.events_max_bytes)?;
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
    let reads = formats::read(text, endpoint, &gateway.ingest).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not a JSON array, a JSON document or NDJSON: {e}"),
        )
        .with_details(json!({ "line": e.line, "column": e.column }))
    })?;
    let summary = commit(&reads, gateway, state).await?;
    Ok((StatusCode::ACCEPTED, Json(summary)).into_response())
}

/// Checks and commits the records read from one request of `gateway`: too many is a 413, none
/// readable a 400; otherwise what was stored, seen before and rejected, once committed.
pub(super) async fn commit(
    reads: &[formats::Read<'_>],
    gateway: &GatewayEntry,
    state: &AppState,
) -> Result<BatchSummary, ApiError> {
    let limit = state.settings.events_max_records;
    if reads.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} records in one request; at most {limit} are taken",
                reads.len()
            ),
        ));
    }
    if reads.iter().all(Result::is_err) {
        let rejected: Vec<_> = reads
            .iter()
            .enumerate()
            .filter_map(|(index, read)| read.as_ref().err().map(|r| (index, r)))
            .take(20)
            .map(|(index, r)| json!({"index": index, "code": r.code, "message": r.message}))
            .collect();
        state.ingest_stats.rejected_body(&gateway.id, reads);
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_readable_records",
            format!(
                "not one of the {} records could be read as the gateway's format ({:?}); the \
                 first rejections are in `details.rejected`",
                reads.len(),
                gateway.ingest.format
            ),
        )
        .with_details(json!({ "rejected": rejected })));
    }
    let window = TimeWindow {
        now_ms: now_ms(),
        max_age_ms: i64::try_from(state.settings.retention.0.as_millis()).unwrap_or(i64::MAX),
        max_ahead_ms: MAX_AHEAD_MS,
    };
    let (mut ready, mut rejected) = prepare(reads, &state.directory.view(), window);
    let missed = rejected
        .iter()
        .any(|r| matches!(r.code, "unknown_consumer" | "unknown_api" | "api_mismatch"));
    // A subscription made by another replica since the last reload: look once more.
    if missed && state.directory.reload_after_miss().await {
        (ready, rejected) = prepare(reads, &state.directory.view(), window);
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
    state.ingest_stats.taken(&gateway.id, &summary);
    Ok(summary)
}

/// The body as sent, or gzip- or zstd-decoded, bounded by `max_bytes` either way (a small body
/// that inflates past it is a 413, as a large one is).
fn decoded(encoding: Option<&str>, bytes: Bytes, max_bytes: usize) -> Result<Bytes, ApiError> {
    let inflated = match encoding {
        None | Some("" | "identity") => return Ok(bytes),
        Some("gzip" | "x-gzip") => {
            let mut inflated = Vec::with_capacity(bytes.len().saturating_mul(4).min(max_bytes));
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .take(room(0, max_bytes))
                .read_to_end(&mut inflated)
                .map_err(|e| malformed("gzip", &e.to_string()))?;
            inflated
        }
        Some("zstd") => unzstd(&bytes, max_bytes).map_err(|e| malformed("zstd", &e))?,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!(
                    "Content-Encoding `{other}` is not taken: send gzip, zstd or an uncompressed body"
                ),
            )
            .with_details(json!({ "field": "Content-Encoding" })));
        }
    };
    if inflated.len() > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body inflates past {max_bytes} bytes (TOLLBOOTH_EVENTS_MAX_BYTES)"),
        ));
    }
    Ok(Bytes::from(inflated))
}

/// How many more bytes to inflate: one past the bound, so that going past it shows.
fn room(inflated: usize, max_bytes: usize) -> u64 {
    u64::try_from(max_bytes.saturating_sub(inflated))
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

fn malformed(encoding: &'static str, error: &str) -> ApiError {
    let code = match encoding {
        "gzip" => "malformed_gzip",
        _ => "malformed_zstd",
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        code,
        format!("the body is not valid {encoding}: {error}"),
    )
}

/// Every zstd frame of a body, one after another, stopping one byte past `max_bytes`. The
/// decoder's window is bounded by its default (a frame asking for more is refused).
fn unzstd(bytes: &[u8], max_bytes: usize) -> Result<Vec<u8>, String> {
    let mut inflated = Vec::with_capacity(bytes.len().saturating_mul(4).min(max_bytes));
    let mut rest = bytes;
    while !rest.is_empty() && inflated.len() <= max_bytes {
        let frame =
            ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| e.to_string())?;
        frame
            .take(room(inflated.len(), max_bytes))
            .read_to_end(&mut inflated)
            .map_err(|e| e.to_string())?;
    }
    Ok(inflated)
}

pub(super) fn ingest_error(error: IngestError) -> ApiError {
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
pub(super) fn busy(message: &str, code: &'static str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}
