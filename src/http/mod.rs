//! The HTTP layer: axum lives here and nowhere else. Each resource module owns its routes.

mod apis;
mod authorize;
mod billing;
mod console;
pub mod error;
mod events;
pub mod ext_authz;
pub mod extract;
mod gateways;
pub mod health;
mod mirror;
mod notifications;
pub mod openapi;
pub mod otlp_grpc;
mod patch;
mod portal;
mod revenue;
pub mod serve;
mod strict;
mod subscribers;
mod subscriptions;
mod tiers;
mod usage;
mod usage_events;
mod webhooks;

use crate::auth::AdminToken;
use crate::config::Settings;
use crate::metering::directory::Directory;
use crate::metering::writer::Ingestor;
use crate::store::{Page, Store};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub admin_token: AdminToken,
    pub metrics: PrometheusHandle,
    pub settings: Arc<Settings>,
    /// The in-memory copy of consumer keys, apis and gateways that the hot paths read.
    pub directory: Directory,
    pub ingestor: Ingestor,
    /// What each gateway's sender was told, for `GET /v1/gateways/{id}`.
    pub ingest_stats: crate::metering::stats::IngestStats,
    /// Stripe, or ledger mode.
    pub stripe: crate::stripe::Stripe,
    /// Payment state and quotas, for the access decision.
    pub access: crate::access::AccessBook,
    /// Notifications to the provider.
    pub notifier: crate::notify::Notifier,
    /// The webhook signing secrets; `None` refuses webhooks.
    pub webhook_secrets: Option<crate::stripe::webhook::WebhookSecrets>,
}

impl AppState {
    /// The billing job as a request of this replica runs it (a webhook's fast path, a cancel).
    pub fn billing_job<'a>(&'a self, owner: &'a str) -> crate::billing::BillingJob<'a> {
        crate::billing::BillingJob {
            store: &self.store,
            stripe: &self.stripe,
            owner,
            retention: self.settings.retention.0,
            lease: crate::billing::schedule::LEASE,
        }
    }
}

/// Every route of tollbooth with its documentation: the two are made by the same `routes!`, so
/// a route cannot be served without being in the document. (`events_max_bytes` bounds the body of
/// `POST /v1/events`.)
pub fn routes(events_max_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(openapi::document))
        .merge(events::router(events_max_bytes))
        .merge(usage_events::router(events_max_bytes))
        .merge(usage::router())
        .merge(health::router())
        .merge(apis::router())
        .merge(tiers::router())
        .merge(subscribers::router())
        .merge(subscriptions::router())
        .merge(gateways::router())
        .merge(notifications::router())
        .merge(authorize::router())
        .merge(billing::router())
        .merge(revenue::router())
        .merge(portal::router())
        .merge(webhooks::router())
}

/// The OpenAPI document of [`routes`], complete.
pub fn openapi_document(events_max_bytes: usize) -> serde_json::Value {
    openapi::finish(routes(events_max_bytes).into_openapi())
}

/// The whole HTTP surface of tollbooth.
pub fn router(state: AppState) -> Router {
    let (routes, document) = routes(state.settings.events_max_bytes).split_for_parts();
    let document = openapi::finish(document);
    // The document is made from static annotations, so rendering it cannot fail.
    let rendered = serde_json::to_vec(&document).unwrap_or_default();
    routes
        .merge(console::router())
        .layer(Extension(openapi::Document(rendered.into())))
        .fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "no_route",
                "no such endpoint",
            )
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this endpoint does not answer {method}"),
            )
        })
        .layer(axum::middleware::from_fn(refuse_long_uris))
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The span of a request: its method and path, never its query or headers, which carry keys
/// (a gateway's `tollbooth_key`, a caller's key the gateway forwards).
fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

/// The longest request target (path and query) answered: past it, a JSON 414. (Past 64 KiB the
/// HTTP parser itself answers 414, with no body, before any of tollbooth's code runs.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

async fn refuse_long_uris(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if length > MAX_URI_BYTES {
        return error::ApiError::new(
            axum::http::StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {length} bytes; at most {MAX_URI_BYTES} are read"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Counts requests and their latency per route and status, for `/metrics`.
async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!(crate::telemetry::names::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(crate::telemetry::names::HTTP_DURATION, &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A page of a list as answered: the items, whether more follow, and the cursor to ask for them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ListBody<T> {
    data: Vec<T>,
    has_more: bool,
    /// The `after` of the next page; `null` on the last.
    next_after: Option<String>,
}

impl<T> ListBody<T> {
    fn from_page<S>(page: Page<S>, id: impl Fn(&S) -> &str, view: impl Fn(S) -> T) -> Self {
        let next_after = page
            .has_more
            .then(|| page.items.last().map(|item| id(item).to_owned()))
            .flatten();
        Self {
            data: page.items.into_iter().map(view).collect(),
            has_more: page.has_more,
            next_after,
        }
    }
}

/// Writes the catalog event of a change (`api.created`, …) in `tx`, with the object as the admin
/// API shows it (without its Stripe mirror's state); in blocking mode it is sent first, and a
/// refusal is the answer. Catalog events are of no subscription (all in one order) except a
/// subscription's own.
async fn catalog_event(
    state: &AppState,
    tx: &mut crate::store::Tx,
    verb: crate::catalog::Verb,
    changed: crate::catalog::Changed,
) -> Result<(), error::ApiError> {
    let events = crate::catalog::CatalogEvents {
        notifier: &state.notifier,
        render: &catalog_view,
    };
    events.write(tx, verb, changed).await?;
    Ok(())
}

/// A changed catalog object as the admin API shows it (without its Stripe mirror's state): the
/// `data` of its catalog event, for `tollbooth catalog apply`.
pub fn catalog_view(
    changed: crate::catalog::Changed,
) -> Result<serde_json::Value, crate::store::StoreError> {
    use crate::catalog::Changed;
    let view = match changed {
        Changed::Api(api) => serde_json::to_value(apis::ApiView::from(api)),
        Changed::Tier(tier) => serde_json::to_value(tiers::TierView::from(tier)),
        Changed::Subscriber(subscriber) => {
            serde_json::to_value(subscribers::SubscriberView::from(subscriber))
        }
        Changed::Subscription(subscription) => {
            serde_json::to_value(subscriptions::SubscriptionView::from(subscription))
        }
    };
    view.map_err(|e| crate::store::StoreError::Corrupt(format!("a catalog event: {e}")))
}

/// Stored Unix milliseconds as RFC 3339 in UTC.
fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The status of a put: 201 when something was written, 200 when it was already so.
fn put_status(outcome: crate::catalog::Outcome) -> axum::http::StatusCode {
    match outcome {
        crate::catalog::Outcome::Unchanged => axum::http::StatusCode::OK,
        _ => axum::http::StatusCode::CREATED,
    }
}
