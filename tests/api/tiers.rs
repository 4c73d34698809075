use crate::helpers::{TestApp, assert_error, on_both_databases};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_databases!(
    a_changed_tier_becomes_a_new_version,
    bad_tier_definitions_are_refused_and_change_nothing,
);

pub fn pro_tier(package_price: &str) -> Value {
    json!({
        "slug": "weather-pro", "api": "weather", "name": "Pro", "currency": "usd",
        "fixed_fee": {"amount": "25.00", "interval": "month", "interval_count": 1},
        "usage": {"model": "package", "free_units": 5000, "package_size": 1000, "package_price": package_price}
    })
}

pub async fn create_weather_api(app: &TestApp) {
    let (status, body) = app
        .post(
            "/v1/apis",
            &json!({"slug": "weather", "name": "Weather API"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn a_changed_tier_becomes_a_new_version(app: TestApp) {
    create_weather_api(&app).await;
    let (status, v1) = app.post("/v1/tiers", &pro_tier("5.00")).await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["usage"]["package_price"], "5.00");
    assert_eq!(v1["fixed_fee"]["amount"], "25.00");

    let (status, same) = app.post("/v1/tiers", &pro_tier("5.00")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["version"], 1);

    let (status, v2) = app.post("/v1/tiers", &pro_tier("4.50")).await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["id"], v1["id"]);
    assert_ne!(v2["version_id"], v1["version_id"]);

    let (_, latest) = app.get("/v1/tiers/weather-pro").await;
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["usage"]["package_price"], "4.50");
    let (_, versions) = app.get("/v1/tiers/weather-pro/versions").await;
    let prices: Vec<&str> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["usage"]["package_price"].as_str().unwrap())
        .collect();
    assert_eq!(prices, ["5.00", "4.50"]);
    let (_, list) = app.get("/v1/tiers").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

async fn bad_tier_definitions_are_refused_and_change_nothing(app: TestApp) {
    create_weather_api(&app).await;
    let before = app.catalog_snapshot().await;
    let base = pro_tier("5.00");
    let with = |path: &[&str], value: Value| {
        let mut body = base.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut target = &mut body;
        for key in parents {
            target = &mut target[*key];
        }
        target[*last] = value;
        body
    };
    let bands = |bands: Value| json!({"model": "graduated", "bands": bands});
    let cases = [
        (with(&["currency"], json!("xyz")), "currency"),
        (with(&["api"], json!("maps")), "api"),
        (
            with(&["fixed_fee", "amount"], json!("-1")),
            "fixed_fee.amount",
        ),
        (
            with(&["fixed_fee", "amount"], json!(25.0)),
            "fixed_fee.amount",
        ),
        (
            with(&["fixed_fee", "interval"], json!("fortnight")),
            "fixed_fee.interval",
        ),
        // The decimal parser skips `_` and rounds past 28 digits; an amount does neither.
        (
            with(&["fixed_fee", "amount"], json!("1_000")),
            "fixed_fee.amount",
        ),
        (
            with(
                &["fixed_fee", "amount"],
                json!("99999999999999999.999999999999"),
            ),
            "fixed_fee.amount",
        ),
        (
            with(&["usage", "package_size"], json!(0)),
            "usage.package_size",
        ),
        (with(&["usage", "model"], json!("tiered")), "usage.model"),
        (
            with(
                &["usage"],
                bands(
                    json!([{"up_to": 10, "unit_price": "1"}, {"up_to": 5, "unit_price": "1"}, {"up_to": null, "unit_price": "1"}]),
                ),
            ),
            "usage",
        ),
        (
            with(&["usage"], bands(json!([{"up_to": 10, "unit_price": "1"}]))),
            "usage",
        ),
        (
            with(
                &["usage"],
                bands(json!([{"up_to": null, "unit_price": "0.0000000000001"}])),
            ),
            "usage.bands[0].unit_price",
        ),
        (
            with(
                &["volume_discount"],
                json!({"after_calls": 10, "percent": "150"}),
            ),
            "volume_discount.percent",
        ),
        (
            with(&["quota"], json!({"soft_limit": 10})),
            "quota.overage_unit_price",
        ),
    ];
    for (body, field) in cases {
        let answer = app.post("/v1/tiers", &body).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    // The band errors say which band is wrong.
    let answer = app.post("/v1/tiers", &with(&["usage"], bands(json!([{"up_to": 10, "unit_price": "1"}, {"up_to": 5, "unit_price": "1"}, {"up_to": null, "unit_price": "1"}])))).await;
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bands[1].up_to"),
        "{}",
        answer.1
    );
    assert_eq!(app.catalog_snapshot().await, before);
}
