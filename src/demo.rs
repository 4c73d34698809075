//! `tollbooth demo`: from "it serves" to "it bills" in a minute. On a fresh SQLite file it applies
//! the example catalog, posts a day's worth of calls through the real ingestion path (HTTP, a
//! gateway key, the writer), runs the daily billing job in ledger mode, and prints the invoice
//! preview and where to look next.

use crate::catalog::{CatalogFile, apply_file};
use crate::config::Settings;
use crate::startup::Application;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;

/// The catalog the demo applies: the one README and `examples/` document.
const CATALOG: &str = include_str!("../examples/catalog.yaml");
/// Calls posted: a day of a small customer, past its free 5,000.
const CALLS: usize = 8_000;
/// Every how many-th call fails (a 503 of the upstream, not billed).
const FAILED_EVERY: usize = 40;
const SUBSCRIPTION: &str = "acme-weather";
const CONSUMER: &str = "acme-app-1";

/// Runs the demo on a SQLite file that must not exist yet; answers what to print.
pub async fn run(database: &Path) -> anyhow::Result<String> {
    if database.exists() {
        bail!(
            "{} exists already: the demo starts from a fresh file (remove it, or give --database another path)",
            database.display()
        );
    }
    let url = format!("sqlite://{}", database.display());
    let mut settings = Settings::with_database(&url)?;
    settings.listen = "127.0.0.1:0".parse()?;
    settings.billing_enabled = false;
    settings.stripe_secret_key = None;
    settings.admin_token = None;
    let app = Application::build(&settings).await?;
    let token = app
        .new_admin_token
        .clone()
        .context("a fresh database made no admin token")?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    let outcome = drive(&settings, &store, &base, &token).await;
    let _ = stop.send(());
    server.await.context("the demo's server")??;
    let (applied, billed, preview) = outcome?;

    let mut out = String::new();
    writeln!(out, "tollbooth demo on {}", database.display())?;
    writeln!(
        out,
        "\n1. catalog applied (examples/catalog.yaml):\n{applied}"
    )?;
    writeln!(
        out,
        "2. {CALLS} calls of `{CONSUMER}` posted as NDJSON to POST /v1/events with a gateway key: {billed}"
    )?;
    writeln!(
        out,
        "3. the daily billing job ran in ledger mode (no Stripe key: what Stripe would be sent is kept in the database)"
    )?;
    writeln!(out, "\n4. invoice preview of `{SUBSCRIPTION}` so far:")?;
    write_preview(&mut out, &preview)?;
    writeln!(
        out,
        "\nLook further: serve the same file and ask it, with the admin token\n  \
         TOLLBOOTH_DATABASE_URL={url} tollbooth serve\n  \
         admin token (shown once, keep it safe): {token}\n  \
         curl -H 'Authorization: Bearer {token}' 'http://127.0.0.1:8080/v1/usage?subscription={SUBSCRIPTION}&granularity=hour'\n  \
         curl -H 'Authorization: Bearer {token}' http://127.0.0.1:8080/v1/subscriptions/{SUBSCRIPTION}/invoice-preview\n  \
         curl -H 'Authorization: Bearer {token}' http://127.0.0.1:8080/v1/billing/runs"
    )?;
    Ok(out)
}

/// Applies the catalog, posts the calls, runs the billing job; answers what each step said.
async fn drive(
    settings: &Settings,
    store: &crate::store::Store,
    base: &str,
    token: &str,
) -> anyhow::Result<(String, String, Value)> {
    let catalog = CatalogFile::parse(CATALOG).context("the example catalog")?;
    let applied = apply_file(store, &catalog).await?.to_string();
    let http = reqwest::Client::new();
    let gateway: Value = http
        .post(format!("{base}/v1/gateways"))
        .bearer_auth(token)
        .json(&json!({"name": "demo gateway"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = gateway["key"].as_str().context("no gateway key answered")?;

    let (mut accepted, mut not_billable) = (0, 0);
    for batch in 0..CALLS.div_ceil(1_000) {
        let mut body = String::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for call in batch * 1_000..((batch + 1) * 1_000).min(CALLS) {
            let status = if call % FAILED_EVERY == 0 { 503 } else { 200 };
            let record = json!({"id": uuid::Uuid::now_v7().to_string(), "consumer": CONSUMER,
                "api": "weather", "timestamp": now, "status": status, "method": "GET",
                "path": "/weather/forecast", "latency_ms": 20 + call % 30});
            writeln!(body, "{record}")?;
        }
        let answer: Value = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if answer["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
            bail!("the demo's records were refused: {answer}");
        }
        accepted += answer["accepted"].as_u64().unwrap_or(0);
        not_billable += answer["not_billable"].as_u64().unwrap_or(0);
    }
    let billed = format!("{accepted} stored, {not_billable} of them not billable (failed calls)");

    let stripe = crate::stripe::Stripe::from_settings(settings)?;
    let owner = crate::domain::ids::new_id("demo");
    let job = crate::billing::BillingJob {
        store,
        stripe: &stripe,
        owner: &owner,
        retention: settings.retention.0,
        lease: crate::billing::schedule::LEASE,
    };
    let reports = job.run_due(chrono::Utc::now().date_naive()).await?;
    if reports.iter().any(|report| !report.failures.is_empty()) {
        bail!(
            "the demo's billing run failed: {}",
            serde_json::to_string(&reports)?
        );
    }
    let preview: Value = http
        .get(format!(
            "{base}/v1/subscriptions/{SUBSCRIPTION}/invoice-preview"
        ))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok((applied, billed, preview))
}

/// The preview's lines and total, as a person reads an invoice.
fn write_preview(out: &mut String, preview: &Value) -> std::fmt::Result {
    let currency = preview["currency"].as_str().unwrap_or("").to_uppercase();
    for line in preview["lines"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {:<60} {:>10} {currency}",
            line["description"].as_str().unwrap_or(""),
            line["amount"].as_str().unwrap_or("")
        )?;
    }
    writeln!(
        out,
        "  {:<60} {:>10} {currency}",
        "total",
        preview["total"].as_str().unwrap_or("")
    )
}
