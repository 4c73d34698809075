//! `/v1/tiers`: priced plans. A changed definition makes a new version; versions never change.

use super::error::ApiError;
use super::extract::{Admin, JsonBody, Pagination, Path};
use super::mirror::{self, WithStripe};
use super::{AppState, ListBody, put_status, timestamp};
use crate::catalog::put_tier;
use crate::domain::tier::TierSpec;
use crate::store::{Tier, TierVersion};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tiers", get(list).post(create))
        .route("/v1/tiers/{id}", get(show))
        .route("/v1/tiers/{id}/versions", get(versions))
}

#[derive(Serialize)]
struct TierView {
    id: String,
    version: i64,
    version_id: String,
    #[serde(flatten)]
    spec: TierSpec,
    created_at: String,
    version_created_at: String,
}

impl TierView {
    fn new(tier_id: String, tier_created_at: i64, version: TierVersion) -> Self {
        Self {
            id: tier_id,
            version: version.version,
            version_id: version.id,
            spec: version.spec,
            created_at: timestamp(tier_created_at),
            version_created_at: timestamp(version.created_at),
        }
    }
}

impl From<Tier> for TierView {
    fn from(tier: Tier) -> Self {
        Self::new(tier.id, tier.created_at, tier.latest)
    }
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<TierSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (tier, outcome) = put_tier(&mut tx, &spec).await?;
    tx.commit().await?;
    mirror::settle(&state, &tier.id).await?;
    Ok((put_status(outcome), Json(with_stripe(&state, tier).await?)))
}

async fn with_stripe(state: &AppState, tier: Tier) -> Result<WithStripe<TierView>, ApiError> {
    let version = tier.latest.id.clone();
    let stripe = mirror::view(
        state,
        &tier.id,
        &[
            ("product", &tier.id),
            ("price", &version),
            ("one_time_price", &version),
        ],
    )
    .await?;
    Ok(WithStripe {
        row: tier.into(),
        stripe,
    })
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination,
) -> Result<Json<ListBody<TierView>>, ApiError> {
    let page = state.store.begin_read().await?.list_tiers(&page).await?;
    Ok(Json(ListBody::from_page(page, |t| &t.id, TierView::from)))
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WithStripe<TierView>>, ApiError> {
    let tier = state.store.begin_read().await?.find_tier(&id).await?;
    let tier = tier.ok_or_else(|| ApiError::not_found("tier", &id))?;
    Ok(Json(with_stripe(&state, tier).await?))
}

/// Every version of a tier, oldest first.
async fn versions(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut tx = state.store.begin_read().await?;
    let tier = tx
        .find_tier(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tier", &id))?;
    let versions = tx.list_tier_versions(&tier.id).await?;
    let data: Vec<TierView> = versions
        .into_iter()
        .map(|v| TierView::new(tier.id.clone(), tier.created_at, v))
        .collect();
    Ok(Json(serde_json::json!({ "data": data })))
}
