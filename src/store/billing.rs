//! The daily job's claims and reports, and the ledger of billed usage lines.

use super::{Page, PageRequest, StoreResult, Tx, now_ms, on_tx};

/// What claiming a day's run came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This caller runs the day (a new claim, or one whose owner stopped and whose lease passed).
    Claimed,
    /// The day's run has finished.
    Done,
    /// Another runner holds the day.
    Busy,
}

/// A day's run as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRun {
    pub day: String,
    pub state: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub report: Option<String>,
}

/// One billed usage line.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BilledLine {
    pub stripe_item_id: String,
    pub amount_minor: i64,
    pub description: String,
    pub revision: i64,
}

impl Tx {
    /// Claims `job` for `day` for `lease_ms`.
    pub async fn claim_run(
        &mut self,
        job: &str,
        day: &str,
        owner: &str,
        lease_ms: i64,
    ) -> StoreResult<Claim> {
        let now = now_ms();
        let sql = "INSERT INTO job_runs (job, day, state, owner, leased_until, started_at) \
                   VALUES ($1, $2, 'running', $3, $4, $5) ON CONFLICT (job, day) DO NOTHING";
        let inserted = on_tx!(self, |conn| sqlx::query(sql)
            .bind(job)
            .bind(day)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected());
        if inserted == 1 {
            return Ok(Claim::Claimed);
        }
        let sql = "UPDATE job_runs SET owner = $3, leased_until = $4 \
                   WHERE job = $1 AND day = $2 AND state = 'running' AND leased_until < $5";
        let taken = on_tx!(self, |conn| sqlx::query(sql)
            .bind(job)
            .bind(day)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected());
        if taken == 1 {
            return Ok(Claim::Claimed);
        }
        let sql = "SELECT state FROM job_runs WHERE job = $1 AND day = $2";
        let (state,): (String,) = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(job)
            .bind(day)
            .fetch_one(conn)
            .await?);
        Ok(if state == "done" {
            Claim::Done
        } else {
            Claim::Busy
        })
    }

    /// Extends this owner's claim on a running day; false when another runner took it over.
    pub async fn renew_run(
        &mut self,
        job: &str,
        day: &str,
        owner: &str,
        lease_ms: i64,
    ) -> StoreResult<bool> {
        let sql = "UPDATE job_runs SET leased_until = $4 \
                   WHERE job = $1 AND day = $2 AND owner = $3 AND state = 'running'";
        let renewed = on_tx!(self, |conn| sqlx::query(sql)
            .bind(job)
            .bind(day)
            .bind(owner)
            .bind(now_ms() + lease_ms)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(renewed == 1)
    }

    pub async fn finish_run(&mut self, job: &str, day: &str, report: &str) -> StoreResult<()> {
        let sql = "UPDATE job_runs SET state = 'done', finished_at = $3, report = $4 \
                   WHERE job = $1 AND day = $2";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(job)
            .bind(day)
            .bind(now_ms())
            .bind(report)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The newest day whose run finished.
    pub async fn last_done_day(&mut self, job: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT MAX(day) FROM job_runs WHERE job = $1 AND state = 'done'";
        let (day,): (Option<String>,) = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(job)
            .fetch_one(conn)
            .await?);
        Ok(day)
    }

    /// One day's run of a job.
    pub async fn job_run(&mut self, job: &str, day: &str) -> StoreResult<Option<JobRun>> {
        let sql = "SELECT day, state, started_at, finished_at, report FROM job_runs \
                   WHERE job = $1 AND day = $2";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(job)
            .bind(day)
            .fetch_optional(conn)
            .await?))
    }

    /// Runs of a job, newest first, a page of those before `page.after` (a day).
    pub async fn job_runs(&mut self, job: &str, page: &PageRequest) -> StoreResult<Page<JobRun>> {
        let sql = "SELECT day, state, started_at, finished_at, report FROM job_runs \
                   WHERE job = $1 AND ($2 = '' OR day < $2) ORDER BY day DESC LIMIT $3";
        let rows = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(job)
            .bind(page.after())
            .bind(page.fetch_limit())
            .fetch_all(conn)
            .await?);
        Ok(Page::from_rows(rows, page.limit))
    }

    /// Subscriptions with a live Stripe Subscription: the ones the job reports. A canceled one
    /// had its final invoice; Stripe takes no more items for it.
    pub async fn mirrored_subscriptions(&mut self) -> StoreResult<Vec<String>> {
        let sql = "SELECT s.id FROM subscriptions s \
                   JOIN stripe_subscriptions ss ON ss.subscription_id = s.id \
                   WHERE ss.status <> 'canceled' ORDER BY s.id";
        let rows: Vec<(String,)> = on_tx!(self, |conn| sqlx::query_as(sql).fetch_all(conn).await?);
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    pub async fn billed_line(
        &mut self,
        subscription_id: &str,
        period_start: i64,
        line: &str,
    ) -> StoreResult<Option<BilledLine>> {
        let sql = "SELECT stripe_item_id, amount_minor, description, revision FROM billed_lines \
                   WHERE subscription_id = $1 AND period_start = $2 AND line = $3";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .bind(period_start)
            .bind(line)
            .fetch_optional(conn)
            .await?))
    }

    /// Records what is now billed for a line.
    pub async fn save_billed_line(
        &mut self,
        subscription_id: &str,
        period_start: i64,
        line: &str,
        billed: &BilledLine,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO billed_lines (subscription_id, period_start, line, stripe_item_id, \
                   amount_minor, description, revision, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                   ON CONFLICT (subscription_id, period_start, line) DO UPDATE SET \
                   stripe_item_id = excluded.stripe_item_id, amount_minor = excluded.amount_minor, \
                   description = excluded.description, revision = excluded.revision, updated_at = excluded.updated_at";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .bind(period_start)
            .bind(line)
            .bind(&billed.stripe_item_id)
            .bind(billed.amount_minor)
            .bind(&billed.description)
            .bind(billed.revision)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }
}

impl Tx {
    /// Every billed line of one period of a subscription, by line key.
    pub async fn billed_lines_of(
        &mut self,
        subscription_id: &str,
        period_start: i64,
    ) -> StoreResult<Vec<(String, BilledLine)>> {
        let sql = "SELECT line, stripe_item_id, amount_minor, description, revision FROM billed_lines \
                   WHERE subscription_id = $1 AND period_start = $2 ORDER BY line";
        let rows: Vec<(String, String, i64, String, i64)> =
            on_tx!(self, |conn| sqlx::query_as(sql)
                .bind(subscription_id)
                .bind(period_start)
                .fetch_all(conn)
                .await?);
        Ok(rows
            .into_iter()
            .map(
                |(line, stripe_item_id, amount_minor, description, revision)| {
                    (
                        line,
                        BilledLine {
                            stripe_item_id,
                            amount_minor,
                            description,
                            revision,
                        },
                    )
                },
            )
            .collect())
    }
}

impl Tx {
    /// The Stripe writes owed for a period's usage lines, by line: `(line, request)`.
    pub async fn pending_sends_of(
        &mut self,
        subscription_id: &str,
        period_start: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        let sql = "SELECT line, request FROM billing_outbox \
                   WHERE subscription_id = $1 AND period_start = $2 ORDER BY line";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .bind(period_start)
            .fetch_all(conn)
            .await?))
    }

    /// Saves the Stripe write about to be sent for a line, replacing one owed before.
    pub async fn save_pending_send(
        &mut self,
        subscription_id: &str,
        period_start: i64,
        line: &str,
        request: &str,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO billing_outbox (subscription_id, period_start, line, request, created_at) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subscription_id, period_start, line) \
                   DO UPDATE SET request = excluded.request, created_at = excluded.created_at";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .bind(period_start)
            .bind(line)
            .bind(request)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records what is now billed for a line and that nothing is owed for it any more.
    pub async fn settle_billed_line(
        &mut self,
        subscription_id: &str,
        period_start: i64,
        line: &str,
        billed: &BilledLine,
    ) -> StoreResult<()> {
        self.save_billed_line(subscription_id, period_start, line, billed)
            .await?;
        let sql = "DELETE FROM billing_outbox \
                   WHERE subscription_id = $1 AND period_start = $2 AND line = $3";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .bind(period_start)
            .bind(line)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }
}

impl Tx {
    /// The revision of the newest committed change to the aggregation table.
    pub async fn usage_revision(&mut self) -> StoreResult<i64> {
        let sql = "SELECT value FROM usage_revision WHERE id = 1";
        let row: Option<(i64,)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .fetch_optional(conn)
            .await?);
        Ok(row.map_or(0, |(value,)| value))
    }

    /// The (subscription, hour) rows changed in `(after, upto]` before the subscription's closed
    /// periods end: where late records landed.
    pub async fn usage_changed_between(
        &mut self,
        after: i64,
        upto: i64,
    ) -> StoreResult<Vec<(String, i64)>> {
        // Only hours of periods already closed: the open period and the periods a run closes
        // are rated whole anyway.
        let sql = "SELECT DISTINCT u.subscription_id, u.hour FROM usage_hourly u \
                   JOIN billing_cursors c ON c.subscription_id = u.subscription_id \
                   WHERE u.revision > $1 AND u.revision <= $2 AND u.hour < c.closed_until \
                   ORDER BY u.subscription_id, u.hour";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(after)
            .bind(upto)
            .fetch_all(conn)
            .await?))
    }

    /// Writes a setting tollbooth keeps for itself.
    pub async fn put_setting(&mut self, name: &str, value: &str) -> StoreResult<()> {
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

    /// On PostgreSQL, serializes the claims of all replicas until this transaction ends.
    pub async fn lock_job_claims(&mut self, job: &str) -> StoreResult<()> {
        if let super::Tx::Postgres(tx) = self {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("tollbooth-job-{job}"))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

impl Tx {
    /// The end of the last closed period of a subscription, if any was closed.
    pub async fn closed_until(&mut self, subscription_id: &str) -> StoreResult<Option<i64>> {
        let sql = "SELECT closed_until FROM billing_cursors WHERE subscription_id = $1";
        let row: Option<(i64,)> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .fetch_optional(conn)
            .await?);
        Ok(row.map(|(at,)| at))
    }

    pub async fn set_closed_until(&mut self, subscription_id: &str, at: i64) -> StoreResult<()> {
        let sql = "INSERT INTO billing_cursors (subscription_id, closed_until) VALUES ($1, $2) \
                   ON CONFLICT (subscription_id) DO UPDATE SET closed_until = excluded.closed_until";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(subscription_id)
            .bind(at)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }
}
