//! The access decision through real NGINX (issue "gateway access decision"), with the shipped
//! recipe `integrations/nginx/tollbooth.conf`, a toy upstream in this process and a real
//! `tollbooth serve` (SQLite, ledger mode; the decision is answered from memory).
//!
//! Measured in the same run, each phase `REQUESTS` calls from `CLIENTS` keep-alive clients:
//!
//! - baseline: a call through NGINX to the upstream without `auth_request` (a second server block
//!   proxying to the same upstream): p50, p99;
//! - with the decision: the same call through the recipe's `/weather/` location; what it adds;
//! - tollbooth's own share: `GET /v1/authorize` straight to tollbooth, as NGINX's subrequest asks;
//! - the hard quota's overshoot: a subscription with `hard_limit` 1,000 called 1,100 times through
//!   NGINX at about 600 calls a second (the outside tester's rate) while the recipe's shipper
//!   (`tollbooth_records.lua`) posts the records of the served calls once a second; the calls
//!   served past 1,000, and the billable calls tollbooth counted from those records.
//!
//! Run with `cargo build --release --bin tollbooth && cargo bench --bench gateway` (needs
//! `/usr/sbin/nginx` and its Lua module: `apt-get install nginx libnginx-mod-http-lua`).
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{ADMIN_TOKEN, Database, FreshDatabase, Server, admin_post, free_port, server_binary};

const CLIENTS: usize = 2;
const REQUESTS: usize = 4_000;
const QUOTA: u64 = 1_000;
const QUOTA_CALLS: usize = 1_100;
const QUOTA_RATE: f64 = 600.0;
const NGINX: &str = "/usr/sbin/nginx";

fn main() -> Result<()> {
    let binary = server_binary()?;
    ensure!(
        Path::new(NGINX).is_file(),
        "{NGINX} is missing: apt-get install nginx"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(binary))
}

async fn run(binary: PathBuf) -> Result<()> {
    println!(
        "tollbooth through NGINX auth_request: {REQUESTS} calls a phase from {CLIENTS} clients; \
         quota {QUOTA} called {QUOTA_CALLS} times at {QUOTA_RATE:.0}/s"
    );
    let dir = tempfile::tempdir()?;
    let database = FreshDatabase::create(Database::Sqlite, None, dir.path(), "tollbooth").await?;
    let server = Server::start(&binary, &database.url, dir.path())?;
    let client = reqwest::Client::new();
    server.wait_ready(&client).await?;
    let key = catalog(&client, &server.base).await?;
    let upstream = upstream().await?;
    let nginx = Nginx::start(dir.path(), &server.base, &upstream, &key)?;
    nginx.wait(&client).await?;

    let baseline = latencies(&client, &nginx.url("/plain/forecast"), &[]).await?;
    let decided = latencies(
        &client,
        &nginx.url("/weather/forecast"),
        &[("x-api-key", "k1")],
    )
    .await?;
    let own = latencies(
        &client,
        &format!("{}/v1/authorize", server.base),
        &[
            ("x-api-key", "k1"),
            ("x-tollbooth-key", &key),
            ("x-tollbooth-api", "weather"),
            ("x-forwarded-uri", "/weather/forecast"),
        ],
    )
    .await?;
    println!("\n| path | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for (name, figures) in [
        ("NGINX → upstream (no auth): baseline", &baseline),
        ("NGINX auth_request → tollbooth, then upstream", &decided),
        ("GET /v1/authorize straight to tollbooth", &own),
    ] {
        println!("| {name} | {:.3} | {:.3} |", figures.0, figures.1);
    }
    println!(
        "added by the decision: p50 {:.3} ms, p99 {:.3} ms; tollbooth's own answer p50 {:.3} ms",
        decided.0 - baseline.0,
        decided.1 - baseline.1,
        own.0
    );
    ensure!(
        upstream.served.load(Ordering::SeqCst) >= 2 * REQUESTS as u64,
        "the upstream did not serve every call"
    );

    let served = overshoot(&client, &nginx).await?;
    println!(
        "\nhard quota {QUOTA}: {served} of {QUOTA_CALLS} calls served at {QUOTA_RATE:.0}/s with the \
         shipper posting records each second: overshoot {}",
        served.saturating_sub(QUOTA)
    );
    // The shipper posts once a second: wait for its last post.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let billed = billed(&client, &server.base).await?;
    println!("billable calls tollbooth counted for it: {billed}");
    drop(nginx);
    server.stop()?;
    Ok(())
}

/// An api, a tier without a real limit (`k1`) and one with the quota (`capped`), and a gateway
/// with NGINX's access settings; answers the gateway's key.
async fn catalog(client: &reqwest::Client, base: &str) -> Result<String> {
    let tier = |slug: &str, limit: u64| {
        json!({"slug": slug, "api": "weather", "name": slug, "currency": "usd",
            "usage": {"model": "per_unit", "unit_price": "0.001"}, "quota": {"hard_limit": limit}})
    };
    let steps = [
        (
            "/v1/apis",
            json!({"slug": "weather", "name": "Weather API"}),
        ),
        ("/v1/tiers", tier("weather-open", 1_000_000_000)),
        ("/v1/tiers", tier("weather-capped", QUOTA)),
        (
            "/v1/subscribers",
            json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "acme-open", "subscriber": "acme", "tier": "weather-open",
                "consumer_keys": ["k1"]}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "acme-capped", "subscriber": "acme", "tier": "weather-capped",
                "consumer_keys": ["capped"]}),
        ),
    ];
    for (path, body) in steps {
        admin_post(client, base, path, body).await?;
    }
    let gateway = admin_post(
        client,
        base,
        "/v1/gateways",
        json!({"name": "nginx", "access": {"refusal_status": 403}}),
    )
    .await?;
    Ok(gateway["key"].as_str().context("no key")?.to_owned())
}

struct Upstream {
    address: String,
    served: Arc<AtomicU64>,
}

async fn upstream() -> Result<Upstream> {
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            axum::Json(json!({"forecast": "sunny"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Upstream { address, served })
}

struct Nginx {
    child: Child,
    /// The recipe's server, and the second one without `auth_request`.
    port: u16,
    plain: u16,
}

impl Nginx {
    fn start(dir: &Path, tollbooth: &str, upstream: &Upstream, key: &str) -> Result<Self> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let recipe = std::fs::read_to_string(manifest.join("integrations/nginx/tollbooth.conf"))?;
        std::fs::copy(
            manifest.join("integrations/nginx/tollbooth_records.lua"),
            dir.join("tollbooth_records.lua"),
        )?;
        let (port, plain) = (free_port()?, free_port()?);
        let mut text = recipe;
        for (from, to) in [
            (
                "127.0.0.1:8080",
                tollbooth.trim_start_matches("http://").to_owned(),
            ),
            ("127.0.0.1:9000", upstream.address.clone()),
            ("127.0.0.1:8000", format!("127.0.0.1:{port}")),
            ("tbg_YOUR_GATEWAY_KEY", key.to_owned()),
            ("/etc/nginx/tollbooth/", format!("{}/", dir.display())),
        ] {
            ensure!(text.contains(from), "the recipe has no `{from}`");
            text = text.replace(from, &to);
        }
        std::fs::write(dir.join("tollbooth.conf"), text)?;
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
                 load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n\
                 daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n\
                 error_log {d}/nginx-error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
                 include {d}/tollbooth.conf;\n\
                 server {{ listen 127.0.0.1:{plain}; location /plain/ {{ proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\"; proxy_pass http://weather_api; }} }} }}\n"
            ),
        )?;
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Self { child, port, plain })
    }

    fn url(&self, path: &str) -> String {
        let port = if path.starts_with("/plain/") {
            self.plain
        } else {
            self.port
        };
        format!("http://127.0.0.1:{port}{path}")
    }

    async fn wait(&self, client: &reqwest::Client) -> Result<()> {
        for _ in 0..200 {
            if client.get(self.url("/plain/ready")).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("NGINX did not start")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(p50, p99)` in ms of `REQUESTS` GETs of `url` from `CLIENTS` clients, after a warm-up; every
/// answer must be 200.
async fn latencies(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(f64, f64)> {
    let request = |client: &reqwest::Client| {
        let mut request = client.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    };
    for _ in 0..200 {
        let status = request(client).send().await?.status();
        ensure!(status == 200, "{url}: {status}");
    }
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, prepared) = (client.clone(), request(client));
        workers.spawn(async move {
            let mut times = Vec::with_capacity(REQUESTS / CLIENTS);
            for _ in 0..REQUESTS / CLIENTS {
                let started = Instant::now();
                let response = prepared.try_clone().context("a GET clones")?.send().await?;
                let status = response.status();
                response.bytes().await?;
                ensure!(status == 200, "{status}");
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            drop(client);
            anyhow::Ok(times)
        });
    }
    let mut times = Vec::with_capacity(REQUESTS);
    while let Some(done) = workers.join_next().await {
        times.extend(done??);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Ok((at(0.50), at(0.99)))
}

/// Calls the capped subscription `QUOTA_CALLS` times at `QUOTA_RATE` through NGINX; answers how
/// many were served (the recipe's shipper posts their records meanwhile).
async fn overshoot(client: &reqwest::Client, nginx: &Nginx) -> Result<u64> {
    let served = Arc::new(AtomicU64::new(0));
    let mut calls = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / QUOTA_RATE));
    for _ in 0..QUOTA_CALLS {
        ticker.tick().await;
        let (caller, url, count) = (
            client.clone(),
            nginx.url("/weather/forecast"),
            served.clone(),
        );
        calls.spawn(async move {
            let response = caller.get(url).header("x-api-key", "capped").send().await?;
            let status = response.status().as_u16();
            if status == 200 {
                count.fetch_add(1, Ordering::SeqCst);
            } else {
                ensure!(
                    status == 429,
                    "neither served nor refused for the quota: {status}"
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = calls.join_next().await {
        done??;
    }
    Ok(served.load(Ordering::SeqCst))
}

/// The capped subscription's billable calls as tollbooth counted them.
async fn billed(client: &reqwest::Client, base: &str) -> Result<i64> {
    let usage: Value = client
        .get(format!(
            "{base}/v1/usage?subscription=acme-capped&granularity=day&from=2000-01-01"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    Ok(usage["data"]
        .as_array()
        .context("no usage rows")?
        .iter()
        .filter_map(|row| row["billable_calls"].as_i64())
        .sum())
}
