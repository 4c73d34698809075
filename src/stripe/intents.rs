//! What each catalog change owes Stripe, written as intents in the change's own transaction.
//! An intent's Idempotency-Key is derived from tollbooth's ids and the intent alone, so however
//! often it is written or run, Stripe sees one request.

use crate::domain::tier::TierSpec;
use crate::store::{NewIntent, StoreResult, Subscriber, Subscription, Tier, TierVersion, Tx};

/// The Stripe writes tollbooth makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A paid tier's Product.
    Product,
    /// A paid tier version's Price (and its one-time Price when the fee is one-time).
    Price,
    /// The Price of a version a newer one replaced.
    DeactivatePrice,
    Customer,
    UpdateCustomer,
    /// A Subscription on a paid tier version.
    Subscription,
    /// A Subscription moved to another paid version's Price.
    ChangePrice,
    CancelNow,
    CancelAtPeriodEnd,
    /// The payment method a subscriber added through Checkout becomes the Customer's default, and
    /// an invoice the Subscription is waiting on is paid with it.
    AdoptPaymentMethod,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Product => "product",
            Self::Price => "price",
            Self::DeactivatePrice => "deactivate_price",
            Self::Customer => "customer",
            Self::UpdateCustomer => "update_customer",
            Self::Subscription => "subscription",
            Self::ChangePrice => "change_price",
            Self::CancelNow => "cancel_now",
            Self::CancelAtPeriodEnd => "cancel_at_period_end",
            Self::AdoptPaymentMethod => "adopt_payment_method",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Product,
            Self::Price,
            Self::DeactivatePrice,
            Self::Customer,
            Self::UpdateCustomer,
            Self::Subscription,
            Self::ChangePrice,
            Self::CancelNow,
            Self::CancelAtPeriodEnd,
            Self::AdoptPaymentMethod,
        ]
        .into_iter()
        .find(|intent| intent.as_str() == text)
    }
}

/// The Idempotency-Key of an intent: `tb-{intent}-{row id}[-{detail}][-{account}]`.
pub fn idempotency_key(
    intent: Intent,
    local_id: &str,
    detail: Option<&str>,
    account: &str,
) -> String {
    let mut key = format!("tb-{}-{local_id}", intent.as_str().replace('_', "-"));
    for part in [detail.unwrap_or(""), account] {
        if !part.is_empty() {
            key.push('-');
            key.push_str(part);
        }
    }
    key
}

/// Writes one intent; the same intent twice is one row.
async fn owe(
    tx: &mut Tx,
    intent: Intent,
    subject_id: &str,
    local_id: &str,
    detail: Option<&str>,
    account: &str,
) -> StoreResult<String> {
    let key = idempotency_key(intent, local_id, detail, account);
    enqueue(tx, key, intent, subject_id, local_id, account).await
}

/// Writes the intent of one change to a subscription. The same change made again later (moved
/// A → B → A, cancelled after a move back to paid) is a new request to Stripe, so its key
/// carries how often that change was owed before: `…-c2`, `…-c3`.
async fn owe_change(
    tx: &mut Tx,
    intent: Intent,
    subscription_id: &str,
    version_id: &str,
    account: &str,
) -> StoreResult<String> {
    let base = idempotency_key(intent, subscription_id, Some(version_id), account);
    let before = tx.count_intents_keyed(subscription_id, &base).await?;
    let key = if before == 0 {
        base
    } else {
        format!("{base}-c{}", before + 1)
    };
    enqueue(tx, key, intent, subscription_id, subscription_id, account).await
}

async fn enqueue(
    tx: &mut Tx,
    key: String,
    intent: Intent,
    subject_id: &str,
    local_id: &str,
    account: &str,
) -> StoreResult<String> {
    tx.enqueue_intent(&NewIntent {
        idempotency_key: &key,
        intent: intent.as_str(),
        subject_id,
        local_id,
        account,
    })
    .await?;
    Ok(key)
}

fn is_paid(spec: &TierSpec) -> bool {
    !spec.is_free()
}

/// A tier's newest version: a paid one needs its Product and Price; the paid version it replaced
/// has its Price deactivated (subscriptions on it keep it until they are moved).
pub async fn tier_version_written(
    tx: &mut Tx,
    tier: &Tier,
    previous: Option<&TierVersion>,
) -> StoreResult<()> {
    let account = tx.tier_account(&tier.id).await?;
    if is_paid(&tier.latest.spec) {
        owe(tx, Intent::Product, &tier.id, &tier.id, None, &account).await?;
        owe(tx, Intent::Price, &tier.id, &tier.latest.id, None, &account).await?;
    }
    if let Some(previous) = previous.filter(|v| is_paid(&v.spec)) {
        owe(
            tx,
            Intent::DeactivatePrice,
            &tier.id,
            &previous.id,
            None,
            &account,
        )
        .await?;
    }
    Ok(())
}

/// A subscriber is a Customer in the platform account; a change is mirrored to every account
/// that has a Customer for it.
pub async fn subscriber_written(
    tx: &mut Tx,
    subscriber: &Subscriber,
    created: bool,
) -> StoreResult<()> {
    if created {
        owe(
            tx,
            Intent::Customer,
            &subscriber.id,
            &subscriber.id,
            None,
            "",
        )
        .await?;
        return Ok(());
    }
    let revision = subscriber.updated_at.to_string();
    let mut accounts: Vec<String> = tx
        .stripe_objects_of(super::mirror::CUSTOMER, &subscriber.id)
        .await?
        .into_iter()
        .map(|(account, _)| account)
        .collect();
    if !accounts.iter().any(String::is_empty) {
        accounts.push(String::new());
    }
    for account in accounts {
        owe(
            tx,
            Intent::UpdateCustomer,
            &subscriber.id,
            &subscriber.id,
            Some(&revision),
            &account,
        )
        .await?;
    }
    Ok(())
}

/// A subscription on a paid version becomes a Subscription, with what it needs before it.
pub async fn subscription_started(
    tx: &mut Tx,
    subscription: &Subscription,
    version: &TierVersion,
) -> StoreResult<()> {
    if !is_paid(&version.spec) {
        return Ok(());
    }
    let account = tx.tier_account(&version.tier_id).await?;
    let subject = subscription.id.as_str();
    owe(
        tx,
        Intent::Customer,
        subject,
        &subscription.subscriber_id,
        None,
        &account,
    )
    .await?;
    owe(
        tx,
        Intent::Product,
        subject,
        &version.tier_id,
        None,
        &account,
    )
    .await?;
    owe(tx, Intent::Price, subject, &version.id, None, &account).await?;
    owe_change(tx, Intent::Subscription, subject, &version.id, &account).await?;
    Ok(())
}

/// A subscription moved from `from` to `to`: paid to paid changes the Subscription's Price,
/// free to paid starts a Subscription, paid to free cancels it now with a final invoice.
pub async fn tier_changed(
    tx: &mut Tx,
    subscription: &Subscription,
    from: &TierVersion,
    to: &TierVersion,
) -> StoreResult<()> {
    let subject = subscription.id.as_str();
    match (is_paid(&from.spec), is_paid(&to.spec)) {
        (true, true) => {
            let account = tx.tier_account(&to.tier_id).await?;
            owe(tx, Intent::Product, subject, &to.tier_id, None, &account).await?;
            owe(tx, Intent::Price, subject, &to.id, None, &account).await?;
            owe_change(tx, Intent::ChangePrice, subject, &to.id, &account).await?;
        }
        (false, true) => subscription_started(tx, subscription, to).await?,
        (true, false) => {
            let account = tx.tier_account(&from.tier_id).await?;
            owe_change(tx, Intent::CancelNow, subject, &from.id, &account).await?;
        }
        (false, false) => {}
    }
    Ok(())
}

/// A cancellation of a subscription on a paid version.
pub async fn subscription_canceled(
    tx: &mut Tx,
    subscription: &Subscription,
    version: &TierVersion,
    now: bool,
) -> StoreResult<()> {
    if !is_paid(&version.spec) {
        return Ok(());
    }
    let account = tx.tier_account(&version.tier_id).await?;
    let intent = if now {
        Intent::CancelNow
    } else {
        Intent::CancelAtPeriodEnd
    };
    let subject = subscription.id.as_str();
    owe_change(tx, intent, subject, &version.id, &account).await?;
    Ok(())
}

/// A subscriber finished Checkout (setup mode): the SetupIntent's payment method is to be adopted.
pub async fn payment_method_added(
    tx: &mut Tx,
    subscription_id: &str,
    setup_intent: &str,
    account: &str,
) -> StoreResult<()> {
    owe(
        tx,
        Intent::AdoptPaymentMethod,
        subscription_id,
        setup_intent,
        None,
        account,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_from_ids_and_the_intent_alone() {
        assert_eq!(
            idempotency_key(Intent::Customer, "sub_1", None, ""),
            "tb-customer-sub_1"
        );
        assert_eq!(
            idempotency_key(Intent::ChangePrice, "subn_1", Some("tierv_2"), "acct_9"),
            "tb-change-price-subn_1-tierv_2-acct_9"
        );
        for intent in [Intent::Product, Intent::CancelAtPeriodEnd] {
            assert_eq!(Intent::parse(intent.as_str()), Some(intent));
        }
    }
}
