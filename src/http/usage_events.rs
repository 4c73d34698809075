//! `POST /v1/usage-events`: usage that is not a call (minutes of a job, records processed),
//! for one of an api's declared meters, in Kill Bill's shape: a tracking id deduplicated as a
//! record id is, a time, and a decimal value. Answered 202 only once committed.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{GatewayOrAdmin, body_bytes};
use crate::domain::meter::{Aggregation, is_value};
use crate::metering::directory::DirectoryView;
use crate::metering::meters::{self, ApiMeters};
use crate::metering::record::{Rejection, rfc3339_ms};
use crate::metering::{BatchSummary, RejectedRecord, key};
use crate::store::{Reading, Readings, StoredEvent, now_ms};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Not an event's fault: the database could not be read, and the request is answered 503.
const UNAVAILABLE: &str = "unavailable";

/// Events may be stamped this far ahead of tollbooth's clock, as call records may.
const MAX_AHEAD_MS: i64 = 5 * 60 * 1000;

pub fn router(max_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest_usage_events))
        .layer(DefaultBodyLimit::max(max_bytes))
}

/// One usage event.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageEventInput {
    /// The event's id: an event sent again with it is counted once.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\x00]*$")]
    pub tracking_id: String,
    /// The key of one of the api's declared meters.
    #[schema(pattern = "^[^\\x00]*$")]
    pub meter: String,
    /// The subscription (its id or external id); or give `consumer`.
    #[serde(default)]
    #[schema(pattern = "^[^\\x00]*$")]
    pub subscription: Option<String>,
    /// A consumer key of the subscription; or give `subscription`.
    #[serde(default)]
    #[schema(pattern = "^[^\\x00]*$")]
    pub consumer: Option<String>,
    /// When the usage happened (RFC 3339): within the retention window, at most 5 minutes ahead.
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// A non-negative decimal (a number or a string) for a sum, max or latest meter; the value
    /// counted for a unique_count meter; not read for a count meter (the event counts one).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub value: Option<Box<RawValue>>,
    /// The event's values of the api's dimensions.
    #[serde(default)]
    pub dimensions: HashMap<String, String>,
}

/// Usage events for an api's declared meters (`sum`: minutes, records; `max`: peak jobs;
/// `latest`; `unique_count`; `count`), by subscription or consumer key: a JSON array, or one
/// event. Each event is checked on its own; one refused is listed in `rejected` with its index,
/// and the rest still count. Answered once committed; a `tracking_id` seen before is counted
/// once. Takes a gateway key or the admin token.
#[utoipa::path(post, path = "/v1/usage-events", tag = "metering", operation_id = "ingest_usage_events",
    request_body(content((Vec<UsageEventInput> = "application/json"))),
    responses(
        (status = 202, description = "Committed: what was stored, seen before or rejected", body = BatchSummary),
        (status = 400, description = "`malformed_json` · `empty_body` · `no_readable_records` (not one event could be read; `details.rejected` says why)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: neither a gateway key nor the admin token", body = ErrorBody),
        (status = 413, description = "`payload_too_large` · `too_many_records`", body = ErrorBody),
        (status = 503, description = "`queue_full` · `shutting_down` · `write_failed`: nothing was stored; send again after `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
    security(("gateway_key" = []), ("admin_token" = [])))]
async fn ingest_usage_events(
    _caller: GatewayOrAdmin,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(request, &state).await?;
    let raws = events_of(&bytes)?;
    let limit = state.settings.events_max_records;
    if raws.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} events in one request; at most {limit} are taken",
                raws.len()
            ),
        ));
    }
    let window = crate::metering::TimeWindow {
        now_ms: now_ms(),
        max_age_ms: i64::try_from(state.settings.retention.0.as_millis()).unwrap_or(i64::MAX),
        max_ahead_ms: MAX_AHEAD_MS,
    };
    let mut resolver = Resolver::new(&state);
    let mut ready = Vec::with_capacity(raws.len());
    let mut rejected = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        match prepare(raw, &mut resolver, window).await {
            Ok(event) => ready.push(event),
            // The database could not be read: nothing is stored, the sender sends again.
            Err(rejection) if rejection.code == UNAVAILABLE => {
                return Err(super::events::busy(
                    "the events' subscriptions could not be read; nothing was stored, retry",
                    "write_failed",
                ));
            }
            Err(rejection) => rejected.push(RejectedRecord {
                index,
                code: rejection.code,
                message: rejection.message,
            }),
        }
    }
    if ready.is_empty() && rejected.iter().all(|r| r.code == "invalid_record") {
        let first: Vec<_> = rejected
            .iter()
            .take(20)
            .map(|r| json!({"index": r.index, "code": r.code, "message": r.message}))
            .collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_readable_records",
            format!(
                "not one of the {} events could be read as a usage event; the first rejections \
                 are in `details.rejected`",
                raws.len()
            ),
        )
        .with_details(json!({ "rejected": first })));
    }
    let fresh = state
        .ingestor
        .submit_events(ready)
        .await
        .map_err(super::events::ingest_error)?;
    let mut summary = BatchSummary {
        rejected,
        ..BatchSummary::default()
    };
    for new in fresh {
        match new {
            true => summary.accepted += 1,
            false => summary.duplicates += 1,
        }
    }
    Ok((StatusCode::ACCEPTED, Json(summary)).into_response())
}

/// The events of a body: a JSON array or one JSON object.
fn events_of(bytes: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let malformed = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not a JSON array of events or one event: {e}"),
        )
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the body holds no usage events: send a JSON array of events",
        ));
    }
    if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<&RawValue>>(text).map_err(malformed)
    } else {
        serde_json::from_str::<&RawValue>(text)
            .map(|one| vec![one])
            .map_err(malformed)
    }
}

/// Where an event's usage goes.
#[derive(Clone)]
struct Target {
    subscription_id: String,
    api_id: Arc<str>,
    first_day_ms: i64,
    canceled_at: Option<i64>,
}

/// Finds events' subscriptions: a consumer key in the directory, a subscription in the
/// database, each looked up once per request.
struct Resolver<'s> {
    state: &'s AppState,
    directory: DirectoryView,
    subscriptions: HashMap<String, Option<Target>>,
}

impl<'s> Resolver<'s> {
    fn new(state: &'s AppState) -> Self {
        Self {
            state,
            directory: state.directory.view(),
            subscriptions: HashMap::new(),
        }
    }

    async fn target(&mut self, event: &UsageEventInput) -> Result<Target, Rejection> {
        match (&event.subscription, &event.consumer) {
            (Some(_), Some(_)) | (None, None) => Err(Rejection::new(
                "invalid_record",
                "subscription: give the subscription or a consumer key, one of the two",
            )),
            (None, Some(consumer)) => {
                let found = self.directory.consumer(consumer).map(|c| Target {
                    subscription_id: c.subscription_id.to_string(),
                    api_id: c.api_id.clone(),
                    first_day_ms: c.first_day_ms,
                    canceled_at: None,
                });
                found.ok_or_else(|| {
                    Rejection::new(
                        "unknown_consumer",
                        format!(
                            "consumer: `{consumer}` is not a consumer key of a live subscription"
                        ),
                    )
                })
            }
            (Some(subscription), None) => {
                if !self.subscriptions.contains_key(subscription) {
                    let found = self.read(subscription).await.map_err(|error| {
                        tracing::error!(%error, "a usage event's subscription could not be read");
                        Rejection::new(UNAVAILABLE, "subscription: could not be read")
                    })?;
                    self.subscriptions.insert(subscription.clone(), found);
                }
                self.subscriptions[subscription].clone().ok_or_else(|| {
                    Rejection::new(
                        "unknown_subscription",
                        format!("subscription: `{subscription}` is not a subscription"),
                    )
                })
            }
        }
    }

    async fn read(&self, subscription: &str) -> crate::store::StoreResult<Option<Target>> {
        let mut tx = self.state.store.begin_read().await?;
        let Some(found) = tx.find_subscription(subscription).await? else {
            return Ok(None);
        };
        let Some(tier) = tx.find_tier(&found.tier).await? else {
            return Ok(None);
        };
        Ok(Some(Target {
            subscription_id: found.id,
            api_id: Arc::from(tier.api_id),
            first_day_ms: crate::domain::time::floor_to(
                found.started_at,
                crate::domain::time::DAY_MS,
            ),
            canceled_at: found.canceled_at,
        }))
    }
}

/// Checks one event and reads it for its meter.
async fn prepare(
    raw: &RawValue,
    resolver: &mut Resolver<'_>,
    window: crate::metering::TimeWindow,
) -> Result<StoredEvent, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let event: UsageEventInput =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let inner = error.inner().to_string();
            let inner = crate::domain::field::without_position(&inner);
            let message = match error.path().to_string().as_str() {
                "." => inner.to_owned(),
                path => format!("{path}: {inner}"),
            };
            Rejection::new("invalid_record", message)
        })?;
    let unstorable = [&event.tracking_id, &event.meter]
        .into_iter()
        .chain(&event.subscription)
        .chain(&event.consumer)
        .any(|text| crate::domain::text::has_unstorable(text));
    if unstorable {
        return Err(Rejection::new(
            "invalid_record",
            "must not hold a NUL character (U+0000)",
        ));
    }
    if event.tracking_id.is_empty() || event.tracking_id.len() > 200 {
        return Err(Rejection::new(
            "invalid_record",
            "tracking_id: must be 1 to 200 characters",
        ));
    }
    let occurred_at = rfc3339_ms(&event.timestamp).ok_or_else(|| {
        Rejection::new(
            "invalid_record",
            format!("timestamp: `{}` is not an RFC 3339 time", event.timestamp),
        )
    })?;
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
    let target = resolver.target(&event).await?;
    if occurred_at < target.first_day_ms {
        return Err(Rejection::new(
            "before_subscription",
            "timestamp: before the day the subscription started",
        ));
    }
    if target.canceled_at.is_some_and(|at| at <= occurred_at) {
        return Err(Rejection::new(
            "after_cancellation",
            "timestamp: after the subscription was canceled",
        ));
    }
    let api = resolver
        .directory
        .api_by_id(&target.api_id)
        .ok_or_else(|| Rejection::new("unknown_api", "the subscription's api is not known"))?;
    let unknown = || {
        Rejection::new(
            "unknown_meter",
            format!(
                "meter: `{}` is not a meter the api declares (usage events feed declared meters, \
                 not the built-in calls and units)",
                event.meter
            ),
        )
    };
    let api_meters: &ApiMeters = api.meters.as_deref().ok_or_else(unknown)?;
    let (key, meter) = api_meters.meter(&event.meter).ok_or_else(unknown)?;
    let text = event.value.as_deref().map(value_text).transpose()?;
    let needed = || {
        Rejection::new(
            "invalid_quantity",
            format!(
                "value: required for the {} meter `{key}`",
                meter.aggregation.as_str()
            ),
        )
    };
    let (value_micros, unique) = match meter.aggregation {
        Aggregation::Count => (1_000_000, None),
        Aggregation::Sum | Aggregation::Max | Aggregation::Latest => (
            meters::value_micros(&text.clone().ok_or_else(needed)?, || "value".to_owned())?,
            None,
        ),
        Aggregation::UniqueCount => {
            let text = text.clone().ok_or_else(needed)?;
            if !is_value(&text) {
                return Err(Rejection::new(
                    "invalid_property",
                    "value: a counted value is 1 to 200 characters, no control characters",
                ));
            }
            (1_000_000, Some(text))
        }
    };
    let properties: Vec<(Cow<'_, str>, Cow<'_, str>)> = event
        .dimensions
        .iter()
        .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
        .collect();
    let dimensions = meters::dimensions_of(
        &properties,
        &[],
        api_meters,
        &target.api_id,
        resolver.directory.dimensions(),
    )?;
    let value = text.clone().unwrap_or_default();
    Ok(StoredEvent {
        record_key: key::record_key(&event.tracking_id),
        tracking_id: event.tracking_id,
        subscription_id: target.subscription_id,
        occurred_at,
        value,
        readings: Readings {
            dimensions,
            list: vec![Reading {
                meter: key.clone(),
                aggregation: meter.aggregation,
                value_micros,
                unique,
            }],
            api: target.api_id.clone(),
        },
    })
}

/// An event's `value` as text: a JSON number as written (exact), a JSON string decoded; anything
/// else is refused.
fn value_text(raw: &RawValue) -> Result<String, Rejection> {
    let written = raw.get().trim();
    if written.starts_with('"') {
        return serde_json::from_str::<String>(written)
            .map_err(|_| Rejection::new("invalid_record", "value: not a JSON string"));
    }
    if written.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(written.to_owned());
    }
    Err(Rejection::new(
        "invalid_quantity",
        "value: a number, or a string (a decimal, or the value a unique_count meter counts)",
    ))
}
