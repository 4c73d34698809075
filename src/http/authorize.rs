//! `GET /v1/authorize?consumer=&api=`: may this consumer call this api now? Answered from memory.

use super::AppState;
use super::error::ApiError;
use super::extract::{GatewayCaller, Query};
use crate::access::Decision;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/authorize", get(authorize))
}

#[derive(serde::Deserialize)]
struct AuthorizeQuery {
    consumer: Option<String>,
    api: Option<String>,
}

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
            Json(json!({ "allowed": true, "remaining": remaining })),
        )
            .into_response(),
        Decision::Refused { reason } => (
            StatusCode::FORBIDDEN,
            Json(json!({ "allowed": false, "reason": reason })),
        )
            .into_response(),
        Decision::Unpaid { since } => (
            StatusCode::PAYMENT_REQUIRED,
            Json(json!({ "allowed": false, "reason": "payment_overdue",
                         "past_due_since": super::timestamp(since) })),
        )
            .into_response(),
        Decision::QuotaReached { limit, resets_at } => {
            let wait = (resets_at - crate::store::now_ms()).max(0) / 1000 + 1;
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(
                    json!({ "allowed": false, "reason": "quota_exhausted", "remaining": 0,
                             "limit": limit, "resets_at": super::timestamp(resets_at) }),
                ),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}
