//! After Checkout (setup mode): the payment method the subscriber added becomes the Customer's
//! default for invoices, and an invoice the Subscription is still waiting on (its first one, or a
//! failed renewal) is paid with it, so the subscription does not expire as `incomplete`.

use super::StripeError;
use super::mirror::{CUSTOMER, Job};
use stripe_client_core::StripeRequest;

impl Job<'_> {
    /// Answers the payment method adopted.
    pub(super) async fn adopt_payment_method(&self) -> Result<String, StripeError> {
        let subscription_id = &self.intent.subject_id;
        let setup_intent = &self.intent.local_id;
        let mut retrieve =
            stripe_core::setup_intent::RetrieveSetupIntent::new(setup_intent.as_str()).customize();
        if !self.account().is_empty() {
            retrieve = retrieve.account_id(self.account().into());
        }
        let found = self.client.call(retrieve).await?;
        let payment_method = found
            .payment_method
            .map(|pm| pm.id().as_str().to_owned())
            .ok_or_else(|| {
                StripeError::Missing(format!("SetupIntent {setup_intent} has no payment method"))
            })?;

        let mut read = self.read().await?;
        let subscription = read
            .find_subscription(subscription_id)
            .await?
            .ok_or_else(|| {
                StripeError::Missing(format!("subscription `{subscription_id}` is gone"))
            })?;
        let customer = read
            .stripe_object(CUSTOMER, &subscription.subscriber_id, self.account())
            .await?
            .ok_or_else(|| {
                StripeError::Missing(format!("no Stripe customer for `{subscription_id}`"))
            })?;
        let mirror = read.stripe_subscription(subscription_id).await?;
        drop(read);

        let mut settings = stripe_core::customer::UpdateCustomerInvoiceSettings::new();
        settings.default_payment_method = Some(payment_method.clone());
        let update = stripe_core::customer::UpdateCustomer::new(customer.as_str())
            .invoice_settings(settings);
        self.client
            .call(self.customize(&update, &self.intent.idempotency_key)?)
            .await?;

        let Some(mirror) = mirror else {
            return Ok(payment_method);
        };
        let mut retrieve =
            stripe_billing::subscription::RetrieveSubscription::new(mirror.stripe_id.as_str())
                .customize();
        if !self.account().is_empty() {
            retrieve = retrieve.account_id(self.account().into());
        }
        let current = self.client.call(retrieve).await?;
        use stripe_shared::SubscriptionStatus as Status;
        let waiting = matches!(
            current.status,
            Status::Incomplete | Status::PastDue | Status::Unpaid
        );
        let invoice = current
            .latest_invoice
            .as_ref()
            .and_then(|invoice| invoice.id().as_ref().map(|id| id.as_str().to_owned()));
        if let (true, Some(invoice)) = (waiting, invoice) {
            let pay = stripe_billing::invoice::PayInvoice::new(invoice.as_str())
                .payment_method(payment_method.as_str());
            let key = format!("{}-pay-{invoice}", self.intent.idempotency_key);
            self.client.call(self.customize(&pay, &key)?).await?;
        }
        Ok(payment_method)
    }
}
