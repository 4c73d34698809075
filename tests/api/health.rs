use crate::helpers::{TestApp, on_both_databases};
use reqwest::StatusCode;

on_both_databases!(
    liveness_and_readiness_answer,
    a_missing_migration_makes_the_service_not_ready,
    metrics_count_requests
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
