//! JSON Schemas of the domain types, for the OpenAPI document. Each says in JSON Schema (ECMA-262
//! patterns) the rule its type's parse enforces, so that a client, or a fuzzer, sent the schema
//! sends what the parse takes; the tests beside each type hold the two in step.

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};

/// The characters `str::trim` takes off (Unicode White_Space), as a pattern class body.
pub const WHITESPACE: &str =
    r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// Optional surrounding whitespace, as the decimal parse trims it.
pub fn trimmed(body: &str) -> String {
    format!("^[{WHITESPACE}]*(?:{body})[{WHITESPACE}]*$")
}

/// A string of this pattern and length, with one line of description and an example.
pub fn string(
    pattern: &str,
    length: Option<(usize, usize)>,
    description: &str,
    example: &str,
) -> ObjectBuilder {
    let builder = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example]);
    match length {
        Some((min, max)) => builder.min_length(Some(min)).max_length(Some(max)),
        None => builder,
    }
}

/// A string in one of these exact forms.
pub fn one_of_strings(values: &[&str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .into()
}

/// An RFC 3339 time in UTC, as every answer writes its times.
pub fn timestamp() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .into()
}

#[cfg(test)]
pub mod testing {
    //! Holds a pattern and its parse in step: every sample the parse takes matches, every one it
    //! refuses does not.

    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    /// The schema's `pattern`, `minLength` and `maxLength` as one check on a string.
    pub fn accepts(schema: &RefOr<Schema>, text: &str) -> bool {
        let value = serde_json::to_value(schema).expect("a schema serializes");
        let length = text.chars().count();
        let min = value["minLength"].as_u64().unwrap_or(0);
        let max = value["maxLength"].as_u64().unwrap_or(u64::MAX);
        let within = u64::try_from(length).is_ok_and(|n| n >= min && n <= max);
        let pattern = value["pattern"].as_str().expect("a pattern");
        let regex = fancy_regex::Regex::new(pattern).expect("the pattern compiles");
        within && regex.is_match(text).expect("the pattern runs")
    }

    /// Asserts that the schema takes exactly the samples that `parse` takes.
    pub fn assert_agrees(schema: &RefOr<Schema>, parse: impl Fn(&str) -> bool, samples: &[&str]) {
        for sample in samples {
            assert_eq!(
                accepts(schema, sample),
                parse(sample),
                "schema and parse disagree on {sample:?}"
            );
        }
    }
}
