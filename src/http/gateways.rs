//! `/v1/gateways`: the callers that post call records. A key is shown once, at creation.

use super::error::ApiError;
use super::extract::{Admin, JsonBody, Pagination, Path};
use super::{AppState, ListBody, timestamp};
use crate::catalog::create_gateway;
use crate::store::Gateway;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/gateways", get(list).post(create))
        .route("/v1/gateways/{id}", get(read))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGateway {
    name: crate::domain::text::Name,
}

#[derive(Serialize)]
struct GatewayView {
    id: String,
    name: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl GatewayView {
    fn new(gateway: Gateway, key: Option<String>) -> Self {
        Self {
            id: gateway.id,
            name: gateway.name,
            created_at: timestamp(gateway.created_at),
            key,
        }
    }
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewGateway>,
) -> Result<(StatusCode, Json<GatewayView>), ApiError> {
    let mut tx = state.store.begin().await?;
    let (gateway, key) = create_gateway(&mut tx, &body.name).await?;
    tx.commit().await?;
    state.directory.catch_up().await?;
    Ok((
        StatusCode::CREATED,
        Json(GatewayView::new(gateway, Some(key))),
    ))
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination,
) -> Result<Json<ListBody<GatewayView>>, ApiError> {
    let page = state.store.begin_read().await?.list_gateways(&page).await?;
    Ok(Json(ListBody::from_page(
        page,
        |g| &g.id,
        |g| GatewayView::new(g, None),
    )))
}

async fn read(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<GatewayView>, ApiError> {
    let gateway = state.store.begin_read().await?.find_gateway(&id).await?;
    let gateway = gateway.ok_or_else(|| ApiError::not_found("gateway", &id))?;
    Ok(Json(GatewayView::new(gateway, None)))
}
