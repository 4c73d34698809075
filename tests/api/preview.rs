use crate::events::{metered_setup, post_events};
use crate::helpers::{TestApp, assert_error, on_both_databases};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tollbooth::domain::tier::TierSpec;
use tollbooth::pricing::{
    DailyUsage, PeriodUsage, RatedPart, RatedPeriod, period_containing, rate, rate_parts,
};

on_both_databases!(
    the_preview_rates_the_recorded_usage_as_the_rating_function_does,
    a_tier_change_mid_period_rates_each_part_on_its_own_tier,
    a_past_period_is_previewed_on_its_own_usage
);

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

/// Calls stamped at `at`.
async fn post_calls_at(
    app: &TestApp,
    key: &str,
    prefix: &str,
    count: usize,
    at: chrono::DateTime<chrono::Utc>,
) {
    let records: Vec<Value> = (0..count)
        .map(|i| {
            json!({"id": format!("{prefix}-{i}"), "consumer": "k1", "api": "weather",
                        "timestamp": at.to_rfc3339(), "status": 200})
        })
        .collect();
    let (status, answer) = post_events(app, key, serde_json::to_string(&records).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], count, "{answer}");
}

fn spec_of(tier: Value) -> TierSpec {
    serde_json::from_value(strip(tier)).unwrap()
}

fn usage_on(day: chrono::NaiveDate, calls: u64) -> PeriodUsage {
    PeriodUsage::from_days(vec![DailyUsage {
        day,
        billable_calls: calls,
        billable_units: Decimal::from(calls),
        failed_calls: 0,
        total_calls: calls,
    }])
    .unwrap()
}

async fn a_tier_change_mid_period_rates_each_part_on_its_own_tier(app: TestApp) {
    use chrono::{Duration, Utc};
    let key = metered_setup(&app).await;
    let mut basic = crate::tiers::pro_tier("5.00");
    basic["slug"] = json!("weather-basic");
    basic["name"] = json!("Basic");
    basic["fixed_fee"]["amount"] = json!("10.00");
    basic["usage"] = json!({"model": "per_unit", "unit_price": "0.01"});
    let (status, body) = app.post("/v1/tiers", &basic).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let today = Utc::now().date_naive();
    let midnight = |day: chrono::NaiveDate| day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let started = midnight(today - Duration::days(2)) + Duration::hours(1);
    app.backdate_subscription(started).await;
    post_calls_at(
        &app,
        &key,
        "on-pro",
        3,
        midnight(today - Duration::days(1)) + Duration::hours(12),
    )
    .await;

    let (status, moved) = app
        .post(
            "/v1/subscriptions/acme-weather/tier",
            &json!({"tier": "weather-basic"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{moved}");
    // As if the move had been made yesterday at 18:00.
    let changed = midnight(today - Duration::days(1)) + Duration::hours(18);
    app.execute_sql(&format!(
        "UPDATE subscription_tiers SET from_ms = {} WHERE from_ms <> {}",
        changed.timestamp_millis(),
        started.timestamp_millis()
    ))
    .await;
    post_calls_at(&app, &key, "on-basic", 4, Utc::now()).await;

    let (status, preview) = app
        .get("/v1/subscriptions/acme-weather/invoice-preview")
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["tier"], "weather-basic");
    assert_eq!(preview["usage"]["billable_calls"], 7);
    let descriptions: Vec<&str> = preview["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["description"].as_str().unwrap())
        .collect();
    assert!(descriptions[0].starts_with("Pro ("), "{descriptions:?}");
    assert!(
        descriptions.last().unwrap().starts_with("Basic ("),
        "{descriptions:?}"
    );

    // The same as the rating function gives for the two parts.
    let (_, pro) = app.get("/v1/tiers/weather-pro").await;
    let (_, basic) = app.get("/v1/tiers/weather-basic").await;
    let (pro, basic) = (spec_of(pro), spec_of(basic));
    let period = period_containing(started.date_naive(), basic.period(), Utc::now()).unwrap();
    let first = RatedPeriod::partial(period, started, changed)
        .unwrap()
        .as_first_period();
    let second = RatedPeriod::partial(period, changed, period.end()).unwrap();
    let expected = rate_parts(&[
        RatedPart {
            tier: &pro,
            period: first,
            usage: usage_on(today - Duration::days(1), 3),
        },
        RatedPart {
            tier: &basic,
            period: second,
            usage: usage_on(today, 4),
        },
    ])
    .unwrap();
    let expected = serde_json::to_value(expected).unwrap();
    for field in ["lines", "total", "period_start", "period_end"] {
        assert_eq!(preview[field], expected[field], "{field}");
    }
    // Basic's 4 calls at $0.01.
    assert_eq!(
        preview["lines"].as_array().unwrap().last().unwrap()["amount"],
        "0.04"
    );
    // The revenue report rates a period with a tier change inside it from its hours, as the
    // preview does, not from the period's totals.
    let (status, revenue) = app
        .get(&format!(
            "/v1/revenue?from={}&to={}",
            started.date_naive(),
            today + Duration::days(1)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{revenue}");
    let usd = &revenue["currencies"][0];
    assert_eq!(usd["open_periods"], 1, "{revenue}");
    let amount =
        |value: &Value| <Decimal as std::str::FromStr>::from_str(value.as_str().unwrap()).unwrap();
    assert_eq!(amount(&usd["open"]["total"]), amount(&preview["total"]));

    let other_currency = app
        .post("/v1/tiers", &{
            let mut euro = crate::tiers::pro_tier("5.00");
            euro["slug"] = json!("weather-euro");
            euro["currency"] = json!("eur");
            euro
        })
        .await;
    assert_eq!(other_currency.0, StatusCode::CREATED);
    let refused = app
        .post(
            "/v1/subscriptions/acme-weather/tier",
            &json!({"tier": "weather-euro"}),
        )
        .await;
    assert_error(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("tier"),
    );
    let (_, still) = app.get("/v1/subscriptions/acme-weather").await;
    assert_eq!(still["tier"], "weather-basic");
}

async fn a_past_period_is_previewed_on_its_own_usage(app: TestApp) {
    use chrono::{Duration, Utc};
    let key = metered_setup(&app).await;
    // Daily periods: yesterday's period is a past one.
    let (status, body) = app
        .post(
            "/v1/tiers",
            &json!({"slug": "weather-daily", "api": "weather", "name": "Daily",
            "currency": "usd", "billing_period": {"interval": "day"},
            "usage": {"model": "per_unit", "unit_price": "0.50"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, moved) = app
        .post(
            "/v1/subscriptions/acme-weather/tier",
            &json!({"tier": "weather-daily"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{moved}");
    let today = Utc::now().date_naive();
    let yesterday = today - Duration::days(1);
    app.backdate_subscription(yesterday.and_hms_opt(0, 0, 0).unwrap().and_utc())
        .await;
    post_calls_at(
        &app,
        &key,
        "past",
        2,
        yesterday.and_hms_opt(10, 0, 0).unwrap().and_utc(),
    )
    .await;
    post_calls_at(&app, &key, "now", 5, Utc::now()).await;

    let (status, past) = app
        .get(&format!(
            "/v1/subscriptions/acme-weather/invoice-preview?period_start={yesterday}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{past}");
    assert_eq!(past["usage"]["billable_calls"], 2, "{past}");
    assert_eq!(past["total"], "1.00");
    let (_, open) = app
        .get("/v1/subscriptions/acme-weather/invoice-preview")
        .await;
    assert_eq!(open["usage"]["billable_calls"], 5, "{open}");
    assert_eq!(open["total"], "2.50");
    assert_eq!(
        open["period_start"],
        json!(today.and_hms_opt(0, 0, 0).unwrap().and_utc())
    );
}
