//! Archiving apis, tiers and subscribers through the admin API (`DELETE`): refused while a live
//! subscription depends on them, kept for their history, out of the lists (listed with
//! `?archived=true`), closed to new tiers and subscriptions, and restored by creating them again.

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, on_both_databases};
use crate::tiers::pro_tier;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_databases!(
    nothing_is_archived_while_a_live_subscription_depends_on_it,
    an_archived_row_takes_nothing_new_until_it_is_created_again,
);

async fn delete(app: &TestApp, path: &str) -> (StatusCode, Value) {
    app.send(app.client.delete(app.url(path)).bearer_auth(ADMIN_TOKEN))
        .await
}

/// `weather` (routed at `/weather/`), `weather-pro`, `acme`, and `acme-weather` on them.
async fn catalog(app: &TestApp) {
    let steps = [
        (
            "/v1/apis",
            json!({"slug": "weather", "name": "Weather API", "path_prefixes": ["/weather/"]}),
        ),
        ("/v1/tiers", pro_tier("5.00")),
        (
            "/v1/subscribers",
            json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro",
                "consumer_keys": ["k1"]}),
        ),
    ];
    for (path, body) in steps {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
    }
}

async fn listed(app: &TestApp, path: &str, key: &str, value: &str) -> bool {
    let (status, list) = app.get(path).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row[key] == value)
}

async fn nothing_is_archived_while_a_live_subscription_depends_on_it(app: TestApp) {
    catalog(&app).await;
    for (path, kind) in [
        ("/v1/apis/weather", "api"),
        ("/v1/tiers/weather-pro", "tier"),
        ("/v1/subscribers/acme", "subscriber"),
    ] {
        let answer = delete(&app, path).await;
        assert_error(&answer, StatusCode::CONFLICT, "in_use", None);
        let error = &answer.1["error"];
        assert_eq!(error["details"]["live_subscriptions"], 1, "{error}");
        assert_eq!(error["details"]["subscriptions"], json!(["acme-weather"]));
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with(kind) && message.contains("acme-weather"),
            "{message}"
        );
        // Nothing changed: still there, not archived.
        let (_, row) = app.get(path).await;
        assert!(row.get("archived_at").is_none(), "{row}");
    }
    assert!(listed(&app, "/v1/apis", "slug", "weather").await);
    let answer = delete(&app, "/v1/apis/nowhere").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", None);

    // Canceled, the subscription no longer holds them.
    let (status, answer) = app
        .post(
            "/v1/subscriptions/acme-weather/cancel",
            &json!({"at": "now"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    for path in [
        "/v1/tiers/weather-pro",
        "/v1/apis/weather",
        "/v1/subscribers/acme",
    ] {
        let (status, row) = delete(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {row}");
        assert!(row["archived_at"].is_string(), "{path}: {row}");
        // Again: the same, archived when it first was.
        let (status, again) = delete(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {again}");
        assert_eq!(again["archived_at"], row["archived_at"], "{path}");
    }
    // The history that names them still reads.
    let (status, subscription) = app.get("/v1/subscriptions/acme-weather").await;
    assert_eq!(status, StatusCode::OK, "{subscription}");
    assert_eq!(subscription["tier"], "weather-pro");
}

async fn an_archived_row_takes_nothing_new_until_it_is_created_again(app: TestApp) {
    catalog(&app).await;
    let (status, answer) = app
        .post(
            "/v1/subscriptions/acme-weather/cancel",
            &json!({"at": "now"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, _) = delete(&app, "/v1/tiers/weather-pro").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!listed(&app, "/v1/tiers", "slug", "weather-pro").await);
    assert!(listed(&app, "/v1/tiers?archived=true", "slug", "weather-pro").await);
    let answer = app.get("/v1/tiers?archived=maybe").await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("archived"),
    );
    let (status, shown) = app.get("/v1/tiers/weather-pro").await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(shown["archived_at"].is_string(), "{shown}");

    // No subscription on an archived tier; nothing stored by the refusal.
    let subscription = json!({"external_id": "acme-weather-2", "subscriber": "acme",
        "tier": "weather-pro", "consumer_keys": ["k2"]});
    let answer = app.post("/v1/subscriptions", &subscription).await;
    assert_error(&answer, StatusCode::CONFLICT, "archived", None);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tier `weather-pro` is archived"),
        "{}",
        answer.1
    );
    let (status, _) = app.get("/v1/subscriptions/acme-weather-2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An archived api takes no new tier, and gives its route up to another api.
    let (status, _) = delete(&app, "/v1/apis/weather").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!listed(&app, "/v1/apis", "slug", "weather").await);
    assert!(listed(&app, "/v1/apis?archived=true", "slug", "weather").await);
    let mut basic = pro_tier("1.00");
    basic["slug"] = json!("weather-basic");
    let answer = app.post("/v1/tiers", &basic).await;
    assert_error(&answer, StatusCode::CONFLICT, "archived", None);
    let forecast =
        json!({"slug": "forecast", "name": "Forecast API", "path_prefixes": ["/weather/"]});
    let (status, answer) = app.post("/v1/apis", &forecast).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    // An archived subscriber takes no new subscription either.
    let (status, _) = delete(&app, "/v1/subscribers/acme").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!listed(&app, "/v1/subscribers", "external_id", "acme").await);
    assert!(listed(&app, "/v1/subscribers?archived=true", "external_id", "acme").await);

    // Created again, each comes back: listed, not archived, and taking subscriptions. The api's
    // old route is `forecast`'s now, so it comes back without it.
    let weather = json!({"slug": "weather", "name": "Weather API", "path_prefixes": ["/weather/"]});
    let answer = app.post("/v1/apis", &weather).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", None);
    let weather =
        json!({"slug": "weather", "name": "Weather API", "path_prefixes": ["/weather-v2/"]});
    let restored = [
        ("/v1/apis", weather),
        ("/v1/tiers", pro_tier("5.00")),
        (
            "/v1/subscribers",
            json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        ),
    ];
    for (path, body) in restored {
        let (status, row) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {row}");
        let row = row.get("row").unwrap_or(&row);
        assert!(row.get("archived_at").is_none(), "{path}: {row}");
    }
    assert!(listed(&app, "/v1/tiers", "slug", "weather-pro").await);
    assert!(!listed(&app, "/v1/tiers?archived=true", "slug", "weather-pro").await);
    let (status, answer) = app.post("/v1/subscriptions", &subscription).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}
