//! The write path: requests hand validated records to a bounded queue; one writer task takes what
//! is waiting and commits it in one transaction (raw records deduplicated, hourly increments
//! upserted), then answers every request of that batch. Nothing is answered before its commit.
//! SQLite has one writer (it allows one write transaction at a time); PostgreSQL may have several,
//! whose raw-record inserts run side by side.

use super::thresholds::Thresholds;
use crate::domain::time::{HOUR_MS, floor_to};
use crate::store::{
    MeterIncrement, NewValue, Readings, Store, StoreError, StoredEvent, StoredRecord,
    UsageIncrement, now_ms,
};
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
    events: Vec<StoredEvent>,
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

/// Told the usage increments of every committed batch, of calls and of declared meters (the
/// access decision counts quotas so).
pub type OnCommit = Arc<dyn Fn(&[UsageIncrement], &[MeterIncrement]) + Send + Sync>;

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
        self.submit_all(records, Vec::new()).await
    }

    /// Queues usage events and waits for their commit; answers, per event, whether it was new.
    pub async fn submit_events(&self, events: Vec<StoredEvent>) -> Result<Vec<bool>, IngestError> {
        self.submit_all(Vec::new(), events).await
    }

    async fn submit_all(
        &self,
        records: Vec<StoredRecord>,
        events: Vec<StoredEvent>,
    ) -> Result<Vec<bool>, IngestError> {
        let items = records.len() + events.len();
        if items == 0 {
            return Ok(Vec::new());
        }
        let needed = u32::try_from(items).map_err(|_| IngestError::QueueFull)?;
        let permit = self
            .room
            .clone()
            .try_acquire_many_owned(needed)
            .map_err(|_| IngestError::QueueFull)?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                records,
                events,
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
            let mut count = first.records.len() + first.events.len();
            let mut batch = vec![first];
            while count < batch_records {
                match jobs.try_recv() {
                    Ok(job) => {
                        count += job.records.len() + job.events.len();
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
            Ok((mut fresh, (increments, meters), notified)) => {
                if notified && let Some(thresholds) = &thresholds {
                    thresholds.notifier.wake();
                }
                on_commit(&increments, &meters);
                for job in batch.into_iter().rev() {
                    let mine = fresh.split_off(fresh.len() - job.records.len() - job.events.len());
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
/// answers, for every record and event in order (each job's records, then its events), whether
/// it was new, the increments, and whether a notification was written.
async fn write_batch(
    store: &Store,
    batch: &[Job],
    thresholds: Option<&Thresholds>,
) -> Result<(Vec<bool>, Increments, bool), StoreError> {
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

    let events: Vec<&StoredEvent> = batch.iter().flat_map(|job| &job.events).collect();
    let mut seen_events = HashSet::with_capacity(events.len());
    let first_events: Vec<bool> = events
        .iter()
        .map(|e| seen_events.insert(e.record_key.as_slice()))
        .collect();

    let mut tx = store.begin().await?;
    let new_keys = tx.insert_call_records(&unique, now_ms()).await?;
    let fresh: Vec<bool> = all
        .iter()
        .zip(&first_seen)
        .map(|(r, first)| *first && new_keys.contains(&r.record_key))
        .collect();
    let new_records = || {
        all.iter()
            .zip(&fresh)
            .filter(|(_, new)| **new)
            .map(|(r, _)| *r)
    };
    let fresh_events: Vec<bool> = if events.is_empty() {
        Vec::new()
    } else {
        let mut unique_events: Vec<&StoredEvent> = events
            .iter()
            .zip(&first_events)
            .filter(|(_, first)| **first)
            .map(|(e, _)| *e)
            .collect();
        // Key order, as for call records: concurrent writers lock shared keys in one order.
        unique_events.sort_unstable_by(|a, b| a.record_key.cmp(&b.record_key));
        let new_event_keys = tx.insert_usage_events(&unique_events, now_ms()).await?;
        events
            .iter()
            .zip(&first_events)
            .map(|(e, first)| *first && new_event_keys.contains(&e.record_key))
            .collect()
    };
    let increments = fold_increments(new_records());
    let new_events = events
        .iter()
        .zip(&fresh_events)
        .filter(|(_, new)| **new)
        .map(|(e, _)| (e.subscription_id.as_str(), e.occurred_at, &e.readings));
    let readings = new_records()
        .map(|r| (r.subscription_id.as_str(), r.occurred_at, &r.readings))
        .chain(new_events);
    let mut meter_increments = fold_meters(readings);
    // Every dimension value of the batch, new or not, fresh record or resent: the api's
    // `dimension_values` then hold every value any committed record has, whatever the memory
    // of a replica took before (a batch that failed, a record refused later in it).
    let values = dimension_values(
        all.iter()
            .map(|r| &r.readings)
            .chain(events.iter().map(|e| &e.readings)),
    );
    tx.add_dimension_values(&values).await?;
    // From here on every writer waits its turn: the revisions are taken under one row lock.
    tx.add_usage(&increments).await?;
    tx.add_meter_usage(&mut meter_increments).await?;
    let notified = match thresholds {
        Some(thresholds) => {
            thresholds
                .notify_reached(&mut tx, &increments, &meter_increments, now_ms())
                .await?
        }
        None => false,
    };
    tx.commit().await?;
    // Each job's records, then its events, in the order of the jobs.
    let mut answers = Vec::with_capacity(fresh.len() + fresh_events.len());
    let (mut records_at, mut events_at) = (0, 0);
    for job in batch {
        answers.extend_from_slice(&fresh[records_at..records_at + job.records.len()]);
        answers.extend_from_slice(&fresh_events[events_at..events_at + job.events.len()]);
        records_at += job.records.len();
        events_at += job.events.len();
    }
    Ok((answers, (increments, meter_increments), notified))
}

/// A committed batch's increments: of calls, and of declared meters.
type Increments = (Vec<UsageIncrement>, Vec<MeterIncrement>);

type MeterKey<'a> = (&'a str, i64, &'a str, &'a str);

/// Folds the readings of new calls and events into one increment per subscription, hour, meter
/// and dimension values.
fn fold_meters<'a>(
    readings: impl Iterator<Item = (&'a str, i64, &'a Readings)>,
) -> Vec<MeterIncrement> {
    let mut by_key: HashMap<MeterKey<'a>, MeterIncrement> = HashMap::new();
    for (subscription_id, at, readings) in readings {
        if readings.list.is_empty() {
            continue;
        }
        let hour = floor_to(at, HOUR_MS);
        for reading in &readings.list {
            let increment = by_key
                .entry((subscription_id, hour, &reading.meter, &readings.dimensions))
                .or_insert_with(|| MeterIncrement {
                    subscription_id: subscription_id.to_owned(),
                    hour,
                    meter: reading.meter.clone(),
                    dimensions: readings.dimensions.clone(),
                    aggregation: reading.aggregation,
                    records: 0,
                    sum_micros: 0,
                    max_micros: 0,
                    latest_at: i64::MIN,
                    latest_micros: 0,
                    uniques: HashSet::new(),
                });
            increment.records += 1;
            increment.max_micros = increment.max_micros.max(reading.value_micros);
            // At one instant, the later of the batch wins.
            if at >= increment.latest_at {
                increment.latest_at = at;
                increment.latest_micros = reading.value_micros;
            }
            match &reading.unique {
                Some(value) => {
                    increment.uniques.insert(value.clone());
                }
                None => increment.sum_micros += i128::from(reading.value_micros),
            }
        }
    }
    let mut increments: Vec<MeterIncrement> = by_key.into_values().collect();
    // One order for every writer's row locks on PostgreSQL.
    increments.sort_by(|a, b| {
        (
            a.subscription_id.as_str(),
            a.hour,
            &*a.meter,
            &*a.dimensions,
        )
            .cmp(&(
                b.subscription_id.as_str(),
                b.hour,
                &*b.meter,
                &*b.dimensions,
            ))
    });
    increments
}

/// The distinct `(api, dimension, value)` of these readings, in order.
fn dimension_values<'a>(readings: impl Iterator<Item = &'a Readings>) -> Vec<NewValue> {
    let keys: HashSet<(&Arc<str>, &str)> = readings
        .filter(|r| !r.list.is_empty() && &*r.dimensions != "{}")
        .map(|r| (&r.api, &*r.dimensions))
        .collect();
    let mut values: Vec<NewValue> = keys
        .into_iter()
        .flat_map(|(api, key)| {
            crate::domain::meter::dimension_values(key)
                .into_iter()
                .map(move |(dimension, value)| (api.clone(), dimension, value))
        })
        .collect();
    values.sort();
    values.dedup();
    values
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
