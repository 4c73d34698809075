//! The Stripe side of a catalog write as the admin API shows it: mirror after the commit, then
//! say how far the mirror got.

use super::AppState;
use super::error::ApiError;
use crate::store::StripeSubscription;
use serde::Serialize;

/// Where a row stands with Stripe: `synced`, `pending` (waiting, or ledger mode), `failed` (with
/// the last error; retried by `tollbooth stripe sync`) or `not_needed` (a free tier).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StripeView {
    state: MirrorState,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    objects: Vec<StripeObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<SubscriptionView>,
}

/// How far a row's Stripe mirror got.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum MirrorState {
    Synced,
    Pending,
    Failed,
    NotNeeded,
}

/// A Stripe object made for the row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StripeObject {
    /// `product`, `price`, `one_time_price`, `customer`.
    kind: String,
    id: String,
    /// The connected account it lives in, when not the platform's.
    #[serde(skip_serializing_if = "String::is_empty")]
    account: String,
}

/// The Stripe Subscription of a subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StripeSubscriptionView)]
struct SubscriptionView {
    id: String,
    status: String,
    #[schema(format = DateTime)]
    current_period_start: Option<String>,
    #[schema(format = DateTime)]
    current_period_end: Option<String>,
    cancel_at_period_end: bool,
    /// A Stripe Checkout page (setup mode) where the subscriber adds a payment method.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout_url: Option<String>,
}

impl From<StripeSubscription> for SubscriptionView {
    fn from(row: StripeSubscription) -> Self {
        Self {
            id: row.stripe_id,
            status: row.status,
            current_period_start: row.current_period_start.map(super::timestamp),
            current_period_end: row.current_period_end.map(super::timestamp),
            cancel_at_period_end: row.cancel_at_period_end,
            checkout_url: row.checkout_url,
        }
    }
}

/// Mirrors a committed catalog write to Stripe. When Stripe refuses or cannot be reached the
/// row stays saved, marked with the error, and the caller gets the error.
pub async fn settle(state: &AppState, subject_id: &str) -> Result<(), ApiError> {
    state
        .stripe
        .settle(&state.store, subject_id)
        .await
        .map_err(ApiError::from)
}

/// The Stripe side of one row: its mirror state and the Stripe objects of `(kind, row id)`.
pub async fn view(
    state: &AppState,
    subject_id: &str,
    objects: &[(&str, &str)],
) -> Result<StripeView, ApiError> {
    let mut tx = state.store.begin_read().await?;
    let mirror = tx.mirror_state(subject_id).await?;
    let mut found = Vec::new();
    for (kind, local_id) in objects {
        for (account, id) in tx.stripe_objects_of(kind, local_id).await? {
            found.push(StripeObject {
                kind: (*kind).to_owned(),
                id,
                account,
            });
        }
    }
    let subscription = tx.stripe_subscription(subject_id).await?.map(Into::into);
    let state = match (mirror.pending, &mirror.last_error) {
        (0, _) if mirror.done == 0 => MirrorState::NotNeeded,
        (0, _) => MirrorState::Synced,
        (_, Some(_)) => MirrorState::Failed,
        (_, None) => MirrorState::Pending,
    };
    Ok(StripeView {
        state,
        last_error: mirror.last_error,
        objects: found,
        subscription,
    })
}

/// A catalog row as answered, with its Stripe side.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WithStripe<T> {
    #[serde(flatten)]
    #[schema(inline)]
    pub row: T,
    pub stripe: StripeView,
}
