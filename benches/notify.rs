//! How fast the notification outbox drains (issue 18): `tollbooth catalog apply` of a file with
//! `--subscribers N` subscribers (default 2,000) writes N `subscriber.created` events in one
//! queue (apis, tiers and subscribers share one order, so they are sent one after another), and a
//! real `tollbooth serve` delivers them to a local endpoint answering 204.
//!
//! For each database (SQLite in a temporary file; PostgreSQL when `--postgres URL` or
//! `TOLLBOOTH_BENCH_POSTGRES_URL` names a server), on a fresh database, in the same run:
//!
//! - baseline: N signed-size POSTs from one client to the same endpoint, one after another: the
//!   floor of a delivery's round trip;
//! - the drain: from the apply's exit (its events committed) until the endpoint has them all,
//!   each checked once and in the order made.
//!
//! Run with `cargo bench --bench notify` (build `target/release/tollbooth` first with
//! `cargo build --release`), adding `-- --postgres postgres://postgres@127.0.0.1:5432/postgres`
//! to measure PostgreSQL too; `-- --only sqlite|postgres` measures one database.
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Database, DatabaseFlags, FreshDatabase, Server, server_binary, tollbooth_command};

const SUBSCRIBERS: usize = 2_000;
const SECRET: &str = "bench_notify_secret";

struct Options {
    databases: DatabaseFlags,
    subscribers: usize,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        databases: DatabaseFlags::from_env(),
        subscribers: SUBSCRIBERS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if options.databases.take(&arg, &mut args)? {
            continue;
        }
        if arg == "--subscribers" {
            options.subscribers = args
                .next()
                .context("--subscribers needs a number")?
                .parse()
                .context("--subscribers needs a number")?;
        }
        // Anything else (cargo passes `--bench`) is not ours.
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

/// The endpoint: keeps every body it is sent, answers 204.
async fn endpoint() -> Result<(String, Arc<Mutex<Vec<Value>>>)> {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let kept = kept.clone();
        async move {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            kept.lock().unwrap().push(value);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

async fn run(options: Options, binary: PathBuf) -> Result<()> {
    println!(
        "tollbooth notification benchmark: `catalog apply` of {} subscribers, their events \
         delivered by `tollbooth serve` to a local endpoint",
        options.subscribers
    );
    let mut rows = Vec::new();
    for database in options.databases.databases() {
        let dir = tempfile::tempdir()?;
        let fresh = FreshDatabase::create(
            database,
            options.databases.postgres.as_deref(),
            dir.path(),
            "notify",
        )
        .await?;
        let result = measure(&binary, &fresh.url, dir.path(), options.subscribers).await;
        fresh.drop_database().await?;
        let (baseline, drain) = result?;
        println!(
            "  {}: plain POST loop {:.0}/s; drained {:.0} events/s = {:.2} of the loop",
            database.label(),
            baseline,
            drain,
            drain / baseline
        );
        rows.push((database, baseline, drain));
    }
    println!("\n| database | plain POST loop /s | outbox drain events/s | drain / loop |");
    println!("|---|---|---|---|");
    for (database, baseline, drain) in rows {
        let label = match database {
            Database::Sqlite => "SQLite",
            Database::Postgres => "PostgreSQL",
        };
        println!(
            "| {label} | {baseline:.0} | {drain:.0} | {:.2} |",
            drain / baseline
        );
    }
    Ok(())
}

/// Answers (the plain loop's posts a second, the drain's events a second).
async fn measure(binary: &Path, url: &str, dir: &Path, subscribers: usize) -> Result<(f64, f64)> {
    let (endpoint_url, received) = endpoint().await?;
    let client = reqwest::Client::new();

    // Baseline: the same endpoint, bodies of an event's size, one after another.
    let body = json!({"id": "ntf_00000000000000000000000000000000", "type": "subscriber.created",
        "created": 0, "data": {"id": "sub_00000000000000000000000000000000",
        "external_id": "bench-00000", "name": "Bench", "email": "billing@bench.example",
        "created_at": "2026-12-07T00:00:00.000Z", "updated_at": "2026-12-07T00:00:00.000Z"}})
    .to_string();
    let started = Instant::now();
    for _ in 0..subscribers {
        let answer = client
            .post(&endpoint_url)
            .header("content-type", "application/json")
            .header("tollbooth-signature", "t=0,v1=00")
            .body(body.clone())
            .send()
            .await?;
        ensure!(
            answer.status().as_u16() == 204,
            "the endpoint answered {}",
            answer.status()
        );
    }
    let baseline = subscribers as f64 / started.elapsed().as_secs_f64();
    received.lock().unwrap().clear();

    let notify = [
        ("TOLLBOOTH_NOTIFY_URL", endpoint_url.as_str()),
        ("TOLLBOOTH_NOTIFY_SECRET", SECRET),
        ("TOLLBOOTH_BILLING_ENABLED", "false"),
    ];
    let server = Server::start_with(binary, url, dir, &notify)?;
    server.wait_ready(&client).await?;

    let file = dir.join("catalog.json");
    let listed: Vec<Value> = (0..subscribers)
        .map(|i| json!({"external_id": format!("bench-{i:05}"), "name": "Bench", "email": "billing@bench.example"}))
        .collect();
    std::fs::write(&file, json!({"subscribers": listed}).to_string())?;
    let log = dir.join("apply.log");
    let status = tollbooth_command(binary, url, &log)?
        .envs(notify)
        .args(["catalog", "apply"])
        .arg(&file)
        .status()?;
    ensure!(
        status.success(),
        "catalog apply failed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    while received.lock().unwrap().len() < subscribers {
        ensure!(
            Instant::now() < deadline,
            "only {} of {subscribers} events arrived in 600 s:\n{}",
            received.lock().unwrap().len(),
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    server.stop()?;
    let received = received.lock().unwrap().clone();
    ensure!(
        received.len() == subscribers,
        "{} events for {subscribers} subscribers",
        received.len()
    );
    for (i, event) in received.iter().enumerate() {
        ensure!(
            event["type"] == "subscriber.created"
                && event["data"]["external_id"] == format!("bench-{i:05}"),
            "event {i} is not the subscriber made {i}th: {event}"
        );
    }
    println!(
        "  {subscribers} events delivered in {:.2} s, each once and in order",
        elapsed.as_secs_f64()
    );
    Ok((baseline, subscribers as f64 / elapsed.as_secs_f64()))
}
