use crate::helpers::{TestApp, assert_error, on_both_databases};
use reqwest::StatusCode;
use serde_json::json;

on_both_databases!(admin_endpoints_refuse_a_missing_or_wrong_token);

async fn admin_endpoints_refuse_a_missing_or_wrong_token(app: TestApp) {
    let body = json!({"slug": "weather", "name": "Weather API"});
    let before = app.catalog_snapshot().await;

    let missing = app
        .send(app.client.post(app.url("/v1/apis")).json(&body))
        .await;
    assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let wrong = app
        .send(
            app.client
                .post(app.url("/v1/apis"))
                .bearer_auth("tba_wrong")
                .json(&body),
        )
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let basic = app
        .send(
            app.client
                .get(app.url("/v1/apis"))
                .basic_auth("admin", Some("x")),
        )
        .await;
    assert_error(&basic, StatusCode::UNAUTHORIZED, "unauthorized", None);

    assert_eq!(app.catalog_snapshot().await, before);
}
