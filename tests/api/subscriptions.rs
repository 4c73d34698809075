use crate::helpers::{TestApp, assert_error, on_both_databases};
use crate::tiers::{create_weather_api, pro_tier};
use reqwest::StatusCode;
use serde_json::json;

on_both_databases!(
    a_subscription_keeps_its_tier_version_and_its_consumer_keys,
    bad_subscriber_and_subscription_input_is_refused_and_changes_nothing,
    gateways_are_created_with_a_key_shown_once,
    every_list_pages_without_gaps_or_repeats,
    a_subscription_posted_again_with_another_tier_is_a_conflict,
);

async fn setup(app: &TestApp) {
    create_weather_api(app).await;
    let (status, _) = app.post("/v1/tiers", &pro_tier("5.00")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "acme", "name": "Acme Corp", "email": "billing@acme.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn a_subscription_keeps_its_tier_version_and_its_consumer_keys(app: TestApp) {
    setup(&app).await;
    let subscription = json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro",
                              "consumer_keys": ["acme-app-1", "acme-app-2"]});
    let (status, created) = app.post("/v1/subscriptions", &subscription).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["tier_version"], 1);
    assert_eq!(created["status"], "active");
    // Shown by their first characters only: keys are callers' credentials.
    assert_eq!(created["consumer_keys"], json!(["acm…", "acm…"]));
    assert!(!created.to_string().contains("acme-app"), "{created}");
    let (status, again) = app.post("/v1/subscriptions", &subscription).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], created["id"]);

    // A new tier version leaves the existing subscription on its own.
    let (status, _) = app.post("/v1/tiers", &pro_tier("4.00")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, read) = app.get("/v1/subscriptions/acme-weather").await;
    assert_eq!(read["tier_version"], 1);
    assert_eq!(read["subscriber"], "acme");
    assert_eq!(read["tier"], "weather-pro");
    let (_, by_id) = app
        .get(&format!(
            "/v1/subscriptions/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(by_id["external_id"], "acme-weather");

    // A new subscription gets the newest version.
    let (status, second) = app
        .post("/v1/subscriptions", &json!({"external_id": "acme-2", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["acme-app-3"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["tier_version"], 2);
}

async fn bad_subscriber_and_subscription_input_is_refused_and_changes_nothing(app: TestApp) {
    setup(&app).await;
    let (status, _) = app
        .post("/v1/subscriptions", &json!({"external_id": "first", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["k1"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = app.catalog_snapshot().await;

    let bad_email = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "x", "name": "X", "email": "not-an-email"}),
        )
        .await;
    assert_error(
        &bad_email,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("email"),
    );
    let changed = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "acme", "name": "Other", "email": "a@b.example"}),
        )
        .await;
    assert_error(&changed, StatusCode::CONFLICT, "conflict", None);

    let cases = [
        (
            json!({"external_id": "s", "subscriber": "nobody", "tier": "weather-pro"}),
            "subscriber",
        ),
        (
            json!({"external_id": "s", "subscriber": "acme", "tier": "nothing"}),
            "tier",
        ),
        (
            json!({"external_id": "s", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["a", "a"]}),
            "consumer_keys[1]",
        ),
        (
            json!({"external_id": "s", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": [""]}),
            "consumer_keys[0]",
        ),
    ];
    for (body, field) in cases {
        let answer = app.post("/v1/subscriptions", &body).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    // A consumer key belongs to at most one live subscription.
    let taken = app
        .post("/v1/subscriptions", &json!({"external_id": "second", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["k2", "k1"]}))
        .await;
    assert_error(&taken, StatusCode::CONFLICT, "conflict", None);
    assert!(
        taken.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`k1`"),
        "{}",
        taken.1
    );
    assert_eq!(app.catalog_snapshot().await, before);
}

async fn gateways_are_created_with_a_key_shown_once(app: TestApp) {
    let (status, created) = app.post("/v1/gateways", &json!({"name": "kong-eu"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("tbg_") && key.len() > 40, "{key}");
    let (_, list) = app.get("/v1/gateways").await;
    assert_eq!(list["data"][0]["name"], "kong-eu");
    assert!(list["data"][0].get("key").is_none(), "{list}");
    let id = created["id"].as_str().unwrap();
    let (status, read) = app.get(&format!("/v1/gateways/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(
        (&read["id"], &read["name"]),
        (&created["id"], &created["name"])
    );
    assert!(read.get("key").is_none(), "{read}");
    let missing = app.get("/v1/gateways/gw_missing").await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found", None);

    let before = app.catalog_snapshot().await;
    let blank = app.post("/v1/gateways", &json!({"name": " "})).await;
    assert_error(
        &blank,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("name"),
    );
    assert_eq!(app.catalog_snapshot().await, before);
}

async fn every_list_pages_without_gaps_or_repeats(app: TestApp) {
    setup(&app).await;
    for i in 0..4 {
        let mut tier = pro_tier("5.00");
        tier["slug"] = json!(format!("weather-t{i}"));
        for (path, body) in [
            ("/v1/tiers", tier),
            (
                "/v1/subscribers",
                json!({"external_id": format!("s{i}"), "name": "S", "email": "s@example.com"}),
            ),
            (
                "/v1/subscriptions",
                json!({"external_id": format!("sub{i}"), "subscriber": format!("s{i}"), "tier": "weather-pro", "consumer_keys": [format!("key{i}")]}),
            ),
            ("/v1/gateways", json!({"name": format!("gw{i}")})),
        ] {
            let (status, answer) = app.post(path, &body).await;
            assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
        }
    }
    for (kind, count) in [
        ("tiers", 5),
        ("subscribers", 5),
        ("subscriptions", 4),
        ("gateways", 4),
    ] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &after {
                None => format!("/v1/{kind}?limit=2"),
                Some(after) => format!("/v1/{kind}?limit=2&after={after}"),
            };
            let (status, page) = app.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= 2, "{page}");
            seen.extend(
                data.iter()
                    .map(|item| item["id"].as_str().unwrap().to_owned()),
            );
            pages += 1;
            if page["has_more"] == false {
                assert!(page["next_after"].is_null(), "{page}");
                break;
            }
            after = Some(page["next_after"].as_str().unwrap().to_owned());
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{kind}: a repeat in {seen:?}");
        assert_eq!(seen.len(), count, "{kind}: {seen:?}");
        assert_eq!(pages, count.div_ceil(2), "{kind}");
        let bad = app.get(&format!("/v1/{kind}?limit=0")).await;
        assert_error(
            &bad,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("limit"),
        );
    }
}

async fn a_subscription_posted_again_with_another_tier_is_a_conflict(app: TestApp) {
    setup(&app).await;
    let mut other = pro_tier("5.00");
    other["slug"] = json!("weather-other");
    let (status, _) = app.post("/v1/tiers", &other).await;
    assert_eq!(status, StatusCode::CREATED);
    let subscription = json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["k1"]});
    let (status, _) = app.post("/v1/subscriptions", &subscription).await;
    assert_eq!(status, StatusCode::CREATED);
    let before = app.catalog_snapshot().await;
    let mut changed = subscription.clone();
    changed["tier"] = json!("weather-other");
    let answer = app.post("/v1/subscriptions", &changed).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", None);
    let mut other_keys = subscription;
    other_keys["consumer_keys"] = json!(["k2"]);
    let answer = app.post("/v1/subscriptions", &other_keys).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", None);
    assert_eq!(app.catalog_snapshot().await, before);
}
