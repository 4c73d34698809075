//! Fixed fees: a recurring fee once per billing period, by the day when only part of the period was
//! on the tier, and a one-time fee with the subscription's first period.

use super::describe::{Length, text};
use super::figures::Grouped;
use super::{Line, LineKind, PricingError, RatedPeriod, product, quotient};
use crate::domain::tier::{FeeInterval, Proration, TierSpec};
use rust_decimal::Decimal;

/// Adds the tier's fixed fee line, if the tier has a fee and it is due in this period.
pub(super) fn charge(
    tier: &TierSpec,
    period: &RatedPeriod,
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    let Some(fee) = tier.fixed_fee else {
        return Ok(());
    };
    if fee.amount.is_zero() {
        return Ok(());
    }
    let amount = fee.amount.value();
    match fee.interval {
        // A one-time fee pays for starting, not for time on the tier, so it is never prorated.
        FeeInterval::OneTime if period.is_first_period() => lines.push(Line::priced(
            LineKind::OneTimeFee,
            text!(tier.name, ": one-time fee"),
            Decimal::ONE,
            amount,
            tier.currency,
        )?),
        FeeInterval::OneTime => {}
        // `TierSpec::validate` makes the fee's interval the billing period, so it is due once.
        FeeInterval::Every(_) => lines.push(recurring(tier, amount, period)?),
    }
    Ok(())
}

fn recurring(tier: &TierSpec, amount: Decimal, period: &RatedPeriod) -> Result<Line, PricingError> {
    let days = period.period().days();
    let active = period.active_days();
    if tier.proration == Proration::None || active == days {
        return Line::priced(
            LineKind::FixedFee,
            text!(tier.name, ": fixed fee for ", Length(tier.period())),
            Decimal::ONE,
            amount,
            tier.currency,
        );
    }
    let (active, days) = (Decimal::from(active), Decimal::from(days));
    let share = quotient(product(amount, active)?, days)?;
    Ok(Line::worked(
        LineKind::FixedFee,
        text!(
            tier.name,
            ": fixed fee for ",
            Grouped(active),
            " of ",
            Grouped(days),
            " days"
        ),
        active,
        share,
        tier.currency,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::fixtures::{at, november, tier};
    use rust_decimal::dec;
    use serde_json::json;

    fn monthly(amount: &str, proration: &str) -> TierSpec {
        tier(
            json!({"fixed_fee": {"amount": amount, "interval": "month"}, "proration": proration,
                    "usage": {"model": "per_unit", "unit_price": "0"}}),
        )
    }

    fn fee_lines(tier: &TierSpec, period: &RatedPeriod) -> Vec<Line> {
        let mut lines = Vec::new();
        charge(tier, period, &mut lines).unwrap();
        lines
    }

    #[test]
    fn a_whole_month_pays_the_whole_fee() {
        let lines = fee_lines(&monthly("25", "by_day"), &RatedPeriod::whole(november()));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].description, "Test: fixed fee for 1 month");
        assert_eq!(lines[0].amount.to_string(), "25.00");
        assert_eq!(lines[0].unit_price, Some(dec!(25)));
    }

    #[test]
    fn a_late_start_pays_by_the_day_counting_the_started_day() {
        let joined =
            RatedPeriod::partial(november(), at("2026-11-18T15:00:00Z"), november().end()).unwrap();
        let lines = fee_lines(&monthly("25.00", "by_day"), &joined);
        // 25.00 × 13 / 30 = 10.8333…
        assert_eq!(lines[0].amount, dec!(10.83));
        assert_eq!(lines[0].quantity, dec!(13));
        assert_eq!(lines[0].description, "Test: fixed fee for 13 of 30 days");
        let whole = fee_lines(&monthly("25.00", "none"), &joined);
        assert_eq!(whole[0].amount, dec!(25.00));
    }

    #[test]
    fn a_tier_change_splits_the_fee_and_both_sides_pay_the_change_day() {
        let change = at("2026-11-10T12:00:00Z");
        let before = RatedPeriod::partial(november(), november().start(), change).unwrap();
        let after = RatedPeriod::partial(november(), change, november().end()).unwrap();
        let old = fee_lines(&monthly("30", "by_day"), &before);
        let new = fee_lines(&monthly("60", "by_day"), &after);
        assert_eq!((old[0].amount, new[0].amount), (dec!(10.00), dec!(42.00)));
    }

    #[test]
    fn a_one_time_fee_comes_only_with_the_first_period() {
        let setup = tier(
            json!({"fixed_fee": {"amount": "100", "interval": "one_time"},
                                "usage": {"model": "per_unit", "unit_price": "0"}}),
        );
        let first = RatedPeriod::partial(november(), at("2026-11-20T00:00:00Z"), november().end())
            .unwrap()
            .as_first_period();
        let lines = fee_lines(&setup, &first);
        assert_eq!(lines[0].kind, LineKind::OneTimeFee);
        assert_eq!(lines[0].amount, dec!(100.00));
        assert!(fee_lines(&setup, &RatedPeriod::whole(november())).is_empty());
    }

    #[test]
    fn a_zero_fee_adds_no_line() {
        assert!(fee_lines(&monthly("0", "by_day"), &RatedPeriod::whole(november())).is_empty());
    }
}
