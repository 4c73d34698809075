//! The schema: migrations applied by every process at start, and the readiness check on them.
//! Several processes may start together on a fresh database (replicas, a `catalog apply` job),
//! so applying them must be safe to race.

use super::{Pool, Store, StoreResult};
use sqlx::{Connection, SqliteConnection};
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a start on SQLite waits for another process's migrations to finish: far longer than
/// the pool's busy timeout, since a migration of a large database may rewrite tables.
const SQLITE_MIGRATION_WAIT: Duration = Duration::from_secs(300);

impl Store {
    /// Applies the migrations this build carries that the database has not seen yet. Processes
    /// doing it at once take turns, and the later ones find nothing left to do: on PostgreSQL
    /// sqlx holds an advisory lock over the whole run (the migrations table is created under
    /// it); on SQLite, which sqlx does not lock, the whole run is one `BEGIN IMMEDIATE`
    /// transaction, so the write lock is taken before the applied migrations are read.
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let options = pool
                    .connect_options()
                    .as_ref()
                    .clone()
                    .busy_timeout(SQLITE_MIGRATION_WAIT);
                let mut conn = SqliteConnection::connect_with(&options).await?;
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                // Each migration's own transaction becomes a savepoint inside this one.
                SQLITE_MIGRATIONS.run(&mut *tx).await?;
                tx.commit().await?;
                conn.close().await?;
            }
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        self.hash_consumer_keys_written_before().await
    }

    /// Migration 0013 made consumer keys hashes; the keys written before it are hashed here, in
    /// one transaction (SQLite has no SHA-256). A process racing another finds them done.
    async fn hash_consumer_keys_written_before(&self) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let keys = tx.unhashed_consumer_keys().await?;
        for key in &keys {
            tx.hash_consumer_key(key).await?;
        }
        tx.commit().await?;
        if !keys.is_empty() {
            tracing::info!(keys = keys.len(), "consumer keys are now kept as hashes");
        }
        Ok(())
    }

    /// Ready means: the database answers, and every migration of this build has been applied.
    pub async fn is_ready(&self) -> StoreResult<bool> {
        let sql = "SELECT version FROM _sqlx_migrations WHERE success";
        let (migrator, applied): (&sqlx::migrate::Migrator, Result<Vec<(i64,)>, sqlx::Error>) =
            match &self.pool {
                Pool::Sqlite(pool) => (
                    &SQLITE_MIGRATIONS,
                    sqlx::query_as(sql).fetch_all(pool).await,
                ),
                Pool::Postgres(pool) => (
                    &POSTGRES_MIGRATIONS,
                    sqlx::query_as(sql).fetch_all(pool).await,
                ),
            };
        let applied = match applied {
            Ok(rows) => rows,
            // No migrations table yet: the database answers, but nothing is applied.
            Err(sqlx::Error::Database(_)) => Vec::new(),
            Err(other) => return Err(other.into()),
        };
        Ok(migrator.iter().all(|migration| {
            applied
                .iter()
                .any(|(version,)| *version == migration.version)
        }))
    }
}
