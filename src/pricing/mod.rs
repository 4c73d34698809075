//! Rating: what one subscription's usage of one billing period costs under one tier version.
//! Pure: no I/O and no clock, so the same tier, period and usage always give the same invoice.

mod adjust;
mod bands;
mod calendar;
mod describe;
mod fee;
mod figures;
mod period;
mod usage;

#[cfg(test)]
mod examples;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod properties;

pub use calendar::{period_after, period_containing};
pub use period::{Period, RatedPeriod};

use crate::domain::money::Currency;
use crate::domain::tier::TierSpec;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Why a period could not be rated or placed on the calendar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("a billing period must run from one midnight UTC to a later one")]
    PeriodNotWholeDays,
    #[error("the active part must be a non-empty span inside the billing period")]
    ActiveOutsidePeriod,
    #[error("the usage of {0} falls outside the active part of the period")]
    DayOutsideActive(NaiveDate),
    #[error("billable units must not be negative")]
    NegativeUnits,
    #[error("{0} is before the subscription's anchor date")]
    BeforeAnchor(DateTime<Utc>),
    #[error("the billing period falls outside the calendar")]
    CalendarOverflow,
    #[error("an amount is too large to compute")]
    AmountOverflow,
}

/// The usage of one subscription over the part of a billing period that is being rated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PeriodUsage {
    pub billable_calls: u64,
    /// The quantity priced: the backend's units, or the billable calls when none are recorded.
    pub billable_units: Decimal,
    pub failed_calls: u64,
    pub total_calls: u64,
    /// The same usage by UTC day; days without calls may be left out. Read for SLA credits.
    pub days: Vec<DailyUsage>,
}

impl PeriodUsage {
    /// The period's usage as the sum of its days.
    pub fn from_days(days: Vec<DailyUsage>) -> Result<Self, PricingError> {
        let mut usage = Self::default();
        for day in &days {
            usage.billable_calls = add_count(usage.billable_calls, day.billable_calls)?;
            usage.billable_units = sum(usage.billable_units, day.billable_units)?;
            usage.failed_calls = add_count(usage.failed_calls, day.failed_calls)?;
            usage.total_calls = add_count(usage.total_calls, day.total_calls)?;
        }
        usage.days = days;
        Ok(usage)
    }
}

/// The usage of one subscription on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyUsage {
    pub day: NaiveDate,
    pub billable_calls: u64,
    pub billable_units: Decimal,
    /// Calls answered with a 5xx: what the SLA measures.
    pub failed_calls: u64,
    pub total_calls: u64,
}

/// What a billing period costs, itemised, in the tier's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoice {
    pub currency: Currency,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub lines: Vec<Line>,
    /// The sum of the lines; never below zero, because credits are cut to what is due.
    pub total: Decimal,
}

/// One invoice line. Its amount is rounded once, to the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    /// How many of the line's unit: calls, units, blocks, days, or 1.
    pub quantity: Decimal,
    /// The tier's price per unit when the amount is quantity × this price; none when worked out.
    pub unit_price: Option<Decimal>,
    /// Negative for discounts and credits.
    pub amount: Decimal,
}

/// What a line charges or credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    FixedFee,
    OneTimeFee,
    Usage,
    Overage,
    VolumeDiscount,
    SlaCredit,
}

/// Rates one subscription's usage of one billing period (or of the part of it spent on this tier
/// version) into invoice lines and a total. The tier is assumed valid (`TierSpec::validate`).
pub fn rate(
    tier: &TierSpec,
    period: &RatedPeriod,
    usage: &PeriodUsage,
) -> Result<Invoice, PricingError> {
    if usage.billable_units.is_sign_negative() && !usage.billable_units.is_zero() {
        return Err(PricingError::NegativeUnits);
    }
    if let Some(day) = usage.days.iter().find(|d| !period.covers(d.day)) {
        return Err(PricingError::DayOutsideActive(day.day));
    }
    // Room for the usual lines and a few SLA credits, so the list is not regrown while rated.
    let mut lines = Vec::with_capacity(12);
    fee::charge(tier, period, &mut lines)?;
    usage::charge(tier, usage, &mut lines)?;
    adjust::volume_discount(tier, usage, &mut lines)?;
    adjust::sla_credits(tier, period, usage, &mut lines)?;
    let total = settle(tier.currency, &mut lines)?;
    Ok(Invoice {
        currency: tier.currency,
        period_start: period.period().start(),
        period_end: period.period().end(),
        lines,
        total,
    })
}

/// Adds the lines up. Discounts and credits are taken in order, each cut to what is still due,
/// so the total never goes below zero (a cut line says so).
fn settle(currency: Currency, lines: &mut [Line]) -> Result<Decimal, PricingError> {
    let mut due = Decimal::ZERO;
    for line in lines.iter().filter(|line| line.amount > Decimal::ZERO) {
        due = sum(due, line.amount)?;
    }
    for line in lines.iter_mut().filter(|line| line.amount < Decimal::ZERO) {
        let credit = Decimal::ZERO - line.amount;
        if credit > due {
            line.amount = in_minor_units(currency, Decimal::ZERO - due);
            line.description.push_str(" (limited to the amount due)");
            due = Decimal::ZERO;
        } else {
            due -= credit;
        }
    }
    Ok(in_minor_units(currency, due))
}

impl Line {
    /// A line at a price the tier states: quantity × unit price, rounded once.
    fn priced(
        kind: LineKind,
        description: String,
        quantity: Decimal,
        unit_price: Decimal,
        currency: Currency,
    ) -> Result<Self, PricingError> {
        Ok(Self {
            kind,
            description,
            quantity,
            unit_price: Some(unit_price),
            amount: in_minor_units(currency, product(quantity, unit_price)?),
        })
    }

    /// A line whose exact amount was worked out (a share, a percentage), rounded once.
    fn worked(
        kind: LineKind,
        description: String,
        quantity: Decimal,
        exact: Decimal,
        currency: Currency,
    ) -> Self {
        Self {
            kind,
            description,
            quantity,
            unit_price: None,
            amount: in_minor_units(currency, exact),
        }
    }
}

/// An exact amount rounded to the currency's minor unit and written with all its digits (`40.00`).
fn in_minor_units(currency: Currency, exact: Decimal) -> Decimal {
    let mut amount = currency.round(exact);
    // Already rounded, so rescaling only pads with zeros: amounts read `40.00`, never `40`.
    amount.rescale(currency.minor_unit_digits());
    amount
}

fn product(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_mul(b).ok_or(PricingError::AmountOverflow)
}

fn quotient(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_div(b).ok_or(PricingError::AmountOverflow)
}

fn sum(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_add(b).ok_or(PricingError::AmountOverflow)
}

fn add_count(a: u64, b: u64) -> Result<u64, PricingError> {
    a.checked_add(b).ok_or(PricingError::AmountOverflow)
}
