//! Revenue over a span of time: every subscription's billing periods that start in it, rated as
//! the invoice preview rates them, split into what was billed (closed periods) and what the open
//! ones come to so far, with the invoices Stripe reported and the recurring fees of today.
//!
//! A period is closed once the billing run has closed it (Stripe mode: the ledger then holds its
//! usage lines, and the billed figures are the ledger's) or, in ledger mode, once it has ended
//! (the billed figures are the rating's). Fixed fees are billed by the Stripe Subscription's
//! price, so they come from the rating in both modes. All of it is read in one transaction.

use super::BillingError;
use super::preview::{Recorded, rate, rate_totals};
use crate::domain::money::Currency;
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tier::{FeeInterval, Interval, TierSpec};
use crate::domain::time::from_ms;
use crate::pricing::{self, Invoice, LineKind, Period, PeriodUsage, PricingError};
use crate::store::{LedgerLine, Store, StoredInvoice, Subscription, UsageTotals};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::HashMap;

/// How the figures are grouped, besides the total per currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Api,
    Tier,
    Subscriber,
    Subscription,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "api" => Self::Api,
            "tier" => Self::Tier,
            "subscriber" => Self::Subscriber,
            "subscription" => Self::Subscription,
            _ => return None,
        })
    }
}

/// The revenue of the periods that start in `from..to`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revenue {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The time the open periods are rated at.
    pub as_of: DateTime<Utc>,
    pub group_by: Option<GroupBy>,
    /// One entry per currency, by currency code.
    pub currencies: Vec<CurrencyRevenue>,
}

/// The figures of one currency, in total and by group.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrencyRevenue {
    #[schema(value_type = String)]
    pub currency: Currency,
    #[serde(flatten)]
    pub figures: Figures,
    /// By the `group_by` key, ordered by key; empty without `group_by`.
    pub groups: Vec<Group>,
}

/// The figures of one api, tier, subscriber or subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Group {
    /// The api's or tier's slug, the subscriber's or subscription's external id.
    pub key: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// What a set of periods came to.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub closed_periods: u64,
    pub open_periods: u64,
    /// What the closed periods were billed: the ledger of Stripe's items (Stripe mode) or the
    /// rating (ledger mode), with the fixed fees as rated.
    pub billed: Amounts,
    /// What the rating says the closed periods come to; `billed.total` differs from it only when
    /// the ledger does not hold what the rating gives.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub rated_closed: Decimal,
    /// `billed.total` less `rated_closed`: zero when the ledger reconciles.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub unreconciled: Decimal,
    /// What the periods not yet closed come to so far.
    pub open: Amounts,
    /// Stripe's invoices of periods starting in the span, as their webhooks described them.
    pub invoices: InvoiceFigures,
    /// The recurring fixed fees of the subscriptions live now, as a monthly amount.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub monthly_recurring: Decimal,
    /// Subscriptions live now.
    pub live_subscriptions: u64,
}

/// Amounts by kind of line, in the currency's units; discounts and credits are negative.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Amounts {
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub fixed_fees: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub usage: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub overage: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub discounts: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub sla_credits: Decimal,
    /// Usage lines whose difference went on a later invoice because theirs was final.
    pub late_lines: u64,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub total: Decimal,
}

/// Invoices by where their payment stands.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct InvoiceFigures {
    pub count: u64,
    /// Paid invoices' `amount_paid`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub paid: Decimal,
    /// Open invoices' `amount_due` whose payment has not failed.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub open: Decimal,
    /// `amount_due` of open invoices whose last payment failed, and of uncollectible ones.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub failed: Decimal,
}

fn add(total: &mut Decimal, amount: Decimal) -> Result<(), BillingError> {
    *total = total
        .checked_add(amount)
        .ok_or(BillingError::Pricing(PricingError::Overflow))?;
    Ok(())
}

fn count(total: &mut u64) {
    *total = total.saturating_add(1);
}

impl Amounts {
    fn add(&mut self, kind: LineKind, amount: Decimal) -> Result<(), BillingError> {
        let slot = match kind {
            LineKind::FixedFee | LineKind::OneTimeFee => &mut self.fixed_fees,
            LineKind::Usage => &mut self.usage,
            LineKind::Overage => &mut self.overage,
            LineKind::VolumeDiscount => &mut self.discounts,
            LineKind::SlaCredit => &mut self.sla_credits,
        };
        add(slot, amount)?;
        add(&mut self.total, amount)
    }

    fn add_all(&mut self, other: &Amounts) -> Result<(), BillingError> {
        add(&mut self.fixed_fees, other.fixed_fees)?;
        add(&mut self.usage, other.usage)?;
        add(&mut self.overage, other.overage)?;
        add(&mut self.discounts, other.discounts)?;
        add(&mut self.sla_credits, other.sla_credits)?;
        self.late_lines = self.late_lines.saturating_add(other.late_lines);
        add(&mut self.total, other.total)
    }

    fn of_rating(invoice: &Invoice) -> Result<Self, BillingError> {
        let mut amounts = Self::default();
        for line in &invoice.lines {
            amounts.add(line.kind, line.amount)?;
        }
        Ok(amounts)
    }

    /// The ledger's lines of a period with the rating's fixed fees.
    fn of_ledger(
        invoice: &Invoice,
        lines: &[&LedgerLine],
        currency: Currency,
    ) -> Result<Self, BillingError> {
        let mut amounts = Self::default();
        for line in &invoice.lines {
            if matches!(line.kind, LineKind::FixedFee | LineKind::OneTimeFee) {
                amounts.add(line.kind, line.amount)?;
            }
        }
        for line in lines {
            amounts.add(
                ledger_kind(&line.line),
                currency.from_minor(line.amount_minor),
            )?;
            if line.late {
                count(&mut amounts.late_lines);
            }
        }
        Ok(amounts)
    }
}

/// The kind of a ledger line from its key (`usage-1`, `volume_discount-1`, …).
fn ledger_kind(line: &str) -> LineKind {
    let kind = line.rsplit_once('-').map_or(line, |(kind, _)| kind);
    serde_json::from_value(serde_json::Value::String(kind.to_owned())).unwrap_or(LineKind::Usage)
}

impl Figures {
    fn add_all(&mut self, other: &Figures) -> Result<(), BillingError> {
        self.closed_periods = self.closed_periods.saturating_add(other.closed_periods);
        self.open_periods = self.open_periods.saturating_add(other.open_periods);
        self.billed.add_all(&other.billed)?;
        add(&mut self.rated_closed, other.rated_closed)?;
        add(&mut self.unreconciled, other.unreconciled)?;
        self.open.add_all(&other.open)?;
        self.invoices.count = self.invoices.count.saturating_add(other.invoices.count);
        add(&mut self.invoices.paid, other.invoices.paid)?;
        add(&mut self.invoices.open, other.invoices.open)?;
        add(&mut self.invoices.failed, other.invoices.failed)?;
        add(&mut self.monthly_recurring, other.monthly_recurring)?;
        self.live_subscriptions = self
            .live_subscriptions
            .saturating_add(other.live_subscriptions);
        Ok(())
    }

    fn add_invoice(
        &mut self,
        invoice: &StoredInvoice,
        currency: Currency,
    ) -> Result<(), BillingError> {
        count(&mut self.invoices.count);
        match invoice.status.as_str() {
            "paid" => add(
                &mut self.invoices.paid,
                currency.from_minor(invoice.amount_paid),
            ),
            "open" if invoice.payment_failed_at.is_some() => add(
                &mut self.invoices.failed,
                currency.from_minor(invoice.amount_due),
            ),
            "open" => add(
                &mut self.invoices.open,
                currency.from_minor(invoice.amount_due),
            ),
            "uncollectible" => add(
                &mut self.invoices.failed,
                currency.from_minor(invoice.amount_due),
            ),
            _ => Ok(()),
        }
    }
}

/// The recurring fixed fee of a tier as a monthly amount, exact (rounded once, by the caller).
fn monthly(spec: &TierSpec) -> Option<Decimal> {
    let fee = spec.fixed_fee?;
    let FeeInterval::Every(interval) = fee.interval else {
        return None;
    };
    let count = Decimal::from(fee.interval_count.get());
    let per_interval = match interval {
        Interval::Day => Decimal::from(365) / Decimal::from(12),
        Interval::Week => Decimal::from(52) / Decimal::from(12),
        Interval::Month => Decimal::ONE,
        Interval::Year => Decimal::ONE / Decimal::from(12),
    };
    fee.amount
        .value()
        .checked_mul(per_interval)?
        .checked_div(count)
}

/// The longest span one report covers.
pub const MAX_SPAN_DAYS: i64 = 400;

/// One rated period of a subscription, with whether it is closed.
struct RatedPeriod {
    subscription: usize,
    invoice: Invoice,
    closed: bool,
}

/// The revenue of the periods starting in `from..to`, rated at `now`. `live` says whether
/// Stripe is billed (the ledger then holds what closed periods were billed).
pub async fn revenue(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: Option<GroupBy>,
    now: DateTime<Utc>,
    live: bool,
) -> Result<Revenue, BillingError> {
    let mut reports = revenue_by(store, &[(from, to)], &[group_by], now, live).await?;
    reports
        .pop()
        .ok_or(BillingError::Pricing(PricingError::NoParts))
}

/// As [`revenue`], one report per span and grouping (span by span, each with every grouping),
/// all from one reading and one rating of the periods starting in any of the spans.
pub async fn revenue_by(
    store: &Store,
    spans_asked: &[(DateTime<Utc>, DateTime<Utc>)],
    groupings: &[Option<GroupBy>],
    now: DateTime<Utc>,
    live: bool,
) -> Result<Vec<Revenue>, BillingError> {
    let (Some(from), Some(to)) = (
        spans_asked.iter().map(|s| s.0).min(),
        spans_asked.iter().map(|s| s.1).max(),
    ) else {
        return Ok(Vec::new());
    };
    let mut tx = store.begin_read().await?;
    let subscriptions = tx.all_subscriptions().await?;
    let versions: HashMap<String, TierSpec> = tx
        .all_tier_versions()
        .await?
        .into_iter()
        .map(|v| (v.id, v.spec))
        .collect();
    let mut histories: HashMap<String, Vec<(TierSpec, i64)>> = HashMap::new();
    for (subscription, version, from_ms) in tx.all_tier_history().await? {
        let spec = versions.get(&version).ok_or_else(|| {
            crate::store::StoreError::Corrupt(format!("tier version {version} is gone"))
        })?;
        histories
            .entry(subscription)
            .or_default()
            .push((spec.clone(), from_ms));
    }
    let current = |subscription: &Subscription| {
        versions.get(&subscription.tier_version_id).ok_or_else(|| {
            BillingError::Store(crate::store::StoreError::Corrupt(
                "subscription without its tier version".into(),
            ))
        })
    };
    // The periods to rate, and the span of usage they need.
    let mut periods: Vec<(usize, Period)> = Vec::new();
    for (index, subscription) in subscriptions.iter().enumerate() {
        for period in periods_starting_in(subscription, current(subscription)?, from, to, now)? {
            periods.push((index, period));
        }
    }
    let spans: Vec<(&str, i64, i64)> = periods
        .iter()
        .map(|(index, p)| {
            (
                subscriptions[*index].id.as_str(),
                p.start().timestamp_millis(),
                p.end().timestamp_millis(),
            )
        })
        .collect();
    let found = tx
        .period_totals(from.timestamp_millis(), to.timestamp_millis())
        .await?;
    let ledger = tx
        .billed_lines_between(from.timestamp_millis(), to.timestamp_millis())
        .await?;
    let closed_until: HashMap<String, i64> = tx.all_closed_until().await?.into_iter().collect();
    let invoices = tx
        .invoices_between(from.timestamp_millis(), to.timestamp_millis())
        .await?;
    drop(tx);
    // The periods asked for the first time: their rows made once, and kept from then on.
    let mut totals = totals_of(&spans, &found);
    let missing: Vec<(&str, i64, i64)> = spans
        .iter()
        .zip(&totals)
        .filter(|(_, found)| found.is_none())
        .map(|(span, _)| *span)
        .collect();
    if !missing.is_empty() {
        let mut tx = store.begin().await?;
        tx.fill_period_totals(&missing).await?;
        let found = tx
            .period_totals(from.timestamp_millis(), to.timestamp_millis())
            .await?;
        tx.commit().await?;
        totals = totals_of(&spans, &found);
    }
    let mut ledger_of: HashMap<(&str, i64), Vec<&LedgerLine>> = HashMap::new();
    for line in &ledger {
        ledger_of
            .entry((&line.subscription_id, line.period_start))
            .or_default()
            .push(line);
    }
    let mut rated = Vec::with_capacity(periods.len());
    for (position, (index, period)) in periods.into_iter().enumerate() {
        let subscription = &subscriptions[index];
        let own;
        let history = match histories.get(&subscription.id) {
            Some(history) => history.as_slice(),
            None => {
                own = [(current(subscription)?.clone(), subscription.started_at)];
                own.as_slice()
            }
        };
        let (start, end) = (
            period.start().timestamp_millis(),
            period.end().timestamp_millis(),
        );
        let found = totals[position].take().ok_or_else(|| {
            crate::store::StoreError::Corrupt(format!(
                "the usage of {}'s period from {start} was not made",
                subscription.id
            ))
        })?;
        let usage = PeriodUsage {
            billable_calls: u64::try_from(found.billable_calls).unwrap_or(0),
            billable_units: found.billable_units,
            failed_calls: u64::try_from(found.failed_calls).unwrap_or(0),
            total_calls: u64::try_from(found.total_calls).unwrap_or(0),
            days: Vec::new(),
            meters: Vec::new(),
            unique_values: Vec::new(),
        };
        let invoice = match rate_totals(subscription, history, period, usage) {
            Ok(Some(invoice)) => invoice,
            // A tier change inside the period, or an SLA credit: rated from its hours.
            Ok(None) => {
                let mut tx = store.begin_read().await?;
                let recorded = Recorded::read(&mut tx, &subscription.id, start, end).await?;
                drop(tx);
                match rate(subscription, history, period, &recorded) {
                    Ok(preview) => preview.invoice,
                    Err(BillingError::NotActive { .. }) => continue,
                    Err(other) => return Err(other),
                }
            }
            Err(BillingError::NotActive { .. }) => continue,
            Err(other) => return Err(other),
        };
        let closed = if live {
            closed_until
                .get(&subscription.id)
                .is_some_and(|until| *until >= end)
        } else {
            period.end() <= now
        };
        rated.push(RatedPeriod {
            subscription: index,
            invoice,
            closed,
        });
    }

    let mut reports = Vec::with_capacity(spans_asked.len() * groupings.len());
    for (&(from, to), &group_by) in spans_asked
        .iter()
        .flat_map(|span| groupings.iter().map(move |g| (span, g)))
    {
        let within = |start: i64| start >= from.timestamp_millis() && start < to.timestamp_millis();
        let key_of = |subscription| group_key(group_by, subscription, current(subscription)?);
        let mut figures: HashMap<(Currency, &str), Figures> = HashMap::new();
        for period in rated
            .iter()
            .filter(|p| within(p.invoice.period_start.timestamp_millis()))
        {
            let subscription = &subscriptions[period.subscription];
            let currency = period.invoice.currency;
            let entry = figures
                .entry((currency, key_of(subscription)?))
                .or_default();
            if period.closed {
                count(&mut entry.closed_periods);
                let billed = if live {
                    let start = period.invoice.period_start.timestamp_millis();
                    let lines = ledger_of
                        .get(&(subscription.id.as_str(), start))
                        .map_or(&[][..], Vec::as_slice);
                    Amounts::of_ledger(&period.invoice, lines, currency)?
                } else {
                    Amounts::of_rating(&period.invoice)?
                };
                add(&mut entry.rated_closed, period.invoice.total)?;
                let difference = billed
                    .total
                    .checked_sub(period.invoice.total)
                    .ok_or(BillingError::Pricing(PricingError::Overflow))?;
                add(&mut entry.unreconciled, difference)?;
                entry.billed.add_all(&billed)?;
            } else {
                count(&mut entry.open_periods);
                entry.open.add_all(&Amounts::of_rating(&period.invoice)?)?;
            }
        }
        let by_id: HashMap<&str, &Subscription> =
            subscriptions.iter().map(|s| (s.id.as_str(), s)).collect();
        for invoice in invoices
            .iter()
            .filter(|i| i.period_start.is_some_and(within))
        {
            let (Some(subscription), Ok(currency)) = (
                by_id.get(invoice.subscription_id.as_str()),
                Currency::try_from(invoice.currency.clone()),
            ) else {
                continue;
            };
            figures
                .entry((currency, key_of(subscription)?))
                .or_default()
                .add_invoice(invoice, currency)?;
        }
        let mut recurring: HashMap<(Currency, &str), Decimal> = HashMap::new();
        for subscription in &subscriptions {
            let live_now = subscription.status != SubscriptionStatus::Canceled
                && subscription.canceled_at.is_none_or(|at| from_ms(at) > now)
                && from_ms(subscription.started_at) <= now;
            if !live_now {
                continue;
            }
            let spec = current(subscription)?;
            let key = (spec.currency, key_of(subscription)?);
            count(&mut figures.entry(key).or_default().live_subscriptions);
            if let Some(amount) = monthly(spec) {
                add(recurring.entry(key).or_default(), amount)?;
            }
        }
        for (key, amount) in recurring {
            figures.entry(key).or_default().monthly_recurring = key.0.round(amount);
        }

        // By currency code, then by key.
        let mut figures: Vec<((String, &str), Currency, Figures)> = figures
            .into_iter()
            .map(|((currency, key), group)| ((currency.code(), key), currency, group))
            .collect();
        figures.sort_by(|a, b| a.0.cmp(&b.0));
        let mut currencies: Vec<CurrencyRevenue> = Vec::new();
        for ((code, key), currency, group) in figures {
            if currencies.last().is_none_or(|c| c.currency.code() != code) {
                currencies.push(CurrencyRevenue {
                    currency,
                    figures: Figures::default(),
                    groups: Vec::new(),
                });
            }
            if let Some(entry) = currencies.last_mut() {
                entry.figures.add_all(&group)?;
                if group_by.is_some() {
                    entry.groups.push(Group {
                        key: key.to_owned(),
                        figures: group,
                    });
                }
            }
        }
        reports.push(Revenue {
            from,
            to,
            as_of: now,
            group_by,
            currencies,
        });
    }
    Ok(reports)
}

/// The totals of each `(subscription, start, end)` period among the rows `found`, in order.
fn totals_of(
    periods: &[(&str, i64, i64)],
    found: &[(String, i64, i64, UsageTotals)],
) -> Vec<Option<UsageTotals>> {
    let by_period: HashMap<(&str, i64, i64), &UsageTotals> = found
        .iter()
        .map(|(subscription, start, end, totals)| ((subscription.as_str(), *start, *end), totals))
        .collect();
    periods
        .iter()
        .map(|period| by_period.get(period).map(|totals| (*totals).clone()))
        .collect()
}

/// The key a subscription's figures go under.
fn group_key<'a>(
    group_by: Option<GroupBy>,
    subscription: &'a Subscription,
    current: &'a TierSpec,
) -> Result<&'a str, BillingError> {
    Ok(match group_by {
        None => "",
        Some(GroupBy::Api) => current.api.as_str(),
        Some(GroupBy::Tier) => subscription.tier.as_str(),
        Some(GroupBy::Subscriber) => subscription.subscriber.as_str(),
        Some(GroupBy::Subscription) => subscription.external_id.as_str(),
    })
}

/// The periods of `subscription` that start in `from..to` and have begun by `now`.
fn periods_starting_in(
    subscription: &Subscription,
    current: &TierSpec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Period>, BillingError> {
    let started_at = from_ms(subscription.started_at);
    let anchor = started_at.date_naive();
    let length = current.period();
    let mut periods = Vec::new();
    let mut period = pricing::period_containing(anchor, length, from.max(started_at))?;
    if period.start() < from {
        period = pricing::period_containing(anchor, length, period.end())?;
    }
    let end = to.min(now);
    let canceled = subscription.canceled_at.map(from_ms);
    while period.start() < to && period.start() <= end {
        if canceled.is_some_and(|at| at <= period.start()) {
            break;
        }
        periods.push(period);
        period = pricing::period_containing(anchor, length, period.end())?;
    }
    Ok(periods)
}
