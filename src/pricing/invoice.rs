//! The invoice a rating gives: its lines, each rounded once, and a total that is never negative.

use super::{PricingError, product, sum};
use crate::domain::money::Currency;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What a billing period costs, itemised, in the tier's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    pub currency: Currency,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub lines: Vec<Line>,
    /// The sum of the lines; never below zero, because credits are cut to what is due.
    #[schema(value_type = String)]
    pub total: Decimal,
}

/// One invoice line. Its amount is rounded once, to the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = InvoiceLine)]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    /// How many of the line's unit: calls, units, blocks, days, or 1.
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// The tier's price per unit when the amount is quantity × this price; none when worked out.
    #[schema(value_type = Option<String>)]
    pub unit_price: Option<Decimal>,
    /// Negative for discounts and credits.
    #[schema(value_type = String)]
    pub amount: Decimal,
}

/// What a line charges or credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    FixedFee,
    OneTimeFee,
    Usage,
    Overage,
    VolumeDiscount,
    SlaCredit,
}

/// Adds the lines up. Discounts and credits are taken in order, each cut to what is still due,
/// so the total never goes below zero (a cut line says so).
pub(super) fn settle(currency: Currency, lines: &mut [Line]) -> Result<Decimal, PricingError> {
    let mut due = Decimal::ZERO;
    // Signs are read from the bits: comparing decimals with zero would rescale them.
    for line in lines.iter().filter(|line| !line.amount.is_sign_negative()) {
        due = sum(due, line.amount)?;
    }
    for line in lines
        .iter_mut()
        .filter(|line| line.amount.is_sign_negative())
    {
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
    pub(super) fn priced(
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
    pub(super) fn worked(
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
pub(super) fn in_minor_units(currency: Currency, exact: Decimal) -> Decimal {
    let mut amount = currency.round(exact);
    // Already rounded, so rescaling only pads with zeros: amounts read `40.00`, never `40`.
    amount.rescale(currency.minor_unit_digits());
    amount
}
