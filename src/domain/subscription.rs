//! A subscription: a subscriber on a tier, with the gateway consumer keys that identify its calls.

use super::FieldError;
use super::ids::Key;
use serde::{Deserialize, Serialize};

/// A subscription as the provider writes it; `subscriber` and `tier` name them by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub external_id: Key,
    pub subscriber: Key,
    pub tier: Key,
    /// The gateway's keys for this consumer; each listed once.
    #[serde(default)]
    #[schema(schema_with = consumer_keys_schema)]
    pub consumer_keys: Vec<ConsumerKey>,
    /// Keys known by their hash only, as `tollbooth catalog export` writes them (tollbooth keeps
    /// no key): each the same key as the one it was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_key_hashes: Vec<HashedKey>,
}

/// A consumer key by its SHA-256 (lowercase hex) and the first characters answers show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HashedKey {
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// What answers show of the key (`acme-…`); at most 12 characters.
    #[serde(default)]
    #[schema(max_length = 12)]
    pub prefix: String,
}

impl HashedKey {
    pub fn stored(&self) -> StoredKey {
        StoredKey::read(self.sha256.clone(), self.prefix.clone())
    }
}

/// Consumer keys, each listed once.
fn consumer_keys_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::Ref;
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(Ref::from_schema_name("ConsumerKey"))
        .unique_items(true)
        .build()
}

impl SubscriptionSpec {
    pub fn validate(&self) -> Result<(), FieldError> {
        for (index, key) in self.consumer_keys.iter().enumerate() {
            if self.consumer_keys[..index].contains(key) {
                return Err(FieldError::new(
                    format!("consumer_keys[{index}]"),
                    format!("`{key}` is listed twice"),
                ));
            }
        }
        let plain: Vec<String> = self.consumer_keys.iter().map(|k| k.stored().hash).collect();
        for (index, key) in self.consumer_key_hashes.iter().enumerate() {
            let field = |part: &str| format!("consumer_key_hashes[{index}].{part}");
            let hex = key.sha256.len() == 64
                && key
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                return Err(FieldError::new(
                    field("sha256"),
                    "must be a SHA-256 in 64 lowercase hex digits",
                ));
            }
            let listed = self.consumer_key_hashes[..index]
                .iter()
                .any(|k| k.sha256 == key.sha256)
                || plain.contains(&key.sha256);
            if listed {
                return Err(FieldError::new(field("sha256"), "this key is listed twice"));
            }
            if key.prefix.chars().count() > 12 || !key.prefix.chars().all(|c| !c.is_control()) {
                return Err(FieldError::new(
                    field("prefix"),
                    "must be at most 12 characters, none of them control characters",
                ));
            }
        }
        Ok(())
    }

    /// Every key of the subscription as stored: those given, and those known by their hash.
    pub fn stored_keys(&self) -> Vec<StoredKey> {
        self.consumer_keys
            .iter()
            .map(ConsumerKey::stored)
            .chain(self.consumer_key_hashes.iter().map(HashedKey::stored))
            .collect()
    }
}

/// The key a gateway uses for one consumer (an API key id, an app id): 1 to 200 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConsumerKey(String);

impl ConsumerKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as it is stored: its hash, and the first characters that answers show.
    pub fn stored(&self) -> StoredKey {
        StoredKey::of(&self.0)
    }
}

/// A consumer key as tollbooth keeps it: a caller's credential, so only its SHA-256 and a few
/// first characters (to tell keys apart in answers), never the key. Two are the same key when
/// their hashes are.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub hash: String,
    pub prefix: String,
    /// How an error names it: the key itself when the request being answered gave it, else its
    /// prefix.
    pub named: String,
}

impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}

impl Eq for StoredKey {}

impl StoredKey {
    /// A key given in the request being answered.
    pub fn of(key: &str) -> Self {
        Self {
            hash: crate::auth::hash_secret(key),
            prefix: shown(key),
            named: key.to_owned(),
        }
    }

    /// A key read back from the database.
    pub fn read(hash: String, prefix: String) -> Self {
        Self {
            named: prefix.clone(),
            hash,
            prefix,
        }
    }
}

/// The first characters of a key, at most a third of it and at most 6, then `…`.
pub fn shown(key: &str) -> String {
    let count = (key.chars().count() / 3).min(6);
    let mut shown: String = key.chars().take(count).collect();
    shown.push('…');
    shown
}

impl TryFrom<String> for ConsumerKey {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.is_empty() || value.len() > 200 || !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err("must be 1 to 200 printable characters without spaces".into());
        }
        Ok(Self(value))
    }
}

impl utoipa::PartialSchema for ConsumerKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            r"^[!-~]{1,200}$",
            Some((1, 200)),
            "The key a gateway uses for one consumer: 1 to 200 printable ASCII characters, no spaces.",
            "acme-app-1",
        )
        .into()
    }
}

impl utoipa::ToSchema for ConsumerKey {}

impl From<ConsumerKey> for String {
    fn from(key: ConsumerKey) -> Self {
        key.0
    }
}

impl std::fmt::Display for ConsumerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a subscription stands. Webhooks and the billing job move it; the catalog starts it active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    PastDue,
    /// Written off by Stripe (an uncollectible invoice, or Stripe's `unpaid`): no access.
    Unpaid,
    Canceled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Unpaid => "unpaid",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "past_due" => Some(Self::PastDue),
            "unpaid" => Some(Self::Unpaid),
            "canceled" => Some(Self::Canceled),
            _ => None,
        }
    }
}

#[cfg(test)]
mod stored_key_tests {
    use super::*;

    #[test]
    fn a_stored_key_shows_at_most_a_third_of_itself() {
        assert_eq!(shown("k1"), "…");
        assert_eq!(shown("acme-app-1"), "acm…");
        assert_eq!(shown("bench-consumer-00001"), "bench-…");
        let stored = StoredKey::of("acme-app-1");
        assert_eq!(stored.hash.len(), 64);
        assert!(!stored.hash.contains("acme"));
    }
}
