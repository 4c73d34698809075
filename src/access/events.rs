//! What each Stripe event does to payment state. Every type tollbooth subscribes to is named in
//! one match; state is taken from the event's object and its time, never from arrival order.

use crate::notify::Notifier;
use crate::store::{PaymentState, Store, StoreResult, StoredInvoice, Tx};
use crate::stripe::webhook::{EventType, StripeEvent};

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    /// The event id was seen before: nothing done.
    Replayed,
    /// A type tollbooth stores but does not act on.
    Ignored,
    /// About a Stripe object tollbooth does not know.
    UnknownObject,
    /// Older than the state already held, or about a canceled subscription.
    Stale,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Replayed => "replayed",
            Self::Ignored => "ignored",
            Self::UnknownObject => "unknown_object",
            Self::Stale => "stale",
        }
    }
}

/// What an event did: its outcome and the subscriptions whose state it set, with that state.
#[derive(Debug, Clone)]
pub struct Applied {
    pub outcome: EventOutcome,
    pub changed: Vec<(String, &'static str)>,
    /// A renewal invoice was drafted: the subscription's period that ended at this time
    /// (Unix milliseconds) is to be closed now, the billing job's fast path.
    pub close: Option<(String, i64)>,
    /// A subscription this event left Stripe writes owed for (a payment method to adopt).
    pub stripe_owed: Option<String>,
}

/// Subscriptions whose payment state an event set.
type Changed = Vec<(String, &'static str)>;

/// Records a verified event once and applies it, in one transaction.
pub async fn apply_event(
    store: &Store,
    notifier: &Notifier,
    event: &StripeEvent,
    payload: &str,
) -> StoreResult<Applied> {
    let mut tx = store.begin().await?;
    let mut changed = Vec::new();
    if !tx
        .record_stripe_event(&event.id, &event.type_name, event.created_ms, payload)
        .await?
    {
        return Ok(Applied {
            outcome: EventOutcome::Replayed,
            changed,
            close: None,
            stripe_owed: None,
        });
    }
    let mut close = None;
    let mut stripe_owed = None;
    let outcome = outcome_of(&mut tx, event, &mut changed, &mut close, &mut stripe_owed).await?;
    if outcome == EventOutcome::UnknownObject {
        tracing::info!(event = %event.id, kind = %event.type_name, "Stripe event about an object tollbooth does not know");
    }
    tx.set_event_outcome(&event.id, outcome.as_str()).await?;
    if outcome == EventOutcome::Applied {
        notify(&mut tx, notifier, event, &changed).await?;
    }
    tx.commit().await?;
    Ok(Applied {
        outcome,
        changed,
        close,
        stripe_owed,
    })
}

/// Tells the provider what the event changed, in the event's transaction.
async fn notify(
    tx: &mut Tx,
    notifier: &Notifier,
    event: &StripeEvent,
    changed: &[(String, &'static str)],
) -> StoreResult<()> {
    let invoice = match event.kind {
        EventType::InvoicePaid => Some("invoice.paid"),
        EventType::InvoicePaymentFailed => Some("invoice.payment_failed"),
        _ => None,
    };
    for (subscription, status) in changed {
        let data = serde_json::json!({ "subscription": subscription, "status": status,
                                       "stripe_event": event.id });
        notifier
            .write(tx, "subscription.status_changed", subscription, data)
            .await?;
        if let Some(kind) = invoice {
            let data = serde_json::json!({ "subscription": subscription, "invoice": event.object["id"],
                    "amount_due": event.object["amount_due"], "currency": event.object["currency"] });
            notifier.write(tx, kind, subscription, data).await?;
        }
    }
    Ok(())
}

/// Checkout (setup mode) done: the link goes, and the payment method it saved is to be adopted.
async fn checkout_completed(
    tx: &mut Tx,
    event: &StripeEvent,
    stripe_owed: &mut Option<String>,
) -> StoreResult<EventOutcome> {
    let Some(id) = event.object["metadata"]["tollbooth_subscription_id"].as_str() else {
        return Ok(EventOutcome::UnknownObject);
    };
    let Some(mirror) = tx.stripe_subscription(id).await? else {
        return Ok(EventOutcome::UnknownObject);
    };
    tx.clear_checkout_url(id).await?;
    let setup_intent = match &event.object["setup_intent"] {
        serde_json::Value::String(id) => Some(id.as_str()),
        expanded => expanded["id"].as_str(),
    };
    if let Some(setup_intent) = setup_intent {
        crate::stripe::intents::payment_method_added(tx, id, setup_intent, &mirror.account).await?;
        *stripe_owed = Some(id.to_owned());
    }
    Ok(EventOutcome::Applied)
}

/// `invoice.created` for a renewal: the period that just ended is to be closed at once.
async fn renewal(
    tx: &mut Tx,
    event: &StripeEvent,
    close: &mut Option<(String, i64)>,
) -> StoreResult<EventOutcome> {
    if event.object["billing_reason"].as_str() != Some("subscription_cycle") {
        return Ok(EventOutcome::Ignored);
    }
    let Some(subscription) = subscription_of(tx, event).await? else {
        return Ok(EventOutcome::UnknownObject);
    };
    let period_end = event.object["period_end"]
        .as_i64()
        .map_or(event.created_ms, |seconds| seconds.saturating_mul(1000));
    *close = Some((subscription, period_end));
    Ok(EventOutcome::Applied)
}

async fn outcome_of(
    tx: &mut Tx,
    event: &StripeEvent,
    changed: &mut Changed,
    close: &mut Option<(String, i64)>,
    stripe_owed: &mut Option<String>,
) -> StoreResult<EventOutcome> {
    let failed_at = Some(event.created_ms);
    if matches!(
        event.kind,
        EventType::InvoiceCreated
            | EventType::InvoiceFinalized
            | EventType::InvoicePaid
            | EventType::InvoicePaymentFailed
            | EventType::InvoiceMarkedUncollectible
    ) {
        record_invoice(tx, event).await?;
    }
    Ok(match &event.kind {
        EventType::InvoicePaid => payment(tx, event, "active", None, changed).await?,
        EventType::InvoicePaymentFailed => {
            payment(tx, event, "past_due", failed_at, changed).await?
        }
        EventType::InvoiceMarkedUncollectible => {
            payment(tx, event, "unpaid", failed_at, changed).await?
        }
        EventType::SubscriptionCreated | EventType::SubscriptionUpdated => {
            match event.object["status"].as_str().unwrap_or_default() {
                "active" | "trialing" => payment(tx, event, "active", None, changed).await?,
                "past_due" => payment(tx, event, "past_due", failed_at, changed).await?,
                "unpaid" => payment(tx, event, "unpaid", failed_at, changed).await?,
                "canceled" | "incomplete_expired" => {
                    payment(tx, event, "canceled", None, changed).await?
                }
                // incomplete, paused: the first payment or a pause says nothing about access yet.
                _ => EventOutcome::Ignored,
            }
        }
        EventType::SubscriptionDeleted => payment(tx, event, "canceled", None, changed).await?,
        EventType::CustomerDeleted => {
            let customer = event.object["id"].as_str().unwrap_or_default();
            let subscriptions = tx.subscriptions_of_customer(customer).await?;
            if subscriptions.is_empty() {
                EventOutcome::UnknownObject
            } else {
                for id in subscriptions {
                    set(tx, &id, event, "canceled", None, changed).await?;
                }
                EventOutcome::Applied
            }
        }
        EventType::CheckoutSessionCompleted => checkout_completed(tx, event, stripe_owed).await?,
        EventType::InvoiceCreated => renewal(tx, event, close).await?,
        // Usage goes on a draft; once final, the billing job sends late usage to the next one.
        EventType::InvoiceFinalized => EventOutcome::Ignored,
        EventType::Other(_) => EventOutcome::Ignored,
    })
}

/// Sets the payment state of the subscription the event is about.
async fn payment(
    tx: &mut Tx,
    event: &StripeEvent,
    status: &'static str,
    past_due_since: Option<i64>,
    changed: &mut Changed,
) -> StoreResult<EventOutcome> {
    let Some(subscription) = subscription_of(tx, event).await? else {
        return Ok(EventOutcome::UnknownObject);
    };
    set(tx, &subscription, event, status, past_due_since, changed).await
}

async fn set(
    tx: &mut Tx,
    subscription: &str,
    event: &StripeEvent,
    status: &'static str,
    past_due_since: Option<i64>,
    changed: &mut Changed,
) -> StoreResult<EventOutcome> {
    let state = PaymentState {
        status,
        past_due_since,
        changed_at: event.created_ms,
    };
    if tx.set_payment_state(subscription, &state).await? {
        changed.push((subscription.to_owned(), status));
        return Ok(EventOutcome::Applied);
    }
    // Older than the state held, but an earlier failure of a subscription still past due: its
    // grace period runs from the first failure.
    if let ("past_due", Some(failed_at)) = (status, past_due_since)
        && tx.move_grace_start_back(subscription, failed_at).await?
    {
        return Ok(EventOutcome::Applied);
    }
    Ok(EventOutcome::Stale)
}

/// The tollbooth subscription of the event's Stripe Subscription: by its stored id, else by the
/// `tollbooth_subscription_id` metadata tollbooth gave it.
async fn subscription_of(tx: &mut Tx, event: &StripeEvent) -> StoreResult<Option<String>> {
    if let Some(stripe_id) = event.subscription_id()
        && let Some(id) = tx.subscription_by_stripe_id(stripe_id).await?
    {
        return Ok(Some(id));
    }
    let object = &event.object;
    let metadata = object["metadata"]["tollbooth_subscription_id"]
        .as_str()
        .or_else(|| {
            object["parent"]["subscription_details"]["metadata"]["tollbooth_subscription_id"]
                .as_str()
        });
    match metadata {
        Some(id) => Ok(tx.find_subscription(id).await?.map(|s| s.id)),
        None => Ok(None),
    }
}

/// Keeps what an `invoice.*` event says of the invoice of a known subscription (what was billed
/// and where its payment stands), unless a newer event already did.
async fn record_invoice(tx: &mut Tx, event: &StripeEvent) -> StoreResult<()> {
    let object = &event.object;
    let (Some(stripe_id), Some(currency)) = (object["id"].as_str(), object["currency"].as_str())
    else {
        return Ok(());
    };
    let Some(subscription_id) = subscription_of(tx, event).await? else {
        return Ok(());
    };
    let seconds = |name: &str| object[name].as_i64().map(|s| s.saturating_mul(1000));
    let text = |name: &str| object[name].as_str().map(str::to_owned);
    let invoice = StoredInvoice {
        stripe_id: stripe_id.to_owned(),
        subscription_id,
        status: object["status"].as_str().unwrap_or("draft").to_owned(),
        currency: currency.to_owned(),
        total: object["total"].as_i64().unwrap_or(0),
        amount_due: object["amount_due"].as_i64().unwrap_or(0),
        amount_paid: object["amount_paid"].as_i64().unwrap_or(0),
        period_start: seconds("period_start"),
        period_end: seconds("period_end"),
        number: text("number"),
        hosted_invoice_url: text("hosted_invoice_url"),
        payment_failed_at: (event.kind == EventType::InvoicePaymentFailed)
            .then_some(event.created_ms),
        event_created: event.created_ms,
    };
    tx.put_invoice(&invoice).await?;
    Ok(())
}
