//! Logs (tracing) and metrics (Prometheus text format).

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// What is logged when `RUST_LOG` is unset: tollbooth's own news at INFO, the libraries' only
/// when they warn (the scheduler's job bookkeeping and sqlx's statement notes are not news).
const DEFAULT_FILTER: &str = "info,tokio_cron_scheduler=warn,sqlx=warn";

/// Starts logging to stderr; `RUST_LOG` filters. Colours only when stderr is a terminal.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Every metric tollbooth writes, with its kind and its HELP line. Durations (`…_seconds`) are
/// histograms.
pub mod names {
    pub const HTTP_REQUESTS: &str = "tollbooth_http_requests_total";
    pub const HTTP_DURATION: &str = "tollbooth_http_request_duration_seconds";
    pub const GATEWAY_RECORDS: &str = "tollbooth_gateway_records_total";
    pub const GATEWAY_REJECTED: &str = "tollbooth_gateway_rejected_total";
    pub const INGEST_RECORDS: &str = "tollbooth_ingest_records_total";
    pub const INGEST_BATCHES: &str = "tollbooth_ingest_batches_total";
    pub const INGEST_COMMIT: &str = "tollbooth_ingest_commit_seconds";
    pub const INGEST_QUEUE: &str = "tollbooth_ingest_queue_records";
    pub const DECISIONS: &str = "tollbooth_decisions_total";
    pub const STRIPE_REQUESTS: &str = "tollbooth_stripe_requests_total";
    pub const STRIPE_DURATION: &str = "tollbooth_stripe_request_duration_seconds";
    pub const STRIPE_INTENTS: &str = "tollbooth_stripe_intents";
    pub const BILLING_RUNS: &str = "tollbooth_billing_runs_total";
    pub const BILLING_RUN_DURATION: &str = "tollbooth_billing_run_seconds";
    pub const BILLING_FAILURES: &str = "tollbooth_billing_failures_total";
    pub const WEBHOOK_EVENTS: &str = "tollbooth_webhook_events_total";
    pub const NOTIFICATIONS_PENDING: &str = "tollbooth_notifications_pending";
    pub const NOTIFICATIONS: &str = "tollbooth_notifications_total";
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    use names::*;
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by method, route and status"
    );
    describe_counter!(
        GATEWAY_RECORDS,
        "Call records a gateway sent, by gateway and outcome (accepted, duplicate, not_billable, rejected)"
    );
    describe_counter!(
        GATEWAY_REJECTED,
        "Call records refused, by gateway and the refusal's code"
    );
    describe_counter!(
        INGEST_RECORDS,
        "Call records the writers handed to the database, committed or not"
    );
    describe_counter!(
        INGEST_BATCHES,
        "Writer transactions, by outcome (committed, failed)"
    );
    describe_histogram!(
        INGEST_COMMIT,
        Unit::Seconds,
        "Time to commit one batch of call records"
    );
    describe_gauge!(
        INGEST_QUEUE,
        "Call records accepted by this replica and waiting for a writer"
    );
    describe_counter!(
        DECISIONS,
        "Access decisions, by outcome: allowed, or the refusal's reason"
    );
    describe_counter!(
        STRIPE_REQUESTS,
        "Stripe requests sent (every attempt), by method, endpoint and status (or timeout, unreachable)"
    );
    describe_histogram!(
        STRIPE_DURATION,
        Unit::Seconds,
        "Time of one Stripe attempt, by method and endpoint"
    );
    describe_gauge!(
        STRIPE_INTENTS,
        "Stripe writes owed, by state: pending (not sent yet) or failed (retried by the next sync)"
    );
    describe_counter!(
        BILLING_RUNS,
        "Daily billing days run by this replica, by outcome"
    );
    describe_histogram!(
        BILLING_RUN_DURATION,
        Unit::Seconds,
        "Time of one billing day's run"
    );
    describe_counter!(
        BILLING_FAILURES,
        "Subscriptions a billing run could not bill (retried by the next run)"
    );
    describe_counter!(
        WEBHOOK_EVENTS,
        "Stripe webhook events received, by type and outcome"
    );
    describe_gauge!(
        NOTIFICATIONS_PENDING,
        "Notifications to the provider queued and not delivered yet"
    );
    describe_counter!(
        NOTIFICATIONS,
        "Notification deliveries to the provider, by outcome (delivered, failed)"
    );
}

/// Upper bounds of the duration histograms' buckets, in seconds: 0.5 ms to 30 s.
const SECONDS_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS);
            // Only a bad bucket list fails, and this one is fixed: fall back to summaries.
            let recorder = builder
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then ours only renders.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

/// A Stripe request path as a metric label: ids (`cus_NffrFeUfNV2Hib`) become `{id}`.
pub fn stripe_endpoint(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let id = segment.split_once('_').is_some_and(|(_, rest)| {
                rest.chars()
                    .any(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            });
            if id { "{id}" } else { segment }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn stripe_ids_are_taken_out_of_endpoints() {
        assert_eq!(
            super::stripe_endpoint("/customers/cus_NffrFeUfNV2Hib"),
            "/customers/{id}"
        );
        assert_eq!(
            super::stripe_endpoint("/subscription_items"),
            "/subscription_items"
        );
        assert_eq!(
            super::stripe_endpoint("/invoices/in_1MtHbE/finalize"),
            "/invoices/{id}/finalize"
        );
        assert_eq!(
            super::stripe_endpoint("/billing_portal/sessions"),
            "/billing_portal/sessions"
        );
    }
}
