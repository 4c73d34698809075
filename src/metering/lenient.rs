//! Reading the values senders write as they write them: a status as `200` or `"200"`, a latency as
//! `0.043` seconds or `43` milliseconds, a time as RFC 3339, NGINX's `$time_local`, or epoch
//! seconds, milliseconds, microseconds or nanoseconds (told by size). Exact: decimals, no floats.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;
use std::str::FromStr;

/// A value as text: a non-empty string (trimmed), a number, a boolean, or an array's first item.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => {
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        }
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Array(items) => items.first().and_then(text),
        Value::Null | Value::Object(_) => None,
    }
}

/// A value as an exact decimal (`1796126400.123`, `"0.043"`, `1.796126400125e+18`).
pub fn decimal(value: &Value) -> Option<Decimal> {
    let text = text(value)?;
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// An HTTP status: `200` or `"200"` (a list such as NGINX's `"502, 200"` is its last).
pub fn status(value: &Value) -> Option<u16> {
    let text = text(value)?;
    let last = text.rsplit(',').next().unwrap_or(&text).trim();
    last.parse().ok()
}

/// Whether an upstream status field says the upstream answered: empty, `-` or `0` say it never did.
pub fn upstream_answered(value: &Value) -> bool {
    match text(value) {
        None => false,
        Some(text) => !matches!(text.as_str(), "-" | "0"),
    }
}

/// A time in Unix milliseconds: RFC 3339, NGINX's `$time_local` (`01/Dec/2026:12:00:00 +0000`), or
/// an epoch number in seconds (below 10^11), milliseconds (below 10^14), microseconds (below
/// 10^17) or nanoseconds.
pub fn epoch_ms(value: &Value) -> Option<i64> {
    if let Value::String(text) = value {
        let text = text.trim();
        if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
            return Some(time.timestamp_millis());
        }
        if let Ok(time) = chrono::DateTime::parse_from_str(text, "%d/%b/%Y:%H:%M:%S %z") {
            return Some(time.timestamp_millis());
        }
    }
    let number = decimal(value)?;
    if number.is_sign_negative() {
        return None;
    }
    let ms = if number < Decimal::from(100_000_000_000_i64) {
        number * Decimal::from(1000)
    } else if number < Decimal::from(100_000_000_000_000_i64) {
        number
    } else if number < Decimal::from(100_000_000_000_000_000_i64) {
        number / Decimal::from(1000)
    } else {
        number / Decimal::from(1_000_000)
    };
    ms.floor().to_i64()
}

/// A duration in whole milliseconds (rounded half up) from one in `unit_ms` milliseconds a unit.
pub fn duration_ms(value: &Value, unit_ms: Decimal) -> Option<i64> {
    let number = decimal(value)?;
    if number.is_sign_negative() {
        return None;
    }
    (number * unit_ms)
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
}

/// The value at a dotted path (`request.headers.x-api-key`); object keys are matched exactly
/// first, then without regard to case.
pub fn at<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(value, |value, key| field(value, key))
}

/// One key of an object, matched exactly, else without regard to case (header names).
pub fn field<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    let object = value.as_object()?;
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value)
    })
}

/// The first of these paths that holds a value that reads as text.
pub fn first_text(value: &Value, paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|path| at(value, path).and_then(text))
}

/// The path (without a query or fragment) of a URI or path.
pub fn path_of(uri: &str) -> String {
    let path = match uri.find("://") {
        Some(scheme) => {
            let rest = &uri[scheme + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        None => uri,
    };
    path.split(['?', '#']).next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_read_in_every_unit_senders_use() {
        let ms = 1_796_126_400_123;
        for value in [
            json!("2026-12-01T12:00:00.123Z"),
            json!("2026-12-01T13:00:00.123+01:00"),
            json!(1_796_126_400.123),
            json!("1796126400.123"),
            json!(1_796_126_400_123_i64),
            json!(1_796_126_400_123_000_i64),
            json!("1796126400123000000"),
            json!(1.796_126_400_123e18),
        ] {
            assert_eq!(epoch_ms(&value), Some(ms), "{value}");
        }
        assert_eq!(
            epoch_ms(&json!("01/Dec/2026:12:00:00 +0000")),
            Some(1_796_126_400_000)
        );
        for bad in [json!("yesterday"), json!(-5), json!(null), json!({})] {
            assert_eq!(epoch_ms(&bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_latencies_and_upstreams_as_written() {
        assert_eq!(status(&json!("200")), Some(200));
        assert_eq!(status(&json!(503)), Some(503));
        assert_eq!(status(&json!("502, 200")), Some(200));
        assert_eq!(status(&json!("ok")), None);
        assert_eq!(duration_ms(&json!("0.043"), Decimal::from(1000)), Some(43));
        assert_eq!(duration_ms(&json!(45.000_028), Decimal::ONE), Some(45));
        assert_eq!(duration_ms(&json!(0.0005), Decimal::from(1000)), Some(1));
        assert!(!upstream_answered(&json!("")));
        assert!(!upstream_answered(&json!("-")));
        assert!(!upstream_answered(&json!(0)));
        assert!(upstream_answered(&json!("200")));
    }

    #[test]
    fn paths_and_fields_are_found_as_senders_nest_them() {
        let entry = json!({"request": {"headers": {"X-Api-Key": ["k1"]}, "uri": "/a?b=c"}});
        assert_eq!(
            first_text(&entry, &["request.headers.x-api-key"]),
            Some("k1".to_owned())
        );
        assert_eq!(path_of("/weather/forecast?city=paris"), "/weather/forecast");
        assert_eq!(path_of("http://h:80/weather/x?y"), "/weather/x");
        assert_eq!(path_of("http://h"), "/");
    }
}
