//! `/v1/subscriptions`: a subscriber on a tier, with its gateway consumer keys.

use super::error::ApiError;
use super::extract::{Admin, JsonBody, Pagination, Path};
use super::mirror::{self, WithStripe};
use super::{AppState, ListBody, put_status, timestamp};
use crate::catalog::{Mode, put_subscription};
use crate::domain::subscription::{SubscriptionSpec, SubscriptionStatus};
use crate::store::Subscription;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/subscriptions", get(list).post(create))
        .route("/v1/subscriptions/{id}", get(show))
        .route("/v1/subscriptions/{id}/cancel", post(cancel))
        .route("/v1/subscriptions/{id}/tier", post(change_tier))
        .route(
            "/v1/subscriptions/{id}/invoice-preview",
            get(invoice_preview),
        )
}

#[derive(Serialize)]
struct SubscriptionView {
    id: String,
    external_id: String,
    subscriber: String,
    tier: String,
    tier_version: i64,
    consumer_keys: Vec<String>,
    status: SubscriptionStatus,
    started_at: String,
    canceled_at: Option<String>,
    cancel_at_period_end: bool,
    created_at: String,
    updated_at: String,
}

impl From<Subscription> for SubscriptionView {
    fn from(s: Subscription) -> Self {
        Self {
            id: s.id,
            external_id: s.external_id,
            subscriber: s.subscriber,
            tier: s.tier,
            tier_version: s.tier_version,
            consumer_keys: s.consumer_keys,
            status: s.status,
            started_at: timestamp(s.started_at),
            canceled_at: s.canceled_at.map(timestamp),
            cancel_at_period_end: s.cancel_at_period_end,
            created_at: timestamp(s.created_at),
            updated_at: timestamp(s.updated_at),
        }
    }
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<SubscriptionSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (subscription, outcome) = put_subscription(&mut tx, &spec, Mode::Create).await?;
    tx.commit().await?;
    state.directory.catch_up().await?;
    state.access.catch_up().await?;
    mirror::settle(&state, &subscription.id).await?;
    Ok((
        put_status(outcome),
        Json(with_stripe(&state, subscription).await?),
    ))
}

async fn with_stripe(
    state: &AppState,
    subscription: Subscription,
) -> Result<WithStripe<SubscriptionView>, ApiError> {
    let stripe = mirror::view(state, &subscription.id, &[]).await?;
    Ok(WithStripe {
        row: subscription.into(),
        stripe,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    /// `period_end` (the default) or `now`.
    #[serde(default)]
    at: CancelAt,
}

#[derive(serde::Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum CancelAt {
    #[default]
    PeriodEnd,
    Now,
}

/// Cancels at the end of the current period, or now with a final invoice.
async fn cancel(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CancelRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (subscription, outcome) =
        crate::catalog::cancel_subscription(&mut tx, &id, request.at == CancelAt::Now).await?;
    tx.commit().await?;
    if outcome != crate::catalog::Outcome::Unchanged {
        state.notifier.notify(
            "subscription.status_changed",
            serde_json::json!({ "subscription": subscription.id, "status": subscription.status,
                                "cancel_at_period_end": subscription.cancel_at_period_end }),
        );
    }
    state.directory.catch_up().await?;
    state.access.catch_up().await?;
    if request.at == CancelAt::Now && outcome != crate::catalog::Outcome::Unchanged {
        report_final_usage(&state, &subscription.id).await;
    }
    mirror::settle(&state, &subscription.id).await?;
    Ok((
        put_status(outcome),
        Json(with_stripe(&state, subscription).await?),
    ))
}

/// Puts the usage of the period so far on Stripe before the Subscription is canceled with a
/// final invoice, which takes the pending items. A failure is logged and the cancel goes on: the
/// usage is then in the preview and the export, not on the final invoice.
async fn report_final_usage(state: &AppState, subscription_id: &str) {
    if !state.stripe.is_live() {
        return;
    }
    let owner = crate::domain::ids::new_id("cancel");
    match state.billing_job(&owner).report_now(subscription_id).await {
        Ok(report) if report.failures.is_empty() => {}
        Ok(report) => {
            tracing::warn!(%subscription_id, failures = ?report.failures, "usage could not be put on the final invoice")
        }
        Err(error) => {
            tracing::warn!(%subscription_id, %error, "usage could not be put on the final invoice")
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeTierRequest {
    tier: String,
}

/// Moves a subscription to another tier's newest version, prorated as that tier says.
async fn change_tier(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ChangeTierRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (subscription, outcome) = crate::catalog::change_tier(&mut tx, &id, &request.tier).await?;
    tx.commit().await?;
    state.access.catch_up().await?;
    mirror::settle(&state, &subscription.id).await?;
    Ok((
        put_status(outcome),
        Json(with_stripe(&state, subscription).await?),
    ))
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination,
) -> Result<Json<ListBody<SubscriptionView>>, ApiError> {
    let page = state
        .store
        .begin_read()
        .await?
        .list_subscriptions(&page)
        .await?;
    Ok(Json(ListBody::from_page(
        page,
        |s| &s.id,
        SubscriptionView::from,
    )))
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WithStripe<SubscriptionView>>, ApiError> {
    let subscription = state
        .store
        .begin_read()
        .await?
        .find_subscription(&id)
        .await?;
    let subscription = subscription.ok_or_else(|| ApiError::not_found("subscription", &id))?;
    Ok(Json(with_stripe(&state, subscription).await?))
}

#[derive(serde::Deserialize)]
struct PreviewQuery {
    period_start: Option<String>,
}

/// The open period rated on the usage so far, or a past period with `?period_start=YYYY-MM-DD`.
async fn invoice_preview(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    super::extract::Query(query): super::extract::Query<PreviewQuery>,
) -> Result<Json<crate::billing::InvoicePreview>, ApiError> {
    let period_start = query
        .period_start
        .map(|text| {
            chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
                ApiError::invalid_field(crate::domain::FieldError::new(
                    "period_start",
                    format!("`{text}` is not a YYYY-MM-DD date"),
                ))
            })
        })
        .transpose()?;
    let preview =
        crate::billing::preview(&state.store, &id, period_start, chrono::Utc::now()).await?;
    Ok(Json(preview))
}
