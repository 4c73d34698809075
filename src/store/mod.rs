//! Storage: the only place that speaks SQL. One [`Store`] over SQLite (the embedded default) or
//! PostgreSQL; where the SQL is the same for both it is written once and run on either pool.

mod access;
mod apis;
mod archive;
mod billing;
mod console;
mod directory;
mod gateways;
mod invoices;
mod metering;
mod meters;
mod migrate;
mod notifications;
mod revenue;
mod stripe;
mod subscribers;
mod subscriptions;
mod thresholds;
mod tiers;
mod unique;

pub use access::{AccessRow, PaymentState};
pub use apis::{Api, ApiMetering, ApiRoutes};
pub use archive::{Archivable, LiveSubscriptions};
pub use billing::{BilledLine, Claim, JobRun};
pub use console::{ConsoleSession, PortalLink};
pub use directory::{ApiPolicyRow, ConsumerRow, GatewayKeyRow};
pub use gateways::Gateway;
pub use invoices::StoredInvoice;
pub use metering::{StoredRecord, UsageIncrement, UsageRow};
pub use meters::{
    MeterIncrement, MeterRow, NewValue, Reading, Readings, StoredEvent, UniqueCount, UniqueValue,
    micros,
};
pub use notifications::{ClaimedNotification, StoredNotification};
pub use revenue::{LedgerLine, UsageTotals};
pub use stripe::{MirrorState, NewIntent, StripeIntent, StripeSubscription};
pub use subscribers::Subscriber;
pub use subscriptions::Subscription;
pub use thresholds::PeriodUsageSum;
pub use tiers::{Tier, TierVersion};
pub use unique::{Taken, UniqueRule};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// What went wrong in the store. Callers match on `Conflict`; the rest are failures to log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is already taken (a slug, an external id, a live consumer key), told in the
    /// catalog's words.
    #[error("{0}")]
    Conflict(Taken),
    /// A stored value no longer parses: the row was written by something other than tollbooth.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    // Not a `source`: the text is in the message already, and an error chain would print it twice.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database could not be opened: where, and what the system said.
    #[error("cannot open the database {target}: {reason}")]
    Open { target: String, reason: String },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let rule = UniqueRule::of(db.constraint(), db.message());
                if rule == UniqueRule::Unnamed {
                    tracing::warn!(
                        constraint = ?db.constraint(),
                        table = ?db.table(),
                        error = db.message(),
                        "a write broke a unique rule tollbooth has no words for; answered as a plain conflict"
                    );
                }
                StoreError::Conflict(Taken { rule, value: None })
            }
            _ => StoreError::Database(error),
        }
    }
}

/// For a statement that takes `value` (a slug, an external id, a consumer key): the error it
/// fails with, naming the value when a unique rule keeps it for another row.
fn taking(value: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |error| match StoreError::from(error) {
        StoreError::Conflict(taken) => StoreError::Conflict(Taken {
            value: Some(value.to_owned()),
            ..taken
        }),
        other => other,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database behind tollbooth. Cheap to clone: it holds a connection pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

/// One unit of work: everything done through it commits together or not at all.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs the same expression on whichever connection a [`Tx`] holds: for SQL that both databases
/// understand (`$1` placeholders work on both).
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::store::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

/// The rows of a SQLite query read as one JSON array: `row` is a `json_array` of the columns and
/// `from` the rest of the query (` FROM … WHERE …`). SQLite's driver hands rows over one at a time,
/// which for thousands of rows costs more than reading them. `T` reads one array of the columns in
/// their order.
async fn sqlite_json_rows<T: serde::de::DeserializeOwned>(
    conn: &mut sqlx::SqliteConnection,
    row: &str,
    from: &str,
) -> StoreResult<Vec<T>> {
    let sql = format!("SELECT json_group_array({row}){from}");
    let text: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(conn)
        .await?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{from}: {e}")))
}

/// Opens a SQLite pool. Processes that start together on a fresh file (replicas, a `catalog
/// apply` job) can find it locked while the first one sets WAL mode, which SQLite answers with
/// "database is locked" at once rather than waiting out the busy timeout: such an open is tried
/// again, a few times.
async fn open_sqlite(
    options: SqliteConnectOptions,
    max_connections: u32,
) -> Result<sqlx::SqlitePool, sqlx::Error> {
    let mut attempt = 0;
    loop {
        let opened = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options.clone())
            .await;
        match opened {
            Err(sqlx::Error::Database(error))
                if attempt < 10 && is_busy(error.code().as_deref()) =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// What stopped a SQLite file from opening, in the system's words where SQLite has none
/// (`(code: 14) unable to open database file` names neither the file nor the cause).
fn sqlite_open_problem(path: &std::path::Path, error: &sqlx::Error) -> String {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    if !directory.is_dir() {
        return format!("its directory {} does not exist", directory.display());
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    match opened {
        Err(os) => format!("{os} (the user running tollbooth must be able to write it)"),
        Ok(_) => format!(
            "{error} (SQLite also writes {name}-wal and {name}-shm beside it: the directory {} \
             must be writable by the user running tollbooth)",
            directory.display(),
            name = path.display()
        ),
    }
}

/// SQLITE_BUSY, or one of its extended codes (`(code: 5) database is locked`).
fn is_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

impl Store {
    /// Opens the database at `url` (`sqlite://…` or `postgres://…`); a SQLite file is created if missing.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let max_connections = if url.starts_with("sqlite:") { 8 } else { 16 };
        Self::connect_with(url, max_connections).await
    }

    /// Opens the database with a pool of its own of at most `max_connections`: the ingestion
    /// writers get one, so that no storm of admin requests can keep them waiting for a connection.
    pub async fn connect_with(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL with NORMAL is durable against a process crash; FULL also survives power loss.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let path = options.get_filename().to_owned();
            let pool = open_sqlite(options, max_connections)
                .await
                .map_err(|error| StoreError::Open {
                    target: path.display().to_string(),
                    reason: sqlite_open_problem(&path, &error),
                })?;
            Pool::Sqlite(pool)
        } else {
            // Notices (`relation … already exists, skipping`) are not for the operator's log.
            let options =
                PgConnectOptions::from_str(url)?.options([("client_min_messages", "warning")]);
            let target = format!(
                "{} at {}:{} as {}",
                options.get_database().unwrap_or("(the user's database)"),
                options.get_host(),
                options.get_port(),
                options.get_username()
            );
            // One connection first, so that a refused or unknown server is told at once and in
            // the system's words, not as a pool that timed out after its acquire timeout.
            let first = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
                .await
                .map_err(|error| StoreError::Open {
                    target: target.clone(),
                    reason: error.to_string(),
                })?;
            let _ = sqlx::Connection::close(first).await;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|error| StoreError::Open {
                    target,
                    reason: error.to_string(),
                })?;
            Pool::Postgres(pool)
        };
        Ok(Self { pool })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a unit of work that reads and writes. On SQLite it takes the write lock at once,
    /// so two writers queue on the busy timeout instead of failing to upgrade a read lock.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Starts a unit of work that only reads.
    pub async fn begin_read(&self) -> StoreResult<Tx> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A read transaction whose statements all see one snapshot: SQLite's read transaction
    /// does (WAL), PostgreSQL's only at REPEATABLE READ.
    pub async fn begin_snapshot(&self) -> StoreResult<Tx> {
        let mut tx = self.begin_read().await?;
        if let Tx::Postgres(conn) = &mut tx {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut **conn)
                .await?;
        }
        Ok(tx)
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx {
    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Reads a setting tollbooth keeps for itself.
    pub async fn setting(&mut self, name: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT value FROM settings WHERE name = $1";
        let row: Option<(String,)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(name)
            .fetch_optional(conn)
            .await?);
        Ok(row.map(|(value,)| value))
    }

    /// Writes a setting, in place of the value it had.
    pub async fn set_setting(&mut self, name: &str, value: &str) -> StoreResult<()> {
        let sql = "INSERT INTO settings (name, value) VALUES ($1, $2) \
                   ON CONFLICT (name) DO UPDATE SET value = excluded.value";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(name)
            .bind(value)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Writes a setting unless it is already set; answers whether this call set it.
    pub async fn set_setting_once(&mut self, name: &str, value: &str) -> StoreResult<bool> {
        let sql =
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
        let result = on_tx!(self, |conn| sqlx::query(sql)
            .bind(name)
            .bind(value)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(result == 1)
    }
}

/// The current time as stored: Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stored JSON column read back into its domain type.
fn from_json<T: serde::de::DeserializeOwned>(column: &str, json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// One page of a list, ordered by id, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

impl<T> Page<T> {
    /// Cuts a fetch of `limit + 1` rows into a page and the `has_more` flag.
    fn from_rows(mut items: Vec<T>, limit: u32) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let has_more = items.len() > limit;
        items.truncate(limit);
        Self { items, has_more }
    }
}

impl PageRequest {
    /// The first `limit` rows.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    pub(crate) fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    pub(crate) fn after(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }
}
