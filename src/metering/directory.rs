//! An in-memory copy of what ingestion looks up for every record: which subscription and api a
//! consumer key belongs to, each api's recording policy, and the gateway keys. Read whole at start;
//! then only the catalog's changes are applied, after every catalog write of this process, on a
//! miss (at most once a second), and in the background for the changes of other replicas.

use crate::domain::policy::RecordingPolicy;
use crate::domain::time::{DAY_MS, floor_to};
use crate::store::{ApiPolicyRow, ConsumerRow, Store, StoreResult};
use std::collections::{BTreeSet, HashMap};
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
    /// Its declared meters and dimensions; `None` when it declares none.
    pub meters: Option<Arc<super::meters::ApiMeters>>,
}

#[derive(Default, Clone)]
struct Snapshot {
    consumers: HashMap<String, Consumer>,
    /// Each subscription's live keys in `consumers`, so that a change to one touches only its own.
    keys_of: HashMap<Arc<str>, Vec<String>>,
    apis: HashMap<String, ApiEntry>,
    /// Every api's routes, most specific first: a host before any host, a longer prefix first.
    routes: Vec<Route>,
    /// Each gateway by its key's hash.
    gateways: HashMap<String, GatewayEntry>,
    /// Each api's dimension values, shared by the snapshots made by catching up.
    dimensions: Arc<super::meters::DimensionBook>,
}

/// One route of an api: a host (`None`: any) and a path prefix.
#[derive(Debug, Clone)]
struct Route {
    host: Option<String>,
    prefix: String,
    api: String,
}

/// A gateway as the hot paths need it.
#[derive(Debug, Clone)]
pub struct GatewayEntry {
    pub id: String,
    pub access: Arc<crate::domain::gateway::GatewayAccess>,
    pub ingest: Arc<crate::domain::ingest::GatewayIngest>,
    /// When this key stops being taken (the key before a rotation), Unix ms.
    pub expires_at: Option<i64>,
}

fn gateway_map(rows: Vec<crate::store::GatewayKeyRow>) -> HashMap<String, GatewayEntry> {
    rows.into_iter()
        .map(|row| {
            (
                row.key_hash,
                GatewayEntry {
                    id: row.id,
                    access: Arc::new(row.access),
                    ingest: Arc::new(row.ingest),
                    expires_at: row.expires_at,
                },
            )
        })
        .collect()
}

impl Snapshot {
    /// Puts one subscription's live keys in place of those it had.
    fn set_subscription(&mut self, subscription_id: &str, rows: Vec<ConsumerRow>) {
        if let Some(keys) = self.keys_of.remove(subscription_id) {
            for key in keys {
                if self
                    .consumers
                    .get(&key)
                    .is_some_and(|c| &*c.subscription_id == subscription_id)
                {
                    self.consumers.remove(&key);
                }
            }
        }
        for row in rows.into_iter().filter(|c| c.status != "canceled") {
            let consumer = Consumer {
                subscription_id: row.subscription_id.into(),
                api_id: row.api_id.into(),
                first_day_ms: floor_to(row.started_at, DAY_MS),
            };
            self.keys_of
                .entry(consumer.subscription_id.clone())
                .or_default()
                .push(row.consumer_key.clone());
            self.consumers.insert(row.consumer_key, consumer);
        }
    }

    fn set_apis(&mut self, apis: Vec<ApiPolicyRow>) {
        let mut routes = Vec::new();
        for api in &apis {
            for (host, prefix) in
                crate::domain::api::routes_of(&api.routes.hosts, &api.routes.path_prefixes)
            {
                routes.push(Route {
                    host: host.map(str::to_owned),
                    prefix: prefix.to_owned(),
                    api: api.slug.clone(),
                });
            }
        }
        routes.sort_by(|a, b| {
            (b.host.is_some(), b.prefix.len()).cmp(&(a.host.is_some(), a.prefix.len()))
        });
        self.routes = routes;
        self.apis = apis
            .into_iter()
            .map(|a| {
                let entry = ApiEntry {
                    id: a.id.into(),
                    policy: Arc::new(a.policy),
                    meters: super::meters::ApiMeters::of(a.metering).map(Arc::new),
                };
                (a.slug, entry)
            })
            .collect();
    }
}

/// The shared, reloadable directory.
#[derive(Clone)]
pub struct Directory {
    store: Store,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    last_miss_reload: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// The newest catalog change applied; held while the database is read, one read at a time.
    applied: Arc<tokio::sync::Mutex<i64>>,
}

/// How often a miss may reload the directory from the database.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Most catalog changes one catch-up applies; more, and the whole directory is read again.
const CATCH_UP_LIMIT: i64 = 10_000;

impl Directory {
    /// Loads the directory from the database.
    pub async fn load(store: Store) -> StoreResult<Self> {
        let directory = Self {
            store,
            snapshot: Arc::default(),
            last_miss_reload: Arc::default(),
            applied: Arc::default(),
        };
        directory.reload().await?;
        Ok(directory)
    }

    /// Reads the whole directory again.
    pub async fn reload(&self) -> StoreResult<()> {
        let mut applied = self.applied.lock().await;
        let mut tx = self.store.begin_read().await?;
        // Read first: a change committed after it is applied again by the next catch-up.
        let revision = tx.catalog_revision().await?;
        let consumers = tx.live_consumers().await?;
        let apis = tx.api_policies().await?;
        let gateways = tx.gateway_key_hashes().await?;
        let dimensions = tx.dimension_values().await?;
        drop(tx);
        let mut snapshot = Snapshot {
            gateways: gateway_map(gateways),
            dimensions: Arc::new(super::meters::DimensionBook::from_rows(dimensions)),
            ..Snapshot::default()
        };
        snapshot.set_apis(apis);
        let mut by_subscription: HashMap<String, Vec<ConsumerRow>> = HashMap::new();
        for row in consumers {
            by_subscription
                .entry(row.subscription_id.clone())
                .or_default()
                .push(row);
        }
        for (subscription_id, rows) in by_subscription {
            snapshot.set_subscription(&subscription_id, rows);
        }
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        *applied = revision;
        Ok(())
    }

    /// Applies the catalog changes made since the directory last read the database (by this
    /// process or any other); call after a catalog write so the hot paths see it at once. Its
    /// cost is that of the changes, not of the catalog.
    pub async fn catch_up(&self) -> StoreResult<()> {
        let mut applied = self.applied.lock().await;
        let mut tx = self.store.begin_read().await?;
        let changes = tx.catalog_changes(*applied, CATCH_UP_LIMIT).await?;
        let Some(last) = changes.last().map(|c| c.seq) else {
            return Ok(());
        };
        let gap = tx
            .oldest_catalog_change()
            .await?
            .is_some_and(|oldest| oldest > *applied + 1);
        if gap || changes.len() >= usize::try_from(CATCH_UP_LIMIT).unwrap_or(usize::MAX) {
            drop(tx);
            drop(applied);
            return self.reload().await;
        }
        let subscriptions: BTreeSet<&str> = changes
            .iter()
            .filter(|c| c.kind == "subscription")
            .map(|c| c.object_id.as_str())
            .collect();
        let mut consumers = Vec::with_capacity(subscriptions.len());
        for id in subscriptions {
            consumers.push((id, tx.live_consumers_of(id).await?));
        }
        let apis = match changes.iter().any(|c| c.kind == "api") {
            true => Some(tx.api_policies().await?),
            false => None,
        };
        let gateways = match changes.iter().any(|c| c.kind == "gateway") {
            true => Some(tx.gateway_key_hashes().await?),
            false => None,
        };
        drop(tx);
        let mut current = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        // In place when no request holds the current view, else on a copy.
        let snapshot = Arc::make_mut(&mut current);
        for (id, rows) in consumers {
            snapshot.set_subscription(id, rows);
        }
        if let Some(apis) = apis {
            snapshot.set_apis(apis);
        }
        if let Some(gateways) = gateways {
            snapshot.gateways = gateway_map(gateways);
        }
        *applied = last;
        Ok(())
    }

    /// Reloads after a miss, unless a miss reloaded less than a second ago. Answers whether it did.
    pub async fn reload_after_miss(&self) -> bool {
        let mut last = self.last_miss_reload.lock().await;
        if last.is_some_and(|at| at.elapsed() < MISS_RELOAD_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match self.catch_up().await {
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
                if let Err(error) = directory.catch_up().await {
                    tracing::warn!(%error, "could not refresh the consumer directory");
                }
            }
        })
    }
}

/// One consistent view of the directory, for a whole request.
pub struct DirectoryView(Arc<Snapshot>);

impl DirectoryView {
    /// The subscription a caller's key belongs to; keys are kept as their hashes only.
    pub fn consumer(&self, key: &str) -> Option<&Consumer> {
        self.0.consumers.get(&crate::auth::hash_secret(key))
    }

    pub fn api(&self, slug: &str) -> Option<&ApiEntry> {
        self.0.apis.get(slug)
    }

    /// The api of this id.
    pub fn api_by_id(&self, id: &str) -> Option<&ApiEntry> {
        self.0.apis.values().find(|api| &*api.id == id)
    }

    /// Each api's dimension values seen so far, for their bound.
    pub fn dimensions(&self) -> &super::meters::DimensionBook {
        &self.0.dimensions
    }

    /// The slug of the api routed at this host and path (the original request's), if any.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&str> {
        let host = host.map(str::to_ascii_lowercase);
        let bare = host.as_deref().map(|h| h.split(':').next().unwrap_or(h));
        self.0
            .routes
            .iter()
            .find(|route| {
                let host_matches = match route.host.as_deref() {
                    None => true,
                    Some(wanted) => host.as_deref() == Some(wanted) || bare == Some(wanted),
                };
                host_matches && crate::domain::api::path_under(path, &route.prefix)
            })
            .map(|route| route.api.as_str())
    }

    /// The gateway whose key hashes to `key_hash`, unless that key has expired.
    pub fn gateway(&self, key_hash: &str) -> Option<&GatewayEntry> {
        self.0
            .gateways
            .get(key_hash)
            .filter(|gateway| match gateway.expires_at {
                Some(expires_at) => crate::store::now_ms() < expires_at,
                None => true,
            })
    }
}
