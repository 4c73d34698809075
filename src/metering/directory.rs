//! An in-memory copy of what ingestion looks up for every record: which subscription and api a
//! consumer key belongs to, each api's recording policy, and the gateway keys. Reloaded after every
//! catalog write of this process, on a miss (at most once a second), and in the background.

use crate::domain::policy::RecordingPolicy;
use crate::domain::time::{DAY_MS, floor_to};
use crate::store::{Store, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Where a consumer's calls are counted.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub subscription_id: Arc<str>,
    pub api_id: Arc<str>,
    /// Midnight UTC of the day the subscription started, in Unix milliseconds: its first billing
    /// period starts there, and calls before it are not its calls.
    pub first_day_ms: i64,
}

/// An api as ingestion needs it.
#[derive(Debug, Clone)]
pub struct ApiEntry {
    pub id: Arc<str>,
    pub policy: Arc<RecordingPolicy>,
}

#[derive(Default)]
struct Snapshot {
    consumers: HashMap<String, Consumer>,
    apis: HashMap<String, ApiEntry>,
    gateways: HashMap<String, String>,
}

/// The shared, reloadable directory.
#[derive(Clone)]
pub struct Directory {
    store: Store,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    last_miss_reload: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

/// How often a miss may reload the directory from the database.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

impl Directory {
    /// Loads the directory from the database.
    pub async fn load(store: Store) -> StoreResult<Self> {
        let directory = Self {
            store,
            snapshot: Arc::default(),
            last_miss_reload: Arc::default(),
        };
        directory.reload().await?;
        Ok(directory)
    }

    /// Reads the directory again; call after a catalog write so the hot paths see it at once.
    pub async fn reload(&self) -> StoreResult<()> {
        let mut tx = self.store.begin_read().await?;
        let consumers = tx.live_consumers().await?;
        let apis = tx.api_policies().await?;
        let gateways = tx.gateway_key_hashes().await?;
        drop(tx);
        let snapshot = Snapshot {
            consumers: consumers
                .into_iter()
                .filter(|c| c.status != "canceled")
                .map(|c| {
                    let consumer = Consumer {
                        subscription_id: c.subscription_id.into(),
                        api_id: c.api_id.into(),
                        first_day_ms: floor_to(c.started_at, DAY_MS),
                    };
                    (c.consumer_key, consumer)
                })
                .collect(),
            apis: apis
                .into_iter()
                .map(|a| {
                    let entry = ApiEntry {
                        id: a.id.into(),
                        policy: Arc::new(a.policy),
                    };
                    (a.slug, entry)
                })
                .collect(),
            gateways: gateways.into_iter().collect(),
        };
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        Ok(())
    }

    /// Reloads after a miss, unless a miss reloaded less than a second ago. Answers whether it did.
    pub async fn reload_after_miss(&self) -> bool {
        let mut last = self.last_miss_reload.lock().await;
        if last.is_some_and(|at| at.elapsed() < MISS_RELOAD_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match self.reload().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "could not reload the consumer directory");
                false
            }
        }
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn view(&self) -> DirectoryView {
        DirectoryView(self.current())
    }

    /// Keeps the directory fresh for changes other replicas or the CLI make.
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let directory = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let Err(error) = directory.reload().await {
                    tracing::warn!(%error, "could not refresh the consumer directory");
                }
            }
        })
    }
}

/// One consistent view of the directory, for a whole request.
pub struct DirectoryView(Arc<Snapshot>);

impl DirectoryView {
    pub fn consumer(&self, key: &str) -> Option<&Consumer> {
        self.0.consumers.get(key)
    }

    pub fn api(&self, slug: &str) -> Option<&ApiEntry> {
        self.0.apis.get(slug)
    }

    /// The gateway id whose key hashes to `key_hash`.
    pub fn gateway(&self, key_hash: &str) -> Option<&str> {
        self.0.gateways.get(key_hash).map(String::as_str)
    }
}
