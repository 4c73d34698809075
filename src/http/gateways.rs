//! `/v1/gateways`: the callers that post call records. A key is shown once, at creation.

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, JsonBody, KeyOrId, OptionalJsonBody, PageParams, Pagination, Path};
use super::{AppState, ListBody, timestamp};
use crate::catalog::{create_gateway, revoke_gateway, rotate_gateway_key};
use crate::config::HumanDuration;
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
        .routes(routes!(read, revoke))
        .routes(routes!(rotate))
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
    /// When the key was last replaced (`POST /v1/gateways/{id}/keys`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    key_rotated_at: Option<String>,
    /// Until when the key before the last rotation is still taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    previous_key_expires_at: Option<String>,
    /// When the gateway was revoked (`DELETE /v1/gateways/{id}`): none of its keys is taken since.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
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
            key_rotated_at: gateway.key_rotated_at.map(timestamp),
            previous_key_expires_at: gateway
                .previous_key_expires_at
                .filter(|at| *at > crate::store::now_ms())
                .map(timestamp),
            revoked_at: gateway.revoked_at.map(timestamp),
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

/// How a gateway's key is replaced.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// How long the key before this one is still taken, such as `24h`; `0s` ends it at once.
    /// Default 24h, at most 30d.
    #[schema(value_type = Option<String>, example = "24h")]
    previous_key_valid_for: Option<HumanDuration>,
}

/// The longest a replaced key may stay valid.
const MOST_PREVIOUS_KEY_VALIDITY: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Gives the gateway a new key, shown this once; the key it had is still taken for
/// `previous_key_valid_for`, so its configuration can be changed over without refused calls.
#[utoipa::path(post, path = "/v1/gateways/{id}/keys", tag = "catalog", operation_id = "rotate_gateway_key",
    params(("id" = KeyOrId, Path, description = "tollbooth's id of the gateway")),
    request_body(content = Option<NewKey>, description = "May be left out: the previous key is then taken for 24h"),
    responses(
        (status = 200, description = "The new key is in `key`, shown this once", body = GatewayView),
        (status = 404, description = "`not_found`: no such gateway", body = ErrorBody),
        (status = 409, description = "`conflict`: the gateway is revoked", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the field named is not valid", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn rotate(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<NewKey>,
) -> Result<Json<GatewayView>, ApiError> {
    let previous_valid_for = body
        .previous_key_valid_for
        .map_or(std::time::Duration::from_secs(86_400), |d| d.0);
    if previous_valid_for > MOST_PREVIOUS_KEY_VALIDITY {
        return Err(ApiError::invalid_field(crate::domain::FieldError::new(
            "previous_key_valid_for",
            "must be at most 30d",
        )));
    }
    let mut tx = state.store.begin().await?;
    let (gateway, key) = rotate_gateway_key(&mut tx, &id, previous_valid_for).await?;
    tx.commit().await?;
    state.directory.catch_up().await?;
    Ok(Json(GatewayView::new(gateway, Some(key))))
}

/// Revokes the gateway: none of its keys is taken from now on (other replicas follow within
/// `TOLLBOOTH_REPLICA_REFRESH`). The gateway is kept, with its statistics; revoking it again
/// changes nothing.
#[utoipa::path(delete, path = "/v1/gateways/{id}", tag = "catalog", operation_id = "revoke_gateway",
    params(("id" = KeyOrId, Path, description = "tollbooth's id of the gateway")),
    responses(
        (status = 200, description = "The gateway, revoked", body = GatewayView),
        (status = 404, description = "`not_found`: no such gateway", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn revoke(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<GatewayView>, ApiError> {
    let mut tx = state.store.begin().await?;
    let gateway = revoke_gateway(&mut tx, &id).await?;
    tx.commit().await?;
    state.directory.catch_up().await?;
    Ok(Json(GatewayView::new(gateway, None)))
}
