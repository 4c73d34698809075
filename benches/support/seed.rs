//! Seeding by plain SQL, outside any clock: the catalog through tollbooth's own code, then many
//! subscribers, subscriptions and hourly usage rows in a few statements.

use super::Database;
use anyhow::Result;
use chrono::Utc;
use serde_json::json;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Connection};
use tollbooth::catalog::{Mode, put_api, put_tier};
use tollbooth::domain::api::ApiSpec;
use tollbooth::domain::tier::TierSpec;
use tollbooth::store::Store;

/// Calls in each hourly row.
pub const CALLS_PER_HOUR: i64 = 1_000;
/// Rows per seeding statement on PostgreSQL (SQLite takes each table in one statement).
const SEED_CHUNK: usize = 50_000;
const HOUR_MS: i64 = 3_600_000;

/// The api and the tier, made with the catalog code; answers the tier version's id.
pub async fn catalog(store: &Store) -> Result<String> {
    let api: ApiSpec = serde_json::from_value(json!({"slug": "weather", "name": "Weather API"}))?;
    let tier: TierSpec = serde_json::from_value(json!({
        "slug": "weather-metered", "api": "weather", "name": "Metered", "currency": "usd",
        "fixed_fee": {"amount": "25.00", "interval": "month"},
        "usage": {"model": "per_unit", "unit_price": "0.001", "free_units": 5000}
    }))?;
    let mut tx = store.begin().await?;
    put_api(&mut tx, &api, Mode::Create).await?;
    let (tier, _) = put_tier(&mut tx, &tier).await?;
    tx.commit().await?;
    Ok(tier.latest.id)
}

/// Writes the seed rows with plain SQL on a connection of its own.
pub enum Seeder {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Seeder {
    pub async fn connect(database: Database, url: &str) -> Result<Self> {
        Ok(match database {
            Database::Sqlite => Seeder::Sqlite(SqliteConnection::connect(url).await?),
            Database::Postgres => Seeder::Postgres(PgConnection::connect(url).await?),
        })
    }

    pub async fn close(self) -> Result<()> {
        match self {
            Seeder::Sqlite(conn) => conn.close().await?,
            Seeder::Postgres(conn) => conn.close().await?,
        }
        Ok(())
    }

    async fn execute(&mut self, sql: String) -> Result<()> {
        let sql = AssertSqlSafe(sql);
        match self {
            Seeder::Sqlite(conn) => {
                sqlx::raw_sql(sql).execute(&mut *conn).await?;
            }
            Seeder::Postgres(conn) => {
                sqlx::raw_sql(sql).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }

    /// `i` over `from..=to` as a row source.
    fn series(&self, from: usize, to: usize) -> String {
        match self {
            Seeder::Sqlite(_) => format!(
                "(WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to}) SELECT i FROM n) AS n"
            ),
            Seeder::Postgres(_) => format!("generate_series({from}::bigint, {to}::bigint) AS n(i)"),
        }
    }

    /// A tollbooth-shaped id (`prefix_` and 32 hex digits) made of the number `expr`.
    fn id(&self, prefix: &str, expr: &str) -> String {
        match self {
            Seeder::Sqlite(_) => format!("printf('{prefix}_%032x', {expr})"),
            Seeder::Postgres(_) => format!("'{prefix}_' || lpad(to_hex({expr}), 32, '0')"),
        }
    }

    /// `(from, to)` pieces of `1..=n`: one on SQLite, chunks on PostgreSQL.
    fn chunks(&self, n: usize) -> Vec<(usize, usize)> {
        let size = match self {
            Seeder::Sqlite(_) => n,
            Seeder::Postgres(_) => SEED_CHUNK,
        };
        (0..n.div_ceil(size))
            .map(|c| (c * size + 1, ((c + 1) * size).min(n)))
            .collect()
    }

    /// `n` subscribers, each with one subscription on `tier_version` started at `started_ms`, a
    /// consumer key, a Stripe Customer and a Stripe Subscription.
    pub async fn subscriptions(
        &mut self,
        n: usize,
        tier_version: &str,
        started_ms: i64,
    ) -> Result<()> {
        let now = Utc::now().timestamp_millis();
        let period_end = started_ms + 30 * 24 * HOUR_MS;
        self.execute("BEGIN".into()).await?;
        for (from, to) in self.chunks(n) {
            let series = self.series(from, to);
            let subscriber = self.id("sub", "i");
            let subscription = self.id("subn", "i");
            let statements = [
                format!(
                    "INSERT INTO subscribers (id, external_id, name, email, created_at, updated_at) \
                     SELECT {subscriber}, 'bench-subscriber-' || i, 'Bench ' || i, 'billing@bench.example', {now}, {now} FROM {series}"
                ),
                format!(
                    "INSERT INTO subscriptions (id, external_id, subscriber_id, tier_version_id, status, started_at, created_at, updated_at) \
                     SELECT {subscription}, 'bench-' || i, {subscriber}, '{tier_version}', 'active', {started_ms}, {now}, {now} FROM {series}"
                ),
                format!(
                    "INSERT INTO consumer_keys (consumer_key, subscription_id, created_at) \
                     SELECT 'k' || i, {subscription}, {now} FROM {series}"
                ),
                format!(
                    "INSERT INTO stripe_objects (kind, local_id, account, stripe_id, created_at) \
                     SELECT 'customer', {subscriber}, '', 'cus_bench' || i, {now} FROM {series}"
                ),
                format!(
                    "INSERT INTO stripe_subscriptions (subscription_id, account, stripe_id, item_id, price_id, status, \
                     current_period_start, current_period_end, cancel_at_period_end, updated_at) \
                     SELECT {subscription}, '', 'sub_bench' || i, 'si_bench' || i, 'price_bench', 'active', \
                     {started_ms}, {period_end}, 0, {now} FROM {series}"
                ),
            ];
            for sql in statements {
                self.execute(sql).await?;
            }
        }
        self.execute("COMMIT".into()).await?;
        Ok(())
    }

    /// `hours` hourly rows for each of the `n` subscriptions from `first_hour_ms` on, with the
    /// revisions after `revision_base`, and the revision counter moved past them.
    pub async fn usage(
        &mut self,
        n: usize,
        hours: usize,
        first_hour_ms: i64,
        revision_base: i64,
    ) -> Result<()> {
        let calls = CALLS_PER_HOUR;
        let failed = calls / 100;
        let units = calls;
        let last = revision_base + (n * hours) as i64;
        self.execute("BEGIN".into()).await?;
        for (from, to) in self.chunks(n) {
            let series = self.series(from, to);
            let hour_series = match self {
                Seeder::Sqlite(_) => format!(
                    "(WITH RECURSIVE g(h) AS (SELECT 0 UNION ALL SELECT h + 1 FROM g WHERE h < {}) SELECT h FROM g) AS g",
                    hours - 1
                ),
                Seeder::Postgres(_) => {
                    format!("generate_series(0::bigint, {}::bigint) AS g(h)", hours - 1)
                }
            };
            let subscription = self.id("subn", "i");
            self.execute(format!(
                "INSERT INTO usage_hourly (subscription_id, hour, billable_calls, billable_units_whole, \
                 billable_units_micros, failed_calls, total_calls, revision) \
                 SELECT {subscription}, {first_hour_ms} + h * {HOUR_MS}, {calls}, {units}, 0, {failed}, {calls} + {failed}, \
                 {revision_base} + (i - 1) * {hours} + h + 1 FROM {series} CROSS JOIN {hour_series} ORDER BY i, h"
            ))
            .await?;
        }
        self.execute(format!(
            "UPDATE usage_revision SET value = {last} WHERE id = 1"
        ))
        .await?;
        // The provider's day totals, which tollbooth's writer keeps beside the hours it writes.
        self.execute("DELETE FROM usage_days".into()).await?;
        self.execute(
            "INSERT INTO usage_days (day, billable_calls, failed_calls, total_calls) \
             SELECT day, SUM(billable_calls), SUM(failed_calls), SUM(total_calls) \
             FROM usage_daily GROUP BY day"
                .into(),
        )
        .await?;
        self.execute("COMMIT".into()).await?;
        Ok(())
    }
}
