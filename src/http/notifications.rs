//! `/v1/notifications`: the outbox of notifications to the provider, to see what was delivered
//! and to send again what was parked after its attempts, as Stripe lets one resend its events.

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, KeyOrId, PageParams, Pagination, Path, Query};
use super::{AppState, ListBody, timestamp};
use crate::domain::FieldError;
use crate::store::{Page, StoredNotification};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(retry))
}

/// Where a notification's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum DeliveryStatus {
    /// Not delivered yet: being sent, or due again after a failed attempt.
    Pending,
    Delivered,
    /// Parked after its attempts: sent again only by `POST /v1/notifications/{id}/retry`.
    Failed,
}

impl DeliveryStatus {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// A notification and its delivery.
#[derive(Serialize, utoipa::ToSchema)]
struct NotificationView {
    #[schema(pattern = "^ntf_[0-9a-f]{32}$")]
    id: String,
    /// Such as `subscription.status_changed`.
    #[serde(rename = "type")]
    kind: String,
    /// tollbooth's id of the subscription it is about, if any: deliveries go in order per
    /// subscription.
    subscription: Option<String>,
    status: DeliveryStatus,
    /// Attempts since it was made or last sent again.
    attempts: i64,
    #[schema(format = DateTime)]
    created_at: String,
    /// When a pending notification is sent next.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    /// What the last failed attempt met.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    delivered_at: Option<String>,
    /// The body as delivered: `id`, `type`, `created` and `data`.
    #[schema(value_type = Object)]
    body: Value,
}

impl NotificationView {
    fn new(stored: StoredNotification) -> Result<Self, ApiError> {
        let status = DeliveryStatus::parse(&stored.status).ok_or_else(|| {
            crate::store::StoreError::Corrupt(format!("notifications.status: `{}`", stored.status))
        })?;
        let body = serde_json::from_str(&stored.body)
            .map_err(|e| crate::store::StoreError::Corrupt(format!("notifications.body: {e}")))?;
        Ok(Self {
            id: stored.id,
            kind: stored.kind,
            subscription: Some(stored.subscription_id).filter(|s| !s.is_empty()),
            status,
            attempts: stored.attempts,
            created_at: timestamp(stored.created_at),
            next_attempt_at: (status == DeliveryStatus::Pending)
                .then(|| timestamp(stored.next_attempt_at)),
            last_error: stored.last_error,
            delivered_at: stored.delivered_at.map(timestamp),
            body,
        })
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct NotificationsQuery {
    /// Only the notifications of this status.
    #[param(value_type = Option<DeliveryStatus>)]
    status: Option<String>,
}

/// The notifications to the provider, oldest first: what was delivered, what is pending, what
/// was parked after its attempts (`?status=failed`).
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", operation_id = "list_notifications",
    params(NotificationsQuery, PageParams),
    responses(
        (status = 200, description = "A page of notifications", body = ListBody<NotificationView>),
        (status = 422, description = "`invalid_field`: a bad `status`, `after` or `limit`", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<NotificationsQuery>,
    Pagination(page, _): Pagination,
) -> Result<Json<ListBody<NotificationView>>, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::invalid_field(FieldError::new(
                "status",
                format!("`{text}` is not one of pending, delivered, failed"),
            ))
        })?),
    };
    let page = state
        .store
        .begin_read()
        .await?
        .list_notifications(status.map(DeliveryStatus::as_str), &page)
        .await?;
    // Read first (a stored row may not read), then paged as every list is.
    let views = Page {
        items: page
            .items
            .into_iter()
            .map(NotificationView::new)
            .collect::<Result<Vec<_>, _>>()?,
        has_more: page.has_more,
    };
    Ok(Json(ListBody::from_page(views, |n| &n.id, |n| n)))
}

/// Sends a notification again, whatever its status, with a fresh count of attempts and the same
/// id and body: for one parked after its attempts once the provider's endpoint is mended.
#[utoipa::path(post, path = "/v1/notifications/{id}/retry", tag = "notifications", operation_id = "retry_notification",
    params(("id" = KeyOrId, Path, description = "The notification's id")),
    responses(
        (status = 200, description = "Due again now", body = NotificationView),
        (status = 404, description = "`not_found`: no such notification", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn retry(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NotificationView>, ApiError> {
    let mut tx = state.store.begin().await?;
    let now = chrono::Utc::now().timestamp_millis();
    let found = tx.retry_notification(&id, now).await?;
    tx.commit().await?;
    let found = found.ok_or_else(|| ApiError::not_found("notification", &id))?;
    state.notifier.wake();
    Ok(Json(NotificationView::new(found)?))
}
