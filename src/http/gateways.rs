//! `/v1/gateways`: the callers that post call records. A key is shown once, at creation.

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, JsonBody, KeyOrId, PageParams, Pagination, Path};
use super::{AppState, ListBody, timestamp};
use crate::catalog::create_gateway;
use crate::domain::gateway::GatewayAccess;
use crate::domain::ingest::GatewayIngest;
use crate::metering::stats::GatewayStats;
use crate::store::Gateway;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read))
}

/// A gateway to make.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewGateway {
    name: crate::domain::text::Name,
    /// How it asks for the access decision (`/v1/authorize`); every field has a default.
    #[serde(default)]
    access: GatewayAccess,
    /// How it sends call records (`POST /v1/events`); every field has a default.
    #[serde(default)]
    ingest: GatewayIngest,
}

/// A gateway as stored.
#[derive(Serialize, utoipa::ToSchema)]
struct GatewayView {
    #[schema(pattern = "^gw_[0-9a-f]{32}$")]
    id: String,
    name: String,
    access: GatewayAccess,
    ingest: GatewayIngest,
    #[schema(format = DateTime)]
    created_at: String,
    /// What its sender was told (one gateway's answer only): when it last sent, records taken,
    /// seen before and rejected by code, and its last rejections.
    #[serde(skip_serializing_if = "Option::is_none")]
    ingestion: Option<GatewayStats>,
    /// The gateway's key: in the create answer only, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl GatewayView {
    fn new(gateway: Gateway, key: Option<String>) -> Self {
        Self {
            id: gateway.id,
            name: gateway.name,
            access: gateway.access,
            ingest: gateway.ingest,
            created_at: timestamp(gateway.created_at),
            ingestion: None,
            key,
        }
    }
}

/// Makes a gateway and its key.
#[utoipa::path(post, path = "/v1/gateways", tag = "catalog", operation_id = "create_gateway",
    request_body = NewGateway,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = GatewayView),
        (status = 422, description = "`invalid_field`: the field named is not valid", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewGateway>,
) -> Result<(StatusCode, Json<GatewayView>), ApiError> {
    let mut tx = state.store.begin().await?;
    let (gateway, key) = create_gateway(&mut tx, &body.name, &body.access, &body.ingest).await?;
    tx.commit().await?;
    state.directory.catch_up().await?;
    Ok((
        StatusCode::CREATED,
        Json(GatewayView::new(gateway, Some(key))),
    ))
}

/// The gateways, oldest first (without their keys).
#[utoipa::path(get, path = "/v1/gateways", tag = "catalog", operation_id = "list_gateways",
    params(PageParams),
    responses((status = 200, description = "A page of gateways", body = ListBody<GatewayView>)),
    security(("admin_token" = [])))]
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

/// One gateway, by id.
#[utoipa::path(get, path = "/v1/gateways/{id}", tag = "catalog", operation_id = "show_gateway",
    params(("id" = KeyOrId, Path, description = "tollbooth's id of the gateway")),
    responses(
        (status = 200, description = "The gateway", body = GatewayView),
        (status = 404, description = "`not_found`: no such gateway", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn read(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<GatewayView>, ApiError> {
    let mut tx = state.store.begin_read().await?;
    let gateway = tx.find_gateway(&id).await?;
    let gateway = gateway.ok_or_else(|| ApiError::not_found("gateway", &id))?;
    let others = tx
        .ingest_stats(&gateway.id, state.ingest_stats.replica())
        .await?;
    let mine = state.ingest_stats.of(&gateway.id);
    let mut view = GatewayView::new(gateway, None);
    view.ingestion = Some(GatewayStats::merge(others.into_iter().chain(mine)));
    Ok(Json(view))
}
