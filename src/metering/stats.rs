//! What each gateway's sender has been told: when it last sent, how many records were taken,
//! seen before or rejected (by code), and its last rejections with their messages — so that a
//! provider looking at a misconfigured shipper sees why in `GET /v1/gateways/{id}`.
//!
//! Each replica counts in memory and writes its own totals (one row per gateway and replica,
//! absolute values, so a write is never lost to another replica's) every second and at stop; an
//! answer sums the rows, this replica's from memory.

use super::BatchSummary;
use super::formats::Read;
use crate::store::{Store, StoreResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Last rejections kept per gateway.
const RECENT: usize = 10;

/// One gateway's ingestion, as `GET /v1/gateways/{id}` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GatewayStats {
    /// When it last posted records (Unix ms); absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<i64>,
    /// Bodies posted, answered 202 or 400.
    pub bodies: u64,
    /// Records stored (billable or not).
    pub accepted: u64,
    /// Records whose id was stored before.
    pub duplicates: u64,
    /// Of the accepted, those the api's recording policy did not bill.
    pub not_billable: u64,
    /// Records rejected, by code.
    pub rejected: BTreeMap<String, u64>,
    /// The last rejections, newest first.
    pub recent_rejections: Vec<RecentRejection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecentRejection {
    /// When (Unix ms).
    pub at: i64,
    /// The record's index in its body.
    pub index: usize,
    pub code: String,
    pub message: String,
}

impl GatewayStats {
    fn reject(&mut self, at: i64, index: usize, code: &str, message: &str) {
        *self.rejected.entry(code.to_owned()).or_default() += 1;
        self.recent_rejections.insert(
            0,
            RecentRejection {
                at,
                index,
                code: code.to_owned(),
                message: message.to_owned(),
            },
        );
        self.recent_rejections.truncate(RECENT);
    }

    /// The sum of several replicas' counts.
    pub fn merge(rows: impl IntoIterator<Item = GatewayStats>) -> GatewayStats {
        let mut total = GatewayStats::default();
        for row in rows {
            total.last_sent_at = total.last_sent_at.max(row.last_sent_at);
            total.bodies += row.bodies;
            total.accepted += row.accepted;
            total.duplicates += row.duplicates;
            total.not_billable += row.not_billable;
            for (code, count) in row.rejected {
                *total.rejected.entry(code).or_default() += count;
            }
            total.recent_rejections.extend(row.recent_rejections);
        }
        total
            .recent_rejections
            .sort_by_key(|r| std::cmp::Reverse(r.at));
        total.recent_rejections.truncate(RECENT);
        total
    }
}

/// This replica's counts, by gateway id.
#[derive(Clone)]
pub struct IngestStats {
    replica: Arc<str>,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    by_gateway: HashMap<String, GatewayStats>,
    unsaved: HashSet<String>,
}

impl IngestStats {
    pub fn new() -> Self {
        Self {
            replica: uuid::Uuid::new_v4().to_string().into(),
            counts: Arc::default(),
        }
    }

    fn update(&self, gateway_id: &str, change: impl FnOnce(&mut GatewayStats, i64)) {
        let now = crate::store::now_ms();
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = counts.by_gateway.entry(gateway_id.to_owned()).or_default();
        stats.last_sent_at = Some(now);
        stats.bodies += 1;
        change(stats, now);
        counts.unsaved.insert(gateway_id.to_owned());
    }

    /// A body answered 202 with this summary.
    pub fn taken(&self, gateway_id: &str, summary: &BatchSummary) {
        let code = |code: &str| {
            metrics::counter!(crate::telemetry::names::GATEWAY_RECORDS,
            "gateway" => gateway_id.to_owned(), "outcome" => code.to_owned())
        };
        code("accepted").increment(summary.accepted);
        code("duplicate").increment(summary.duplicates);
        for rejected in &summary.rejected {
            rejected_metric(gateway_id, rejected.code);
        }
        self.update(gateway_id, |stats, now| {
            stats.accepted += summary.accepted;
            stats.duplicates += summary.duplicates;
            stats.not_billable += summary.not_billable;
            for rejected in summary.rejected.iter().rev() {
                stats.reject(now, rejected.index, rejected.code, &rejected.message);
            }
        });
    }

    /// A body of which no record could be read (answered 400).
    pub fn rejected_body(&self, gateway_id: &str, reads: &[Read<'_>]) {
        for read in reads {
            if let Err(rejection) = read {
                rejected_metric(gateway_id, rejection.code);
            }
        }
        self.update(gateway_id, |stats, now| {
            for (index, read) in reads.iter().enumerate().rev() {
                if let Err(rejection) = read {
                    stats.reject(now, index, rejection.code, &rejection.message);
                }
            }
        });
    }

    /// This replica's counts for one gateway, if it has any.
    pub fn of(&self, gateway_id: &str) -> Option<GatewayStats> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.by_gateway.get(gateway_id).cloned()
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Writes this replica's counts changed since the last save.
    pub async fn save(&self, store: &Store) -> StoreResult<()> {
        let changed: Vec<(String, GatewayStats)> = {
            let mut counts = self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let unsaved = std::mem::take(&mut counts.unsaved);
            unsaved
                .into_iter()
                .filter_map(|id| counts.by_gateway.get(&id).cloned().map(|s| (id, s)))
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        let mut tx = store.begin().await?;
        for (gateway_id, stats) in &changed {
            tx.save_ingest_stats(gateway_id, &self.replica, stats)
                .await?;
        }
        let saved = tx.commit().await;
        if saved.is_err() {
            // Saved next time.
            let mut counts = self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            counts.unsaved.extend(changed.into_iter().map(|(id, _)| id));
        }
        saved
    }

    /// Saves every second until aborted.
    pub fn spawn_saving(&self, store: Store) -> tokio::task::JoinHandle<()> {
        let stats = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(error) = stats.save(&store).await {
                    tracing::warn!(%error, "gateway ingestion counts not saved; trying again");
                }
            }
        })
    }
}

impl Default for IngestStats {
    fn default() -> Self {
        Self::new()
    }
}

fn rejected_metric(gateway_id: &str, code: &str) {
    metrics::counter!(crate::telemetry::names::GATEWAY_REJECTED,
        "gateway" => gateway_id.to_owned(), "code" => code.to_owned())
    .increment(1);
}
