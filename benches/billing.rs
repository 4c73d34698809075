//! One daily billing run over many subscriptions against a mock Stripe that answers at once, with
//! the pacing limit lifted (issue 5): subscriptions per second, and peak memory.
//!
//! For each database (SQLite in a temporary file, opened as tollbooth opens it; PostgreSQL when
//! `--postgres URL` or `TOLLBOOTH_BENCH_POSTGRES_URL` names a server: a fresh database, dropped
//! afterwards), in this process, through the library (no server):
//!
//! 1. seed, by SQL and outside the clock: one api and a monthly tier (a $25 fee, $0.001 a call
//!    after 5,000 included) made with the catalog code, then N subscribers and N subscriptions on
//!    it, started 10 days ago, each with its Stripe Customer and Stripe Subscription in the
//!    mirror (so the job reports them), and `--hours H` hourly usage rows each (default 24: a
//!    day's worth, all of them changed since the last run, as in a steady-state daily run);
//! 2. run 1: `BillingJob::run_day(today)`, the first run: one invoice item created per
//!    subscription;
//! 3. H more hourly rows per subscription (today's), then run 2: `run_day(tomorrow)`: every item
//!    updated to its new amount.
//!
//! Per run: subscriptions per second, the report's counts (checked: every subscription reported,
//! one Stripe request each, no failures), the peak resident memory of the process (`VmHWM`,
//! reset before each run through `/proc/self/clear_refs`) and `VmRSS` sampled every 100 ms by a
//! side task, printed against the share of Stripe requests done, to show whether memory stays
//! flat. The mock Stripe is a small axum server in this process (its own thread and runtime, as
//! wiremock's are; see [`MockStripe`] for why not wiremock) that answers `POST /v1/invoiceitems`
//! and `POST /v1/invoiceitems/{id}` with Stripe's example invoice item
//! (`wiremock-fixtures/invoiceitem.json`) under a fresh or the path's id, and keeps nothing. The figures therefore include the mock's CPU on the same machine, and the SQLite
//! page cache, which lives in this process.
//!
//! Run with `cargo bench --bench billing` (SQLite, 100,000 subscriptions), adding
//! `-- --postgres postgres://postgres@127.0.0.1:5432/postgres` to measure PostgreSQL too.
//! For a quick try: `-- --subscriptions N` (default 100,000), `-- --hours H` (1 to 24, default
//! 24), `-- --only sqlite|postgres`.
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Context, Result, bail, ensure};
use chrono::{Days, NaiveDate, Utc};
use serde_json::json;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::Database;
use support::seed::{Seeder, catalog};
use tollbooth::billing::{BillingJob, RunReport};
use tollbooth::config::Settings;
use tollbooth::store::Store;
use tollbooth::stripe::Stripe;

/// Subscriptions of one run (`--subscriptions N` changes it).
const SUBSCRIPTIONS: usize = 100_000;
/// Hourly usage rows per subscription and run (`--hours H` changes it).
const HOURS: usize = 24;
/// The subscriptions started this many days before today: well inside their first month.
const STARTED_DAYS_AGO: u64 = 10;
const HOUR_MS: i64 = 3_600_000;
/// How often the side task samples `VmRSS`.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const POSTGRES_VAR: &str = "TOLLBOOTH_BENCH_POSTGRES_URL";

/// Goal of issue 5.
const GOAL_PER_SECOND: f64 = 2_000.0;

struct Options {
    subscriptions: usize,
    hours: usize,
    postgres: Option<String>,
    only: Option<Database>,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        subscriptions: SUBSCRIPTIONS,
        hours: HOURS,
        postgres: std::env::var(POSTGRES_VAR).ok().filter(|v| !v.is_empty()),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--subscriptions" => {
                options.subscriptions = args
                    .next()
                    .context("--subscriptions needs a number")?
                    .parse()
                    .context("--subscriptions needs a number")?;
            }
            "--hours" => {
                options.hours = args
                    .next()
                    .context("--hours needs a number")?
                    .parse()
                    .context("--hours needs a number")?;
            }
            "--postgres" => {
                options.postgres = Some(args.next().context("--postgres needs a URL")?);
            }
            "--only" => {
                options.only = Some(match args.next().as_deref() {
                    Some("sqlite") => Database::Sqlite,
                    Some("postgres") => Database::Postgres,
                    _ => bail!("--only needs sqlite or postgres"),
                });
            }
            // Anything else (cargo passes `--bench`) is not ours.
            _ => {}
        }
    }
    ensure!(
        options.subscriptions > 0,
        "--subscriptions must be positive"
    );
    ensure!((1..=24).contains(&options.hours), "--hours must be 1 to 24");
    Ok(options)
}

fn main() -> Result<()> {
    let options = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut databases = Vec::new();
    if options.only != Some(Database::Postgres) {
        databases.push(Database::Sqlite);
    }
    if options.only != Some(Database::Sqlite) {
        match &options.postgres {
            Some(_) => databases.push(Database::Postgres),
            None if options.only == Some(Database::Postgres) => {
                bail!("--only postgres needs --postgres URL or {POSTGRES_VAR}")
            }
            None => {}
        }
    }
    println!(
        "daily billing run: {} subscriptions, {} hourly usage rows each per run, mock Stripe answering at once, pacing lifted",
        support::thousands(options.subscriptions as f64),
        options.hours
    );
    let mut rows = Vec::new();
    for database in databases {
        println!("\n== {} ==", database.label());
        let outcome = runtime.block_on(measure(database, &options))?;
        rows.extend(outcome);
    }
    println!(
        "\n| database | run | subscriptions | seconds | subscriptions/s | goal ≥ 2,000/s | RSS before MiB | peak RSS (VmHWM) MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {:.0} | {:.0} |",
            row.database.label(),
            row.run,
            support::thousands(row.subscriptions as f64),
            row.seconds,
            support::thousands(row.per_second),
            if row.per_second >= GOAL_PER_SECOND {
                "met"
            } else {
                "**not met**"
            },
            row.rss_before_kib as f64 / 1024.0,
            row.peak_kib as f64 / 1024.0,
        );
    }
    Ok(())
}

/// One measured run, for the summary.
struct Row {
    database: Database,
    run: &'static str,
    subscriptions: usize,
    seconds: f64,
    per_second: f64,
    rss_before_kib: u64,
    peak_kib: u64,
}

async fn measure(database: Database, options: &Options) -> Result<Vec<Row>> {
    let fresh = FreshDatabase::create(database, options.postgres.as_deref()).await?;
    let outcome = measure_on(database, &fresh.url, options).await;
    fresh.drop_database().await?;
    outcome
}

async fn measure_on(database: Database, url: &str, options: &Options) -> Result<Vec<Row>> {
    let n = options.subscriptions;
    let hours = options.hours;
    let store = Store::connect(url).await?;
    store.migrate().await?;

    let today = Utc::now().date_naive();
    let tomorrow = today.checked_add_days(Days::new(1)).context("date")?;
    let started = today
        .checked_sub_days(Days::new(STARTED_DAYS_AGO))
        .context("date")?;
    let midnight = |day: NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis()
    };

    let clock = Instant::now();
    let tier_version = catalog(&store).await?;
    let mut seeder = Seeder::connect(database, url).await?;
    seeder
        .subscriptions(n, &tier_version, midnight(started))
        .await?;
    // Run 1's usage: the last `hours` hours before today.
    seeder
        .usage(n, hours, midnight(today) - hours as i64 * HOUR_MS, 0)
        .await?;
    println!(
        "  seeded {} subscriptions and {} usage rows in {:.1} s",
        support::thousands(n as f64),
        support::thousands((n * hours) as f64),
        clock.elapsed().as_secs_f64()
    );

    let mock = MockStripe::start()?;
    let mut settings = Settings::with_database(url).map_err(|e| anyhow::anyhow!("{e}"))?;
    settings.stripe_secret_key = Some("sk_test_tollbooth_bench".to_owned().into());
    settings.stripe_api_base = mock.uri.clone();
    settings.stripe_rate_limit = std::num::NonZeroU32::new(1_000_000).context("non-zero")?;
    let stripe = Stripe::from_settings(&settings)?;
    let job = BillingJob {
        store: &store,
        stripe: &stripe,
        owner: "bench",
        retention: Duration::from_secs(35 * 86_400),
        lease: Duration::from_secs(3_600),
    };

    let mut rows = Vec::new();
    let report = timed_run(&job, today, &mock, n, database, "1: create", &mut rows).await?;
    ensure!(
        report.items_created == n as u64 && report.items_updated == 0,
        "run 1 should create one item per subscription: {} created, {} updated",
        report.items_created,
        report.items_updated
    );

    // Run 2's usage: `hours` more hours, today's.
    let clock = Instant::now();
    seeder
        .usage(n, hours, midnight(today), (n * hours) as i64)
        .await?;
    println!(
        "  seeded {} more usage rows in {:.1} s",
        support::thousands((n * hours) as f64),
        clock.elapsed().as_secs_f64()
    );
    seeder.close().await?;
    let report = timed_run(&job, tomorrow, &mock, n, database, "2: update", &mut rows).await?;
    ensure!(
        report.items_created == 0 && report.items_updated == n as u64,
        "run 2 should update every item: {} created, {} updated",
        report.items_created,
        report.items_updated
    );
    store.close().await;
    Ok(rows)
}

/// One `run_day`, timed, with memory watched; checks that every subscription was reported once.
async fn timed_run(
    job: &BillingJob<'_>,
    day: NaiveDate,
    mock: &MockStripe,
    n: usize,
    database: Database,
    run: &'static str,
    rows: &mut Vec<Row>,
) -> Result<RunReport> {
    let requests_before = mock.requests.load(Ordering::Relaxed);
    let hwm_reset = reset_peak_rss();
    let rss_before = proc_status_kib("VmRSS")?;
    let sampler = Sampler::start(mock.requests.clone(), requests_before);

    let clock = Instant::now();
    let report = job.run_day(day).await?;
    let seconds = clock.elapsed().as_secs_f64();

    let samples = sampler.stop().await;
    let peak = proc_status_kib("VmHWM")?;
    let requests = mock.requests.load(Ordering::Relaxed) - requests_before;
    ensure!(report.outcome == "done", "run {day}: {}", report.outcome);
    ensure!(
        report.failures.is_empty(),
        "run {day}: {} failures, the first: {:?}",
        report.failures.len(),
        report.failures.first()
    );
    ensure!(
        report.subscriptions_reported == n as u64 && requests == n as u64,
        "run {day}: {} subscriptions reported and {requests} Stripe requests for {n} subscriptions",
        report.subscriptions_reported
    );
    let per_second = n as f64 / seconds;
    println!(
        "  run {run} ({day}): {} subscriptions in {seconds:.1} s = {} subscriptions/s (goal ≥ {}: {}); {} items created, {} updated, {} Stripe requests",
        support::thousands(n as f64),
        support::thousands(per_second),
        support::thousands(GOAL_PER_SECOND),
        if per_second >= GOAL_PER_SECOND {
            "met"
        } else {
            "not met"
        },
        report.items_created,
        report.items_updated,
        requests,
    );
    println!(
        "    RSS before {:.1} MiB; peak (VmHWM{}) {:.1} MiB",
        rss_before as f64 / 1024.0,
        if hwm_reset {
            ", reset before the run"
        } else {
            ", NOT reset: includes seeding"
        },
        peak as f64 / 1024.0
    );
    println!(
        "    VmRSS by Stripe requests done: {}",
        rss_curve(&samples, n)
    );
    rows.push(Row {
        database,
        run,
        subscriptions: n,
        seconds,
        per_second,
        rss_before_kib: rss_before,
        peak_kib: peak,
    });
    Ok(report)
}

/// A mock Stripe that answers invoice item writes at once, counting them and keeping nothing
/// else. It is a small axum server on a thread and runtime of its own, as wiremock runs its
/// servers: wiremock 0.6.5 itself cannot be used here, because every mock keeps a copy of each
/// request it matched (`MountedMock::matched_requests`, about 7.5 KiB a request), even with
/// request recording disabled, which grows this process by ~750 MiB over 100,000 requests.
struct MockStripe {
    uri: String,
    requests: Arc<AtomicU64>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl MockStripe {
    fn start() -> Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let items = Arc::new(InvoiceItems::new(requests.clone()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let uri = format!("http://{}", listener.local_addr()?);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .route(
                "/v1/invoiceitems",
                axum::routing::post({
                    let items = items.clone();
                    move || async move { items.answer(None) }
                }),
            )
            .route(
                "/v1/invoiceitems/{id}",
                axum::routing::post(
                    move |axum::extract::Path(id): axum::extract::Path<String>| async move {
                        items.answer(Some(id))
                    },
                ),
            );
        std::thread::Builder::new()
            .name("mock-stripe".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the mock Stripe's runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("the mock's listener");
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                        .expect("the mock Stripe serves");
                });
            })?;
        Ok(Self {
            uri,
            requests,
            _shutdown: shutdown,
        })
    }
}

/// Stripe's example invoice item under a new id (create) or the path's id (update).
struct InvoiceItems {
    /// The serialized example, cut where its id goes.
    before_id: String,
    after_id: String,
    made: AtomicU64,
    requests: Arc<AtomicU64>,
}

impl InvoiceItems {
    fn new(requests: Arc<AtomicU64>) -> Self {
        const MARK: &str = "ii_BENCH_ID_MARK";
        let path = format!(
            "{}/wiremock-fixtures/invoiceitem.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut object: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
        object["id"] = json!(MARK);
        let body = object.to_string();
        let (before, after) = body.split_once(MARK).expect("the id is in the body");
        Self {
            before_id: before.to_owned(),
            after_id: after.to_owned(),
            made: AtomicU64::new(0),
            requests,
        }
    }

    fn answer(&self, id: Option<String>) -> impl axum::response::IntoResponse + use<> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let id = id.unwrap_or_else(|| {
            format!("ii_bench{}", self.made.fetch_add(1, Ordering::Relaxed) + 1)
        });
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            format!("{}{id}{}", self.before_id, self.after_id),
        )
    }
}

/// Samples `VmRSS` and the Stripe requests done so far, until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(u64, u64)>>,
}

impl Sampler {
    fn start(requests: Arc<AtomicU64>, before: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(rss) = proc_status_kib("VmRSS") {
                    samples.push((requests.load(Ordering::Relaxed) - before, rss));
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            samples
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// `VmRSS` at 0, 10, 25, 50, 75, 90 and 100 % of the run's Stripe requests, and the largest sample.
fn rss_curve(samples: &[(u64, u64)], n: usize) -> String {
    let mut parts = Vec::new();
    for percent in [0_u64, 10, 25, 50, 75, 90, 100] {
        let wanted = n as u64 * percent / 100;
        if let Some((_, rss)) = samples.iter().find(|(done, _)| *done >= wanted) {
            parts.push(format!("{percent} %: {:.1}", *rss as f64 / 1024.0));
        }
    }
    let max = samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0);
    format!(
        "{} MiB; largest sample {:.1} MiB ({} samples)",
        parts.join(", "),
        max as f64 / 1024.0,
        samples.len()
    )
}

/// A field of `/proc/self/status`, in KiB.
fn proc_status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{field} in /proc/self/status"))
}

/// Resets `VmHWM` to the current RSS (Linux: `5` to `clear_refs`); answers whether it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A fresh database: a SQLite file in a temporary directory, or a new PostgreSQL database.
struct FreshDatabase {
    url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl FreshDatabase {
    async fn create(database: Database, server: Option<&str>) -> Result<Self> {
        match database {
            Database::Sqlite => {
                let dir = tempfile::tempdir()?;
                Ok(Self {
                    url: format!("sqlite://{}/tollbooth.db", dir.path().display()),
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Database::Postgres => {
                let server = server.context("PostgreSQL needs --postgres URL")?;
                let name = format!("tollbooth_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = PgConnection::connect(server).await?;
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    postgres: Some((server.to_owned(), name)),
                })
            }
        }
    }

    async fn drop_database(self) -> Result<()> {
        if let Some((server, name)) = &self.postgres {
            let mut conn = PgConnection::connect(server).await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await?;
        }
        Ok(())
    }
}
