use crate::events::{metered_setup, post_events};
use crate::helpers::{TestApp, assert_error, on_both_databases};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tollbooth::domain::tier::TierSpec;
use tollbooth::pricing::{DailyUsage, PeriodUsage, RatedPeriod, period_containing, rate};

on_both_databases!(the_preview_rates_the_recorded_usage_as_the_rating_function_does);

async fn post_calls(app: &TestApp, key: &str, prefix: &str, count: usize, status: u16) {
    let records: Vec<Value> = (0..count)
        .map(|i| {
            json!({"id": format!("{prefix}-{i}"), "consumer": "k1", "api": "weather",
                        "timestamp": chrono::Utc::now().to_rfc3339(), "status": status})
        })
        .collect();
    for chunk in records.chunks(5_000) {
        let (status, answer) = post_events(app, key, serde_json::to_string(chunk).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
}

async fn the_preview_rates_the_recorded_usage_as_the_rating_function_does(app: TestApp) {
    let key = metered_setup(&app).await;
    // weather-pro: $25 a month, $5 per started 1,000 calls after 5,000 free.
    post_calls(&app, &key, "ok", 12_345, 200).await;
    post_calls(&app, &key, "failed", 3, 503).await;

    let (status, preview) = app
        .get("/v1/subscriptions/acme-weather/invoice-preview")
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["currency"], "usd");
    assert_eq!(preview["usage"]["billable_calls"], 12_345);
    assert_eq!(preview["usage"]["failed_calls"], 3);
    assert_eq!(preview["usage"]["total_calls"], 12_348);
    let amounts: Vec<(&str, &str)> = preview["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(
        amounts,
        [("fixed_fee", "25.00"), ("usage", "40.00")],
        "{preview}"
    );
    assert_eq!(preview["total"], "65.00");
    let today = chrono::Utc::now().date_naive();
    let start = today.and_hms_opt(0, 0, 0).unwrap().and_utc();
    assert_eq!(preview["period_start"], json!(start));

    // The same figures through the rating function itself.
    let (_, tier) = app.get("/v1/tiers/weather-pro").await;
    let spec: TierSpec = serde_json::from_value(strip(tier)).unwrap();
    let period = period_containing(today, spec.period(), chrono::Utc::now()).unwrap();
    let started_at: chrono::DateTime<chrono::Utc> =
        preview["active_from"].as_str().unwrap().parse().unwrap();
    let rated = RatedPeriod::partial(period, started_at, period.end())
        .unwrap()
        .as_first_period();
    let usage = PeriodUsage::from_days(vec![DailyUsage {
        day: today,
        billable_calls: 12_345,
        billable_units: Decimal::from(12_345),
        failed_calls: 3,
        total_calls: 12_348,
    }])
    .unwrap();
    let expected = serde_json::to_value(rate(&spec, &rated, &usage).unwrap()).unwrap();
    for field in ["lines", "total", "period_start", "period_end", "currency"] {
        assert_eq!(preview[field], expected[field], "{field}");
    }

    let bad_start = app
        .get("/v1/subscriptions/acme-weather/invoice-preview?period_start=1999-01-01")
        .await;
    assert_error(
        &bad_start,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("period_start"),
    );
    let not_a_date = app
        .get("/v1/subscriptions/acme-weather/invoice-preview?period_start=soon")
        .await;
    assert_error(
        &not_a_date,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("period_start"),
    );
    let (status, same) = app
        .get(&format!(
            "/v1/subscriptions/acme-weather/invoice-preview?period_start={today}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["total"], "65.00");
    let missing = app.get("/v1/subscriptions/nobody/invoice-preview").await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found", None);
}

/// A tier as the API answers it, less the fields that are not part of its definition.
fn strip(mut tier: Value) -> Value {
    for field in [
        "id",
        "version",
        "version_id",
        "created_at",
        "version_created_at",
        "stripe",
    ] {
        tier.as_object_mut().unwrap().remove(field);
    }
    tier
}
