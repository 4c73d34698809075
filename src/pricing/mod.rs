//! Rating: what one subscription's usage of one billing period costs under one tier version.
//! Pure: no I/O and no clock, so the same tier, period and usage always give the same invoice.

mod adjust;
mod bands;
mod calendar;
mod describe;
mod fee;
mod figures;
mod invoice;
mod period;
mod usage;

#[cfg(test)]
mod examples;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod properties;

pub use calendar::{period_after, period_containing};
pub use invoice::{Invoice, Line, LineKind};
pub use period::{Period, RatedPeriod};
pub use usage::measured as charge_quantity;

use crate::domain::meter::Aggregation;
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
    #[error("an amount or a count is too large to compute")]
    Overflow,
    #[error("a period is billed in one currency; its parts are in {0} and {1}")]
    MixedCurrencies(String, String),
    #[error("a period needs at least one part to rate")]
    NoParts,
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
    /// The api's declared meters over the same span, one entry per meter and set of dimension
    /// values, each already folded by its aggregation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<MeterQuantity>,
    /// The values unique_count meters counted, `(meter, dimensions, value)`, so that a charge
    /// over several sets of dimension values counts a value seen in two of them once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique_values: Vec<UniqueSeen>,
}

/// A value a unique_count meter counted: `(meter, dimensions, value)`.
pub type UniqueSeen = (String, Vec<(String, String)>, String);

/// What one declared meter measured over a span, for one set of dimension values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterQuantity {
    pub meter: String,
    /// `(dimension, value)`, by dimension.
    pub dimensions: Vec<(String, String)>,
    pub aggregation: Aggregation,
    pub quantity: Decimal,
    /// For a `latest` meter, when its value was recorded (Unix ms): of several sets of dimension
    /// values, the latest is the meter's.
    pub at: i64,
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
    usage::charge_meters(tier, usage, &mut lines)?;
    adjust::volume_discount(tier, usage, &mut lines)?;
    adjust::sla_credits(tier, period, usage, &mut lines)?;
    let total = invoice::settle(tier.currency, &mut lines)?;
    Ok(Invoice {
        currency: tier.currency,
        period_start: period.period().start(),
        period_end: period.period().end(),
        lines,
        total,
    })
}

/// The part of a billing period a subscription spent on one tier version, with its usage there.
#[derive(Debug, Clone)]
pub struct RatedPart<'a> {
    pub tier: &'a TierSpec,
    pub period: RatedPeriod,
    pub usage: PeriodUsage,
}

/// Rates a period whose parts were on different tier versions (a tier change mid-period): each
/// part on its own tier, prorated to its days, its usage priced from zero; with several parts each
/// line names its tier and dates. The total is the sum of the parts' totals.
pub fn rate_parts(parts: &[RatedPart<'_>]) -> Result<Invoice, PricingError> {
    let (first, rest) = parts.split_first().ok_or(PricingError::NoParts)?;
    let mut invoice = rate(first.tier, &first.period, &first.usage)?;
    if rest.is_empty() {
        return Ok(invoice);
    }
    name_lines(&mut invoice.lines, first);
    for part in rest {
        if part.tier.currency != invoice.currency {
            return Err(PricingError::MixedCurrencies(
                invoice.currency.code(),
                part.tier.currency.code(),
            ));
        }
        let mut more = rate(part.tier, &part.period, &part.usage)?;
        name_lines(&mut more.lines, part);
        invoice.lines.append(&mut more.lines);
        invoice.total = sum(invoice.total, more.total)?;
    }
    Ok(invoice)
}

fn name_lines(lines: &mut [Line], part: &RatedPart<'_>) {
    let from = part.period.active_from().format("%Y-%m-%d %H:%M UTC");
    let to = part.period.active_to().format("%Y-%m-%d %H:%M UTC");
    for line in lines {
        line.description = format!("{} ({from} to {to}): {}", part.tier.name, line.description);
    }
}

fn product(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_mul(b).ok_or(PricingError::Overflow)
}

fn quotient(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_div(b).ok_or(PricingError::Overflow)
}

fn sum(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_add(b).ok_or(PricingError::Overflow)
}

fn add_count(a: u64, b: u64) -> Result<u64, PricingError> {
    a.checked_add(b).ok_or(PricingError::Overflow)
}
