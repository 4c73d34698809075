//! How many subscription-periods one thread rates per second: a graduated tier with three bands, a
//! fixed fee, a volume discount and SLA credits, over a 30-day daily series. Goal: 1,000,000/s.
//!
//! Run with `cargo bench --bench rating`.

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tollbooth::domain::tier::TierSpec;
use tollbooth::pricing::{DailyUsage, Period, PeriodUsage, RatedPeriod, rate};

/// Distinct usages rated in turn, so no one input stays hot in the branch predictor.
const USAGES: u64 = 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let first = NaiveDate::from_ymd_opt(2026, 11, 1).ok_or("bad date")?;
    let end = NaiveDate::from_ymd_opt(2026, 12, 1).ok_or("bad date")?;
    let period = RatedPeriod::whole(Period::of_days(first, end)?);
    let usages = (0..USAGES)
        .map(|seed| month_of_usage(first, seed))
        .collect::<Result<Vec<_>, _>>()?;

    let mut lines = 0usize;
    for usage in &usages {
        lines += rate(&tier, &period, usage)?.lines.len();
    }
    println!(
        "{} lines over {USAGES} distinct subscription-periods",
        lines
    );

    let mut rated = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        for usage in &usages {
            let invoice = rate(black_box(&tier), black_box(&period), black_box(usage))?;
            black_box(invoice);
        }
        rated += USAGES;
    }
    let elapsed = started.elapsed();
    let per_second = u128::from(rated) * 1_000_000_000 / elapsed.as_nanos().max(1);
    println!(
        "rated {rated} subscription-periods in {elapsed:.2?} on one thread: {per_second} subscription-periods/s"
    );
    Ok(())
}

/// A month of 30 days of usage, between about 200,000 and 2,000,000 billable calls; every fifth
/// day of some subscriptions fails over the SLA's 5%.
fn month_of_usage(first: NaiveDate, seed: u64) -> Result<PeriodUsage, Box<dyn std::error::Error>> {
    let daily_calls = 7_000 + (seed * 7_919) % 60_000;
    let days = (0..30u64)
        .map(|offset| {
            let day = first
                .checked_add_days(Days::new(offset))
                .ok_or("day out of range")?;
            let failed = if (offset + seed) % 5 == 0 {
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
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    Ok(PeriodUsage::from_days(days)?)
}
