//! `/v1/subscribers`: who pays.

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, JsonBody, KeyOrId, PageParams, Pagination, Path, RawBody};
use super::extract::{Archived, ArchivedParams};
use super::mirror::{self, WithStripe};
use super::{AppState, ListBody, put_status, timestamp};
use crate::catalog::{Changed, Mode, Verb, archive_subscriber, put_subscriber};
use crate::domain::subscriber::SubscriberSpec;
use crate::store::Subscriber;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, archive))
}

/// A subscriber as stored.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SubscriberView {
    /// tollbooth's id.
    #[schema(pattern = "^sub_[0-9a-f]{32}$")]
    id: String,
    #[serde(flatten)]
    #[schema(inline)]
    spec: SubscriberSpec,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// When it was archived (`DELETE /v1/subscribers/{id}`): it takes no new subscriptions;
    /// created or changed again, it is restored. Its Stripe Customer is left as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    archived_at: Option<String>,
}

impl From<Subscriber> for SubscriberView {
    fn from(subscriber: Subscriber) -> Self {
        Self {
            id: subscriber.id,
            spec: subscriber.spec,
            created_at: timestamp(subscriber.created_at),
            updated_at: timestamp(subscriber.updated_at),
            archived_at: subscriber.archived_at.map(timestamp),
        }
    }
}

/// Creates a subscriber, mirrored to a Stripe Customer; the same definition again changes nothing.
#[utoipa::path(post, path = "/v1/subscribers", tag = "catalog", operation_id = "create_subscriber",
    request_body = SubscriberSpec,
    responses(
        (status = 201, description = "Created", body = WithStripe<SubscriberView>),
        (status = 200, description = "It exists with this definition already", body = WithStripe<SubscriberView>),
        (status = 409, description = "`conflict`: the external_id exists with another definition", body = ErrorBody),
        (status = 502, description = "`stripe_refused` · `stripe_unavailable` · `stripe_error`: saved, Stripe did not take it; `details.saved` is the object as saved, its `stripe.state` `failed`", body = ErrorBody),
        (status = 502, description = "`notification_not_accepted`: blocking mode (`notify_blocking`), the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<SubscriberSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (subscriber, outcome) = put_subscriber(&mut tx, &spec, Mode::Create).await?;
    if let Some(verb) = Verb::of(outcome) {
        let changed = Changed::Subscriber(subscriber.clone());
        super::catalog_event(&state, &mut tx, verb, changed).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    if let Err(error) = mirror::settle(&state, &subscriber.id).await {
        return Err(error.with_saved(with_stripe(&state, subscriber).await?));
    }
    Ok((
        put_status(outcome),
        Json(with_stripe(&state, subscriber).await?),
    ))
}

async fn with_stripe(
    state: &AppState,
    subscriber: Subscriber,
) -> Result<WithStripe<SubscriberView>, ApiError> {
    let stripe = mirror::view(state, &subscriber.id, &[("customer", &subscriber.id)]).await?;
    Ok(WithStripe {
        row: subscriber.into(),
        stripe,
    })
}

/// The subscribers, oldest first: those not archived, or with `?archived=true` those archived.
#[utoipa::path(get, path = "/v1/subscribers", tag = "catalog", operation_id = "list_subscribers",
    params(PageParams, ArchivedParams),
    responses((status = 200, description = "A page of subscribers", body = ListBody<SubscriberView>)),
    security(("admin_token" = [])))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination,
    Archived(archived): Archived,
) -> Result<Json<ListBody<SubscriberView>>, ApiError> {
    let page = state
        .store
        .begin_read()
        .await?
        .list_subscribers(&page, archived)
        .await?;
    Ok(Json(ListBody::from_page(
        page,
        |s| &s.id,
        SubscriberView::from,
    )))
}

/// One subscriber, by id or external_id.
#[utoipa::path(get, path = "/v1/subscribers/{id}", tag = "catalog", operation_id = "show_subscriber",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the subscriber's external_id")),
    responses(
        (status = 200, description = "The subscriber", body = WithStripe<SubscriberView>),
        (status = 404, description = "`not_found`: no such subscriber", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WithStripe<SubscriberView>>, ApiError> {
    let subscriber = state.store.begin_read().await?.find_subscriber(&id).await?;
    let subscriber = subscriber.ok_or_else(|| ApiError::not_found("subscriber", &id))?;
    Ok(Json(with_stripe(&state, subscriber).await?))
}

/// Changes a subscriber: a JSON merge patch of its definition, checked as a create is, and sent
/// on to its Stripe Customer. The external_id cannot change.
#[utoipa::path(patch, path = "/v1/subscribers/{id}", tag = "catalog", operation_id = "update_subscriber",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the subscriber's external_id")),
    request_body(content = Object, description = "A JSON merge patch (RFC 7396) of the subscriber's definition",
        content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The subscriber as changed", body = WithStripe<SubscriberView>),
        (status = 404, description = "`not_found`: no such subscriber", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the field named is not valid", body = ErrorBody),
        (status = 502, description = "`stripe_refused` · `stripe_unavailable` · `stripe_error`: saved, Stripe did not take it; `details.saved` is the object as saved, its `stripe.state` `failed`", body = ErrorBody),
        (status = 502, description = "`notification_not_accepted`: blocking mode (`notify_blocking`), the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn update(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawBody(patch): RawBody,
) -> Result<Json<WithStripe<SubscriberView>>, ApiError> {
    let mut tx = state.store.begin().await?;
    let subscriber = tx
        .find_subscriber(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscriber", &id))?;
    let spec: SubscriberSpec = super::patch::merged(&subscriber.spec, &patch, &["external_id"])?;
    let (subscriber, outcome) = put_subscriber(&mut tx, &spec, Mode::Apply).await?;
    if let Some(verb) = Verb::of(outcome) {
        let changed = Changed::Subscriber(subscriber.clone());
        super::catalog_event(&state, &mut tx, verb, changed).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    if let Err(error) = mirror::settle(&state, &subscriber.id).await {
        return Err(error.with_saved(with_stripe(&state, subscriber).await?));
    }
    Ok(Json(with_stripe(&state, subscriber).await?))
}

/// Archives a subscriber: refused (409 `in_use`, naming them) while one of its subscriptions is
/// live. The subscriber is kept for its periods and invoices, leaves the list and takes no new
/// subscriptions; its Stripe Customer is left as it is. Archiving it again changes nothing;
/// creating or changing it again restores it.
#[utoipa::path(delete, path = "/v1/subscribers/{id}", tag = "catalog", operation_id = "archive_subscriber",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the subscriber's external id")),
    responses(
        (status = 200, description = "The subscriber, archived", body = WithStripe<SubscriberView>),
        (status = 404, description = "`not_found`: no such subscriber", body = ErrorBody),
        (status = 409, description = "`in_use`: live subscriptions depend on it (`details.live_subscriptions`, the first in `details.subscriptions`)", body = ErrorBody),
        (status = 502, description = "`notification_not_accepted`: blocking mode (`notify_blocking`), the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn archive(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WithStripe<SubscriberView>>, ApiError> {
    let mut tx = state.store.begin().await?;
    let live = tx
        .find_subscriber(&id)
        .await?
        .is_some_and(|s| s.archived_at.is_none());
    let subscriber = archive_subscriber(&mut tx, &id).await?;
    if live {
        let changed = Changed::Subscriber(subscriber.clone());
        super::catalog_event(&state, &mut tx, Verb::Deleted, changed).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    Ok(Json(with_stripe(&state, subscriber).await?))
}
