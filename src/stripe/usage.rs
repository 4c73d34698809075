//! Usage on Stripe: pending invoice items on a Subscription, created once and then updated, each
//! write with the key its caller derived from the ledger.

use super::{Stripe, StripeError, params};
use crate::domain::money::Currency;
use std::collections::HashMap;
use stripe::{IdempotencyKey, RequestStrategy};
use stripe_client_core::{CustomizableStripeRequest, StripeRequest};

/// One usage line to put on a Subscription's upcoming invoice.
#[derive(Debug, Clone)]
pub struct UsageItem<'a> {
    /// `''` is the platform account.
    pub account: &'a str,
    pub customer: &'a str,
    pub subscription: &'a str,
    pub currency: Currency,
    /// In the currency's minor unit; negative for credits.
    pub amount_minor: i64,
    pub description: &'a str,
    pub metadata: HashMap<String, String>,
}

impl Stripe {
    pub(super) fn request<R: StripeRequest>(
        request: &R,
        key: &str,
        account: &str,
    ) -> Result<CustomizableStripeRequest<R::Output>, StripeError> {
        let key = IdempotencyKey::new(key)
            .map_err(|e| StripeError::Config(format!("idempotency key `{key}`: {e}")))?;
        let mut request = request
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key));
        if !account.is_empty() {
            request = request.account_id(account.into());
        }
        Ok(request)
    }

    /// Creates a pending invoice item on the Subscription; answers its id.
    pub async fn create_usage_item(
        &self,
        key: &str,
        item: &UsageItem<'_>,
    ) -> Result<String, StripeError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| StripeError::Config("ledger mode".into()))?;
        let request = stripe_billing::invoice_item::CreateInvoiceItem::new()
            .customer(item.customer)
            .subscription(item.subscription)
            .currency(params::currency(item.currency)?)
            .amount(item.amount_minor)
            .description(item.description)
            .metadata(item.metadata.clone());
        let created = client
            .call(Self::request(&request, key, item.account)?)
            .await?;
        Ok(created.id.as_str().to_owned())
    }

    /// Sets a pending invoice item to a new amount and description.
    pub async fn update_usage_item(
        &self,
        key: &str,
        account: &str,
        item_id: &str,
        amount_minor: i64,
        description: &str,
    ) -> Result<(), StripeError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| StripeError::Config("ledger mode".into()))?;
        let request = stripe_billing::invoice_item::UpdateInvoiceItem::new(item_id)
            .amount(amount_minor)
            .description(description);
        client.call(Self::request(&request, key, account)?).await?;
        Ok(())
    }
}
