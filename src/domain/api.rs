//! An api: one monetized API of the provider, with its recording policy.

use super::ids::Key;
use super::meter::{DimensionSpec, MeterSpec};
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
    /// Where the gateway serves this api, for the access decision of a gateway whose `api_from`
    /// is `route`: the original request's host (`X-Forwarded-Host`, else `Host`) is one of these.
    /// Empty: any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 32, example = json!(["api.provider.example"]))]
    pub hosts: Vec<String>,
    /// With `hosts`: the original request's path starts with one of these, at a segment boundary
    /// (`/weather` is `/weather` and `/weather/…`, not `/weathers`). Empty: any path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 32, example = json!(["/weather"]))]
    pub path_prefixes: Vec<String>,
    /// Quantities it measures besides its billable calls (`calls`) and their units (`units`),
    /// which every api has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub meters: Vec<MeterSpec>,
    /// Properties of its calls (`model`, `region`) its usage is kept and priced by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 4)]
    pub dimensions: Vec<DimensionSpec>,
}

/// At most this many hosts, and this many path prefixes, on one api.
pub const MAX_ROUTES: usize = 32;

impl ApiSpec {
    pub fn validate(&self) -> Result<(), super::FieldError> {
        use super::FieldError;
        if self.hosts.len() > MAX_ROUTES {
            return Err(FieldError::new(
                "hosts",
                format!("at most {MAX_ROUTES} hosts"),
            ));
        }
        if self.path_prefixes.len() > MAX_ROUTES {
            return Err(FieldError::new(
                "path_prefixes",
                format!("at most {MAX_ROUTES} path prefixes"),
            ));
        }
        super::meter::validate(&self.meters, &self.dimensions)?;
        for (i, host) in self.hosts.iter().enumerate() {
            let fine = !host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
            if !fine {
                return Err(FieldError::new(
                    format!("hosts[{i}]"),
                    format!(
                        "`{host}` is not a host name (lower case letters, digits, `-`, `.`, and `:port`)"
                    ),
                ));
            }
        }
        for (i, prefix) in self.path_prefixes.iter().enumerate() {
            let fine = prefix.starts_with('/')
                && prefix.len() <= 200
                && !prefix
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || "?#".contains(c));
            if !fine {
                return Err(FieldError::new(
                    format!("path_prefixes[{i}]"),
                    format!("`{prefix}` is not a path prefix (`/` and a path, no query)"),
                ));
            }
        }
        Ok(())
    }

    /// Its meter of this key, when it declares one (not the built-in `calls` and `units`).
    pub fn meter(&self, key: &str) -> Option<&MeterSpec> {
        self.meters.iter().find(|m| m.key.as_str() == key)
    }

    /// The `(host, path prefix)` pairs this api is routed by (`None`: any host).
    pub fn routes(&self) -> Vec<(Option<&str>, &str)> {
        routes_of(&self.hosts, &self.path_prefixes)
    }
}

/// The `(host, path prefix)` pairs of these hosts and prefixes (`None`: any host); none when
/// both are empty.
pub fn routes_of<'a>(
    hosts: &'a [String],
    path_prefixes: &'a [String],
) -> Vec<(Option<&'a str>, &'a str)> {
    if hosts.is_empty() && path_prefixes.is_empty() {
        return Vec::new();
    }
    let hosts: Vec<Option<&str>> = match hosts.is_empty() {
        true => vec![None],
        false => hosts.iter().map(|h| Some(h.as_str())).collect(),
    };
    let prefixes: Vec<&str> = match path_prefixes.is_empty() {
        true => vec!["/"],
        false => path_prefixes.iter().map(String::as_str).collect(),
    };
    hosts
        .iter()
        .flat_map(|host| prefixes.iter().map(move |prefix| (*host, *prefix)))
        .collect()
}

/// Whether `path` is under `prefix` at a segment boundary.
pub fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
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
    fn a_path_is_under_a_prefix_at_a_segment_boundary() {
        for (path, prefix, under) in [
            ("/weather", "/weather", true),
            ("/weather/today", "/weather", true),
            ("/weather/today", "/weather/", true),
            ("/weathers", "/weather", false),
            ("/maps/weather", "/weather", false),
            ("/anything", "/", true),
        ] {
            assert_eq!(path_under(path, prefix), under, "{path} under {prefix}");
        }
    }

    #[test]
    fn a_stripe_account_is_acct_and_alphanumerics() {
        assert!(StripeAccount::try_from("acct_1032D82eZvKYlo2C".to_owned()).is_ok());
        for bad in ["", "acct_", "cus_123", "acct_12 3", "acct_1/2"] {
            assert!(StripeAccount::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
