//! The gateway's access decision, answered from memory, in the forward-auth form every gateway
//! speaks: any method, at `/v1/authorize` or any path under it (Envoy appends the original path).
//!
//! Nothing the caller controls chooses what is decided: the gateway's own key comes from
//! `X-Tollbooth-Key` (or `tollbooth_key` in the auth address, for Traefik, which cannot add
//! headers; or `Authorization: Bearer` when that is a gateway key), the api from the gateway's
//! configuration (a header it sets, or the auth address), and the caller's key only from the
//! places the gateway's `access.consumer_from` names. tollbooth's own query is never read for the
//! consumer or the api: where a gateway forwards the caller's query (Envoy), it is the caller's.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{bearer, known_gateway};
use crate::access::{Decision, QuotaLeft};
use crate::domain::gateway::{ApiSource, GatewayAccess, KeySource};
use crate::metering::directory::GatewayEntry;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, any, on};
use serde::Serialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    let other_methods = MethodFilter::POST
        .or(MethodFilter::PUT)
        .or(MethodFilter::PATCH)
        .or(MethodFilter::DELETE)
        .or(MethodFilter::OPTIONS);
    OpenApiRouter::new()
        .routes(routes!(authorize))
        .route("/v1/authorize", on(other_methods, authorize))
        .route("/v1/authorize/{*under}", any(authorize))
}

/// Yes: the call may go on.
#[derive(Serialize, utoipa::ToSchema)]
struct Allowed {
    allowed: bool,
    /// tollbooth's id of the caller's subscription.
    subscription: String,
    /// The slug of its tier.
    tier: String,
    /// Calls left in the period after this one under a hard quota; `null` without one.
    remaining: Option<u64>,
}

/// No: no key, an unknown key, another api, or a canceled subscription.
#[derive(Serialize, utoipa::ToSchema)]
struct Refused {
    allowed: bool,
    /// `missing_consumer` (401), `unknown_consumer`, `not_subscribed`, `canceled` or `not_billable_yet` (403).
    reason: String,
}

/// No: unpaid past the grace period.
#[derive(Serialize, utoipa::ToSchema)]
struct Unpaid {
    allowed: bool,
    /// `payment_overdue`.
    reason: String,
    #[schema(format = DateTime)]
    past_due_since: String,
}

/// No: the period's hard quota is used up.
#[derive(Serialize, utoipa::ToSchema)]
struct QuotaExhausted {
    allowed: bool,
    /// `quota_exhausted`.
    reason: String,
    remaining: u64,
    limit: u64,
    #[schema(format = DateTime)]
    resets_at: String,
}

/// A 401: the gateway's key is missing or wrong (an error), or the caller sent no key.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only the document names it; each answer is built as one of the two.
enum Unauthorized {
    Gateway(ErrorBody),
    Caller(Refused),
}

/// The gateway's own key.
const GATEWAY_KEY_HEADER: &str = "x-tollbooth-key";
/// The gateway's own key in the auth address, for gateways that cannot add a header.
const GATEWAY_KEY_PARAM: &str = "tollbooth_key";

/// May this caller call this api now? Any method; any path under `/v1/authorize/` is the same.
#[utoipa::path(get, path = "/v1/authorize", tag = "access", operation_id = "authorize",
    params(
        ("X-Tollbooth-Key" = Option<String>, Header, description = "The gateway's key (or `tollbooth_key` in the query, or `Authorization: Bearer` when that is the gateway's key)"),
        ("X-Api-Key" = Option<String>, Header, description = "The caller's key, where the gateway's `access.consumer_from` says (by default this header)"),
        ("X-Tollbooth-Api" = Option<String>, Header, description = "The api's slug or id, where the gateway's `access.api_from` says (by default this header, which the gateway's configuration sets)"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The original request's URI, for a caller's key in its query"),
    ),
    responses(
        (status = 200, description = "Allowed; `X-Tollbooth-Subscription`, `X-Tollbooth-Tier` and, under a hard quota, `X-Tollbooth-Remaining` and `RateLimit-*` for the upstream", body = Allowed),
        (status = 400, description = "`missing_api`: the gateway named no api", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no or a wrong gateway key (an error body); `missing_consumer`: the caller sent no key", body = Unauthorized),
        (status = 402, description = "Refused: payment overdue", body = Unpaid),
        (status = 403, description = "Refused", body = Refused),
        (status = 429, description = "Refused: quota exhausted", body = QuotaExhausted,
            headers(("Retry-After" = u64, description = "Seconds until the period resets"))),
    ),
    security(("gateway_key" = [])))]
async fn authorize(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    decide(&state, &uri, &headers).await
}

/// The answer to a forward-auth request with this URI and these headers (Envoy's gRPC form is
/// turned into one, see `ext_authz`).
pub(super) async fn decide(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (gateway, by_authorization) = gateway_of(state, headers, uri.query()).await?;
    let access = &*gateway.access;
    let under = uri.path().strip_prefix("/v1/authorize").unwrap_or("");
    let (api, forwarded_path) = match &access.api_from {
        ApiSource::Header(name) => (header_text(headers, name), under),
        ApiSource::Route => (None, under),
        ApiSource::AuthPath => {
            let rest = under.strip_prefix('/').unwrap_or("");
            let segment = rest.split('/').next().unwrap_or_default();
            let api = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .ok()
                .filter(|api| !api.is_empty())
                .map(|api| api.into_owned());
            // What Envoy appended after the api, its leading `/` kept (`/` for the root).
            (api, &rest[segment.len()..])
        }
    };
    let api = match api {
        Some(api) => api,
        None if access.api_from == ApiSource::Route => {
            let host =
                header_text(headers, "x-forwarded-host").or_else(|| header_text(headers, "host"));
            let path = original_path(headers, forwarded_path);
            match state.directory.view().route(host.as_deref(), &path) {
                Some(api) => api.to_owned(),
                None => return Err(no_route(host.as_deref(), &path)),
            }
        }
        None => return Err(missing_api(access)),
    };
    let original_query = original_query(headers, forwarded_path, uri.query());
    let consumer = access.consumer_from.iter().find_map(|source| match source {
        KeySource::Header(name) => header_text(headers, name),
        KeySource::Bearer if !by_authorization => bearer(headers)
            .filter(|key| !key.is_empty())
            .map(str::to_owned),
        KeySource::Bearer => None,
        KeySource::Query(name) => original_query.as_deref().and_then(|q| query_param(q, name)),
    });
    let Some(consumer) = consumer else {
        return Ok(refuse(
            access,
            StatusCode::UNAUTHORIZED,
            "missing_consumer",
            json!({"allowed": false, "reason": "missing_consumer"}),
        ));
    };
    let now = crate::store::now_ms();
    let mut decision = state
        .access
        .decide(&state.directory.view(), &consumer, &api, now);
    // A key made by another replica since the last reload.
    if decision
        == (Decision::Refused {
            reason: "unknown_consumer",
        })
        && state.directory.reload_after_miss().await
    {
        state.access.catch_up().await?;
        decision = state
            .access
            .decide(&state.directory.view(), &consumer, &api, now);
    }
    Ok(answer(decision, access))
}

/// The gateway asking, and whether its key came in `Authorization` (which is then not the
/// caller's).
async fn gateway_of(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(GatewayEntry, bool), ApiError> {
    let wrong = || ApiError::unauthorized("the gateway key is not valid");
    if let Some(key) = header_text(headers, GATEWAY_KEY_HEADER) {
        return known_gateway(state, &key)
            .await
            .map(|g| (g, false))
            .ok_or_else(wrong);
    }
    if let Some(key) = query.and_then(|q| query_param(q, GATEWAY_KEY_PARAM)) {
        return known_gateway(state, &key)
            .await
            .map(|g| (g, false))
            .ok_or_else(wrong);
    }
    if let Some(key) = bearer(headers)
        && let Some(gateway) = known_gateway(state, key).await
    {
        return Ok((gateway, true));
    }
    Err(ApiError::unauthorized(
        "send the gateway key in `X-Tollbooth-Key` (or as `tollbooth_key` in the auth address)",
    ))
}

/// A header's value as text, when present, readable and not empty.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The first non-empty value of a query parameter.
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, value)| key == name && !value.is_empty())
        .map(|(_, value)| value.into_owned())
}

/// The original request's query: from the URI the gateway forwards in `X-Forwarded-Uri` (Traefik,
/// Caddy, APISIX, the shipped NGINX and HAProxy recipes) or `X-Original-URI`, else, when the
/// original path came under `/v1/authorize` (Envoy), this request's own query.
fn original_query(
    headers: &HeaderMap,
    forwarded_path: &str,
    query: Option<&str>,
) -> Option<String> {
    if let Some(uri) = forwarded_uri(headers) {
        return uri.split_once('?').map(|(_, q)| q.to_owned());
    }
    (!forwarded_path.is_empty())
        .then_some(query)
        .flatten()
        .map(str::to_owned)
}

/// The original request's path: from `X-Forwarded-Uri` or `X-Original-URI`, else the path under
/// `/v1/authorize` (Envoy), else `/`.
fn original_path(headers: &HeaderMap, forwarded_path: &str) -> String {
    let forwarded = forwarded_uri(headers);
    let path = match &forwarded {
        Some(uri) => uri.split(['?', '#']).next().unwrap_or_default(),
        None if forwarded_path.is_empty() => "/",
        None => forwarded_path,
    };
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// The original request's URI as the gateway forwards it, if it does.
fn forwarded_uri(headers: &HeaderMap) -> Option<String> {
    ["x-forwarded-uri", "x-original-uri"]
        .iter()
        .find_map(|name| header_text(headers, name))
}

fn no_route(host: Option<&str>, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "missing_api",
        format!(
            "no api is routed at host `{}` and path `{path}`: an api's `hosts` and \
             `path_prefixes` say where the gateway serves it",
            host.unwrap_or("")
        ),
    )
    .with_details(json!({ "field": "route" }))
}

fn missing_api(access: &GatewayAccess) -> ApiError {
    let (field, message) = match &access.api_from {
        ApiSource::Header(name) => (
            name.clone(),
            format!(
                "the gateway named no api: its configuration sets `{name}` to the api's slug \
                 (the `api` query parameter is not read: a caller could choose it)"
            ),
        ),
        ApiSource::AuthPath => (
            "path".to_owned(),
            "the gateway named no api: its auth address is `/v1/authorize/<api slug>`".to_owned(),
        ),
        ApiSource::Route => (
            "route".to_owned(),
            "no api is routed at the original request's host and path".to_owned(),
        ),
    };
    ApiError::new(StatusCode::BAD_REQUEST, "missing_api", message)
        .with_details(json!({ "field": field }))
}

fn answer(decision: Decision, access: &GatewayAccess) -> Response {
    match decision {
        Decision::Allowed {
            subscription_id,
            tier,
            quota,
        } => {
            metrics::counter!(crate::telemetry::names::DECISIONS, "outcome" => "allowed")
                .increment(1);
            let mut response = (
                StatusCode::OK,
                Json(Allowed {
                    allowed: true,
                    subscription: subscription_id.to_string(),
                    tier: tier.to_string(),
                    remaining: quota.as_ref().map(|q| q.remaining),
                }),
            )
                .into_response();
            let headers = response.headers_mut();
            set(headers, "x-tollbooth-subscription", &subscription_id);
            set(headers, "x-tollbooth-tier", &tier);
            if let Some(quota) = quota {
                set(
                    headers,
                    "x-tollbooth-remaining",
                    &quota.remaining.to_string(),
                );
                rate_limit(headers, &quota);
            }
            response
        }
        Decision::Refused { reason } => refuse(
            access,
            StatusCode::FORBIDDEN,
            reason,
            json!({"allowed": false, "reason": reason}),
        ),
        Decision::Unpaid { since } => refuse(
            access,
            StatusCode::PAYMENT_REQUIRED,
            "payment_overdue",
            serde_json::to_value(Unpaid {
                allowed: false,
                reason: "payment_overdue".to_owned(),
                past_due_since: super::timestamp(since),
            })
            .unwrap_or_default(),
        ),
        Decision::QuotaReached { limit, resets_at } => {
            let body = QuotaExhausted {
                allowed: false,
                reason: "quota_exhausted".to_owned(),
                remaining: 0,
                limit,
                resets_at: super::timestamp(resets_at),
            };
            let mut response = refuse(
                access,
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exhausted",
                serde_json::to_value(body).unwrap_or_default(),
            );
            let quota = QuotaLeft {
                limit,
                remaining: 0,
                resets_at,
            };
            let headers = response.headers_mut();
            set(
                headers,
                "retry-after",
                &seconds_until(resets_at).to_string(),
            );
            rate_limit(headers, &quota);
            response
        }
    }
}

/// A refusal: its own status, or the gateway's `refusal_status`; the reason in
/// `X-Tollbooth-Reason` and the status it stands for in `X-Tollbooth-Status`.
fn refuse(
    access: &GatewayAccess,
    status: StatusCode,
    reason: &str,
    body: serde_json::Value,
) -> Response {
    metrics::counter!(crate::telemetry::names::DECISIONS, "outcome" => reason.to_owned())
        .increment(1);
    let answered = access
        .refusal_status
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(status);
    let mut response = (answered, Json(body)).into_response();
    let headers = response.headers_mut();
    set(headers, "x-tollbooth-reason", reason);
    set(headers, "x-tollbooth-status", status.as_str());
    response
}

/// The IETF `RateLimit-*` fields of a hard quota (draft-ietf-httpapi-ratelimit-headers).
fn rate_limit(headers: &mut HeaderMap, quota: &QuotaLeft) {
    set(headers, "ratelimit-limit", &quota.limit.to_string());
    set(headers, "ratelimit-remaining", &quota.remaining.to_string());
    set(
        headers,
        "ratelimit-reset",
        &seconds_until(quota.resets_at).to_string(),
    );
}

fn seconds_until(at: i64) -> i64 {
    (at - crate::store::now_ms()).max(0) / 1000 + 1
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}
