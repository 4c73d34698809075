//! The daily billing job: claim the day, then for every subscription with a Stripe Subscription
//! bring Stripe's pending invoice items in line with what the rating says — for the period that
//! ended at the start of the day (its final usage) and for the open period (usage to date).
//!
//! Each usage line of a period is one invoice item, created once and then updated. The ledger
//! (`billed_lines`) holds what Stripe has; only the difference to the rating is sent, each change
//! with a key that names the line, the period and the change's revision, so a run stopped anywhere
//! and run again sends every change once.

use super::BillingError;
use super::commits::{GroupCommitter, LedgerWrites};
use super::ledger::bring_in_line;
use crate::store::{Claim, Store};
use crate::stripe::{Stripe, StripeError};
use chrono::{DateTime, Days, NaiveDate, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The job's name in `job_runs`.
pub const JOB: &str = "billing";
/// The setting holding the aggregation-table revision the last clean run had seen.
const WATERMARK: &str = "billing_usage_revision";
/// At most this many periods of one subscription are closed in one run.
const MAX_CLOSES: usize = 400;
/// Subscriptions billed at once.
const CONCURRENCY: usize = 16;
/// Subscriptions between two renewals of the day's lease.
const CHUNK: usize = 1_000;
/// At most this many missed days are caught up in one go.
const MAX_CATCH_UP_DAYS: u64 = 60;

impl RunReport {
    /// Adds what one subscription's billing did.
    fn add(&mut self, other: RunReport) {
        self.cycles_closed += other.cycles_closed;
        self.items_created += other.items_created;
        self.items_updated += other.items_updated;
        self.late_items += other.late_items;
        self.failures.extend(other.failures);
        self.reconciliation.extend(other.reconciliation);
    }
}

/// What one day's run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunReport {
    pub day: String,
    /// `done`, `already_done` or `claimed_elsewhere`.
    pub outcome: String,
    pub subscriptions_reported: u64,
    pub cycles_closed: u64,
    pub items_created: u64,
    pub items_updated: u64,
    pub late_items: u64,
    pub failures: Vec<Failure>,
    /// One line per period closed in this run: billed equals rated, or the difference.
    pub reconciliation: Vec<Reconciliation>,
}

/// A subscription a run could not bill, and why.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = RunFailure)]
pub struct Failure {
    pub subscription: String,
    pub error: String,
}

/// What a closed period was rated and what Stripe holds for it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub subscription: String,
    pub period_start: DateTime<Utc>,
    pub currency: String,
    /// What the rating says the usage lines come to.
    pub rated: Decimal,
    /// What Stripe holds for them.
    pub billed: Decimal,
    pub difference: Decimal,
}

/// What a run works with.
#[derive(Clone, Copy)]
pub struct BillingJob<'a> {
    pub store: &'a Store,
    pub stripe: &'a Stripe,
    /// Who claims the days: one name per process.
    pub owner: &'a str,
    /// Raw call records older than this are purged after each run.
    pub retention: std::time::Duration,
    /// How long a claim holds before another runner may take over a run that stopped.
    pub lease: std::time::Duration,
}

impl BillingJob<'_> {
    /// Runs every day from the one after the last finished run up to `today`, in order; with no
    /// run yet, just `today`.
    pub async fn run_due(&self, today: NaiveDate) -> Result<Vec<RunReport>, BillingError> {
        run_due(self, today).await
    }

    /// Runs one day, unless it is done or another runner holds it.
    pub async fn run_day(&self, day: NaiveDate) -> Result<RunReport, BillingError> {
        run_day(self, day).await
    }

    /// The fast path of a renewal's `invoice.created`: closes the subscription's periods that
    /// ended by `period_end` (Unix milliseconds) while the invoice is a draft, once per period end.
    pub async fn close_now(
        &self,
        subscription_id: &str,
        period_end: i64,
    ) -> Result<RunReport, BillingError> {
        let claim_key = format!("{subscription_id}@{period_end}");
        let mut report = RunReport {
            day: claim_key.clone(),
            ..RunReport::default()
        };
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.store.begin().await?;
        let claim = tx
            .claim_run(CLOSE_JOB, &claim_key, self.owner, lease_ms)
            .await?;
        tx.commit().await?;
        if claim != Claim::Claimed {
            report.outcome = "already_done".into();
            return Ok(report);
        }
        self.report_one(
            subscription_id,
            crate::domain::time::from_ms(period_end),
            &mut report,
        )
        .await;
        let text = serde_json::to_string(&report)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.store.begin().await?;
        tx.finish_run(CLOSE_JOB, &claim_key, &text).await?;
        tx.commit().await?;
        Ok(report)
    }
}

impl BillingJob<'_> {
    /// Brings Stripe's items for one subscription in line with its usage up to now (its ended
    /// periods closed, its open one reported), outside any day's run: before a cancel that makes
    /// a final invoice.
    pub async fn report_now(&self, subscription_id: &str) -> Result<RunReport, BillingError> {
        let mut report = RunReport {
            day: format!("{subscription_id}@now"),
            ..RunReport::default()
        };
        self.report_one(subscription_id, Utc::now(), &mut report)
            .await;
        Ok(report)
    }

    /// One subscription brought in line as of `at`, outside a day's run; a failure is reported.
    async fn report_one(&self, subscription_id: &str, at: DateTime<Utc>, report: &mut RunReport) {
        let result = report_subscription(
            self.store,
            LedgerWrites::Direct(self.store),
            self.stripe,
            subscription_id,
            at,
            &[],
            report,
        )
        .await;
        if let Err(error) = result {
            report.failures.push(Failure {
                subscription: subscription_id.to_owned(),
                error: error.to_string(),
            });
        }
        report.outcome = "done".into();
    }
}

/// The fast-path closes in `job_runs`, one per subscription and period end.
pub const CLOSE_JOB: &str = "close_period";

async fn run_due(job: &BillingJob<'_>, today: NaiveDate) -> Result<Vec<RunReport>, BillingError> {
    let (store, stripe) = (job.store, job.stripe);
    let last = store.begin_read().await?.last_done_day(JOB).await?;
    let first = last
        .and_then(|day| NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok())
        .and_then(|day| day.checked_add_days(Days::new(1)))
        .unwrap_or(today)
        .max(
            today
                .checked_sub_days(Days::new(MAX_CATCH_UP_DAYS))
                .unwrap_or(today),
        );
    if stripe.is_live()
        && let Err(error) = stripe.sync(store).await
    {
        tracing::warn!(%error, "the Stripe mirror could not be synced before the billing run");
    }
    let mut reports = Vec::new();
    let mut day = first;
    while day <= today {
        let started = std::time::Instant::now();
        let report = run_day(job, day).await;
        count_run(report.as_ref(), started.elapsed());
        let report = report?;
        // Days are billed in order: one still held elsewhere stops the catch-up here.
        let held = report.outcome != "done" && report.outcome != "already_done";
        reports.push(report);
        if held {
            break;
        }
        let Some(next) = day.checked_add_days(Days::new(1)) else {
            break;
        };
        day = next;
    }
    Ok(reports)
}

/// One billing day's run in `/metrics`: its outcome, its time, the subscriptions it could not bill.
fn count_run(report: Result<&RunReport, &BillingError>, took: std::time::Duration) {
    use crate::telemetry::names;
    let outcome = match report {
        Ok(report) => report.outcome.clone(),
        Err(_) => "error".to_owned(),
    };
    if let Ok(report) = report {
        let failures = u64::try_from(report.failures.len()).unwrap_or(u64::MAX);
        metrics::counter!(names::BILLING_FAILURES).increment(failures);
    }
    if outcome == "done" {
        metrics::histogram!(names::BILLING_RUN_DURATION).record(took.as_secs_f64());
    }
    metrics::counter!(names::BILLING_RUNS, "outcome" => outcome).increment(1);
}

async fn run_day(job: &BillingJob<'_>, day: NaiveDate) -> Result<RunReport, BillingError> {
    let (store, stripe, owner) = (job.store, job.stripe, job.owner);
    let day_text = day.format("%Y-%m-%d").to_string();
    let mut report = RunReport {
        day: day_text.clone(),
        ..RunReport::default()
    };
    let lease_ms = i64::try_from(job.lease.as_millis()).unwrap_or(i64::MAX);
    let mut tx = store.begin().await?;
    tx.lock_job_claims(JOB).await?;
    let claim = tx.claim_run(JOB, &day_text, owner, lease_ms).await?;
    tx.commit().await?;
    match claim {
        Claim::Done => {
            report.outcome = "already_done".into();
            return Ok(report);
        }
        Claim::Busy => {
            report.outcome = "claimed_elsewhere".into();
            return Ok(report);
        }
        Claim::Claimed => {}
    }
    let start_of_day = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let mut tx = store.begin_read().await?;
    let subscriptions = tx.mirrored_subscriptions().await?;
    // Where records arrived since the last clean run: closed periods they fell in are billed again.
    let upto = tx.usage_revision().await?;
    let after = tx
        .setting(WATERMARK)
        .await?
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let mut changed: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (subscription, hour) in tx.usage_changed_between(after, upto).await? {
        changed.entry(subscription).or_default().push(hour);
    }
    drop(tx);
    // The subscriptions billed side by side commit their ledger writes together.
    let committer = GroupCommitter::start(store.clone());
    let writes = LedgerWrites::Grouped(&committer);
    let mut renewed_at = std::time::Instant::now();
    for chunk in subscriptions.chunks(CHUNK) {
        // A long run keeps its claim: the lease is renewed well before it runs out.
        if renewed_at.elapsed() > job.lease / 3 {
            let mut tx = store.begin().await?;
            let kept = tx.renew_run(JOB, &day_text, owner, lease_ms).await?;
            tx.commit().await?;
            if !kept {
                tracing::warn!(day = %day_text, "another runner took this day over; stopping");
                report.outcome = "taken_over".into();
                return Ok(report);
            }
            renewed_at = std::time::Instant::now();
        }
        // Subscriptions are independent: several are billed at once, their Stripe calls paced
        // together by the client, their database waits overlapping.
        let work: Vec<(String, Vec<i64>)> = chunk
            .iter()
            .map(|id| (id.clone(), changed.remove(id).unwrap_or_default()))
            .collect();
        let mut billed = futures::stream::iter(work)
            .map(|(subscription, hours)| {
                bill_one(store, writes, stripe, subscription, start_of_day, hours)
            })
            .buffer_unordered(CONCURRENCY);
        while let Some((subscription, own, result)) = billed.next().await {
            report.add(own);
            match result {
                Ok(()) => report.subscriptions_reported += 1,
                Err(error) => {
                    tracing::warn!(%subscription, %error, "billing a subscription failed; it is retried next run");
                    report.failures.push(Failure {
                        subscription,
                        error: error.to_string(),
                    });
                }
            }
        }
    }
    report.outcome = "done".into();
    let text = serde_json::to_string(&report)
        .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
    let mut tx = store.begin().await?;
    tx.finish_run(JOB, &day_text, &text).await?;
    // A subscription that failed keeps the watermark: its late records are looked at again.
    if report.failures.is_empty() {
        tx.put_setting(WATERMARK, &upto.to_string()).await?;
    }
    tx.commit().await?;
    match crate::metering::purge_expired(store, job.retention, crate::store::now_ms()).await {
        Ok(purged) => tracing::info!(purged, "raw call records past the retention window purged"),
        Err(error) => {
            tracing::warn!(%error, "the retention purge failed; the next run tries again")
        }
    }
    Ok(report)
}

/// One subscription of a day's run, with a report of its own.
async fn bill_one(
    store: &Store,
    writes: LedgerWrites<'_>,
    stripe: &Stripe,
    subscription: String,
    start_of_day: DateTime<Utc>,
    changed_hours: Vec<i64>,
) -> (String, RunReport, Result<(), SubscriptionError>) {
    let mut own = RunReport::default();
    let result = report_subscription(
        store,
        writes,
        stripe,
        &subscription,
        start_of_day,
        &changed_hours,
        &mut own,
    )
    .await;
    (subscription, own, result)
}

/// Why one subscription could not be billed.
#[derive(Debug, thiserror::Error)]
pub(super) enum SubscriptionError {
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

async fn report_subscription(
    store: &Store,
    writes: LedgerWrites<'_>,
    stripe: &Stripe,
    subscription_id: &str,
    start_of_day: DateTime<Utc>,
    changed_hours: &[i64],
    report: &mut RunReport,
) -> Result<(), SubscriptionError> {
    // A run for a day ahead of the clock (a test, a manual `--as-of`) rates as of that day.
    let now = Utc::now().max(start_of_day);
    let started_at = {
        let mut tx = store.begin_read().await?;
        let found = tx.find_subscription(subscription_id).await?;
        let Some(found) = found else {
            return Ok(());
        };
        (tx.closed_until(subscription_id).await?, found.started_at)
    };
    let (closed_until, started_at) = started_at;
    // Every period that ended since the last close gets its final usage, oldest first.
    let mut cursor = crate::domain::time::from_ms(closed_until.unwrap_or(started_at));
    let mut closed_now = Vec::new();
    for _ in 0..MAX_CLOSES {
        let period = match super::preview(store, subscription_id, None, cursor).await {
            Ok(period) => period,
            // Canceled: no period after the cancellation is billed.
            Err(BillingError::NotActive { .. }) => break,
            Err(other) => return Err(other.into()),
        };
        if period.invoice.period_end > start_of_day {
            break;
        }
        let start = period.invoice.period_start;
        let closed = super::preview(store, subscription_id, Some(start.date_naive()), now).await?;
        bring_in_line(
            store,
            writes,
            stripe,
            subscription_id,
            &closed.invoice,
            true,
            report,
        )
        .await?;
        let mut tx = store.begin().await?;
        tx.set_closed_until(
            subscription_id,
            closed.invoice.period_end.timestamp_millis(),
        )
        .await?;
        tx.commit().await?;
        report.cycles_closed += 1;
        closed_now.push(start);
        cursor = closed.invoice.period_end;
    }
    // Late records in periods closed before: the difference goes to Stripe too.
    let mut late_periods = Vec::new();
    for hour in changed_hours {
        let at = crate::domain::time::from_ms(*hour);
        if at >= cursor {
            continue;
        }
        // A period that cannot be rated fails the subscription: its late records wait for the
        // next run rather than being taken as billed.
        let period = super::preview(store, subscription_id, None, at).await?;
        let start = period.invoice.period_start;
        if !closed_now.contains(&start) && !late_periods.contains(&start) {
            late_periods.push(start);
        }
    }
    for start in late_periods {
        let again = super::preview(store, subscription_id, Some(start.date_naive()), now).await?;
        bring_in_line(
            store,
            writes,
            stripe,
            subscription_id,
            &again.invoice,
            true,
            report,
        )
        .await?;
    }
    // The open period (the one holding the start of the day or the first not closed, which
    // always ends after the start of the day): its usage to date.
    match super::preview(store, subscription_id, None, start_of_day.max(cursor)).await {
        Ok(open) => {
            bring_in_line(
                store,
                writes,
                stripe,
                subscription_id,
                &open.invoice,
                false,
                report,
            )
            .await?;
        }
        // Canceled before the open period began: nothing open to report.
        Err(BillingError::NotActive { .. }) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(())
}
