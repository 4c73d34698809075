//! `POST /webhooks/stripe`: signed Stripe events. A bad signature is a 400 and changes nothing;
//! an event id seen before is acknowledged and does nothing.

use super::AppState;
use super::error::ApiError;
use super::extract::body_bytes;
use crate::access::{EventOutcome, apply_event};
use crate::stripe::webhook::StripeEvent;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/stripe", post(receive))
}

async fn receive(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let signature = request
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = body_bytes(request, &state).await?;
    let Some(secrets) = &state.webhook_secrets else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "webhooks_not_configured",
            "webhooks are refused: STRIPE_WEBHOOK_SECRET is not set",
        ));
    };
    secrets
        .verify(signature.as_deref(), &body, chrono::Utc::now().timestamp())
        .map_err(|error| {
            tracing::warn!(%error, "a Stripe webhook was refused");
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                error.to_string(),
            )
        })?;
    let event = StripeEvent::parse(&body).map_err(|message| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            format!("the event cannot be read: {message}"),
        )
    })?;
    let payload = String::from_utf8_lossy(&body);
    let outcome = apply_event(&state.store, &event, &payload).await?;
    if outcome == EventOutcome::Applied {
        state.access.reload().await?;
        state.directory.reload().await?;
    }
    tracing::info!(event = %event.id, kind = %event.type_name, outcome = outcome.as_str(), "Stripe event");
    Ok(Json(
        json!({ "received": true, "outcome": outcome.as_str() }),
    ))
}
