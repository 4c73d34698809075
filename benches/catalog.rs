//! Subscriptions created through the admin API as the catalog grows (issue "Hardening", defect
//! 13), against a real `tollbooth serve` process in ledger mode (no Stripe).
//!
//! For each database (SQLite in a temporary file; PostgreSQL when `--postgres URL` or
//! `TOLLBOOTH_BENCH_POSTGRES_URL` names a server), on a fresh database: an api, a tier with a hard
//! quota (so that the access book counts each subscription's usage), then subscribers and their
//! subscriptions, four clients at a time. Measured, in the same run:
//!
//! - baseline: `GET /healthz` with the same four clients, the HTTP round trip alone;
//! - `POST /v1/subscriptions` a second while 1,000 exist, and again while 10,000 exist (each over
//!   the next `--window` creates, default 500). Goal: at 10,000, at least 500/s on SQLite and
//!   300/s on PostgreSQL, and about what it was at 1,000.
//!
//! Then the storm of the same defect's neighbour (defect 2): with a mock Stripe that answers each
//! Product and Price after 300 ms, 50 identical `POST /v1/tiers` of a paid tier at once, while a
//! gateway posts one record every 20 ms; the gateway's latency (p50, p99, max) quiet and during the
//! storm, and the tier answers by status (one 201, the rest 200 or 409, no 5xx is the goal).
//!
//! Run with `cargo bench --bench catalog` (build `target/release/tollbooth` first with
//! `cargo build --release`), adding `-- --postgres postgres://postgres@127.0.0.1:5432/postgres`
//! to measure PostgreSQL too; `-- --only sqlite|postgres` measures one database.
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Result, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use support::{ADMIN_TOKEN, DatabaseFlags, FreshDatabase, Server, admin_post, server_binary};

const CLIENTS: usize = 4;
const API: &str = "weather";

struct Options {
    databases: DatabaseFlags,
    window: usize,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        databases: DatabaseFlags::from_env(),
        window: 500,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if options.databases.take(&arg, &mut args)? {
            continue;
        }
        match arg.as_str() {
            "--window" => {
                options.window = args.next().unwrap_or_default().parse()?;
            }
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

fn main() -> Result<()> {
    let options = parse_args()?;
    let binary = server_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(options, binary))
}

async fn run(options: Options, binary: PathBuf) -> Result<()> {
    println!(
        "tollbooth catalog benchmark: subscriptions created per second at 1,000 and 10,000 \
         existing ({} creates each, {CLIENTS} clients, ledger mode)",
        options.window
    );
    println!("server: {}", binary.display());
    let mut rows = Vec::new();
    for database in options.databases.databases() {
        println!("\n== {} ==", database.label());
        let dir = tempfile::tempdir()?;
        let fresh = FreshDatabase::create(
            database,
            options.databases.postgres.as_deref(),
            dir.path(),
            "tollbooth",
        )
        .await?;
        let result = measure(&binary, &fresh.url, dir.path(), options.window).await;
        if let Err(error) = fresh.drop_database().await {
            eprintln!("could not drop a benchmark database: {error:#}");
        }
        rows.push((database, result?));
    }
    for (database, _) in &rows {
        println!("\n== {}: paid-tier storm ==", database.label());
        let dir = tempfile::tempdir()?;
        let fresh = FreshDatabase::create(
            *database,
            options.databases.postgres.as_deref(),
            dir.path(),
            "tollbooth",
        )
        .await?;
        let result = storm(&binary, &fresh.url, dir.path()).await;
        if let Err(error) = fresh.drop_database().await {
            eprintln!("could not drop a benchmark database: {error:#}");
        }
        result?;
    }
    println!(
        "\n| database | baseline GET /healthz /s | created/s at 1,000 | created/s at 10,000 |"
    );
    println!("|---|---|---|---|");
    for (database, (baseline, at_1k, at_10k)) in rows {
        println!(
            "| {} | {baseline:.0} | {at_1k:.0} | {at_10k:.0} |",
            database.label()
        );
    }
    Ok(())
}

/// Answers (baseline requests/s, creates/s at 1,000, creates/s at 10,000).
async fn measure(binary: &Path, url: &str, dir: &Path, window: usize) -> Result<(f64, f64, f64)> {
    let server = Server::start(binary, url, dir)?;
    let client = reqwest::Client::new();
    server.wait_ready(&client).await?;
    let base = server.base.clone();
    admin_post(
        &client,
        &base,
        "/v1/apis",
        json!({"slug": API, "name": "Weather API"}),
    )
    .await?;
    admin_post(
        &client,
        &base,
        "/v1/tiers",
        json!({
            "slug": "weather-pro", "api": API, "name": "Pro", "currency": "usd",
            "fixed_fee": {"amount": "25.00", "interval": "month", "interval_count": 1},
            "usage": {"model": "per_unit", "unit_price": "0.001"},
            "quota": {"hard_limit": 1_000_000}
        }),
    )
    .await?;
    let baseline = healthz_rate(&client, &base, 2_000).await?;
    println!("  baseline: {baseline:.0} GET /healthz a second");

    let mut existing = 0;
    let mut rates = Vec::new();
    for target in [1_000, 10_000] {
        let started = Instant::now();
        create(&client, &base, SUBSCRIBERS, existing, target + window).await?;
        create(&client, &base, SUBSCRIPTIONS, existing, target).await?;
        println!(
            "  {} subscriptions made up to {target} ({:.1} s)",
            target - existing,
            started.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        create(&client, &base, SUBSCRIPTIONS, target, target + window).await?;
        let rate = window as f64 / started.elapsed().as_secs_f64();
        println!("  at {target} existing: {rate:.0} subscriptions created a second");
        rates.push(rate);
        existing = target + window;
    }
    server.stop()?;
    Ok((baseline, rates[0], rates[1]))
}

const SUBSCRIBERS: &str = "/v1/subscribers";
const SUBSCRIPTIONS: &str = "/v1/subscriptions";

/// Creates the subscribers or the subscriptions numbered `from..to`.
async fn create(
    client: &reqwest::Client,
    base: &str,
    path: &'static str,
    from: usize,
    to: usize,
) -> Result<()> {
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CLIENTS {
        let (client, base) = (client.clone(), base.to_owned());
        workers.spawn(async move {
                for i in (from + worker..to).step_by(CLIENTS) {
                    let body = if path == SUBSCRIBERS {
                        json!({"external_id": format!("bench-{i:05}"), "name": format!("Subscriber {i}"),
                            "email": format!("billing+{i}@bench.example")})
                    } else {
                        json!({"external_id": format!("bench-{i:05}-{API}"), "subscriber": format!("bench-{i:05}"),
                            "tier": "weather-pro", "consumer_keys": [format!("bench-consumer-{i:05}")]})
                    };
                    admin_post(&client, &base, path, body).await?;
                }
                anyhow::Ok(())
            });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

async fn healthz_rate(client: &reqwest::Client, base: &str, requests: usize) -> Result<f64> {
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, base) = (client.clone(), base.to_owned());
        workers.spawn(async move {
            for _ in 0..requests / CLIENTS {
                client
                    .get(format!("{base}/healthz"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await?
                    .error_for_status()?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

/// The paid-tier storm beside a gateway's steady records.
async fn storm(binary: &Path, url: &str, dir: &Path) -> Result<()> {
    let stripe = wiremock::MockServer::start().await;
    // The subscriber of the set-up is a Customer; the storm's tier a Product and a Price.
    for (path, fixture) in [
        ("/v1/customers", "customer"),
        ("/v1/products", "product"),
        ("/v1/prices", "price"),
    ] {
        let file = format!(
            "{}/wiremock-fixtures/{fixture}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let object: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path(path))
            .respond_with(
                wiremock::ResponseTemplate::new(200)
                    .set_body_json(object)
                    .set_delay(std::time::Duration::from_millis(300)),
            )
            .mount(&stripe)
            .await;
    }
    let server = Server::start_with(
        binary,
        url,
        dir,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_bench"),
            ("STRIPE_API_BASE", &stripe.uri()),
            ("TOLLBOOTH_STRIPE_RATE_LIMIT", "1000"),
        ],
    )?;
    let client = reqwest::Client::new();
    server.wait_ready(&client).await?;
    let base = server.base.clone();
    admin_post(
        &client,
        &base,
        "/v1/apis",
        json!({"slug": API, "name": "Weather API"}),
    )
    .await?;
    admin_post(
        &client,
        &base,
        "/v1/tiers",
        json!({"slug": "weather-free", "api": API,
        "name": "Free", "currency": "usd", "usage": {"model": "per_unit", "unit_price": "0"}}),
    )
    .await?;
    admin_post(
        &client,
        &base,
        SUBSCRIBERS,
        json!({"external_id": "acme", "name": "Acme",
        "email": "billing@acme.example"}),
    )
    .await?;
    admin_post(
        &client,
        &base,
        SUBSCRIPTIONS,
        json!({"external_id": "acme-weather",
        "subscriber": "acme", "tier": "weather-free", "consumer_keys": ["k1"]}),
    )
    .await?;
    let gateway = admin_post(&client, &base, "/v1/gateways", json!({"name": "bench"})).await?;
    let key = gateway["key"].as_str().unwrap_or_default().to_owned();

    let quiet = gateway_latencies(&client, &base, &key, "quiet", 100).await?;
    let storm: Vec<_> = (0..50)
        .map(|_| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{base}/v1/tiers"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"slug": "weather-pro", "api": API, "name": "Pro",
                        "currency": "usd",
                        "fixed_fee": {"amount": "25.00", "interval": "month", "interval_count": 1},
                        "usage": {"model": "per_unit", "unit_price": "0.001"}}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let during = gateway_latencies(&client, &base, &key, "storm", 100).await?;
    let mut by_status = std::collections::BTreeMap::new();
    for answer in storm {
        *by_status.entry(answer.await??).or_insert(0) += 1;
    }
    for (phase, latencies) in [("quiet", quiet), ("during the storm", during)] {
        println!(
            "  gateway POST /v1/events, {phase}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0)
        );
    }
    println!("  the 50 tier creates answered: {by_status:?}");
    server.stop()?;
    Ok(())
}

/// Posts `count` one-record batches 20 ms apart; answers each one's latency in ms, sorted.
async fn gateway_latencies(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    phase: &str,
    count: usize,
) -> Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let record = json!([{"id": format!("{phase}-{i}"), "consumer": "k1", "api": API,
            "timestamp": chrono::Utc::now().to_rfc3339(), "status": 200}]);
        let started = Instant::now();
        let response = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(key)
            .json(&record)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 202,
            "a record answered {}",
            response.status()
        );
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn percentile(sorted: &[f64], at: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * at).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}
