use crate::helpers::{TestApp, on_both_databases};
use reqwest::StatusCode;

on_both_databases!(
    liveness_and_readiness_answer,
    a_missing_migration_makes_the_service_not_ready,
    metrics_count_requests
);
crate::helpers::on_both_backends!(
    metrics_of_the_business_are_served_on_their_own_address_behind_a_token
);

async fn liveness_and_readiness_answer(app: TestApp) {
    let (status, body) = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (status, body) = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
}

async fn a_missing_migration_makes_the_service_not_ready(app: TestApp) {
    app.execute_sql(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .await;
    let (status, body) = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _) = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "liveness does not depend on the migrations"
    );
}

async fn metrics_count_requests(app: TestApp) {
    app.get("/v1/apis").await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.lines()
            .any(|line| line.starts_with("tollbooth_http_requests_total")
                && line.contains("route=\"/v1/apis\"")),
        "{text}"
    );
}

/// `/metrics` on the operators' own address, behind a token, with HELP lines and histograms for
/// what the business runs on: decisions, ingestion, Stripe writes owed.
async fn metrics_of_the_business_are_served_on_their_own_address_behind_a_token(
    backend: crate::helpers::Backend,
) {
    let Some(app) = crate::helpers::spawn_app_with(backend, |settings| {
        settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.metrics_token = Some("metrics-secret".to_owned().into());
    })
    .await
    else {
        return;
    };
    let (status, gateway) = app
        .post("/v1/gateways", &serde_json::json!({"name": "edge"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gateway}");
    // A decision with no caller key: refused as missing_consumer, and counted so.
    let response = app
        .client
        .get(app.url("/v1/authorize"))
        .header("x-tollbooth-key", gateway["key"].as_str().unwrap())
        .header("x-tollbooth-api", "weather")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let (status, body) = app.send(app.client.get(app.url("/metrics"))).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "not on the API's address: {body}"
    );
    let own = app.metrics_address.clone().unwrap();
    let (status, _) = app.send(app.client.get(format!("{own}/metrics"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.send(app.client.get(format!("{own}/readyz"))).await;
    assert_eq!(status, StatusCode::OK);
    let response = app
        .client
        .get(format!("{own}/metrics"))
        .bearer_auth("metrics-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for wanted in [
        "# HELP tollbooth_decisions_total ",
        "# TYPE tollbooth_decisions_total counter",
        "tollbooth_decisions_total{outcome=\"missing_consumer\"}",
        "# TYPE tollbooth_http_request_duration_seconds histogram",
        "tollbooth_http_request_duration_seconds_bucket{",
        "# HELP tollbooth_stripe_intents ",
        "tollbooth_stripe_intents{state=\"pending\"} 0",
        "tollbooth_stripe_intents{state=\"failed\"} 0",
        "# HELP tollbooth_ingest_queue_records ",
    ] {
        assert!(text.contains(wanted), "{wanted} is not in:\n{text}");
    }
}
