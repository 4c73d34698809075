//! `/v1/apis`: the monetized apis and their recording policies.

use super::error::ApiError;
use super::extract::{Admin, JsonBody, Pagination, Path};
use super::{AppState, ListBody, put_status, timestamp};
use crate::catalog::{Mode, put_api};
use crate::domain::api::ApiSpec;
use crate::store::Api;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/apis", get(list).post(create))
        .route("/v1/apis/{id}", get(show))
}

#[derive(Serialize)]
struct ApiView {
    id: String,
    #[serde(flatten)]
    spec: ApiSpec,
    created_at: String,
    updated_at: String,
}

impl From<Api> for ApiView {
    fn from(api: Api) -> Self {
        Self {
            id: api.id,
            spec: api.spec,
            created_at: timestamp(api.created_at),
            updated_at: timestamp(api.updated_at),
        }
    }
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<ApiSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (api, outcome) = put_api(&mut tx, &spec, Mode::Create).await?;
    tx.commit().await?;
    state.directory.catch_up().await?;
    Ok((put_status(outcome), Json(ApiView::from(api))))
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination,
) -> Result<Json<ListBody<ApiView>>, ApiError> {
    let page = state.store.begin_read().await?.list_apis(&page).await?;
    Ok(Json(ListBody::from_page(page, |a| &a.id, ApiView::from)))
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiView>, ApiError> {
    let api = state.store.begin_read().await?.find_api(&id).await?;
    api.map(|api| Json(api.into()))
        .ok_or_else(|| ApiError::not_found("api", &id))
}
