//! Properties every rating keeps, whatever the tier and the usage.

use super::fixtures::november;
use super::{DailyUsage, Period, PeriodUsage, RatedPeriod, rate};
use crate::domain::ids::Key;
use crate::domain::money::{Amount, Currency, Percent};
use crate::domain::tier::{
    Band, FeeInterval, FixedFee, Interval, Proration, Quota, SlaCredit, TierSpec, UsagePricing,
    VolumeDiscount,
};
use chrono::Days;
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::num::NonZeroU64;

fn amount() -> impl Strategy<Value = Amount> {
    (0i64..=2_000_000, 0u32..=6)
        .prop_map(|(mantissa, scale)| Amount::try_from(Decimal::new(mantissa, scale)).unwrap())
}

fn percent() -> impl Strategy<Value = Percent> {
    (0i64..=10_000)
        .prop_map(|hundredths| Percent::try_from(Decimal::new(hundredths, 2).to_string()).unwrap())
}

fn bands() -> impl Strategy<Value = Vec<Band>> {
    prop::collection::vec((1u64..200_000, amount(), prop::option::of(amount())), 1..5).prop_map(
        |widths| {
            let mut up_to = 0;
            let last = widths.len() - 1;
            let mut bands = Vec::new();
            for (index, (width, unit_price, flat_fee)) in widths.into_iter().enumerate() {
                up_to += width;
                let up_to = (index < last).then_some(up_to);
                bands.push(Band {
                    up_to,
                    unit_price,
                    flat_fee,
                });
            }
            bands
        },
    )
}

/// Usage models whose price can only rise with usage: every one but volume.
fn rising_usage() -> impl Strategy<Value = UsagePricing> {
    prop_oneof![
        (amount(), 0u64..10_000).prop_map(|(unit_price, free_units)| UsagePricing::PerUnit {
            unit_price,
            free_units
        }),
        (bands(), 0u64..10_000)
            .prop_map(|(bands, free_units)| UsagePricing::Graduated { bands, free_units }),
        (1u64..5_000, amount(), 0u64..10_000).prop_map(|(size, package_price, free_units)| {
            UsagePricing::Package {
                package_size: NonZeroU64::new(size).unwrap(),
                package_price,
                free_units,
            }
        }),
    ]
}

fn any_usage() -> impl Strategy<Value = UsagePricing> {
    prop_oneof![
        3 => rising_usage(),
        1 => (bands(), 0u64..10_000).prop_map(|(bands, free_units)| UsagePricing::Volume { bands, free_units }),
    ]
}

fn plain(usage: UsagePricing) -> TierSpec {
    TierSpec {
        slug: Key::try_from("prop".to_owned()).unwrap(),
        api: Key::try_from("weather".to_owned()).unwrap(),
        name: crate::domain::text::Name::stored("Prop".to_owned()),
        currency: Currency::try_from("usd".to_owned()).unwrap(),
        billing_period: None,
        fixed_fee: None,
        usage: Some(usage),
        charges: Vec::new(),
        volume_discount: None,
        sla_credit: None,
        quota: None,
        alerts: Vec::new(),
        proration: Proration::ByDay,
    }
}

fn fixed_fee() -> impl Strategy<Value = FixedFee> {
    (amount(), any::<bool>()).prop_map(|(amount, recurring)| FixedFee {
        amount,
        interval: if recurring {
            FeeInterval::Every(Interval::Month)
        } else {
            FeeInterval::OneTime
        },
        interval_count: NonZeroU64::MIN,
    })
}

fn overage() -> impl Strategy<Value = Quota> {
    (0u64..500_000, amount()).prop_map(|(soft, price)| Quota {
        hard_limit: None,
        soft_limit: Some(soft),
        overage_unit_price: Some(price),
    })
}

/// Any tier: a usage model, with or without each of the other ways of pricing.
fn any_tier() -> impl Strategy<Value = TierSpec> {
    let currency = prop::sample::select(vec!["usd", "jpy", "kwd"]);
    let discount = (0u64..500_000, percent()).prop_map(|(after_calls, percent)| VolumeDiscount {
        after_calls,
        percent,
    });
    let sla = (percent(), percent()).prop_map(|(failure_rate_over, credit_percent)| SlaCredit {
        failure_rate_over,
        credit_percent,
    });
    let options = (
        prop::option::of(fixed_fee()),
        prop::option::of(discount),
        prop::option::of(sla),
        prop::option::of(overage()),
        any::<bool>(),
    );
    (any_usage(), currency, options).prop_map(
        |(usage, code, (fee, discount, sla, quota, by_day))| TierSpec {
            currency: Currency::try_from(code.to_owned()).unwrap(),
            fixed_fee: fee,
            volume_discount: discount,
            sla_credit: sla,
            quota,
            proration: if by_day {
                Proration::ByDay
            } else {
                Proration::None
            },
            ..plain(usage)
        },
    )
}

/// A part of November and a daily series inside it.
fn period_and_usage() -> impl Strategy<Value = (RatedPeriod, PeriodUsage)> {
    (0u64..30, 1u64..=30, any::<bool>()).prop_flat_map(|(first, length, opening)| {
        let end = (first + length).min(30);
        let day = (first..end, 0u64..200_000, 0u64..=100, 0u64..=3);
        prop::collection::vec(day, 0..40).prop_map(move |days| {
            let start = november().start().date_naive();
            let shifted = |offset| start.checked_add_days(Days::new(offset)).unwrap();
            let active = Period::of_days(shifted(first), shifted(end)).unwrap();
            let mut period =
                RatedPeriod::partial(november(), active.start(), active.end()).unwrap();
            if opening {
                period = period.as_first_period();
            }
            let series = days
                .into_iter()
                .map(|(offset, total, failed_percent, units_each)| {
                    let failed = total * failed_percent / 100;
                    let billable = total - failed;
                    DailyUsage {
                        day: shifted(offset),
                        billable_calls: billable,
                        billable_units: Decimal::from(billable * units_each.max(1)),
                        failed_calls: failed,
                        total_calls: total,
                    }
                });
            (period, PeriodUsage::from_days(series.collect()).unwrap())
        })
    })
}

fn usage_total(tier: &TierSpec, units: u64) -> Decimal {
    let usage = PeriodUsage {
        billable_calls: units,
        billable_units: Decimal::from(units),
        total_calls: units,
        ..PeriodUsage::default()
    };
    rate(tier, &RatedPeriod::whole(november()), &usage)
        .unwrap()
        .total
}

proptest! {
    #[test]
    fn totals_are_never_negative_and_are_the_sum_of_the_lines(tier in any_tier(), (period, usage) in period_and_usage()) {
        let invoice = rate(&tier, &period, &usage).unwrap();
        prop_assert!(invoice.total >= Decimal::ZERO);
        prop_assert_eq!(invoice.total, invoice.lines.iter().map(|line| line.amount).sum::<Decimal>());
        let digits = tier.currency.minor_unit_digits();
        prop_assert!(invoice.lines.iter().all(|line| line.amount.scale() == digits));
    }

    #[test]
    fn more_usage_never_costs_less(usage in rising_usage(), quota in prop::option::of(overage()), less in 0u64..2_000_000, more in 0u64..2_000_000) {
        let tier = TierSpec { quota, ..plain(usage) };
        prop_assert!(usage_total(&tier, less.min(more)) <= usage_total(&tier, less.max(more)));
    }

    #[test]
    fn a_graduated_total_is_the_sum_of_its_bands(bands in bands(), free in 0u64..10_000, units in 0u64..2_000_000) {
        let tier = plain(UsagePricing::Graduated { bands: bands.clone(), free_units: free });
        let priced = units.saturating_sub(free);
        let mut expected = Decimal::ZERO;
        let mut lower = 0;
        for band in &bands {
            let upper = band.up_to.unwrap_or(u64::MAX);
            let in_band = priced.min(upper).saturating_sub(lower);
            if in_band > 0 {
                expected += tier.currency.round(Decimal::from(in_band) * band.unit_price.value());
                expected += tier.currency.round(band.flat_fee.map_or(Decimal::ZERO, Amount::value));
            }
            lower = upper;
        }
        prop_assert_eq!(usage_total(&tier, units), expected);
    }

    #[test]
    fn rating_is_deterministic(tier in any_tier(), (period, usage) in period_and_usage()) {
        let first = rate(&tier, &period, &usage).unwrap();
        let again = rate(&tier.clone(), &period, &usage.clone()).unwrap();
        prop_assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&again).unwrap());
        prop_assert_eq!(first, again);
    }
}
