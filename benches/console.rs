//! The console's overview of a provider with many subscriptions and a month of hourly usage each
//! (issue 16's goal: under 200 ms), and `GET /v1/revenue` on its own, against a real
//! `tollbooth serve` (the release binary) on each database.
//!
//! Seeded by SQL outside the clock: one api, a monthly tier ($25 and $0.001 a call after 5,000
//! included), N subscriptions started a month ago (their first period, started last month, closed today;
//! their second, started today, open),
//! and one usage row for every subscription and hour of the last `--days` days (1,000 calls
//! each). The server runs in ledger mode with the billing job off, so nothing else runs.
//!
//! Measured: the console is signed into as a person does (the form, its CSRF cookie), then
//! `GET /console` and `GET /v1/revenue?group_by=tier` are asked in turn, one at a time; each
//! answer is checked (200, the page shows the month's figures). The baseline of the same run is
//! `GET /healthz`, asked the same way: what an answer costs with nothing to compute.
//!
//! Run with `cargo build --release --bin tollbooth && cargo bench --bench console`, adding
//! `-- --postgres postgres://postgres@127.0.0.1:5432/postgres` for PostgreSQL. Options:
//! `--subscriptions N` (default 10,000), `--days D` (default 30), `--rounds R` (default 10),
//! `--only sqlite|postgres`.
// A bench fails loudly on what it did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Context, Result, bail, ensure};
use chrono::{Months, Utc};
use std::time::{Duration, Instant};
use support::seed::{Seeder, catalog};
use support::{ADMIN_TOKEN, DatabaseFlags, FreshDatabase, Server, server_binary, thousands};
use tollbooth::store::Store;

const HOUR_MS: i64 = 3_600_000;
const GOAL_MS: f64 = 200.0;

struct Options {
    databases: DatabaseFlags,
    subscriptions: usize,
    days: usize,
    rounds: usize,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        databases: DatabaseFlags::from_env(),
        subscriptions: 10_000,
        days: 30,
        rounds: 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if options.databases.take(&arg, &mut args)? {
            continue;
        }
        let mut number = |name: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--subscriptions" => options.subscriptions = number("--subscriptions")?,
            "--days" => options.days = number("--days")?,
            "--rounds" => options.rounds = number("--rounds")?,
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    ensure!(
        options.subscriptions > 0 && options.rounds > 0,
        "counts must be positive"
    );
    ensure!((1..=40).contains(&options.days), "--days must be 1 to 40");
    Ok(options)
}

fn main() -> Result<()> {
    let options = parse_args()?;
    let binary = server_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "console overview: {} subscriptions, {} days of hourly usage each ({} rows), {} rounds",
        thousands(options.subscriptions as f64),
        options.days,
        thousands((options.subscriptions * options.days * 24) as f64),
        options.rounds
    );
    let mut rows = Vec::new();
    for database in options.databases.databases() {
        println!("\n== {} ==", database.label());
        let dir = tempfile::tempdir()?;
        let fresh = runtime.block_on(FreshDatabase::create(
            database,
            options.databases.postgres.as_deref(),
            dir.path(),
            "console",
        ))?;
        let outcome =
            runtime.block_on(measure(database, &fresh.url, dir.path(), &binary, &options));
        runtime.block_on(fresh.drop_database())?;
        rows.extend(outcome?);
    }
    println!(
        "\n| database | request | median ms | slowest ms | baseline `/healthz` median ms | goal < 200 ms |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {} |",
            row.database,
            row.request,
            row.median,
            row.slowest,
            row.baseline,
            if row.request != "GET /console" {
                "–"
            } else if row.median < GOAL_MS {
                "met"
            } else {
                "**not met**"
            }
        );
    }
    Ok(())
}

struct Row {
    database: &'static str,
    request: &'static str,
    median: f64,
    slowest: f64,
    baseline: f64,
}

async fn measure(
    database: support::Database,
    url: &str,
    dir: &std::path::Path,
    binary: &std::path::Path,
    options: &Options,
) -> Result<Vec<Row>> {
    let n = options.subscriptions;
    let hours = options.days * 24;
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let today = Utc::now().date_naive();
    let midnight = |day: chrono::NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis()
    };
    // A month ago: the period that ends today started last month, the open one starts today.
    let started = today.checked_sub_months(Months::new(1)).context("date")?;
    let clock = Instant::now();
    let tier_version = catalog(&store).await?;
    store.close().await;
    let mut seeder = Seeder::connect(database, url).await?;
    seeder
        .subscriptions(n, &tier_version, midnight(started))
        .await?;
    let first_hour = midnight(today) + HOUR_MS - hours as i64 * HOUR_MS;
    seeder.usage(n, hours, first_hour, 0).await?;
    seeder.close().await?;
    println!(
        "  seeded {} subscriptions and {} usage rows in {:.1} s",
        thousands(n as f64),
        thousands((n * hours) as f64),
        clock.elapsed().as_secs_f64()
    );

    let server = Server::start_with(binary, url, dir, &[("TOLLBOOTH_BILLING_ENABLED", "false")])?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(300))
        .build()?;
    server.wait_ready(&client).await?;
    let session = sign_in(&client, &server.base).await?;

    let label = database.label();
    let mut rows = Vec::new();
    let healthz = format!("{}/healthz", server.base);
    let console = format!("{}/console", server.base);
    let revenue = format!("{}/v1/revenue?group_by=tier", server.base);
    // One of each first, outside the figures: the caches warm, and the first overview makes
    // the rows of the periods it rates (`usage_periods`), which later ones read.
    for target in [&healthz, &console, &revenue] {
        let (took, _) = get(&client, target, &session).await?;
        println!(
            "  first {}: {took:.1} ms",
            target.trim_start_matches(&server.base)
        );
    }
    let mut baseline = Vec::new();
    let mut pages = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..options.rounds {
        for _ in 0..5 {
            baseline.push(get(&client, &healthz, &session).await?.0);
        }
        let (took, body) = get(&client, &console, &session).await?;
        ensure!(
            body.contains("This month") && body.contains("data-billed"),
            "the overview lacks its figures"
        );
        pages.push(took);
        let (took, body) = get(&client, &revenue, &session).await?;
        ensure!(body.contains("\"open_periods\":"), "no revenue in {body}");
        reports.push(took);
    }
    let (_, body) = get(&client, &revenue, &session).await?;
    let report: serde_json::Value = serde_json::from_str(&body)?;
    let figures = &report["currencies"][0];
    ensure!(
        figures["open_periods"].as_u64() == Some(n as u64),
        "every subscription should have its open period this month: {figures}"
    );
    let baseline = median(&mut baseline);
    for (request, mut took) in [
        ("GET /console", pages),
        ("GET /v1/revenue?group_by=tier", reports),
    ] {
        let row = Row {
            database: label,
            request,
            median: median(&mut took),
            slowest: took.iter().copied().fold(0.0, f64::max),
            baseline,
        };
        println!(
            "  {request}: median {:.1} ms, slowest {:.1} ms (baseline /healthz {:.2} ms)",
            row.median, row.slowest, row.baseline
        );
        rows.push(row);
    }
    println!(
        "  server peak RSS {:.0} MiB",
        server.peak_rss_kib()? as f64 / 1024.0
    );
    server.stop()?;
    Ok(rows)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Signs in through the form as a browser does; answers the `Cookie` header of the session.
async fn sign_in(client: &reqwest::Client, base: &str) -> Result<String> {
    let form = client.get(format!("{base}/console/sign-in")).send().await?;
    let pre = form
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .find_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .context("no sign-in cookie")?;
    let html = form.text().await?;
    let at = html
        .find("name=\"csrf\" value=\"")
        .context("no csrf input")?
        + 19;
    let csrf = html[at..at + 64].to_owned();
    let signed = client
        .post(format!("{base}/console/sign-in"))
        .header(reqwest::header::COOKIE, pre)
        .form(&[("csrf", csrf.as_str()), ("token", ADMIN_TOKEN)])
        .send()
        .await?;
    ensure!(
        signed.status() == reqwest::StatusCode::SEE_OTHER,
        "sign-in answered {}",
        signed.status()
    );
    signed
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            let text = v.to_str().ok()?;
            text.starts_with("tb_session=")
                .then(|| text.split(';').next().unwrap_or_default().to_owned())
        })
        .context("no session cookie")
}

/// One GET with the session and the admin token; answers its milliseconds and body.
async fn get(client: &reqwest::Client, url: &str, session: &str) -> Result<(f64, String)> {
    let clock = Instant::now();
    let response = client
        .get(url)
        .header(reqwest::header::COOKIE, session)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    let took = clock.elapsed().as_secs_f64() * 1000.0;
    ensure!(
        status.is_success(),
        "{url}: {status} {}",
        &body[..body.len().min(300)]
    );
    Ok((took, body))
}
