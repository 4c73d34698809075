//! Secrets tollbooth makes and checks: the admin token and gateway keys. Only their SHA-256
//! is ever stored, and presented secrets are compared in constant time.

use crate::store::{Store, StoreResult};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
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

/// The admin API's bearer token, held as its hash.
#[derive(Clone)]
pub struct AdminToken {
    hash: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

impl AdminToken {
    fn from_hash_hex(hash_hex: &str) -> Option<Self> {
        let bytes = hex::decode(hash_hex).ok()?;
        Some(Self {
            hash: bytes.try_into().ok()?,
        })
    }

    fn from_secret(secret: &str) -> Self {
        Self {
            hash: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the admin token.
    pub fn verify(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.hash.ct_eq(&presented).into()
    }
}

const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// The admin token in force: the configured one, else the one made at first start. Answers the
/// new token too when this call made it, so that it can be shown once.
pub async fn admin_token(
    store: &Store,
    configured: Option<&SecretString>,
) -> StoreResult<(AdminToken, Option<String>)> {
    if let Some(secret) = configured {
        return Ok((AdminToken::from_secret(secret.expose_secret()), None));
    }
    let mut tx = store.begin().await?;
    let fresh = new_secret("tba");
    let made = tx
        .set_setting_once(ADMIN_TOKEN_SETTING, &hash_secret(&fresh))
        .await?;
    let stored = tx.setting(ADMIN_TOKEN_SETTING).await?;
    tx.commit().await?;
    let token = stored
        .as_deref()
        .and_then(AdminToken::from_hash_hex)
        .ok_or_else(|| {
            crate::store::StoreError::Corrupt(format!("settings.{ADMIN_TOKEN_SETTING}"))
        })?;
    Ok((token, made.then_some(fresh)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_itself() {
        let secret = new_secret("tba");
        let token = AdminToken::from_hash_hex(&hash_secret(&secret)).unwrap();
        assert!(token.verify(&secret));
        assert!(!token.verify("tba_wrong"));
        assert!(!format!("{token:?}").contains(&hash_secret(&secret)));
    }
}
