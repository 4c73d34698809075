//! The write path: requests hand validated records to a bounded queue; one writer task takes what
//! is waiting and commits it in one transaction (raw records deduplicated, hourly increments
//! upserted), then answers every request of that batch. Nothing is answered before its commit.
//! SQLite has one writer (it allows one write transaction at a time); PostgreSQL may have several,
//! whose raw-record inserts run side by side.

use super::thresholds::Thresholds;
use crate::domain::time::{HOUR_MS, floor_to};
use crate::store::{Store, StoreError, StoredRecord, UsageIncrement, now_ms};
use crate::telemetry::names;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Why a batch could not be queued or written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The queue holds as many records as it may: the caller should retry shortly.
    #[error("the ingestion queue is full")]
    QueueFull,
    /// The writer has stopped (shutdown).
    #[error("tollbooth is shutting down")]
    Stopped,
    #[error(transparent)]
    Store(#[from] Arc<StoreError>),
}

struct Job {
    records: Vec<StoredRecord>,
    reply: oneshot::Sender<Result<Vec<bool>, Arc<StoreError>>>,
    _permit: OwnedSemaphorePermit,
}

/// The handle requests submit through. Cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::UnboundedSender<Job>,
    room: Arc<Semaphore>,
    /// The room when nothing waits.
    capacity: usize,
}

/// Limits of the write path.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Records that may wait in the queue; past that, requests get 503.
    pub queue_records: u32,
    /// Records one transaction takes at most.
    pub batch_records: usize,
    /// Writer tasks, each with its own transaction.
    pub writers: usize,
}

/// Told the usage increments of every committed batch (the access decision counts quotas so).
pub type OnCommit = Arc<dyn Fn(&[UsageIncrement]) + Send + Sync>;

impl Ingestor {
    /// Starts the writer tasks; they end once every `Ingestor` clone is dropped and the queue is
    /// drained. The handle completes when all of them have.
    pub fn start(
        store: Store,
        limits: WriterLimits,
        on_commit: OnCommit,
        thresholds: Option<Thresholds>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, jobs) = mpsc::unbounded_channel();
        let capacity = usize::try_from(limits.queue_records).unwrap_or(usize::MAX);
        let room = Arc::new(Semaphore::new(capacity));
        let jobs = Arc::new(Mutex::new(jobs));
        let writers: Vec<_> = (0..limits.writers.max(1))
            .map(|_| {
                tokio::spawn(run_writer(
                    store.clone(),
                    jobs.clone(),
                    limits.batch_records,
                    on_commit.clone(),
                    thresholds.clone(),
                ))
            })
            .collect();
        let all = tokio::spawn(async move {
            for writer in writers {
                if let Err(error) = writer.await {
                    tracing::error!(%error, "an ingestion writer failed");
                }
            }
        });
        (
            Self {
                queue,
                room,
                capacity,
            },
            all,
        )
    }

    /// Records queued and not yet committed.
    pub fn waiting(&self) -> usize {
        self.capacity.saturating_sub(self.room.available_permits())
    }

    /// Queues records and waits for their commit; answers, per record, whether it was new.
    pub async fn submit(&self, records: Vec<StoredRecord>) -> Result<Vec<bool>, IngestError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let needed = u32::try_from(records.len()).map_err(|_| IngestError::QueueFull)?;
        let permit = self
            .room
            .clone()
            .try_acquire_many_owned(needed)
            .map_err(|_| IngestError::QueueFull)?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                records,
                reply,
                _permit: permit,
            })
            .map_err(|_| IngestError::Stopped)?;
        answer
            .await
            .map_err(|_| IngestError::Stopped)?
            .map_err(IngestError::Store)
    }
}

/// Takes what is waiting (up to `batch_records`, at least one job), writes it, answers it; again.
async fn run_writer(
    store: Store,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    batch_records: usize,
    on_commit: OnCommit,
    thresholds: Option<Thresholds>,
) {
    loop {
        let (batch, count) = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut count = first.records.len();
            let mut batch = vec![first];
            while count < batch_records {
                match jobs.try_recv() {
                    Ok(job) => {
                        count += job.records.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            (batch, count)
        };
        let started = std::time::Instant::now();
        let result = write_batch(&store, &batch, thresholds.as_ref()).await;
        metrics::histogram!(names::INGEST_COMMIT).record(started.elapsed().as_secs_f64());
        metrics::counter!(names::INGEST_RECORDS).increment(u64::try_from(count).unwrap_or(0));
        let outcome = if result.is_ok() {
            "committed"
        } else {
            "failed"
        };
        metrics::counter!(names::INGEST_BATCHES, "outcome" => outcome).increment(1);
        match result {
            Ok((mut fresh, increments, notified)) => {
                if notified && let Some(thresholds) = &thresholds {
                    thresholds.notifier.wake();
                }
                on_commit(&increments);
                for job in batch.into_iter().rev() {
                    let mine = fresh.split_off(fresh.len() - job.records.len());
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(error) => {
                tracing::error!(%error, records = count, "an ingestion batch was not written");
                let error = Arc::new(error);
                for job in batch {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Writes a batch in one transaction, with the notifications of the thresholds it reached;
/// answers, for every record in order, whether it was new, the increments, and whether a
/// notification was written.
async fn write_batch(
    store: &Store,
    batch: &[Job],
    thresholds: Option<&Thresholds>,
) -> Result<(Vec<bool>, Vec<UsageIncrement>, bool), StoreError> {
    let all: Vec<&StoredRecord> = batch.iter().flat_map(|job| &job.records).collect();
    // The first of several records with one id in the batch is the one that may be new.
    let mut seen = HashSet::with_capacity(all.len());
    let first_seen: Vec<bool> = all
        .iter()
        .map(|r| seen.insert(r.record_key.as_slice()))
        .collect();
    let mut unique: Vec<&StoredRecord> = all
        .iter()
        .zip(&first_seen)
        .filter(|(_, first)| **first)
        .map(|(r, _)| *r)
        .collect();
    // Key order: concurrent writers lock shared ids in one order (no deadlock), and the index
    // is walked once from left to right.
    unique.sort_unstable_by(|a, b| a.record_key.cmp(&b.record_key));

    let mut tx = store.begin().await?;
    let new_keys = tx.insert_call_records(&unique, now_ms()).await?;
    let fresh: Vec<bool> = all
        .iter()
        .zip(&first_seen)
        .map(|(r, first)| *first && new_keys.contains(&r.record_key))
        .collect();
    let increments = fold_increments(
        all.iter()
            .zip(&fresh)
            .filter(|(_, new)| **new)
            .map(|(r, _)| *r),
    );
    tx.add_usage(&increments).await?;
    let notified = match thresholds {
        Some(thresholds) => {
            thresholds
                .notify_reached(&mut tx, &increments, now_ms())
                .await?
        }
        None => false,
    };
    tx.commit().await?;
    Ok((fresh, increments, notified))
}

/// Sums new records into one increment per subscription and hour.
fn fold_increments<'a>(records: impl Iterator<Item = &'a StoredRecord>) -> Vec<UsageIncrement> {
    let mut by_hour: HashMap<(&str, i64), UsageIncrement> = HashMap::new();
    for record in records {
        let hour = floor_to(record.occurred_at, HOUR_MS);
        let increment = by_hour
            .entry((record.subscription_id.as_str(), hour))
            .or_insert_with(|| UsageIncrement {
                subscription_id: record.subscription_id.clone(),
                hour,
                ..UsageIncrement::default()
            });
        increment.total_calls += 1;
        if record.status >= 500 && record.upstream_answered {
            increment.failed_calls += 1;
        }
        if record.billable {
            increment.billable_calls += 1;
            increment.billable_units_micros += i128::from(record.units_micros);
        }
    }
    let mut increments: Vec<UsageIncrement> = by_hour.into_values().collect();
    // A stable order keeps concurrent writers' row locks in one order on PostgreSQL.
    increments.sort_by(|a, b| {
        (a.subscription_id.as_str(), a.hour).cmp(&(b.subscription_id.as_str(), b.hour))
    });
    increments
}
