//! Liveness, readiness and Prometheus metrics.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The process answers.
#[derive(Serialize, utoipa::ToSchema)]
struct Alive {
    /// `ok`.
    status: String,
}

/// Whether this replica can serve.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready` or `not_ready`.
    status: String,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", operation_id = "healthz",
    responses((status = 200, description = "Alive", body = Alive)))]
async fn healthz() -> impl IntoResponse {
    Json(Alive {
        status: "ok".to_owned(),
    })
}

/// Ready when the database answers and every migration of this build is applied.
#[utoipa::path(get, path = "/readyz", tag = "ops", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: the database does not answer, or migrations are not applied", body = Readiness),
    ))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let not_ready = |reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "not_ready".to_owned(),
                reason: Some(reason.to_owned()),
            }),
        )
    };
    match state.store.is_ready().await {
        Ok(true) => (
            StatusCode::OK,
            Json(Readiness {
                status: "ready".to_owned(),
                reason: None,
            }),
        ),
        Ok(false) => not_ready("migrations are not applied"),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            not_ready("the database does not answer")
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics",
    responses((status = 200, description = "The Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
