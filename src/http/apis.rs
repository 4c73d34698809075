//! `/v1/apis`: the monetized apis and their recording policies.

use super::error::ApiError;
use super::error::ErrorBody;
use super::extract::{Admin, JsonBody, Pagination, Path, RawBody};
use super::extract::{Archived, ArchivedParams};
use super::extract::{KeyOrId, PageParams};
use super::{AppState, ListBody, put_status, timestamp};
use crate::catalog::{Changed, Mode, Verb, archive_api, put_api};
use crate::domain::api::ApiSpec;
use crate::store::Api;
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

/// An api as stored.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ApiView {
    /// tollbooth's id.
    #[schema(pattern = "^api_[0-9a-f]{32}$")]
    id: String,
    #[serde(flatten)]
    #[schema(inline)]
    spec: ApiSpec,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// When it was archived (`DELETE /v1/apis/{id}`): it takes no new tiers or subscriptions and
    /// has given up its routes; created or changed again, it is restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    archived_at: Option<String>,
}

impl From<Api> for ApiView {
    fn from(api: Api) -> Self {
        Self {
            id: api.id,
            spec: api.spec,
            created_at: timestamp(api.created_at),
            updated_at: timestamp(api.updated_at),
            archived_at: api.archived_at.map(timestamp),
        }
    }
}

/// Creates an api; the same definition again changes nothing (200).
#[utoipa::path(post, path = "/v1/apis", tag = "catalog", operation_id = "create_api",
    request_body = ApiSpec,
    responses(
        (status = 201, description = "Created", body = ApiView),
        (status = 200, description = "It exists with this definition already", body = ApiView),
        (status = 409, description = "`conflict`: the slug exists with another definition", body = ErrorBody),
        (status = 502, description = "`notification_not_accepted`: blocking mode (`notify_blocking`), the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<ApiSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (api, outcome) = put_api(&mut tx, &spec, Mode::Create).await?;
    if let Some(verb) = Verb::of(outcome) {
        super::catalog_event(&state, &mut tx, verb, Changed::Api(api.clone())).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    state.directory.catch_up().await?;
    Ok((put_status(outcome), Json(ApiView::from(api))))
}

/// The apis, oldest first: those not archived, or with `?archived=true` those archived.
#[utoipa::path(get, path = "/v1/apis", tag = "catalog", operation_id = "list_apis",
    params(PageParams, ArchivedParams),
    responses((status = 200, description = "A page of apis", body = ListBody<ApiView>)),
    security(("admin_token" = [])))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination,
    Archived(archived): Archived,
) -> Result<Json<ListBody<ApiView>>, ApiError> {
    let page = state
        .store
        .begin_read()
        .await?
        .list_apis(&page, archived)
        .await?;
    Ok(Json(ListBody::from_page(page, |a| &a.id, ApiView::from)))
}

/// One api, by id or slug.
#[utoipa::path(get, path = "/v1/apis/{id}", tag = "catalog", operation_id = "show_api",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the api's slug")),
    responses(
        (status = 200, description = "The api", body = ApiView),
        (status = 404, description = "`not_found`: no such api", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiView>, ApiError> {
    let api = state.store.begin_read().await?.find_api(&id).await?;
    api.map(|api| Json(api.into()))
        .ok_or_else(|| ApiError::not_found("api", &id))
}

/// Changes an api: a JSON merge patch of its definition (`{"name": "…"}`; `null` puts a member
/// back to its default), checked as a create is. The slug cannot change.
#[utoipa::path(patch, path = "/v1/apis/{id}", tag = "catalog", operation_id = "update_api",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the api's slug")),
    request_body(content = Object, description = "A JSON merge patch (RFC 7396) of the api's definition",
        content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The api as changed", body = ApiView),
        (status = 404, description = "`not_found`: no such api", body = ErrorBody),
        (status = 409, description = "`conflict`: a route another api has, or a Stripe account its tiers live in", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the field named is not valid", body = ErrorBody),
        (status = 502, description = "`notification_not_accepted`: blocking mode (`notify_blocking`), the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn update(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawBody(patch): RawBody,
) -> Result<Json<ApiView>, ApiError> {
    let mut tx = state.store.begin().await?;
    let api = tx
        .find_api(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("api", &id))?;
    let spec: ApiSpec = super::patch::merged(&api.spec, &patch, &["slug"])?;
    let (api, outcome) = put_api(&mut tx, &spec, Mode::Apply).await?;
    if let Some(verb) = Verb::of(outcome) {
        super::catalog_event(&state, &mut tx, verb, Changed::Api(api.clone())).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    state.directory.catch_up().await?;
    Ok(Json(ApiView::from(api)))
}

/// Archives an api: refused (409 `in_use`, naming them) while a subscription on one of its tiers
/// is live. The api is kept, with its tiers and history, for the periods and usage that name it;
/// it leaves the list, takes no new tiers or subscriptions, and gives up its routes. Archiving it
/// again changes nothing; creating or changing it again restores it.
#[utoipa::path(delete, path = "/v1/apis/{id}", tag = "catalog", operation_id = "archive_api",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the api's slug")),
    responses(
        (status = 200, description = "The api, archived", body = ApiView),
        (status = 404, description = "`not_found`: no such api", body = ErrorBody),
        (status = 409, description = "`in_use`: live subscriptions depend on it (`details.live_subscriptions`, the first in `details.subscriptions`)", body = ErrorBody),
        (status = 502, description = "`notification_not_accepted`: blocking mode (`notify_blocking`), the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn archive(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiView>, ApiError> {
    let mut tx = state.store.begin().await?;
    let live = tx
        .find_api(&id)
        .await?
        .is_some_and(|a| a.archived_at.is_none());
    let api = archive_api(&mut tx, &id).await?;
    if live {
        super::catalog_event(&state, &mut tx, Verb::Deleted, Changed::Api(api.clone())).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    state.directory.catch_up().await?;
    Ok(Json(ApiView::from(api)))
}
