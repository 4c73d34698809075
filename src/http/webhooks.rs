//! `POST /webhooks/stripe`: signed Stripe events. A bad signature is a 400 and changes nothing;
//! an event id seen before is acknowledged and does nothing.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::body_bytes;
use crate::access::{EventOutcome, apply_event};
use crate::stripe::webhook::StripeEvent;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// What tollbooth did with an event.
#[derive(Serialize, utoipa::ToSchema)]
struct Received {
    received: bool,
    /// `applied`, `replayed`, `ignored`, `unknown_object` or `stale`.
    outcome: String,
}

/// A Stripe event, signed in `Stripe-Signature` with `STRIPE_WEBHOOK_SECRET` (no bearer token).
#[utoipa::path(post, path = "/webhooks/stripe", tag = "stripe", operation_id = "stripe_webhook",
    params(("Stripe-Signature" = Option<String>, Header, description = "`t=…,v1=…`, as Stripe signs")),
    request_body(content = Object, description = "A Stripe event object, as Stripe sends it", content_type = "application/json"),
    responses(
        (status = 200, description = "Taken (or seen before)", body = Received),
        (status = 400, description = "`webhooks_not_configured` · `invalid_signature` · `invalid_event`: nothing changed", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    ))]
async fn receive(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Received>, ApiError> {
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
            metrics::counter!(crate::telemetry::names::WEBHOOK_EVENTS, "type" => "unknown", "outcome" => "invalid_signature")
                .increment(1);
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
    let applied = apply_event(&state.store, &state.notifier, &event, &payload).await?;
    let outcome = applied.outcome;
    if outcome == EventOutcome::Applied {
        state.access.catch_up().await?;
        state.directory.catch_up().await?;
        state.notifier.wake();
        if let Some((subscription, period_end)) = applied.close {
            close_in_background(&state, subscription, period_end);
        }
        if let Some(subscription) = applied.stripe_owed {
            settle_in_background(&state, subscription);
        }
    }
    metrics::counter!(crate::telemetry::names::WEBHOOK_EVENTS,
        "type" => event.type_name.to_string(), "outcome" => outcome.as_str())
    .increment(1);
    tracing::info!(event = %event.id, kind = %event.type_name, outcome = outcome.as_str(), "Stripe event");
    Ok(Json(Received {
        received: true,
        outcome: outcome.as_str().to_owned(),
    }))
}

/// Closes a renewed subscription's period while its invoice is a draft, without holding up the
/// webhook's answer; the daily job is the safety net if this fails.
fn close_in_background(state: &AppState, subscription: String, period_end: i64) {
    let state = state.clone();
    tokio::spawn(async move {
        let owner = crate::domain::ids::new_id("webhook");
        match state
            .billing_job(&owner)
            .close_now(&subscription, period_end)
            .await
        {
            Ok(report) if report.failures.is_empty() => {
                tracing::info!(%subscription, closed = report.cycles_closed, "period closed on invoice.created");
            }
            Ok(report) => {
                tracing::warn!(%subscription, failures = ?report.failures, "closing on invoice.created failed; the daily job retries")
            }
            Err(error) => {
                tracing::warn!(%subscription, %error, "closing on invoice.created failed; the daily job retries")
            }
        }
    });
}

/// Sends the Stripe writes an event left owed, without holding up the answer; a failure stays
/// on the intent for `tollbooth stripe sync` and the daily job.
fn settle_in_background(state: &AppState, subscription: String) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = state.stripe.settle(&state.store, &subscription).await {
            tracing::warn!(%subscription, %error, "a Stripe write after a webhook failed; it stays owed");
        }
    });
}
