//! A parsed JSON body as a serde `Deserializer` that reads a struct from a JSON object only.
//!
//! serde's derived structs also take a JSON array of their fields in order, so through
//! `serde_json` a tier's `"quota": [null, null]` is a quota, which the OpenAPI document (and any
//! client) says is not; schemathesis sent it and got 201. Reading through this deserializer, every
//! struct of a request body, at any depth, must be an object. Everything else reads as
//! `serde_json::Value` would have it.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, Unexpected, VariantAccess, Visitor,
};
use serde::forward_to_deserialize_any;
use serde_json::{Error, Value};

/// One JSON value, read strictly.
#[derive(Clone, Copy)]
pub struct Strict<'a>(pub &'a Value);

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (None, Some(i), _) => Unexpected::Signed(i),
            (None, None, Some(f)) => Unexpected::Float(f),
            _ => Unexpected::Other("number"),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl<'de> IntoDeserializer<'de, Error> for Strict<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Strict<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(Strict));
                let read = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(read)
            }
            Value::Object(fields) => {
                let mut map =
                    MapDeserializer::new(fields.iter().map(|(k, v)| (k.as_str(), Strict(v))));
                let read = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(read)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(other), &"a JSON object")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(variant) => visitor.visit_enum(Variant {
                name: variant,
                value: None,
            }),
            Value::Object(fields) if fields.len() == 1 => {
                let Some((name, value)) = fields.iter().next() else {
                    return Err(de::Error::invalid_length(0, &"one variant"));
                };
                visitor.visit_enum(Variant {
                    name,
                    value: Some(value),
                })
            }
            other => Err(de::Error::invalid_type(
                unexpected(other),
                &"a variant name or an object of one variant",
            )),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// An externally tagged enum's variant: its name, and its content unless it is a unit variant.
struct Variant<'a> {
    name: &'a str,
    value: Option<&'a Value>,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let name = seed.deserialize(de::value::BorrowedStrDeserializer::new(self.name))?;
        Ok((name, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            None | Some(Value::Null) => Ok(()),
            Some(other) => Err(de::Error::invalid_type(
                unexpected(other),
                &"a unit variant",
            )),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        match self.value {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"a variant with a value",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Some(value) => de::Deserializer::deserialize_seq(Strict(value), visitor),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"a tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Some(value) => de::Deserializer::deserialize_struct(Strict(value), "", fields, visitor),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"a struct variant",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Strict;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Quota {
        hard_limit: Option<u64>,
        soft_limit: Option<u64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Source {
        Bearer,
        Header(String),
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        quota: Option<Quota>,
        #[serde(default)]
        sources: Vec<Source>,
    }

    fn read(json: &str) -> Result<Body, String> {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        serde_path_to_error::deserialize(Strict(&value)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_struct_is_read_from_an_object_only() {
        assert_eq!(
            read(r#"{"quota": {"hard_limit": 5}}"#).unwrap().quota,
            Some(Quota {
                hard_limit: Some(5),
                soft_limit: None
            })
        );
        let error = read(r#"{"quota": [null, null]}"#).unwrap_err();
        assert!(
            error.starts_with("quota: invalid type: sequence"),
            "{error}"
        );
        assert!(read(r#"[null, []]"#).is_err());
    }

    #[test]
    fn everything_else_reads_as_before() {
        let body =
            read(r#"{"quota": null, "sources": ["bearer", {"header": "X-Api-Key"}]}"#).unwrap();
        assert_eq!(body.quota, None);
        assert_eq!(
            body.sources,
            vec![Source::Bearer, Source::Header("X-Api-Key".into())]
        );
        let error = read(r#"{"quota": {"hard_limit": -1}}"#).unwrap_err();
        assert!(
            error.starts_with("quota.hard_limit: invalid value"),
            "{error}"
        );
        let error = read(r#"{"quota": {"hard": 1}}"#).unwrap_err();
        assert!(error.contains("unknown field `hard`"), "{error}");
        let error = read(r#"{"sources": [{"query": "k"}]}"#).unwrap_err();
        assert!(error.contains("unknown variant `query`"), "{error}");
    }
}
