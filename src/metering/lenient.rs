//! Reading the values senders write as they write them: a status as `200` or `"200"`, a latency as
//! `0.043` seconds or `43` milliseconds, a time as RFC 3339, NGINX's `$time_local`, or epoch
//! seconds, milliseconds, microseconds or nanoseconds (told by size). Exact: decimals, no floats.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A JSON object of a body, its members split once; each value stays the text it was sent as,
/// read only when asked for, and what is read borrows from the body.
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// The object a text holds.
    pub fn from_text(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The object a value holds, or `None` when it is not one.
    pub fn of(value: &'a RawValue) -> Option<Self> {
        value
            .get()
            .trim_start()
            .starts_with('{')
            .then(|| Self::from_text(value.get()).ok())
            .flatten()
    }

    /// Whether the object has this key, spelled exactly.
    pub fn contains(&self, key: &str) -> bool {
        self.members.iter().any(|(name, _)| name == key)
    }

    /// One member, matched exactly, else without regard to case (header names), in one pass.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        let mut folded = None;
        for (name, value) in &self.members {
            if name == key {
                return Some(value);
            }
            if folded.is_none() && name.eq_ignore_ascii_case(key) {
                folded = Some(*value);
            }
        }
        folded
    }

    /// Every member whose value reads as text, as `(name, text)`: a logged set of headers.
    pub fn texts(&self) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
        self.members
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), text(value)?)))
            .collect()
    }

    /// A member that is an object.
    pub fn object(&self, key: &str) -> Option<Object<'a>> {
        self.get(key).and_then(Object::of)
    }

    /// The value at a dotted path (`request.headers.x-api-key`), each key matched as `get` does.
    pub fn at(&self, path: &str) -> Option<&'a RawValue> {
        match path.split_once('.') {
            None => self.get(path),
            Some((first, rest)) => self.object(first)?.at(rest),
        }
    }

    /// The first of these paths that holds a value that reads as text.
    pub fn first_text(&self, paths: &[&str]) -> Option<Cow<'a, str>> {
        paths.iter().find_map(|path| self.at(path).and_then(text))
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for Object<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Members<'a> {
            type Value = Object<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'a>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(name)) = map.next_key()? {
                    members.push((name, map.next_value::<&RawValue>()?));
                }
                Ok(Object { members })
            }
        }
        deserializer.deserialize_map(Members(std::marker::PhantomData))
    }
}

/// An object key, borrowed from the body unless it has escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

/// A string value's text, unescaped (borrowed when it has no escapes).
fn string_of(json: &str) -> Option<Cow<'_, str>> {
    let inner = json.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<Key<'_>>(json).ok().map(|key| key.0)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// A value as text: a non-empty string (trimmed), a number, a boolean, or an array's first item.
pub fn text(value: &RawValue) -> Option<Cow<'_, str>> {
    let json = value.get().trim();
    match json.as_bytes().first()? {
        b'"' => match string_of(json)? {
            Cow::Borrowed(text) => {
                let text = text.trim();
                (!text.is_empty()).then_some(Cow::Borrowed(text))
            }
            Cow::Owned(text) => {
                let trimmed = text.trim();
                (!trimmed.is_empty()).then(|| Cow::Owned(trimmed.to_owned()))
            }
        },
        b'[' => serde_json::from_str::<Vec<&RawValue>>(json)
            .ok()?
            .first()
            .copied()
            .and_then(text),
        b'{' | b'n' => None,
        _ => Some(Cow::Borrowed(json)),
    }
}

/// Whether a value is a JSON string.
fn is_string(value: &RawValue) -> bool {
    value.get().trim_start().starts_with('"')
}

/// A value as an exact decimal (`1796126400.123`, `"0.043"`, `1.796126400125e+18`).
pub fn decimal(value: &RawValue) -> Option<Decimal> {
    decimal_in(&text(value)?)
}

/// A number's text as an exact decimal (`0.043`, `1.796126400125e+18`).
pub fn decimal_in(text: &str) -> Option<Decimal> {
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// An HTTP status: `200` or `"200"` (a list such as NGINX's `"502, 200"` is its last).
pub fn status(value: &RawValue) -> Option<u16> {
    status_in(&text(value)?)
}

/// An HTTP status in text: `200`, or the last of a list (`502, 200`).
pub fn status_in(text: &str) -> Option<u16> {
    let last = text.rsplit(',').next().unwrap_or(text).trim();
    last.parse().ok()
}

/// Whether an upstream status field says the upstream answered: empty, `-` or `0` say it never did.
pub fn upstream_answered(value: &RawValue) -> bool {
    match text(value) {
        None => false,
        Some(text) => !matches!(&*text, "-" | "0"),
    }
}

/// A time in Unix milliseconds: RFC 3339, NGINX's `$time_local` (`01/Dec/2026:12:00:00 +0000`), or
/// an epoch number in seconds (below 10^11), milliseconds (below 10^14), microseconds (below
/// 10^17) or nanoseconds.
pub fn epoch_ms(value: &RawValue) -> Option<i64> {
    if is_string(value) {
        let text = text(value)?;
        if let Ok(time) = chrono::DateTime::parse_from_rfc3339(&text) {
            return Some(time.timestamp_millis());
        }
        if let Ok(time) = chrono::DateTime::parse_from_str(&text, "%d/%b/%Y:%H:%M:%S %z") {
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
pub fn duration_ms(value: &RawValue, unit_ms: Decimal) -> Option<i64> {
    duration_ms_in(&text(value)?, unit_ms)
}

/// A duration's text in whole milliseconds, as `duration_ms`.
pub fn duration_ms_in(text: &str, unit_ms: Decimal) -> Option<i64> {
    let number = decimal_in(text)?;
    if number.is_sign_negative() {
        return None;
    }
    (number * unit_ms)
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
}

/// The path (without a query or fragment) of a URI or path.
pub fn path_of(uri: &str) -> &str {
    let path = match uri.find("://") {
        Some(scheme) => {
            let rest = &uri[scheme + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        None => uri,
    };
    path.split(['?', '#']).next().unwrap_or_default()
}

/// The path of a URI in text, borrowed as the text is.
pub fn path_in(uri: Cow<'_, str>) -> Cow<'_, str> {
    match uri {
        Cow::Borrowed(uri) => Cow::Borrowed(path_of(uri)),
        Cow::Owned(uri) => Cow::Owned(path_of(&uri).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn raw(value: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&value).unwrap()
    }

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
            assert_eq!(epoch_ms(&raw(value.clone())), Some(ms), "{value}");
        }
        assert_eq!(
            epoch_ms(&raw(json!("01/Dec/2026:12:00:00 +0000"))),
            Some(1_796_126_400_000)
        );
        for bad in [json!("yesterday"), json!(-5), json!(null), json!({})] {
            assert_eq!(epoch_ms(&raw(bad.clone())), None, "{bad}");
        }
    }

    #[test]
    fn statuses_latencies_and_upstreams_as_written() {
        assert_eq!(status(&raw(json!("200"))), Some(200));
        assert_eq!(status(&raw(json!(503))), Some(503));
        assert_eq!(status(&raw(json!("502, 200"))), Some(200));
        assert_eq!(status(&raw(json!("ok"))), None);
        assert_eq!(
            duration_ms(&raw(json!("0.043")), Decimal::from(1000)),
            Some(43)
        );
        assert_eq!(duration_ms(&raw(json!(45.000_028)), Decimal::ONE), Some(45));
        assert_eq!(
            duration_ms(&raw(json!(0.0005)), Decimal::from(1000)),
            Some(1)
        );
        assert!(!upstream_answered(&raw(json!(""))));
        assert!(!upstream_answered(&raw(json!("-"))));
        assert!(!upstream_answered(&raw(json!(0))));
        assert!(upstream_answered(&raw(json!("200"))));
    }

    #[test]
    fn texts_are_read_as_sent_and_unescaped() {
        assert_eq!(text(&raw(json!("  k1 "))).as_deref(), Some("k1"));
        assert_eq!(text(&raw(json!("a\"b\\c"))).as_deref(), Some("a\"b\\c"));
        assert_eq!(
            text(&raw(json!(["first", "second"]))).as_deref(),
            Some("first")
        );
        assert_eq!(text(&raw(json!(12.5))).as_deref(), Some("12.5"));
        assert_eq!(text(&raw(json!(true))).as_deref(), Some("true"));
        for nothing in [
            json!(""),
            json!("  "),
            json!(null),
            json!({"a": 1}),
            json!([]),
        ] {
            assert_eq!(text(&raw(nothing.clone())), None, "{nothing}");
        }
    }

    #[test]
    fn paths_and_fields_are_found_as_senders_nest_them() {
        let body = r#"{"request": {"headers": {"X-Api-Key": ["k1"], "x-api-key-2": "k2"}, "uri": "/a?b=c"}, "Host": "h", "host": "exact"}"#;
        let entry = Object::from_text(body).unwrap();
        assert_eq!(
            entry.first_text(&["request.headers.x-api-key"]).as_deref(),
            Some("k1")
        );
        assert_eq!(entry.get("host").and_then(text).as_deref(), Some("exact"));
        assert_eq!(entry.get("HOST").and_then(text).as_deref(), Some("h"));
        assert!(entry.contains("Host") && !entry.contains("HOST"));
        assert!(entry.object("Host").is_none());
        assert_eq!(path_of("/weather/forecast?city=paris"), "/weather/forecast");
        assert_eq!(path_of("http://h:80/weather/x?y"), "/weather/x");
        assert_eq!(path_of("http://h"), "/");
    }
}
