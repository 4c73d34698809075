//! Call records in the formats senders post by default, each read into a `CallRecord`: Kong's
//! `http-log`, APISIX's `http-logger`, CloudEvents as OpenMeter takes them, OTLP logs (JSON or
//! protobuf, over HTTP or gRPC), and JSON access-log lines (NGINX, Caddy, Traefik) bare or in Fluent Bit's or Vector's envelope.
//! In these formats unknown fields are ignored; tollbooth's own format stays strict.
//!
//! A record that names no api gets the gateway's `ingest.api`, else the api routed at its host
//! and path (`prepare` does that, with the catalog at hand). A record with no id of its own gets
//! the SHA-256 of its text: a batch sent again is the same text, so it is counted once.

use super::key;
use super::lenient::{self, Object, duration_ms, epoch_ms, path_in, text};
use super::record::{CallRecord, Rejection, check, parse_record};
use super::{BodyError, split_body};
use crate::domain::ingest::{GatewayIngest, RecordFormat};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1 as proto;
use rust_decimal::Decimal;
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
    let access_names = AccessLogNames::new(ingest);
    Ok(items
        .into_iter()
        .map(|item| {
            let raw = item?;
            if format == RecordFormat::Tollbooth {
                return parse_record(raw);
            }
            let record = match format {
                RecordFormat::Kong => kong(raw, ingest),
                RecordFormat::Apisix => apisix(&object_of(raw)?, ingest, raw.get()),
                RecordFormat::Cloudevents => cloud_event(&object_of(raw)?),
                _ => access_log(raw, ingest, &access_names),
            }?;
            check(&record)?;
            Ok(record)
        })
        .collect())
}

fn object_of(raw: &RawValue) -> Result<Object<'_>, Rejection> {
    Object::from_text(raw.get())
        .map_err(|e| Rejection::new("invalid_record", format!("not a JSON object: {e}")))
}

/// The format of a body, told by the keys of its first record.
fn detect(raw: &RawValue) -> RecordFormat {
    let Ok(keys) = Object::from_text(raw.get()) else {
        return RecordFormat::Tollbooth;
    };
    let has = |key: &str| keys.contains(key);
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

type Text<'a> = Option<Cow<'a, str>>;

/// What the mapped formats fill in, borrowed from the body where it can be; `finish` turns it
/// into a record, naming what is missing.
#[derive(Default)]
struct Found<'a> {
    id: Text<'a>,
    consumer: Text<'a>,
    api: Text<'a>,
    host: Text<'a>,
    occurred_at: Option<i64>,
    status: Option<u16>,
    upstream_answered: bool,
    method: Text<'a>,
    path: Text<'a>,
    units: Text<'a>,
    latency_ms: Option<i64>,
    /// The response headers logged, for the api's meters and dimensions that read a header.
    response_headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Named values of the record (a CloudEvent's `data`): the api's meters' quantities, and
    /// its dimensions' and unique counts' properties.
    values: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl Found<'_> {
    /// The same, owning its texts: for what was read from a line nested in a shipper's envelope.
    fn into_owned(self) -> Found<'static> {
        let owned = |text: Text<'_>| text.map(|t| Cow::Owned(t.into_owned()));
        Found {
            id: owned(self.id),
            consumer: owned(self.consumer),
            api: owned(self.api),
            host: owned(self.host),
            occurred_at: self.occurred_at,
            status: self.status,
            upstream_answered: self.upstream_answered,
            method: owned(self.method),
            path: owned(self.path),
            units: owned(self.units),
            latency_ms: self.latency_ms,
            response_headers: owned_pairs(self.response_headers),
            values: owned_pairs(self.values),
        }
    }
}

fn owned_pairs(
    pairs: Vec<(Cow<'_, str>, Cow<'_, str>)>,
) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
    pairs
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
        .collect()
}

/// Where a format keeps each part, for the message of a record without it.
struct Places {
    format: &'static str,
    consumer: String,
    timestamp: &'static str,
    status: &'static str,
}

/// The id of a record that has none of its own: the SHA-256 of its content.
fn content_id(content: &[u8]) -> Cow<'static, str> {
    let digest = Sha256::digest(content);
    Cow::Owned(format!("sha256:{}", hex::encode(&digest[..16])))
}

/// The record `found` describes; `places` (made only when a part is missing) names where the
/// format keeps it.
fn finish<'a>(found: Found<'a>, places: impl Fn() -> Places, content: &[u8]) -> Read<'a> {
    let missing = |part: &str, place: fn(&Places) -> String| {
        let places = places();
        Rejection::new(
            "invalid_record",
            format!(
                "{part}: this {} record has no {}",
                places.format,
                place(&places)
            ),
        )
    };
    let id = found.id.unwrap_or_else(|| content_id(content));
    Ok(CallRecord {
        id,
        consumer: found
            .consumer
            .ok_or_else(|| missing("consumer", |p| p.consumer.clone()))?,
        api: found.api.unwrap_or_default(),
        occurred_at: found
            .occurred_at
            .ok_or_else(|| missing("timestamp", |p| p.timestamp.to_owned()))?,
        status: found
            .status
            .ok_or_else(|| missing("status", |p| p.status.to_owned()))?,
        method: found.method,
        path: found.path,
        units: found.units.map(|u| (u, Cow::Borrowed("units"))),
        latency_ms: found.latency_ms,
        host: found.host,
        response_headers: found.response_headers,
        quantities: found.values.clone(),
        properties: found.values,
        upstream_answered: found.upstream_answered,
    })
}

fn ms() -> Decimal {
    Decimal::ONE
}

fn seconds() -> Decimal {
    Decimal::from(1000)
}

/// A header of a logged set (names matched without regard to case).
fn header<'a>(headers: Option<&Object<'a>>, name: &str) -> Text<'a> {
    headers.and_then(|h| h.get(name)).and_then(text)
}

/// The gateway's api for its records, when it names one.
fn gateway_api(ingest: &GatewayIngest) -> Text<'static> {
    ingest.api.clone().map(Cow::Owned)
}

/// Kong `http-log` (`kong.log.serialize()`): `request.id`, `started_at` (ms), `response.status`,
/// `upstream_status` (empty when Kong answered itself), `latencies.request` (ms), the consumer
/// from `consumer.custom_id` or `.username`, else the request header; the api `service.name`.
/// Read in one pass into the members used (`kong_json`), the rest skipped as it is scanned.
fn kong<'a>(raw: &'a RawValue, ingest: &GatewayIngest) -> Read<'a> {
    let entry: kong_json::Entry<'a> = serde_json::from_str(raw.get()).map_err(|e| {
        Rejection::new(
            "invalid_record",
            format!(
                "not a Kong http-log entry: {}",
                crate::domain::field::without_position(&e.to_string())
            ),
        )
    })?;
    let request = entry.request.as_ref();
    let response = entry.response.as_ref();
    let request_headers = request.and_then(|r| r.headers.as_ref());
    let response_headers = response.and_then(|r| r.headers.as_ref());
    let kong_answered = entry
        .source
        .and_then(lenient::text)
        .is_some_and(|source| source == "kong");
    let answered = match entry.upstream_status {
        _ if kong_answered => false,
        Some(upstream) => lenient::upstream_answered(upstream),
        None => true,
    };
    let consumer = entry.consumer.as_ref();
    let found = Found {
        id: ingest
            .id_header
            .as_deref()
            .and_then(|name| header(request_headers, name))
            .or_else(|| request.and_then(|r| r.id).and_then(text))
            .or_else(|| header(response_headers, "x-kong-request-id")),
        consumer: consumer
            .and_then(|c| {
                c.custom_id
                    .and_then(text)
                    .or_else(|| c.username.and_then(text))
            })
            .or_else(|| header(request_headers, &ingest.consumer_header)),
        api: gateway_api(ingest)
            .or_else(|| entry.service.as_ref().and_then(|s| s.name).and_then(text)),
        host: header(request_headers, "host"),
        occurred_at: entry.started_at.and_then(epoch_ms),
        status: response.and_then(|r| r.status).and_then(lenient::status),
        upstream_answered: answered,
        method: request.and_then(|r| r.method).and_then(text),
        path: request.and_then(|r| r.uri).and_then(text).map(path_in),
        units: header(response_headers, &ingest.units_header),
        latency_ms: entry
            .latencies
            .as_ref()
            .and_then(|l| l.request)
            .and_then(|v| duration_ms(v, ms())),
        response_headers: response_headers.map(Object::texts).unwrap_or_default(),
        values: Vec::new(),
    };
    finish(
        found,
        || Places {
            format: "Kong http-log",
            consumer: format!(
                "`consumer` and no `{}` request header",
                ingest.consumer_header
            ),
            timestamp: "`started_at`",
            status: "`response.status`",
        },
        raw.get().as_bytes(),
    )
}

/// The members of a Kong http-log entry tollbooth reads; any other member is skipped.
mod kong_json {
    use super::Object;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    pub struct Entry<'a> {
        #[serde(default, borrow)]
        pub request: Option<Message<'a>>,
        #[serde(default, borrow)]
        pub response: Option<Message<'a>>,
        #[serde(default, borrow)]
        pub upstream_status: Option<&'a RawValue>,
        #[serde(default, borrow)]
        pub source: Option<&'a RawValue>,
        #[serde(default, borrow)]
        pub consumer: Option<Consumer<'a>>,
        #[serde(default, borrow)]
        pub service: Option<Service<'a>>,
        #[serde(default, borrow)]
        pub started_at: Option<&'a RawValue>,
        #[serde(default, borrow)]
        pub latencies: Option<Latencies<'a>>,
    }

    /// `request` or `response`.
    #[derive(Deserialize)]
    pub struct Message<'a> {
        #[serde(default, borrow)]
        pub id: Option<&'a RawValue>,
        #[serde(default, borrow)]
        pub uri: Option<&'a RawValue>,
        #[serde(default, borrow)]
        pub method: Option<&'a RawValue>,
        #[serde(default, borrow)]
        pub status: Option<&'a RawValue>,
        /// Names matched without regard to case, as headers are.
        #[serde(default, borrow)]
        pub headers: Option<Object<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Consumer<'a> {
        #[serde(default, borrow)]
        pub custom_id: Option<&'a RawValue>,
        #[serde(default, borrow)]
        pub username: Option<&'a RawValue>,
    }

    #[derive(Deserialize)]
    pub struct Service<'a> {
        #[serde(default, borrow)]
        pub name: Option<&'a RawValue>,
    }

    #[derive(Deserialize)]
    pub struct Latencies<'a> {
        #[serde(default, borrow)]
        pub request: Option<&'a RawValue>,
    }
}

/// APISIX `http-logger` (`get_full_log`): `start_time` (ms), `response.status`, `latency` (ms),
/// `upstream` (empty when APISIX answered itself); no id of its own.
fn apisix<'a>(entry: &Object<'a>, ingest: &GatewayIngest, text: &str) -> Read<'a> {
    let request = entry.object("request");
    let request_headers = request.as_ref().and_then(|r| r.object("headers"));
    let response = entry.object("response");
    let response_headers = response.as_ref().and_then(|r| r.object("headers"));
    let found = Found {
        id: header(
            request_headers.as_ref(),
            ingest.id_header.as_deref().unwrap_or("x-request-id"),
        ),
        consumer: header(request_headers.as_ref(), &ingest.consumer_header)
            .or_else(|| entry.first_text(&["consumer.username"])),
        api: gateway_api(ingest),
        host: header(request_headers.as_ref(), "host"),
        occurred_at: entry.get("start_time").and_then(epoch_ms),
        status: response
            .as_ref()
            .and_then(|r| r.get("status"))
            .and_then(lenient::status),
        upstream_answered: entry.get("upstream").is_none_or(lenient::upstream_answered),
        method: request.as_ref().and_then(|r| r.first_text(&["method"])),
        path: request
            .as_ref()
            .and_then(|r| r.first_text(&["uri", "url"]))
            .map(path_in),
        units: header(response_headers.as_ref(), &ingest.units_header),
        latency_ms: entry.get("latency").and_then(|v| duration_ms(v, ms())),
        response_headers: response_headers
            .as_ref()
            .map(Object::texts)
            .unwrap_or_default(),
        values: Vec::new(),
    };
    finish(
        found,
        || Places {
            format: "APISIX http-logger",
            consumer: format!(
                "`{}` request header and no `consumer`",
                ingest.consumer_header
            ),
            timestamp: "`start_time`",
            status: "`response.status`",
        },
        text.as_bytes(),
    )
}

/// A CloudEvent (OpenMeter's ingestion): `id` + `source` the id (a UUID or ULID `id` alone), `subject` the caller, `time`
/// (RFC 3339; now when absent, as OpenMeter does); from `data`, the api (`api` or `service`),
/// `status` (200 when absent: an event that happened), `method`, `path` (or `route`), `units`,
/// `duration_ms` or `duration_seconds`.
fn cloud_event<'a>(event: &Object<'a>) -> Read<'a> {
    let part = |name: &str| {
        event.get(name).and_then(lenient::text).ok_or_else(|| {
            Rejection::new("invalid_record", format!("{name}: a CloudEvent needs it"))
        })
    };
    let (id, source, subject) = (part("id")?, part("source")?, part("subject")?);
    let data = event.object("data");
    let data_text = |names: &[&str]| data.as_ref().and_then(|d| d.first_text(names));
    let in_data = |name: &str| data.as_ref().and_then(|d| d.get(name));
    let occurred_at = match event.get("time") {
        Some(time) => Some(
            epoch_ms(time)
                .ok_or_else(|| Rejection::new("invalid_record", "time: not an RFC 3339 time"))?,
        ),
        None => Some(crate::store::now_ms()),
    };
    let status =
        match in_data("status") {
            Some(status) => Some(lenient::status(status).ok_or_else(|| {
                Rejection::new("invalid_record", "data.status: not an HTTP status")
            })?),
            None => Some(200),
        };
    let latency = in_data("duration_ms")
        .and_then(|v| duration_ms(v, ms()))
        .or_else(|| in_data("duration_seconds").and_then(|v| duration_ms(v, seconds())));
    let found = Found {
        // A UUID or ULID is unique whatever the source, and keeps its time order in the index;
        // any other id is unique only within its source.
        id: Some(if key::is_unique_everywhere(&id) {
            id
        } else {
            Cow::Owned(format!("{source} {id}"))
        }),
        consumer: Some(subject),
        api: data_text(&["api", "service"]),
        host: data_text(&["host"]),
        occurred_at,
        status,
        upstream_answered: true,
        method: data_text(&["method"]),
        path: data_text(&["path", "route"]).map(path_in),
        units: data_text(&["units"]),
        latency_ms: latency,
        response_headers: Vec::new(),
        values: data.as_ref().map(Object::texts).unwrap_or_default(),
    };
    finish(
        found,
        || Places {
            format: "CloudEvent",
            consumer: "`subject`".to_owned(),
            timestamp: "`time`",
            status: "`data.status`",
        },
        b"",
    )
}

/// OTLP/HTTP JSON logs: each `logRecord` of each scope of each resource, read from its attributes
/// (the resource's when the record lacks one) under the OpenTelemetry HTTP names, stable and
/// older: `http.response.status_code`/`http.status_code`, `http.request.method`/`http.method`,
/// `url.path`/`http.target`, `server.address`/`net.host.name`, `http.request.header.<name>`,
/// `timeUnixNano`; the api in `tollbooth.api` (or the gateway's `ingest.api`, or the route).
/// Read into typed messages (`otlp_json`), borrowing from the body, unknown fields skipped.
fn otlp<'a>(text: &'a str, ingest: &GatewayIngest) -> Result<Vec<Read<'a>>, BodyError> {
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
                        let attributes = JsonAttributes {
                            record: &log.attributes,
                            resource: resource_attributes,
                        };
                        let trace = match (&log.trace_id, &log.span_id) {
                            (Some(trace), Some(span)) if !trace.is_empty() && !span.is_empty() => {
                                Some(Cow::Owned(format!("{trace}-{span}")))
                            }
                            _ => None,
                        };
                        let occurred_at = [log.time, log.observed_time]
                            .into_iter()
                            .filter_map(|time| time.and_then(epoch_ms))
                            .find(|&ms| ms > 0);
                        let found = otlp_found(&attributes, occurred_at, trace, &names, ingest);
                        let record = finish(found, || names.places(), raw.get().as_bytes())?;
                        check(&record)?;
                        Ok(record)
                    });
                records.push(read);
            }
        }
    }
    Ok(with_one_at_least(records))
}

/// The reads of an OTLP request, or one rejection saying it held no log record.
fn with_one_at_least(mut records: Vec<Read<'_>>) -> Vec<Read<'_>> {
    if records.is_empty() {
        records.push(Err(Rejection::new(
            "invalid_record",
            "resourceLogs: no log record in this OTLP request",
        )));
    }
    records
}

/// OTLP logs in protobuf (OTLP/HTTP `application/x-protobuf`, and OTLP/gRPC's `Export`), read
/// as their JSON encoding is: the same attributes, the same ids (a trace and span id in hex), and
/// a record with no id keyed by the SHA-256 of its encoding.
pub fn otlp_protobuf<'a>(
    request: &'a ExportLogsServiceRequest,
    ingest: &GatewayIngest,
) -> Vec<Read<'a>> {
    let names = OtlpNames::new(ingest);
    let mut records = Vec::new();
    for resource in &request.resource_logs {
        let resource_attributes = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes);
        for scope in &resource.scope_logs {
            for log in &scope.log_records {
                let attributes = ProtoAttributes {
                    record: &log.attributes,
                    resource: resource_attributes,
                };
                let trace = (!log.trace_id.is_empty() && !log.span_id.is_empty()).then(|| {
                    Cow::Owned(format!(
                        "{}-{}",
                        hex::encode(&log.trace_id),
                        hex::encode(&log.span_id)
                    ))
                });
                let occurred_at = [log.time_unix_nano, log.observed_time_unix_nano]
                    .into_iter()
                    .find(|&nanos| nanos > 0)
                    .and_then(|nanos| i64::try_from(nanos / 1_000_000).ok());
                let mut found = otlp_found(&attributes, occurred_at, trace, &names, ingest);
                if found.id.is_none() {
                    found.id = Some(content_id(&prost::Message::encode_to_vec(log)));
                }
                let read = finish(found, || names.places(), b"").and_then(|record| {
                    check(&record)?;
                    Ok(record)
                });
                records.push(read);
            }
        }
    }
    with_one_at_least(records)
}

/// The attributes of one OTLP log record, in either encoding: the text of the first one named
/// as one of `names` (without regard to case), the record's own before its resource's.
trait OtlpAttributes<'a> {
    fn text(&self, names: &[&str]) -> Text<'a>;
}

struct JsonAttributes<'r, 'a> {
    record: &'r [otlp_json::KeyValue<'a>],
    resource: &'r [otlp_json::KeyValue<'a>],
}

impl<'a> OtlpAttributes<'a> for JsonAttributes<'_, 'a> {
    fn text(&self, names: &[&str]) -> Text<'a> {
        names.iter().find_map(|name| {
            self.record
                .iter()
                .chain(self.resource)
                .filter(|kv| kv.key.eq_ignore_ascii_case(name))
                .find_map(|kv| kv.value.plain().and_then(lenient::text))
        })
    }
}

struct ProtoAttributes<'a> {
    record: &'a [proto::KeyValue],
    resource: &'a [proto::KeyValue],
}

impl<'a> OtlpAttributes<'a> for ProtoAttributes<'a> {
    fn text(&self, names: &[&str]) -> Text<'a> {
        names.iter().find_map(|name| {
            self.record
                .iter()
                .chain(self.resource)
                .filter(|kv| kv.key.eq_ignore_ascii_case(name))
                .find_map(|kv| kv.value.as_ref().and_then(proto_text))
        })
    }
}

/// An AnyValue as text, as `lenient::text` reads JSON: a non-empty string (trimmed), a number, a
/// boolean, or an array's first item; a kvlist or bytes is nothing.
fn proto_text(value: &proto::AnyValue) -> Text<'_> {
    use proto::any_value::Value;
    match value.value.as_ref()? {
        Value::StringValue(text) => {
            let text = text.trim();
            (!text.is_empty()).then_some(Cow::Borrowed(text))
        }
        Value::IntValue(number) => Some(Cow::Owned(number.to_string())),
        Value::DoubleValue(number) => number.is_finite().then(|| Cow::Owned(number.to_string())),
        Value::BoolValue(flag) => Some(Cow::Borrowed(if *flag { "true" } else { "false" })),
        Value::ArrayValue(array) => array.values.first().and_then(proto_text),
        _ => None,
    }
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

    fn places(&self) -> Places {
        Places {
            format: "OTLP log",
            consumer: format!("`{}` attribute", self.consumer[0]),
            timestamp: "`timeUnixNano`",
            status: "`http.response.status_code` attribute",
        }
    }
}

/// The OTLP/JSON messages tollbooth reads (`ExportLogsServiceRequest` and what it holds).
mod otlp_json {
    use serde::Deserialize;
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
        #[serde(rename = "timeUnixNano", default, borrow)]
        pub time: Option<&'a RawValue>,
        #[serde(rename = "observedTimeUnixNano", default, borrow)]
        pub observed_time: Option<&'a RawValue>,
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
        #[serde(default, borrow)]
        pub value: AnyValue<'a>,
    }

    /// An AnyValue: one of its kinds, as sent (a kvlist or bytes reads as nothing).
    #[derive(Deserialize, Default)]
    pub struct AnyValue<'a> {
        #[serde(rename = "stringValue", default, borrow)]
        string: Option<&'a RawValue>,
        #[serde(rename = "intValue", default, borrow)]
        int: Option<&'a RawValue>,
        #[serde(rename = "doubleValue", default, borrow)]
        double: Option<&'a RawValue>,
        #[serde(rename = "boolValue", default, borrow)]
        boolean: Option<&'a RawValue>,
        #[serde(rename = "arrayValue", default, borrow)]
        array: Option<ArrayValue<'a>>,
    }

    #[derive(Deserialize, Default)]
    pub struct ArrayValue<'a> {
        #[serde(default, borrow)]
        values: Vec<AnyValue<'a>>,
    }

    impl<'a> AnyValue<'a> {
        /// The value as plain JSON (`{"intValue": "500"}` → `"500"`; an array → its first item).
        pub fn plain(&self) -> Option<&'a RawValue> {
            self.string
                .or(self.int)
                .or(self.double)
                .or(self.boolean)
                .or_else(|| {
                    self.array
                        .as_ref()
                        .and_then(|a| a.values.first())
                        .and_then(AnyValue::plain)
                })
        }
    }
}

fn strs(names: &[String; 2]) -> [&str; 2] {
    [names[0].as_str(), names[1].as_str()]
}

/// What an OTLP log record says, from its attributes under the HTTP semantic conventions.
fn otlp_found<'a>(
    attributes: &impl OtlpAttributes<'a>,
    occurred_at: Option<i64>,
    trace: Text<'a>,
    names: &OtlpNames,
    ingest: &GatewayIngest,
) -> Found<'a> {
    let text_of = |wanted: &[&str]| attributes.text(wanted);
    Found {
        id: text_of(&["log.record.uid"])
            .or_else(|| text_of(&strs(&names.id)))
            .or(trace),
        consumer: text_of(&strs(&names.consumer)),
        api: text_of(&["tollbooth.api"]).or_else(|| gateway_api(ingest)),
        host: text_of(&["server.address", "net.host.name", "http.host"]),
        occurred_at,
        status: text_of(&["http.response.status_code", "http.status_code"])
            .and_then(|status| lenient::status_in(&status)),
        upstream_answered: true,
        method: text_of(&["http.request.method", "http.method"]),
        path: text_of(&["url.path", "http.target", "url.full", "http.url"]).map(path_in),
        units: text_of(&strs(&names.units)),
        latency_ms: text_of(&["duration_ms"])
            .and_then(|v| lenient::duration_ms_in(&v, ms()))
            .or_else(|| {
                text_of(&["http.server.request.duration"])
                    .and_then(|v| lenient::duration_ms_in(&v, seconds()))
            }),
        ..Found::default()
    }
}

/// A JSON access-log line: the provider's field names (`ingest.fields`), else the usual names of
/// NGINX `log_format` variables, Caddy's and Traefik's JSON logs; in Vector's envelope (the line
/// in `message`) or Fluent Bit's (`log`, the date key `date`).
fn access_log<'a>(raw: &'a RawValue, ingest: &GatewayIngest, names: &AccessLogNames) -> Read<'a> {
    let text = raw.get();
    if let Some(envelope) = Envelope::of(text) {
        for nested in [&envelope.message, &envelope.log].into_iter().flatten() {
            if let Ok(inner) = Object::from_text(nested) {
                let time = envelope.date.or(envelope.timestamp);
                let found = access_log_fields(&inner, time, ingest, names).into_owned();
                return finish(found, || names.places(ingest), text.as_bytes());
            }
        }
    }
    let line = object_of(raw)?;
    let time = line.get("date").or_else(|| line.get("timestamp"));
    let found = access_log_fields(&line, time, ingest, names);
    finish(found, || names.places(ingest), text.as_bytes())
}

/// A shipper's envelope around a log line: Vector's (`message`, `timestamp`) or Fluent Bit's
/// (`log`, the date key `date`). Read in one pass, the line unescaped as it is scanned and every
/// other member skipped.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    log: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    date: Option<&'a RawValue>,
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// The envelope a record is, if it names a line (a bare access-log line is not scanned twice).
    fn of(text: &'a str) -> Option<Self> {
        if !text.contains("\"message\"") && !text.contains("\"log\"") {
            return None;
        }
        serde_json::from_str(text).ok()
    }
}

/// The field names a gateway's headers are logged under in access logs.
struct AccessLogNames {
    nginx_consumer: String,
    caddy_consumer: String,
    traefik_consumer: String,
    nginx_units: String,
    caddy_units: String,
}

impl AccessLogNames {
    fn new(ingest: &GatewayIngest) -> Self {
        let consumer_header = ingest.consumer_header.to_ascii_lowercase();
        let units_header = ingest.units_header.to_ascii_lowercase();
        Self {
            nginx_consumer: format!("http_{}", consumer_header.replace('-', "_")),
            caddy_consumer: format!("request.headers.{consumer_header}"),
            traefik_consumer: format!("request_{}", ingest.consumer_header),
            nginx_units: format!("upstream_http_{}", units_header.replace('-', "_")),
            caddy_units: format!("resp_headers.{units_header}"),
        }
    }

    fn places(&self, ingest: &GatewayIngest) -> Places {
        let consumer = match &ingest.fields.consumer {
            Some(chosen) => format!("`{chosen}` field"),
            None => format!(
                "`consumer`, `api_key` or `{}` field (set ingest.fields.consumer)",
                self.nginx_consumer
            ),
        };
        Places {
            format: "access-log",
            consumer,
            timestamp: "time field (`timestamp`, `time`, `msec`, `ts`, … or ingest.fields.timestamp)",
            status: "`status` field (or ingest.fields.status)",
        }
    }
}

/// The parts of an access-log `entry`; `envelope_time` is the time its envelope (or the line,
/// when bare) gives when the line has none of its own.
fn access_log_fields<'e>(
    entry: &Object<'e>,
    envelope_time: Option<&'e RawValue>,
    ingest: &GatewayIngest,
    names: &AccessLogNames,
) -> Found<'e> {
    let fields = &ingest.fields;
    let pick = |chosen: &Option<String>, usual: &[&str]| -> Option<&'e RawValue> {
        match chosen {
            Some(path) => entry.at(path),
            None => usual
                .iter()
                .find_map(|path| entry.at(path).filter(|v| text(v).is_some())),
        }
    };
    let text_at = |chosen: &Option<String>, usual: &[&str]| pick(chosen, usual).and_then(text);
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
    .or(envelope_time);
    let latency = match (&fields.latency_ms, &fields.latency_seconds) {
        (Some(path), _) => entry.at(path).and_then(|v| duration_ms(v, ms())),
        (None, Some(path)) => entry.at(path).and_then(|v| duration_ms(v, seconds())),
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
        Some(path) => entry.at(path),
        None => ["upstream_status", "OriginStatus"]
            .iter()
            .find_map(|name| entry.get(name)),
    };
    Found {
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
                &names.nginx_consumer,
                &names.caddy_consumer,
                &names.traefik_consumer,
            ],
        ),
        api: text_at(&fields.api, &["api"]).or_else(|| gateway_api(ingest)),
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
        .map(path_in),
        units: text_at(
            &fields.units,
            &["units", &names.nginx_units, &names.caddy_units],
        ),
        latency_ms: latency,
        ..Found::default()
    }
}
