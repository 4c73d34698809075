//! The declarative catalog file (`tollbooth catalog apply FILE`): YAML or JSON, applied in one
//! transaction, so a bad file changes nothing and applying the same file twice changes nothing.

use super::events::{CatalogEvents, Changed, Verb};
use super::{
    CatalogError, Mode, Outcome, archive_api, archive_subscriber, archive_tier, put_api,
    put_subscriber, put_subscription, put_tier,
};
use crate::domain::api::ApiSpec;
use crate::domain::ids::Key;
use crate::domain::subscriber::SubscriberSpec;
use crate::domain::subscription::{HashedKey, SubscriptionSpec, SubscriptionStatus};
use crate::domain::tier::TierSpec;
use crate::notify::NotifyError;
use crate::store::{PageRequest, Store, StoreError, Subscription, Taken, Tx};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A whole catalog, in the order it is applied: what a row refers to comes before it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    #[serde(default)]
    pub apis: Vec<ApiSpec>,
    #[serde(default)]
    pub tiers: Vec<TierSpec>,
    #[serde(default)]
    pub subscribers: Vec<SubscriberSpec>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
}

/// Why a file was refused; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file does not parse, or an entry breaks a rule: named as `tiers[1] (weather-pro): usage.bands: …`.
    #[error("{entry}: {message}")]
    Entry { entry: String, message: String },
    /// The file is not YAML or JSON at all.
    #[error("{0}")]
    Syntax(String),
    /// An entry's key was taken in the database past tollbooth's checks, by a write committed
    /// while this apply ran (it was tried again first; see [`apply_file`]).
    #[error("{entry}: {taken}")]
    Taken { entry: String, taken: Taken },
    /// Blocking mode: the provider's endpoint did not accept a change's notification.
    #[error("{entry}: {message}; nothing was applied")]
    NotAccepted { entry: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FileError {
    /// Whether another write took one of the file's keys while it was being applied.
    fn is_taken(&self) -> bool {
        matches!(
            self,
            FileError::Taken { .. } | FileError::Store(StoreError::Conflict(_))
        )
    }
}

/// How many times a file is applied before a key taken meanwhile is reported. Two applies of
/// one file need two: the second attempt sees what the other committed and finds it unchanged.
const APPLY_ATTEMPTS: u32 = 3;

/// How many rows of each kind a file created, changed or left as they were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub kinds: BTreeMap<&'static str, Counts>,
    /// Each entry created or updated, in the file's order: `tiers weather-pro: updated`.
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
    /// Archived by `--prune`: in the database, not in the file.
    pub archived: u32,
}

impl ApplyReport {
    fn count(&mut self, kind: &'static str, key: &str, outcome: Outcome) {
        let counts = self.kinds.entry(kind).or_default();
        match outcome {
            Outcome::Created => counts.created += 1,
            Outcome::Updated => counts.updated += 1,
            Outcome::Unchanged => counts.unchanged += 1,
        }
        match outcome {
            Outcome::Created => self.changes.push(format!("{kind} {key}: created")),
            Outcome::Updated => self.changes.push(format!("{kind} {key}: updated")),
            Outcome::Unchanged => {}
        }
    }

    fn archived(&mut self, kind: &'static str, key: &str) {
        self.kinds.entry(kind).or_default().archived += 1;
        self.changes.push(format!("{kind} {key}: archived"));
    }

    /// Whether applying the file changed anything.
    pub fn changed(&self) -> bool {
        self.kinds
            .values()
            .any(|c| c.created + c.updated + c.archived > 0)
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, c) in &self.kinds {
            write!(
                f,
                "{kind}: {} created, {} updated, {} unchanged",
                c.created, c.updated, c.unchanged
            )?;
            if c.archived > 0 {
                write!(f, ", {} archived", c.archived)?;
            }
            writeln!(f)?;
        }
        for change in &self.changes {
            writeln!(f, "  {change}")?;
        }
        Ok(())
    }
}

impl CatalogFile {
    /// Parses a catalog from YAML (JSON is read by the same parser, being YAML too).
    pub fn parse(text: &str) -> Result<Self, FileError> {
        let loose: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| FileError::Syntax(e.to_string()))?;
        let deserializer = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let (entry, field) = split_entry(&path);
            // The YAML parser names the path itself (`tiers[1].usage.package_size: …`): once is enough.
            let inner = error.inner().to_string();
            let inner = inner
                .strip_prefix(&format!("{path}: "))
                .unwrap_or(&inner)
                .to_owned();
            FileError::Entry {
                entry: name_entry(&loose, entry),
                message: if field.is_empty() {
                    inner
                } else {
                    format!("{field}: {inner}")
                },
            }
        })
    }
}

/// Splits `tiers[1].usage.bands` into the entry `tiers[1]` and the field `usage.bands`.
fn split_entry(path: &str) -> (&str, &str) {
    match path.find(']') {
        Some(end) => (&path[..=end], path[end + 1..].trim_start_matches('.')),
        None => (path, ""),
    }
}

/// `tiers[1]` becomes `tiers[1] (weather-pro)` when the entry carries a slug or external id.
fn name_entry(loose: &serde_norway::Value, entry: &str) -> String {
    let key = entry.split_once('[').and_then(|(kind, rest)| {
        let index: usize = rest.trim_end_matches(']').parse().ok()?;
        let item = loose.get(kind)?.get(index)?;
        item.get("slug")
            .or_else(|| item.get("external_id"))?
            .as_str()
            .map(str::to_owned)
    });
    match key {
        Some(key) => format!("{entry} ({key})"),
        None if entry == "." => "catalog".to_owned(),
        None => entry.to_owned(),
    }
}

/// Applies a catalog in one transaction: all of it, or — on the first refused entry — none of it.
///
/// On PostgreSQL two applies (or an apply and an admin request) can both find a key free and
/// both insert it: the later insert waits for the other transaction, then breaks a unique rule.
/// The whole apply is then tried again, from a transaction that sees the other's rows.
/// Every row a paged list of the store gives (`list_apis(page, false)`, …: the live rows).
macro_rules! every {
    ($tx:expr, $list:ident $(, $arg:expr)*) => {{
        let mut rows = Vec::new();
        let mut page = PageRequest {
            after: None,
            limit: 500,
        };
        loop {
            let batch = $tx.$list(&page $(, $arg)*).await?;
            page.after = batch.items.last().map(|row| row.id.clone());
            rows.extend(batch.items);
            if !batch.has_more {
                break rows;
            }
        }
    }};
}

/// The current catalog as a file that applies back changing nothing: every api, tier (at its
/// newest version) and subscriber not archived, and every subscription not canceled, with its
/// consumer keys by their hash (tollbooth keeps no key, so none can be written out).
pub async fn export_file(store: &Store) -> Result<CatalogFile, StoreError> {
    let mut tx = store.begin_read().await?;
    let mut subscriptions = Vec::new();
    for subscription in every!(tx, list_subscriptions) {
        if subscription.status != SubscriptionStatus::Canceled {
            subscriptions.push(exported(subscription)?);
        }
    }
    Ok(CatalogFile {
        apis: every!(tx, list_apis, false)
            .into_iter()
            .map(|a| a.spec)
            .collect(),
        tiers: every!(tx, list_tiers, false)
            .into_iter()
            .map(|t| t.latest.spec)
            .collect(),
        subscribers: every!(tx, list_subscribers, false)
            .into_iter()
            .map(|s| s.spec)
            .collect(),
        subscriptions,
    })
}

fn exported(subscription: Subscription) -> Result<SubscriptionSpec, StoreError> {
    let key = |value: String, column: &str| {
        Key::try_from(value).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    };
    Ok(SubscriptionSpec {
        external_id: key(subscription.external_id, "subscriptions.external_id")?,
        subscriber: key(subscription.subscriber, "subscribers.external_id")?,
        tier: key(subscription.tier, "tiers.slug")?,
        consumer_keys: Vec::new(),
        consumer_key_hashes: subscription
            .consumer_keys
            .into_iter()
            .zip(subscription.consumer_key_prefixes)
            .map(|(sha256, prefix)| HashedKey { sha256, prefix })
            .collect(),
    })
}

pub async fn apply_file(store: &Store, file: &CatalogFile) -> Result<ApplyReport, FileError> {
    apply_file_with(store, file, ApplyOptions::default(), None).await
}

/// What applying the file would change, worked out in a transaction that is then rolled back:
/// nothing is written, and no Stripe write is queued.
pub async fn dry_run_file(store: &Store, file: &CatalogFile) -> Result<ApplyReport, FileError> {
    let options = ApplyOptions {
        dry_run: true,
        ..ApplyOptions::default()
    };
    apply_file_with(store, file, options, None).await
}

/// How a file is applied.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Work out what would change in a transaction that is rolled back: nothing is written.
    pub dry_run: bool,
    /// Also archive the apis, tiers and subscribers the file does not list, as `DELETE` does:
    /// refused, and the whole file with it, while a live subscription depends on one.
    pub prune: bool,
}

/// Applies a file in one transaction; with `events`, the event of each change is written in it
/// (none on a dry run).
pub async fn apply_file_with(
    store: &Store,
    file: &CatalogFile,
    options: ApplyOptions,
    events: Option<&CatalogEvents<'_>>,
) -> Result<ApplyReport, FileError> {
    let events = events.filter(|_| !options.dry_run);
    let mut attempt = 1;
    loop {
        match apply_once(store, file, options, events).await {
            Err(error) if error.is_taken() && attempt < APPLY_ATTEMPTS => {
                tracing::info!(%error, attempt, "a key of the catalog was taken by a write committed meanwhile; applying the file again");
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn apply_once(
    store: &Store,
    file: &CatalogFile,
    options: ApplyOptions,
    events: Option<&CatalogEvents<'_>>,
) -> Result<ApplyReport, FileError> {
    let mut report = ApplyReport::default();
    let mut tx = store.begin().await?;
    let told = Told { events };
    for (i, spec) in file.apis.iter().enumerate() {
        let key = spec.slug.as_str();
        let (api, outcome) = put_api(&mut tx, spec, Mode::Apply)
            .await
            .map_err(|e| in_entry("apis", i, key, e))?;
        report.count("apis", key, outcome);
        told.put(&mut tx, outcome, Changed::Api(api), || {
            format!("apis[{i}] ({key})")
        })
        .await?;
    }
    for (i, spec) in file.tiers.iter().enumerate() {
        let key = spec.slug.as_str();
        let (tier, outcome) = put_tier(&mut tx, spec)
            .await
            .map_err(|e| in_entry("tiers", i, key, e))?;
        report.count("tiers", key, outcome);
        told.put(&mut tx, outcome, Changed::Tier(tier), || {
            format!("tiers[{i}] ({key})")
        })
        .await?;
    }
    for (i, spec) in file.subscribers.iter().enumerate() {
        let key = spec.external_id.as_str();
        let (subscriber, outcome) = put_subscriber(&mut tx, spec, Mode::Apply)
            .await
            .map_err(|e| in_entry("subscribers", i, key, e))?;
        report.count("subscribers", key, outcome);
        let changed = Changed::Subscriber(subscriber);
        told.put(&mut tx, outcome, changed, || {
            format!("subscribers[{i}] ({key})")
        })
        .await?;
    }
    for (i, spec) in file.subscriptions.iter().enumerate() {
        let key = spec.external_id.as_str();
        let (subscription, outcome) = put_subscription(&mut tx, spec, Mode::Apply)
            .await
            .map_err(|e| in_entry("subscriptions", i, key, e))?;
        report.count("subscriptions", key, outcome);
        let changed = Changed::Subscription(subscription);
        told.put(&mut tx, outcome, changed, || {
            format!("subscriptions[{i}] ({key})")
        })
        .await?;
    }
    if options.prune {
        prune(&mut tx, file, &mut report, &told).await?;
    }
    if !options.dry_run {
        tx.commit().await?;
    }
    Ok(report)
}

/// Writes the events of a file's changes, when it has somewhere to write them.
struct Told<'a, 'b> {
    events: Option<&'a CatalogEvents<'b>>,
}

impl Told<'_, '_> {
    async fn put(
        &self,
        tx: &mut Tx,
        outcome: Outcome,
        changed: Changed,
        entry: impl Fn() -> String,
    ) -> Result<(), FileError> {
        match Verb::of(outcome) {
            Some(verb) => self.tell(tx, verb, changed, entry).await,
            None => Ok(()),
        }
    }

    async fn tell(
        &self,
        tx: &mut Tx,
        verb: Verb,
        changed: Changed,
        entry: impl Fn() -> String,
    ) -> Result<(), FileError> {
        let Some(events) = self.events else {
            return Ok(());
        };
        events
            .write(tx, verb, changed)
            .await
            .map_err(|error| match error {
                NotifyError::Store(store) => FileError::Store(store),
                refused @ NotifyError::NotAccepted { .. } => FileError::NotAccepted {
                    entry: entry(),
                    message: refused.to_string(),
                },
            })
    }
}

/// Archives what the file does not list: subscribers, tiers, then apis.
async fn prune(
    tx: &mut Tx,
    file: &CatalogFile,
    report: &mut ApplyReport,
    told: &Told<'_, '_>,
) -> Result<(), FileError> {
    let unlisted = |kind: &str, key: &str, error: CatalogError| FileError::Entry {
        entry: format!("{kind} {key} (not in the file, so pruned)"),
        message: error.to_string(),
    };
    let listed: Vec<&str> = file
        .subscribers
        .iter()
        .map(|s| s.external_id.as_str())
        .collect();
    for subscriber in every!(tx, list_subscribers, false) {
        let key = subscriber.spec.external_id.as_str();
        if !listed.contains(&key) {
            let archived = archive_subscriber(tx, key)
                .await
                .map_err(|e| unlisted("subscribers", key, e))?;
            report.archived("subscribers", key);
            let changed = Changed::Subscriber(archived);
            told.tell(tx, Verb::Deleted, changed, || format!("subscribers {key}"))
                .await?;
        }
    }
    let listed: Vec<&str> = file.tiers.iter().map(|t| t.slug.as_str()).collect();
    for tier in every!(tx, list_tiers, false) {
        let key = tier.latest.spec.slug.as_str();
        if !listed.contains(&key) {
            let archived = archive_tier(tx, key)
                .await
                .map_err(|e| unlisted("tiers", key, e))?;
            report.archived("tiers", key);
            told.tell(tx, Verb::Deleted, Changed::Tier(archived), || {
                format!("tiers {key}")
            })
            .await?;
        }
    }
    let listed: Vec<&str> = file.apis.iter().map(|a| a.slug.as_str()).collect();
    for api in every!(tx, list_apis, false) {
        let key = api.spec.slug.as_str();
        if !listed.contains(&key) {
            let archived = archive_api(tx, key)
                .await
                .map_err(|e| unlisted("apis", key, e))?;
            report.archived("apis", key);
            told.tell(tx, Verb::Deleted, Changed::Api(archived), || {
                format!("apis {key}")
            })
            .await?;
        }
    }
    Ok(())
}

fn in_entry(kind: &str, index: usize, key: &str, error: CatalogError) -> FileError {
    let entry = format!("{kind}[{index}] ({key})");
    match error {
        CatalogError::Store(StoreError::Conflict(taken)) => FileError::Taken { entry, taken },
        CatalogError::Store(store) => FileError::Store(store),
        other => FileError::Entry {
            entry,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_named_with_its_entry() {
        let text = "tiers:\n  - slug: pro\n    api: weather\n    name: Pro\n    currency: usd\n    usage: {model: per_unit, unit_price: \"-1\"}\n";
        let err = CatalogFile::parse(text).unwrap_err().to_string();
        assert!(err.starts_with("tiers[0] (pro): usage"), "{err}");
        assert!(err.contains("negative"), "{err}");
    }

    #[test]
    fn an_unknown_top_level_key_is_refused() {
        let err = CatalogFile::parse("apis: []\nplans: []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("plans"), "{err}");
    }

    #[test]
    fn the_example_catalog_parses() {
        let text = include_str!("../../examples/catalog.yaml");
        let file = CatalogFile::parse(text).unwrap();
        assert_eq!(file.tiers.len(), 3);
        assert_eq!(
            file.subscriptions[0].consumer_keys[0].as_str(),
            "acme-app-1"
        );
    }
}
