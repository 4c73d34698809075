//! An api: one monetized API of the provider, with its recording policy.

use super::ids::Key;
use super::policy::RecordingPolicy;
use super::text::Name;
use serde::{Deserialize, Serialize};

/// An api as the provider writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    pub slug: Key,
    pub name: Name,
    #[serde(default)]
    pub recording_policy: RecordingPolicy,
    /// The provider's own Stripe account (Connect), when its objects live there and not in the
    /// platform account: every Stripe object of this api's tiers carries `Stripe-Account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_account: Option<StripeAccount>,
}

/// A connected Stripe account id: `acct_` and letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StripeAccount(String);

impl StripeAccount {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StripeAccount {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let rest = value
            .strip_prefix("acct_")
            .ok_or_else(|| format!("`{value}` is not a Stripe account id (acct_…)"))?;
        if rest.is_empty() || rest.len() > 64 || !rest.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("`{value}` is not a Stripe account id (acct_…)"));
        }
        Ok(Self(value))
    }
}

impl utoipa::PartialSchema for StripeAccount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            r"^acct_[A-Za-z0-9]{1,64}$",
            None,
            "A connected Stripe account id: `acct_` and 1 to 64 letters or digits.",
            "acct_1032D82eZvKYlo2C",
        )
        .into()
    }
}

impl utoipa::ToSchema for StripeAccount {}

impl From<StripeAccount> for String {
    fn from(account: StripeAccount) -> Self {
        account.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stripe_account_is_acct_and_alphanumerics() {
        assert!(StripeAccount::try_from("acct_1032D82eZvKYlo2C".to_owned()).is_ok());
        for bad in ["", "acct_", "cus_123", "acct_12 3", "acct_1/2"] {
            assert!(StripeAccount::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
