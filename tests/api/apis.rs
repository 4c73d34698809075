use crate::helpers::{TestApp, assert_error, on_both_databases};
use reqwest::StatusCode;
use serde_json::json;

on_both_databases!(
    an_api_is_created_read_and_listed,
    creating_the_same_api_twice_is_idempotent_and_a_different_one_conflicts,
    bad_api_input_is_refused_and_changes_nothing,
);

async fn an_api_is_created_read_and_listed(app: TestApp) {
    let (status, created) = app
        .post(
            "/v1/apis",
            &json!({"slug": "weather", "name": "Weather API",
                    "recording_policy": {"billable_status": ["2xx", "304"], "exclude_methods": ["options"],
                                         "units_header": "X-Usage-Units"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["id"].as_str().unwrap().starts_with("api_"));
    assert_eq!(
        created["recording_policy"]["billable_status"],
        json!(["2xx", "304"])
    );
    assert_eq!(
        created["recording_policy"]["exclude_methods"],
        json!(["OPTIONS"])
    );
    assert_eq!(created["recording_policy"]["units_header"], "x-usage-units");

    let (status, by_slug) = app.get("/v1/apis/weather").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_slug, created);
    let (_, by_id) = app
        .get(&format!("/v1/apis/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(by_id, created);
    let missing = app.get("/v1/apis/nope").await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found", None);

    for slug in ["maps", "news"] {
        let (status, _) = app
            .post("/v1/apis", &json!({"slug": slug, "name": slug}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, first) = app.get("/v1/apis?limit=2").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    let after = first["next_after"].as_str().unwrap();
    let (_, second) = app.get(&format!("/v1/apis?limit=2&after={after}")).await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["has_more"], false);
    let mut slugs: Vec<String> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .map(|api| api["slug"].as_str().unwrap().to_owned())
        .collect();
    slugs.sort();
    assert_eq!(slugs, ["maps", "news", "weather"]);
    // The default policy bills 2xx only.
    let (_, maps) = app.get("/v1/apis/maps").await;
    assert_eq!(maps["recording_policy"]["billable_status"], json!(["2xx"]));
}

async fn creating_the_same_api_twice_is_idempotent_and_a_different_one_conflicts(app: TestApp) {
    let api = json!({"slug": "weather", "name": "Weather API"});
    let (status, first) = app.post("/v1/apis", &api).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = app.post("/v1/apis", &api).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    let before = app.catalog_snapshot().await;
    let conflict = app
        .post("/v1/apis", &json!({"slug": "weather", "name": "Renamed"}))
        .await;
    assert_error(&conflict, StatusCode::CONFLICT, "conflict", None);
    assert_eq!(app.catalog_snapshot().await, before);
}

async fn bad_api_input_is_refused_and_changes_nothing(app: TestApp) {
    let before = app.catalog_snapshot().await;
    let cases = [
        (json!({"name": "No slug"}), "slug"),
        (json!({"slug": "has space", "name": "x"}), "slug"),
        (json!({"slug": "weather", "name": ""}), "name"),
        (
            json!({"slug": "weather", "name": "x", "recording_policy": {"billable_status": ["6xx"]}}),
            "recording_policy.billable_status[0]",
        ),
        (
            json!({"slug": "weather", "name": "x", "recording_policy": {"billable_status": ["299-200"]}}),
            "recording_policy.billable_status[0]",
        ),
        (
            json!({"slug": "weather", "name": "x", "recording_policy": {"path_prefixes": ["v1"]}}),
            "recording_policy.path_prefixes[0]",
        ),
        (
            json!({"slug": "weather", "name": "x", "colour": "blue"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let answer = app.post("/v1/apis", &body).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    let malformed = app.post_raw("/v1/apis", r#"{"slug": "weather", "#).await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "malformed_json", None);
    assert_eq!(malformed.1["error"]["details"]["line"], 1);
    let bad_limit = app.get("/v1/apis?limit=1000").await;
    assert_error(
        &bad_limit,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("limit"),
    );
    assert_eq!(app.catalog_snapshot().await, before);
}
