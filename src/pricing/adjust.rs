//! Reductions: the volume discount on usage, and SLA credits on the fixed fee for bad days.

use super::describe::text;
use super::figures::{Day, FailureRate, Grouped};
use super::invoice::in_minor_units;
use super::{Line, LineKind, PeriodUsage, PricingError, RatedPeriod, product, quotient, sum};
use crate::domain::tier::{FeeInterval, TierSpec};
use rust_decimal::Decimal;

/// Past the tier's call threshold, takes its percentage off the usage and overage lines, as
/// they were rounded on the invoice, so a reader can check the discount by hand.
pub(super) fn volume_discount(
    tier: &TierSpec,
    usage: &PeriodUsage,
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    let Some(discount) = tier.volume_discount else {
        return Ok(());
    };
    if usage.billable_calls <= discount.after_calls || discount.percent.value().is_zero() {
        return Ok(());
    }
    let mut metered = Decimal::ZERO;
    for line in lines
        .iter()
        .filter(|line| matches!(line.kind, LineKind::Usage | LineKind::Overage))
    {
        metered = sum(metered, line.amount)?;
    }
    if metered.is_zero() {
        return Ok(());
    }
    let off = product(metered, discount.percent.fraction())?;
    lines.push(Line::worked(
        LineKind::VolumeDiscount,
        text!(
            "Volume discount: ",
            Grouped(discount.percent.value()),
            "% off usage for over ",
            Grouped::from(discount.after_calls),
            " API calls"
        ),
        Decimal::ONE,
        Decimal::ZERO - off,
        tier.currency,
    ));
    Ok(())
}

/// For each day whose failed calls are over the tier's rate, credits its percentage of that
/// day's share of the recurring fixed fee (fee ÷ days in the period). A tier without a
/// recurring fee has nothing to credit: a one-time fee pays for starting, not for service.
pub(super) fn sla_credits(
    tier: &TierSpec,
    period: &RatedPeriod,
    usage: &PeriodUsage,
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    let (Some(sla), Some(fee)) = (tier.sla_credit, tier.fixed_fee) else {
        return Ok(());
    };
    if fee.interval == FeeInterval::OneTime
        || fee.amount.is_zero()
        || sla.credit_percent.value().is_zero()
    {
        return Ok(());
    }
    let limit = FailureLimit::new(sla.failure_rate_over.value());
    // Worked out at the first bad day, as most periods have none; every credited day gets the
    // same amount, rounded once and given to each day's line.
    let mut credit = None;
    for day in &usage.days {
        if !limit.exceeded_by(day.failed_calls, day.total_calls)? {
            continue;
        }
        let amount = match credit {
            Some(amount) => amount,
            None => {
                let days = Decimal::from(period.period().days());
                let share = product(fee.amount.value(), sla.credit_percent.fraction())?;
                let amount = in_minor_units(tier.currency, Decimal::ZERO - quotient(share, days)?);
                *credit.insert(amount)
            }
        };
        let rate = FailureRate {
            failed: day.failed_calls,
            total: day.total_calls,
        };
        lines.push(Line {
            kind: LineKind::SlaCredit,
            description: text!("SLA credit for ", Day(day.day), ": ", rate, " failed calls"),
            quantity: Decimal::ONE,
            unit_price: None,
            amount,
        });
    }
    Ok(())
}

/// A failure-rate limit as a ratio of integers, so the daily series is walked without decimal
/// arithmetic: `failed × 100 × 10^scale > mantissa × total` is `failed ÷ total > limit %`.
/// Both sides are products of two u64, which cannot overflow a u128.
struct FailureLimit {
    percent: Decimal,
    /// `(mantissa, 100 × 10^scale)`, when both fit a u64 (up to 17 decimals).
    ratio: Option<(u64, u64)>,
}

impl FailureLimit {
    fn new(percent: Decimal) -> Self {
        let mantissa = u64::try_from(percent.mantissa()).ok();
        let hundred_scaled = 10u64
            .checked_pow(percent.scale())
            .and_then(|power| power.checked_mul(100));
        Self {
            percent,
            ratio: mantissa.zip(hundred_scaled),
        }
    }

    /// Whether `failed` of `total` calls is over the limit; a day without calls never is.
    fn exceeded_by(&self, failed: u64, total: u64) -> Result<bool, PricingError> {
        if failed == 0 || total == 0 {
            return Ok(false);
        }
        if let Some((mantissa, hundred_scaled)) = self.ratio {
            let failed_side = u128::from(failed) * u128::from(hundred_scaled);
            return Ok(failed_side > u128::from(mantissa) * u128::from(total));
        }
        let failed_percent = product(Decimal::from(failed), Decimal::ONE_HUNDRED)?;
        Ok(failed_percent > product(self.percent, Decimal::from(total))?)
    }
}

#[cfg(test)]
mod tests {
    use crate::pricing::fixtures::{calls, day, november, tier};
    use crate::pricing::{LineKind, PeriodUsage, RatedPeriod, rate};
    use rust_decimal::dec;
    use serde_json::json;

    fn credits(usage: &PeriodUsage) -> Vec<(String, rust_decimal::Decimal)> {
        let spec = tier(json!({"fixed_fee": {"amount": "31", "interval": "month"},
            "usage": {"model": "per_unit", "unit_price": "0"},
            "sla_credit": {"failure_rate_over": "5", "credit_percent": "50"}}));
        let invoice = rate(&spec, &RatedPeriod::whole(november()), usage).unwrap();
        invoice
            .lines
            .into_iter()
            .filter(|line| line.kind == LineKind::SlaCredit)
            .map(|line| (line.description, line.amount))
            .collect()
    }

    #[test]
    fn only_days_over_the_failure_rate_are_credited() {
        let usage = PeriodUsage::from_days(vec![
            day("2026-11-03", 1000, 75),
            day("2026-11-04", 1000, 50),
            day("2026-11-05", 3, 1),
            day("2026-11-06", 0, 0),
        ])
        .unwrap();
        // 31 ÷ 30 days × 50% = 0.51666… a day.
        assert_eq!(
            credits(&usage),
            [
                (
                    "SLA credit for 2026-11-03: 7.5% failed calls".to_owned(),
                    dec!(-0.52)
                ),
                (
                    "SLA credit for 2026-11-05: 33.33% failed calls".to_owned(),
                    dec!(-0.52)
                ),
            ]
        );
    }

    #[test]
    fn the_failure_limit_compares_exactly() {
        let limit = super::FailureLimit::new(dec!(7.5));
        assert!(!limit.exceeded_by(75, 1000).unwrap());
        assert!(limit.exceeded_by(76, 1000).unwrap());
        assert!(!limit.exceeded_by(0, 0).unwrap());
        let fine = super::FailureLimit::new(dec!(0.0000000000000000000000000001));
        assert!(fine.exceeded_by(1, u64::MAX).unwrap());
        assert!(
            !super::FailureLimit::new(dec!(100))
                .exceeded_by(u64::MAX, u64::MAX)
                .unwrap()
        );
    }

    #[test]
    fn the_discount_starts_after_the_threshold() {
        let spec = tier(json!({"usage": {"model": "per_unit", "unit_price": "0.01"},
            "volume_discount": {"after_calls": 1000, "percent": "12.5"}}));
        let whole = RatedPeriod::whole(november());
        let at_threshold = rate(&spec, &whole, &calls(1000)).unwrap();
        assert_eq!(at_threshold.lines.len(), 1);
        let past = rate(&spec, &whole, &calls(1001)).unwrap();
        // 1,001 × 0.01 = 10.01; 12.5% of it is 1.25125, rounded to 1.25.
        assert_eq!(
            past.lines[1].description,
            "Volume discount: 12.5% off usage for over 1,000 API calls"
        );
        assert_eq!(past.lines[1].amount, dec!(-1.25));
        assert_eq!(past.total, dec!(8.76));
    }
}
