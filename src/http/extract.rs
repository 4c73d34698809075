//! Extractors that authenticate and parse, so handlers read as the happy path.

use super::AppState;
use super::error::ApiError;
use crate::domain::FieldError;
use crate::store::PageRequest;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Proof that the request carries the admin bearer token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("send the admin token as `Authorization: Bearer <token>`")
        })?;
        if !state.admin_token.verify(token) {
            return Err(ApiError::unauthorized("the admin token is not valid"));
        }
        Ok(Admin)
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Proof that the request carries a gateway key; holds the gateway's id.
pub struct GatewayCaller(pub String);

impl FromRequestParts<AppState> for GatewayCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("send a gateway key as `Authorization: Bearer <key>`")
        })?;
        let hash = crate::auth::hash_secret(key);
        let known = |state: &AppState| state.directory.view().gateway(&hash).map(str::to_owned);
        if let Some(id) = known(state) {
            return Ok(GatewayCaller(id));
        }
        // A gateway made by another replica since the last reload.
        if state.directory.reload_after_miss().await
            && let Some(id) = known(state)
        {
            return Ok(GatewayCaller(id));
        }
        Err(ApiError::unauthorized("the gateway key is not valid"))
    }
}

/// The raw body, with a too-large body answered as a JSON 413.
pub async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "unreadable_body"
            };
            ApiError::new(rejection.status(), code, rejection.body_text())
        })
}

/// A JSON body parsed into `T`: malformed JSON is a 400 naming the position, a bad value a 422
/// naming the field (`usage.bands[1].up_to`).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                ApiError::new(rejection.status(), "unreadable_body", rejection.body_text())
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON with the path of a bad value kept, so the error can name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() {
            return malformed(inner);
        }
        let field = field_path(&error.path().to_string(), &inner.to_string());
        let message = crate::domain::field::without_position(&inner.to_string()).to_owned();
        ApiError::invalid_field(FieldError::new(field, message))
    })?;
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_json",
        format!("the body is not valid JSON: {error}"),
    )
    .with_details(json!({ "line": error.line(), "column": error.column() }))
}

/// The full path of the field an error is about: a missing field is named by serde only in its
/// message, under the path of the object that lacks it.
fn field_path(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None => path.to_owned(),
    }
}

/// `?after=&limit=` of a list endpoint: `limit` from 1 to 100, 20 when absent.
pub struct Pagination(pub PageRequest);

#[derive(Deserialize)]
struct PaginationQuery {
    after: Option<String>,
    limit: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query: PaginationQuery = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string()))?;
        let limit = match query.limit {
            None => 20,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=100).contains(limit))
                .ok_or_else(|| {
                    ApiError::invalid_field(FieldError::new(
                        "limit",
                        format!("`{text}` is not a number from 1 to 100"),
                    ))
                })?,
        };
        Ok(Pagination(PageRequest {
            after: query.after,
            limit,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn field_of(body: &str) -> (StatusCode, String) {
        let error = parse_json::<Outer>(body.as_bytes()).unwrap_err();
        let field = error
            .details
            .and_then(|d| d.get("field").and_then(|f| f.as_str().map(str::to_owned)))
            .unwrap_or_default();
        (error.status, field)
    }

    #[test]
    fn errors_name_the_field_or_the_position() {
        assert_eq!(
            field_of(r#"{"inner": {"count": "x"}}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, "inner.count".into())
        );
        assert_eq!(
            field_of(r#"{"inner": {}}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, "inner.count".into())
        );
        assert_eq!(
            field_of(r#"{"inner": {"count": 1, "extra": 2}}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, "inner.extra".into())
        );
        assert_eq!(
            field_of(r#"{}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, "inner".into())
        );
        assert_eq!(field_of(r#"{"inner": "#).0, StatusCode::BAD_REQUEST);
        assert_eq!(
            field_of(r#"{"inner": {"count": 1}} trailing"#).0,
            StatusCode::BAD_REQUEST
        );
    }
}
