//! Stripe's own customer portal: a session for the Customer of one subscription, so the
//! subscriber manages cards and reads invoices on Stripe's pages.

use super::{Stripe, StripeError};
use crate::store::{Store, StripeSubscription};

impl Stripe {
    /// A Stripe customer portal session for the Customer of `subscription_id`, coming back to
    /// `return_url`; answers its URL. `key` is the request's idempotency key.
    pub async fn billing_portal_url(
        &self,
        store: &Store,
        subscription_id: &str,
        return_url: &str,
        key: &str,
    ) -> Result<String, StripeError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| StripeError::Config("ledger mode".into()))?;
        let (mirror, customer) = customer_of(store, subscription_id).await?;
        let request = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url);
        let session = client
            .call(Self::request(&request, key, &mirror.account)?)
            .await?;
        Ok(session.url)
    }
}

/// The Stripe Subscription of `subscription_id` and the id of its Customer.
pub(crate) async fn customer_of(
    store: &Store,
    subscription_id: &str,
) -> Result<(StripeSubscription, String), StripeError> {
    let mut tx = store.begin_read().await?;
    let mirror = tx
        .stripe_subscription(subscription_id)
        .await?
        .ok_or_else(|| {
            StripeError::Missing(format!(
                "subscription `{subscription_id}` has no Stripe Subscription"
            ))
        })?;
    let subscriber = tx
        .find_subscription(subscription_id)
        .await?
        .map(|s| s.subscriber_id)
        .unwrap_or_default();
    let customer = tx
        .stripe_object("customer", &subscriber, &mirror.account)
        .await?
        .ok_or_else(|| {
            StripeError::Missing(format!(
                "subscription `{subscription_id}` has no Stripe Customer"
            ))
        })?;
    Ok((mirror, customer))
}
