//! Worked examples: whole invoices for tiers a provider would write, checked by hand.

use super::fixtures::{at, calls, day, november, tier};
use super::{LineKind, PeriodUsage, RatedPeriod, rate};
use crate::domain::tier::TierSpec;
use rust_decimal::{Decimal, dec};
use serde_json::{Value, json};

fn total(tier: &TierSpec, usage: &PeriodUsage) -> Decimal {
    rate(tier, &RatedPeriod::whole(november()), usage)
        .unwrap()
        .total
}

fn weather_scale() -> TierSpec {
    // As in examples/catalog.yaml.
    tier(
        json!({"name": "Scale", "fixed_fee": {"amount": "99.00", "interval": "month"},
        "usage": {"model": "graduated", "bands": [
            {"up_to": 100000, "unit_price": "0.002"},
            {"up_to": 1000000, "unit_price": "0.001"},
            {"up_to": null, "unit_price": "0.0005"}]},
        "volume_discount": {"after_calls": 500000, "percent": "10"},
        "sla_credit": {"failure_rate_over": "5", "credit_percent": "10"}}),
    )
}

fn bands(model: &str) -> Value {
    json!({"model": model, "bands": [
        {"up_to": 100000, "unit_price": "0.002"},
        {"up_to": 1000000, "unit_price": "0.001"},
        {"up_to": null, "unit_price": "0.0005"}]})
}

#[test]
fn five_dollars_per_thousand_calls_after_five_thousand_free() {
    let package = tier(json!({"usage": {"model": "package", "free_units": 5000,
        "package_size": 1000, "package_price": "5.00"}}));
    // 12,345 − 5,000 = 7,345 calls: 8 started blocks × $5.
    let invoice = rate(&package, &RatedPeriod::whole(november()), &calls(12_345)).unwrap();
    assert_eq!(
        invoice.lines[0].description,
        "12,345 API calls, 5,000 included: 8 blocks of 1,000"
    );
    assert_eq!(invoice.total.to_string(), "40.00");
    assert_eq!(total(&package, &calls(5000)).to_string(), "0.00");
}

#[test]
fn twenty_five_dollars_a_month() {
    let monthly = tier(json!({"fixed_fee": {"amount": "25", "interval": "month"},
        "usage": {"model": "per_unit", "unit_price": "0"}}));
    assert_eq!(total(&monthly, &calls(0)).to_string(), "25.00");
}

#[test]
fn a_twentieth_of_a_cent_per_call() {
    let per_call = tier(json!({"usage": {"model": "per_unit", "unit_price": "0.0005"}}));
    // 1,234,567 × 0.0005 = 617.2835, rounded once to 617.28.
    assert_eq!(total(&per_call, &calls(1_234_567)), dec!(617.28));
}

#[test]
fn graduated_and_volume_bands_price_the_same_usage_differently() {
    // Graduated: 100,000 × 0.002 + 150,000 × 0.001 = 200 + 150 = 350.00.
    // Volume: 250,000 reaches the second band, so all of it × 0.001 = 250.00.
    let usage = calls(250_000);
    assert_eq!(
        total(&tier(json!({"usage": bands("graduated")})), &usage),
        dec!(350.00)
    );
    assert_eq!(
        total(&tier(json!({"usage": bands("volume")})), &usage),
        dec!(250.00)
    );
}

#[test]
fn yen_round_to_whole_yen_half_to_even() {
    let yen = tier(json!({"currency": "jpy", "usage": {"model": "per_unit", "unit_price": "0.5"}}));
    assert_eq!(total(&yen, &calls(205)).to_string(), "102");
    assert_eq!(total(&yen, &calls(207)).to_string(), "104");
    let sub_yen =
        tier(json!({"currency": "jpy", "usage": {"model": "per_unit", "unit_price": "0.35"}}));
    assert_eq!(total(&sub_yen, &calls(1234)), dec!(432));
}

#[test]
fn the_weather_scale_tier_in_a_month_with_two_bad_days() {
    // 1,234,567 calls in November 2026 (30 days):
    //   fixed fee                                      99.00
    //   calls 1 to 100,000          × 0.002 =         200.00
    //   calls 100,001 to 1,000,000  × 0.001 =         900.00
    //   calls 1,000,001 to 1,234,567 (234,567) × 0.0005 = 117.2835 → 117.28
    //   volume discount: 10% of (200 + 900 + 117.28) = 121.728 → −121.73
    //   SLA: 99 ÷ 30 = 3.30 a day, 10% of it = 0.33, for Nov 3 (7.5%) and Nov 20 (12%);
    //        Nov 17 fails exactly 5%, which is not over 5%:   −0.66
    //   total: 99 + 1,217.28 − 121.73 − 0.66 =        1,193.89
    let mut usage = calls(1_234_567);
    usage.days = vec![
        day("2026-11-03", 40_000, 3_000),
        day("2026-11-17", 40_000, 2_000),
        day("2026-11-20", 50_000, 6_000),
    ];
    let invoice = rate(&weather_scale(), &RatedPeriod::whole(november()), &usage).unwrap();
    let lines: Vec<(&str, Decimal)> = invoice
        .lines
        .iter()
        .map(|line| (line.description.as_str(), line.amount))
        .collect();
    assert_eq!(
        lines,
        [
            ("Scale: fixed fee for 1 month", dec!(99.00)),
            ("API calls 1 to 100,000", dec!(200.00)),
            ("API calls 100,001 to 1,000,000", dec!(900.00)),
            ("API calls 1,000,001 to 1,234,567", dec!(117.28)),
            (
                "Volume discount: 10% off usage for over 500,000 API calls",
                dec!(-121.73)
            ),
            ("SLA credit for 2026-11-03: 7.5% failed calls", dec!(-0.33)),
            ("SLA credit for 2026-11-20: 12% failed calls", dec!(-0.33)),
        ]
    );
    assert_eq!(invoice.total, dec!(1193.89));
}

#[test]
fn the_invoice_reads_as_json_with_amounts_as_strings() {
    let monthly = tier(json!({"fixed_fee": {"amount": "25", "interval": "month"},
        "usage": {"model": "per_unit", "unit_price": "0.0005"}}));
    let invoice = rate(&monthly, &RatedPeriod::whole(november()), &calls(1_234_567)).unwrap();
    assert_eq!(
        serde_json::to_value(&invoice).unwrap(),
        json!({
            "currency": "usd",
            "period_start": "2026-11-01T00:00:00Z",
            "period_end": "2026-12-01T00:00:00Z",
            "lines": [
                {"kind": "fixed_fee", "description": "Test: fixed fee for 1 month",
                 "quantity": "1", "unit_price": "25", "amount": "25.00"},
                {"kind": "usage", "description": "1,234,567 API calls",
                 "quantity": "1234567", "unit_price": "0.0005", "amount": "617.28"}],
            "total": "642.28"
        })
    );
}

#[test]
fn credits_never_take_the_total_below_zero() {
    // 0.45 ÷ 30 = 0.015 a day rounds up to 0.02, but 3 days of the fee, 0.045, round to 0.04:
    // three full-day credits (0.06) would outweigh the fee they credit.
    let generous = tier(json!({"fixed_fee": {"amount": "0.45", "interval": "month"},
        "usage": {"model": "per_unit", "unit_price": "0"},
        "sla_credit": {"failure_rate_over": "0", "credit_percent": "100"}}));
    let period =
        RatedPeriod::partial(november(), at("2026-11-28T00:00:00Z"), november().end()).unwrap();
    let usage = PeriodUsage::from_days(vec![
        day("2026-11-28", 10, 10),
        day("2026-11-29", 10, 10),
        day("2026-11-30", 10, 10),
    ])
    .unwrap();
    let invoice = rate(&generous, &period, &usage).unwrap();
    let amounts: Vec<Decimal> = invoice.lines.iter().map(|line| line.amount).collect();
    assert_eq!(
        amounts,
        [dec!(0.04), dec!(0.00), dec!(-0.02), dec!(-0.02), dec!(0.00)]
    );
    assert!(
        invoice.lines[4]
            .description
            .ends_with("(limited to the amount due)")
    );
    assert_eq!(invoice.lines[4].kind, LineKind::SlaCredit);
    assert_eq!(invoice.total.to_string(), "0.00");
}

#[test]
fn usage_outside_the_active_days_is_refused() {
    let period =
        RatedPeriod::partial(november(), at("2026-11-10T08:00:00Z"), november().end()).unwrap();
    let usage = PeriodUsage::from_days(vec![day("2026-11-09", 10, 0)]).unwrap();
    let refused = rate(&weather_scale(), &period, &usage);
    assert_eq!(
        refused,
        Err(super::PricingError::DayOutsideActive(usage.days[0].day))
    );
}

#[test]
fn a_tier_change_mid_period_rates_each_part_on_its_own_tier() {
    use super::{RatedPart, rate_parts};
    let basic = tier(
        json!({"name": "Basic", "fixed_fee": {"amount": "30.00", "interval": "month"},
        "usage": {"model": "per_unit", "unit_price": "0.01"}}),
    );
    let pro = tier(
        json!({"name": "Pro", "fixed_fee": {"amount": "90.00", "interval": "month"},
        "usage": {"model": "per_unit", "unit_price": "0.005"}}),
    );
    let change = at("2026-11-11T12:00:00Z");
    let before = RatedPeriod::partial(november(), november().start(), change).unwrap();
    let after = RatedPeriod::partial(november(), change, november().end()).unwrap();
    let invoice = rate_parts(&[
        RatedPart {
            tier: &basic,
            period: before,
            usage: calls(1_000),
        },
        RatedPart {
            tier: &pro,
            period: after,
            usage: calls(4_000),
        },
    ])
    .unwrap();
    // Basic for 11 started days: 30 × 11/30 = 11.00, and 1,000 × 0.01 = 10.00.
    // Pro for the 20 days from the 11th (a started day counts): 90 × 20/30 = 60.00, 4,000 × 0.005 = 20.00.
    let amounts: Vec<String> = invoice.lines.iter().map(|l| l.amount.to_string()).collect();
    assert_eq!(amounts, ["11.00", "10.00", "60.00", "20.00"]);
    assert_eq!(invoice.total, dec!(101.00));
    assert!(
        invoice.lines[0]
            .description
            .starts_with("Basic (2026-11-01 00:00 UTC to 2026-11-11 12:00 UTC): "),
        "{}",
        invoice.lines[0].description
    );
    assert!(
        invoice.lines[2]
            .description
            .starts_with("Pro (2026-11-11 12:00 UTC")
    );

    let euro =
        tier(json!({"currency": "eur", "usage": {"model": "per_unit", "unit_price": "0.01"}}));
    let mixed = rate_parts(&[
        RatedPart {
            tier: &basic,
            period: before,
            usage: calls(1),
        },
        RatedPart {
            tier: &euro,
            period: after,
            usage: calls(1),
        },
    ]);
    assert!(matches!(
        mixed,
        Err(super::PricingError::MixedCurrencies(..))
    ));
}
