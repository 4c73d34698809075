//! Unique violations told in the catalog's words, after realworld-axum-sqlx's `on_constraint`:
//! which rule of the schema a write broke, found from the constraint PostgreSQL names or the
//! columns SQLite names. The database's own text never leaves the store.

use std::fmt;

/// A unique rule of the schema (`migrations/`), named for what it keeps unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueRule {
    ApiSlug,
    TierSlug,
    /// One row per version number of a tier.
    TierVersion,
    SubscriberExternalId,
    SubscriptionExternalId,
    /// A consumer key belongs to at most one live subscription.
    ConsumerKey,
    GatewayKey,
    /// A rule tollbooth has no words for: a generated id, its own bookkeeping, an index added by
    /// hand. Logged where it is met.
    Unnamed,
}

impl UniqueRule {
    /// The rule a unique violation broke: PostgreSQL names the constraint (`apis_slug_key`),
    /// SQLite only says which columns (`UNIQUE constraint failed: apis.slug`).
    pub fn of(constraint: Option<&str>, message: &str) -> Self {
        let key = match constraint {
            Some(name) => name,
            None => message
                .strip_prefix("UNIQUE constraint failed: ")
                .unwrap_or(message),
        };
        match key {
            "apis_slug_key" | "apis.slug" => Self::ApiSlug,
            "tiers_slug_key" | "tiers.slug" => Self::TierSlug,
            "tier_versions_tier_id_version_key"
            | "tier_versions.tier_id, tier_versions.version" => Self::TierVersion,
            "subscribers_external_id_key" | "subscribers.external_id" => Self::SubscriberExternalId,
            "subscriptions_external_id_key" | "subscriptions.external_id" => {
                Self::SubscriptionExternalId
            }
            "consumer_keys_live" | "consumer_keys.consumer_key" => Self::ConsumerKey,
            "gateways_key_hash_key" | "gateways.key_hash" => Self::GatewayKey,
            _ => Self::Unnamed,
        }
    }
}

/// A value a write could not take: a unique rule keeps it for a row already stored, often one
/// committed a moment before by a request racing this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub rule: UniqueRule,
    /// What the write tried to take (a slug, an external id, a consumer key), when it says.
    pub value: Option<String>,
}

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use UniqueRule::*;
        match (self.rule, self.value.as_deref()) {
            (ApiSlug, Some(slug)) => write!(f, "api `{slug}` already exists"),
            (ApiSlug, None) => f.write_str("an api with this slug already exists"),
            (TierSlug, Some(slug)) => write!(f, "tier `{slug}` already exists"),
            (TierSlug, None) => f.write_str("a tier with this slug already exists"),
            (TierVersion, Some(slug)) => write!(
                f,
                "tier `{slug}` was given a new version by another change at the same time; send the request again"
            ),
            (TierVersion, None) => f.write_str(
                "the tier was given a new version by another change at the same time; send the request again",
            ),
            (SubscriberExternalId, Some(id)) => write!(f, "subscriber `{id}` already exists"),
            (SubscriberExternalId, None) => {
                f.write_str("a subscriber with this external id already exists")
            }
            (SubscriptionExternalId, Some(id)) => write!(f, "subscription `{id}` already exists"),
            (SubscriptionExternalId, None) => {
                f.write_str("a subscription with this external id already exists")
            }
            (ConsumerKey, Some(key)) => write!(
                f,
                "consumer key `{key}` is already in use by another subscription"
            ),
            (ConsumerKey, None) => {
                f.write_str("a consumer key listed is already in use by another subscription")
            }
            (GatewayKey, _) => f.write_str(
                "the key made for the gateway is already in use; create the gateway again",
            ),
            (Unnamed, _) => {
                f.write_str("the change conflicts with data already stored; nothing was changed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_constraints_and_sqlite_columns_name_the_same_rules() {
        let pairs = [
            ("apis_slug_key", "apis.slug", UniqueRule::ApiSlug),
            ("tiers_slug_key", "tiers.slug", UniqueRule::TierSlug),
            (
                "tier_versions_tier_id_version_key",
                "tier_versions.tier_id, tier_versions.version",
                UniqueRule::TierVersion,
            ),
            (
                "subscribers_external_id_key",
                "subscribers.external_id",
                UniqueRule::SubscriberExternalId,
            ),
            (
                "subscriptions_external_id_key",
                "subscriptions.external_id",
                UniqueRule::SubscriptionExternalId,
            ),
            (
                "consumer_keys_live",
                "consumer_keys.consumer_key",
                UniqueRule::ConsumerKey,
            ),
            (
                "gateways_key_hash_key",
                "gateways.key_hash",
                UniqueRule::GatewayKey,
            ),
            ("apis_pkey", "apis.id", UniqueRule::Unnamed),
        ];
        for (constraint, columns, rule) in pairs {
            let postgres =
                format!("duplicate key value violates unique constraint \"{constraint}\"");
            assert_eq!(UniqueRule::of(Some(constraint), &postgres), rule);
            let sqlite = format!("UNIQUE constraint failed: {columns}");
            assert_eq!(UniqueRule::of(None, &sqlite), rule, "{sqlite}");
        }
    }

    #[test]
    fn a_taken_value_is_told_without_database_words() {
        let taken = |rule, value: Option<&str>| {
            Taken {
                rule,
                value: value.map(str::to_owned),
            }
            .to_string()
        };
        assert_eq!(
            taken(UniqueRule::ConsumerKey, Some("acme-app-1")),
            "consumer key `acme-app-1` is already in use by another subscription"
        );
        let unnamed = taken(UniqueRule::Unnamed, Some("secret"));
        assert!(!unnamed.contains("secret"), "{unnamed}");
        assert!(!unnamed.contains("constraint"), "{unnamed}");
    }
}
