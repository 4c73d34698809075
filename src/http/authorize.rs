//! `GET /v1/authorize?consumer=&api=`: may this consumer call this api now? Answered from memory.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{GatewayCaller, Query};
use crate::access::Decision;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(authorize))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuthorizeQuery {
    /// The gateway's key of the consumer (required).
    #[param(required, min_length = 1, pattern = "^[^\\x00]*$")]
    consumer: Option<String>,
    /// The api's slug or id (required).
    #[param(required, min_length = 1, pattern = "^[^\\x00]*$")]
    api: Option<String>,
}

/// Yes: the call may go on.
#[derive(Serialize, utoipa::ToSchema)]
struct Allowed {
    allowed: bool,
    /// Calls left in the period under a hard quota; `null` without one.
    remaining: Option<u64>,
}

/// No: an unknown consumer key, another api, or a canceled subscription.
#[derive(Serialize, utoipa::ToSchema)]
struct Refused {
    allowed: bool,
    /// `unknown_consumer`, `not_subscribed` or `canceled`.
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

/// May this consumer call this api now? Answered from memory.
#[utoipa::path(get, path = "/v1/authorize", tag = "access", operation_id = "authorize",
    params(AuthorizeQuery),
    responses(
        (status = 200, description = "Allowed", body = Allowed),
        (status = 400, description = "`missing_field`: `consumer` or `api` is missing or empty; `invalid_query`", body = ErrorBody),
        (status = 402, description = "Refused: payment overdue", body = Unpaid),
        (status = 403, description = "Refused", body = Refused),
        (status = 429, description = "Refused: quota exhausted", body = QuotaExhausted,
            headers(("Retry-After" = u64, description = "Seconds until the period resets"))),
    ),
    security(("gateway_key" = [])))]
async fn authorize(
    GatewayCaller(_gateway): GatewayCaller,
    State(state): State<AppState>,
    Query(query): Query<AuthorizeQuery>,
) -> Result<Response, ApiError> {
    let required = |value: Option<String>, field: &str| {
        value.filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_field",
                format!("`{field}` is required"),
            )
            .with_details(json!({ "field": field }))
        })
    };
    let consumer = required(query.consumer, "consumer")?;
    let api = required(query.api, "api")?;
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
    Ok(answer(decision))
}

fn answer(decision: Decision) -> Response {
    match decision {
        Decision::Allowed { remaining } => (
            StatusCode::OK,
            Json(Allowed {
                allowed: true,
                remaining,
            }),
        )
            .into_response(),
        Decision::Refused { reason } => (
            StatusCode::FORBIDDEN,
            Json(Refused {
                allowed: false,
                reason: reason.to_owned(),
            }),
        )
            .into_response(),
        Decision::Unpaid { since } => (
            StatusCode::PAYMENT_REQUIRED,
            Json(Unpaid {
                allowed: false,
                reason: "payment_overdue".to_owned(),
                past_due_since: super::timestamp(since),
            }),
        )
            .into_response(),
        Decision::QuotaReached { limit, resets_at } => {
            let wait = (resets_at - crate::store::now_ms()).max(0) / 1000 + 1;
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(QuotaExhausted {
                    allowed: false,
                    reason: "quota_exhausted".to_owned(),
                    remaining: 0,
                    limit,
                    resets_at: super::timestamp(resets_at),
                }),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}
