//! Archiving apis, tiers and subscribers where it is safe: never while a live subscription
//! depends on one (it is canceled first). The row stays for the history that names it; put again
//! (the admin API's create or change, a catalog file), it is restored.

use super::{CatalogError, CatalogResult};
use crate::store::{Api, Archivable, Subscriber, Tier, Tx};

pub async fn archive_api(tx: &mut Tx, key: &str) -> CatalogResult<Api> {
    let api = tx
        .find_api(key)
        .await?
        .ok_or_else(|| not_found("api", key))?;
    archive(tx, Archivable::Api, &api.id, api.spec.slug.as_str()).await?;
    found(tx.find_api(&api.id).await?, "api", key)
}

pub async fn archive_tier(tx: &mut Tx, key: &str) -> CatalogResult<Tier> {
    let tier = tx
        .find_tier(key)
        .await?
        .ok_or_else(|| not_found("tier", key))?;
    archive(
        tx,
        Archivable::Tier,
        &tier.id,
        tier.latest.spec.slug.as_str(),
    )
    .await?;
    found(tx.find_tier(&tier.id).await?, "tier", key)
}

pub async fn archive_subscriber(tx: &mut Tx, key: &str) -> CatalogResult<Subscriber> {
    let subscriber = tx
        .find_subscriber(key)
        .await?
        .ok_or_else(|| not_found("subscriber", key))?;
    let external_id = subscriber.spec.external_id.as_str();
    archive(tx, Archivable::Subscriber, &subscriber.id, external_id).await?;
    found(tx.find_subscriber(&subscriber.id).await?, "subscriber", key)
}

/// Marks the row archived first, which on PostgreSQL holds it against a subscription being made
/// on it meanwhile, then refuses (the caller rolls back) if a live subscription depends on it.
async fn archive(tx: &mut Tx, kind: Archivable, id: &str, key: &str) -> CatalogResult<()> {
    tx.set_archived(kind, id, true).await?;
    let live = tx.live_subscriptions_on(kind, id).await?;
    if live.count > 0 {
        return Err(CatalogError::InUse {
            kind: kind.name(),
            key: key.to_owned(),
            live,
        });
    }
    Ok(())
}

/// Refuses a subscription made on (or moved to) a tier whose api, the tier itself, or a
/// subscriber that is archived.
pub(super) async fn parents_live(
    tx: &mut Tx,
    tier: &Tier,
    subscriber: &Subscriber,
) -> CatalogResult<()> {
    let Some(kind) = tx.archived_parent(&tier.id, &subscriber.id).await? else {
        return Ok(());
    };
    let key = match kind {
        Archivable::Api => tier.latest.spec.api.as_str(),
        Archivable::Tier => tier.latest.spec.slug.as_str(),
        Archivable::Subscriber => subscriber.spec.external_id.as_str(),
    };
    Err(CatalogError::Archived {
        kind: kind.name(),
        key: key.to_owned(),
    })
}

fn not_found(kind: &'static str, key: &str) -> CatalogError {
    CatalogError::NotFound {
        kind,
        key: key.to_owned(),
    }
}

fn found<T>(row: Option<T>, kind: &'static str, key: &str) -> CatalogResult<T> {
    row.ok_or_else(|| not_found(kind, key))
}
