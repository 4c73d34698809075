//! How a gateway asks for the access decision: where, in the request it forwards, the caller's
//! key and the api are found, and how a refusal is answered. The gateway's own credential never
//! shares a place with the caller's: see `http::authorize`.

use super::FieldError;
use serde::{Deserialize, Serialize};

/// A gateway's way of asking, as the provider writes it; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayAccess {
    /// Where the caller's key is, tried in order; the first present is the key. Default:
    /// `[{"header": "X-Api-Key"}]`.
    #[serde(default = "default_consumer_from")]
    pub consumer_from: Vec<KeySource>,
    /// Where the api is named. Default: `{"header": "X-Tollbooth-Api"}`, which the gateway's
    /// configuration sets (and so overwrites whatever the caller sent).
    #[serde(default)]
    pub api_from: ApiSource,
    /// When set, every refusal is answered with this status (a 4xx) and its reason in the
    /// `X-Tollbooth-Reason` header and the body: NGINX's `auth_request` turns every status but
    /// 401 and 403 into 500. Unset: each refusal has its own status (401, 402, 403, 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 400, maximum = 499)]
    pub refusal_status: Option<u16>,
}

impl Default for GatewayAccess {
    fn default() -> Self {
        Self {
            consumer_from: default_consumer_from(),
            api_from: ApiSource::default(),
            refusal_status: None,
        }
    }
}

fn default_consumer_from() -> Vec<KeySource> {
    vec![KeySource::Header("X-Api-Key".to_owned())]
}

/// One place a caller's key may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// A request header of the original request, such as `X-Api-Key`.
    Header(String),
    /// `Authorization: Bearer <key>` of the original request.
    Bearer,
    /// A query parameter of the original request (from `X-Forwarded-Uri`, `X-Original-URI`, or
    /// the path under `/v1/authorize` that Envoy sends).
    Query(String),
}

/// Where the api is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiSource {
    /// A header the gateway's configuration sets.
    Header(String),
    /// The first path segment under `/v1/authorize/`, written in the gateway's auth address
    /// (`/v1/authorize/weather`); Envoy appends the original path after it, which is never read.
    AuthPath,
    /// The api whose `hosts` and `path_prefixes` the original request's host and path fall
    /// under (`X-Forwarded-Host` or `Host`; `X-Forwarded-Uri`, `X-Original-URI`, or the path
    /// under `/v1/authorize` that Envoy sends): what the gateway serves is what is decided.
    Route,
}

impl Default for ApiSource {
    fn default() -> Self {
        Self::Header("X-Tollbooth-Api".to_owned())
    }
}

impl GatewayAccess {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.consumer_from.is_empty() {
            return Err(FieldError::new(
                "access.consumer_from",
                "name at least one place of the caller's key",
            ));
        }
        if self.consumer_from.len() > 8 {
            return Err(FieldError::new(
                "access.consumer_from",
                "at most 8 places of the caller's key",
            ));
        }
        for (i, source) in self.consumer_from.iter().enumerate() {
            let field = format!("access.consumer_from[{i}]");
            match source {
                KeySource::Header(name) => header_name(name, &field)?,
                KeySource::Query(name) => query_name(name, &field)?,
                KeySource::Bearer => {}
            }
        }
        if let ApiSource::Header(name) = &self.api_from {
            header_name(name, "access.api_from.header")?;
        }
        if let Some(status) = self.refusal_status
            && !(400..=499).contains(&status)
        {
            return Err(FieldError::new(
                "access.refusal_status",
                format!("{status} is not a 4xx status"),
            ));
        }
        Ok(())
    }
}

/// Header names the gateway's own credential and answers use are not a caller's key's place.
const RESERVED_HEADERS: [&str; 4] = [
    "x-tollbooth-key",
    "host",
    "x-forwarded-uri",
    "x-original-uri",
];

fn header_name(name: &str, field: &str) -> Result<(), FieldError> {
    if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() || name.len() > 100 {
        return Err(FieldError::new(
            field,
            format!("`{name}` is not an HTTP header name"),
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(FieldError::new(
            field,
            format!("`{name}` is not a place for a caller's key or the api"),
        ));
    }
    Ok(())
}

fn query_name(name: &str, field: &str) -> Result<(), FieldError> {
    let fine = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c));
    if !fine {
        return Err(FieldError::new(
            field,
            format!("`{name}` is not a query parameter name (letters, digits, `-_.~`)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_reads_x_api_key_and_the_api_header() {
        let access: GatewayAccess = serde_json::from_str("{}").unwrap();
        assert_eq!(access, GatewayAccess::default());
        assert!(access.validate().is_ok());
    }

    #[test]
    fn places_are_written_as_the_provider_would() {
        let access: GatewayAccess = serde_json::from_str(
            r#"{"consumer_from": [{"header": "apikey"}, "bearer", {"query": "api_key"}],
                "api_from": "auth_path", "refusal_status": 403}"#,
        )
        .unwrap();
        assert!(access.validate().is_ok());
        assert_eq!(access.consumer_from[1], KeySource::Bearer);
        assert_eq!(access.api_from, ApiSource::AuthPath);
        let access: GatewayAccess = serde_json::from_str(r#"{"api_from": "route"}"#).unwrap();
        assert_eq!(access.api_from, ApiSource::Route);
    }

    #[test]
    fn bad_places_name_their_field() {
        for (json, field) in [
            (r#"{"consumer_from": []}"#, "access.consumer_from"),
            (
                r#"{"consumer_from": [{"header": "a b"}]}"#,
                "access.consumer_from[0]",
            ),
            (
                r#"{"consumer_from": [{"header": "X-Tollbooth-Key"}]}"#,
                "access.consumer_from[0]",
            ),
            (
                r#"{"consumer_from": ["bearer", {"query": "a&b"}]}"#,
                "access.consumer_from[1]",
            ),
            (r#"{"api_from": {"header": ""}}"#, "access.api_from.header"),
            (r#"{"refusal_status": 500}"#, "access.refusal_status"),
        ] {
            let access: GatewayAccess = serde_json::from_str(json).unwrap();
            assert_eq!(access.validate().unwrap_err().field, field, "{json}");
        }
    }
}
