//! tollbooth values as Stripe writes them: amounts in minor units, intervals, metadata.

use super::StripeError;
use crate::domain::money::{Amount, Currency};
use crate::domain::tier::Interval;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;

/// An amount in the currency's minor unit: whole (`unit_amount`) when it is, else the exact
/// decimal (`unit_amount_decimal`, up to 12 places), never rounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MinorAmount {
    Whole(i64),
    Decimal(String),
}

pub fn minor_amount(amount: Amount, currency: Currency) -> Result<MinorAmount, StripeError> {
    let scale = Decimal::from(10_i64.pow(currency.minor_unit_digits()));
    let minor = amount
        .value()
        .checked_mul(scale)
        .ok_or_else(|| {
            StripeError::Missing(format!("{amount} {currency} is too large for Stripe"))
        })?
        .normalize();
    if minor.fract().is_zero() {
        i64::try_from(minor).map(MinorAmount::Whole).map_err(|_| {
            StripeError::Missing(format!("{amount} {currency} is too large for Stripe"))
        })
    } else {
        Ok(MinorAmount::Decimal(minor.to_string()))
    }
}

pub fn currency(currency: Currency) -> Result<stripe_types::Currency, StripeError> {
    stripe_types::Currency::from_str(&currency.code())
        .map_err(|_| StripeError::Missing(format!("Stripe does not know the currency {currency}")))
}

pub fn interval(interval: Interval) -> stripe_product::price::CreatePriceRecurringInterval {
    use stripe_product::price::CreatePriceRecurringInterval as Stripe;
    match interval {
        Interval::Day => Stripe::Day,
        Interval::Week => Stripe::Week,
        Interval::Month => Stripe::Month,
        Interval::Year => Stripe::Year,
    }
}

/// Metadata that lets anyone looking at the Stripe object find the tollbooth row.
pub fn metadata<const N: usize>(pairs: [(&str, &str); N]) -> HashMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (format!("tollbooth_{k}"), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn amount(value: Decimal) -> Amount {
        Amount::try_from(value).unwrap()
    }

    #[test]
    fn amounts_go_to_minor_units_exactly() {
        let usd = Currency::try_from("usd".to_owned()).unwrap();
        let jpy = Currency::try_from("jpy".to_owned()).unwrap();
        assert_eq!(
            minor_amount(amount(dec!(25.00)), usd).unwrap(),
            MinorAmount::Whole(2500)
        );
        assert_eq!(
            minor_amount(amount(dec!(0)), usd).unwrap(),
            MinorAmount::Whole(0)
        );
        assert_eq!(
            minor_amount(amount(dec!(1200)), jpy).unwrap(),
            MinorAmount::Whole(1200)
        );
        assert_eq!(
            minor_amount(amount(dec!(0.0005)), usd).unwrap(),
            MinorAmount::Decimal("0.05".into())
        );
    }
}
