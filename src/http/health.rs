//! Liveness, readiness and Prometheus metrics.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Marks the requests that came in on `metrics_listen`, the operators' own address.
#[derive(Clone, Copy)]
pub struct MetricsAddress;

/// What `metrics_listen` serves: metrics, liveness and readiness, nothing of the API.
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .layer(axum::Extension(MetricsAddress))
        .with_state(state)
}

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

/// Prometheus metrics: `text/plain` with HELP and TYPE lines; durations are histograms. With
/// `metrics_listen` set they are served there only; with `metrics_token` set only to that bearer.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics",
    responses(
        (status = 200, description = "The Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "`unauthorized`: `metrics_token` is set and was not sent", body = super::error::ErrorBody),
        (status = 404, description = "`not_found`: metrics are served on `metrics_listen`", body = super::error::ErrorBody),
    ))]
async fn metrics(
    State(state): State<AppState>,
    own_address: Option<axum::Extension<MetricsAddress>>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, super::error::ApiError> {
    use super::error::ApiError;
    if let Some(address) = state.settings.metrics_listen
        && own_address.is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("metrics are served on {address} (metrics_listen), not here"),
        ));
    }
    if let Some(token) = &state.settings.metrics_token {
        use secrecy::ExposeSecret;
        use subtle::ConstantTimeEq;
        let sent = super::extract::bearer(&headers).unwrap_or_default();
        let matches: bool = sent
            .as_bytes()
            .ct_eq(token.expose_secret().as_bytes())
            .into();
        if !matches {
            return Err(ApiError::unauthorized(
                "send the metrics token as `Authorization: Bearer <token>`",
            ));
        }
    }
    refresh_gauges(&state).await;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response())
}

/// The gauges that are read when scraped rather than kept as things happen.
async fn refresh_gauges(state: &AppState) {
    use crate::telemetry::names;
    metrics::gauge!(names::INGEST_QUEUE).set(state.ingestor.waiting() as f64);
    let owed = match state.store.begin_read().await {
        Ok(mut tx) => tx.stripe_intents_owed().await,
        Err(error) => Err(error),
    };
    match owed {
        Ok((pending, failed)) => {
            let (pending, failed) = (pending as f64, failed as f64);
            metrics::gauge!(names::STRIPE_INTENTS, "state" => "pending").set(pending);
            metrics::gauge!(names::STRIPE_INTENTS, "state" => "failed").set(failed);
        }
        Err(error) => tracing::warn!(%error, "Stripe intents not counted for /metrics"),
    }
}
