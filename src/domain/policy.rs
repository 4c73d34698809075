//! The recording policy: which of an api's calls are billable.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which calls of an api are billed. By default only 2xx answers, any method, any path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingPolicy {
    /// Status classes (`2xx`), exact codes (`304`) or inclusive ranges (`200-299`) that are billable.
    #[serde(default = "default_billable_status")]
    pub billable_status: Vec<StatusMatch>,
    /// Only these methods are billable; empty means every method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<Method>,
    /// These methods are never billable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_methods: Vec<Method>,
    /// Only paths under these prefixes are billable; empty means every path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<PathPrefix>,
    /// Paths under these prefixes are never billable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_path_prefixes: Vec<PathPrefix>,
    /// The response header whose value is the call's units (the backend's own count), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units_header: Option<HeaderName>,
}

impl Default for RecordingPolicy {
    fn default() -> Self {
        Self {
            billable_status: default_billable_status(),
            methods: Vec::new(),
            exclude_methods: Vec::new(),
            path_prefixes: Vec::new(),
            exclude_path_prefixes: Vec::new(),
            units_header: None,
        }
    }
}

impl RecordingPolicy {
    /// Whether a call with this status, method and path is billable under the policy.
    pub fn is_billable(&self, status: u16, method: Option<&str>, path: Option<&str>) -> bool {
        let status_ok = self.billable_status.iter().any(|m| m.matches(status));
        let method_ok = match method {
            Some(method) => {
                (self.methods.is_empty() || self.methods.iter().any(|m| m.is(method)))
                    && !self.exclude_methods.iter().any(|m| m.is(method))
            }
            None => self.methods.is_empty(),
        };
        let path_ok = match path {
            Some(path) => {
                (self.path_prefixes.is_empty()
                    || self.path_prefixes.iter().any(|p| path.starts_with(&p.0)))
                    && !self
                        .exclude_path_prefixes
                        .iter()
                        .any(|p| path.starts_with(&p.0))
            }
            None => self.path_prefixes.is_empty(),
        };
        status_ok && method_ok && path_ok
    }
}

fn default_billable_status() -> Vec<StatusMatch> {
    vec![StatusMatch::Class(2)]
}

/// One rule of `billable_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StatusInput", into = "String")]
pub enum StatusMatch {
    /// `2xx`: every code from 200 to 299.
    Class(u16),
    /// `304`.
    Code(u16),
    /// `200-299`, both ends included.
    Range(u16, u16),
}

/// YAML and JSON writers put a bare code either quoted or as a number; both are accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum StatusInput {
    Number(u16),
    Text(String),
}

impl StatusMatch {
    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Class(class) => status / 100 == class,
            Self::Code(code) => status == code,
            Self::Range(low, high) => (low..=high).contains(&status),
        }
    }
}

fn status_code(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(code) if (100..=599).contains(&code) => Ok(code),
        _ => Err(format!(
            "`{text}` is not an HTTP status code from 100 to 599"
        )),
    }
}

impl TryFrom<StatusInput> for StatusMatch {
    type Error = String;

    fn try_from(input: StatusInput) -> Result<Self, Self::Error> {
        let text = match input {
            StatusInput::Number(code) => code.to_string(),
            StatusInput::Text(text) => text,
        };
        let lower = text.trim().to_ascii_lowercase();
        if let Some(class) = lower.strip_suffix("xx") {
            return match class.parse::<u16>() {
                Ok(class @ 1..=5) => Ok(Self::Class(class)),
                _ => Err(format!("`{text}` is not a status class from 1xx to 5xx")),
            };
        }
        if let Some((low, high)) = lower.split_once('-') {
            let (low, high) = (status_code(low.trim())?, status_code(high.trim())?);
            if low > high {
                return Err(format!("`{text}`: a range runs from low to high"));
            }
            return Ok(Self::Range(low, high));
        }
        status_code(&lower).map(Self::Code)
    }
}

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Class(class) => write!(f, "{class}xx"),
            Self::Code(code) => write!(f, "{code}"),
            Self::Range(low, high) => write!(f, "{low}-{high}"),
        }
    }
}

impl utoipa::PartialSchema for StatusMatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use super::schema::WHITESPACE;
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let code = r"\+?0*[1-5][0-9]{2}";
        let class = r"\+?0*[1-5][xX]{2}";
        let range =
            format!("[{WHITESPACE}]*{code}[{WHITESPACE}]*-[{WHITESPACE}]*{code}[{WHITESPACE}]*");
        let text = super::schema::string(
            &format!("^[{WHITESPACE}]*(?:{class}|{code}|{range})[{WHITESPACE}]*$"),
            None,
            "A status class (`2xx`), a code (`304`) or a range from low to high (`200-299`).",
            "2xx",
        );
        let number = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(100))
            .maximum(Some(599));
        OneOfBuilder::new().item(text).item(number).into()
    }
}

impl utoipa::ToSchema for StatusMatch {}

impl From<StatusMatch> for String {
    fn from(rule: StatusMatch) -> Self {
        rule.to_string()
    }
}

/// An HTTP method token, kept in upper case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Method(String);

impl Method {
    fn is(&self, method: &str) -> bool {
        self.0.eq_ignore_ascii_case(method)
    }
}

impl TryFrom<String> for Method {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.is_empty() || value.len() > 16 || !value.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!("`{value}` is not an HTTP method"));
        }
        Ok(Self(value.to_ascii_uppercase()))
    }
}

impl utoipa::PartialSchema for Method {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            "^[A-Za-z]{1,16}$",
            Some((1, 16)),
            "An HTTP method, in any case; kept in upper case.",
            "GET",
        )
        .into()
    }
}

impl utoipa::ToSchema for Method {}

impl From<Method> for String {
    fn from(method: Method) -> Self {
        method.0
    }
}

/// A URL path prefix; it starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathPrefix(String);

impl TryFrom<String> for PathPrefix {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if !value.starts_with('/') {
            return Err(format!("`{value}` must start with `/`"));
        }
        Ok(Self(value))
    }
}

impl utoipa::PartialSchema for PathPrefix {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            r"^/[^\x00]*$",
            None,
            "A URL path prefix, starting with `/`.",
            "/v1/",
        )
        .into()
    }
}

impl utoipa::ToSchema for PathPrefix {}

impl From<PathPrefix> for String {
    fn from(prefix: PathPrefix) -> Self {
        prefix.0
    }
}

/// A response header name, kept in lower case as HTTP/2 writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HeaderName(String);

impl HeaderName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HeaderName {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let valid = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !valid {
            return Err(format!("`{value}` is not an HTTP header name"));
        }
        Ok(Self(value.to_ascii_lowercase()))
    }
}

impl utoipa::PartialSchema for HeaderName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::string(
            "^[A-Za-z0-9_-]+$",
            None,
            "A response header name, in any case; kept in lower case.",
            "x-usage-units",
        )
        .into()
    }
}

impl utoipa::ToSchema for HeaderName {}

impl From<HeaderName> for String {
    fn from(name: HeaderName) -> Self {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(value: serde_json::Value) -> RecordingPolicy {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn by_default_only_2xx_is_billable() {
        let policy = RecordingPolicy::default();
        assert!(policy.is_billable(200, Some("GET"), Some("/x")));
        assert!(policy.is_billable(204, None, None));
        assert!(!policy.is_billable(304, Some("GET"), Some("/x")));
        assert!(!policy.is_billable(404, Some("GET"), Some("/x")));
        assert!(!policy.is_billable(500, Some("GET"), Some("/x")));
    }

    #[test]
    fn classes_codes_ranges_methods_and_paths_combine() {
        let policy = policy(json!({
            "billable_status": ["2xx", "304", "410-412", 418],
            "exclude_methods": ["options", "HEAD"],
            "path_prefixes": ["/v1/"],
            "exclude_path_prefixes": ["/v1/health"],
        }));
        assert!(policy.is_billable(304, Some("GET"), Some("/v1/x")));
        assert!(policy.is_billable(411, Some("POST"), Some("/v1/x")));
        assert!(policy.is_billable(418, Some("GET"), Some("/v1/x")));
        assert!(!policy.is_billable(200, Some("OPTIONS"), Some("/v1/x")));
        assert!(!policy.is_billable(200, Some("GET"), Some("/v2/x")));
        assert!(!policy.is_billable(200, Some("GET"), Some("/v1/health")));
        assert!(!policy.is_billable(200, Some("GET"), None));
    }

    #[test]
    fn rules_read_back_as_written() {
        let written = json!({"billable_status": ["2xx", "304", "200-299"], "exclude_methods": ["OPTIONS"], "units_header": "x-usage-units"});
        assert_eq!(
            serde_json::to_value(policy(written.clone())).unwrap(),
            written
        );
    }

    #[test]
    fn the_status_schema_takes_the_text_the_parse_takes() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(StatusMatch::schema()).unwrap();
        let text: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> =
            serde_json::from_value(schema["oneOf"][0].clone()).unwrap();
        crate::domain::schema::testing::assert_agrees(
            &text,
            |sample| serde_json::from_value::<StatusMatch>(json!(sample)).is_ok(),
            &[
                "2xx",
                "2XX",
                " 2xx ",
                "+2xx",
                "02xx",
                "6xx",
                "0xx",
                "xx",
                "304",
                "+304",
                "0304",
                "099",
                "600",
                "200-299",
                "200 - 299",
                "100-599",
                "2xx-3xx",
                "abc",
                "",
                "200-",
                "-200",
                "\u{3000}404",
                "30 4",
            ],
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            json!({"billable_status": ["6xx"]}),
            json!({"billable_status": ["299-200"]}),
            json!({"billable_status": ["abc"]}),
            json!({"methods": ["GET POST"]}),
            json!({"path_prefixes": ["v1"]}),
            json!({"units_header": "x units"}),
            json!({"unknown": 1}),
        ] {
            assert!(
                serde_json::from_value::<RecordingPolicy>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
