//! Group commit for the ledger: the writes of subscriptions billed side by side are committed
//! together, so a run pays one commit (one fsync on SQLite) for many of them. Each write is
//! answered only once its transaction has committed, so the ledger's ordering (outbox before
//! Stripe, settle after) holds exactly as with a commit of its own.

use crate::store::{BilledLine, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// At most this many writes go in one transaction.
const MOST_PER_COMMIT: usize = 256;

/// One ledger write.
pub(super) enum LedgerWrite {
    /// A Stripe write about to be sent for a line.
    Owe { request: String },
    /// What a line is billed at now; nothing is owed for it any more.
    Settle { billed: BilledLine },
}

struct Job {
    subscription_id: String,
    period_start: i64,
    line: String,
    write: LedgerWrite,
    done: oneshot::Sender<Result<(), String>>,
}

/// Where ledger writes go: a transaction of their own, or a shared committer.
#[derive(Clone, Copy)]
pub(super) enum LedgerWrites<'a> {
    Direct(&'a Store),
    Grouped(&'a GroupCommitter),
}

/// The committer task of one billing run; it ends when dropped.
pub(super) struct GroupCommitter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupCommitter {
    pub(super) fn start(store: Store) -> Self {
        let (jobs, mut waiting) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut batch = vec![first];
                while batch.len() < MOST_PER_COMMIT {
                    match waiting.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let outcome = commit(&store, &batch).await.map_err(|e| e.to_string());
                for job in batch {
                    let _ = job.done.send(outcome.clone());
                }
            }
        });
        Self { jobs }
    }
}

async fn commit(store: &Store, batch: &[Job]) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    for job in batch {
        apply(
            &mut tx,
            &job.subscription_id,
            job.period_start,
            &job.line,
            &job.write,
        )
        .await?;
    }
    tx.commit().await
}

async fn apply(
    tx: &mut crate::store::Tx,
    subscription_id: &str,
    period_start: i64,
    line: &str,
    write: &LedgerWrite,
) -> Result<(), StoreError> {
    match write {
        LedgerWrite::Owe { request } => {
            tx.save_pending_send(subscription_id, period_start, line, request)
                .await
        }
        LedgerWrite::Settle { billed } => {
            tx.settle_billed_line(subscription_id, period_start, line, billed)
                .await
        }
    }
}

impl LedgerWrites<'_> {
    /// Writes and commits; answers once the write is durable.
    pub(super) async fn write(
        self,
        subscription_id: &str,
        period_start: i64,
        line: &str,
        write: LedgerWrite,
    ) -> Result<(), StoreError> {
        match self {
            Self::Direct(store) => {
                let mut tx = store.begin().await?;
                apply(&mut tx, subscription_id, period_start, line, &write).await?;
                tx.commit().await
            }
            Self::Grouped(committer) => {
                let (done, answer) = oneshot::channel();
                let job = Job {
                    subscription_id: subscription_id.to_owned(),
                    period_start,
                    line: line.to_owned(),
                    write,
                    done,
                };
                let stopped = || StoreError::Corrupt("the ledger committer stopped".into());
                committer.jobs.send(job).map_err(|_| stopped())?;
                answer
                    .await
                    .map_err(|_| stopped())?
                    .map_err(|error| StoreError::Corrupt(format!("ledger commit failed: {error}")))
            }
        }
    }
}
