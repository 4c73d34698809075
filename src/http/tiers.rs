//! `/v1/tiers`: priced plans. A changed definition makes a new version; versions never change.

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, JsonBody, KeyOrId, PageParams, Pagination, Path, RawBody};
use super::extract::{Archived, ArchivedParams};
use super::mirror::{self, WithStripe};
use super::{AppState, ListBody, put_status, timestamp};
use crate::catalog::{Changed, Verb, archive_tier, put_tier};
use crate::domain::tier::TierSpec;
use crate::store::{Tier, TierVersion};
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
        .routes(routes!(versions))
}

/// A tier version as stored.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TierView {
    /// tollbooth's id of the tier.
    #[schema(pattern = "^tier_[0-9a-f]{32}$")]
    id: String,
    /// 1 for the first definition, one more for each change.
    #[schema(minimum = 1)]
    version: i64,
    #[schema(pattern = "^tierv_[0-9a-f]{32}$")]
    version_id: String,
    #[serde(flatten)]
    #[schema(inline)]
    spec: TierSpec,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    version_created_at: String,
    /// When the tier was archived (`DELETE /v1/tiers/{id}`): it takes no new subscriptions;
    /// created or changed again, it is restored. Its Stripe Product and Prices are left as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    archived_at: Option<String>,
}

/// Every version of a tier.
#[derive(Serialize, utoipa::ToSchema)]
struct VersionsBody {
    /// Oldest first.
    data: Vec<TierView>,
}

impl TierView {
    fn new(tier: &Tier, version: TierVersion) -> Self {
        Self {
            id: tier.id.clone(),
            version: version.version,
            version_id: version.id,
            spec: version.spec,
            created_at: timestamp(tier.created_at),
            version_created_at: timestamp(version.created_at),
            archived_at: tier.archived_at.map(timestamp),
        }
    }
}

impl From<Tier> for TierView {
    fn from(tier: Tier) -> Self {
        let latest = tier.latest.clone();
        Self::new(&tier, latest)
    }
}

/// Creates a tier, or a new version of it when its definition changed; mirrored to Stripe when paid.
#[utoipa::path(post, path = "/v1/tiers", tag = "catalog", operation_id = "create_tier",
    request_body = TierSpec,
    responses(
        (status = 201, description = "Created, or a new version made", body = WithStripe<TierView>),
        (status = 200, description = "Its newest version has this definition already", body = WithStripe<TierView>),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: the tier belongs to another api · `archived`: its api is archived", body = ErrorBody),
        (status = 502, description = "`stripe_refused` · `stripe_unavailable` · `stripe_error`: saved, Stripe did not take it; `details.saved` is the object as saved, its `stripe.state` `failed`", body = ErrorBody),
        (status = 502, description = "`notification_not_accepted`: blocking mode (`notify_blocking`), the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<TierSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let (tier, outcome) = put_tier(&mut tx, &spec).await?;
    if let Some(verb) = Verb::of(outcome) {
        super::catalog_event(&state, &mut tx, verb, Changed::Tier(tier.clone())).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    if let Err(error) = mirror::settle(&state, &tier.id).await {
        return Err(error.with_saved(with_stripe(&state, tier).await?));
    }
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

/// The tiers (each at its newest version), oldest first: those not archived, or with
/// `?archived=true` those archived.
#[utoipa::path(get, path = "/v1/tiers", tag = "catalog", operation_id = "list_tiers",
    params(PageParams, ArchivedParams),
    responses((status = 200, description = "A page of tiers", body = ListBody<TierView>)),
    security(("admin_token" = [])))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination,
    Archived(archived): Archived,
) -> Result<Json<ListBody<TierView>>, ApiError> {
    let page = state
        .store
        .begin_read()
        .await?
        .list_tiers(&page, archived)
        .await?;
    Ok(Json(ListBody::from_page(page, |t| &t.id, TierView::from)))
}

/// One tier at its newest version, by id or slug.
#[utoipa::path(get, path = "/v1/tiers/{id}", tag = "catalog", operation_id = "show_tier",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the tier's slug")),
    responses(
        (status = 200, description = "The tier", body = WithStripe<TierView>),
        (status = 404, description = "`not_found`: no such tier", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
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
#[utoipa::path(get, path = "/v1/tiers/{id}/versions", tag = "catalog", operation_id = "list_tier_versions",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the tier's slug")),
    responses(
        (status = 200, description = "The tier's versions", body = VersionsBody),
        (status = 404, description = "`not_found`: no such tier", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn versions(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VersionsBody>, ApiError> {
    let mut tx = state.store.begin_read().await?;
    let tier = tx
        .find_tier(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tier", &id))?;
    let versions = tx.list_tier_versions(&tier.id).await?;
    let data: Vec<TierView> = versions
        .into_iter()
        .map(|v| TierView::new(&tier, v))
        .collect();
    Ok(Json(VersionsBody { data }))
}

/// Changes a tier: a JSON merge patch of its newest version's definition, checked as a create is.
/// A change makes a new version (201), as `POST /v1/tiers` does; subscriptions move to it as
/// their tier's rules say. The slug and api cannot change.
#[utoipa::path(patch, path = "/v1/tiers/{id}", tag = "catalog", operation_id = "update_tier",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the tier's slug")),
    request_body(content = Object, description = "A JSON merge patch (RFC 7396) of the tier's newest definition",
        content_type = "application/merge-patch+json"),
    responses(
        (status = 201, description = "A new version made", body = WithStripe<TierView>),
        (status = 200, description = "The patch changed nothing", body = WithStripe<TierView>),
        (status = 404, description = "`not_found`: no such tier", body = ErrorBody),
        (status = 409, description = "`archived`: the tier's api is archived", body = ErrorBody),
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
) -> Result<impl IntoResponse, ApiError> {
    let mut tx = state.store.begin().await?;
    let tier = tx
        .find_tier(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tier", &id))?;
    let spec: TierSpec = super::patch::merged(&tier.latest.spec, &patch, &["slug", "api"])?;
    let (tier, outcome) = put_tier(&mut tx, &spec).await?;
    if let Some(verb) = Verb::of(outcome) {
        super::catalog_event(&state, &mut tx, verb, Changed::Tier(tier.clone())).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    if let Err(error) = mirror::settle(&state, &tier.id).await {
        return Err(error.with_saved(with_stripe(&state, tier).await?));
    }
    Ok((put_status(outcome), Json(with_stripe(&state, tier).await?)))
}

/// Archives a tier: refused (409 `in_use`, naming them) while a subscription on any of its
/// versions is live. The tier and its versions are kept for the periods that name them; it
/// leaves the list and takes no new subscriptions; its Stripe Product and Prices are left as they
/// are. Archiving it again changes nothing; creating or changing it again restores it.
#[utoipa::path(delete, path = "/v1/tiers/{id}", tag = "catalog", operation_id = "archive_tier",
    params(("id" = KeyOrId, Path, description = "tollbooth's id or the tier's slug")),
    responses(
        (status = 200, description = "The tier, archived", body = WithStripe<TierView>),
        (status = 404, description = "`not_found`: no such tier", body = ErrorBody),
        (status = 409, description = "`in_use`: live subscriptions depend on it (`details.live_subscriptions`, the first in `details.subscriptions`)", body = ErrorBody),
        (status = 502, description = "`notification_not_accepted`: blocking mode (`notify_blocking`), the provider's endpoint did not accept the change's notification; nothing changed", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn archive(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WithStripe<TierView>>, ApiError> {
    let mut tx = state.store.begin().await?;
    let live = tx
        .find_tier(&id)
        .await?
        .is_some_and(|t| t.archived_at.is_none());
    let tier = archive_tier(&mut tx, &id).await?;
    if live {
        super::catalog_event(&state, &mut tx, Verb::Deleted, Changed::Tier(tier.clone())).await?;
    }
    tx.commit().await?;
    state.notifier.wake();
    Ok(Json(with_stripe(&state, tier).await?))
}
