//! Identifiers: tollbooth's own ids, and the provider-chosen keys (slugs, external ids) that name rows.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Makes a new tollbooth id such as `api_0190f3c2...`: a kind prefix and a time-ordered UUIDv7,
/// so ids sort by creation time and list pagination can use them as a cursor.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A provider-chosen key: an api or tier `slug`, a subscriber or subscription `external_id`.
/// 1 to 64 characters of `a-z`, `A-Z`, `0-9`, `-`, `_`, `.`; it cannot look like a tollbooth id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Key {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.is_empty() || value.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "`{value}` may only hold letters, digits, `-`, `_` and `.`"
            ));
        }
        if looks_like_id(&value) {
            return Err(format!(
                "`{value}` has the form of a tollbooth id; choose a key that does not"
            ));
        }
        Ok(Self(value))
    }
}

/// Whether `text` has the form [`new_id`] gives (`prefix_` and 32 lower-case hex digits), so that
/// a lookup "by id or key" can never be ambiguous.
pub fn looks_like_id(text: &str) -> bool {
    text.split_once('_').is_some_and(|(prefix, rest)| {
        !prefix.is_empty()
            && prefix.chars().all(|c| c.is_ascii_lowercase())
            && rest.len() == 32
            && rest.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    })
}

/// The parse rule of [`Key`] as JSON Schema: the characters and length, and not an id's form.
pub const KEY_PATTERN: &str = r"^(?![a-z]+_[0-9a-f]{32}$)[A-Za-z0-9._-]{1,64}$";

impl utoipa::PartialSchema for Key {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            KEY_PATTERN,
            Some((1, 64)),
            "A provider-chosen key (slug, external_id): 1 to 64 of a-z A-Z 0-9 - _ ., not of a tollbooth id's form (`api_` and 32 hex digits).",
            "weather-pro",
        )
        .into()
    }
}

impl utoipa::ToSchema for Key {}

impl From<Key> for String {
    fn from(key: Key) -> Self {
        key.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_accept_slugs_and_refuse_spaces_and_empties() {
        assert!(Key::try_from("weather-pro".to_owned()).is_ok());
        assert!(Key::try_from("acme.weather_1".to_owned()).is_ok());
        assert!(Key::try_from(String::new()).is_err());
        assert!(Key::try_from("has space".to_owned()).is_err());
        assert!(Key::try_from("x".repeat(65)).is_err());
        assert!(Key::try_from(new_id("api")).is_err());
        assert!(Key::try_from("api_v2".to_owned()).is_ok());
    }

    #[test]
    fn the_schema_takes_what_the_parse_takes() {
        use utoipa::PartialSchema;
        let id = new_id("api");
        let long = "x".repeat(64);
        let too_long = "x".repeat(65);
        crate::domain::schema::testing::assert_agrees(
            &Key::schema(),
            |text| Key::try_from(text.to_owned()).is_ok(),
            &[
                "weather-pro",
                "a",
                "A.b_c-1",
                "api_v2",
                &id,
                "api_0190F3C2AAAAAAAAAAAAAAAAAAAAAAAA",
                &long,
                &too_long,
                "",
                "has space",
                "é",
                "a/b",
                "a\n",
                "a\u{0}",
                "tier_0190f3c2",
            ],
        );
    }

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation() {
        let first = new_id("api");
        let second = new_id("api");
        assert!(first.starts_with("api_"));
        assert!(first < second);
    }
}
