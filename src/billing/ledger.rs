//! The ledger of billed usage: makes Stripe's invoice items for one period match the rating,
//! sending only differences.
//!
//! A write that adds (a new item, a late item) is saved in `billing_outbox` before it is sent and
//! settled into `billed_lines` after, in one transaction. A run stopped in between resends the
//! saved request unchanged (same key, same parameters) before it works out anything new, so Stripe
//! never sees one key with two requests and never makes a second item, whatever usage arrived
//! meanwhile. An update sets an item's whole amount, so it is sent straight away under a key that
//! names the amount and description it sets.

use super::BillingError;
use super::commits::{LedgerWrite, LedgerWrites};
use super::run::{Reconciliation, RunReport, SubscriptionError};
use crate::domain::money::Currency;
use crate::pricing::{Invoice, LineKind};
use crate::store::{BilledLine, Store};
use crate::stripe::{Stripe, UsageItem};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A Stripe write owed for one usage line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingSend {
    kind: SendKind,
    key: String,
    /// The existing item, for an update or a late item.
    item_id: Option<String>,
    /// What the line is billed at once the write is done.
    amount_minor: i64,
    description: String,
    revision: i64,
    /// What the line was billed at before: a late item carries the difference.
    previous_minor: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SendKind {
    /// A new pending invoice item.
    Create,
    /// A new amount on the item, while its invoice is a draft.
    Update,
    /// The item's invoice is final: the difference as a labelled item on the next invoice.
    Late,
}

/// Where one period's items go.
struct Target<'a> {
    store: &'a Store,
    writes: LedgerWrites<'a>,
    stripe: &'a Stripe,
    subscription_id: &'a str,
    account: &'a str,
    customer: &'a str,
    stripe_subscription: &'a str,
    currency: Currency,
    period_start: i64,
    period: chrono::NaiveDate,
    closing: bool,
}

/// The key of each usage line of an invoice: its kind and its place among lines of that kind.
fn usage_lines(invoice: &Invoice) -> Vec<(String, Decimal, String)> {
    let mut counts: std::collections::HashMap<LineKind, usize> = std::collections::HashMap::new();
    invoice
        .lines
        .iter()
        .filter(|line| !matches!(line.kind, LineKind::FixedFee | LineKind::OneTimeFee))
        .map(|line| {
            let n = counts.entry(line.kind).or_default();
            *n += 1;
            let kind = serde_json::to_value(line.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (format!("{kind}-{n}"), line.amount, line.description.clone())
        })
        .collect()
}

fn major(amount: i64, currency: Currency) -> Decimal {
    Decimal::new(amount, currency.minor_unit_digits())
}

/// Makes Stripe's items for one period match the rated invoice. A closing period gets a
/// reconciliation line: what the rating says against what the ledger holds afterwards.
pub(super) async fn bring_in_line(
    store: &Store,
    writes: LedgerWrites<'_>,
    stripe: &Stripe,
    subscription_id: &str,
    invoice: &Invoice,
    closing: bool,
    report: &mut RunReport,
) -> Result<(), SubscriptionError> {
    let (mirror, customer) = crate::stripe::customer_of(store, subscription_id).await?;
    let target = Target {
        store,
        writes,
        stripe,
        subscription_id,
        account: &mirror.account,
        customer: &customer,
        stripe_subscription: &mirror.stripe_id,
        currency: invoice.currency,
        period_start: invoice.period_start.timestamp_millis(),
        period: invoice.period_start.date_naive(),
        closing,
    };
    let wanted = usage_lines(invoice);
    let sent = send_differences(&target, wanted.clone(), report).await;
    if closing {
        let rated: Decimal = wanted.iter().map(|(_, amount, _)| *amount).sum();
        let mut tx = store.begin_read().await?;
        let billed = tx
            .billed_lines_of(subscription_id, target.period_start)
            .await?
            .iter()
            .map(|(_, line)| major(line.amount_minor, target.currency))
            .sum();
        report.reconciliation.push(Reconciliation {
            subscription: subscription_id.to_owned(),
            period_start: invoice.period_start,
            currency: target.currency.code(),
            rated,
            billed,
            difference: rated - billed,
        });
    }
    sent
}

async fn send_differences(
    target: &Target<'_>,
    mut wanted: Vec<(String, Decimal, String)>,
    report: &mut RunReport,
) -> Result<(), SubscriptionError> {
    let mut tx = target.store.begin_read().await?;
    let mut billed = tx
        .billed_lines_of(target.subscription_id, target.period_start)
        .await?;
    let owed = tx
        .pending_sends_of(target.subscription_id, target.period_start)
        .await?;
    drop(tx);
    // First what a stopped run left half-sent, exactly as it was saved.
    for (line, request) in owed {
        let send: PendingSend = serde_json::from_str(&request)
            .map_err(|e| crate::store::StoreError::Corrupt(format!("billing_outbox: {e}")))?;
        let done = send_line(target, &line, send, report).await?;
        billed.retain(|(key, _)| *key != line);
        billed.push((line, done));
    }
    // A line billed before that the rating no longer gives goes to zero.
    for (line, _) in &billed {
        if !wanted.iter().any(|(key, _, _)| key == line) {
            wanted.push((line.clone(), Decimal::ZERO, "No usage".to_owned()));
        }
    }
    for (line, amount, description) in wanted {
        let amount_minor = target.currency.to_minor(amount).ok_or_else(|| {
            BillingError::Invalid(crate::domain::FieldError::new(
                "amount",
                format!("{amount} {} is too large to bill", target.currency.code()),
            ))
        })?;
        let previous = billed.iter().find(|(key, _)| *key == line).map(|(_, b)| b);
        let key_base = format!(
            "tb-usage-{}-{}-{line}",
            target.subscription_id, target.period_start
        );
        let send = match previous {
            None if amount_minor == 0 => continue,
            None => PendingSend {
                kind: SendKind::Create,
                key: key_base,
                item_id: None,
                amount_minor,
                description,
                revision: 1,
                previous_minor: 0,
            },
            Some(previous)
                if previous.amount_minor == amount_minor && previous.description == description =>
            {
                continue;
            }
            Some(previous) => {
                let revision = previous.revision + 1;
                // An update sets the whole amount, so it needs no outbox: its key names what it
                // sets, and a run stopped after Stripe's answer sends the same key again, or,
                // if usage moved on, a new key with the new amount.
                let send = PendingSend {
                    kind: SendKind::Update,
                    key: format!(
                        "{key_base}-r{revision}-{amount_minor}-{}",
                        short_digest(&description)
                    ),
                    item_id: Some(previous.stripe_item_id.clone()),
                    amount_minor,
                    description,
                    revision,
                    previous_minor: previous.amount_minor,
                };
                send_line(target, &line, send, report).await?;
                continue;
            }
        };
        save_pending(target, &line, &send).await?;
        send_line(target, &line, send, report).await?;
    }
    Ok(())
}

/// Eight hex digits of the SHA-256 of a text: enough to tell two descriptions apart in a key.
fn short_digest(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..4])
}

async fn save_pending(
    target: &Target<'_>,
    line: &str,
    send: &PendingSend,
) -> Result<(), SubscriptionError> {
    let request = serde_json::to_string(send)
        .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
    ledger_write(target, line, LedgerWrite::Owe { request }).await
}

/// A write to this line's ledger rows, committed before it answers.
async fn ledger_write(
    target: &Target<'_>,
    line: &str,
    write: LedgerWrite,
) -> Result<(), SubscriptionError> {
    let (subscription, period_start) = (target.subscription_id, target.period_start);
    target
        .writes
        .write(subscription, period_start, line, write)
        .await?;
    Ok(())
}

/// Sends one saved write, then settles it into the ledger.
async fn send_line(
    target: &Target<'_>,
    line: &str,
    mut send: PendingSend,
    report: &mut RunReport,
) -> Result<BilledLine, SubscriptionError> {
    let stripe = target.stripe;
    let item_id = loop {
        match send.kind {
            SendKind::Create => {
                let metadata = [
                    (
                        "tollbooth_period_start".to_owned(),
                        target.period.to_string(),
                    ),
                    ("tollbooth_line".to_owned(), line.to_owned()),
                ];
                // Made only as its period closes, the item joins the next invoice, not the
                // period's own (already drafted): it says which period it is for.
                let shown = if target.closing {
                    format!(
                        "For the period from {}: {}",
                        target.period, send.description
                    )
                } else {
                    send.description.clone()
                };
                let id = stripe
                    .create_usage_item(
                        &send.key,
                        &item(target, send.amount_minor, &shown, metadata),
                    )
                    .await?;
                report.items_created += 1;
                break id;
            }
            SendKind::Update => {
                let item_id = send.item_id.clone().unwrap_or_default();
                match stripe
                    .update_usage_item(
                        &send.key,
                        target.account,
                        &item_id,
                        send.amount_minor,
                        &send.description,
                    )
                    .await
                {
                    Ok(()) => {
                        report.items_updated += 1;
                        break item_id;
                    }
                    // The period's invoice is final: the difference goes on the next one.
                    Err(error) if target.closing && error.is_finalized_invoice() => {
                        send.kind = SendKind::Late;
                        send.key = format!(
                            "tb-late-{}-{}-{line}-r{}",
                            target.subscription_id, target.period_start, send.revision
                        );
                        save_pending(target, line, &send).await?;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            SendKind::Late => {
                let description = format!(
                    "Late usage for the period from {}: {}",
                    target.period, send.description
                );
                let metadata = [
                    ("tollbooth_late_for".to_owned(), target.period.to_string()),
                    ("tollbooth_line".to_owned(), line.to_owned()),
                ];
                let difference = send.amount_minor - send.previous_minor;
                stripe
                    .create_usage_item(&send.key, &item(target, difference, &description, metadata))
                    .await?;
                report.late_items += 1;
                break send.item_id.clone().unwrap_or_default();
            }
        }
    };
    let billed = BilledLine {
        stripe_item_id: item_id,
        amount_minor: send.amount_minor,
        description: send.description,
        revision: send.revision,
    };
    let settle = LedgerWrite::Settle {
        billed: billed.clone(),
    };
    ledger_write(target, line, settle).await?;
    Ok(billed)
}

fn item<'a>(
    target: &Target<'a>,
    amount_minor: i64,
    description: &'a str,
    metadata: [(String, String); 2],
) -> UsageItem<'a> {
    let mut metadata: std::collections::HashMap<String, String> = metadata.into();
    metadata.insert(
        "tollbooth_subscription_id".to_owned(),
        target.subscription_id.to_owned(),
    );
    UsageItem {
        account: target.account,
        customer: target.customer,
        subscription: target.stripe_subscription,
        currency: target.currency,
        amount_minor,
        description,
        metadata,
    }
}
