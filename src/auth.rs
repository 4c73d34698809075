//! Secrets tollbooth makes and checks: the admin token and gateway keys. Only their SHA-256
//! is ever stored, and presented secrets are compared in constant time.

use crate::store::{Store, StoreError, StoreResult};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Makes a new random secret such as `tba_3f9c…` (32 random bytes, hex).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// The stored form of a secret: its SHA-256, hex. Secrets are long and random, so no salt is needed.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The admin API's bearer token, checked against the hash the database holds. The hash is read
/// again at most a second after it was last read, so a token rotated by `tollbooth admin-token
/// rotate` (or by another replica's start) stops working everywhere within a second.
#[derive(Clone)]
pub struct AdminToken {
    store: Store,
    cached: Arc<Mutex<Option<ReadHash>>>,
}

/// The admin token's hash, and when it was read.
type ReadHash = (Instant, [u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

/// How long a read of the admin token's hash is trusted.
const ADMIN_TOKEN_REREAD: Duration = Duration::from_secs(1);

impl AdminToken {
    /// Whether `presented` is the admin token in force.
    pub async fn verify(&self, presented: &str) -> StoreResult<bool> {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let cached = *self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let hash = match cached {
            Some((read_at, hash)) if read_at.elapsed() < ADMIN_TOKEN_REREAD => hash,
            _ => {
                let hash = stored_hash(&self.store).await?;
                *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), hash));
                hash
            }
        };
        Ok(hash.ct_eq(&presented).into())
    }
}

const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// The stored admin token's hash.
async fn stored_hash(store: &Store) -> StoreResult<[u8; 32]> {
    let stored = store
        .begin_read()
        .await?
        .setting(ADMIN_TOKEN_SETTING)
        .await?;
    stored
        .as_deref()
        .and_then(|hex_hash| hex::decode(hex_hash).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("settings.{ADMIN_TOKEN_SETTING}")))
}

/// Settles the admin token at start: a configured one replaces the stored one (for good: the
/// token it replaced does not come back when the setting is removed); else the stored one stays,
/// or one is made at first start and answered too, so that it can be shown once.
pub async fn admin_token(
    store: &Store,
    configured: Option<&SecretString>,
) -> StoreResult<(AdminToken, Option<String>)> {
    let mut tx = store.begin().await?;
    let made = match configured {
        Some(secret) => {
            tx.set_setting(ADMIN_TOKEN_SETTING, &hash_secret(secret.expose_secret()))
                .await?;
            None
        }
        None => {
            let fresh = new_secret("tba");
            tx.set_setting_once(ADMIN_TOKEN_SETTING, &hash_secret(&fresh))
                .await?
                .then_some(fresh)
        }
    };
    tx.commit().await?;
    let token = AdminToken {
        store: store.clone(),
        cached: Arc::default(),
    };
    // Read once now, so that a stored hash that is not one fails the start, not a request.
    stored_hash(store).await?;
    Ok((token, made))
}

/// Makes a new admin token in place of the one in force, which stops working at once here and
/// within a second on running replicas. Answers the new token, to be shown once.
pub async fn rotate_admin_token(store: &Store) -> StoreResult<String> {
    let fresh = new_secret("tba");
    let mut tx = store.begin().await?;
    tx.set_setting(ADMIN_TOKEN_SETTING, &hash_secret(&fresh))
        .await?;
    tx.commit().await?;
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_hashes_to_its_sha256_and_new_secrets_differ() {
        let secret = new_secret("tba");
        assert!(secret.starts_with("tba_") && secret.len() == 4 + 64);
        assert_ne!(secret, new_secret("tba"));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
