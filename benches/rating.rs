//! How many subscription-periods one thread rates per second: the weather-scale tier (three
//! graduated bands, a fixed fee, a volume discount, SLA credits) over a 30-day daily series.
//! Goal: 1,000,000 a second for a usual month. A bad month, with an SLA credit line on one
//! day in five, is measured too: each credit line is one more description to write.
//!
//! A tier of four charges (issue 17: input and output tokens on two models, with a fixed fee) is
//! rated over periods that metered two meters by three models. Goal: 500,000 a second. Beside
//! each, a plain loop that only adds up each period's quantities, as a baseline of the same run.
//!
//! Run with `cargo bench --bench rating`.
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tollbooth::domain::meter::Aggregation;
use tollbooth::domain::tier::TierSpec;
use tollbooth::pricing::{DailyUsage, MeterQuantity, Period, PeriodUsage, RatedPeriod, rate};

type Failure = Box<dyn std::error::Error>;

/// Whether a subscription (by its seed) fails over the SLA on a day of the month.
type BadDay = dyn Fn(u64, u64) -> bool;

/// Distinct subscription-periods rated in turn, as a billing run meets them, not one kept hot.
const SUBSCRIPTIONS: u64 = 1024;

fn main() -> Result<(), Failure> {
    let tier: TierSpec = serde_json::from_value(json!({
        "slug": "weather-scale", "api": "weather", "name": "Scale", "currency": "usd",
        "fixed_fee": {"amount": "99.00", "interval": "month"},
        "usage": {"model": "graduated", "bands": [
            {"up_to": 100000, "unit_price": "0.002"},
            {"up_to": 1000000, "unit_price": "0.001"},
            {"up_to": null, "unit_price": "0.0005"}]},
        "volume_discount": {"after_calls": 500000, "percent": "10"},
        "sla_credit": {"failure_rate_over": "5", "credit_percent": "10"}
    }))?;
    tier.validate()?;
    let first = NaiveDate::from_ymd_opt(2026, 11, 1).ok_or("no such day")?;
    let end = NaiveDate::from_ymd_opt(2026, 12, 1).ok_or("no such day")?;
    let period = RatedPeriod::whole(Period::of_days(first, end)?);

    let months: [(&str, &BadDay); 2] = [
        // One subscription in ten has one day over the SLA's 5% failures.
        ("usual month", &|seed, day| {
            seed.is_multiple_of(10) && day == seed % 30
        }),
        // Every subscription fails over 5% on every fifth day.
        ("bad month", &|seed, day| (day + seed).is_multiple_of(5)),
    ];
    for (name, bad_day) in months {
        let usages = (0..SUBSCRIPTIONS)
            .map(|seed| month_of_usage(first, seed, bad_day))
            .collect::<Result<Vec<_>, _>>()?;
        measure(name, &tier, &period, &usages)?;
    }

    let tokens: TierSpec = serde_json::from_value(json!({
        "slug": "llm-tokens", "api": "llm", "name": "Tokens", "currency": "usd",
        "fixed_fee": {"amount": "20.00", "interval": "month"},
        "charges": [
            {"meter": "input_tokens", "dimensions": {"model": "large"}, "usage": {"model": "per_unit", "unit_price": "0.000003"}},
            {"meter": "output_tokens", "dimensions": {"model": "large"}, "usage": {"model": "per_unit", "unit_price": "0.000015"}},
            {"meter": "input_tokens", "dimensions": {"model": "small"}, "usage": {"model": "per_unit", "unit_price": "0.0000005", "free_units": 100000}},
            {"meter": "output_tokens", "dimensions": {"model": "small"}, "usage": {"model": "graduated", "bands": [
                {"up_to": 1000000, "unit_price": "0.0000025"}, {"up_to": null, "unit_price": "0.000002"}]}}
        ]
    }))?;
    tokens.validate()?;
    let usages = (0..SUBSCRIPTIONS)
        .map(|seed| month_of_tokens(first, seed))
        .collect::<Result<Vec<_>, _>>()?;
    measure(
        "four charges, two meters by three models",
        &tokens,
        &period,
        &usages,
    )?;
    Ok(())
}

/// A month of two token meters by three models (one no charge names).
fn month_of_tokens(first: NaiveDate, seed: u64) -> Result<PeriodUsage, Failure> {
    let mut usage = month_of_usage(first, seed, &|_, _| false)?;
    usage.days.clear();
    for (i, model) in ["large", "small", "medium"].into_iter().enumerate() {
        for meter in ["input_tokens", "output_tokens"] {
            let tokens = 1_000 + (seed * 104_729 + i as u64 * 7_919) % 5_000_000;
            usage.meters.push(MeterQuantity {
                meter: meter.to_owned(),
                dimensions: vec![("model".to_owned(), model.to_owned())],
                aggregation: Aggregation::Sum,
                quantity: Decimal::from(tokens),
                at: 0,
            });
        }
    }
    Ok(usage)
}

/// Rates the usages over and over for a second, five times after a warm-up second, and prints
/// the median rate.
fn measure(
    name: &str,
    tier: &TierSpec,
    period: &RatedPeriod,
    usages: &[PeriodUsage],
) -> Result<(), Failure> {
    let mut lines = 0;
    for usage in usages {
        lines += rate(tier, period, usage)?.lines.len();
    }
    rate_for_a_second(tier, period, usages)?;
    let mut rates = (0..5)
        .map(|_| rate_for_a_second(tier, period, usages))
        .collect::<Result<Vec<_>, _>>()?;
    rates.sort_unstable();
    let (slowest, median, fastest) = (rates[0], rates[2], rates[4]);
    println!(
        "{name}: {median} subscription-periods/s on one thread \
         (median of 5 seconds, {slowest} to {fastest}; {lines} lines per {} invoices)",
        usages.len()
    );
    let mut baselines = (0..5)
        .map(|_| add_up_for_a_second(usages))
        .collect::<Result<Vec<_>, _>>()?;
    baselines.sort_unstable();
    println!(
        "  baseline, the same run: a plain loop adding up each period's quantities, {} periods/s",
        baselines[2]
    );
    Ok(())
}

/// Periods whose quantities a plain loop adds up per second: the floor under any rating.
fn add_up_for_a_second(usages: &[PeriodUsage]) -> Result<u128, Failure> {
    let mut rounds = 0u128;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        for usage in usages {
            let mut total = black_box(usage).billable_units;
            for meter in &usage.meters {
                total += meter.quantity;
            }
            black_box(total);
        }
        rounds += 1;
    }
    let added = rounds * u128::try_from(usages.len())?;
    Ok(added * 1_000_000_000 / started.elapsed().as_nanos().max(1))
}

/// Subscription-periods rated per second over about a second.
fn rate_for_a_second(
    tier: &TierSpec,
    period: &RatedPeriod,
    usages: &[PeriodUsage],
) -> Result<u128, Failure> {
    let mut rated = 0u128;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        for usage in usages {
            black_box(rate(black_box(tier), black_box(period), black_box(usage))?);
        }
        rated += 1;
    }
    let ratings = rated * u128::try_from(usages.len())?;
    Ok(ratings * 1_000_000_000 / started.elapsed().as_nanos().max(1))
}

/// Thirty days of usage, 210,000 to 2,000,000 billable calls in all, with 0.5% failed calls on
/// a good day and 8.3% on a bad one.
fn month_of_usage(first: NaiveDate, seed: u64, bad_day: &BadDay) -> Result<PeriodUsage, Failure> {
    let daily_calls = 7_000 + (seed * 7_919) % 60_000;
    let days = (0..30u64)
        .map(|offset| {
            let day = first
                .checked_add_days(Days::new(offset))
                .ok_or("day out of range")?;
            let failed = if bad_day(seed, offset) {
                daily_calls / 12
            } else {
                daily_calls / 200
            };
            Ok(DailyUsage {
                day,
                billable_calls: daily_calls - failed,
                billable_units: Decimal::from(daily_calls - failed),
                failed_calls: failed,
                total_calls: daily_calls,
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(PeriodUsage::from_days(days)?)
}
