//! Usage charges. The tier's usage model prices the billable units up to the soft quota (all of
//! them when there is none); the units beyond it are overage, priced at the overage unit price
//! instead. Free units are taken first, from the units the model prices.

use super::describe::{Noun, Piece, text};
use super::figures::Grouped;
use super::{Line, LineKind, MeterQuantity, PeriodUsage, PricingError, bands, quotient, sum};
use crate::domain::meter::Aggregation;
use crate::domain::money::{Amount, Currency};
use crate::domain::tier::{Charge, TierSpec, UsagePricing};
use rust_decimal::Decimal;

/// The units a usage model prices, and how to name them.
pub(super) struct Metered<'a> {
    /// Units within the soft quota.
    pub(super) units: Decimal,
    pub(super) free: Decimal,
    pub(super) noun: Noun<'a>,
    pub(super) currency: Currency,
}

impl Metered<'_> {
    /// The units left to price once the free ones are taken.
    pub(super) fn priced(&self) -> Decimal {
        (self.units - self.free).max(Decimal::ZERO)
    }

    /// A usage line at a price the tier states.
    pub(super) fn line(
        &self,
        description: String,
        quantity: Decimal,
        unit_price: Decimal,
    ) -> Result<Line, PricingError> {
        Line::priced(
            LineKind::Usage,
            description,
            quantity,
            unit_price,
            self.currency,
        )
    }
}

/// `12,345 API calls, 5,000 included`: the units and, when there are any, the free ones.
pub(super) struct Counted<'a>(pub(super) &'a Metered<'a>);

impl Piece for Counted<'_> {
    fn push_to(&self, text: &mut String) {
        let metered = self.0;
        Grouped(metered.units).push_to(text);
        text.push(' ');
        text.push_str(metered.noun.counted);
        if !metered.free.is_zero() {
            text.push_str(", ");
            Grouped(metered.free).push_to(text);
            text.push_str(" included");
        }
    }
}

/// Adds the usage lines of the tier's model, then the overage line if the soft quota was passed.
pub(super) fn charge(
    tier: &TierSpec,
    usage: &PeriodUsage,
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    price_within_quota(
        tier.usage.as_ref(),
        usage.billable_units,
        tier.quota,
        Noun::of(usage),
        tier.currency,
        lines,
    )
}

/// Adds the lines of each of the tier's charges, in the order the tier lists them.
pub(super) fn charge_meters(
    tier: &TierSpec,
    usage: &PeriodUsage,
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    for charge in &tier.charges {
        let label = charge.label();
        if charge.group_by.is_empty() {
            let noun = Noun {
                counted: &label,
                heading: &label,
            };
            let quantity = measured(charge, usage)?;
            price_within_quota(
                Some(&charge.usage),
                quantity,
                charge.quota,
                noun,
                tier.currency,
                lines,
            )?;
            continue;
        }
        // One line (or set of lines) per value: each priced on its own, free units included.
        for (values, quantity) in groups(charge, usage)? {
            let label = format!("{label} [{values}]");
            let noun = Noun {
                counted: &label,
                heading: &label,
            };
            price_within_quota(
                Some(&charge.usage),
                quantity,
                charge.quota,
                noun,
                tier.currency,
                lines,
            )?;
        }
    }
    Ok(())
}

/// Prices `units` by the model up to the quota's soft limit (all of them without one), then
/// what is beyond it at the overage price.
fn price_within_quota(
    model: Option<&UsagePricing>,
    units: Decimal,
    quota: Option<crate::domain::tier::Quota>,
    noun: Noun<'_>,
    currency: crate::domain::money::Currency,
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    let overage =
        quota.and_then(|quota| Some((Decimal::from(quota.soft_limit?), quota.overage_unit_price?)));
    let within = overage.map_or(units, |(soft_limit, _)| units.min(soft_limit));
    if let Some(model) = model {
        let metered = Metered {
            units: within,
            free: Decimal::from(model.free_units()),
            noun,
            currency,
        };
        price(model, &metered, lines)?;
    }
    if let Some((soft_limit, price)) = overage
        && units > soft_limit
    {
        let beyond = units - soft_limit;
        lines.push(Line::priced(
            LineKind::Overage,
            text!(
                Grouped(beyond),
                " ",
                noun.counted,
                " over the soft limit of ",
                Grouped(soft_limit)
            ),
            beyond,
            price.value(),
            currency,
        )?);
    }
    Ok(())
}

/// The quantity a charge prices: its meter's, over the sets of dimension values it names.
pub fn measured(charge: &Charge, usage: &PeriodUsage) -> Result<Decimal, PricingError> {
    match charge.meter.as_str() {
        "calls" => return Ok(Decimal::from(usage.billable_calls)),
        "units" => return Ok(usage.billable_units),
        _ => {}
    }
    if let Some(distinct) = distinct_values(charge, usage, |_| true) {
        return Ok(distinct);
    }
    fold(usage.meters.iter().filter(|m| matches(charge, m)))
}

/// For a unique_count meter whose values are at hand: the distinct values over the sets of
/// dimension values the charge takes (and `keep` keeps), not the sum of each set's count.
fn distinct_values(
    charge: &Charge,
    usage: &PeriodUsage,
    keep: impl Fn(&[(String, String)]) -> bool,
) -> Option<Decimal> {
    let unique = usage
        .meters
        .iter()
        .any(|m| m.meter == charge.meter.as_str() && m.aggregation == Aggregation::UniqueCount);
    if !unique || usage.unique_values.is_empty() {
        return None;
    }
    let values: std::collections::HashSet<&str> = usage
        .unique_values
        .iter()
        .filter(|(meter, dimensions, _)| {
            meter == charge.meter.as_str()
                && charge
                    .dimensions
                    .iter()
                    .all(|(k, v)| dimensions.iter().any(|(dk, dv)| dk == k && dv == v))
                && keep(dimensions)
        })
        .map(|(_, _, value)| value.as_str())
        .collect();
    Some(Decimal::from(values.len()))
}

/// Whether a meter's quantity is one a charge prices: its meter, with the values it names.
fn matches(charge: &Charge, found: &MeterQuantity) -> bool {
    found.meter == charge.meter.as_str()
        && charge
            .dimensions
            .iter()
            .all(|(k, v)| found.dimensions.iter().any(|(dk, dv)| dk == k && dv == v))
}

/// Meter quantities of several sets of dimension values as one, by their meter's aggregation.
fn fold<'a>(quantities: impl Iterator<Item = &'a MeterQuantity>) -> Result<Decimal, PricingError> {
    let mut quantity = Decimal::ZERO;
    let mut latest_at = i64::MIN;
    for found in quantities {
        match found.aggregation {
            Aggregation::Count | Aggregation::Sum | Aggregation::UniqueCount => {
                quantity = sum(quantity, found.quantity)?;
            }
            Aggregation::Max => quantity = quantity.max(found.quantity),
            Aggregation::Latest => {
                if found.at >= latest_at {
                    latest_at = found.at;
                    quantity = found.quantity;
                }
            }
        }
    }
    Ok(quantity)
}

/// A charge's quantities by the values of its `group_by` dimensions (`-` where a call had none),
/// in the order of those values.
fn groups<'a>(
    charge: &Charge,
    usage: &'a PeriodUsage,
) -> Result<Vec<(String, Decimal)>, PricingError> {
    let mut by_values: std::collections::BTreeMap<Vec<&'a str>, Vec<&'a MeterQuantity>> =
        std::collections::BTreeMap::new();
    for found in usage.meters.iter().filter(|m| matches(charge, m)) {
        let values = charge
            .group_by
            .iter()
            .map(|key| {
                found
                    .dimensions
                    .iter()
                    .find(|(k, _)| k == key.as_str())
                    .map_or("-", |(_, v)| v.as_str())
            })
            .collect();
        by_values.entry(values).or_default().push(found);
    }
    by_values
        .into_iter()
        .map(|(values, quantities)| {
            let named: Vec<String> = charge
                .group_by
                .iter()
                .zip(&values)
                .map(|(key, value)| format!("{key} {value}"))
                .collect();
            let quantity = match distinct_values(charge, usage, |dimensions| {
                charge.group_by.iter().zip(&values).all(|(key, value)| {
                    dimensions
                        .iter()
                        .find(|(k, _)| k == key.as_str())
                        .map_or("-", |(_, v)| v.as_str())
                        == *value
                })
            }) {
                Some(distinct) => distinct,
                None => fold(quantities.into_iter())?,
            };
            Ok((named.join(", "), quantity))
        })
        .collect()
}

/// Adds the lines of one usage model for the metered quantity.
fn price(
    model: &UsagePricing,
    metered: &Metered<'_>,
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    match model {
        UsagePricing::PerUnit { unit_price, .. } => {
            let description = text!(Counted(metered));
            lines.push(metered.line(description, metered.priced(), unit_price.value())?);
        }
        UsagePricing::Package {
            package_size,
            package_price,
            ..
        } => {
            let size = Decimal::from(package_size.get());
            lines.push(package(metered, size, *package_price)?);
        }
        UsagePricing::Graduated { bands, .. } => bands::graduated(metered, bands, lines)?,
        UsagePricing::Volume { bands, .. } => bands::volume(metered, bands, lines)?,
    }
    Ok(())
}

fn package(metered: &Metered<'_>, size: Decimal, price: Amount) -> Result<Line, PricingError> {
    // A started block is paid whole: counting blocks up, not rounding money.
    let blocks = quotient(metered.priced(), size)?.ceil();
    let blocks_of = if blocks == Decimal::ONE {
        " block of "
    } else {
        " blocks of "
    };
    let description = text!(
        Counted(metered),
        ": ",
        Grouped(blocks),
        blocks_of,
        Grouped(size)
    );
    metered.line(description, blocks, price.value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::fixtures::{calls, tier, units};
    use rust_decimal::dec;
    use serde_json::json;

    fn usage_lines(tier: &TierSpec, usage: &PeriodUsage) -> Vec<Line> {
        let mut lines = Vec::new();
        charge(tier, usage, &mut lines).unwrap();
        lines
    }

    #[test]
    fn per_unit_prices_the_units_after_the_free_ones() {
        let spec =
            tier(json!({"usage": {"model": "per_unit", "unit_price": "0.01", "free_units": 1000}}));
        let lines = usage_lines(&spec, &calls(12_345));
        assert_eq!(lines[0].description, "12,345 API calls, 1,000 included");
        assert_eq!(
            (lines[0].quantity, lines[0].amount),
            (dec!(11345), dec!(113.45))
        );
        let within_free = usage_lines(&spec, &calls(999));
        assert_eq!(
            (within_free[0].quantity, within_free[0].amount),
            (dec!(0), dec!(0.00))
        );
    }

    #[test]
    fn reported_units_are_priced_and_named_as_units() {
        let spec = tier(json!({"usage": {"model": "per_unit", "unit_price": "0.5"}}));
        let lines = usage_lines(&spec, &units(100, dec!(250.5)));
        assert_eq!(lines[0].description, "250.5 units");
        assert_eq!(lines[0].amount, dec!(125.25));
    }

    #[test]
    fn a_package_counts_a_started_block_whole() {
        let spec = tier(
            json!({"usage": {"model": "package", "package_size": 1000, "package_price": "5"}}),
        );
        let lines = usage_lines(&spec, &calls(1001));
        assert_eq!(lines[0].description, "1,001 API calls: 2 blocks of 1,000");
        assert_eq!(lines[0].amount, dec!(10.00));
        assert_eq!(
            usage_lines(&spec, &calls(1000))[0].description,
            "1,000 API calls: 1 block of 1,000"
        );
    }

    #[test]
    fn beyond_the_soft_limit_the_overage_price_replaces_the_model() {
        let spec = tier(
            json!({"usage": {"model": "per_unit", "unit_price": "0.001", "free_units": 1000},
                               "quota": {"soft_limit": 10000, "hard_limit": 20000, "overage_unit_price": "0.004"}}),
        );
        let lines = usage_lines(&spec, &calls(12_500));
        // 9,000 × 0.001 = 9.00 up to the soft limit, then 2,500 × 0.004 = 10.00.
        assert_eq!(lines[0].description, "10,000 API calls, 1,000 included");
        assert_eq!(lines[0].amount, dec!(9.00));
        assert_eq!(lines[1].kind, LineKind::Overage);
        assert_eq!(
            lines[1].description,
            "2,500 API calls over the soft limit of 10,000"
        );
        assert_eq!(lines[1].amount, dec!(10.00));
        assert_eq!(usage_lines(&spec, &calls(10_000)).len(), 1);
    }

    fn tokens(
        meter: &str,
        model: &str,
        quantity: Decimal,
        aggregation: Aggregation,
        at: i64,
    ) -> MeterQuantity {
        MeterQuantity {
            meter: meter.to_owned(),
            dimensions: vec![("model".to_owned(), model.to_owned())],
            aggregation,
            quantity,
            at,
        }
    }

    fn charge_lines(spec: &TierSpec, usage: &PeriodUsage) -> Vec<(String, Decimal)> {
        let mut lines = Vec::new();
        charge_meters(spec, usage, &mut lines).unwrap();
        lines
            .into_iter()
            .map(|l| (l.description, l.amount))
            .collect()
    }

    #[test]
    fn a_charge_prices_its_meter_where_its_dimensions_match_or_splits_by_them() {
        let mut usage = calls(10);
        usage.meters = vec![
            tokens("tokens", "large", dec!(1500), Aggregation::Sum, 0),
            tokens("tokens", "small", dec!(2500), Aggregation::Sum, 0),
            tokens("jobs", "large", dec!(4), Aggregation::Max, 0),
            tokens("jobs", "small", dec!(7), Aggregation::Max, 0),
            tokens("level", "large", dec!(9), Aggregation::Latest, 20),
            tokens("level", "small", dec!(3), Aggregation::Latest, 30),
        ];
        let spec = tier(json!({"charges": [
            {"meter": "tokens", "dimensions": {"model": "large"}, "usage": {"model": "per_unit", "unit_price": "0.01"}},
            {"meter": "tokens", "name": "all tokens", "usage": {"model": "per_unit", "unit_price": "0.001"}},
            {"meter": "tokens", "name": "tokens", "group_by": ["model"], "usage": {"model": "per_unit", "unit_price": "0.01", "free_units": 1000}},
            {"meter": "jobs", "usage": {"model": "per_unit", "unit_price": "1"}},
            {"meter": "level", "usage": {"model": "per_unit", "unit_price": "1"}}
        ]}));
        assert_eq!(
            charge_lines(&spec, &usage),
            vec![
                ("1,500 tokens (model large)".to_owned(), dec!(15.00)),
                ("4,000 all tokens".to_owned(), dec!(4.00)),
                (
                    "1,500 tokens [model large], 1,000 included".to_owned(),
                    dec!(5.00)
                ),
                (
                    "2,500 tokens [model small], 1,000 included".to_owned(),
                    dec!(15.00)
                ),
                // The peak over both models, and the latest value of either.
                ("7 jobs".to_owned(), dec!(7.00)),
                ("3 level".to_owned(), dec!(3.00)),
            ]
        );
        // A charge with no usage of its meter prices nothing.
        assert_eq!(
            charge_lines(&spec, &calls(10))[0],
            ("0 tokens (model large)".to_owned(), dec!(0.00))
        );
    }

    #[test]
    fn a_unique_count_over_several_sets_of_dimension_values_counts_a_value_once() {
        let mut usage = calls(10);
        let seen = |model: &str, user: &str| {
            (
                "users".to_owned(),
                vec![("model".to_owned(), model.to_owned())],
                user.to_owned(),
            )
        };
        usage.unique_values = vec![
            seen("large", "u1"),
            seen("small", "u1"),
            seen("large", "u2"),
        ];
        usage.meters = vec![
            tokens("users", "large", dec!(2), Aggregation::UniqueCount, 0),
            tokens("users", "small", dec!(1), Aggregation::UniqueCount, 0),
        ];
        let spec = tier(json!({"charges": [
            {"meter": "users", "usage": {"model": "per_unit", "unit_price": "1"}},
            {"meter": "users", "dimensions": {"model": "small"}, "usage": {"model": "per_unit", "unit_price": "1"}},
            {"meter": "users", "name": "users", "group_by": ["model"], "usage": {"model": "per_unit", "unit_price": "1"}}
        ]}));
        assert_eq!(
            charge_lines(&spec, &usage),
            vec![
                ("2 users".to_owned(), dec!(2.00)),
                ("1 users (model small)".to_owned(), dec!(1.00)),
                ("2 users [model large]".to_owned(), dec!(2.00)),
                ("1 users [model small]".to_owned(), dec!(1.00)),
            ]
        );
    }

    #[test]
    fn a_hard_limit_alone_prices_nothing_extra() {
        let spec = tier(
            json!({"usage": {"model": "per_unit", "unit_price": "0"}, "quota": {"hard_limit": 1000}}),
        );
        let lines = usage_lines(&spec, &calls(5000));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].amount, dec!(0.00));
    }
}
