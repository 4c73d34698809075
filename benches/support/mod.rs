//! What the benches that measure a real `tollbooth serve` process share: finding the release
//! binary, fresh databases, starting and stopping the server, the admin API, `/proc` and
//! `/metrics` readings, the `--postgres` / `--only` flags.
//!
//! Included by each such bench with `mod support;`; a bench uses only part of it.
#![allow(dead_code)]

pub mod seed;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "tba_bench_admin_token_0000000000";
pub const POSTGRES_VAR: &str = "TOLLBOOTH_BENCH_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    pub fn label(self) -> &'static str {
        match self {
            Database::Sqlite => "SQLite",
            Database::Postgres => "PostgreSQL",
        }
    }
}

/// The `tollbooth` binary next to this bench (`target/release/`), built beforehand.
pub fn server_binary() -> Result<PathBuf> {
    let beside_bench = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("tollbooth")));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let in_target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| manifest.join("target"), PathBuf::from)
        .join("release/tollbooth");
    let binary = beside_bench
        .filter(|b| b.is_file())
        .or_else(|| in_target.is_file().then_some(in_target.clone()))
        .with_context(|| {
            format!(
                "{} is missing: run `cargo build --release --bin tollbooth` first",
                in_target.display()
            )
        })?;
    // The server is a separate build: say so when it is older than the sources.
    let built = std::fs::metadata(&binary)?.modified()?;
    let newest_source = ["src", "migrations"]
        .iter()
        .filter_map(|dir| newest_modification(&manifest.join(dir)))
        .max();
    if newest_source.is_some_and(|source| source > built) {
        eprintln!(
            "WARNING: {} is older than src/ or migrations/: run `cargo build --release --bin \
             tollbooth` to measure the current code",
            binary.display()
        );
    }
    Ok(binary)
}

fn newest_modification(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let modified = if path.is_dir() {
            newest_modification(&path)
        } else {
            entry.metadata().ok()?.modified().ok()
        };
        newest = newest.max(modified);
    }
    newest
}

/// A database made for one scenario, dropped after it (PostgreSQL; SQLite files go with the
/// temporary directory).
pub struct FreshDatabase {
    pub url: String,
    /// (the server's URL, the database made on it)
    pub postgres: Option<(String, String)>,
}

impl FreshDatabase {
    /// A fresh database named `name`: a file in `dir` for SQLite, a new database on the
    /// server `postgres` names for PostgreSQL.
    pub async fn create(
        database: Database,
        postgres: Option<&str>,
        dir: &Path,
        name: &str,
    ) -> Result<Self> {
        match database {
            Database::Sqlite => Ok(FreshDatabase {
                url: format!("sqlite://{}/{name}.db", dir.display()),
                postgres: None,
            }),
            Database::Postgres => {
                let server = postgres.context("no PostgreSQL URL")?;
                let database = format!("tollbooth_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = PgConnection::connect(server)
                    .await
                    .with_context(|| format!("connecting to {server}"))?;
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {database}")))
                    .execute(&mut conn)
                    .await?;
                Ok(FreshDatabase {
                    url: with_database(server, &database),
                    postgres: Some((server.to_owned(), database)),
                })
            }
        }
    }

    pub async fn drop_database(self) -> Result<()> {
        if let Some((server, name)) = self.postgres {
            let mut conn = PgConnection::connect(&server).await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
        }
        Ok(())
    }
}

/// The server URL with another database name; a query string (`?host=/run/postgresql`) is kept.
pub fn with_database(server: &str, database: &str) -> String {
    let (path, query) = server
        .split_once('?')
        .map_or((server, None), |(p, q)| (p, Some(q)));
    let base = path.rsplit_once('/').map_or(path, |(base, _)| base);
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The child's environment: ours without any `TOLLBOOTH_*` setting, plus the given ones.
pub fn tollbooth_command(binary: &Path, url: &str, log: &Path) -> Result<Command> {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TOLLBOOTH_") {
            command.env_remove(name);
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    command
        .env("TOLLBOOTH_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(command)
}

/// Applies tollbooth's migrations to a fresh database with `tollbooth migrate`.
pub fn migrate(binary: &Path, url: &str, dir: &Path) -> Result<()> {
    let log = dir.join("migrate.log");
    let status = tollbooth_command(binary, url, &log)?
        .arg("migrate")
        .status()?;
    ensure!(
        status.success(),
        "`tollbooth migrate` failed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    Ok(())
}

/// A `tollbooth serve` child process; killed if dropped before [`Server::stop`].
pub struct Server {
    child: Option<Child>,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: PathBuf,
}

impl Server {
    pub fn start(binary: &Path, url: &str, dir: &Path) -> Result<Self> {
        Self::start_with(binary, url, dir, &[])
    }

    /// Starts `tollbooth serve` with these environment variables set as well.
    pub fn start_with(binary: &Path, url: &str, dir: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let port = free_port()?;
        let log = dir.join("serve.log");
        let child = tollbooth_command(binary, url, &log)?
            .envs(env.iter().copied())
            .arg("serve")
            .env("TOLLBOOTH_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOLLBOOTH_ADMIN_TOKEN", ADMIN_TOKEN)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            pid: child.id(),
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub async fn wait_ready(&self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.base)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("tollbooth was not ready within 60 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `VmHWM` of the server: the most resident memory it has held.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/<pid>/status")
    }

    /// SIGTERM, then waits for the graceful shutdown (the queue is drained first).
    pub fn stop(mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM {} failed", self.pid);
        let mut child = self.child.take().context("already stopped")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(
                    status.success(),
                    "tollbooth exited with {status}:\n{}",
                    self.log_tail()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!("tollbooth did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn admin_post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> Result<Value> {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    ensure!(status.is_success(), "POST {path}: {status} {answer}");
    Ok(answer)
}

/// CPU time (clock ticks) of the server's threads by kind, and of the PostgreSQL backends
/// serving its database: where the batched run's time went.
pub struct CpuSnapshot {
    process: u64,
    threads: HashMap<&'static str, u64>,
    postgres: HashMap<u32, u64>,
    bench: u64,
}

/// utime + stime of a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn process_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_ticks(&s))
        .map_or(0, |(_, t)| t)
}

impl CpuSnapshot {
    pub async fn take(pid: u32, postgres: Option<&str>, database: Option<&str>) -> Self {
        let mut threads: HashMap<&'static str, u64> = HashMap::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let Some((comm, ticks)) = std::fs::read_to_string(task.path().join("stat"))
                    .ok()
                    .and_then(|s| stat_ticks(&s))
                else {
                    continue;
                };
                // sqlx runs each SQLite connection on a thread of its own; the HTTP handlers,
                // JSON parsing, checks and the writer task run on the tokio workers.
                let kind = if comm.starts_with("sqlx-sqlite") {
                    "SQLite threads"
                } else if comm.starts_with("tokio") {
                    "tokio workers"
                } else if comm == "tollbooth" {
                    "main thread (accept loop)"
                } else {
                    "other threads"
                };
                *threads.entry(kind).or_default() += ticks;
            }
        }
        let mut backends = HashMap::new();
        if let (Some(server), Some(database)) = (postgres, database)
            && let Ok(mut conn) = PgConnection::connect(server).await
            && let Ok(pids) =
                sqlx::query_scalar::<_, i32>("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                    .bind(database)
                    .fetch_all(&mut conn)
                    .await
        {
            for backend in pids {
                backends.insert(backend.unsigned_abs(), process_ticks(&backend.to_string()));
            }
        }
        Self {
            process: process_ticks(&pid.to_string()),
            threads,
            postgres: backends,
            bench: process_ticks("self"),
        }
    }

    pub fn report(&self, before: &CpuSnapshot, wall: Duration, clock_ticks: f64) {
        let seconds = |ticks: u64| ticks as f64 / clock_ticks;
        let mut parts = vec![format!(
            "server {:.1} s",
            seconds(self.process.saturating_sub(before.process))
        )];
        let mut kinds: Vec<_> = self.threads.iter().collect();
        kinds.sort();
        for (kind, ticks) in kinds {
            let earlier = before.threads.get(kind).copied().unwrap_or(0);
            parts.push(format!(
                "{kind} {:.1} s",
                seconds(ticks.saturating_sub(earlier))
            ));
        }
        if !self.postgres.is_empty() {
            let backends: u64 = self
                .postgres
                .iter()
                .map(|(pid, ticks)| {
                    ticks.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0))
                })
                .sum();
            parts.push(format!("PostgreSQL backends {:.1} s", seconds(backends)));
        }
        parts.push(format!(
            "bench client {:.1} s",
            seconds(self.bench.saturating_sub(before.bench))
        ));
        println!(
            "  CPU over {:.1} s of wall time (2 cores = {:.1} s): {}",
            wall.as_secs_f64(),
            2.0 * wall.as_secs_f64(),
            parts.join(", ")
        );
    }
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// 12345.6 as `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The databases flags: `--postgres URL` (or `TOLLBOOTH_BENCH_POSTGRES_URL`) and
/// `--only sqlite|postgres`.
#[derive(Debug, Default)]
pub struct DatabaseFlags {
    pub postgres: Option<String>,
    /// `--only sqlite` or `--only postgres`: one database, for a quick try.
    pub only: Option<Database>,
}

impl DatabaseFlags {
    pub fn from_env() -> Self {
        Self {
            postgres: std::env::var(POSTGRES_VAR).ok().filter(|v| !v.is_empty()),
            only: None,
        }
    }

    /// Takes `arg` (and its value from `args`) when it is one of these flags.
    pub fn take(&mut self, arg: &str, args: &mut impl Iterator<Item = String>) -> Result<bool> {
        if arg == "--postgres" {
            self.postgres = Some(args.next().context("--postgres needs a URL")?);
        } else if let Some(url) = arg.strip_prefix("--postgres=") {
            self.postgres = Some(url.to_owned());
        } else if arg == "--only" {
            self.only = match args.next().as_deref() {
                Some("sqlite") => Some(Database::Sqlite),
                Some("postgres") => Some(Database::Postgres),
                other => bail!("--only takes sqlite or postgres, not {other:?}"),
            };
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// The databases to measure, in order; says when PostgreSQL is left out for want of a URL.
    pub fn databases(&self) -> Vec<Database> {
        let mut databases = vec![Database::Sqlite];
        match &self.postgres {
            Some(_) => databases.push(Database::Postgres),
            None => println!(
                "PostgreSQL: not measured (pass `-- --postgres postgres://…` or set {POSTGRES_VAR})"
            ),
        }
        databases.retain(|d| self.only.is_none_or(|only| only == *d));
        databases
    }
}

/// The value of a `/metrics` series summed over its labels; only the lines naming `route` when
/// given.
pub fn metric_sum(text: &str, name: &str, route: Option<&str>) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                && route.is_none_or(|route| line.contains(route))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
