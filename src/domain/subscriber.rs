//! A subscriber: the app developer who pays.

use super::ids::Key;
use super::text::Name;
use serde::{Deserialize, Serialize};

/// A subscriber as the provider writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSpec {
    pub external_id: Key,
    pub name: Name,
    pub email: Email,
}

/// An e-mail address, checked by the `email_address` crate's RFC 5322 parser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        email_address::EmailAddress::parse_with_options(
            &value,
            email_address::Options::default().with_required_tld(),
        )
        .map(|_| Self(value.clone()))
        .map_err(|_| format!("`{value}` is not an e-mail address"))
    }
}

/// Addresses the parse takes, as JSON Schema: the common ASCII form, narrowed so that lengths hold
/// without look-ahead: a local part of one or two dot-separated atoms of at most 31 characters
/// each (the parse allows 64 in all), `@`, and two or three labels of at most 63 (the parse
/// allows 254 in all). The parse also takes longer addresses, quoted local parts, non-ASCII
/// letters, domain literals and display text; the schema offers none of them.
pub const EMAIL_PATTERN: &str = concat!(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,31}(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,31})?",
    r"@[A-Za-z0-9](?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{0,61}[A-Za-z0-9])?",
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{0,61}[A-Za-z0-9])?){1,2}$"
);

impl utoipa::PartialSchema for Email {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            EMAIL_PATTERN,
            None,
            "An e-mail address whose domain has a top-level domain.",
            "billing@acme.example",
        )
        .into()
    }
}

impl utoipa::ToSchema for Email {}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_domain_with_a_tld() {
        assert!(Email::try_from("billing@acme.example".to_owned()).is_ok());
        assert!(Email::try_from("billing@acme".to_owned()).is_err());
        assert!(Email::try_from("acme.example".to_owned()).is_err());
    }

    #[test]
    fn what_the_schema_takes_the_parse_takes() {
        use utoipa::PartialSchema;
        let schema = Email::schema();
        let accepts = |text: &str| crate::domain::schema::testing::accepts(&schema, text);
        let longest = format!("{0}.{0}@{1}.{1}.{1}", "a".repeat(31), "b".repeat(63));
        for common in [
            "billing@acme.example",
            "a.b@x.y.z",
            "A@X.CO",
            "a+b@x.co",
            "a@x_y.co",
            &longest,
        ] {
            assert!(accepts(common), "{common}");
        }
        for sample in [
            "a@b",
            "acme.example",
            "a..b@x.co",
            "a@-x.co",
            "a@x.co.",
            "a@x..co",
            ".a@x.co",
            "a.@x.co",
            "a b@x.co",
            "a@x.co\n",
            "@x.co",
            "a@x.c",
            "a@x.1",
            &longest,
        ] {
            if accepts(sample) {
                assert!(Email::try_from(sample.to_owned()).is_ok(), "{sample}");
            }
        }
    }
}
