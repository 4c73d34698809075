//! `/v1/subscriptions`: a subscriber on a tier, with its gateway consumer keys.

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, JsonBody, KeyOrId, PageParams, Pagination, Path};
use super::mirror::{self, WithStripe};
use super::{AppState, ListBody, put_status, timestamp};
use crate::catalog::{Changed, Mode, Verb, put_subscription};
use crate::domain::subscription::{SubscriptionSpec, SubscriptionStatus};
use crate::store::Subscription;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(cancel))
        .routes(routes!(change_tier))
        .routes(routes!(invoice_preview))
        .routes(routes!(invoices))
}

/// A subscription as stored.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SubscriptionView {
    #[schema(pattern = "^subn_[0-9a-f]{32}$")]
    id: String,
    external_id: String,
    /// The subscriber's id.
    subscriber: String,
    /// The tier's id.
    tier: String,
    #[schema(minimum = 1)]
    tier_version: i64,
    /// The first characters of each live consumer key (`acm…`): keys are callers' credentials,
    /// kept only as hashes and never answered whole.
    consumer_keys: Vec<String>,
    status: SubscriptionStatus,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    canceled_at: Option<String>,
    cancel_at_period_end: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
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
            consumer_keys: s.consumer_key_prefixes,
            status: s.status,
            started_at: timestamp(s.started_at),
            canceled_at: s.canceled_at.map(timestamp),
            cancel_at_period_end: s.cancel_at_period_end,
            created_at: timestamp(s.created_at),
            updated_at: timestamp(s.updated_at),
        }
    }
}

/// Creates a subscription on a tier's newest version, mirrored to a Stripe Subscription when paid.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "catalog", operation_id = "create_subscription",
    request_body = SubscriptionSpec,
    responses(
        (status = 201, description = "Created", body = WithStripe<SubscriptionView>),
        (status = 200, description = "It exists with this definition already", body = WithStripe<SubscriptionView>),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: the external_id exists otherwise, or a consumer key is taken · `archived`: its tier, the tier's api or its subscriber is archived", body = ErrorBody),
        (status = 502, description = "`stripe_refused` · `stripe_unavailable` · `stripe_error`: saved, Stripe did not take it; `details.saved` is the object as saved, its `stripe.state` `failed` · `notification_not_accepted`: blocking mode, the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<SubscriptionSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (subscription, outcome) = put_subscription(&mut tx, &spec, Mode::Create).await?;
    if let Some(verb) = Verb::of(outcome) {
        let changed = Changed::Subscription(subscription.clone());
        super::catalog_event(&state, &mut tx, verb, changed).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    state.directory.catch_up().await?;
    state.access.catch_up().await?;
    if let Err(error) = mirror::settle(&state, &subscription.id).await {
        return Err(error.with_saved(with_stripe(&state, subscription).await?));
    }
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

/// How to cancel.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    /// `period_end` (the default) or `now`.
    #[serde(default)]
    at: CancelAt,
}

/// When a cancel takes effect.
#[derive(serde::Deserialize, Default, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum CancelAt {
    #[default]
    PeriodEnd,
    Now,
}

/// Cancels at the end of the current period, or now with a final invoice.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", tag = "catalog", operation_id = "cancel_subscription",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the subscription's external_id")),
    request_body = CancelRequest,
    responses(
        (status = 201, description = "Canceled (or set to cancel at period end)", body = WithStripe<SubscriptionView>),
        (status = 200, description = "It was so already", body = WithStripe<SubscriptionView>),
        (status = 404, description = "`not_found`: no such subscription", body = ErrorBody),
        (status = 409, description = "`conflict`", body = ErrorBody),
        (status = 502, description = "`stripe_refused` · `stripe_unavailable` · `stripe_error`: saved, Stripe did not take it; `details.saved` is the object as saved, its `stripe.state` `failed` · `notification_not_accepted`: blocking mode, the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn cancel(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CancelRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (subscription, outcome) =
        crate::catalog::cancel_subscription(&mut tx, &id, request.at == CancelAt::Now).await?;
    if outcome != crate::catalog::Outcome::Unchanged {
        state
            .notifier
            .write_change(
                &mut tx,
                "subscription.status_changed",
                &subscription.id,
                serde_json::json!({ "subscription": subscription.id, "status": subscription.status,
                                    "cancel_at_period_end": subscription.cancel_at_period_end }),
            )
            .await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    state.directory.catch_up().await?;
    state.access.catch_up().await?;
    if request.at == CancelAt::Now && outcome != crate::catalog::Outcome::Unchanged {
        report_final_usage(&state, &subscription.id).await;
    }
    if let Err(error) = mirror::settle(&state, &subscription.id).await {
        return Err(error.with_saved(with_stripe(&state, subscription).await?));
    }
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

/// The tier to move to.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeTierRequest {
    /// The tier's id or slug.
    #[schema(pattern = "^[^\\x00]*$")]
    tier: String,
}

/// Moves a subscription to another tier's newest version, prorated as that tier says.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/tier", tag = "catalog", operation_id = "change_subscription_tier",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the subscription's external_id")),
    request_body = ChangeTierRequest,
    responses(
        (status = 201, description = "Moved", body = WithStripe<SubscriptionView>),
        (status = 200, description = "It is on that tier's newest version already", body = WithStripe<SubscriptionView>),
        (status = 404, description = "`not_found`: no such subscription", body = ErrorBody),
        (status = 409, description = "`conflict` · `archived`: the tier, its api or the subscriber is archived", body = ErrorBody),
        (status = 502, description = "`stripe_refused` · `stripe_unavailable` · `stripe_error`: saved, Stripe did not take it; `details.saved` is the object as saved, its `stripe.state` `failed` · `notification_not_accepted`: blocking mode, the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn change_tier(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ChangeTierRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (subscription, outcome) = crate::catalog::change_tier(&mut tx, &id, &request.tier).await?;
    // A move to another tier is an update of the subscription, whatever the put made.
    if Verb::of(outcome).is_some() {
        let changed = Changed::Subscription(subscription.clone());
        super::catalog_event(&state, &mut tx, Verb::Updated, changed).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    state.access.catch_up().await?;
    if let Err(error) = mirror::settle(&state, &subscription.id).await {
        return Err(error.with_saved(with_stripe(&state, subscription).await?));
    }
    Ok((
        put_status(outcome),
        Json(with_stripe(&state, subscription).await?),
    ))
}

/// The subscriptions, oldest first.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "catalog", operation_id = "list_subscriptions",
    params(PageParams),
    responses((status = 200, description = "A page of subscriptions", body = ListBody<SubscriptionView>)),
    security(("admin_token" = [])))]
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

/// One subscription, by id or external_id.
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "catalog", operation_id = "show_subscription",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the subscription's external_id")),
    responses(
        (status = 200, description = "The subscription", body = WithStripe<SubscriptionView>),
        (status = 404, description = "`not_found`: no such subscription", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
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

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PreviewQuery {
    /// The first day of a past period (`YYYY-MM-DD`); the open period when absent.
    #[param(format = Date)]
    period_start: Option<String>,
}

/// The open period rated on the usage so far, or a past period with `?period_start=YYYY-MM-DD`.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/invoice-preview", tag = "billing", operation_id = "preview_invoice",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the subscription's external_id"), PreviewQuery),
    responses(
        (status = 200, description = "The period rated", body = crate::billing::InvoicePreview),
        (status = 404, description = "`not_found`: no such subscription", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
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

/// A Stripe invoice of a subscription, as its webhooks last described it.
#[derive(Serialize, utoipa::ToSchema)]
struct InvoiceView {
    /// Stripe's id (`in_…`).
    stripe_id: String,
    /// Stripe's status: `draft`, `open`, `paid`, `uncollectible` or `void`.
    status: String,
    /// Where its payment stands: `paid`, `failed` (open, its last attempt failed), `open`,
    /// `draft`, `uncollectible` or `void`.
    payment: &'static str,
    currency: String,
    /// In the currency's units, exact (`25.00`).
    #[schema(value_type = String, example = "25.00")]
    total: rust_decimal::Decimal,
    #[schema(value_type = String, example = "25.00")]
    amount_due: rust_decimal::Decimal,
    #[schema(value_type = String, example = "0.00")]
    amount_paid: rust_decimal::Decimal,
    #[schema(format = DateTime)]
    period_start: Option<String>,
    #[schema(format = DateTime)]
    period_end: Option<String>,
    number: Option<String>,
    hosted_invoice_url: Option<String>,
    #[schema(format = DateTime)]
    payment_failed_at: Option<String>,
}

/// Every invoice, newest period first.
#[derive(Serialize, utoipa::ToSchema)]
struct InvoicesBody {
    data: Vec<InvoiceView>,
}

impl InvoiceView {
    fn new(invoice: crate::store::StoredInvoice) -> Self {
        let payment = match invoice.status.as_str() {
            "paid" => "paid",
            "open" if invoice.payment_failed_at.is_some() => "failed",
            "open" => "open",
            "uncollectible" => "uncollectible",
            "void" => "void",
            _ => "draft",
        };
        let currency = crate::domain::money::Currency::try_from(invoice.currency.clone()).ok();
        // A currency tollbooth cannot read is shown in Stripe's minor units.
        let amount = |minor: i64| {
            currency.map_or(rust_decimal::Decimal::from(minor), |c| c.from_minor(minor))
        };
        Self {
            payment,
            total: amount(invoice.total),
            amount_due: amount(invoice.amount_due),
            amount_paid: amount(invoice.amount_paid),
            period_start: invoice.period_start.map(timestamp),
            period_end: invoice.period_end.map(timestamp),
            payment_failed_at: invoice.payment_failed_at.map(timestamp),
            stripe_id: invoice.stripe_id,
            status: invoice.status,
            currency: invoice.currency,
            number: invoice.number,
            hosted_invoice_url: invoice.hosted_invoice_url,
        }
    }
}

/// The subscription's Stripe invoices as Stripe's `invoice.*` webhooks last described them: what
/// was billed and whether it was paid, failed or is open. Empty in ledger mode (no Stripe).
#[utoipa::path(get, path = "/v1/subscriptions/{id}/invoices", tag = "billing", operation_id = "list_subscription_invoices",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the subscription's external_id")),
    responses(
        (status = 200, description = "Its invoices, newest period first", body = InvoicesBody),
        (status = 404, description = "`not_found`: no such subscription", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn invoices(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<InvoicesBody>, ApiError> {
    let mut tx = state.store.begin_read().await?;
    let subscription = tx
        .find_subscription(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription", &id))?;
    let data = tx
        .invoices_of(&subscription.id)
        .await?
        .into_iter()
        .map(InvoiceView::new)
        .collect();
    Ok(Json(InvoicesBody { data }))
}
