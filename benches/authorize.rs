//! The gateway's access decision, `GET /v1/authorize`, against a real `tollbooth serve` process
//! (issue 6).
//!
//! For each database (SQLite in a temporary file; PostgreSQL when `--postgres URL` or
//! `TOLLBOOTH_BENCH_POSTGRES_URL` names a server), on a fresh database:
//!
//! 0. through the admin API: an api, a tier with a hard quota of 1,000,000,000 calls (so every
//!    decision reads the quota and answers `remaining`), 1,000 subscribers with one subscription
//!    and one consumer key each, and a gateway key;
//! 1. throughput: 32 keep-alive connections, each asking for a random consumer as soon as the last
//!    answer is in, for 10 s after a 1 s warm-up: decisions a second, and every answer that is
//!    not a 200 counted by status;
//! 2. latency: requests paced open-loop at 5,000 a second for 10 s, each counted from the time it
//!    was due (so a late client or a queue counts against the figure): p50, p99, p99.9, max;
//! 3. the server's peak resident memory (`VmHWM`).
//!
//! The requests are written and the answers read by a minimal HTTP/1.1 client on tokio's
//! `TcpStream` (`TCP_NODELAY`, `Content-Length` bodies): the bench shares the machine's cores
//! with the server, and a lighter client leaves more of them to what is measured. Alongside, the
//! CPU time of the server's threads and of the bench, and the time the server itself counted in
//! `/metrics`, to see where the time goes.
//!
//! Run with `cargo bench --bench authorize` (build `target/release/tollbooth` first with
//! `cargo build --release`; the bench refuses to start without it), adding
//! `-- --postgres postgres://postgres@127.0.0.1:5432/postgres` to measure PostgreSQL too;
//! `-- --only sqlite|postgres` measures one database, `-- --seconds N` changes both phases'
//! length (default 10), `-- --clients N` the throughput phase's connections (default 32) and
//! `-- --rate N` the latency phase's requests a second (default 5,000).
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Context, Result, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{
    CpuSnapshot, Database, DatabaseFlags, FreshDatabase, Server, admin_post, clock_ticks,
    metric_sum, server_binary, thousands,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Subscribers, each with one subscription and one consumer key.
const SUBSCRIBERS: usize = 1_000;
/// Made through the admin API this many at a time.
const SETUP_CONCURRENCY: usize = 8;
const HARD_LIMIT: u64 = 1_000_000_000;
const API: &str = "weather";
/// Throughput phase: connections, and the warm-up before the clock starts.
const CLIENTS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(1);
/// Both phases' length (`--seconds N`), and the latency phase's requests a second (`--rate N`).
const SECONDS: u64 = 10;
const RATE: u64 = 5_000;
/// The latency phase's connections: a request that finds them all busy waits for one (the wait
/// counts in its latency). Opening more instead turns a pause of the machine into a burst of
/// connects, whose SYNs overflow the listen backlog and are retried after a whole second.
const LATENCY_CONNECTIONS: usize = 64;

/// Goals of issue 6.
const GOAL_PER_S: f64 = 20_000.0;
const GOAL_P99_MS: f64 = 1.0;

struct Options {
    databases: DatabaseFlags,
    seconds: u64,
    clients: usize,
    rate: u64,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T> {
    value
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{flag} needs a number"))
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        databases: DatabaseFlags::from_env(),
        seconds: SECONDS,
        clients: CLIENTS,
        rate: RATE,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if options.databases.take(&arg, &mut args)? {
            continue;
        }
        match arg.as_str() {
            "--seconds" => options.seconds = number(&arg, args.next())?,
            "--clients" => options.clients = number(&arg, args.next())?,
            "--rate" => options.rate = number(&arg, args.next())?,
            // Anything else (cargo passes `--bench`) is not ours.
            _ => {}
        }
    }
    ensure!(options.seconds > 0, "--seconds must be at least 1");
    ensure!(options.clients > 0, "--clients must be at least 1");
    ensure!(
        (1..=1_000_000).contains(&options.rate),
        "--rate must be 1 to 1,000,000"
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

/// What one database measured.
struct Outcome {
    database: Database,
    decisions_per_s: f64,
    not_ok: u64,
    latency: Latency,
    peak_rss_kib: u64,
}

async fn run(options: Options, binary: PathBuf) -> Result<()> {
    println!(
        "tollbooth access-decision benchmark: {SUBSCRIBERS} consumers; {} connections for {} s \
         (after {} s of warm-up); then {} requests/s paced for {} s",
        options.clients,
        options.seconds,
        WARM_UP.as_secs(),
        options.rate,
        options.seconds
    );
    println!("server: {}", binary.display());
    let clock_ticks = clock_ticks();
    let mut outcomes = Vec::new();
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
        let url = fresh.url.clone();
        let result = measure(database, &options, &binary, &url, dir.path(), clock_ticks).await;
        if let Err(error) = fresh.drop_database().await {
            eprintln!("could not drop a benchmark database: {error:#}");
        }
        outcomes.push(result?);
    }
    print_table(&outcomes);
    Ok(())
}

async fn measure(
    database: Database,
    options: &Options,
    binary: &Path,
    url: &str,
    dir: &Path,
    clock_ticks: f64,
) -> Result<Outcome> {
    let server = Server::start(binary, url, dir)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    server.wait_ready(&client).await?;
    let catalog = Catalog::create(&client, &server.base).await?;
    let target = Target::new(&server.base, &catalog)?;
    target.check().await?;

    // The machine is shared: say how busy it was.
    println!("  load average before the phases: {}", load_average());

    // 1. throughput.
    let cpu_before = CpuSnapshot::take(server.pid, None, None).await;
    let metrics_before = RouteMetrics::scrape(&client, &server.base).await?;
    let throughput = throughput(&target, options.clients, options.seconds).await?;
    let cpu_after = CpuSnapshot::take(server.pid, None, None).await;
    let metrics_after = RouteMetrics::scrape(&client, &server.base).await?;
    println!(
        "  throughput: {} decisions in {:.2} s = {} decisions/s over {} connections; \
         answers other than 200: {}",
        throughput.counted,
        throughput.elapsed.as_secs_f64(),
        thousands(throughput.per_s()),
        options.clients,
        throughput.describe_not_ok()
    );
    // The CPU figures cover the warm-up too.
    cpu_after.report(&cpu_before, throughput.elapsed + WARM_UP, clock_ticks);
    metrics_after.report(&metrics_before);

    // 2. latency, paced.
    let metrics_before = RouteMetrics::scrape(&client, &server.base).await?;
    let latency = paced(&target, options.rate, options.seconds).await?;
    let metrics_after = RouteMetrics::scrape(&client, &server.base).await?;
    println!(
        "  paced: {} requests at {:.0}/s achieved; from the due time p50 {:.3} ms, p99 {:.3} ms, \
         p99.9 {:.3} ms, max {:.3} ms; from the request's own start p50 {:.3} ms, p99 {:.3} ms; \
         written late (the pacing thread, the runtime, waiting for one of the {LATENCY_CONNECTIONS} \
         connections) p99 {:.3} ms; {} requests found every connection busy; answers other than \
         200: {}",
        latency.requests,
        latency.achieved_rate,
        latency.p50_ms,
        latency.p99_ms,
        latency.p999_ms,
        latency.max_ms,
        latency.service_p50_ms,
        latency.service_p99_ms,
        latency.late_p99_ms,
        latency.waited,
        describe_statuses(&latency.not_ok)
    );
    metrics_after.report(&metrics_before);

    println!("  load average after the phases: {}", load_average());

    // 3. memory, then stop.
    let peak_rss_kib = server.peak_rss_kib()?;
    println!(
        "  server peak RSS (VmHWM): {:.1} MiB",
        peak_rss_kib as f64 / 1024.0
    );
    server.stop()?;
    let not_ok = throughput.not_ok.values().sum::<u64>() + latency.not_ok.values().sum::<u64>();
    if not_ok > 0 {
        println!("  NOT every answer was 200: {not_ok} were not");
    }
    Ok(Outcome {
        database,
        decisions_per_s: throughput.per_s(),
        not_ok,
        latency,
        peak_rss_kib,
    })
}

/// What the admin API made: the consumer keys and the gateway key.
struct Catalog {
    consumers: Vec<String>,
    gateway_key: String,
}

impl Catalog {
    async fn create(client: &reqwest::Client, base: &str) -> Result<Self> {
        let started = Instant::now();
        admin_post(
            client,
            base,
            "/v1/apis",
            json!({"slug": API, "name": "Weather API"}),
        )
        .await?;
        admin_post(client, base, "/v1/tiers", json!({
            "slug": "weather-pro", "api": API, "name": "Pro", "currency": "usd",
            "fixed_fee": {"amount": "25.00", "interval": "month", "interval_count": 1},
            "usage": {"model": "package", "free_units": 5000, "package_size": 1000, "package_price": "5.00"},
            "quota": {"hard_limit": HARD_LIMIT}
        }))
        .await?;
        let consumers: Vec<String> = (0..SUBSCRIBERS)
            .map(|i| format!("bench-consumer-{i:04}"))
            .collect();
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..SETUP_CONCURRENCY {
            let (client, base) = (client.clone(), base.to_owned());
            let mine: Vec<(usize, String)> = consumers
                .iter()
                .enumerate()
                .skip(worker)
                .step_by(SETUP_CONCURRENCY)
                .map(|(i, key)| (i, key.clone()))
                .collect();
            workers.spawn(async move {
                for (i, key) in mine {
                    let subscriber = format!("bench-{i:04}");
                    admin_post(
                        &client,
                        &base,
                        "/v1/subscribers",
                        json!({
                            "external_id": subscriber, "name": format!("Subscriber {i}"),
                            "email": format!("billing+{i}@bench.example")
                        }),
                    )
                    .await?;
                    admin_post(
                        &client,
                        &base,
                        "/v1/subscriptions",
                        json!({
                            "external_id": format!("{subscriber}-{API}"), "subscriber": subscriber,
                            "tier": "weather-pro", "consumer_keys": [key]
                        }),
                    )
                    .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = workers.join_next().await {
            done??;
        }
        let gateway = admin_post(client, base, "/v1/gateways", json!({"name": "bench"})).await?;
        let gateway_key = gateway["key"]
            .as_str()
            .context("a gateway without a key")?
            .to_owned();
        println!(
            "  catalog: an api, a tier (hard quota {}), {SUBSCRIBERS} subscribers with a \
             subscription and a consumer key each, a gateway ({:.1} s)",
            thousands(HARD_LIMIT as f64),
            started.elapsed().as_secs_f64()
        );
        Ok(Self {
            consumers,
            gateway_key,
        })
    }
}

/// Where the requests go, and each consumer's request, written out once.
struct Target {
    address: String,
    requests: Vec<Arc<[u8]>>,
}

impl Target {
    fn new(base: &str, catalog: &Catalog) -> Result<Arc<Self>> {
        let address = base
            .strip_prefix("http://")
            .context("the server's base is not http://")?
            .to_owned();
        let requests = catalog
            .consumers
            .iter()
            .map(|consumer| {
                format!(
                    "GET /v1/authorize HTTP/1.1\r\nHost: {address}\r\nX-Tollbooth-Key: {}\r\n\
                     X-Tollbooth-Api: {API}\r\nX-Api-Key: {consumer}\r\n\r\n",
                    catalog.gateway_key
                )
                .into_bytes()
                .into()
            })
            .collect();
        Ok(Arc::new(Self { address, requests }))
    }

    async fn connect(&self) -> Result<Connection> {
        let stream = TcpStream::connect(&self.address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(1024),
        })
    }

    fn random_request(&self, rng: &mut StdRng) -> Arc<[u8]> {
        self.requests[rng.random_range(0..self.requests.len())].clone()
    }

    /// Every consumer is allowed, with the quota's remaining calls; an unknown one is refused.
    /// Consumers refused right after the catalog was made are counted and asked again after the
    /// periodic refresh (every 5 s): the figures are of a fully allowed catalog.
    async fn check(&self) -> Result<()> {
        let mut connection = self.connect().await?;
        for attempt in 1..=3 {
            let mut refused = Statuses::new();
            let mut example = None;
            for request in &self.requests {
                let (status, body) = connection.exchange(request).await?;
                let answer: Value = serde_json::from_slice(&body)?;
                if !(status == 200
                    && answer["allowed"] == json!(true)
                    // Each allowed decision is held against the quota: fewer left each time.
                    && answer["remaining"].as_u64().is_some_and(|left| left < HARD_LIMIT))
                {
                    *refused.entry(status).or_default() += 1;
                    example.get_or_insert_with(|| {
                        let line = String::from_utf8_lossy(request);
                        format!("{}: {status} {answer}", line.lines().next().unwrap_or(""))
                    });
                }
            }
            let Some(example) = example else { break };
            println!(
                "  WARNING: right after the catalog was made ({} consumers made, check {attempt}),                  {} were not allowed as expected ({}); e.g. {example}",
                self.requests.len(),
                refused.values().sum::<u64>(),
                describe_statuses(&refused)
            );
            ensure!(
                attempt < 3,
                "consumers are still refused after the refreshes"
            );
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        let unknown =
            String::from_utf8_lossy(&self.requests[0]).replace("bench-consumer-", "none-");
        let (status, body) = connection.exchange(unknown.as_bytes()).await?;
        ensure!(
            status == 403,
            "an unknown consumer: {status} {}",
            String::from_utf8_lossy(&body)
        );
        println!(
            "  checked: each of the {} consumers is allowed with {} remaining; an unknown one is \
             refused (403)",
            self.requests.len(),
            thousands(HARD_LIMIT as f64)
        );
        Ok(())
    }
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet taken.
    buffer: Vec<u8>,
}

impl Connection {
    /// Writes the request and reads the whole answer: its status and body.
    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end])?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {head:?}"))?;
        let mut length = None;
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>()?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("a {} body is not read by this client", value.trim());
            }
        }
        let length = length.context("an answer without Content-Length")?;
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        let body = self.buffer[head_end..head_end + length].to_vec();
        self.buffer.drain(..head_end + length);
        Ok((status, body))
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await?;
        ensure!(read > 0, "the server closed the connection");
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Statuses other than 200, counted.
type Statuses = BTreeMap<u16, u64>;

fn describe_statuses(statuses: &Statuses) -> String {
    if statuses.is_empty() {
        return "none".to_owned();
    }
    statuses
        .iter()
        .map(|(status, count)| format!("{count} × {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Throughput {
    /// Answers completed while the clock ran.
    counted: u64,
    elapsed: Duration,
    /// Over the warm-up and the measured time.
    not_ok: Statuses,
}

impl Throughput {
    fn per_s(&self) -> f64 {
        self.counted as f64 / self.elapsed.as_secs_f64()
    }

    fn describe_not_ok(&self) -> String {
        describe_statuses(&self.not_ok)
    }
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

/// `clients` connections, each asking again as soon as it has its answer.
async fn throughput(target: &Arc<Target>, clients: usize, seconds: u64) -> Result<Throughput> {
    let phase = Arc::new(AtomicU8::new(WARMING));
    let counted = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for client in 0..clients {
        let mut connection = target.connect().await?;
        let (target, phase, counted) = (target.clone(), phase.clone(), counted.clone());
        workers.spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64);
            let mut not_ok = Statuses::new();
            let mut mine = 0;
            loop {
                let request = target.random_request(&mut rng);
                let (status, _) = connection.exchange(&request).await?;
                if status != 200 {
                    *not_ok.entry(status).or_default() += 1;
                }
                match phase.load(Ordering::Relaxed) {
                    MEASURING => mine += 1,
                    STOPPED => break,
                    _ => {}
                }
            }
            counted.fetch_add(mine, Ordering::Relaxed);
            anyhow::Ok(not_ok)
        });
    }
    tokio::time::sleep(WARM_UP).await;
    phase.store(MEASURING, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    phase.store(STOPPED, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut not_ok = Statuses::new();
    while let Some(done) = workers.join_next().await {
        for (status, count) in done?? {
            *not_ok.entry(status).or_default() += count;
        }
    }
    Ok(Throughput {
        counted: counted.load(Ordering::Relaxed),
        elapsed,
        not_ok,
    })
}

struct Latency {
    requests: usize,
    achieved_rate: f64,
    /// From the time each request was due.
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// From the time each request was written.
    service_p50_ms: f64,
    service_p99_ms: f64,
    /// How late the client wrote the requests (waiting for a connection included).
    late_p99_ms: f64,
    /// Requests that found every connection busy.
    waited: u64,
    not_ok: Statuses,
}

/// One request's times, and its status.
struct Timing {
    from_due: Duration,
    from_sent: Duration,
    late: Duration,
    status: u16,
}

/// Requests paced open-loop at `rate` a second: request `i` is due `i / rate` s after the start,
/// whether or not earlier answers are in, and its latency is counted from then. A thread of its
/// own sleeps until each due time (tokio's timer has millisecond resolution, too coarse for
/// 200 µs apart) and hands the request to the runtime; the request takes an idle connection,
/// waiting for one when all are busy.
async fn paced(target: &Arc<Target>, rate: u64, seconds: u64) -> Result<Latency> {
    let count = usize::try_from(rate * seconds)?;
    let idle = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..LATENCY_CONNECTIONS {
        let connection = target.connect().await?;
        idle.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
    }
    let free = Arc::new(tokio::sync::Semaphore::new(LATENCY_CONNECTIONS));
    let waited = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Handle::current();
    let (pacer_target, pacer_idle, pacer_free, pacer_waited) =
        (target.clone(), idle.clone(), free.clone(), waited.clone());
    let pacer = std::thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(42);
        let period = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
        let started = Instant::now();
        let mut requests = Vec::with_capacity(count);
        for i in 0..count {
            let due = started + period * u32::try_from(i).unwrap_or(u32::MAX);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let request = pacer_target.random_request(&mut rng);
            let (idle, free, waited) =
                (pacer_idle.clone(), pacer_free.clone(), pacer_waited.clone());
            requests.push(runtime.spawn(async move {
                if free.available_permits() == 0 {
                    waited.fetch_add(1, Ordering::Relaxed);
                }
                let permit = free.acquire_owned().await?;
                let sent = Instant::now();
                let mut connection = idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop()
                    .context("no idle connection under a permit")?;
                let (status, _) = connection.exchange(&request).await?;
                let timing = Timing {
                    from_due: due.elapsed(),
                    from_sent: sent.elapsed(),
                    late: sent.saturating_duration_since(due),
                    status,
                };
                idle.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(connection);
                drop(permit);
                anyhow::Ok(timing)
            }));
        }
        (started, requests)
    });
    let (started, requests) = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    let mut from_due = Vec::with_capacity(count);
    let mut from_sent = Vec::with_capacity(count);
    let mut late = Vec::with_capacity(count);
    let mut not_ok = Statuses::new();
    for request in requests {
        let timing = request.await??;
        from_due.push(timing.from_due.as_secs_f64() * 1e3);
        from_sent.push(timing.from_sent.as_secs_f64() * 1e3);
        late.push(timing.late.as_secs_f64() * 1e3);
        if timing.status != 200 {
            *not_ok.entry(timing.status).or_default() += 1;
        }
    }
    let achieved_rate = count as f64 / started.elapsed().as_secs_f64();
    for sorted in [&mut from_due, &mut from_sent, &mut late] {
        sorted.sort_by(f64::total_cmp);
    }
    Ok(Latency {
        requests: count,
        achieved_rate,
        p50_ms: quantile(&from_due, 0.50),
        p99_ms: quantile(&from_due, 0.99),
        p999_ms: quantile(&from_due, 0.999),
        max_ms: from_due.last().copied().unwrap_or(0.0),
        service_p50_ms: quantile(&from_sent, 0.50),
        service_p99_ms: quantile(&from_sent, 0.99),
        late_p99_ms: quantile(&late, 0.99),
        waited: waited.load(Ordering::Relaxed),
        not_ok,
    })
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The server's own count and time of `/v1/authorize` from `/metrics`.
struct RouteMetrics {
    requests: f64,
    seconds: f64,
}

/// The label `/metrics` gives the route.
const ROUTE_LABEL: &str = "route=\"/v1/authorize\"";

impl RouteMetrics {
    async fn scrape(client: &reqwest::Client, base: &str) -> Result<Self> {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Self {
            requests: metric_sum(
                &text,
                "tollbooth_http_request_duration_seconds_count",
                Some(ROUTE_LABEL),
            ),
            seconds: metric_sum(
                &text,
                "tollbooth_http_request_duration_seconds_sum",
                Some(ROUTE_LABEL),
            ),
        })
    }

    fn report(&self, before: &RouteMetrics) {
        let requests = self.requests - before.requests;
        if requests <= 0.0 {
            println!("  server metrics: no /v1/authorize requests seen in /metrics");
            return;
        }
        println!(
            "  server metrics: {requests:.0} requests to /v1/authorize, {:.1} µs each on average \
             inside the server (from the metrics layer: extractors, the decision, the JSON answer)",
            (self.seconds - before.seconds) / requests * 1e6
        );
    }
}

fn print_table(outcomes: &[Outcome]) {
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "\n| database | decisions/s (goal ≥ {}) | answers not 200 | paced rate/s | p50 ms | p99 ms (goal < {GOAL_P99_MS}) | p99.9 ms | max ms | peak RSS MiB |",
        thousands(GOAL_PER_S)
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {} ({}) | {} | {:.0} | {:.3} | {:.3} ({}) | {:.3} | {:.2} | {:.1} |",
            o.database.label(),
            thousands(o.decisions_per_s),
            mark(o.decisions_per_s >= GOAL_PER_S),
            o.not_ok,
            o.latency.achieved_rate,
            o.latency.p50_ms,
            o.latency.p99_ms,
            mark(o.latency.p99_ms < GOAL_P99_MS),
            o.latency.p999_ms,
            o.latency.max_ms,
            o.peak_rss_kib as f64 / 1024.0,
        );
    }
}
