//! Create-or-reconcile of each catalog object. Shared by the admin API and the catalog file.

use super::{CatalogError, CatalogResult, Mode, Outcome};
use crate::auth;
use crate::domain::FieldError;
use crate::domain::api::ApiSpec;
use crate::domain::ids::new_id;
use crate::domain::subscriber::SubscriberSpec;
use crate::domain::subscription::SubscriptionSpec;
use crate::domain::tier::TierSpec;
use crate::store::{Api, Gateway, Subscriber, Subscription, Tier, Tx};

fn differs(kind: &str, key: &str) -> CatalogError {
    CatalogError::Conflict(format!(
        "{kind} `{key}` already exists with a different definition"
    ))
}

pub async fn put_api(tx: &mut Tx, spec: &ApiSpec, mode: Mode) -> CatalogResult<(Api, Outcome)> {
    spec.validate()?;
    let outcome = match tx.find_api(spec.slug.as_str()).await? {
        None => {
            tx.insert_api(&new_id("api"), spec).await?;
            Outcome::Created
        }
        Some(existing) if existing.spec == *spec => Outcome::Unchanged,
        Some(_) if mode == Mode::Create => return Err(differs("api", spec.slug.as_str())),
        Some(existing) => {
            tx.update_api(&existing.id, spec).await?;
            Outcome::Updated
        }
    };
    Ok((found(tx.find_api(spec.slug.as_str()).await?)?, outcome))
}

/// Creates a tier, or a new version of it when its definition changed: the same for the admin API
/// and a file, since a version is never edited.
pub async fn put_tier(tx: &mut Tx, spec: &TierSpec) -> CatalogResult<(Tier, Outcome)> {
    spec.validate()?;
    let api = tx
        .find_api(spec.api.as_str())
        .await?
        .ok_or_else(|| FieldError::new("api", format!("api `{}` does not exist", spec.api)))?;
    let outcome = match tx.find_tier(spec.slug.as_str()).await? {
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
            Outcome::Updated
        }
    };
    Ok((found(tx.find_tier(spec.slug.as_str()).await?)?, outcome))
}

pub async fn put_subscriber(
    tx: &mut Tx,
    spec: &SubscriberSpec,
    mode: Mode,
) -> CatalogResult<(Subscriber, Outcome)> {
    spec.validate()?;
    let key = spec.external_id.as_str();
    let outcome = match tx.find_subscriber(key).await? {
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
    Ok((found(tx.find_subscriber(key).await?)?, outcome))
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
    let keys: Vec<String> = spec
        .consumer_keys
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();

    let Some(existing) = tx.find_subscription(key).await? else {
        let id = new_id("subn");
        claim_keys(tx, &id, &keys).await?;
        tx.insert_subscription(&id, key, &subscriber.id, &tier.latest.id)
            .await?;
        tx.set_consumer_keys(&id, &keys).await?;
        return Ok((found(tx.find_subscription(&id).await?)?, Outcome::Created));
    };
    if existing.subscriber_id != subscriber.id {
        return Err(CatalogError::Conflict(format!(
            "subscription `{key}` belongs to another subscriber"
        )));
    }
    let same_tier = existing.tier == tier.latest.spec.slug.as_str();
    let same_keys = same_set(&existing.consumer_keys, &keys);
    if same_tier && same_keys {
        return Ok((existing, Outcome::Unchanged));
    }
    if mode == Mode::Create {
        return Err(differs("subscription", key));
    }
    if !same_tier {
        tx.set_subscription_tier_version(&existing.id, &tier.latest.id)
            .await?;
    }
    claim_keys(tx, &existing.id, &keys).await?;
    tx.set_consumer_keys(&existing.id, &keys).await?;
    Ok((
        found(tx.find_subscription(&existing.id).await?)?,
        Outcome::Updated,
    ))
}

/// Refuses keys that another live subscription holds, naming the first such key.
async fn claim_keys(tx: &mut Tx, subscription_id: &str, keys: &[String]) -> CatalogResult<()> {
    for (index, key) in keys.iter().enumerate() {
        if let Some(owner) = tx.consumer_key_owner(key).await?
            && owner != subscription_id
        {
            return Err(CatalogError::Conflict(format!(
                "consumer_keys[{index}]: consumer key `{key}` already belongs to another live subscription"
            )));
        }
    }
    Ok(())
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|key| b.contains(key))
}

/// Creates a gateway and answers its key, which is shown this once and stored only as a hash.
pub async fn create_gateway(tx: &mut Tx, name: &str) -> CatalogResult<(Gateway, String)> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(FieldError::new("name", "must be 1 to 200 characters").into());
    }
    let id = new_id("gw");
    let key = auth::new_secret("tbg");
    let gateway = tx
        .insert_gateway(&id, name, &auth::hash_secret(&key))
        .await?;
    Ok((gateway, key))
}

/// A row just written is read back; its absence would be a store fault, not a user error.
fn found<T>(row: Option<T>) -> CatalogResult<T> {
    row.ok_or_else(|| {
        CatalogError::Store(crate::store::StoreError::Corrupt(
            "a row written in this transaction is missing".into(),
        ))
    })
}
