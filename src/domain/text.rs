//! Text a person writes and both databases store: names shown on invoices and in Stripe.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Characters a name may have at most.
pub const MAX_NAME_CHARS: usize = 200;

/// A name (of an api, a tier, a subscriber, a gateway): 1 to 200 characters, not only spaces, no
/// control characters. One rule for every name, so a name valid on SQLite is valid on PostgreSQL
/// and in Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name read back from a column, as it was stored: rows written before the rule stay
    /// readable.
    pub fn stored(text: String) -> Self {
        Self(text)
    }
}

impl TryFrom<String> for Name {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.trim().is_empty() || value.chars().count() > MAX_NAME_CHARS {
            return Err(format!("must be 1 to {MAX_NAME_CHARS} characters"));
        }
        if value.chars().any(char::is_control) {
            return Err("must not hold control characters".into());
        }
        Ok(Self(value))
    }
}

/// The parse rule of [`Name`] as JSON Schema: no control character (Unicode Cc), and at least one
/// that is neither a control character nor white space.
pub const NAME_PATTERN: &str = concat!(
    r"^[^\x00-\x1F\x7F-\x9F]*",
    r"[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
    r"[^\x00-\x1F\x7F-\x9F]*$"
);

impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            NAME_PATTERN,
            Some((1, MAX_NAME_CHARS)),
            "A name: 1 to 200 characters, not only white space, without control characters.",
            "Weather API",
        )
        .into()
    }
}

impl utoipa::ToSchema for Name {}

/// Free text that either database stores: anything but NUL.
pub const STORABLE_PATTERN: &str = r"^[^\x00]*$";

impl TryFrom<&str> for Name {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::try_from(value.to_owned())
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where `text` holds a character that no database here stores (NUL): PostgreSQL refuses it in
/// text, so SQLite refuses it too.
pub fn has_unstorable(text: &str) -> bool {
    text.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_to_two_hundred_characters_without_control_characters() {
        assert!(Name::try_from("Weather API").is_ok());
        assert!(Name::try_from("Météo — prévisions").is_ok());
        assert!(Name::try_from("é".repeat(200)).is_ok());
        assert!(Name::try_from("é".repeat(201)).is_err());
        assert!(Name::try_from("   ").is_err());
        assert!(Name::try_from("").is_err());
        assert!(Name::try_from("a\u{0}b").is_err());
        assert!(Name::try_from("line\nbreak").is_err());
        assert!(Name::try_from("bell\u{7}").is_err());
        assert!(Name::try_from("c1\u{85}").is_err());
    }

    #[test]
    fn the_schema_takes_what_the_parse_takes() {
        use utoipa::PartialSchema;
        let longest = "é".repeat(200);
        let too_long = "é".repeat(201);
        crate::domain::schema::testing::assert_agrees(
            &Name::schema(),
            |text| Name::try_from(text).is_ok(),
            &[
                "Weather API",
                "Météo — prévisions",
                &longest,
                &too_long,
                "   ",
                "",
                "a\u{0}b",
                "line\nbreak",
                "bell\u{7}",
                "c1\u{85}",
                "\u{3000}",
                "\u{A0}x",
                " x ",
                "\u{FEFF}",
                "\u{2003}\u{2028}",
                "tab\t",
                "x\u{9F}",
                "\u{1F600}",
            ],
        );
    }
}
