//! How a gateway's call records arrive: the format its sender posts (tollbooth's own records, or
//! what Kong, APISIX, OpenMeter clients, OpenTelemetry collectors, Fluent Bit and Vector send as
//! they are), and where in a record tollbooth finds what the format does not say itself.

use super::FieldError;
use serde::{Deserialize, Serialize};

/// A gateway's way of sending call records, as the provider writes it; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayIngest {
    /// The format of `POST /v1/events`. `auto` (the default) tells each body by its shape: the
    /// keys of its first record (`started_at` + `latencies`: Kong; `start_time` + `route_id`:
    /// APISIX; `specversion`: CloudEvents; `resourceLogs`: OTLP; `message` + `source_type`:
    /// Vector; tollbooth's own `id`, `consumer`, `api`, `timestamp`; any other: an access log).
    /// `POST /api/v1/events` is always CloudEvents and `POST /v1/logs` always OTLP.
    #[serde(default)]
    pub format: RecordFormat,
    /// The api of records that do not name one. Unset: the api whose `hosts` and
    /// `path_prefixes` the call's host and path fall under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The request header holding the caller's key, in formats that log request headers (Kong,
    /// APISIX, OTLP `http.request.header.*`). Default `X-Api-Key`.
    #[serde(default = "default_consumer_header")]
    pub consumer_header: String,
    /// The request header holding the call's id, in formats that log request headers (Kong,
    /// APISIX, OTLP), when the format's own id is not the one to deduplicate on. Unset: Kong's
    /// `request.id`, else `X-Request-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_header: Option<String>,
    /// The response header holding the call's units, in formats that log response headers.
    /// Default `X-Usage-Units`.
    #[serde(default = "default_units_header")]
    pub units_header: String,
    /// Access logs: the name of the field holding each part of a record, for names the provider
    /// chose itself; unset parts are looked for under the usual names (see README).
    #[serde(default, skip_serializing_if = "FieldMapping::is_empty")]
    pub fields: FieldMapping,
}

impl Default for GatewayIngest {
    fn default() -> Self {
        Self {
            format: RecordFormat::default(),
            api: None,
            consumer_header: default_consumer_header(),
            id_header: None,
            units_header: default_units_header(),
            fields: FieldMapping::default(),
        }
    }
}

fn default_consumer_header() -> String {
    "X-Api-Key".to_owned()
}

fn default_units_header() -> String {
    "X-Usage-Units".to_owned()
}

/// The formats tollbooth reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// Told by each body's shape.
    #[default]
    Auto,
    /// tollbooth's own records (`id`, `consumer`, `api`, `timestamp`, `status`, …), strict.
    Tollbooth,
    /// Kong's `http-log` plugin: one entry, or an array when it batches.
    Kong,
    /// APISIX's `http-logger`: an array (`concat_method: json`) or one entry a line.
    Apisix,
    /// CloudEvents 1.0 as OpenMeter takes them: `subject` the caller, `id` + `source` the id.
    Cloudevents,
    /// OTLP/HTTP JSON logs (`ExportLogsServiceRequest`), OpenTelemetry HTTP attribute names.
    Otlp,
    /// JSON access-log lines (NGINX, Caddy, Traefik), bare or in a shipper's envelope (Fluent
    /// Bit's date key, Vector's `message`).
    AccessLog,
}

/// Where each part of an access-log record is: a field name, or a dotted path into nested
/// objects (`request.headers.X-Api-Key`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// RFC 3339, or epoch seconds, milliseconds, microseconds or nanoseconds (told by size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The upstream's status: empty or `-` means the upstream never answered, so the call is
    /// not the api's failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The path (a query after `?` is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    /// A latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<String>,
    /// A latency in (fractional) seconds, as NGINX's `$request_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_seconds: Option<String>,
}

impl FieldMapping {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    fn named(&self) -> [(&'static str, Option<&String>); 12] {
        [
            ("id", self.id.as_ref()),
            ("consumer", self.consumer.as_ref()),
            ("api", self.api.as_ref()),
            ("timestamp", self.timestamp.as_ref()),
            ("status", self.status.as_ref()),
            ("upstream_status", self.upstream_status.as_ref()),
            ("method", self.method.as_ref()),
            ("path", self.path.as_ref()),
            ("host", self.host.as_ref()),
            ("units", self.units.as_ref()),
            ("latency_ms", self.latency_ms.as_ref()),
            ("latency_seconds", self.latency_seconds.as_ref()),
        ]
    }
}

impl GatewayIngest {
    pub fn validate(&self) -> Result<(), FieldError> {
        let id_header = self.id_header.as_ref();
        for (field, name) in [
            ("ingest.consumer_header", Some(&self.consumer_header)),
            ("ingest.units_header", Some(&self.units_header)),
            ("ingest.id_header", id_header),
        ]
        .into_iter()
        .filter_map(|(field, name)| Some((field, name?)))
        {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() || name.len() > 100 {
                return Err(FieldError::new(
                    field,
                    format!("`{name}` is not an HTTP header name"),
                ));
            }
        }
        if let Some(api) = &self.api
            && (api.is_empty() || api.len() > 100)
        {
            return Err(FieldError::new(
                "ingest.api",
                "an api's slug, 1 to 100 characters",
            ));
        }
        for (part, name) in self.fields.named() {
            if let Some(name) = name {
                let fine = !name.is_empty()
                    && name.len() <= 200
                    && !name.split('.').any(str::is_empty)
                    && !name.chars().any(char::is_control);
                if !fine {
                    return Err(FieldError::new(
                        format!("ingest.fields.{part}"),
                        format!("`{name}` is not a field name (or a dotted path of field names)"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tells_formats_apart_and_reads_x_api_key() {
        let ingest: GatewayIngest = serde_json::from_str("{}").unwrap();
        assert_eq!(ingest, GatewayIngest::default());
        assert_eq!(ingest.format, RecordFormat::Auto);
        assert!(ingest.validate().is_ok());
        let written = serde_json::to_value(&ingest).unwrap();
        assert_eq!(
            written,
            serde_json::json!({"format": "auto", "consumer_header": "X-Api-Key",
                "units_header": "X-Usage-Units"})
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (json, field) in [
            (r#"{"consumer_header": "a b"}"#, "ingest.consumer_header"),
            (r#"{"units_header": ""}"#, "ingest.units_header"),
            (r#"{"id_header": "x y"}"#, "ingest.id_header"),
            (r#"{"api": ""}"#, "ingest.api"),
            (r#"{"fields": {"status": "a..b"}}"#, "ingest.fields.status"),
            (
                r#"{"fields": {"latency_seconds": ""}}"#,
                "ingest.fields.latency_seconds",
            ),
        ] {
            let ingest: GatewayIngest = serde_json::from_str(json).unwrap();
            assert_eq!(ingest.validate().unwrap_err().field, field, "{json}");
        }
        assert!(serde_json::from_str::<GatewayIngest>(r#"{"format": "syslog"}"#).is_err());
    }
}
