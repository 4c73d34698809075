//! `PATCH` of a catalog object: a JSON merge patch (RFC 7396) over the object's definition, read
//! again by the create's own rules, so an update is checked exactly as a create is.

use super::error::ApiError;
use super::extract::parse_json;
use crate::domain::FieldError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `current` with `patch` merged in: a member set to `null` goes back to its default, an object
/// merges member by member, anything else replaces. The members named in `fixed` identify the
/// object and cannot change (422 naming the member).
pub fn merged<T: Serialize + DeserializeOwned>(
    current: &T,
    patch: &[u8],
    fixed: &[&str],
) -> Result<T, ApiError> {
    let patch: Value = parse_json(patch)?;
    let Value::Object(members) = &patch else {
        return Err(ApiError::invalid_field(FieldError::new(
            "body",
            "a JSON merge patch is an object of the members to change",
        )));
    };
    let mut document = serde_json::to_value(current).map_err(|error| {
        tracing::error!(%error, "a stored definition did not serialize");
        ApiError::invalid_field(FieldError::new(
            "body",
            "the stored object cannot be patched",
        ))
    })?;
    for name in fixed {
        if let Some(value) = members.get(*name)
            && Some(value) != document.get(*name)
        {
            return Err(ApiError::invalid_field(FieldError::new(
                *name,
                format!("`{name}` identifies the object and cannot change; make a new one instead"),
            )));
        }
    }
    merge(&mut document, &patch);
    let bytes = serde_json::to_vec(&document).map_err(|error| {
        tracing::error!(%error, "a merged definition did not serialize");
        ApiError::invalid_field(FieldError::new("body", "the patch cannot be applied"))
    })?;
    parse_json(&bytes)
}

/// RFC 7396 § 2.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (name, value) in patch {
            if value.is_null() {
                target.remove(name);
            } else {
                merge(target.entry(name.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge;
    use serde_json::json;

    #[test]
    fn merges_as_rfc_7396_says() {
        // The example of RFC 7396 § 3.
        let mut target = json!({"title": "Goodbye!", "author": {"givenName": "John",
            "familyName": "Doe"}, "tags": ["example", "sample"], "content": "This will be unchanged"});
        let patch = json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890",
            "author": {"familyName": null}, "tags": ["example"]});
        merge(&mut target, &patch);
        assert_eq!(
            target,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
    }
}
