//! What one call or usage event gives an api's declared meters: a reading per meter it counts
//! for, keyed by the call's dimension values. The built-in `calls` and `units` are not read here;
//! they stay the record's own `billable` and `units_micros`.

use super::record::{CallRecord, Rejection};
use crate::domain::meter::{Aggregation, DimensionSpec, MeterSpec, dimensions_key, is_value};
use crate::domain::units::{MAX_UNITS_PER_RECORD, micros_from_units};
use crate::store::{ApiMetering, Reading, Readings};
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// An api's meters and dimensions as ingestion reads them.
#[derive(Debug)]
pub struct ApiMeters {
    meters: Vec<(Arc<str>, MeterSpec)>,
    dimensions: Vec<DimensionSpec>,
}

impl ApiMeters {
    /// `None` for an api that declares no meter: its records are read as they always were.
    pub fn of(metering: ApiMetering) -> Option<Self> {
        if metering.meters.is_empty() {
            return None;
        }
        Some(Self {
            meters: metering
                .meters
                .into_iter()
                .map(|m| (Arc::from(m.key.as_str()), m))
                .collect(),
            dimensions: metering.dimensions,
        })
    }

    /// The meter of this key, for a usage event.
    pub fn meter(&self, key: &str) -> Option<(&Arc<str>, &MeterSpec)> {
        self.meters
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(k, m)| (k, m))
    }
}

/// Each api's distinct values per dimension, for the `max_values` bound: read from the database
/// when the directory is, grown as records bring new values.
#[derive(Debug, Default)]
pub struct DimensionBook {
    /// By api id, then dimension: the values seen.
    seen: Mutex<HashMap<String, HashMap<String, HashSet<String>>>>,
}

impl DimensionBook {
    pub fn from_rows(rows: Vec<(String, String, String)>) -> Self {
        let mut seen: HashMap<String, HashMap<String, HashSet<String>>> = HashMap::new();
        for (api, dimension, value) in rows {
            seen.entry(api)
                .or_default()
                .entry(dimension)
                .or_default()
                .insert(value);
        }
        Self {
            seen: Mutex::new(seen),
        }
    }

    /// Takes the values of one call or event for the api's dimensions: all of them, or (past a
    /// dimension's bound) none, with an error naming it. Values seen before cost a lookup.
    fn take(&self, api: &str, values: &[(&DimensionSpec, &str)]) -> Result<(), Rejection> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut new = Vec::new();
        for (dimension, value) in values {
            let known = seen
                .get(api)
                .and_then(|dimensions| dimensions.get(dimension.key.as_str()));
            if known.is_some_and(|values| values.contains(*value)) {
                continue;
            }
            let count = known.map_or(0, HashSet::len);
            if count >= usize::try_from(dimension.max_values).unwrap_or(usize::MAX) {
                return Err(Rejection::new(
                    "dimension_limit",
                    format!(
                        "dimensions.{}: `{value}` would be value {} of this api's dimension, \
                         past its max_values of {}",
                        dimension.key,
                        count + 1,
                        dimension.max_values
                    ),
                ));
            }
            new.push((dimension, *value));
        }
        for (dimension, value) in new {
            seen.entry(api.to_owned())
                .or_default()
                .entry(dimension.key.as_str().to_owned())
                .or_default()
                .insert(value.to_owned());
        }
        Ok(())
    }
}

fn find<'r>(pairs: &'r [(Cow<'_, str>, Cow<'_, str>)], name: &str) -> Option<&'r str> {
    pairs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_ref())
}

/// A decimal value as millionths, or a rejection naming where it came from (`field`, written
/// only for a rejection).
pub fn value_micros(text: &str, field: impl FnOnce() -> String) -> Result<i64, Rejection> {
    let parsed = text
        .trim()
        .parse::<Decimal>()
        .ok()
        .and_then(micros_from_units);
    parsed.ok_or_else(|| {
        Rejection::new(
            "invalid_quantity",
            format!(
                "{}: `{text}` is not a non-negative decimal of at most \
                 {MAX_UNITS_PER_RECORD} with at most 6 decimal places",
                field()
            ),
        )
    })
}

/// The dimension values of a call or event (its `dimensions`, else the dimension's header),
/// checked against the api's bound.
pub fn dimensions_of(
    properties: &[(Cow<'_, str>, Cow<'_, str>)],
    headers: &[(Cow<'_, str>, Cow<'_, str>)],
    meters: &ApiMeters,
    api_id: &str,
    book: &DimensionBook,
) -> Result<Arc<str>, Rejection> {
    if meters.dimensions.is_empty() {
        return Ok(Arc::from("{}"));
    }
    let mut values = Vec::with_capacity(meters.dimensions.len());
    for dimension in &meters.dimensions {
        let key = dimension.key.as_str();
        let value = find(properties, key).or_else(|| {
            dimension
                .header
                .as_ref()
                .and_then(|h| find(headers, h.as_str()))
        });
        let Some(value) = value else { continue };
        if !is_value(value) {
            return Err(Rejection::new(
                "invalid_dimension",
                format!(
                    "dimensions.{key}: a dimension value is 1 to 200 characters, no control \
                     characters"
                ),
            ));
        }
        values.push((dimension, value));
    }
    book.take(api_id, &values)?;
    let mut keyed: Vec<(&str, &str)> = values.iter().map(|(d, v)| (d.key.as_str(), *v)).collect();
    keyed.sort_unstable_by_key(|(key, _)| *key);
    Ok(Arc::from(dimensions_key(keyed)))
}

/// The readings of a call for the api's meters; `billable` is the api's recording policy's word
/// on it.
pub fn read_call(
    record: &CallRecord<'_>,
    meters: &ApiMeters,
    api_id: &Arc<str>,
    billable: bool,
    book: &DimensionBook,
) -> Result<Readings, Rejection> {
    let mut list = Vec::with_capacity(meters.meters.len());
    for (key, meter) in &meters.meters {
        let counts = match &meter.filter {
            Some(filter) => filter.is_billable(
                record.status,
                record.method.as_deref(),
                record.path.as_deref(),
            ),
            None => billable,
        };
        if !counts {
            continue;
        }
        let header = meter
            .header
            .as_ref()
            .and_then(|h| Some((h.as_str(), find(&record.response_headers, h.as_str())?)));
        let (value_micros, unique) = match meter.aggregation {
            Aggregation::Count => (1_000_000, None),
            Aggregation::Sum | Aggregation::Max | Aggregation::Latest => {
                let quantity = meter
                    .quantity
                    .as_ref()
                    .and_then(|q| Some((q.as_str(), find(&record.quantities, q.as_str())?)));
                match (header, quantity) {
                    (Some((name, text)), _) => (
                        value_micros(text, || format!("response_headers.{name}"))?,
                        None,
                    ),
                    (None, Some((name, text))) => {
                        (value_micros(text, || format!("quantities.{name}"))?, None)
                    }
                    // A call that reports no value adds nothing to the meter.
                    (None, None) => continue,
                }
            }
            Aggregation::UniqueCount => {
                let property = meter
                    .property
                    .as_ref()
                    .and_then(|p| Some((p.as_str(), find(&record.properties, p.as_str())?)));
                let (field, text) = match (header, property) {
                    (Some((name, text)), _) => (format!("response_headers.{name}"), text),
                    (None, Some((name, text))) => (format!("properties.{name}"), text),
                    (None, None) => continue,
                };
                if !is_value(text) {
                    return Err(Rejection::new(
                        "invalid_property",
                        format!(
                            "{field}: a counted value is 1 to 200 characters, no control characters"
                        ),
                    ));
                }
                (1_000_000, Some(text.to_owned()))
            }
        };
        list.push(Reading {
            meter: key.clone(),
            aggregation: meter.aggregation,
            value_micros,
            unique,
        });
    }
    if list.is_empty() {
        return Ok(Readings::default());
    }
    let dimensions = dimensions_of(
        &record.properties,
        &record.response_headers,
        meters,
        api_id,
        book,
    )?;
    Ok(Readings {
        dimensions,
        list,
        api: api_id.clone(),
    })
}
