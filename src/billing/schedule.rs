//! When the daily job runs: at `billing_cron` (UTC) on every replica — the database decides who does
//! each day — and once at start, which catches up the days missed while tollbooth was down.

use super::BillingJob;
use crate::store::Store;
use crate::stripe::Stripe;
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

/// How long a claim on a day holds before another runner may take over a run that stopped; a
/// run renews it as it goes.
pub const LEASE: Duration = Duration::from_secs(15 * 60);

/// Runs what is due now; failures are logged and the next firing tries again.
pub async fn run_now(store: &Store, stripe: &Stripe, owner: &str, retention: Duration) {
    let job = BillingJob {
        store,
        stripe,
        owner,
        retention,
        lease: LEASE,
    };
    match job.run_due(chrono::Utc::now().date_naive()).await {
        Ok(reports) => {
            for report in reports {
                tracing::info!(day = %report.day, outcome = %report.outcome, reported = report.subscriptions_reported,
                    failures = report.failures.len(), "billing run");
            }
        }
        Err(error) => {
            tracing::error!(%error, "the billing run failed; the next firing tries again")
        }
    }
}

/// Starts the scheduler and a catch-up run.
pub async fn start(
    cron: &str,
    store: Store,
    stripe: Stripe,
    retention: Duration,
) -> Result<JobScheduler, JobSchedulerError> {
    let owner = crate::domain::ids::new_id("runner");
    let scheduler = JobScheduler::new().await?;
    let (job_store, job_stripe, job_owner) = (store.clone(), stripe.clone(), owner.clone());
    scheduler
        .add(Job::new_async(cron, move |_, _| {
            let (store, stripe, owner) = (job_store.clone(), job_stripe.clone(), job_owner.clone());
            Box::pin(async move { run_now(&store, &stripe, &owner, retention).await })
        })?)
        .await?;
    scheduler.start().await?;
    tokio::spawn(async move { run_now(&store, &stripe, &owner, retention).await });
    Ok(scheduler)
}
