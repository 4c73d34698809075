//! What an outside tester tried: every bad input a clean JSON 4xx that changes nothing, sums
//! that cannot overflow, text either database can store, slow clients cut off.

use crate::events::{metered_setup, post_events, record, usage_totals};
use crate::helpers::{
    Backend, TestApp, assert_error, on_both_backends, on_both_databases, spawn_app_with, use_stripe,
};
use crate::stripe_mock::StripeMock;
use crate::tiers::{create_weather_api, pro_tier};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_databases!(
    units_past_the_bound_are_refused_and_an_hour_past_i64_millionths_stays_exact,
    nul_characters_are_refused_where_they_are_parsed,
    every_refusal_of_the_http_layer_is_a_json_error,
    every_name_follows_one_rule,
    a_cursor_a_list_did_not_give_is_refused,
    an_object_sent_as_an_array_is_refused_by_field,
);
on_both_backends!(
    a_client_that_stalls_is_cut_off,
    a_webhook_stamped_at_the_end_of_time_is_a_clean_400,
    a_storm_of_one_paid_tier_makes_one_row_and_one_stripe_product_while_records_flow,
);

fn units_record(id: &str, timestamp: &str, units: &str) -> Value {
    json!({"id": id, "consumer": "k1", "api": "weather", "timestamp": timestamp, "status": 200,
        "method": "GET", "path": "/v1/forecast", "units": units})
}

async fn units_past_the_bound_are_refused_and_an_hour_past_i64_millionths_stays_exact(
    app: TestApp,
) {
    let key = metered_setup(&app).await;
    let at = chrono::Utc::now().to_rfc3339();
    // 9,300 records of the largest size: 9.3 × 10^18 millionths in one subscription-hour, past
    // what one i64 of millionths holds. In two requests, so that the database adds them too.
    let mut first = vec![
        units_record("too-big", &at, "9000000000000"),
        units_record("small", &at, "1"),
    ];
    first.extend((0..5_000).map(|i| units_record(&format!("a{i}"), &at, "1000000000")));
    let (status, answer) = post_events(&app, &key, Value::Array(first).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 5_001, "{answer}");
    assert_eq!(answer["rejected"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 0, "{answer}");
    assert_eq!(answer["rejected"][0]["code"], "invalid_units", "{answer}");
    assert!(
        answer["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("units:"),
        "{answer}"
    );
    let second: Vec<Value> = (0..4_300)
        .map(|i| units_record(&format!("b{i}"), &at, "1000000000"))
        .collect();
    let (status, answer) = post_events(&app, &key, Value::Array(second).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 4_300, "{answer}");

    let (calls, units, _, _) = usage_totals(&app).await;
    assert_eq!((calls, units.as_str()), (9_301, "9300000000001"));
    let (status, export) = app.get("/v1/usage/export").await;
    assert_eq!(status, StatusCode::OK, "{export}");
    let last = export["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["billable_units"], "9300000000001", "{export}");
    let (status, preview) = app
        .get("/v1/subscriptions/acme-weather/invoice-preview")
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["usage"]["billable_units"], "9300000000001");
    // 9,300,000,000,001 units, 5,000 free, started packages of 1,000 at 5.00: 9,299,999,996.
    let usage_line = preview["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["kind"] == "usage")
        .unwrap_or_else(|| panic!("a usage line: {preview}"));
    assert_eq!(usage_line["amount"], "46499999980.00", "{preview}");
}

async fn nul_characters_are_refused_where_they_are_parsed(app: TestApp) {
    let key = metered_setup(&app).await;
    let before = app.catalog_snapshot().await;
    let answer = app
        .post("/v1/apis", &json!({"slug": "maps", "name": "Ma\u{0}ps"}))
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("name"),
    );
    let answer = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "zed", "name": "Zed", "email": "z@zed.example",
                "extra": {"deep": ["ok", "n\u{0}"]}}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("extra.deep[1]"),
    );
    let answer = app.get("/v1/subscriptions/%00").await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("id"),
    );
    let answer = app
        .get("/v1/usage?subscription=acme%00&from=2000-01-01")
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("subscription"),
    );
    assert_eq!(app.catalog_snapshot().await, before);

    let bad_id = record("r\u{0}2", 200);
    let mut bad_path = record("r3", 200);
    bad_path["path"] = json!("/v1/\u{0}");
    let batch = json!([record("r1", 200), bad_id, bad_path, record("r4", 200)]);
    let (status, answer) = post_events(&app, &key, batch.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let rejected: Vec<(i64, &str, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap(),
                r["code"].as_str().unwrap(),
                r["message"].as_str().unwrap().split(':').next().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [(1, "invalid_record", "id"), (2, "invalid_record", "path")]
    );
    assert_eq!(usage_totals(&app).await.0, 2);
}

async fn every_refusal_of_the_http_layer_is_a_json_error(app: TestApp) {
    let key = metered_setup(&app).await;
    for empty in ["", " \n\n "] {
        let answer = post_events(&app, &key, empty.to_owned()).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "empty_body", None);
    }
    let answer = app.get("/v1/subscriptions?limit=1&limit=2").await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        Some("limit"),
    );
    let answer = app.get("/v1/apis/%FF%FE").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_path", None);
    let long = "x".repeat(20_000);
    let answer = app.get(&format!("/v1/apis?after={long}")).await;
    assert_error(&answer, StatusCode::URI_TOO_LONG, "uri_too_long", None);
    let answer = app
        .send(app.client.delete(app.url("/v1/apis")).bearer_auth("t"))
        .await;
    assert_error(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
    let answer = app.get("/v1/no-such-thing").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "no_route", None);
    let answer = app
        .post_raw(
            "/v1/apis",
            r#"{"slug": "maps", "slug": "roads", "name": "Maps"}"#,
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("slug"),
    );
}

async fn every_name_follows_one_rule(app: TestApp) {
    create_weather_api(&app).await;
    let before = app.catalog_snapshot().await;
    let mut tier = pro_tier("5.00");
    tier["name"] = json!("n".repeat(10_000));
    let answer = app.post("/v1/tiers", &tier).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("name"),
    );
    tier["name"] = json!("Pro\u{7}");
    let answer = app.post("/v1/tiers", &tier).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("name"),
    );
    let answer = app
        .post("/v1/apis", &json!({"slug": "maps", "name": "Maps\nAPI"}))
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("name"),
    );
    let answer = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "zed", "name": "   ", "email": "z@zed.example"}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("name"),
    );
    let answer = app
        .post("/v1/gateways", &json!({"name": "é".repeat(201)}))
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("name"),
    );
    assert_eq!(app.catalog_snapshot().await, before);
    // The limit counts characters, not bytes.
    let (status, body) = app
        .post("/v1/gateways", &json!({"name": "é".repeat(200)}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn a_cursor_a_list_did_not_give_is_refused(app: TestApp) {
    for list in [
        "/v1/apis",
        "/v1/tiers",
        "/v1/subscribers",
        "/v1/subscriptions",
        "/v1/gateways",
        "/v1/billing/runs",
        "/v1/usage/export",
    ] {
        let answer = app.get(&format!("{list}?after=garbage")).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("after"),
        );
    }
    let (status, body) = app.get("/v1/billing/runs?after=2026-11-30").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn a_client_that_stalls_is_cut_off(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| {
        settings.header_read_timeout = "300ms".to_owned().try_into().expect("duration");
        settings.body_read_timeout = "300ms".to_owned().try_into().expect("duration");
    })
    .await
    else {
        return;
    };
    let address = app.address.trim_start_matches("http://").to_owned();
    // Headers that never end: the connection is closed.
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tollbooth\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut answer)).await;
    assert!(
        ended.is_ok(),
        "a client that never finishes its headers is still connected"
    );
    // A body that stops arriving: a JSON 408, and nothing is created.
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/apis HTTP/1.1\r\nHost: tollbooth\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"slug\": ",
        crate::helpers::ADMIN_TOKEN
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut answer)).await;
    assert!(
        ended.is_ok(),
        "a client whose body stalls is still connected"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
    let (status, apis) = app.get("/v1/apis").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(apis["data"], json!([]));
}

async fn a_storm_of_one_paid_tier_makes_one_row_and_one_stripe_product_while_records_flow(
    backend: Backend,
) {
    let stripe = StripeMock::start().await;
    let slow = Some(Duration::from_millis(300));
    for (path, fixture, prefix) in [
        ("/v1/products", "product", "prod"),
        ("/v1/prices", "price", "price"),
    ] {
        stripe
            .object_answering_in("POST", path, fixture, prefix, slow)
            .expect(1)
            .with_priority(1)
            .mount(&stripe.server)
            .await;
    }
    stripe.mount_catalog().await;
    let Some(app) = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await else {
        return;
    };
    let key = metered_setup_without_tier(&app).await;
    let app = std::sync::Arc::new(app);
    // A gateway posts a record every 20 ms all through the storm.
    let gateway = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..40 {
                let batch = json!([record(&format!("storm-{i}"), 200)]).to_string();
                answers.push(post_events(&app, &key, batch).await.0);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    let storm: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.post("/v1/tiers", &pro_tier("5.00")).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in storm {
        let (status, body) = request.await.unwrap();
        assert!(
            [StatusCode::OK, StatusCode::CREATED, StatusCode::CONFLICT].contains(&status),
            "{status} {body}"
        );
        statuses.push(status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    // The free tier of the set-up and the one paid tier.
    assert_eq!(app.count_rows("tiers").await, 2);
    let answers = gateway.await.unwrap();
    assert!(
        answers.iter().all(|s| *s == StatusCode::ACCEPTED),
        "{answers:?}"
    );
    let (status, tier) = app.get("/v1/tiers/weather-pro").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tier["stripe"]["state"], "synced", "{tier}");
}

/// The weather api, a free tier and a subscription to it, and a gateway: records can flow
/// while the paid tier is being made.
async fn metered_setup_without_tier(app: &TestApp) -> String {
    create_weather_api(app).await;
    let free = json!({"slug": "weather-free", "api": "weather", "name": "Free", "currency": "usd",
        "usage": {"model": "per_unit", "unit_price": "0"}});
    for (path, body) in [
        ("/v1/tiers", free),
        (
            "/v1/subscribers",
            json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-free",
                "consumer_keys": ["k1"]}),
        ),
    ] {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
    }
    let (status, gateway) = app.post("/v1/gateways", &json!({"name": "kong"})).await;
    assert_eq!(status, StatusCode::CREATED);
    gateway["key"].as_str().unwrap().to_owned()
}

async fn a_webhook_stamped_at_the_end_of_time_is_a_clean_400(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |settings| {
        settings.stripe_webhook_secret = Some("whsec_test".to_owned().into());
    })
    .await
    else {
        return;
    };
    // Found by the webhook signature property target: the tolerance check overflowed.
    for stamp in [
        "t=-9223372036854775808,v1=00",
        "t=9223372036854775807,v1=00",
    ] {
        let answer = app
            .send(
                app.client
                    .post(app.url("/webhooks/stripe"))
                    .header("Stripe-Signature", stamp)
                    .body("{}"),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_signature", None);
    }
}

/// serde reads a struct from an array of its fields too; the document says an object, and so does
/// tollbooth: schemathesis found `"quota": [null, null]` taken as a quota (201).
async fn an_object_sent_as_an_array_is_refused_by_field(app: TestApp) {
    create_weather_api(&app).await;
    let mut tier = pro_tier("5.00");
    tier["quota"] = json!([null, null]);
    let answer = app.post("/v1/tiers", &tier).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("quota"),
    );
    let mut tier = pro_tier("5.00");
    tier["fixed_fee"] = json!(["25.00", "month", 1]);
    let answer = app.post("/v1/tiers", &tier).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("fixed_fee"),
    );
    let answer = app
        .post(
            "/v1/subscribers",
            &json!(["acme", "Acme", "billing@acme.example"]),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        None,
    );
    assert_eq!(app.count_rows("tiers").await, 0);
    assert_eq!(app.count_rows("subscribers").await, 0);
    // As objects, the same values are taken.
    let mut tier = pro_tier("5.00");
    tier["quota"] = json!({"hard_limit": null, "soft_limit": null});
    let (status, answer) = app.post("/v1/tiers", &tier).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}
