//! Call records in the formats senders post by default, each read into a `CallRecord`: Kong's
//! `http-log`, APISIX's `http-logger`, CloudEvents as OpenMeter takes them, OTLP/HTTP JSON logs,
//! and JSON access-log lines (NGINX, Caddy, Traefik) bare or in Fluent Bit's or Vector's envelope.
//! In these formats unknown fields are ignored; tollbooth's own format stays strict.
//!
//! A record that names no api gets the gateway's `ingest.api`, else the api routed at its host
//! and path (`prepare` does that, with the catalog at hand). A record with no id of its own gets
//! the SHA-256 of its text: a batch sent again is the same text, so it is counted once.

use super::lenient::{self, at, duration_ms, epoch_ms, first_text, path_of};
use super::record::{CallRecord, Rejection, check, parse_record};
use super::{BodyError, split_body};
use crate::domain::ingest::{GatewayIngest, RecordFormat};
use rust_decimal::Decimal;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The path a body came to: `/v1/events` takes any format, `/api/v1/events` (OpenMeter's) only
/// CloudEvents, `/v1/logs` (OTLP's) only OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Events,
    CloudEvents,
    OtlpLogs,
}

/// One record read from a body, or why it could not be.
pub type Read<'a> = Result<CallRecord<'a>, Rejection>;

/// The records of a body in the gateway's format (or the endpoint's), by index.
pub fn read<'a>(
    body: &'a str,
    endpoint: Endpoint,
    ingest: &GatewayIngest,
) -> Result<Vec<Read<'a>>, BodyError> {
    let format = match endpoint {
        Endpoint::CloudEvents => RecordFormat::Cloudevents,
        Endpoint::OtlpLogs => RecordFormat::Otlp,
        Endpoint::Events => ingest.format,
    };
    if format == RecordFormat::Otlp {
        return otlp(body, ingest);
    }
    let items = split_body(body)?;
    let format = match format {
        RecordFormat::Auto => items
            .iter()
            .find_map(|item| item.as_ref().ok())
            .map_or(RecordFormat::Tollbooth, |raw| detect(raw)),
        chosen => chosen,
    };
    if format == RecordFormat::Otlp {
        // Detected: an ExportLogsServiceRequest posted to /v1/events.
        let mut records = Vec::new();
        for item in items {
            match item.map(|raw| otlp(raw.get(), ingest)) {
                Ok(Ok(reads)) => records.extend(reads),
                Ok(Err(error)) => records.push(Err(Rejection::new(
                    "invalid_record",
                    format!("not an OTLP logs request: {error}"),
                ))),
                Err(rejection) => records.push(Err(rejection)),
            }
        }
        return Ok(records);
    }
    Ok(items
        .into_iter()
        .map(|item| {
            let raw = item?;
            if format == RecordFormat::Tollbooth {
                return parse_record(raw);
            }
            let value = value_of(raw)?;
            let record = match format {
                RecordFormat::Kong => kong(&value, ingest, raw.get()),
                RecordFormat::Apisix => apisix(&value, ingest, raw.get()),
                RecordFormat::Cloudevents => cloud_event(&value),
                _ => access_log(&value, ingest, raw.get()),
            }?;
            check(&record)?;
            Ok(record)
        })
        .collect())
}

fn value_of(raw: &RawValue) -> Result<Value, Rejection> {
    serde_json::from_str(raw.get())
        .map_err(|e| Rejection::new("invalid_record", format!("not JSON: {e}")))
}

/// The format of a body, told by the keys of its first record.
fn detect(raw: &RawValue) -> RecordFormat {
    let Ok(keys) =
        serde_json::from_str::<std::collections::HashMap<Cow<'_, str>, &RawValue>>(raw.get())
    else {
        return RecordFormat::Tollbooth;
    };
    let has = |key: &str| keys.contains_key(key);
    if has("resourceLogs") {
        RecordFormat::Otlp
    } else if has("specversion") {
        RecordFormat::Cloudevents
    } else if has("started_at") && has("latencies") {
        RecordFormat::Kong
    } else if has("start_time") && has("route_id") {
        RecordFormat::Apisix
    } else if has("id") && has("consumer") && has("api") && has("timestamp") {
        RecordFormat::Tollbooth
    } else {
        RecordFormat::AccessLog
    }
}

/// What the mapped formats fill in; `finish` turns it into a record, naming what is missing.
#[derive(Default)]
struct Found {
    id: Option<String>,
    consumer: Option<String>,
    api: Option<String>,
    host: Option<String>,
    occurred_at: Option<i64>,
    status: Option<u16>,
    upstream_answered: bool,
    method: Option<String>,
    path: Option<String>,
    units: Option<String>,
    latency_ms: Option<i64>,
}

/// Where a format keeps each part, for the message of a record without it.
struct Places {
    format: &'static str,
    consumer: String,
    timestamp: &'static str,
    status: &'static str,
}

fn finish(found: Found, places: &Places, text: &str) -> Read<'static> {
    let missing = |part: &str, place: &str| {
        Rejection::new(
            "invalid_record",
            format!("{part}: this {} record has no {place}", places.format),
        )
    };
    let id = found.id.unwrap_or_else(|| {
        let digest = Sha256::digest(text.as_bytes());
        format!("sha256:{}", hex::encode(&digest[..16]))
    });
    Ok(CallRecord {
        id: id.into(),
        consumer: found
            .consumer
            .ok_or_else(|| missing("consumer", &places.consumer))?
            .into(),
        api: found.api.unwrap_or_default().into(),
        occurred_at: found
            .occurred_at
            .ok_or_else(|| missing("timestamp", places.timestamp))?,
        status: found
            .status
            .ok_or_else(|| missing("status", places.status))?,
        method: found.method.map(Cow::Owned),
        path: found.path.map(Cow::Owned),
        units: found.units.map(|u| (u.into(), Cow::Borrowed("units"))),
        latency_ms: found.latency_ms,
        host: found.host.map(Cow::Owned),
        response_headers: Vec::new(),
        upstream_answered: found.upstream_answered,
    })
}

fn ms() -> Decimal {
    Decimal::ONE
}

fn seconds() -> Decimal {
    Decimal::from(1000)
}

fn header(headers: Option<&Value>, name: &str) -> Option<String> {
    headers
        .and_then(|h| lenient::field(h, name))
        .and_then(lenient::text)
}

/// Kong `http-log` (`kong.log.serialize()`): `request.id`, `started_at` (ms), `response.status`,
/// `upstream_status` (empty when Kong answered itself), `latencies.request` (ms), the consumer
/// from `consumer.custom_id` or `.username`, else the request header; the api `service.name`.
fn kong(entry: &Value, ingest: &GatewayIngest, text: &str) -> Read<'static> {
    let request_headers = at(entry, "request.headers");
    let response_headers = at(entry, "response.headers");
    let answered = match (at(entry, "upstream_status"), at(entry, "source")) {
        (_, Some(Value::String(source))) if source == "kong" => false,
        (Some(upstream), _) => lenient::upstream_answered(upstream),
        (None, _) => true,
    };
    let id_header = ingest.id_header.as_deref();
    let found = Found {
        id: id_header
            .and_then(|name| header(request_headers, name))
            .or_else(|| first_text(entry, &["request.id"]))
            .or_else(|| header(response_headers, "x-kong-request-id")),
        consumer: first_text(entry, &["consumer.custom_id", "consumer.username"])
            .or_else(|| header(request_headers, &ingest.consumer_header)),
        api: ingest
            .api
            .clone()
            .or_else(|| first_text(entry, &["service.name"])),
        host: header(request_headers, "host"),
        occurred_at: at(entry, "started_at").and_then(epoch_ms),
        status: at(entry, "response.status").and_then(lenient::status),
        upstream_answered: answered,
        method: first_text(entry, &["request.method"]),
        path: first_text(entry, &["request.uri"]).map(|uri| path_of(&uri)),
        units: header(response_headers, &ingest.units_header),
        latency_ms: at(entry, "latencies.request").and_then(|v| duration_ms(v, ms())),
    };
    let places = Places {
        format: "Kong http-log",
        consumer: format!(
            "`consumer` and no `{}` request header",
            ingest.consumer_header
        ),
        timestamp: "`started_at`",
        status: "`response.status`",
    };
    finish(found, &places, text)
}

/// APISIX `http-logger` (`get_full_log`): `start_time` (ms), `response.status`, `latency` (ms),
/// `upstream` (empty when APISIX answered itself); no id of its own.
fn apisix(entry: &Value, ingest: &GatewayIngest, text: &str) -> Read<'static> {
    let request_headers = at(entry, "request.headers");
    let found = Found {
        id: header(
            request_headers,
            ingest.id_header.as_deref().unwrap_or("x-request-id"),
        ),
        consumer: header(request_headers, &ingest.consumer_header)
            .or_else(|| first_text(entry, &["consumer.username"])),
        api: ingest.api.clone(),
        host: header(request_headers, "host"),
        occurred_at: at(entry, "start_time").and_then(epoch_ms),
        status: at(entry, "response.status").and_then(lenient::status),
        upstream_answered: at(entry, "upstream").is_none_or(lenient::upstream_answered),
        method: first_text(entry, &["request.method"]),
        path: first_text(entry, &["request.uri", "request.url"]).map(|uri| path_of(&uri)),
        units: header(at(entry, "response.headers"), &ingest.units_header),
        latency_ms: at(entry, "latency").and_then(|v| duration_ms(v, ms())),
    };
    let places = Places {
        format: "APISIX http-logger",
        consumer: format!(
            "`{}` request header and no `consumer`",
            ingest.consumer_header
        ),
        timestamp: "`start_time`",
        status: "`response.status`",
    };
    finish(found, &places, text)
}

/// A CloudEvent (OpenMeter's ingestion): `id` + `source` the id, `subject` the caller, `time`
/// (RFC 3339; now when absent, as OpenMeter does); from `data`, the api (`api` or `service`),
/// `status` (200 when absent: an event that happened), `method`, `path` (or `route`), `units`,
/// `duration_ms` or `duration_seconds`.
fn cloud_event(event: &Value) -> Read<'static> {
    let part = |name: &str| {
        first_text(event, &[name]).ok_or_else(|| {
            Rejection::new("invalid_record", format!("{name}: a CloudEvent needs it"))
        })
    };
    let (id, source, subject) = (part("id")?, part("source")?, part("subject")?);
    let data = at(event, "data");
    let data_text = |names: &[&str]| data.and_then(|d| first_text(d, names));
    let occurred_at = match at(event, "time") {
        Some(time) => Some(
            epoch_ms(time)
                .ok_or_else(|| Rejection::new("invalid_record", "time: not an RFC 3339 time"))?,
        ),
        None => Some(crate::store::now_ms()),
    };
    let status =
        match data.and_then(|d| lenient::field(d, "status")) {
            Some(status) => Some(lenient::status(status).ok_or_else(|| {
                Rejection::new("invalid_record", "data.status: not an HTTP status")
            })?),
            None => Some(200),
        };
    let latency = data.and_then(|d| {
        lenient::field(d, "duration_ms")
            .and_then(|v| duration_ms(v, ms()))
            .or_else(|| {
                lenient::field(d, "duration_seconds").and_then(|v| duration_ms(v, seconds()))
            })
    });
    let found = Found {
        id: Some(format!("{source} {id}")),
        consumer: Some(subject),
        api: data_text(&["api", "service"]),
        host: data_text(&["host"]),
        occurred_at,
        status,
        upstream_answered: true,
        method: data_text(&["method"]),
        path: data_text(&["path", "route"]).map(|p| path_of(&p)),
        units: data_text(&["units"]),
        latency_ms: latency,
    };
    let places = Places {
        format: "CloudEvent",
        consumer: "`subject`".to_owned(),
        timestamp: "`time`",
        status: "`data.status`",
    };
    finish(found, &places, "")
}

/// OTLP/HTTP JSON logs: each `logRecord` of each scope of each resource, read from its attributes
/// (the resource's when the record lacks one) under the OpenTelemetry HTTP names, stable and
/// older: `http.response.status_code`/`http.status_code`, `http.request.method`/`http.method`,
/// `url.path`/`http.target`, `server.address`/`net.host.name`, `http.request.header.<name>`,
/// `timeUnixNano`; the api in `tollbooth.api` (or the gateway's `ingest.api`, or the route).
/// Read into typed messages (`otlp_json`), borrowing from the body, unknown fields skipped.
fn otlp(text: &str, ingest: &GatewayIngest) -> Result<Vec<Read<'static>>, BodyError> {
    let request: otlp_json::Export<'_> =
        serde_json::from_str(text).map_err(|e| BodyError::at(e.line(), &e))?;
    let names = OtlpNames::new(ingest);
    let mut records = Vec::new();
    for resource in &request.resource_logs {
        let resource_attributes = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes);
        for scope in &resource.scope_logs {
            for raw in &scope.log_records {
                let read = serde_json::from_str::<otlp_json::LogRecord<'_>>(raw.get())
                    .map_err(|e| Rejection::new("invalid_record", format!("logRecords: {e}")))
                    .and_then(|log| {
                        let record =
                            otlp_record(&log, resource_attributes, &names, ingest, raw.get())?;
                        check(&record)?;
                        Ok(record)
                    });
                records.push(read);
            }
        }
    }
    if records.is_empty() {
        records.push(Err(Rejection::new(
            "invalid_record",
            "resourceLogs: no log record in this OTLP request",
        )));
    }
    Ok(records)
}

/// The attribute names a gateway's headers are logged under, made once a request.
struct OtlpNames {
    consumer: [String; 2],
    id: [String; 2],
    units: [String; 2],
}

impl OtlpNames {
    fn new(ingest: &GatewayIngest) -> Self {
        let names = |side: &str, header: &str| {
            let lower = header.to_ascii_lowercase();
            [
                format!("http.{side}.header.{lower}"),
                format!("http.{side}.header.{}", lower.replace('-', "_")),
            ]
        };
        Self {
            consumer: names("request", &ingest.consumer_header),
            id: names(
                "request",
                ingest.id_header.as_deref().unwrap_or("x-request-id"),
            ),
            units: names("response", &ingest.units_header),
        }
    }
}

/// The OTLP/JSON messages tollbooth reads (`ExportLogsServiceRequest` and what it holds).
mod otlp_json {
    use serde::Deserialize;
    use serde_json::Value;
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    #[derive(Deserialize)]
    pub struct Export<'a> {
        #[serde(rename = "resourceLogs", default, borrow)]
        pub resource_logs: Vec<ResourceLogs<'a>>,
    }

    #[derive(Deserialize)]
    pub struct ResourceLogs<'a> {
        #[serde(default, borrow)]
        pub resource: Option<Resource<'a>>,
        #[serde(rename = "scopeLogs", default, borrow)]
        pub scope_logs: Vec<ScopeLogs<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Resource<'a> {
        #[serde(default, borrow)]
        pub attributes: Vec<KeyValue<'a>>,
    }

    #[derive(Deserialize)]
    pub struct ScopeLogs<'a> {
        /// Kept as text: read one by one, so one bad record is rejected alone, and hashed for
        /// the id of a record that has none.
        #[serde(rename = "logRecords", default, borrow)]
        pub log_records: Vec<&'a RawValue>,
    }

    #[derive(Deserialize)]
    pub struct LogRecord<'a> {
        #[serde(rename = "timeUnixNano", default)]
        pub time: Option<Value>,
        #[serde(rename = "observedTimeUnixNano", default)]
        pub observed_time: Option<Value>,
        #[serde(default, borrow)]
        pub attributes: Vec<KeyValue<'a>>,
        #[serde(rename = "traceId", default, borrow)]
        pub trace_id: Option<Cow<'a, str>>,
        #[serde(rename = "spanId", default, borrow)]
        pub span_id: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    pub struct KeyValue<'a> {
        #[serde(borrow)]
        pub key: Cow<'a, str>,
        #[serde(default)]
        pub value: AnyValue,
    }

    /// An AnyValue: one of its kinds (a kvlist or bytes reads as nothing).
    #[derive(Deserialize, Default)]
    pub struct AnyValue {
        #[serde(rename = "stringValue", default)]
        string: Option<String>,
        #[serde(rename = "intValue", default)]
        int: Option<Value>,
        #[serde(rename = "doubleValue", default)]
        double: Option<Value>,
        #[serde(rename = "boolValue", default)]
        boolean: Option<bool>,
        #[serde(rename = "arrayValue", default)]
        array: Option<ArrayValue>,
    }

    #[derive(Deserialize, Default)]
    pub struct ArrayValue {
        #[serde(default)]
        values: Vec<AnyValue>,
    }

    impl AnyValue {
        /// As a plain JSON value (`{"intValue": "500"}` → `"500"`; an array → its first item).
        pub fn plain(&self) -> Value {
            if let Some(text) = &self.string {
                return Value::String(text.clone());
            }
            if let Some(number) = self.int.as_ref().or(self.double.as_ref()) {
                return number.clone();
            }
            if let Some(flag) = self.boolean {
                return Value::Bool(flag);
            }
            self.array
                .as_ref()
                .and_then(|a| a.values.first())
                .map_or(Value::Null, AnyValue::plain)
        }
    }
}

fn strs(names: &[String; 2]) -> [&str; 2] {
    [names[0].as_str(), names[1].as_str()]
}

fn otlp_record(
    log: &otlp_json::LogRecord<'_>,
    resource_attributes: &[otlp_json::KeyValue<'_>],
    names: &OtlpNames,
    ingest: &GatewayIngest,
    text: &str,
) -> Read<'static> {
    // The record's own attributes first, then the resource's.
    let get = |wanted: &[&str]| {
        wanted.iter().find_map(|name| {
            log.attributes
                .iter()
                .chain(resource_attributes)
                .filter(|kv| kv.key.eq_ignore_ascii_case(name))
                .map(|kv| kv.value.plain())
                .find(|value| lenient::text(value).is_some())
        })
    };
    let text_of = |wanted: &[&str]| get(wanted).as_ref().and_then(lenient::text);
    let trace = match (&log.trace_id, &log.span_id) {
        (Some(trace), Some(span)) if !trace.is_empty() && !span.is_empty() => {
            Some(format!("{trace}-{span}"))
        }
        _ => None,
    };
    let found = Found {
        id: text_of(&["log.record.uid"])
            .or_else(|| text_of(&strs(&names.id)))
            .or(trace),
        consumer: text_of(&strs(&names.consumer)),
        api: text_of(&["tollbooth.api"]).or_else(|| ingest.api.clone()),
        host: text_of(&["server.address", "net.host.name", "http.host"]),
        occurred_at: [&log.time, &log.observed_time]
            .into_iter()
            .filter_map(|time| time.as_ref().and_then(epoch_ms))
            .find(|&ms| ms > 0),
        status: get(&["http.response.status_code", "http.status_code"])
            .as_ref()
            .and_then(lenient::status),
        upstream_answered: true,
        method: text_of(&["http.request.method", "http.method"]),
        path: text_of(&["url.path", "http.target", "url.full", "http.url"]).map(|p| path_of(&p)),
        units: text_of(&strs(&names.units)),
        latency_ms: get(&["duration_ms"])
            .and_then(|v| duration_ms(&v, ms()))
            .or_else(|| {
                get(&["http.server.request.duration"]).and_then(|v| duration_ms(&v, seconds()))
            }),
    };
    let places = Places {
        format: "OTLP log",
        consumer: format!("`{}` attribute", names.consumer[0]),
        timestamp: "`timeUnixNano`",
        status: "`http.response.status_code` attribute",
    };
    finish(found, &places, text)
}

/// A JSON access-log line: the provider's field names (`ingest.fields`), else the usual names of
/// NGINX `log_format` variables, Caddy's and Traefik's JSON logs; in Vector's envelope (the line
/// in `message`) or Fluent Bit's (`log`, the date key `date`).
fn access_log(line: &Value, ingest: &GatewayIngest, text: &str) -> Read<'static> {
    let inner = ["message", "log"].iter().find_map(|name| {
        let text = at(line, name)?.as_str()?;
        serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object)
    });
    let entry = inner.as_ref().unwrap_or(line);
    let fields = &ingest.fields;
    let consumer_header = ingest.consumer_header.to_ascii_lowercase();
    let nginx_consumer = format!("http_{}", consumer_header.replace('-', "_"));
    let caddy_consumer = format!("request.headers.{consumer_header}");
    let traefik_consumer = format!("request_{}", ingest.consumer_header);
    let units_header = ingest.units_header.to_ascii_lowercase();
    let nginx_units = format!("upstream_http_{}", units_header.replace('-', "_"));
    let caddy_units = format!("resp_headers.{units_header}");
    let pick = |chosen: &Option<String>, usual: &[&str]| -> Option<&Value> {
        match chosen {
            Some(path) => at(entry, path),
            None => usual
                .iter()
                .find_map(|path| at(entry, path).filter(|v| lenient::text(v).is_some())),
        }
    };
    let text_at =
        |chosen: &Option<String>, usual: &[&str]| pick(chosen, usual).and_then(lenient::text);
    let timestamp = pick(
        &fields.timestamp,
        &[
            "timestamp",
            "time",
            "time_iso8601",
            "msec",
            "ts",
            "@timestamp",
            "StartUTC",
            "time_local",
        ],
    )
    .or_else(|| at(line, "date"))
    .or_else(|| at(line, "timestamp"));
    let latency = match (&fields.latency_ms, &fields.latency_seconds) {
        (Some(path), _) => at(entry, path).and_then(|v| duration_ms(v, ms())),
        (None, Some(path)) => at(entry, path).and_then(|v| duration_ms(v, seconds())),
        (None, None) => pick(&None, &["latency_ms", "duration_ms"])
            .and_then(|v| duration_ms(v, ms()))
            .or_else(|| {
                pick(&None, &["request_time", "duration"]).and_then(|v| duration_ms(v, seconds()))
            })
            .or_else(|| {
                // Traefik: nanoseconds.
                pick(&None, &["Duration"]).and_then(|v| duration_ms(v, Decimal::new(1, 6)))
            }),
    };
    // Present even when empty: NGINX writes "" for a call it answered itself.
    let upstream = match &fields.upstream_status {
        Some(path) => at(entry, path),
        None => ["upstream_status", "OriginStatus"]
            .iter()
            .find_map(|name| at(entry, name)),
    };
    let found = Found {
        id: text_at(
            &fields.id,
            &["id", "request_id", "req_id", "requestId", "RequestID"],
        ),
        consumer: text_at(
            &fields.consumer,
            &[
                "consumer",
                "api_key",
                "apikey",
                &nginx_consumer,
                &caddy_consumer,
                &traefik_consumer,
            ],
        ),
        api: text_at(&fields.api, &["api"]).or_else(|| ingest.api.clone()),
        host: text_at(
            &fields.host,
            &[
                "host",
                "http_host",
                "server_name",
                "RequestHost",
                "request.host",
            ],
        ),
        occurred_at: timestamp.and_then(epoch_ms),
        status: pick(
            &fields.status,
            &[
                "status",
                "status_code",
                "DownstreamStatus",
                "response.status",
            ],
        )
        .and_then(lenient::status),
        upstream_answered: upstream.is_none_or(lenient::upstream_answered),
        method: text_at(
            &fields.method,
            &[
                "method",
                "request_method",
                "RequestMethod",
                "request.method",
            ],
        ),
        path: text_at(
            &fields.path,
            &["path", "uri", "request_uri", "RequestPath", "request.uri"],
        )
        .map(|p| path_of(&p)),
        units: text_at(&fields.units, &["units", &nginx_units, &caddy_units]),
        latency_ms: latency,
    };
    let name = |chosen: &Option<String>, usual: &str| {
        chosen
            .as_ref()
            .map_or_else(|| usual.to_owned(), |c| format!("`{c}` field"))
    };
    let places = Places {
        format: "access-log",
        consumer: name(
            &fields.consumer,
            &format!(
                "`consumer`, `api_key` or `{nginx_consumer}` field (set ingest.fields.consumer)"
            ),
        ),
        timestamp: "time field (`timestamp`, `time`, `msec`, `ts`, … or ingest.fields.timestamp)",
        status: "`status` field (or ingest.fields.status)",
    };
    finish(found, &places, text)
}
