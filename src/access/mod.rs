//! The gateway's access decision, answered from memory: each subscription's payment state and,
//! where its tier has a hard quota, its billable calls in the current period. Warmed at start,
//! bumped by the ingestion writer after each commit, reloaded after every state change this
//! replica makes and every few seconds for the changes of other replicas.

mod events;

pub use events::{Applied, EventOutcome, apply_event};

use crate::domain::meter::Aggregation;
use crate::domain::time::{DAY_MS, floor_to, from_ms};
use crate::metering::directory::DirectoryView;
use crate::metering::thresholds::{Watch, Watched};
use crate::store::{AccessRow, MeterIncrement, Store, StoreResult, Tx, UsageIncrement, now_ms};
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the gateway is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        subscription_id: Arc<str>,
        tier: Arc<str>,
        /// Under a hard quota: the limit, the calls left after this one and when it resets.
        quota: Option<QuotaLeft>,
    },
    /// The key is unknown, canceled, or belongs to another api.
    Refused { reason: &'static str },
    /// Unpaid past the grace period.
    Unpaid { since: i64 },
    /// The hard quota is reached until the period ends.
    QuotaReached { limit: u64, resets_at: i64 },
}

/// A hard quota as an allowed call leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaLeft {
    pub limit: u64,
    pub remaining: u64,
    pub resets_at: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    tier: Arc<str>,
    status: String,
    past_due_since: Option<i64>,
    quota: Option<Quota>,
    /// Paid, with no Stripe Subscription yet, under `TOLLBOOTH_UNMIRRORED_ACCESS=refuse`.
    not_billable_yet: bool,
    /// Its tier's hard quota and alerts, which the ingestion commit notifies.
    watch: Option<Arc<Watch>>,
    /// The hard limits of its tier's charges on declared meters, in the current period.
    meter_limits: Vec<MeterLimit>,
}

/// A charge's hard limit on a declared meter, and how much of it the current period has used.
#[derive(Debug, Clone)]
struct MeterLimit {
    meter: String,
    dimensions: std::collections::BTreeMap<String, String>,
    limit: u64,
    used: Decimal,
    period_start: i64,
    period_end: i64,
}

impl MeterLimit {
    /// Whether a meter row of these dimension values counts for the limit.
    fn covers(&self, meter: &str, dimensions: &str) -> bool {
        if meter != self.meter {
            return false;
        }
        if self.dimensions.is_empty() {
            return true;
        }
        let values = crate::domain::meter::dimension_values(dimensions);
        self.dimensions
            .iter()
            .all(|(k, v)| values.iter().any(|(vk, vv)| vk == k && vv == v))
    }

    /// Adds a committed increment: sums and counts at once, a max or a latest value as it is; a
    /// unique count waits for the next catch-up to read the period's distinct values again.
    fn add(&mut self, increment: &MeterIncrement) {
        if !(self.period_start..self.period_end).contains(&increment.hour)
            || !self.covers(&increment.meter, &increment.dimensions)
        {
            return;
        }
        let micros = |value: i128| {
            Decimal::try_from_i128_with_scale(value, crate::domain::units::UNIT_SCALE)
                .unwrap_or(Decimal::MAX)
        };
        match increment.aggregation {
            Aggregation::Count => self.used += Decimal::from(increment.records),
            Aggregation::Sum => self.used += micros(increment.sum_micros),
            Aggregation::Max => self.used = self.used.max(micros(increment.max_micros.into())),
            Aggregation::Latest => self.used = micros(increment.latest_micros.into()),
            Aggregation::UniqueCount => {}
        }
    }

    fn reached(&self, now: i64) -> bool {
        now < self.period_end && self.used >= Decimal::from(self.limit)
    }
}

#[derive(Debug, Clone)]
struct Quota {
    limit: u64,
    period_start: i64,
    period_end: i64,
    used: u64,
}

/// Most catalog changes one catch-up applies; more, and the whole book is read again.
const CATCH_UP_LIMIT: i64 = 10_000;

/// A subscription's entry as the database has it now: its state and, under a hard quota, the
/// billable calls of its current period.
async fn entry_of(
    tx: &mut Tx,
    row: AccessRow,
    now: i64,
    refuse_unmirrored: bool,
) -> StoreResult<(String, Entry)> {
    let not_billable_yet = refuse_unmirrored && !row.mirrored && !row.tier.is_free();
    let meter_limits = meter_limits_of(tx, &row, now).await?;
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
    let tier = Arc::from(row.tier.slug.as_str());
    let watch = Watch::wanted(&row.tier).then(|| {
        Arc::new(Watch {
            tier: row.tier,
            started_at: row.started_at,
        })
    });
    Ok((
        row.subscription_id,
        Entry {
            tier,
            status: row.status,
            past_due_since: row.past_due_since,
            quota,
            not_billable_yet,
            watch,
            meter_limits,
        },
    ))
}

/// The hard limits of a subscription's charges on declared meters, with what the current period
/// has used of each, read from the database.
async fn meter_limits_of(tx: &mut Tx, row: &AccessRow, now: i64) -> StoreResult<Vec<MeterLimit>> {
    let limited: Vec<(&crate::domain::tier::Charge, u64)> = row
        .tier
        .charges
        .iter()
        .filter_map(|c| Some((c, c.quota?.hard_limit?)))
        .collect();
    if limited.is_empty() {
        return Ok(Vec::new());
    }
    let anchor = from_ms(floor_to(row.started_at, DAY_MS)).date_naive();
    let Ok(period) = crate::pricing::period_containing(
        anchor,
        row.tier.period(),
        from_ms(now.max(row.started_at)),
    ) else {
        return Ok(Vec::new());
    };
    let (start, end) = (
        period.start().timestamp_millis(),
        period.end().timestamp_millis(),
    );
    let rows = tx.meter_hours(&row.subscription_id, start, end).await?;
    let uniques = tx
        .meter_unique_values(&row.subscription_id, start, end)
        .await?;
    let usage = crate::billing::usage_of_meters(rows.iter(), uniques.iter());
    let mut limits = Vec::with_capacity(limited.len());
    for (charge, limit) in limited {
        let used = crate::pricing::charge_quantity(charge, &usage).unwrap_or(Decimal::MAX);
        limits.push(MeterLimit {
            meter: charge.meter.to_string(),
            dimensions: charge.dimensions.clone(),
            limit,
            used,
            period_start: start,
            period_end: end,
        });
    }
    Ok(limits)
}

/// Counts one increment against the quota it falls in.
fn count(entries: &mut HashMap<String, Entry>, increment: &UsageIncrement) {
    if let Some(quota) = entries
        .get_mut(increment.subscription_id.as_str())
        .and_then(|e| e.quota.as_mut())
        .filter(|quota| (quota.period_start..quota.period_end).contains(&increment.hour))
    {
        quota.used = quota
            .used
            .saturating_add(u64::try_from(increment.billable_calls).unwrap_or(0));
    }
}

/// A subscription's calls allowed and not yet recorded, counted by the second they were allowed
/// (oldest first), so that their memory is bounded by the hold, not by the call rate.
#[derive(Debug, Default)]
struct Held {
    seconds: VecDeque<(i64, u64)>,
    total: u64,
}

impl Held {
    /// Forgets the calls allowed before `since` (Unix ms).
    fn expire(&mut self, since: i64) {
        let second = since.div_euclid(1000);
        while let Some(&(at, calls)) = self.seconds.front() {
            if at >= second {
                break;
            }
            self.total -= calls;
            self.seconds.pop_front();
        }
    }

    /// Takes `calls` recorded calls off, oldest first.
    fn release(&mut self, mut calls: u64) {
        while calls > 0 {
            let Some(front) = self.seconds.front_mut() else {
                break;
            };
            let taken = front.1.min(calls);
            front.1 -= taken;
            self.total -= taken;
            calls -= taken;
            if front.1 == 0 {
                self.seconds.pop_front();
            }
        }
    }

    fn add(&mut self, now: i64) {
        let second = now.div_euclid(1000);
        match self.seconds.back_mut() {
            Some((at, calls)) if *at == second => *calls += 1,
            _ => self.seconds.push_back((second, 1)),
        }
        self.total += 1;
    }
}

/// The shared book of access state. Cheap to clone.
#[derive(Clone)]
pub struct AccessBook {
    store: Store,
    grace_ms: i64,
    entries: Arc<RwLock<HashMap<String, Entry>>>,
    /// One read of the database at a time, so an older read never replaces a newer one; it holds
    /// what the book has applied.
    reading: Arc<tokio::sync::Mutex<Followed>>,
    /// Usage counted while the database is read: counted again into what was read, since the
    /// read may not have seen its commit.
    counted_during_reload: Arc<std::sync::Mutex<Option<Vec<UsageIncrement>>>>,
    /// Calls allowed under a hard quota whose records have not arrived yet, by subscription. They
    /// count against the quota until as many billable calls are committed, or `hold_ms` has
    /// passed.
    held: Arc<std::sync::Mutex<HashMap<Arc<str>, Held>>>,
    hold_ms: i64,
    /// Refuse a paid subscription whose Stripe Subscription does not exist yet.
    refuse_unmirrored: bool,
}

/// How far the book has followed the database.
#[derive(Debug, Default, Clone, Copy)]
struct Followed {
    /// The newest catalog change applied.
    catalog: i64,
    /// The newest aggregation-table revision whose usage was read.
    usage: i64,
}

impl AccessBook {
    /// Loads the book from the database. `refuse_unmirrored`: refuse a paid subscription while
    /// its Stripe Subscription does not exist (Stripe live and `TOLLBOOTH_UNMIRRORED_ACCESS`
    /// `refuse`).
    pub async fn load(
        store: Store,
        grace: Duration,
        hold: Duration,
        refuse_unmirrored: bool,
    ) -> StoreResult<Self> {
        let book = Self {
            store,
            grace_ms: i64::try_from(grace.as_millis()).unwrap_or(i64::MAX),
            entries: Arc::default(),
            reading: Arc::default(),
            counted_during_reload: Arc::default(),
            held: Arc::default(),
            hold_ms: i64::try_from(hold.as_millis()).unwrap_or(i64::MAX),
            refuse_unmirrored,
        };
        book.reload().await?;
        Ok(book)
    }

    /// Reads every subscription's state and current-period usage again.
    pub async fn reload(&self) -> StoreResult<()> {
        let mut applied = self.reading.lock().await;
        *self.during_reload() = Some(Vec::new());
        let read = self.read_entries().await;
        let counted = self.during_reload().take().unwrap_or_default();
        let (mut entries, now_applied) = read?;
        // Usage committed while the database was read, which the read may have missed; at worst
        // a call counted twice until its subscription is read again, never one lost.
        for increment in &counted {
            count(&mut entries, increment);
        }
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = entries;
        *applied = now_applied;
        Ok(())
    }

    /// Applies what changed since the book last read the database: the subscriptions the catalog
    /// changed, those whose usage another writer committed, and those whose quota period ended.
    /// Its cost is that of the changes, not of the catalog.
    pub async fn catch_up(&self) -> StoreResult<()> {
        let mut applied = self.reading.lock().await;
        let now = now_ms();
        let mut tx = self.store.begin_read().await?;
        let changes = tx.catalog_changes(applied.catalog, CATCH_UP_LIMIT).await?;
        let gap = tx
            .oldest_catalog_change()
            .await?
            .is_some_and(|oldest| oldest > applied.catalog + 1);
        if gap || changes.len() >= usize::try_from(CATCH_UP_LIMIT).unwrap_or(usize::MAX) {
            drop(tx);
            drop(applied);
            return self.reload().await;
        }
        let (used, usage_seen) = tx.usage_changed_since(applied.usage).await?;
        let mut ids: BTreeSet<String> = changes
            .iter()
            .filter(|change| change.kind == "subscription")
            .map(|change| change.object_id.clone())
            .collect();
        {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            ids.extend(used.into_iter().filter(|id| {
                entries
                    .get(id)
                    .is_some_and(|e| e.quota.is_some() || !e.meter_limits.is_empty())
            }));
            ids.extend(
                entries
                    .iter()
                    .filter(|(_, e)| {
                        e.quota.as_ref().is_some_and(|q| now >= q.period_end)
                            || e.meter_limits.iter().any(|l| now >= l.period_end)
                    })
                    .map(|(id, _)| id.clone()),
            );
        }
        let catalog_seen = changes.last().map_or(applied.catalog, |c| c.seq);
        if ids.is_empty() {
            *applied = Followed {
                catalog: catalog_seen,
                usage: usage_seen,
            };
            return Ok(());
        }
        *self.during_reload() = Some(Vec::new());
        let mut read = Vec::with_capacity(ids.len());
        let mut failed = None;
        for id in &ids {
            match tx.access_row_of(id).await {
                Ok(Some(row)) if row.status != "canceled" => {
                    match entry_of(&mut tx, row, now, self.refuse_unmirrored).await {
                        Ok((id, entry)) => read.push((id, Some(entry))),
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                }
                Ok(_) => read.push((id.clone(), None)),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        drop(tx);
        let counted = self.during_reload().take().unwrap_or_default();
        if let Some(error) = failed {
            return Err(error);
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for (id, entry) in read {
            match entry {
                Some(entry) => entries.insert(id, entry),
                None => entries.remove(&id),
            };
        }
        for increment in counted.iter().filter(|i| ids.contains(&i.subscription_id)) {
            count(&mut entries, increment);
        }
        *applied = Followed {
            catalog: catalog_seen,
            usage: usage_seen,
        };
        Ok(())
    }

    fn during_reload(&self) -> std::sync::MutexGuard<'_, Option<Vec<UsageIncrement>>> {
        self.counted_during_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    async fn read_entries(&self) -> StoreResult<(HashMap<String, Entry>, Followed)> {
        let now = now_ms();
        let mut tx = self.store.begin_read().await?;
        // Read first: a change committed after them is applied again by the next catch-up.
        let applied = Followed {
            catalog: tx.catalog_revision().await?,
            usage: tx.usage_revision().await?,
        };
        let rows = tx.access_rows().await?;
        let mut entries = HashMap::with_capacity(rows.len());
        for row in rows {
            let (id, entry) = entry_of(&mut tx, row, now, self.refuse_unmirrored).await?;
            entries.insert(id, entry);
        }
        Ok((entries, applied))
    }

    /// Counts committed usage against the quotas it falls in.
    pub fn record_usage(&self, increments: &[UsageIncrement], meters: &[MeterIncrement]) {
        if let Some(counted) = self.during_reload().as_mut() {
            counted.extend(increments.iter().cloned());
        }
        self.release_held(increments);
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for increment in increments {
            count(&mut entries, increment);
        }
        for increment in meters {
            if let Some(entry) = entries.get_mut(increment.subscription_id.as_str()) {
                for limit in &mut entry.meter_limits {
                    limit.add(increment);
                }
            }
        }
    }

    /// The hard quota and alerts of a subscription, for the ingestion commit to notify.
    pub fn watch_of(&self, subscription_id: &str) -> Watched {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        match entries.get(subscription_id) {
            Some(entry) => entry.watch.clone().map_or(Watched::No, Watched::Yes),
            None => Watched::Unknown,
        }
    }

    /// Committed billable calls take the place of as many held decisions, oldest first.
    fn release_held(&self, increments: &[UsageIncrement]) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_empty() {
            return;
        }
        for increment in increments {
            let Some(calls) = held.get_mut(increment.subscription_id.as_str()) else {
                continue;
            };
            calls.release(u64::try_from(increment.billable_calls).unwrap_or(0));
            if calls.total == 0 {
                held.remove(increment.subscription_id.as_str());
            }
        }
    }

    /// Counts an allowed call against its hard quota until its record arrives; answers `None`
    /// when the quota, held calls included, is used up.
    fn hold(&self, subscription_id: &Arc<str>, quota: &Quota, now: i64) -> Option<QuotaLeft> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let calls = held.entry(subscription_id.clone()).or_default();
        calls.expire(now.saturating_sub(self.hold_ms).max(quota.period_start));
        let used = quota.used.saturating_add(calls.total);
        if used >= quota.limit {
            if calls.total == 0 {
                held.remove(subscription_id);
            }
            return None;
        }
        calls.add(now);
        Some(QuotaLeft {
            limit: quota.limit,
            remaining: quota.limit - used - 1,
            resets_at: quota.period_end,
        })
    }

    /// A subscription's hard quota as the book holds it: `(used, limit, resets at)`, for the
    /// console's gauges.
    pub fn quota_of(&self, subscription_id: &str, now: i64) -> Option<(u64, u64, i64)> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let quota = entries.get(subscription_id)?.quota.as_ref()?;
        let used = if now >= quota.period_end {
            0
        } else {
            quota.used
        };
        Some((used, quota.limit, quota.period_end))
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
        if entry.not_billable_yet {
            return Decision::Refused {
                reason: "not_billable_yet",
            };
        }
        let allowed = |quota| Decision::Allowed {
            subscription_id: found.subscription_id.clone(),
            tier: entry.tier.clone(),
            quota,
        };
        // A charge's hard limit on a declared meter, reached by the calls and events committed.
        if let Some(reached) = entry.meter_limits.iter().find(|l| l.reached(now)) {
            return Decision::QuotaReached {
                limit: reached.limit,
                resets_at: reached.period_end,
            };
        }
        match &entry.quota {
            // A quota whose period is over has rolled: the next reload counts the new period.
            Some(quota) if now < quota.period_end => {
                match self.hold(&found.subscription_id, quota, now) {
                    Some(left) => allowed(Some(left)),
                    None => Decision::QuotaReached {
                        limit: quota.limit,
                        resets_at: quota.period_end,
                    },
                }
            }
            Some(quota) => allowed(Some(QuotaLeft {
                limit: quota.limit,
                remaining: quota.limit.saturating_sub(1),
                resets_at: quota.period_end,
            })),
            None => allowed(None),
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
                if let Err(error) = book.catch_up().await {
                    tracing::warn!(%error, "could not refresh the access book");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Held;

    #[test]
    fn held_calls_leave_oldest_first_by_record_or_by_age() {
        let mut held = Held::default();
        for at in [1_000, 1_200, 2_500, 2_900, 4_000] {
            held.add(at);
        }
        assert_eq!(held.total, 5);
        assert_eq!(held.seconds.len(), 3, "counted by the second");
        held.release(3);
        assert_eq!(held.total, 2);
        assert_eq!(held.seconds.front(), Some(&(2, 1)));
        held.expire(3_000);
        assert_eq!(held.total, 1);
        held.release(5);
        assert_eq!((held.total, held.seconds.len()), (0, 0));
        held.expire(10_000);
        assert_eq!(held.total, 0);
    }
}
