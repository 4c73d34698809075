//! `/v1/subscribers`: who pays.

use super::error::ApiError;
use super::extract::{Admin, JsonBody, Pagination, Path};
use super::mirror::{self, WithStripe};
use super::{AppState, ListBody, put_status, timestamp};
use crate::catalog::{Mode, put_subscriber};
use crate::domain::subscriber::SubscriberSpec;
use crate::store::Subscriber;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/subscribers", get(list).post(create))
        .route("/v1/subscribers/{id}", get(show))
}

#[derive(Serialize)]
struct SubscriberView {
    id: String,
    #[serde(flatten)]
    spec: SubscriberSpec,
    created_at: String,
    updated_at: String,
}

impl From<Subscriber> for SubscriberView {
    fn from(subscriber: Subscriber) -> Self {
        Self {
            id: subscriber.id,
            spec: subscriber.spec,
            created_at: timestamp(subscriber.created_at),
            updated_at: timestamp(subscriber.updated_at),
        }
    }
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<SubscriberSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (subscriber, outcome) = put_subscriber(&mut tx, &spec, Mode::Create).await?;
    tx.commit().await?;
    mirror::settle(&state, &subscriber.id).await?;
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

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination,
) -> Result<Json<ListBody<SubscriberView>>, ApiError> {
    let page = state
        .store
        .begin_read()
        .await?
        .list_subscribers(&page)
        .await?;
    Ok(Json(ListBody::from_page(
        page,
        |s| &s.id,
        SubscriberView::from,
    )))
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WithStripe<SubscriberView>>, ApiError> {
    let subscriber = state.store.begin_read().await?.find_subscriber(&id).await?;
    let subscriber = subscriber.ok_or_else(|| ApiError::not_found("subscriber", &id))?;
    Ok(Json(with_stripe(&state, subscriber).await?))
}
