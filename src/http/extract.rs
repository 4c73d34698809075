//! Extractors that authenticate and parse, so handlers read as the happy path.

use super::AppState;
use super::error::ApiError;
use crate::domain::FieldError;
use crate::domain::text::has_unstorable;
use crate::metering::directory::GatewayEntry;
use crate::store::PageRequest;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::marker::PhantomData;

/// Proof that the request carries the admin bearer token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("send the admin token as `Authorization: Bearer <token>`")
        })?;
        if !state.admin_token.verify(token).await? {
            return Err(ApiError::unauthorized("the admin token is not valid"));
        }
        Ok(Admin)
    }
}

pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Proof that the request carries a gateway key: the gateway as the hot paths know it.
pub struct GatewayCaller(pub GatewayEntry);

impl FromRequestParts<AppState> for GatewayCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("send a gateway key as `Authorization: Bearer <key>`")
        })?;
        known_gateway(state, key)
            .await
            .map(GatewayCaller)
            .ok_or_else(|| ApiError::unauthorized("the gateway key is not valid"))
    }
}

/// Proof that the request carries a gateway key or the admin token.
pub struct GatewayOrAdmin;

impl FromRequestParts<AppState> for GatewayOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "send a gateway key or the admin token as `Authorization: Bearer <key>`",
            )
        })?;
        if known_gateway(state, token).await.is_some() || state.admin_token.verify(token).await? {
            return Ok(GatewayOrAdmin);
        }
        Err(ApiError::unauthorized(
            "the key is neither a gateway key nor the admin token",
        ))
    }
}

/// The gateway whose key this is, if any; a miss reads the catalog changes once (a gateway made
/// by another replica since the last catch-up).
pub(super) async fn known_gateway(state: &AppState, key: &str) -> Option<GatewayEntry> {
    let hash = crate::auth::hash_secret(key);
    let known = |state: &AppState| state.directory.view().gateway(&hash).cloned();
    if let Some(gateway) = known(state) {
        return Some(gateway);
    }
    if state.directory.reload_after_miss().await {
        return known(state);
    }
    None
}

/// The raw body: a too-large body is a JSON 413, one that stalled past the body read timeout a
/// JSON 408.
pub async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if timed_out(&rejection) {
                return ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body stopped arriving before it was complete",
                );
            }
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "unreadable_body"
            };
            ApiError::new(rejection.status(), code, rejection.body_text())
        })
}

/// Whether reading the body failed on the body read timeout.
fn timed_out(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A JSON body parsed into `T`: malformed JSON is a 400 naming the position, a bad value a 422
/// naming the field (`usage.bands[1].up_to`).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The body as sent, bounded and timed as every body is (a JSON 413 or 408).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        body_bytes(request, state).await.map(RawBody)
    }
}

/// A JSON body that may be left out: an empty body reads as `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

/// Parses JSON with the path of a bad value kept, so the error can name the field. Text that a
/// database cannot store (NUL) is refused here, naming the field, on either database.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(field) = unstorable_json_field(bytes) {
        return Err(unstorable(&field));
    }
    let invalid = |error: serde_path_to_error::Error<serde_json::Error>| {
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() {
            return malformed(inner);
        }
        let field = field_path(&error.path().to_string(), &inner.to_string());
        let message = crate::domain::field::without_position(&inner.to_string()).to_owned();
        ApiError::invalid_field(FieldError::new(field, message))
    };
    // Read as it streams first: only that sees a key given twice (a parsed value keeps one).
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let _: T = serde_path_to_error::deserialize(&mut deserializer).map_err(invalid)?;
    deserializer.end().map_err(|e| malformed(&e))?;
    // Then strictly: a struct only from an object (`strict`).
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
    serde_path_to_error::deserialize(super::strict::Strict(&json)).map_err(invalid)
}

/// The path of the first JSON string (key or value) holding a NUL, if the body has one.
fn unstorable_json_field(bytes: &[u8]) -> Option<String> {
    // Valid JSON can only carry a NUL as the escape `\u0000`: look further only when it is there.
    if !bytes.windows(6).any(|w| w == br"\u0000") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    fn walk(value: &serde_json::Value, path: &str) -> Option<String> {
        match value {
            serde_json::Value::String(text) if has_unstorable(text) => Some(path.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(item, &format!("{path}[{i}]"))),
            serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
                let field = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if has_unstorable(key) {
                    Some(field)
                } else {
                    walk(item, &field)
                }
            }),
            _ => None,
        }
    }
    walk(&value, "")
}

/// A 422 for text that holds a character no database here stores.
fn unstorable(field: &str) -> ApiError {
    ApiError::invalid_field(FieldError::new(
        field,
        "must not hold a NUL character (U+0000)",
    ))
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
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None => path.to_owned(),
    }
}

/// Query parameters parsed into `T`: a refusal is a JSON 400 naming the parameter (a duplicate,
/// a bad value), a value no database can store a 422 naming it.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| has_unstorable(name) || has_unstorable(value))
    {
        return Err(unstorable(&name));
    }
    serde_urlencoded::from_str(query).map_err(|error| {
        let message = error.to_string();
        let field = message.split('`').nth(1).unwrap_or_default().to_owned();
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
            .with_details(json!({ "field": field }))
    })
}

/// Path parameters parsed into `T`: a refusal (bytes that are not UTF-8, a bad value) is a JSON
/// 400, text no database can store a 422 naming the parameter.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let invalid =
            |status: StatusCode, message: String| ApiError::new(status, "invalid_path", message);
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| invalid(rejection.status(), rejection.body_text()))?;
        if let Some((name, _)) = raw.iter().find(|(_, value)| has_unstorable(value)) {
            return Err(unstorable(name));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| invalid(rejection.status(), rejection.body_text()))
    }
}

/// A path segment that names a row: tollbooth's id or the row's key. Any text but NUL; a name
/// that is neither is a 404.
pub struct KeyOrId;

impl utoipa::PartialSchema for KeyOrId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::domain::schema::string(
            crate::domain::text::STORABLE_PATTERN,
            Some((1, usize::MAX)),
            "tollbooth's id, or the row's slug / external_id",
            "acme-weather",
        )
        .into()
    }
}

impl utoipa::ToSchema for KeyOrId {}

/// Any query text but NUL, as the query extractor takes it.
pub fn storable_text() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(crate::domain::text::STORABLE_PATTERN))
        .build()
}

/// `?archived=true`: a list's archived rows instead of its live ones.
pub struct Archived(pub bool);

#[derive(Deserialize)]
struct ArchivedQuery {
    archived: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Archived {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query: ArchivedQuery = parse_query(parts.uri.query().unwrap_or(""))?;
        match query.archived.as_deref() {
            None | Some("false") => Ok(Archived(false)),
            Some("true") => Ok(Archived(true)),
            Some(other) => Err(ApiError::invalid_field(FieldError::new(
                "archived",
                format!("`{other}` is not `true` or `false`"),
            ))),
        }
    }
}

/// `?archived=` of a list of rows that can be archived, as documented.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ArchivedParams {
    /// `true`: the archived rows (`DELETE`d) instead of the live ones.
    archived: Option<bool>,
}

/// `?after=&limit=` of a list ordered by id, as documented.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// The `next_after` of the previous page.
    #[param(pattern = "^[a-z]+_[0-9a-f]{32}$")]
    after: Option<String>,
    /// How many items, 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// `?after=&limit=` of a list ordered by day, as documented.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DayPageParams {
    /// The `next_after` of the previous page (`YYYY-MM-DD`).
    #[param(format = Date)]
    after: Option<String>,
    /// How many items, 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// What an `after` cursor of a list must look like.
pub trait Cursor {
    /// Why `text` cannot be a cursor of this list, if it cannot.
    fn refuse(text: &str) -> Option<String>;
}

/// The cursor of lists ordered by tollbooth id.
pub struct IdCursor;

impl Cursor for IdCursor {
    fn refuse(text: &str) -> Option<String> {
        (!crate::domain::ids::looks_like_id(text))
            .then(|| format!("`{text}` is not an id from this list's `next_after`"))
    }
}

/// The cursor of lists ordered by day (`YYYY-MM-DD`).
pub struct DayCursor;

impl Cursor for DayCursor {
    fn refuse(text: &str) -> Option<String> {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .is_err()
            .then(|| format!("`{text}` is not a day (YYYY-MM-DD) from this list's `next_after`"))
    }
}

/// `?after=&limit=` of a list endpoint: `after` a cursor the list gave, `limit` from 1 to 100,
/// 20 when absent.
pub struct Pagination<C = IdCursor>(pub PageRequest, pub PhantomData<C>);

#[derive(Deserialize)]
struct PaginationQuery {
    after: Option<String>,
    limit: Option<String>,
}

impl<C: Cursor, S: Send + Sync> FromRequestParts<S> for Pagination<C> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query: PaginationQuery = parse_query(parts.uri.query().unwrap_or(""))?;
        if let Some(reason) = query.after.as_deref().and_then(C::refuse) {
            return Err(ApiError::invalid_field(FieldError::new("after", reason)));
        }
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
        Ok(Pagination(
            PageRequest {
                after: query.after,
                limit,
            },
            PhantomData,
        ))
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
