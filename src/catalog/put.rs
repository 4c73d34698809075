//! Create-or-reconcile of each catalog object. Shared by the admin API and the catalog file.

use super::archive::parents_live;
use super::{CatalogError, CatalogResult, Mode, Outcome};
use crate::auth;
use crate::domain::FieldError;
use crate::domain::api::ApiSpec;
use crate::domain::gateway::GatewayAccess;
use crate::domain::ids::new_id;
use crate::domain::ingest::GatewayIngest;
use crate::domain::subscriber::SubscriberSpec;
use crate::domain::subscription::{StoredKey, SubscriptionSpec};
use crate::domain::text::Name;
use crate::domain::tier::TierSpec;
use crate::store::{Api, Archivable, Gateway, Subscriber, Subscription, Tier, Tx};
use crate::stripe::intents;

fn differs(kind: &str, key: &str) -> CatalogError {
    CatalogError::Conflict(format!(
        "{kind} `{key}` already exists with a different definition"
    ))
}

pub async fn put_api(tx: &mut Tx, spec: &ApiSpec, mode: Mode) -> CatalogResult<(Api, Outcome)> {
    spec.validate()?;
    claim_routes(tx, spec).await?;
    let existing = tx.find_api(spec.slug.as_str()).await?;
    let restored = restore(
        tx,
        Archivable::Api,
        existing.as_ref().map(|a| (&a.id, a.archived_at)),
    )
    .await?;
    // Put again, an archived api comes back with the definition given.
    let mode = if restored { Mode::Apply } else { mode };
    let outcome = match existing {
        None => {
            tx.insert_api(&new_id("api"), spec).await?;
            Outcome::Created
        }
        Some(existing) if existing.spec == *spec => Outcome::Unchanged,
        Some(_) if mode == Mode::Create => return Err(differs("api", spec.slug.as_str())),
        Some(existing)
            if existing.spec.stripe_account != spec.stripe_account
                && tx.api_has_tiers(&existing.id).await? =>
        {
            return Err(CatalogError::Conflict(format!(
                "api `{}` has tiers whose Stripe objects live in its current account; its stripe_account cannot change",
                spec.slug
            )));
        }
        Some(existing) if changed_aggregation(&existing.spec, spec).is_some() => {
            let (key, was) = changed_aggregation(&existing.spec, spec).unwrap_or_default();
            return Err(CatalogError::Conflict(format!(
                "meter `{key}` of api `{}` aggregates by {was}: the hours it has kept mean that, \
                 so its aggregation cannot change; declare a meter with a new key",
                spec.slug
            )));
        }
        Some(existing) => {
            tx.update_api(&existing.id, spec).await?;
            Outcome::Updated
        }
    };
    let outcome = restored_outcome(outcome, restored);
    Ok((found(tx.find_api(spec.slug.as_str()).await?)?, outcome))
}

/// A meter both versions declare with different aggregations: its key and the old one.
fn changed_aggregation(old: &ApiSpec, new: &ApiSpec) -> Option<(String, &'static str)> {
    new.meters.iter().find_map(|meter| {
        let before = old.meter(meter.key.as_str())?;
        (before.aggregation != meter.aggregation)
            .then(|| (meter.key.to_string(), before.aggregation.as_str()))
    })
}

/// Restores an archived row being put again; whether it was archived.
async fn restore(
    tx: &mut Tx,
    kind: Archivable,
    existing: Option<(&String, Option<i64>)>,
) -> CatalogResult<bool> {
    match existing {
        Some((id, Some(_))) => {
            tx.set_archived(kind, id, false).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A restored row is changed even when its definition is not.
fn restored_outcome(outcome: Outcome, restored: bool) -> Outcome {
    match outcome {
        Outcome::Unchanged if restored => Outcome::Updated,
        other => other,
    }
}

/// Refuses a route (host and path prefix) another api already has: the access decision must find
/// one api for a request.
async fn claim_routes(tx: &mut Tx, spec: &ApiSpec) -> CatalogResult<()> {
    let mine = spec.routes();
    if mine.is_empty() {
        return Ok(());
    }
    for (slug, routes) in tx.all_api_routes().await? {
        if slug == spec.slug.as_str() {
            continue;
        }
        let same = |(host, prefix): &(Option<&str>, &str)| {
            (
                host.map(str::to_owned),
                prefix.trim_end_matches('/').to_owned(),
            )
        };
        let theirs: Vec<_> = crate::domain::api::routes_of(&routes.hosts, &routes.path_prefixes)
            .iter()
            .map(same)
            .collect();
        if let Some((host, prefix)) = mine.iter().map(same).find(|route| theirs.contains(route)) {
            return Err(CatalogError::Conflict(format!(
                "api `{slug}` is already routed at host `{}` and path `{prefix}/`",
                host.as_deref().unwrap_or("*"),
            )));
        }
    }
    Ok(())
}

/// Creates a tier, or a new version of it when its definition changed: the same for the admin API
/// and a file, since a version is never edited.
pub async fn put_tier(tx: &mut Tx, spec: &TierSpec) -> CatalogResult<(Tier, Outcome)> {
    spec.validate()?;
    let api = tx
        .find_api(spec.api.as_str())
        .await?
        .ok_or_else(|| FieldError::new("api", format!("api `{}` does not exist", spec.api)))?;
    if api.archived_at.is_some() {
        return Err(CatalogError::Archived {
            kind: "api",
            key: spec.api.as_str().to_owned(),
        });
    }
    charges_fit(spec, &api.spec)?;
    let mut previous = None;
    let existing = tx.find_tier(spec.slug.as_str()).await?;
    let restored = restore(
        tx,
        Archivable::Tier,
        existing.as_ref().map(|t| (&t.id, t.archived_at)),
    )
    .await?;
    let outcome = match existing {
        None => {
            tx.insert_tier(&new_id("tier"), &api.id, &new_id("tierv"), spec)
                .await?;
            Outcome::Created
        }
        Some(existing) if existing.api_id != api.id => {
            return Err(CatalogError::Conflict(format!(
                "tier `{}` belongs to another api; a tier cannot move between apis",
                spec.slug
            )));
        }
        Some(existing) if existing.latest.spec == *spec => Outcome::Unchanged,
        Some(existing) => {
            let version = existing.latest.version + 1;
            tx.add_tier_version(&existing.id, &new_id("tierv"), version, spec)
                .await?;
            previous = Some(existing.latest);
            Outcome::Updated
        }
    };
    let tier = found(tx.find_tier(spec.slug.as_str()).await?)?;
    if outcome != Outcome::Unchanged {
        intents::tier_version_written(tx, &tier, previous.as_ref()).await?;
    }
    Ok((tier, restored_outcome(outcome, restored)))
}

/// Each charge prices a meter of the tier's api, by dimensions it declares.
fn charges_fit(tier: &TierSpec, api: &ApiSpec) -> Result<(), FieldError> {
    for (i, charge) in tier.charges.iter().enumerate() {
        let meter = charge.meter.as_str();
        if crate::domain::meter::BUILT_IN_METERS.contains(&meter) {
            continue;
        }
        if api.meter(meter).is_none() {
            return Err(FieldError::new(
                format!("charges[{i}].meter"),
                format!(
                    "api `{}` has no meter `{meter}` (its meters: calls, units{})",
                    api.slug,
                    api.meters
                        .iter()
                        .map(|m| format!(", {}", m.key))
                        .collect::<String>()
                ),
            ));
        }
        let declared = |k: &str| api.dimensions.iter().any(|d| d.key.as_str() == k);
        if let Some(unknown) = charge.dimensions.keys().find(|k| !declared(k)) {
            return Err(FieldError::new(
                format!("charges[{i}].dimensions.{unknown}"),
                format!("api `{}` has no dimension `{unknown}`", api.slug),
            ));
        }
        if let Some((at, unknown)) = charge
            .group_by
            .iter()
            .enumerate()
            .find(|(_, k)| !declared(k.as_str()))
        {
            return Err(FieldError::new(
                format!("charges[{i}].group_by[{at}]"),
                format!("api `{}` has no dimension `{unknown}`", api.slug),
            ));
        }
    }
    Ok(())
}

pub async fn put_subscriber(
    tx: &mut Tx,
    spec: &SubscriberSpec,
    mode: Mode,
) -> CatalogResult<(Subscriber, Outcome)> {
    let key = spec.external_id.as_str();
    let existing = tx.find_subscriber(key).await?;
    let restored = restore(
        tx,
        Archivable::Subscriber,
        existing.as_ref().map(|s| (&s.id, s.archived_at)),
    )
    .await?;
    let mode = if restored { Mode::Apply } else { mode };
    let outcome = match existing {
        None => {
            tx.insert_subscriber(&new_id("sub"), spec).await?;
            Outcome::Created
        }
        Some(existing) if existing.spec == *spec => Outcome::Unchanged,
        Some(_) if mode == Mode::Create => return Err(differs("subscriber", key)),
        Some(existing) => {
            tx.update_subscriber(&existing.id, spec).await?;
            Outcome::Updated
        }
    };
    let subscriber = found(tx.find_subscriber(key).await?)?;
    if outcome != Outcome::Unchanged {
        intents::subscriber_written(tx, &subscriber, outcome == Outcome::Created).await?;
    }
    Ok((subscriber, restored_outcome(outcome, restored)))
}

/// Creates a subscription on the newest version of its tier, or reconciles an existing one:
/// in `Apply` mode a different tier moves it to that tier's newest version, and its consumer keys
/// become the listed ones. Naming the same tier never moves it off its version.
pub async fn put_subscription(
    tx: &mut Tx,
    spec: &SubscriptionSpec,
    mode: Mode,
) -> CatalogResult<(Subscription, Outcome)> {
    spec.validate()?;
    let key = spec.external_id.as_str();
    let subscriber = tx
        .find_subscriber(spec.subscriber.as_str())
        .await?
        .ok_or_else(|| {
            FieldError::new(
                "subscriber",
                format!("subscriber `{}` does not exist", spec.subscriber),
            )
        })?;
    let tier = tx
        .find_tier(spec.tier.as_str())
        .await?
        .ok_or_else(|| FieldError::new("tier", format!("tier `{}` does not exist", spec.tier)))?;
    let keys: Vec<StoredKey> = spec.stored_keys();

    let Some(existing) = tx.find_subscription(key).await? else {
        parents_live(tx, &tier, &subscriber).await?;
        let id = new_id("subn");
        claim_keys(tx, &id, &keys).await?;
        tx.insert_subscription(&id, key, &subscriber.id, &tier.latest.id)
            .await?;
        tx.set_consumer_keys(&id, &keys).await?;
        let subscription = found(tx.find_subscription(&id).await?)?;
        intents::subscription_started(tx, &subscription, &tier.latest).await?;
        return Ok((subscription, Outcome::Created));
    };
    if existing.subscriber_id != subscriber.id {
        return Err(CatalogError::Conflict(format!(
            "subscription `{key}` belongs to another subscriber"
        )));
    }
    let same_tier = existing.tier == tier.latest.spec.slug.as_str();
    let hashes: Vec<String> = keys.iter().map(|k| k.hash.clone()).collect();
    let same_keys = same_set(&existing.consumer_keys, &hashes);
    if same_tier && same_keys {
        return Ok((existing, Outcome::Unchanged));
    }
    if mode == Mode::Create {
        return Err(differs("subscription", key));
    }
    if !same_tier {
        parents_live(tx, &tier, &subscriber).await?;
        move_to(tx, &existing, &tier.latest).await?;
    }
    claim_keys(tx, &existing.id, &keys).await?;
    tx.set_consumer_keys(&existing.id, &keys).await?;
    Ok((
        found(tx.find_subscription(&existing.id).await?)?,
        Outcome::Updated,
    ))
}

/// Moves a live subscription to another tier's newest version; the same version changes nothing.
pub async fn change_tier(
    tx: &mut Tx,
    id_or_key: &str,
    tier: &str,
) -> CatalogResult<(Subscription, Outcome)> {
    let subscription = live_subscription(tx, id_or_key).await?;
    let tier = tx
        .find_tier(tier)
        .await?
        .ok_or_else(|| FieldError::new("tier", format!("tier `{tier}` does not exist")))?;
    if subscription.tier_version_id == tier.latest.id {
        return Ok((subscription, Outcome::Unchanged));
    }
    let subscriber = found(tx.find_subscriber(&subscription.subscriber_id).await?)?;
    parents_live(tx, &tier, &subscriber).await?;
    move_to(tx, &subscription, &tier.latest).await?;
    Ok((
        found(tx.find_subscription(&subscription.id).await?)?,
        Outcome::Updated,
    ))
}

async fn move_to(
    tx: &mut Tx,
    subscription: &Subscription,
    to: &crate::store::TierVersion,
) -> CatalogResult<()> {
    let from = found(tx.find_tier_version(&subscription.tier_version_id).await?)?;
    if from.spec.currency != to.spec.currency {
        // Stripe cannot move a Subscription between currencies, and a period is billed in one.
        return Err(FieldError::new(
            "tier",
            format!(
                "tier `{}` is priced in {}, the subscription in {}: start a new subscription instead",
                to.spec.slug.as_str(),
                to.spec.currency.code(),
                from.spec.currency.code()
            ),
        )
        .into());
    }
    tx.set_subscription_tier_version(&subscription.id, &to.id)
        .await?;
    let moved = found(tx.find_subscription(&subscription.id).await?)?;
    intents::tier_changed(tx, &moved, &from, to).await?;
    Ok(())
}

/// Cancels a subscription now (its keys are released, Stripe makes a final invoice) or at the
/// end of its current period. Asking again for the same thing changes nothing.
pub async fn cancel_subscription(
    tx: &mut Tx,
    id_or_key: &str,
    now: bool,
) -> CatalogResult<(Subscription, Outcome)> {
    let subscription = live_subscription(tx, id_or_key).await?;
    if !now && subscription.cancel_at_period_end {
        return Ok((subscription, Outcome::Unchanged));
    }
    tx.cancel_subscription(&subscription.id, now).await?;
    let version = found(tx.find_tier_version(&subscription.tier_version_id).await?)?;
    intents::subscription_canceled(tx, &subscription, &version, now).await?;
    Ok((
        found(tx.find_subscription(&subscription.id).await?)?,
        Outcome::Updated,
    ))
}

/// A subscription that is not canceled; a canceled one cannot change.
async fn live_subscription(tx: &mut Tx, id_or_key: &str) -> CatalogResult<Subscription> {
    let subscription =
        tx.find_subscription(id_or_key)
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "subscription",
                key: id_or_key.to_owned(),
            })?;
    if subscription.status == crate::domain::subscription::SubscriptionStatus::Canceled {
        return Err(CatalogError::Conflict(format!(
            "subscription `{}` is canceled",
            subscription.external_id
        )));
    }
    Ok(subscription)
}

/// Refuses keys that another live subscription holds, naming the first such key.
async fn claim_keys(tx: &mut Tx, subscription_id: &str, keys: &[StoredKey]) -> CatalogResult<()> {
    for (index, key) in keys.iter().enumerate() {
        if let Some(owner) = tx.consumer_key_owner(&key.hash).await?
            && owner != subscription_id
        {
            return Err(CatalogError::Conflict(format!(
                "consumer_keys[{index}]: consumer key `{}` already belongs to another live subscription",
                key.named
            )));
        }
    }
    Ok(())
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|key| b.contains(key))
}

/// Creates a gateway and answers its key, which is shown this once and stored only as a hash.
pub async fn create_gateway(
    tx: &mut Tx,
    name: &Name,
    access: &GatewayAccess,
    ingest: &GatewayIngest,
) -> CatalogResult<(Gateway, String)> {
    access.validate()?;
    ingest.validate()?;
    let id = new_id("gw");
    let key = auth::new_secret("tbg");
    let gateway = tx
        .insert_gateway(&id, name, &auth::hash_secret(&key), access, ingest)
        .await?;
    Ok((gateway, key))
}

/// Gives a gateway a new key; the one it had is still taken for `previous_valid_for` (not at all
/// when zero), so the gateway's configuration can change over without refused calls.
pub async fn rotate_gateway_key(
    tx: &mut Tx,
    id: &str,
    previous_valid_for: std::time::Duration,
) -> CatalogResult<(Gateway, String)> {
    let gateway = tx
        .find_gateway(id)
        .await?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "gateway",
            key: id.to_owned(),
        })?;
    let revoked = || {
        CatalogError::Conflict(format!(
            "gateway `{id}` is revoked: make a new gateway instead"
        ))
    };
    if gateway.revoked_at.is_some() {
        return Err(revoked());
    }
    let key = auth::new_secret("tbg");
    let millis = i64::try_from(previous_valid_for.as_millis()).unwrap_or(i64::MAX);
    let previous_expires_at = (millis > 0).then(|| crate::store::now_ms().saturating_add(millis));
    let rotated = tx
        .rotate_gateway_key(id, &auth::hash_secret(&key), previous_expires_at)
        .await?;
    if !rotated {
        return Err(revoked());
    }
    let gateway = found(tx.find_gateway(id).await?)?;
    Ok((gateway, key))
}

/// Revokes a gateway: its keys are taken no more. The gateway is kept, for the records and
/// statistics that name it.
pub async fn revoke_gateway(tx: &mut Tx, id: &str) -> CatalogResult<Gateway> {
    if tx.find_gateway(id).await?.is_none() {
        return Err(CatalogError::NotFound {
            kind: "gateway",
            key: id.to_owned(),
        });
    }
    tx.revoke_gateway(id).await?;
    found(tx.find_gateway(id).await?)
}

/// A row just written is read back; its absence would be a store fault, not a user error.
fn found<T>(row: Option<T>) -> CatalogResult<T> {
    row.ok_or_else(|| {
        CatalogError::Store(crate::store::StoreError::Corrupt(
            "a row written in this transaction is missing".into(),
        ))
    })
}
