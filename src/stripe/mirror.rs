//! Carrying out one intent: build the Stripe request from the row as it is now, send it with the
//! intent's Idempotency-Key, store what Stripe answered, mark the intent done. Run twice, it sends
//! the same key (Stripe answers with the object it already made) or nothing at all (the answer
//! is already stored).

use super::intents::{Intent, idempotency_key};
use super::params::{self, MinorAmount};
use super::{Stripe, StripeError, StripeHttp};
use crate::domain::tier::{FeeInterval, Interval, Proration, TierSpec};
use crate::store::{Store, StripeIntent, StripeSubscription, Subscription, TierVersion, Tx};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use stripe::{IdempotencyKey, RequestStrategy};
use stripe_client_core::{CustomizableStripeRequest, StripeRequest};

pub const PRODUCT: &str = "product";
pub const PRICE: &str = "price";
pub const ONE_TIME_PRICE: &str = "one_time_price";
pub const CUSTOMER: &str = "customer";

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, StripeError>> + Send + 'a>>;

/// The intents that failed in one pass over pending intents (a `sync`, the settling of one
/// admin call), with their errors. In that pass none of them is sent again, and an intent that
/// needs one fails without being sent: many subscriptions on one tier whose Product failed cost
/// one Product request, not one each.
#[derive(Debug, Default)]
pub struct Pass {
    failed: Mutex<HashMap<String, String>>,
}

impl Pass {
    fn failed(&self, key: &str) -> Option<String> {
        let failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed.get(key).cloned()
    }

    fn record_failure(&self, key: &str, error: &StripeError) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed.insert(key.to_owned(), error.to_string());
    }
}

/// Runs the intent with this key unless it is done; earlier pending intents about the same row
/// run first. A failure is recorded on the intent and returned; an intent that already failed
/// in this pass is not sent again.
pub fn run<'a>(
    client: &'a StripeHttp,
    stripe: &'a Stripe,
    store: &'a Store,
    pass: &'a Pass,
    key: &'a str,
) -> Boxed<'a, ()> {
    Box::pin(async move {
        // Requests that settle the same row at once take turns: the first carries the intent
        // out, the others then find it done, and Stripe sees the request once.
        let turn = stripe.in_flight.turn(key).await;
        let mut tx = store.begin_read().await?;
        let intent = tx
            .find_intent(key)
            .await?
            .ok_or_else(|| StripeError::Missing(format!("no Stripe intent `{key}`")))?;
        if intent.state == "done" {
            return Ok(());
        }
        if let Some(error) = pass.failed(key) {
            return Err(StripeError::Missing(format!(
                "Stripe intent `{key}` failed earlier in this pass and is not sent again: {error}"
            )));
        }
        // Another request carried it out while this one waited, and failed: its error is this
        // request's too, rather than one more round of retries each.
        if turn.waited
            && let Some(error) = &intent.last_error
        {
            return Err(StripeError::Unavailable {
                attempts: 0,
                last: format!("a request just before this one failed: {error}"),
            });
        }
        let earlier: Vec<StripeIntent> = tx
            .pending_intents(Some(&intent.subject_id), 0, 1_000)
            .await?
            .into_iter()
            .filter(|e| e.seq < intent.seq)
            .collect();
        drop(tx);
        for earlier in earlier {
            run(client, stripe, store, pass, &earlier.idempotency_key).await?;
        }
        let job = Job {
            client,
            stripe,
            store,
            pass,
            intent: &intent,
        };
        match job.carry_out().await {
            Ok(stripe_id) => {
                let mut tx = store.begin().await?;
                tx.finish_intent(key, &stripe_id).await?;
                tx.commit().await?;
                tracing::info!(key, intent = %intent.intent, stripe_id, "mirrored to Stripe");
                Ok(())
            }
            Err(StripeError::Store(error)) => Err(StripeError::Store(error)),
            Err(error) => {
                tracing::warn!(key, %error, "Stripe intent failed; it stays pending");
                pass.record_failure(key, &error);
                let mut tx = store.begin().await?;
                tx.fail_intent(key, &error.to_string()).await?;
                tx.commit().await?;
                Err(error)
            }
        }
    })
}

/// The intents this process is carrying out, by idempotency key.
#[derive(Debug, Clone, Default)]
pub(super) struct InFlight(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

/// The right to carry out one intent, until dropped.
pub(super) struct Turn {
    in_flight: InFlight,
    key: String,
    /// Whether another task had the turn first.
    waited: bool,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl InFlight {
    /// Waits until no other task of this process is carrying out the intent with this key.
    pub(super) async fn turn(&self, key: &str) -> Turn {
        let lock = {
            let mut keys = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            keys.entry(key.to_owned()).or_default().clone()
        };
        let (held, waited) = match lock.clone().try_lock_owned() {
            Ok(held) => (held, false),
            Err(_) => (lock.lock_owned().await, true),
        };
        Turn {
            in_flight: self.clone(),
            key: key.to_owned(),
            waited,
            _held: held,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut keys = self
            .in_flight
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map and this turn hold the lock: nobody waits, so the entry can go.
        if keys
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) <= 2)
        {
            keys.remove(&self.key);
        }
    }
}

pub(super) struct Job<'a> {
    pub(super) client: &'a StripeHttp,
    stripe: &'a Stripe,
    pub(super) store: &'a Store,
    pass: &'a Pass,
    pub(super) intent: &'a StripeIntent,
}

impl Job<'_> {
    pub(super) fn account(&self) -> &str {
        &self.intent.account
    }

    /// A request with this intent's account and the given key.
    pub(super) fn customize<R: StripeRequest>(
        &self,
        request: &R,
        key: &str,
    ) -> Result<CustomizableStripeRequest<R::Output>, StripeError> {
        let key = IdempotencyKey::new(key)
            .map_err(|e| StripeError::Config(format!("idempotency key `{key}`: {e}")))?;
        let mut request = request
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key));
        if !self.account().is_empty() {
            request = request.account_id(self.account().into());
        }
        Ok(request)
    }

    pub(super) async fn read(&self) -> Result<Tx, StripeError> {
        Ok(self.store.begin_read().await?)
    }

    async fn save_object(
        &self,
        kind: &str,
        local_id: &str,
        stripe_id: &str,
    ) -> Result<(), StripeError> {
        let mut tx = self.store.begin().await?;
        tx.save_stripe_object(kind, local_id, self.account(), stripe_id)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The Stripe object of a row this intent needs, running the intent that makes it if need be.
    async fn ensure(
        &self,
        kind: &str,
        intent: Intent,
        local_id: &str,
    ) -> Result<String, StripeError> {
        if let Some(id) = self
            .read()
            .await?
            .stripe_object(kind, local_id, self.account())
            .await?
        {
            return Ok(id);
        }
        let key = idempotency_key(intent, local_id, None, self.account());
        run(self.client, self.stripe, self.store, self.pass, &key).await?;
        self.read()
            .await?
            .stripe_object(kind, local_id, self.account())
            .await?
            .ok_or_else(|| StripeError::Missing(format!("no Stripe {kind} for `{local_id}`")))
    }

    async fn carry_out(&self) -> Result<String, StripeError> {
        let intent = Intent::parse(&self.intent.intent).ok_or_else(|| {
            StripeError::Missing(format!("unknown Stripe intent `{}`", self.intent.intent))
        })?;
        match intent {
            Intent::Product => self.product().await,
            Intent::Price => self.price().await,
            Intent::DeactivatePrice => self.deactivate_price().await,
            Intent::Customer => self.customer().await,
            Intent::UpdateCustomer => self.update_customer().await,
            Intent::Subscription => self.subscription().await,
            Intent::ChangePrice => self.change_price().await,
            Intent::CancelNow => self.cancel(true).await,
            Intent::CancelAtPeriodEnd => self.cancel(false).await,
            Intent::AdoptPaymentMethod => self.adopt_payment_method().await,
        }
    }

    async fn product(&self) -> Result<String, StripeError> {
        let tier_id = &self.intent.local_id;
        if let Some(id) = self
            .read()
            .await?
            .stripe_object(PRODUCT, tier_id, self.account())
            .await?
        {
            return Ok(id);
        }
        let tier = self
            .read()
            .await?
            .find_tier(tier_id)
            .await?
            .ok_or_else(|| StripeError::Missing(format!("tier `{tier_id}` is gone")))?;
        let request = stripe_product::product::CreateProduct::new(tier.latest.spec.name.clone())
            .metadata(params::metadata([
                ("tier_id", tier.id.as_str()),
                ("tier", tier.latest.spec.slug.as_str()),
            ]));
        let product = self
            .client
            .call(self.customize(&request, &self.intent.idempotency_key)?)
            .await?;
        self.save_object(PRODUCT, tier_id, product.id.as_str())
            .await?;
        Ok(product.id.as_str().to_owned())
    }

    async fn price(&self) -> Result<String, StripeError> {
        let version_id = &self.intent.local_id;
        let version = self.version(version_id).await?;
        let product = self
            .ensure(PRODUCT, Intent::Product, &version.tier_id)
            .await?;
        let spec = &version.spec;
        let currency = params::currency(spec.currency)?;
        let period = spec.period();
        let version_number = version.version.to_string();
        let metadata = params::metadata([
            ("tier_id", version.tier_id.as_str()),
            ("tier", spec.slug.as_str()),
            ("tier_version_id", version.id.as_str()),
            ("tier_version", version_number.as_str()),
        ]);
        let nickname = format!("{} v{}", spec.name, version.version);

        let recurring_fee = match spec.fixed_fee {
            Some(fee) if matches!(fee.interval, FeeInterval::Every(_)) => fee.amount,
            _ => crate::domain::money::Amount::ZERO,
        };
        // Each lookup is its own statement: a read transaction held across a Stripe call would
        // keep a connection from the pool for as long as Stripe takes.
        let existing = self
            .read()
            .await?
            .stripe_object(PRICE, version_id, self.account())
            .await?;
        let price_id = match existing {
            Some(id) => id,
            None => {
                let mut recurring = stripe_product::price::CreatePriceRecurring::new(
                    params::interval(period.interval),
                );
                recurring.interval_count = Some(period.interval_count.get());
                let request = with_amount(
                    stripe_product::price::CreatePrice::new(currency.clone())
                        .product(product.clone())
                        .recurring(recurring)
                        .nickname(nickname.clone())
                        .metadata(metadata.clone()),
                    params::minor_amount(recurring_fee, spec.currency)?,
                );
                let price = self
                    .client
                    .call(self.customize(&request, &self.intent.idempotency_key)?)
                    .await?;
                self.save_object(PRICE, version_id, price.id.as_str())
                    .await?;
                price.id.as_str().to_owned()
            }
        };
        let one_time_made = self
            .read()
            .await?
            .stripe_object(ONE_TIME_PRICE, version_id, self.account())
            .await?
            .is_some();
        if let Some(fee) = spec
            .fixed_fee
            .filter(|f| f.interval == FeeInterval::OneTime)
            && !one_time_made
        {
            let request = with_amount(
                stripe_product::price::CreatePrice::new(currency)
                    .product(product)
                    .nickname(format!("{nickname} one-time fee"))
                    .metadata(metadata),
                params::minor_amount(fee.amount, spec.currency)?,
            );
            let key = format!("{}-one-time", self.intent.idempotency_key);
            let price = self.client.call(self.customize(&request, &key)?).await?;
            self.save_object(ONE_TIME_PRICE, version_id, price.id.as_str())
                .await?;
        }
        Ok(price_id)
    }

    async fn deactivate_price(&self) -> Result<String, StripeError> {
        let version_id = &self.intent.local_id;
        // A version whose Price was never made has nothing to deactivate.
        let Some(price) = self
            .read()
            .await?
            .stripe_object(PRICE, version_id, self.account())
            .await?
        else {
            return Ok(String::new());
        };
        let request = stripe_product::price::UpdatePrice::new(price.as_str()).active(false);
        let price = self
            .client
            .call(self.customize(&request, &self.intent.idempotency_key)?)
            .await?;
        Ok(price.id.as_str().to_owned())
    }

    async fn customer(&self) -> Result<String, StripeError> {
        let subscriber_id = &self.intent.local_id;
        if let Some(id) = self
            .read()
            .await?
            .stripe_object(CUSTOMER, subscriber_id, self.account())
            .await?
        {
            return Ok(id);
        }
        let subscriber = self.subscriber(subscriber_id).await?;
        let request = stripe_core::customer::CreateCustomer::new()
            .name(subscriber.spec.name.clone())
            .email(subscriber.spec.email.as_str())
            .metadata(params::metadata([
                ("subscriber_id", subscriber.id.as_str()),
                ("external_id", subscriber.spec.external_id.as_str()),
            ]));
        let customer = self
            .client
            .call(self.customize(&request, &self.intent.idempotency_key)?)
            .await?;
        self.save_object(CUSTOMER, subscriber_id, customer.id.as_str())
            .await?;
        Ok(customer.id.as_str().to_owned())
    }

    async fn update_customer(&self) -> Result<String, StripeError> {
        let subscriber_id = &self.intent.local_id;
        let customer = self
            .ensure(CUSTOMER, Intent::Customer, subscriber_id)
            .await?;
        let subscriber = self.subscriber(subscriber_id).await?;
        let request = stripe_core::customer::UpdateCustomer::new(customer.as_str())
            .name(subscriber.spec.name.clone())
            .email(subscriber.spec.email.as_str())
            .metadata(params::metadata([
                ("subscriber_id", subscriber.id.as_str()),
                ("external_id", subscriber.spec.external_id.as_str()),
            ]));
        let customer = self
            .client
            .call(self.customize(&request, &self.intent.idempotency_key)?)
            .await?;
        Ok(customer.id.as_str().to_owned())
    }

    async fn subscription(&self) -> Result<String, StripeError> {
        let subscription = self.local_subscription().await?;
        if let Some(row) = self
            .read()
            .await?
            .stripe_subscription(&subscription.id)
            .await?
            && row.status != "canceled"
        {
            return Ok(row.stripe_id);
        }
        // Canceled before it ever reached Stripe: there is nothing to make.
        if subscription.canceled_at.is_some() {
            return Ok(String::new());
        }
        let version = self.version(&subscription.tier_version_id).await?;
        if version.spec.is_free() {
            return Ok(String::new());
        }
        let customer = self
            .ensure(CUSTOMER, Intent::Customer, &subscription.subscriber_id)
            .await?;
        let price = self.ensure(PRICE, Intent::Price, &version.id).await?;
        let one_time = self
            .read()
            .await?
            .stripe_object(ONE_TIME_PRICE, &version.id, self.account())
            .await?;

        let version_number = version.version.to_string();
        let mut request = stripe_billing::subscription::CreateSubscription::new()
            .customer(customer.clone())
            .items(vec![
                stripe_billing::subscription::CreateSubscriptionItems {
                    price: Some(price.clone()),
                    ..stripe_billing::subscription::CreateSubscriptionItems::new()
                },
            ])
            .collection_method(stripe_shared::SubscriptionCollectionMethod::ChargeAutomatically)
            // The first period starts at midnight on the start day (backdated) and ends at the
            // anchor: a whole period, charged whole. With `none` Stripe would make it free.
            .proration_behavior(
                stripe_billing::subscription::CreateSubscriptionProrationBehavior::CreateProrations,
            )
            .metadata(params::metadata([
                ("subscription_id", subscription.id.as_str()),
                ("external_id", subscription.external_id.as_str()),
                ("tier", version.spec.slug.as_str()),
                ("tier_version", version_number.as_str()),
            ]));
        request = anchored(request, &version.spec, subscription.started_at)?;
        if let Some(one_time) = one_time {
            request = request.add_invoice_items(vec![
                stripe_billing::subscription::CreateSubscriptionAddInvoiceItems {
                    price: Some(one_time),
                    ..stripe_billing::subscription::CreateSubscriptionAddInvoiceItems::new()
                },
            ]);
        }
        let created = self
            .client
            .call(self.customize(&request, &self.intent.idempotency_key)?)
            .await?;
        let mut row = stripe_row(&subscription.id, self.account(), &created)?;
        row.checkout_url = self
            .checkout_url(&subscription, &customer, &version)
            .await?;
        let mut tx = self.store.begin().await?;
        tx.save_stripe_subscription(&row).await?;
        tx.commit().await?;
        Ok(row.stripe_id)
    }

    /// A Checkout Session in setup mode when the Customer has no way to pay yet.
    async fn checkout_url(
        &self,
        subscription: &Subscription,
        customer: &str,
        version: &TierVersion,
    ) -> Result<Option<String>, StripeError> {
        let Some(return_url) = &self.stripe.checkout_return_url else {
            return Ok(None);
        };
        let mut retrieve = stripe_core::customer::RetrieveCustomer::new(customer).customize();
        if !self.account().is_empty() {
            retrieve = retrieve.account_id(self.account().into());
        }
        let stripe_core::customer::RetrieveCustomerReturned::Customer(found) =
            self.client.call(retrieve).await?
        else {
            return Err(StripeError::Missing(format!(
                "Stripe customer {customer} was deleted"
            )));
        };
        let has_payment_method = found.default_source.is_some()
            || found
                .invoice_settings
                .as_ref()
                .is_some_and(|s| s.default_payment_method.is_some());
        if has_payment_method {
            return Ok(None);
        }
        let request = stripe_checkout::checkout_session::CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Setup)
            .customer(customer)
            .currency(params::currency(version.spec.currency)?)
            .success_url(return_url.clone())
            .cancel_url(return_url.clone())
            .metadata(params::metadata([(
                "subscription_id",
                subscription.id.as_str(),
            )]));
        let key = idempotency_key(
            Intent::Subscription,
            &subscription.id,
            Some("checkout"),
            self.account(),
        );
        let session = self.client.call(self.customize(&request, &key)?).await?;
        Ok(session.url)
    }

    async fn change_price(&self) -> Result<String, StripeError> {
        let subscription = self.local_subscription().await?;
        let Some(current) = self
            .read()
            .await?
            .stripe_subscription(&subscription.id)
            .await?
        else {
            return Err(StripeError::Missing(format!(
                "subscription `{}` has no Stripe Subscription to move",
                subscription.external_id
            )));
        };
        let version = self.version(&subscription.tier_version_id).await?;
        let price = self.ensure(PRICE, Intent::Price, &version.id).await?;
        if current.price_id == price {
            return Ok(current.stripe_id);
        }
        let request = stripe_billing::subscription::UpdateSubscription::new(
            current.stripe_id.as_str(),
        )
        .items(vec![
            stripe_billing::subscription::UpdateSubscriptionItems {
                id: Some(current.item_id.clone()),
                price: Some(price),
                ..stripe_billing::subscription::UpdateSubscriptionItems::new()
            },
        ])
        .proration_behavior(match version.spec.proration {
            Proration::ByDay => {
                stripe_billing::subscription::UpdateSubscriptionProrationBehavior::CreateProrations
            }
            Proration::None => {
                stripe_billing::subscription::UpdateSubscriptionProrationBehavior::None
            }
        });
        let updated = self
            .client
            .call(self.customize(&request, &self.intent.idempotency_key)?)
            .await?;
        self.store_subscription(&subscription.id, &updated).await
    }

    async fn cancel(&self, now: bool) -> Result<String, StripeError> {
        let subscription = self.local_subscription().await?;
        let Some(current) = self
            .read()
            .await?
            .stripe_subscription(&subscription.id)
            .await?
        else {
            // Never mirrored: nothing in Stripe to cancel.
            return Ok(String::new());
        };
        let updated = if now {
            let proration = self
                .version(&subscription.tier_version_id)
                .await?
                .spec
                .proration;
            let request =
                stripe_billing::subscription::CancelSubscription::new(current.stripe_id.as_str())
                    .invoice_now(true)
                    .prorate(proration == Proration::ByDay);
            self.client
                .call(self.customize(&request, &self.intent.idempotency_key)?)
                .await?
        } else {
            let request =
                stripe_billing::subscription::UpdateSubscription::new(current.stripe_id.as_str())
                    .cancel_at_period_end(true);
            self.client
                .call(self.customize(&request, &self.intent.idempotency_key)?)
                .await?
        };
        self.store_subscription(&subscription.id, &updated).await
    }

    async fn store_subscription(
        &self,
        subscription_id: &str,
        stripe: &stripe_shared::Subscription,
    ) -> Result<String, StripeError> {
        let row = stripe_row(subscription_id, self.account(), stripe)?;
        let mut tx = self.store.begin().await?;
        tx.save_stripe_subscription(&row).await?;
        tx.commit().await?;
        Ok(row.stripe_id)
    }

    async fn version(&self, id: &str) -> Result<TierVersion, StripeError> {
        self.read()
            .await?
            .find_tier_version(id)
            .await?
            .ok_or_else(|| StripeError::Missing(format!("tier version `{id}` is gone")))
    }

    async fn subscriber(&self, id: &str) -> Result<crate::store::Subscriber, StripeError> {
        self.read()
            .await?
            .find_subscriber(id)
            .await?
            .ok_or_else(|| StripeError::Missing(format!("subscriber `{id}` is gone")))
    }

    pub(super) async fn local_subscription(&self) -> Result<Subscription, StripeError> {
        let id = &self.intent.local_id;
        self.read()
            .await?
            .find_subscription(id)
            .await?
            .ok_or_else(|| StripeError::Missing(format!("subscription `{id}` is gone")))
    }
}

fn with_amount(
    request: stripe_product::price::CreatePrice,
    amount: MinorAmount,
) -> stripe_product::price::CreatePrice {
    match amount {
        MinorAmount::Whole(minor) => request.unit_amount(minor),
        MinorAmount::Decimal(minor) => request.unit_amount_decimal(minor),
    }
}

/// Periods end at 00:00 UTC: the Subscription starts at midnight on the start day
/// (`backdate_start_date`), and a monthly or yearly period is anchored on that day at midnight
/// (`billing_cycle_anchor_config`); other periods on the end of tollbooth's first period.
fn anchored(
    request: stripe_billing::subscription::CreateSubscription,
    spec: &TierSpec,
    started_at: i64,
) -> Result<stripe_billing::subscription::CreateSubscription, StripeError> {
    use chrono::Datelike;
    let period = spec.period();
    let start = crate::domain::time::from_ms(started_at);
    let day = start.date_naive();
    let midnight = day.and_time(chrono::NaiveTime::MIN).and_utc();
    let request = if midnight < start {
        request.backdate_start_date(midnight.timestamp())
    } else {
        request
    };
    if period.interval_count.get() == 1
        && matches!(period.interval, Interval::Month | Interval::Year)
    {
        let mut config =
            stripe_billing::subscription::CreateSubscriptionBillingCycleAnchorConfig::new(
                i64::from(day.day()),
            );
        config.hour = Some(0);
        config.minute = Some(0);
        config.second = Some(0);
        if period.interval == Interval::Year {
            config.month = Some(i64::from(day.month()));
        }
        return Ok(request.billing_cycle_anchor_config(config));
    }
    let first = crate::pricing::period_containing(day, period, start)
        .map_err(|e| StripeError::Missing(format!("the first billing period: {e}")))?;
    Ok(request.billing_cycle_anchor(first.end().timestamp()))
}

/// What tollbooth keeps of a Stripe Subscription.
fn stripe_row(
    subscription_id: &str,
    account: &str,
    stripe: &stripe_shared::Subscription,
) -> Result<StripeSubscription, StripeError> {
    let item = stripe.items.data.first().ok_or_else(|| {
        StripeError::Decode(format!(
            "Stripe subscription {} has no items",
            stripe.id.as_str()
        ))
    })?;
    Ok(StripeSubscription {
        subscription_id: subscription_id.to_owned(),
        account: account.to_owned(),
        stripe_id: stripe.id.as_str().to_owned(),
        item_id: item.id.as_str().to_owned(),
        price_id: item.price.id.as_str().to_owned(),
        status: stripe.status.as_str().to_owned(),
        current_period_start: Some(item.current_period_start.saturating_mul(1000)),
        current_period_end: Some(item.current_period_end.saturating_mul(1000)),
        cancel_at_period_end: stripe.cancel_at_period_end,
        checkout_url: None,
    })
}
