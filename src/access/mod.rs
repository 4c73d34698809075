//! The gateway's access decision, answered from memory: each subscription's payment state and,
//! where its tier has a hard quota, its billable calls in the current period. Warmed at start,
//! bumped by the ingestion writer after each commit, reloaded after every state change this
//! replica makes and every few seconds for the changes of other replicas.

mod events;

pub use events::{Applied, EventOutcome, apply_event};

use crate::domain::time::{DAY_MS, floor_to, from_ms};
use crate::metering::directory::DirectoryView;
use crate::store::{Store, StoreResult, UsageIncrement, now_ms};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the gateway is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// Calls left in the period under a hard quota; `None` without one.
        remaining: Option<u64>,
    },
    /// The key is unknown, canceled, or belongs to another api.
    Refused { reason: &'static str },
    /// Unpaid past the grace period.
    Unpaid { since: i64 },
    /// The hard quota is reached until the period ends.
    QuotaReached { limit: u64, resets_at: i64 },
}

#[derive(Debug, Clone)]
struct Entry {
    status: String,
    past_due_since: Option<i64>,
    quota: Option<Quota>,
}

#[derive(Debug, Clone)]
struct Quota {
    limit: u64,
    period_start: i64,
    period_end: i64,
    used: u64,
}

/// Counts one increment against the quota it falls in; answers `(limit, period end)` when this
/// increment reached the limit.
fn count(entries: &mut HashMap<String, Entry>, increment: &UsageIncrement) -> Option<(u64, i64)> {
    let quota = entries
        .get_mut(increment.subscription_id.as_str())
        .and_then(|e| e.quota.as_mut())
        .filter(|quota| (quota.period_start..quota.period_end).contains(&increment.hour))?;
    let before = quota.used;
    quota.used = quota
        .used
        .saturating_add(u64::try_from(increment.billable_calls).unwrap_or(0));
    (before < quota.limit && quota.used >= quota.limit).then_some((quota.limit, quota.period_end))
}

/// The shared book of access state. Cheap to clone.
#[derive(Clone)]
pub struct AccessBook {
    store: Store,
    notifier: crate::notify::Notifier,
    grace_ms: i64,
    entries: Arc<RwLock<HashMap<String, Entry>>>,
    /// One reload at a time, so an older snapshot never replaces a newer one.
    reloading: Arc<tokio::sync::Mutex<()>>,
    /// Usage counted while a reload reads the database: counted again into the new book, since
    /// the reload's read may not have seen its commit.
    counted_during_reload: Arc<std::sync::Mutex<Option<Vec<UsageIncrement>>>>,
}

impl AccessBook {
    /// Loads the book from the database.
    pub async fn load(
        store: Store,
        grace: Duration,
        notifier: crate::notify::Notifier,
    ) -> StoreResult<Self> {
        let book = Self {
            store,
            notifier,
            grace_ms: i64::try_from(grace.as_millis()).unwrap_or(i64::MAX),
            entries: Arc::default(),
            reloading: Arc::default(),
            counted_during_reload: Arc::default(),
        };
        book.reload().await?;
        Ok(book)
    }

    /// Reads every subscription's state and current-period usage again.
    pub async fn reload(&self) -> StoreResult<()> {
        let _one_at_a_time = self.reloading.lock().await;
        *self.during_reload() = Some(Vec::new());
        let read = self.read_entries().await;
        let counted = self.during_reload().take().unwrap_or_default();
        let mut entries = read?;
        // Usage committed while the database was read, which the read may have missed; at worst
        // a call counted twice until the next reload, never one lost.
        for increment in &counted {
            count(&mut entries, increment);
        }
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = entries;
        Ok(())
    }

    fn during_reload(&self) -> std::sync::MutexGuard<'_, Option<Vec<UsageIncrement>>> {
        self.counted_during_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    async fn read_entries(&self) -> StoreResult<HashMap<String, Entry>> {
        let now = now_ms();
        let mut tx = self.store.begin_read().await?;
        let rows = tx.access_rows().await?;
        let mut entries = HashMap::with_capacity(rows.len());
        for row in rows {
            let quota = match row.tier.quota.and_then(|q| q.hard_limit) {
                Some(limit) => {
                    let anchor = from_ms(floor_to(row.started_at, DAY_MS)).date_naive();
                    match crate::pricing::period_containing(
                        anchor,
                        row.tier.period(),
                        from_ms(now.max(row.started_at)),
                    ) {
                        Ok(period) => {
                            let start = period.start().timestamp_millis();
                            let end = period.end().timestamp_millis();
                            let used = tx
                                .billable_calls_between(&row.subscription_id, start, end)
                                .await?;
                            Some(Quota {
                                limit,
                                period_start: start,
                                period_end: end,
                                used: u64::try_from(used).unwrap_or(0),
                            })
                        }
                        Err(error) => {
                            tracing::warn!(subscription = %row.subscription_id, %error, "no current period for the quota");
                            None
                        }
                    }
                }
                None => None,
            };
            entries.insert(
                row.subscription_id,
                Entry {
                    status: row.status,
                    past_due_since: row.past_due_since,
                    quota,
                },
            );
        }
        Ok(entries)
    }

    /// Counts committed usage against the quotas it falls in.
    pub fn record_usage(&self, increments: &[UsageIncrement]) {
        if let Some(counted) = self.during_reload().as_mut() {
            counted.extend(increments.iter().cloned());
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for increment in increments {
            if let Some((limit, period_end)) = count(&mut entries, increment) {
                self.notifier.notify(
                    "quota.reached",
                    serde_json::json!({
                        "subscription": increment.subscription_id,
                        "limit": limit,
                        "resets_at": crate::domain::time::from_ms(period_end),
                    }),
                );
            }
        }
    }

    /// May `consumer` call `api` now?
    pub fn decide(
        &self,
        directory: &DirectoryView,
        consumer: &str,
        api: &str,
        now: i64,
    ) -> Decision {
        let Some(found) = directory.consumer(consumer) else {
            return Decision::Refused {
                reason: "unknown_consumer",
            };
        };
        if directory
            .api(api)
            .is_none_or(|entry| entry.id != found.api_id)
        {
            return Decision::Refused {
                reason: "not_subscribed",
            };
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = entries.get(found.subscription_id.as_ref()) else {
            return Decision::Refused { reason: "canceled" };
        };
        match entry.status.as_str() {
            "canceled" => return Decision::Refused { reason: "canceled" },
            "unpaid" => {
                return Decision::Unpaid {
                    since: entry.past_due_since.unwrap_or(now),
                };
            }
            "past_due" => {
                let since = entry.past_due_since.unwrap_or(now);
                if now >= since.saturating_add(self.grace_ms) {
                    return Decision::Unpaid { since };
                }
            }
            _ => {}
        }
        match &entry.quota {
            // A quota whose period is over has rolled: the next reload counts the new period.
            Some(quota) if now < quota.period_end && quota.used >= quota.limit => {
                Decision::QuotaReached {
                    limit: quota.limit,
                    resets_at: quota.period_end,
                }
            }
            Some(quota) if now < quota.period_end => Decision::Allowed {
                remaining: Some(quota.limit - quota.used),
            },
            Some(quota) => Decision::Allowed {
                remaining: Some(quota.limit),
            },
            None => Decision::Allowed { remaining: None },
        }
    }

    /// Keeps the book fresh for changes made by other replicas.
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let book = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let Err(error) = book.reload().await {
                    tracing::warn!(%error, "could not refresh the access book");
                }
            }
        })
    }
}
