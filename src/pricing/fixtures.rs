//! Builders shared by the pricing tests.

use super::{DailyUsage, Line, Period, PeriodUsage};
use crate::domain::tier::TierSpec;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// A valid usd tier named `Test`, with `fields` written over its defaults.
pub(super) fn tier(fields: Value) -> TierSpec {
    let mut spec = json!({"slug": "test", "api": "weather", "name": "Test", "currency": "usd"});
    if let (Some(spec), Value::Object(fields)) = (spec.as_object_mut(), fields) {
        spec.extend(fields);
    }
    let tier: TierSpec = serde_json::from_value(spec).unwrap();
    tier.validate().unwrap();
    tier
}

pub(super) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub(super) fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// November 2026: 30 days.
pub(super) fn november() -> Period {
    Period::of_days(date("2026-11-01"), date("2026-12-01")).unwrap()
}

/// `count` billable calls and no failures, without a daily series.
pub(super) fn calls(count: u64) -> PeriodUsage {
    units(count, Decimal::from(count))
}

/// `count` billable calls that the backend counted as `units` units.
pub(super) fn units(count: u64, units: Decimal) -> PeriodUsage {
    PeriodUsage {
        billable_calls: count,
        billable_units: units,
        failed_calls: 0,
        total_calls: count,
        days: Vec::new(),
        meters: Vec::new(),
        unique_values: Vec::new(),
    }
}

/// One day of `total` calls, `failed` of them failed and the rest billable.
pub(super) fn day(text: &str, total: u64, failed: u64) -> DailyUsage {
    DailyUsage {
        day: date(text),
        billable_calls: total - failed,
        billable_units: Decimal::from(total - failed),
        failed_calls: failed,
        total_calls: total,
    }
}

/// Lines as a reader sees them: `API calls 1 to 1,000 = 10.00`.
pub(super) fn shown(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .map(|line| format!("{} = {}", line.description, line.amount))
        .collect()
}
