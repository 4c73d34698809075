//! A call record as the gateway posts it, and its checks. Each record is parsed on its own so that
//! one bad record is rejected without failing its batch.

use crate::domain::text::has_unstorable;
use crate::domain::units::{MAX_UNITS_PER_RECORD, micros_from_units};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// One record of `POST /v1/events`, borrowed from the request body where it can be.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CallRecord)]
pub struct CallRecordInput<'a> {
    /// The record's id, unique per call: a record sent again is counted once.
    #[serde(borrow)]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "^[^\\x00]*$")]
    pub id: Cow<'a, str>,
    /// The gateway's key of the consumer.
    #[serde(borrow)]
    #[schema(value_type = String, pattern = "^[^\\x00]*$")]
    pub consumer: Cow<'a, str>,
    /// The api's slug.
    #[serde(borrow)]
    #[schema(value_type = String, pattern = "^[^\\x00]*$")]
    pub api: Cow<'a, str>,
    /// When the call was made (RFC 3339): within the retention window, at most 5 minutes ahead.
    #[serde(borrow)]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: Cow<'a, str>,
    /// The status the backend answered.
    #[schema(minimum = 100, maximum = 599)]
    pub status: u16,
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, pattern = "^[^\\x00]*$")]
    pub method: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, pattern = "^[^\\x00]*$")]
    pub path: Option<Cow<'a, str>>,
    /// A non-negative decimal, as a JSON number or string; 1 when absent.
    #[serde(default, borrow)]
    #[schema(schema_with = units_schema)]
    pub units: Option<&'a RawValue>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Response headers the gateway passes on, for a policy's `units_header` and the api's
    /// meters and dimensions that read a header.
    #[serde(default, borrow)]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub response_headers: Option<HashMap<Cow<'a, str>, Cow<'a, str>>>,
    /// Named quantities for the api's meters (`{"input_tokens": "1200"}`): non-negative decimals
    /// as numbers or strings.
    #[serde(default, borrow)]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub quantities: Option<HashMap<Cow<'a, str>, &'a RawValue>>,
    /// The call's values of the api's dimensions (`{"model": "large"}`).
    #[serde(default, borrow)]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub dimensions: Option<HashMap<Cow<'a, str>, Cow<'a, str>>>,
    /// Other properties of the call, for unique_count meters (`{"end_user": "u-17"}`).
    #[serde(default, borrow)]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub properties: Option<HashMap<Cow<'a, str>, Cow<'a, str>>>,
}

/// `units` as documented: a number or a decimal string (or null).
fn units_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::Type;
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType};
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![
            Type::Number,
            Type::String,
            Type::Null,
        ]))
        .build()
}

/// Why one record was not taken: a stable code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A call record as every format is read into: what `prepare` checks and stores.
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    pub id: Cow<'a, str>,
    pub consumer: Cow<'a, str>,
    pub api: Cow<'a, str>,
    /// Unix milliseconds.
    pub occurred_at: i64,
    pub status: u16,
    pub method: Option<Cow<'a, str>>,
    pub path: Option<Cow<'a, str>>,
    /// The units as sent (a decimal) and the field they came from, for a rejection's message.
    pub units: Option<(Cow<'a, str>, Cow<'static, str>)>,
    pub latency_ms: Option<i64>,
    /// The host the call was made to, where the format says: the route of a record that names
    /// no api.
    pub host: Option<Cow<'a, str>>,
    /// Response headers the gateway passed on, for a policy's `units_header`.
    pub response_headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Named quantities, as sent (decimal texts), for the api's meters.
    pub quantities: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Dimension values and other properties, for the api's dimensions and unique_count meters.
    pub properties: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// False when the gateway answered the call itself and the upstream never did: such a call
    /// is not the api's failure.
    pub upstream_answered: bool,
}

/// Parses one record of tollbooth's own format; the error names the field (`status: invalid
/// type…`).
pub fn parse_record(raw: &RawValue) -> Result<CallRecord<'_>, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let record: CallRecordInput<'_> =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.inner().to_string();
            let inner = crate::domain::field::without_position(&inner);
            let message = if path == "." {
                inner.to_owned()
            } else {
                format!("{path}: {inner}")
            };
            Rejection::new("invalid_record", message)
        })?;
    let occurred_at = rfc3339_ms(&record.timestamp).ok_or_else(|| {
        Rejection::new(
            "invalid_record",
            format!("timestamp: `{}` is not an RFC 3339 time", record.timestamp),
        )
    })?;
    let record = CallRecord {
        id: record.id,
        consumer: record.consumer,
        api: record.api,
        occurred_at,
        status: record.status,
        method: record.method,
        path: record.path,
        units: record
            .units
            .map(|raw| (Cow::Borrowed(raw.get().trim_matches('"')), "units".into())),
        latency_ms: record.latency_ms.and_then(|l| i64::try_from(l).ok()),
        host: None,
        response_headers: record
            .response_headers
            .unwrap_or_default()
            .into_iter()
            .collect(),
        quantities: record
            .quantities
            .unwrap_or_default()
            .into_iter()
            .map(|(name, raw)| (name, Cow::Borrowed(raw.get().trim_matches('"'))))
            .collect(),
        properties: record
            .dimensions
            .unwrap_or_default()
            .into_iter()
            .chain(record.properties.unwrap_or_default())
            .collect(),
        upstream_answered: true,
    };
    check(&record)?;
    Ok(record)
}

/// An RFC 3339 time in Unix milliseconds.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// What every record must be, whatever its format.
pub fn check(record: &CallRecord<'_>) -> Result<(), Rejection> {
    let texts = [
        ("id", Some(&record.id)),
        ("consumer", Some(&record.consumer)),
        ("api", Some(&record.api)),
        ("method", record.method.as_ref()),
        ("path", record.path.as_ref()),
    ];
    if let Some((field, _)) = texts
        .iter()
        .find(|(_, text)| text.is_some_and(|t| has_unstorable(t)))
    {
        return Err(Rejection::new(
            "invalid_record",
            format!("{field}: must not hold a NUL character (U+0000)"),
        ));
    }
    if record.id.is_empty() || record.id.len() > 200 {
        return Err(Rejection::new(
            "invalid_record",
            "id: must be 1 to 200 characters",
        ));
    }
    if !(100..=599).contains(&record.status) {
        return Err(Rejection::new(
            "invalid_record",
            "status: must be an HTTP status from 100 to 599",
        ));
    }
    Ok(())
}

/// The units of a billable call in millionths: the policy's header if the gateway passed it, else
/// the record's `units`, else 1.
pub fn units_micros(record: &CallRecord<'_>, units_header: Option<&str>) -> Result<i64, Rejection> {
    let from_header = units_header.and_then(|name| {
        record
            .response_headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| (format!("response_headers.{name}"), value.trim().to_owned()))
    });
    let (field, text) = match (from_header, &record.units) {
        (Some(found), _) => found,
        (None, Some((text, field))) => (field.to_string(), text.trim().to_owned()),
        (None, None) => return Ok(1_000_000),
    };
    let invalid = || {
        Rejection::new(
            "invalid_units",
            format!(
                "{field}: `{text}` is not a non-negative decimal of at most \
                 {MAX_UNITS_PER_RECORD} with at most 6 decimal places"
            ),
        )
    };
    let units: Decimal = text.parse().map_err(|_| invalid())?;
    micros_from_units(units).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<(i64, i64), Rejection> {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        let record = parse_record(&raw)?;
        Ok((
            record.occurred_at,
            units_micros(&record, Some("x-usage-units"))?,
        ))
    }

    const BASE: &str = r#""id": "r1", "consumer": "c", "api": "a", "timestamp": "2026-11-22T10:00:00Z", "status": 200"#;

    #[test]
    fn units_come_from_the_header_then_the_field_then_one() {
        assert_eq!(parse(&format!("{{{BASE}}}")).unwrap().1, 1_000_000);
        assert_eq!(
            parse(&format!("{{{BASE}, \"units\": 2.5}}")).unwrap().1,
            2_500_000
        );
        assert_eq!(
            parse(&format!("{{{BASE}, \"units\": \"3\"}}")).unwrap().1,
            3_000_000
        );
        assert_eq!(
            parse(&format!(
                "{{{BASE}, \"units\": 2, \"response_headers\": {{\"X-Usage-Units\": \"7\"}}}}"
            ))
            .unwrap()
            .1,
            7_000_000
        );
        assert_eq!(
            parse(&format!("{{{BASE}, \"units\": -1}}"))
                .unwrap_err()
                .code,
            "invalid_units"
        );
        assert_eq!(
            parse(&format!("{{{BASE}, \"units\": 0.0000001}}"))
                .unwrap_err()
                .code,
            "invalid_units"
        );
    }

    #[test]
    fn a_bad_field_is_named() {
        let err = parse(
            r#"{"id": "r1", "consumer": "c", "api": "a", "timestamp": "yesterday", "status": 200}"#,
        )
        .unwrap_err();
        assert!(err.message.starts_with("timestamp"), "{err:?}");
        let err = parse(
            r#"{"id": "r1", "consumer": "c", "api": "a", "timestamp": "2026-11-22T10:00:00Z"}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("status"), "{err:?}");
        let err =
            parse(&format!("{{{BASE}, \"status\": 200}}").replace("200}", "\"ok\"}")).unwrap_err();
        assert_eq!(err.code, "invalid_record");
        let err = parse(r#"{"id": "r1", "consumer": "c", "api": "a", "timestamp": "2026-11-22T10:00:00Z", "status": 700}"#).unwrap_err();
        assert!(err.message.starts_with("status"), "{err:?}");
    }
}
