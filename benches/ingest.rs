//! Ingestion throughput and latency of a real `tollbooth serve` process (issue 7).
//!
//! For each database (SQLite in a temporary file; PostgreSQL when `--postgres URL` or
//! `TOLLBOOTH_BENCH_POSTGRES_URL` names a server) and each id kind (random UUIDv4, time-ordered
//! UUIDv7), on a fresh database each:
//!
//! 1. batched ingestion: 300,000 records posted to `POST /v1/events` in bodies of 1,000 over 4
//!    concurrent connections (bodies serialized before the clock starts), then the totals read
//!    back through `GET /v1/usage/export` and compared with what was sent;
//! 2. the ceiling: the same rows written into another fresh database by a plain single-writer
//!    sqlx loop (1,000 records a transaction: the multi-row insert, then the hourly upsert);
//! 3. single-record requests paced open-loop at 1,000 a second for 10 seconds: p50 and p99;
//! 4. the server's peak resident memory (`VmHWM`).
//!
//! Alongside, from the server's `/metrics` and `/proc`: commits and their average size and time,
//! and the CPU time of the server's threads (tokio workers: HTTP, JSON, checks; SQLite threads)
//! and of the PostgreSQL backends, to see where the time goes.
//!
//! Run with `cargo bench --bench ingest` (cargo builds `target/release/tollbooth` with it; the
//! bench refuses to start without that binary), adding
//! `-- --postgres postgres://postgres@127.0.0.1:5432/postgres` to measure PostgreSQL too.
//! For a quick try: `-- --records N` (default 300,000) and `-- --only sqlite|postgres`;
//! `-- --clients N` changes the batched run's connections (default 4). `-- --alerts` adds, after
//! each database's time-ordered run (its baseline), the same run with every subscription
//! watched: a hard quota and three alerts on the tier, and a notification URL (a local server
//! answering 204), so each commit reads its subscriptions' period totals (issue 18).
//! `-- --meters` adds, after each database's runs, the time-ordered run again with the api
//! declaring three meters (input and output tokens summed from the records' quantities, and a
//! count of forecast calls) and a `model` dimension, every call carrying its tokens and model:
//! the export's meter rows are checked against what was sent, and the ratio to the baseline
//! printed (issue 17's goal: ≥ 0.7).
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Context, Result, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{
    ADMIN_TOKEN, CpuSnapshot, Database, DatabaseFlags, FreshDatabase, Server, admin_post,
    clock_ticks, metric_sum, migrate, server_binary, thousands,
};
use tollbooth::domain::units::SplitUnits;
use tollbooth::metering::key::record_key;
use tollbooth::store::{StoredRecord, UsageIncrement};

/// Records of the batched run, and how many go in one request body / one ceiling transaction.
const RECORDS: usize = 300_000;
const BATCH: usize = 1_000;
/// Concurrent client connections of the batched run (`--clients N` changes it).
const CLIENTS: usize = 4;
/// Subscriptions (one consumer key each) the records are spread over.
const SUBSCRIPTIONS: usize = 100;
/// The records' timestamps cover this much of the past (never before today's midnight UTC).
const SPAN_MS: i64 = 3 * 3_600_000;
const HOUR_MS: i64 = 3_600_000;
/// The single-record run: requests a second, for how long, and how many may be under way.
const SINGLE_RATE: u64 = 1_000;
const SINGLE_SECONDS: u64 = 10;
const SINGLE_IN_FLIGHT: usize = 64;
/// SQLite accepts up to 32,766 variables a statement: 1,000 rows of 11 is one statement.
const CEILING_ROWS_PER_STATEMENT: usize = 1_000;

/// Goals of issue 7.
const GOAL_POSTGRES_RANDOM: f64 = 50_000.0;
const GOAL_SQLITE_RANDOM: f64 = 25_000.0;
const GOAL_SQLITE_ORDERED: f64 = 80_000.0;
const GOAL_RATIO: f64 = 0.6;
const GOAL_P99_MS: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    /// Random UUIDv4: every insert lands somewhere else in the key index.
    Random,
    /// UUIDv7 made from the call's time: inserts append to the key index.
    TimeOrdered,
}

impl IdKind {
    fn label(self) -> &'static str {
        match self {
            IdKind::Random => "random (v4)",
            IdKind::TimeOrdered => "time-ordered (v7)",
        }
    }

    fn make(self, rng: &mut StdRng, at_ms: i64) -> uuid::Uuid {
        match self {
            IdKind::Random => uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
            IdKind::TimeOrdered => uuid::Builder::from_unix_timestamp_millis(
                u64::try_from(at_ms).unwrap_or(0),
                &rng.random(),
            )
            .into_uuid(),
        }
    }
}

struct Options {
    databases: DatabaseFlags,
    records: usize,
    clients: usize,
    alerts: bool,
    meters: bool,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        databases: DatabaseFlags::from_env(),
        records: RECORDS,
        clients: CLIENTS,
        alerts: false,
        meters: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if options.databases.take(&arg, &mut args)? {
            continue;
        }
        if arg == "--clients" {
            options.clients = args
                .next()
                .context("--clients needs a number")?
                .parse()
                .context("--clients needs a number")?;
        } else if arg == "--alerts" {
            options.alerts = true;
        } else if arg == "--meters" {
            options.meters = true;
        } else if arg == "--records" {
            options.records = args
                .next()
                .context("--records needs a number")?
                .parse()
                .context("--records needs a number")?;
        }
        // Anything else (cargo passes `--bench`) is not ours.
    }
    ensure!(
        options.records >= BATCH && options.records.is_multiple_of(BATCH),
        "--records must be a multiple of {BATCH}"
    );
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

/// What one scenario measured.
struct Outcome {
    database: Database,
    ids: IdKind,
    watched: bool,
    metered: bool,
    records_per_s: f64,
    ceiling_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    single_rate: f64,
    peak_rss_kib: u64,
    verified: bool,
}

async fn run(options: Options, binary: PathBuf) -> Result<()> {
    let clock_ticks = clock_ticks();
    println!(
        "tollbooth ingestion benchmark: {} records in bodies of {BATCH} over {} connections, \
         {SUBSCRIPTIONS} subscriptions; single records at {SINGLE_RATE}/s for {SINGLE_SECONDS} s",
        options.records, options.clients
    );
    println!("server: {}", binary.display());
    let notify_url = if options.alerts {
        Some(provider_answering_204().await?)
    } else {
        None
    };
    let mut outcomes = Vec::new();
    for database in options.databases.databases() {
        let mut runs = vec![
            (IdKind::Random, None, false),
            (IdKind::TimeOrdered, None, false),
        ];
        if let Some(url) = &notify_url {
            runs.push((IdKind::TimeOrdered, Some(url.as_str()), false));
        }
        if options.meters {
            runs.push((IdKind::TimeOrdered, None, true));
        }
        for (ids, notify_url, metered) in runs {
            let watched = if notify_url.is_some() {
                ", every subscription watched"
            } else if metered {
                ", three meters and a dimension"
            } else {
                ""
            };
            println!(
                "\n== {} / {} ids{watched} ==",
                database.label(),
                ids.label()
            );
            let scenario = Scenario {
                database,
                ids,
                binary: &binary,
                postgres: options.databases.postgres.as_deref(),
                records: options.records,
                clients: options.clients,
                clock_ticks,
                notify_url,
                metered,
            };
            outcomes.push(scenario.run().await?);
        }
    }
    print_table(&outcomes);
    Ok(())
}

struct Scenario<'a> {
    database: Database,
    ids: IdKind,
    binary: &'a Path,
    postgres: Option<&'a str>,
    records: usize,
    clients: usize,
    clock_ticks: f64,
    /// Set: every subscription is watched (a hard quota and alerts), notified here.
    notify_url: Option<&'a str>,
    /// The api declares three meters and a dimension, and every call carries their values.
    metered: bool,
}

/// A local provider endpoint that takes every notification (204); answers its URL.
async fn provider_answering_204() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

impl Scenario<'_> {
    async fn run(&self) -> Result<Outcome> {
        let dir = tempfile::tempdir()?;
        let mut made = Vec::new();
        let result = self.measure(dir.path(), &mut made).await;
        for fresh in made {
            if let Err(error) = fresh.drop_database().await {
                eprintln!("could not drop a benchmark database: {error:#}");
            }
        }
        result
    }

    async fn fresh_database(&self, dir: &Path, name: &str) -> Result<FreshDatabase> {
        FreshDatabase::create(self.database, self.postgres, dir, name).await
    }

    async fn measure(&self, dir: &Path, made: &mut Vec<FreshDatabase>) -> Result<Outcome> {
        let database = self.fresh_database(dir, "tollbooth").await?;
        let url = database.url.clone();
        let postgres_name = database.postgres.as_ref().map(|(_, name)| name.clone());
        made.push(database);

        // 1. tollbooth itself.
        let env: Vec<(&str, &str)> = match self.notify_url {
            Some(notify_url) => vec![
                ("TOLLBOOTH_NOTIFY_URL", notify_url),
                ("TOLLBOOTH_NOTIFY_SECRET", "bench_notify_secret"),
            ],
            None => Vec::new(),
        };
        let server = Server::start_with(self.binary, &url, dir, &env)?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(SINGLE_IN_FLIGHT)
            .timeout(Duration::from_secs(120))
            .build()?;
        server.wait_ready(&client).await?;
        let catalog = Catalog::create(
            &client,
            &server.base,
            self.notify_url.is_some(),
            self.metered,
        )
        .await?;
        let workload = Workload::generate(self.ids, &catalog, self.records, 7);
        println!(
            "  workload: {} bodies, {:.1} MB of JSON",
            workload.bodies.len(),
            workload.bodies.iter().map(String::len).sum::<usize>() as f64 / 1e6
        );

        let cpu_before =
            CpuSnapshot::take(server.pid, self.postgres, postgres_name.as_deref()).await;
        let metrics_before = Metrics::scrape(&client, &server.base).await?;
        let started = Instant::now();
        let answers = post_batches(
            self.clients,
            &client,
            &server.base,
            &catalog.gateway_key,
            &workload.bodies,
        )
        .await?;
        let elapsed = started.elapsed();
        let cpu_after =
            CpuSnapshot::take(server.pid, self.postgres, postgres_name.as_deref()).await;
        let records_per_s = self.records as f64 / elapsed.as_secs_f64();
        println!(
            "  batched: {} records in {:.2} s = {records_per_s:.0} records/s ({} requests, {} retried after 503)",
            self.records,
            elapsed.as_secs_f64(),
            workload.bodies.len(),
            answers.retries
        );
        cpu_after.report(&cpu_before, elapsed, self.clock_ticks);
        Metrics::scrape(&client, &server.base)
            .await?
            .report(&metrics_before, elapsed.as_secs_f64());
        ensure!(
            answers.accepted == self.records as u64
                && answers.duplicates == 0
                && answers.rejected == 0,
            "the answers do not add up: {answers:?}"
        );
        verify(&client, &server.base, &workload.expected).await?;
        println!("  verified: the usage export matches every record sent, per subscription");

        // 3. single records, paced.
        let metrics_before = Metrics::scrape(&client, &server.base).await?;
        let single = single_records(&client, &server.base, &catalog, self.ids).await?;
        let metrics_after = Metrics::scrape(&client, &server.base).await?;
        println!(
            "  single records: {} requests at {:.0}/s achieved; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             (from the request's own start: p50 {:.2} ms, p99 {:.2} ms)",
            single.requests,
            single.achieved_rate,
            single.p50_ms,
            single.p99_ms,
            single.max_ms,
            single.service_p50_ms,
            single.service_p99_ms
        );
        metrics_after.report(&metrics_before, SINGLE_SECONDS as f64);
        let mut expected = workload.expected.clone();
        for (subscription, totals) in &single.expected {
            expected
                .entry(subscription.clone())
                .or_default()
                .add(totals);
        }
        verify(&client, &server.base, &expected).await?;
        println!("  verified again with the single records");

        // 4. memory, then stop.
        let peak_rss_kib = server.peak_rss_kib()?;
        println!(
            "  server peak RSS (VmHWM): {:.1} MiB",
            peak_rss_kib as f64 / 1024.0
        );
        server.stop()?;

        // 2. the ceiling, on its own fresh database, with tollbooth stopped.
        let ceiling_db = self.fresh_database(dir, "ceiling").await?;
        let ceiling_url = ceiling_db.url.clone();
        made.push(ceiling_db);
        migrate(self.binary, &ceiling_url, dir)?;
        let rows = workload.stored_rows();
        let started = Instant::now();
        let (stored, calls, phases) = match self.database {
            Database::Sqlite => ceiling_sqlite(&ceiling_url, &rows).await?,
            Database::Postgres => ceiling_postgres(&ceiling_url, &rows).await?,
        };
        let elapsed = started.elapsed();
        ensure!(
            (stored, calls) == (self.records as i64, self.records as i64),
            "the ceiling stored {stored} records counting {calls} calls, not {}",
            self.records
        );
        let ceiling_per_s = self.records as f64 / elapsed.as_secs_f64();
        println!(
            "  ceiling: {} records in {:.2} s = {ceiling_per_s:.0} records/s; tollbooth / ceiling = {:.2}",
            self.records,
            elapsed.as_secs_f64(),
            records_per_s / ceiling_per_s
        );
        let batches = (self.records / BATCH) as f64;
        println!(
            "  ceiling per transaction of {BATCH}: insert {:.2} ms, hourly upsert {:.2} ms, commit {:.2} ms",
            phases.insert.as_secs_f64() * 1e3 / batches,
            phases.upsert.as_secs_f64() * 1e3 / batches,
            phases.commit.as_secs_f64() * 1e3 / batches
        );

        Ok(Outcome {
            database: self.database,
            ids: self.ids,
            watched: self.notify_url.is_some(),
            metered: self.metered,
            records_per_s,
            ceiling_per_s,
            p50_ms: single.p50_ms,
            p99_ms: single.p99_ms,
            single_rate: single.achieved_rate,
            peak_rss_kib,
            verified: true,
        })
    }
}

/// What the admin API made: one subscription (and consumer key) per slot, and the gateway key.
struct Catalog {
    /// (tollbooth's subscription id, its consumer key)
    subscriptions: Vec<(String, String)>,
    gateway_key: String,
    /// The api meters tokens (by model) and forecast calls: calls carry their quantities.
    metered: bool,
}

impl Catalog {
    /// `watched`: the tier has a hard quota (never reached here) and three alerts.
    async fn create(
        client: &reqwest::Client,
        base: &str,
        watched: bool,
        metered: bool,
    ) -> Result<Self> {
        let started = Instant::now();
        let mut api = json!({"slug": "weather", "name": "Weather API",
            "recording_policy": {"billable_status": ["2xx"], "exclude_methods": ["OPTIONS"]}});
        if metered {
            api["meters"] = json!([
                {"key": "input_tokens", "aggregation": "sum", "quantity": "input_tokens"},
                {"key": "output_tokens", "aggregation": "sum", "quantity": "output_tokens"},
                {"key": "forecasts", "aggregation": "count", "filter": {"path_prefixes": ["/v1/forecast"]}}
            ]);
            api["dimensions"] = json!([{"key": "model"}]);
        }
        admin_post(client, base, "/v1/apis", api).await?;
        let mut tier = json!({
            "slug": "weather-pro", "api": "weather", "name": "Pro", "currency": "usd",
            "fixed_fee": {"amount": "25.00", "interval": "month", "interval_count": 1},
            "usage": {"model": "package", "free_units": 5000, "package_size": 1000, "package_price": "5.00"}
        });
        if metered {
            tier["charges"] = json!([
                {"meter": "input_tokens", "dimensions": {"model": "large"}, "usage": {"model": "per_unit", "unit_price": "0.000003"}},
                {"meter": "output_tokens", "dimensions": {"model": "large"}, "usage": {"model": "per_unit", "unit_price": "0.000015"}},
                {"meter": "forecasts", "usage": {"model": "per_unit", "unit_price": "0.001"}}
            ]);
        }
        if watched {
            tier["quota"] = json!({"hard_limit": 1_000_000_000u64});
            tier["alerts"] = json!([{"quota": "hard_limit", "percent": "50"},
                                    {"quota": "hard_limit", "percent": "80"},
                                    {"spend": "1000000.00"}]);
        }
        admin_post(client, base, "/v1/tiers", tier).await?;
        admin_post(
            client,
            base,
            "/v1/subscribers",
            json!({"external_id": "acme", "name": "Acme",
            "email": "billing@acme.example"}),
        )
        .await?;
        let mut subscriptions = Vec::with_capacity(SUBSCRIPTIONS);
        for i in 0..SUBSCRIPTIONS {
            let consumer = format!("bench-consumer-{i:03}");
            let created = admin_post(
                client,
                base,
                "/v1/subscriptions",
                json!({
                    "external_id": format!("bench-{i:03}"), "subscriber": "acme",
                    "tier": "weather-pro", "consumer_keys": [consumer]
                }),
            )
            .await?;
            let id = created["id"]
                .as_str()
                .context("a subscription without an id")?;
            subscriptions.push((id.to_owned(), consumer));
        }
        let gateway = admin_post(client, base, "/v1/gateways", json!({"name": "bench"})).await?;
        let gateway_key = gateway["key"]
            .as_str()
            .context("a gateway without a key")?
            .to_owned();
        println!(
            "  catalog: an api, a tier, a subscriber, {SUBSCRIPTIONS} subscriptions, a gateway ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        Ok(Self {
            subscriptions,
            gateway_key,
            metered,
        })
    }
}

/// Calls counted per subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    total: i64,
    billable: i64,
    failed: i64,
    /// Of a metered api: its meters' sums over every model.
    input_tokens: i64,
    output_tokens: i64,
    forecasts: i64,
}

impl Totals {
    fn count(&mut self, call: &Call, metered: bool) {
        self.total += 1;
        let billable = (200..300).contains(&call.status);
        if billable {
            self.billable += 1;
        }
        if call.status >= 500 {
            self.failed += 1;
        }
        if metered && billable {
            self.input_tokens += i64::from(call.input_tokens);
            self.output_tokens += i64::from(call.output_tokens);
            if call.path == "/v1/forecast" {
                self.forecasts += 1;
            }
        }
    }

    fn add(&mut self, other: &Totals) {
        self.total += other.total;
        self.billable += other.billable;
        self.failed += other.failed;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.forecasts += other.forecasts;
    }
}

/// One call as the gateway saw it.
struct Call {
    id: String,
    subscription: usize,
    at_ms: i64,
    status: u16,
    method: &'static str,
    path: &'static str,
    latency_ms: i64,
    input_tokens: u32,
    output_tokens: u32,
    model: &'static str,
}

impl Call {
    fn random(ids: IdKind, rng: &mut StdRng, at_ms: i64) -> Self {
        let status = match rng.random_range(0..100) {
            0..90 => 200,
            90..96 => 404,
            _ => 503,
        };
        Self {
            id: ids.make(rng, at_ms).to_string(),
            subscription: rng.random_range(0..SUBSCRIPTIONS),
            at_ms,
            status,
            method: if rng.random_bool(0.8) { "GET" } else { "POST" },
            path: ["/v1/forecast", "/v1/current", "/v1/alerts"][rng.random_range(0..3)],
            latency_ms: rng.random_range(1..250),
            input_tokens: rng.random_range(1..5000),
            output_tokens: rng.random_range(1..2000),
            model: ["large", "small"][rng.random_range(0..2)],
        }
    }

    fn json(&self, catalog: &Catalog) -> Value {
        let mut record = json!({
            "id": self.id,
            "consumer": catalog.subscriptions[self.subscription].1,
            "api": "weather",
            "timestamp": rfc3339(self.at_ms),
            "status": self.status,
            "method": self.method,
            "path": self.path,
            "latency_ms": self.latency_ms,
        });
        if catalog.metered {
            record["quantities"] =
                json!({"input_tokens": self.input_tokens, "output_tokens": self.output_tokens});
            record["dimensions"] = json!({"model": self.model});
        }
        record
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The oldest time a record may carry: `SPAN_MS` ago, but not before the subscriptions' first day.
fn window_start(now_ms: i64) -> i64 {
    let midnight = now_ms.div_euclid(86_400_000) * 86_400_000;
    (now_ms - SPAN_MS).max(midnight)
}

/// The batched run's records, as request bodies and as the rows the ceiling writes.
struct Workload {
    bodies: Vec<String>,
    calls: Vec<Call>,
    subscription_ids: Vec<String>,
    expected: HashMap<String, Totals>,
}

impl Workload {
    /// Calls in time order (as a gateway flushes them) over the last hours, each with its own id.
    fn generate(ids: IdKind, catalog: &Catalog, records: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let now = chrono::Utc::now().timestamp_millis();
        let start = window_start(now);
        let end = now - 1_000;
        let step = (end - start) as f64 / records as f64;
        let calls: Vec<Call> = (0..records)
            .map(|i| {
                // Gateways send roughly in order: up to half a second of jitter.
                let at = start + (i as f64 * step) as i64 + rng.random_range(0..500);
                Call::random(ids, &mut rng, at.min(end))
            })
            .collect();
        let mut expected: HashMap<String, Totals> = HashMap::new();
        for call in &calls {
            expected
                .entry(catalog.subscriptions[call.subscription].0.clone())
                .or_default()
                .count(call, catalog.metered);
        }
        let bodies = calls
            .chunks(BATCH)
            .map(|chunk| {
                let batch: Vec<Value> = chunk.iter().map(|c| c.json(catalog)).collect();
                serde_json::to_string(&batch).unwrap_or_default()
            })
            .collect();
        Self {
            bodies,
            calls,
            subscription_ids: catalog
                .subscriptions
                .iter()
                .map(|(id, _)| id.clone())
                .collect(),
            expected,
        }
    }

    /// The rows tollbooth stores for these calls, for the ceiling loop.
    fn stored_rows(&self) -> Vec<StoredRecord> {
        self.calls
            .iter()
            .map(|call| {
                let billable = (200..300).contains(&call.status);
                StoredRecord {
                    record_key: record_key(&call.id),
                    record_id: call.id.clone(),
                    subscription_id: self.subscription_ids[call.subscription].clone(),
                    occurred_at: call.at_ms,
                    status: call.status,
                    billable,
                    units_micros: if billable { 1_000_000 } else { 0 },
                    method: Some(call.method.to_owned()),
                    path: Some(call.path.to_owned()),
                    latency_ms: Some(call.latency_ms),
                    upstream_answered: true,
                    readings: Default::default(),
                }
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Answers {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    retries: u64,
}

/// Posts the bodies over `clients` connections, each taking the next body when done.
async fn post_batches(
    clients: usize,
    client: &reqwest::Client,
    base: &str,
    gateway_key: &str,
    bodies: &[String],
) -> Result<Answers> {
    let bodies = Arc::new(bodies.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/v1/events");
    let mut workers = Vec::new();
    for _ in 0..clients.max(1) {
        let (client, bodies, next, url) =
            (client.clone(), bodies.clone(), next.clone(), url.clone());
        let key = gateway_key.to_owned();
        workers.push(tokio::spawn(async move {
            let mut answers = Answers::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return anyhow::Ok(answers);
                };
                loop {
                    let response = client
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    let status = response.status();
                    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                        answers.retries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let answer: Value = response.json().await?;
                    ensure!(
                        status == reqwest::StatusCode::ACCEPTED,
                        "{status}: {answer}"
                    );
                    answers.accepted += answer["accepted"].as_u64().unwrap_or(0);
                    answers.duplicates += answer["duplicates"].as_u64().unwrap_or(0);
                    answers.rejected += answer["rejected"].as_array().map_or(0, |r| r.len() as u64);
                    break;
                }
            }
        }));
    }
    let mut total = Answers::default();
    for worker in workers {
        let answers = worker.await??;
        total.accepted += answers.accepted;
        total.duplicates += answers.duplicates;
        total.rejected += answers.rejected;
        total.retries += answers.retries;
    }
    Ok(total)
}

/// Reads the whole aggregation table through the export and compares it per subscription.
async fn verify(
    client: &reqwest::Client,
    base: &str,
    expected: &HashMap<String, Totals>,
) -> Result<()> {
    let mut actual: HashMap<String, Totals> = HashMap::new();
    let mut seen = HashSet::new();
    let mut after = "0".to_owned();
    loop {
        let page: Value = client
            .get(format!("{base}/v1/usage/export?after={after}&limit=10000"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for row in page["data"].as_array().context("no export data")? {
            let subscription = row["subscription"].as_str().unwrap_or_default().to_owned();
            let hour = row["hour"].as_str().unwrap_or_default().to_owned();
            let meter = row["meter"].as_str().unwrap_or_default().to_owned();
            let dimensions = row["dimensions"].to_string();
            ensure!(
                seen.insert((subscription.clone(), hour, meter.clone(), dimensions)),
                "the export repeats a subscription-hour: {row}"
            );
            let totals = actual.entry(subscription).or_default();
            let quantity = || -> Result<i64> {
                row["quantity"]
                    .as_str()
                    .context("a meter row without its quantity")?
                    .parse()
                    .context("a meter's quantity that is not whole")
            };
            match meter.as_str() {
                "" => {
                    totals.total += row["total_calls"].as_i64().unwrap_or(0);
                    totals.billable += row["billable_calls"].as_i64().unwrap_or(0);
                    totals.failed += row["failed_calls"].as_i64().unwrap_or(0);
                }
                "input_tokens" => totals.input_tokens += quantity()?,
                "output_tokens" => totals.output_tokens += quantity()?,
                "forecasts" => totals.forecasts += quantity()?,
                other => anyhow::bail!("the export has a meter `{other}` never declared: {row}"),
            }
        }
        after = page["next_after"].as_str().unwrap_or("0").to_owned();
        if !page["has_more"].as_bool().unwrap_or(false) {
            break;
        }
    }
    for (subscription, want) in expected {
        let got = actual.get(subscription).copied().unwrap_or_default();
        ensure!(
            got == *want,
            "subscription {subscription}: stored {got:?}, sent {want:?}"
        );
    }
    ensure!(
        actual.len() == expected.len(),
        "the export has subscriptions that were sent nothing"
    );
    Ok(())
}

struct Single {
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// From the request's own start rather than its tick: without any wait in the client.
    service_p50_ms: f64,
    service_p99_ms: f64,
    achieved_rate: f64,
    expected: HashMap<String, Totals>,
}

/// One record a request, paced open-loop: each request is due at its tick, and its latency is
/// counted from that tick (so a late client counts against the figure, not for it).
async fn single_records(
    client: &reqwest::Client,
    base: &str,
    catalog: &Catalog,
    ids: IdKind,
) -> Result<Single> {
    let count = usize::try_from(SINGLE_RATE * SINGLE_SECONDS)?;
    let mut rng = StdRng::seed_from_u64(11);
    let now = chrono::Utc::now().timestamp_millis();
    let mut expected: HashMap<String, Totals> = HashMap::new();
    let bodies: Vec<String> = (0..count)
        .map(|_| {
            let call = Call::random(ids, &mut rng, now);
            expected
                .entry(catalog.subscriptions[call.subscription].0.clone())
                .or_default()
                .count(&call, catalog.metered);
            serde_json::to_string(&[call.json(catalog)]).unwrap_or_default()
        })
        .collect();
    let url = format!("{base}/v1/events");
    let in_flight = Arc::new(tokio::sync::Semaphore::new(SINGLE_IN_FLIGHT));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / SINGLE_RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut requests = Vec::with_capacity(count);
    for body in bodies {
        let due = ticker.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (client, url, key) = (client.clone(), url.clone(), catalog.gateway_key.clone());
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let answer = response.bytes().await?;
            let latency = (due.elapsed(), sent.elapsed());
            drop(permit);
            ensure!(
                status == reqwest::StatusCode::ACCEPTED,
                "{status}: {}",
                String::from_utf8_lossy(&answer)
            );
            anyhow::Ok(latency)
        }));
    }
    let mut latencies_ms = Vec::with_capacity(count);
    let mut service_ms = Vec::with_capacity(count);
    for request in requests {
        let (latency, service) = request.await??;
        latencies_ms.push(latency.as_secs_f64() * 1e3);
        service_ms.push(service.as_secs_f64() * 1e3);
    }
    let achieved_rate = count as f64 / started.elapsed().as_secs_f64();
    latencies_ms.sort_by(f64::total_cmp);
    service_ms.sort_by(f64::total_cmp);
    let at =
        |sorted: &[f64], q: f64| sorted[((count as f64 * q).ceil() as usize).clamp(1, count) - 1];
    Ok(Single {
        requests: count,
        p50_ms: at(&latencies_ms, 0.50),
        p99_ms: at(&latencies_ms, 0.99),
        max_ms: latencies_ms[count - 1],
        service_p50_ms: at(&service_ms, 0.50),
        service_p99_ms: at(&service_ms, 0.99),
        achieved_rate,
        expected,
    })
}

/// Sums new rows into one increment per subscription and hour, in a stable order.
fn increments<'a>(rows: impl Iterator<Item = &'a StoredRecord>) -> Vec<UsageIncrement> {
    let mut by_hour: HashMap<(&str, i64), UsageIncrement> = HashMap::new();
    for row in rows {
        let hour = row.occurred_at.div_euclid(HOUR_MS) * HOUR_MS;
        let inc = by_hour
            .entry((row.subscription_id.as_str(), hour))
            .or_insert_with(|| UsageIncrement {
                subscription_id: row.subscription_id.clone(),
                hour,
                ..UsageIncrement::default()
            });
        inc.total_calls += 1;
        if row.status >= 500 {
            inc.failed_calls += 1;
        }
        if row.billable {
            inc.billable_calls += 1;
            inc.billable_units_micros += i128::from(row.units_micros);
        }
    }
    let mut all: Vec<UsageIncrement> = by_hour.into_values().collect();
    all.sort_by(|a, b| {
        (a.subscription_id.as_str(), a.hour).cmp(&(b.subscription_id.as_str(), b.hour))
    });
    all
}

/// An increment's units as the aggregation table keeps them.
fn split(increment: &UsageIncrement) -> SplitUnits {
    SplitUnits::from_micros(increment.billable_units_micros).unwrap_or_default()
}

/// Where the ceiling loop's time went.
#[derive(Debug, Default)]
struct Phases {
    /// BEGIN and the raw-record insert.
    insert: Duration,
    /// Folding the increments, taking revisions, the hourly upsert.
    upsert: Duration,
    commit: Duration,
}

const RECORD_COLUMNS: &str = "record_key, record_id, subscription_id, occurred_at, status, \
     billable, units_micros, method, path, latency_ms, received_at";
const USAGE_COLUMNS: &str = "INSERT INTO usage_hourly (subscription_id, hour, billable_calls, \
     billable_units_whole, billable_units_micros, failed_calls, total_calls, revision)";
const USAGE_UPSERT: &str = " ON CONFLICT (subscription_id, hour) DO UPDATE SET \
     billable_calls = usage_hourly.billable_calls + excluded.billable_calls, \
     billable_units_whole = usage_hourly.billable_units_whole + excluded.billable_units_whole \
         + (usage_hourly.billable_units_micros + excluded.billable_units_micros) / 1000000, \
     billable_units_micros = (usage_hourly.billable_units_micros + excluded.billable_units_micros) % 1000000, \
     failed_calls = usage_hourly.failed_calls + excluded.failed_calls, \
     total_calls = usage_hourly.total_calls + excluded.total_calls, \
     revision = excluded.revision";
const TAKE_REVISIONS: &str =
    "UPDATE usage_revision SET value = value + $1 WHERE id = 1 RETURNING value";
const COUNT_STORED: &str = "SELECT (SELECT COUNT(*) FROM call_records), (SELECT CAST(SUM(total_calls) AS BIGINT) FROM usage_hourly)";

/// `prefix (?, …), (?, …) suffix`: plain `?` placeholders, which sqlx binds in linear time.
fn sqlite_values(prefix: &str, columns: usize, rows: usize, suffix: &str) -> Arc<str> {
    let row = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::from(prefix);
    sql.push_str(&vec![row; rows].join(", "));
    sql.push_str(suffix);
    sql.into()
}

/// The plain single-writer loop on SQLite, opened as tollbooth opens it (WAL, synchronous=FULL,
/// write lock taken at BEGIN). Answers (rows stored, calls counted).
async fn ceiling_sqlite(url: &str, rows: &[StoredRecord]) -> Result<(i64, i64, Phases)> {
    let mut phases = Phases::default();
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let mut statements: HashMap<usize, Arc<str>> = HashMap::new();
    let received_at = chrono::Utc::now().timestamp_millis();
    for batch in rows.chunks(BATCH) {
        let begun = Instant::now();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut new_keys: HashSet<Vec<u8>> = HashSet::with_capacity(batch.len());
        for chunk in batch.chunks(CEILING_ROWS_PER_STATEMENT) {
            let sql = statements
                .entry(chunk.len())
                .or_insert_with(|| {
                    sqlite_values(
                        &format!("INSERT INTO call_records ({RECORD_COLUMNS}) VALUES "),
                        11,
                        chunk.len(),
                        " ON CONFLICT (record_key) DO NOTHING RETURNING record_key",
                    )
                })
                .clone();
            let mut query = sqlx::query_scalar::<_, Vec<u8>>(AssertSqlSafe(sql));
            for r in chunk {
                query = query
                    .bind(&r.record_key)
                    .bind(&r.record_id)
                    .bind(&r.subscription_id)
                    .bind(r.occurred_at)
                    .bind(i64::from(r.status))
                    .bind(r.billable)
                    .bind(r.units_micros)
                    .bind(&r.method)
                    .bind(&r.path)
                    .bind(r.latency_ms)
                    .bind(received_at);
            }
            new_keys.extend(query.fetch_all(&mut *tx).await?);
        }
        let inserted = Instant::now();
        phases.insert += inserted - begun;
        let incs = increments(batch.iter().filter(|r| new_keys.contains(&r.record_key)));
        if !incs.is_empty() {
            let count = incs.len() as i64;
            let last: i64 = sqlx::query_scalar(TAKE_REVISIONS)
                .bind(count)
                .fetch_one(&mut *tx)
                .await?;
            let sql = sqlite_values(
                &format!("{USAGE_COLUMNS} VALUES "),
                8,
                incs.len(),
                USAGE_UPSERT,
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (inc, revision) in incs.iter().zip(last - count + 1..) {
                query = query
                    .bind(&inc.subscription_id)
                    .bind(inc.hour)
                    .bind(inc.billable_calls)
                    .bind(split(inc).whole)
                    .bind(split(inc).micros)
                    .bind(inc.failed_calls)
                    .bind(inc.total_calls)
                    .bind(revision);
            }
            query.execute(&mut *tx).await?;
        }
        let upserted = Instant::now();
        phases.upsert += upserted - inserted;
        tx.commit().await?;
        phases.commit += upserted.elapsed();
    }
    let (records, calls) = sqlx::query_as(COUNT_STORED).fetch_one(&mut conn).await?;
    Ok((records, calls, phases))
}

/// The plain single-writer loop on PostgreSQL: arrays through UNNEST, one transaction a batch.
async fn ceiling_postgres(url: &str, rows: &[StoredRecord]) -> Result<(i64, i64, Phases)> {
    let mut phases = Phases::default();
    let mut conn = PgConnection::connect(url).await?;
    let insert = format!(
        "INSERT INTO call_records ({RECORD_COLUMNS}) SELECT *, $11::int8 FROM UNNEST($1::bytea[], \
         $2::text[], $3::text[], $4::int8[], $5::int4[], $6::int4[], $7::int8[], $8::text[], \
         $9::text[], $10::int8[]) ON CONFLICT (record_key) DO NOTHING RETURNING record_key"
    );
    let upsert: Arc<str> = format!(
        "{USAGE_COLUMNS} SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], \
         $5::int8[], $6::int8[], $7::int8[], $8::int8[]){USAGE_UPSERT}"
    )
    .into();
    let insert: Arc<str> = insert.into();
    let received_at = chrono::Utc::now().timestamp_millis();
    for batch in rows.chunks(BATCH) {
        let begun = Instant::now();
        let mut tx = conn.begin().await?;
        let new_keys: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(insert.clone()))
            .bind(
                batch
                    .iter()
                    .map(|r| r.record_key.as_slice())
                    .collect::<Vec<_>>(),
            )
            .bind(
                batch
                    .iter()
                    .map(|r| r.record_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                batch
                    .iter()
                    .map(|r| r.subscription_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(batch.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
            .bind(
                batch
                    .iter()
                    .map(|r| i32::from(r.status))
                    .collect::<Vec<_>>(),
            )
            .bind(
                batch
                    .iter()
                    .map(|r| i32::from(r.billable))
                    .collect::<Vec<_>>(),
            )
            .bind(batch.iter().map(|r| r.units_micros).collect::<Vec<_>>())
            .bind(
                batch
                    .iter()
                    .map(|r| r.method.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(batch.iter().map(|r| r.path.as_deref()).collect::<Vec<_>>())
            .bind(batch.iter().map(|r| r.latency_ms).collect::<Vec<_>>())
            .bind(received_at)
            .fetch_all(&mut *tx)
            .await?;
        let new_keys: HashSet<Vec<u8>> = new_keys.into_iter().collect();
        let inserted = Instant::now();
        phases.insert += inserted - begun;
        let incs = increments(batch.iter().filter(|r| new_keys.contains(&r.record_key)));
        if !incs.is_empty() {
            let count = incs.len() as i64;
            let last: i64 = sqlx::query_scalar(TAKE_REVISIONS)
                .bind(count)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(AssertSqlSafe(upsert.clone()))
                .bind(
                    incs.iter()
                        .map(|i| i.subscription_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(incs.iter().map(|i| i.hour).collect::<Vec<_>>())
                .bind(incs.iter().map(|i| i.billable_calls).collect::<Vec<_>>())
                .bind(incs.iter().map(|i| split(i).whole).collect::<Vec<_>>())
                .bind(incs.iter().map(|i| split(i).micros).collect::<Vec<_>>())
                .bind(incs.iter().map(|i| i.failed_calls).collect::<Vec<_>>())
                .bind(incs.iter().map(|i| i.total_calls).collect::<Vec<_>>())
                .bind((last - count + 1..=last).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        let upserted = Instant::now();
        phases.upsert += upserted - inserted;
        tx.commit().await?;
        phases.commit += upserted.elapsed();
    }
    let (records, calls) = sqlx::query_as(COUNT_STORED).fetch_one(&mut conn).await?;
    Ok((records, calls, phases))
}

/// The writer's own figures from `/metrics`: commits, their time, records.
struct Metrics {
    commits: f64,
    commit_seconds: f64,
    records: f64,
    requests_seconds: f64,
    requests: f64,
}

impl Metrics {
    async fn scrape(client: &reqwest::Client, base: &str) -> Result<Self> {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        // Summed over labels; the request figures of the events route only.
        let sum = |name: &str, only_events: bool| -> f64 {
            metric_sum(&text, name, only_events.then_some("/v1/events"))
        };
        Ok(Self {
            commits: sum("tollbooth_ingest_commit_seconds_count", false),
            commit_seconds: sum("tollbooth_ingest_commit_seconds_sum", false),
            records: sum("tollbooth_ingest_records_total", false),
            requests_seconds: sum("tollbooth_http_request_duration_seconds_sum", true),
            requests: sum("tollbooth_http_request_duration_seconds_count", true),
        })
    }

    fn report(&self, before: &Metrics, wall_seconds: f64) {
        let commits = self.commits - before.commits;
        let commit_seconds = self.commit_seconds - before.commit_seconds;
        let requests = self.requests - before.requests;
        if commits <= 0.0 {
            println!("  server metrics: no commits seen in /metrics");
            return;
        }
        println!(
            "  server metrics: {commits:.0} commits of {:.0} records on average, {:.2} ms each; \
             commit time summed over the writers = {:.0} % of the wall time; POST /v1/events took {:.2} ms on \
             average inside the server ({requests:.0} requests)",
            (self.records - before.records) / commits,
            commit_seconds / commits * 1e3,
            commit_seconds / wall_seconds * 100.0,
            if requests > 0.0 {
                (self.requests_seconds - before.requests_seconds) / requests * 1e3
            } else {
                0.0
            },
        );
    }
}

fn print_table(outcomes: &[Outcome]) {
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "\n| database | ids | tollbooth records/s | goal | ceiling records/s | tollbooth / ceiling (goal ≥ {GOAL_RATIO}) | single p50 ms | single p99 ms (goal < {GOAL_P99_MS}) | peak RSS MiB | verified |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let goal = match (o.database, o.ids) {
            (Database::Postgres, IdKind::Random) => Some(GOAL_POSTGRES_RANDOM),
            (Database::Postgres, IdKind::TimeOrdered) => None,
            (Database::Sqlite, IdKind::Random) => Some(GOAL_SQLITE_RANDOM),
            (Database::Sqlite, IdKind::TimeOrdered) => Some(GOAL_SQLITE_ORDERED),
        };
        let goal = goal.map_or("—".to_owned(), |g| {
            format!("≥ {} ({})", thousands(g), mark(o.records_per_s >= g))
        });
        let ratio = o.records_per_s / o.ceiling_per_s;
        let watched = match (o.watched, o.metered) {
            (true, _) => ", watched",
            (false, true) => ", 3 meters + 1 dimension",
            (false, false) => "",
        };
        println!(
            "| {} | {}{watched} | {} | {goal} | {} | {ratio:.2} ({}) | {:.2} | {:.2} ({}; {:.0} req/s) | {:.0} | {} |",
            o.database.label(),
            o.ids.label(),
            thousands(o.records_per_s),
            thousands(o.ceiling_per_s),
            mark(ratio >= GOAL_RATIO),
            o.p50_ms,
            o.p99_ms,
            mark(o.p99_ms < GOAL_P99_MS),
            o.single_rate,
            o.peak_rss_kib as f64 / 1024.0,
            if o.verified { "verified" } else { "NO" },
        );
    }
    for metered in outcomes.iter().filter(|o| o.metered) {
        if let Some(baseline) = outcomes.iter().find(|b| {
            b.database == metered.database && b.ids == metered.ids && !b.watched && !b.metered
        }) {
            let ratio = metered.records_per_s / baseline.records_per_s;
            println!(
                "{}, {} ids: three meters and a dimension = {ratio:.2} × the records/s of the same \
                 run with the calls alone (goal ≥ 0.7: {})",
                metered.database.label(),
                metered.ids.label(),
                mark(ratio >= 0.7)
            );
        }
    }
    for watched in outcomes.iter().filter(|o| o.watched) {
        if let Some(baseline) = outcomes.iter().find(|b| {
            b.database == watched.database && b.ids == watched.ids && !b.watched && !b.metered
        }) {
            println!(
                "{}, {} ids: every subscription watched = {:.2} × the records/s of the same run unwatched",
                watched.database.label(),
                watched.ids.label(),
                watched.records_per_s / baseline.records_per_s
            );
        }
    }
}
