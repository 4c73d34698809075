//! Meters and dimensions of an api: the quantities it measures besides its billable calls (tokens,
//! records processed, peak jobs, distinct end users) and the properties its usage is grouped and
//! priced by (`model`, `region`).
//!
//! Every api has two built-in meters that need no declaring: `calls` (its billable calls) and
//! `units` (their units: the `units_header` or the record's `units`, else one per call). A tier's
//! `usage` block prices `units`, as it always has.

use super::FieldError;
use super::ids::Key;
use super::policy::{HeaderName, RecordingPolicy};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The meters every api has without declaring them.
pub const BUILT_IN_METERS: [&str; 2] = ["calls", "units"];

/// At most this many meters, and this many dimensions, on one api.
pub const MAX_METERS: usize = 16;
pub const MAX_DIMENSIONS: usize = 4;

/// The most distinct values a dimension may take on one api, and its default bound.
pub const MAX_DIMENSION_VALUES: u32 = 10_000;
const DEFAULT_DIMENSION_VALUES: u32 = 100;

/// The longest dimension value or unique-count property, in bytes.
pub const MAX_VALUE_LEN: usize = 200;

/// How a meter folds the values of a period into one quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// How many calls or events it took.
    Count,
    /// The sum of their values.
    Sum,
    /// The largest value.
    Max,
    /// The value of the latest call or event.
    Latest,
    /// How many distinct values, over the whole billing period.
    UniqueCount,
}

impl Aggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Max => "max",
            Self::Latest => "latest",
            Self::UniqueCount => "unique_count",
        }
    }

    /// The aggregation a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "max" => Self::Max,
            "latest" => Self::Latest,
            "unique_count" => Self::UniqueCount,
            _ => return None,
        })
    }
}

/// One meter of an api, as the provider writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterSpec {
    /// The meter's name, unique on its api; `calls` and `units` are the built-in meters.
    pub key: Key,
    pub aggregation: Aggregation,
    /// The record's quantity of this name (`"quantities": {"input_tokens": "1200"}`), or a
    /// usage event's value. For `sum`, `max` and `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Key>,
    /// A response header holding the value (`x-usage-input-tokens`); read before `quantity`.
    /// For `unique_count` the header's text is the value counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderName>,
    /// For `unique_count`: the record's property of this name (`"properties": {"end_user":
    /// "u-17"}`, or `dimensions`), or a usage event's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<Key>,
    /// Which calls it counts, in the recording policy's terms. Unset: the calls the api's
    /// recording policy bills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<RecordingPolicy>,
}

/// One dimension of an api: a property of its calls its usage is kept and priced by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DimensionSpec {
    /// The dimension's name: the record's `dimensions` entry of this name holds its value.
    pub key: Key,
    /// A response header holding the value when the record's `dimensions` do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderName>,
    /// The most distinct values it may take on this api; a record with one more is refused.
    #[serde(default = "default_max_values")]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_values: u32,
}

fn default_max_values() -> u32 {
    DEFAULT_DIMENSION_VALUES
}

/// Checks an api's meters and dimensions.
pub fn validate(meters: &[MeterSpec], dimensions: &[DimensionSpec]) -> Result<(), FieldError> {
    if meters.len() > MAX_METERS {
        return Err(FieldError::new(
            "meters",
            format!("at most {MAX_METERS} meters"),
        ));
    }
    if dimensions.len() > MAX_DIMENSIONS {
        return Err(FieldError::new(
            "dimensions",
            format!("at most {MAX_DIMENSIONS} dimensions"),
        ));
    }
    let mut keys = HashSet::new();
    for (i, meter) in meters.iter().enumerate() {
        let at = |field: &str| format!("meters[{i}].{field}");
        let key = meter.key.as_str();
        if BUILT_IN_METERS.contains(&key) {
            return Err(FieldError::new(
                at("key"),
                format!("`{key}` is a built-in meter of every api; choose another key"),
            ));
        }
        if !keys.insert(key) {
            return Err(FieldError::new(
                at("key"),
                format!("`{key}` is declared twice"),
            ));
        }
        let refuse = |field: &str, present: bool, why: &str| {
            if present {
                Err(FieldError::new(at(field), why.to_owned()))
            } else {
                Ok(())
            }
        };
        match meter.aggregation {
            Aggregation::Count => {
                let why = "a count meter counts calls and events; it reads no value";
                refuse("quantity", meter.quantity.is_some(), why)?;
                refuse("header", meter.header.is_some(), why)?;
                refuse("property", meter.property.is_some(), why)?;
            }
            Aggregation::Sum | Aggregation::Max | Aggregation::Latest => {
                refuse(
                    "property",
                    meter.property.is_some(),
                    "only a unique_count meter reads a property",
                )?;
                if meter.quantity.is_none() && meter.header.is_none() {
                    return Err(FieldError::new(
                        at("quantity"),
                        "a sum, max or latest meter reads a record's quantity or a response header",
                    ));
                }
            }
            Aggregation::UniqueCount => {
                refuse(
                    "quantity",
                    meter.quantity.is_some(),
                    "a unique_count meter counts a property's distinct values",
                )?;
                if meter.property.is_none() && meter.header.is_none() {
                    return Err(FieldError::new(
                        at("property"),
                        "a unique_count meter reads a record's property or a response header",
                    ));
                }
            }
        }
        if let Some(filter) = &meter.filter
            && filter.units_header.is_some()
        {
            return Err(FieldError::new(
                at("filter.units_header"),
                "a filter says which calls count; a meter's value comes from `quantity` or `header`",
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, dimension) in dimensions.iter().enumerate() {
        if !names.insert(dimension.key.as_str()) {
            return Err(FieldError::new(
                format!("dimensions[{i}].key"),
                format!("`{}` is declared twice", dimension.key),
            ));
        }
        if !(1..=MAX_DIMENSION_VALUES).contains(&dimension.max_values) {
            return Err(FieldError::new(
                format!("dimensions[{i}].max_values"),
                format!("from 1 to {MAX_DIMENSION_VALUES}"),
            ));
        }
    }
    Ok(())
}

/// Whether `text` may be a dimension value or a counted property: 1 to 200 bytes, no control
/// characters.
pub fn is_value(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_VALUE_LEN && !text.chars().any(char::is_control)
}

/// The dimensions of one call or event as stored: `{"model":"large"}` with the api's
/// dimensions in key order, `{}` with none. One text per set of values, so the aggregation
/// table keys rows by it. `values` must be in key order, each key once.
pub fn dimensions_key<'a>(values: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut key = String::with_capacity(48);
    key.push('{');
    for (i, (name, value)) in values.into_iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        push_json_string(&mut key, name);
        key.push(':');
        push_json_string(&mut key, value);
    }
    key.push('}');
    key
}

/// `text` as a JSON string, escaped as serde_json writes it.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The values of a stored dimensions key, in key order.
pub fn dimension_values(key: &str) -> Vec<(String, String)> {
    serde_json::from_str::<std::collections::BTreeMap<String, String>>(key)
        .map(|map| map.into_iter().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meters(value: serde_json::Value) -> Result<(), FieldError> {
        let meters: Vec<MeterSpec> = serde_json::from_value(value).unwrap();
        validate(&meters, &[])
    }

    #[test]
    fn a_meter_reads_what_its_aggregation_needs() {
        assert!(
            meters(json!([
                {"key": "input_tokens", "aggregation": "sum", "header": "X-Usage-Input-Tokens", "quantity": "input_tokens"},
                {"key": "jobs", "aggregation": "max", "quantity": "jobs"},
                {"key": "users", "aggregation": "unique_count", "property": "end_user"},
                {"key": "searches", "aggregation": "count", "filter": {"path_prefixes": ["/search"]}}
            ]))
            .is_ok()
        );
        for (bad, field) in [
            (
                json!([{"key": "calls", "aggregation": "count"}]),
                "meters[0].key",
            ),
            (
                json!([{"key": "t", "aggregation": "sum"}]),
                "meters[0].quantity",
            ),
            (
                json!([{"key": "t", "aggregation": "count", "quantity": "t"}]),
                "meters[0].quantity",
            ),
            (
                json!([{"key": "u", "aggregation": "unique_count"}]),
                "meters[0].property",
            ),
            (
                json!([{"key": "t", "aggregation": "count"}, {"key": "t", "aggregation": "count"}]),
                "meters[1].key",
            ),
            (
                json!([{"key": "t", "aggregation": "count", "filter": {"units_header": "x-u"}}]),
                "meters[0].filter.units_header",
            ),
        ] {
            assert_eq!(meters(bad.clone()).unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn a_dimensions_key_is_one_text_per_set_of_values() {
        assert_eq!(
            dimensions_key([("model", "large"), ("region", "eu")]),
            r#"{"model":"large","region":"eu"}"#
        );
        let odd = "quote \" back \\ line\n";
        assert_eq!(
            dimensions_key([("model", odd)]),
            serde_json::to_string(&std::collections::BTreeMap::from([("model", odd)])).unwrap()
        );
        assert_eq!(
            dimension_values(&dimensions_key([("model", odd)]))[0].1,
            odd
        );
        assert_eq!(dimensions_key([]), "{}");
        assert_eq!(
            dimension_values(r#"{"model":"large"}"#),
            vec![("model".to_owned(), "large".to_owned())]
        );
    }
}
