//! A subscriber: the app developer who pays.

use super::ids::Key;
use super::text::Name;
use serde::{Deserialize, Serialize};

/// A subscriber as the provider writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}
