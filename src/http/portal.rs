//! Subscriber portal links: `POST /v1/subscriptions/{id}/portal-links` makes a signed, expiring
//! link to a read-only page of that one subscription; a link can be listed and revoked.
//!
//! A token is `<link id>.<expiry in Unix ms>.<HMAC-SHA256 of both>`, signed with a key tollbooth
//! makes at its first use and keeps in `settings` (so every replica checks the same way). A
//! token is taken only when its signature holds, it has not expired, and its row exists and was
//! not revoked: a guessed or altered token, or a link of another subscription, reaches nothing.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, OptionalJsonBody, Path};
use super::timestamp;
use crate::domain::FieldError;
use crate::store::{PortalLink, StoreError};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

/// How long a link is valid when no `valid_for` is given.
pub const DEFAULT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);
/// The longest a link may be valid.
pub const MOST_VALIDITY: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

const SIGNING_KEY: &str = "portal_signing_key";

/// A portal link as answered. `url` and `token` are only in the answer that made it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct LinkView {
    id: String,
    subscription: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    /// `valid`, `expired` or `revoked`.
    state: &'static str,
    /// The page's address, from the request's `Host` (and `X-Forwarded-Proto`).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// The path of the page, `/portal/<token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

impl LinkView {
    fn new(link: PortalLink, external_id: &str, now: i64) -> Self {
        Self {
            state: state_of(&link, now),
            id: link.id,
            subscription: external_id.to_owned(),
            created_at: timestamp(link.created_at),
            expires_at: timestamp(link.expires_at),
            revoked_at: link.revoked_at.map(timestamp),
            url: None,
            path: None,
        }
    }
}

/// `valid`, `expired` or `revoked`.
pub(super) fn state_of(link: &PortalLink, now: i64) -> &'static str {
    if link.revoked_at.is_some() {
        "revoked"
    } else if link.expires_at <= now {
        "expired"
    } else {
        "valid"
    }
}

/// What a new link is made with.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewLink {
    /// How long the link is valid, such as `24h` or `7d`: 7 days when absent, at most 90 days.
    #[schema(value_type = Option<String>, example = "7d")]
    valid_for: Option<String>,
}

/// Reads a validity such as `7d`; `field` names it in the error.
pub(super) fn validity(text: Option<&str>, field: &str) -> Result<std::time::Duration, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_VALIDITY);
    };
    let bad = |message: String| ApiError::invalid_field(FieldError::new(field, message));
    let duration = humantime::parse_duration(text)
        .map_err(|e| bad(format!("`{text}` is not a duration such as 24h or 7d: {e}")))?;
    if duration.is_zero() || duration > MOST_VALIDITY {
        return Err(bad(format!(
            "must be more than 0s and at most {}d",
            MOST_VALIDITY.as_secs() / 86_400
        )));
    }
    Ok(duration)
}

/// The key links are signed with, made on first use.
async fn signing_key(state: &AppState) -> Result<Vec<u8>, StoreError> {
    let mut tx = state.store.begin().await?;
    let key = tx
        .setting_or_insert(SIGNING_KEY, crate::auth::new_secret("tbp"))
        .await?;
    tx.commit().await?;
    Ok(key.into_bytes())
}

fn signature(key: &[u8], id: &str, expires_at: i64) -> Result<Hmac<Sha256>, StoreError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| StoreError::Corrupt(format!("the portal signing key: {e}")))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(expires_at.to_string().as_bytes());
    Ok(mac)
}

/// Makes a link to the portal of `subscription_id`, valid for `valid_for`: the stored link and
/// its token.
pub(super) async fn make_link(
    state: &AppState,
    subscription_id: &str,
    valid_for: std::time::Duration,
) -> Result<(PortalLink, String), ApiError> {
    let key = signing_key(state).await?;
    let now = crate::store::now_ms();
    let millis = i64::try_from(valid_for.as_millis()).unwrap_or(i64::MAX);
    let link = PortalLink {
        id: format!("pl_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
        subscription_id: subscription_id.to_owned(),
        created_at: now,
        expires_at: now.saturating_add(millis),
        revoked_at: None,
    };
    let mac = signature(&key, &link.id, link.expires_at)?;
    let token = format!(
        "{}.{}.{}",
        link.id,
        link.expires_at,
        hex::encode(mac.finalize().into_bytes())
    );
    let mut tx = state.store.begin().await?;
    tx.insert_portal_link(&link).await?;
    tx.commit().await?;
    Ok((link, token))
}

/// Why a token opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Not a token tollbooth signed (altered, guessed, or of no link).
    Invalid,
    Expired,
    Revoked,
}

/// The link a token opens, if it opens one.
pub(super) async fn open_link(state: &AppState, token: &str) -> Result<PortalLink, OpenError> {
    let mut parts = token.split('.');
    let (Some(id), Some(expires), Some(signed), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OpenError::Refused(Refused::Invalid));
    };
    let Ok(expires_at) = expires.parse::<i64>() else {
        return Err(OpenError::Refused(Refused::Invalid));
    };
    let Ok(signed) = hex::decode(signed) else {
        return Err(OpenError::Refused(Refused::Invalid));
    };
    let key = signing_key(state).await?;
    if signature(&key, id, expires_at)?
        .verify_slice(&signed)
        .is_err()
    {
        return Err(OpenError::Refused(Refused::Invalid));
    }
    let link = state.store.begin_read().await?.portal_link(id).await?;
    let Some(link) = link.filter(|link| link.expires_at == expires_at) else {
        return Err(OpenError::Refused(Refused::Invalid));
    };
    match state_of(&link, crate::store::now_ms()) {
        "revoked" => Err(OpenError::Refused(Refused::Revoked)),
        "expired" => Err(OpenError::Refused(Refused::Expired)),
        _ => Ok(link),
    }
}

/// A token refused, or a fault reading it.
#[derive(Debug)]
pub(super) enum OpenError {
    Refused(Refused),
    Store(StoreError),
}

impl From<StoreError> for OpenError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Where this request was addressed: `scheme://host`, from `Host` and `X-Forwarded-Proto`.
pub(super) fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if is_tls(headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// Whether the request came over TLS, as a proxy in front of tollbooth says.
pub(super) fn is_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Makes a portal link: the page shows this subscription only, read-only, until the link expires
/// or is revoked. The token is in `url` and `path` of this answer only.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/portal-links", tag = "portal", operation_id = "create_portal_link",
    params(("id" = String, Path, description = "The subscription's id or external_id")),
    request_body(content = Option<NewLink>, description = "May be left out: the link is then valid for 7 days"),
    responses(
        (status = 201, description = "The link; `url` opens the portal", body = LinkView),
        (status = 404, description = "`not_found`: no such subscription", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a bad `valid_for`", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<NewLink>,
) -> Result<(StatusCode, Json<LinkView>), ApiError> {
    let valid_for = validity(body.valid_for.as_deref(), "valid_for")?;
    let subscription = state
        .store
        .begin_read()
        .await?
        .find_subscription(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription", &id))?;
    let (link, token) = make_link(&state, &subscription.id, valid_for).await?;
    let path = format!("/portal/{token}");
    let mut view = LinkView::new(link, &subscription.external_id, crate::store::now_ms());
    view.url = Some(format!("{}{path}", origin(&headers)));
    view.path = Some(path);
    Ok((StatusCode::CREATED, Json(view)))
}

/// The subscription's portal links, newest first (their tokens are not kept, so not shown).
#[utoipa::path(get, path = "/v1/subscriptions/{id}/portal-links", tag = "portal", operation_id = "list_portal_links",
    params(("id" = String, Path, description = "The subscription's id or external_id")),
    responses(
        (status = 200, description = "The links", body = Vec<LinkView>),
        (status = 404, description = "`not_found`: no such subscription", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<LinkView>>, ApiError> {
    let mut tx = state.store.begin_read().await?;
    let subscription = tx
        .find_subscription(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription", &id))?;
    let now = crate::store::now_ms();
    let links = tx.portal_links_of(&subscription.id).await?;
    Ok(Json(
        links
            .into_iter()
            .map(|link| LinkView::new(link, &subscription.external_id, now))
            .collect(),
    ))
}

/// Revokes a portal link at once: its page answers 403 from now on. Revoking a revoked link
/// changes nothing.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}/portal-links/{link}", tag = "portal", operation_id = "revoke_portal_link",
    params(
        ("id" = String, Path, description = "The subscription's id or external_id"),
        ("link" = String, Path, description = "The link's id (`pl_…`)"),
    ),
    responses(
        (status = 200, description = "The revoked link", body = LinkView),
        (status = 404, description = "`not_found`: no such subscription, or no such link of it", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn revoke(
    _: Admin,
    State(state): State<AppState>,
    Path((id, link)): Path<(String, String)>,
) -> Result<Json<LinkView>, ApiError> {
    let view = revoke_link(&state, &id, &link).await?;
    Ok(Json(view))
}

pub(super) async fn revoke_link(
    state: &AppState,
    subscription: &str,
    link: &str,
) -> Result<LinkView, ApiError> {
    let mut tx = state.store.begin().await?;
    let found = tx
        .find_subscription(subscription)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription", subscription))?;
    if !tx.revoke_portal_link(&found.id, link).await? {
        return Err(ApiError::not_found("portal link", link));
    }
    let stored = tx
        .portal_link(link)
        .await?
        .ok_or_else(|| ApiError::not_found("portal link", link))?;
    tx.commit().await?;
    Ok(LinkView::new(
        stored,
        &found.external_id,
        crate::store::now_ms(),
    ))
}
