//! The OpenAPI 3.1 document of the whole HTTP API, made from the handlers' own annotations and the
//! types they take and answer, and `GET /openapi.json` that serves it. The refusals every
//! operation shares (a bad body, query or path; no token; a long URI) are added here from the
//! operation's shape, so that no operation can forget one.

use super::error::ErrorBody;
use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::{Map, Value};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

/// The bearer scheme of the admin API.
pub const ADMIN: &str = "admin_token";
/// The bearer scheme of the gateway endpoints.
pub const GATEWAY: &str = "gateway_key";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tollbooth",
        description = "A Stripe-integrated API monetization sidecar. JSON in and out; every refusal is \
`{\"error\": {\"code\", \"message\", \"details\"}}`. A method an endpoint does not answer is a 405 \
`method_not_allowed` (with `Allow`), a path no endpoint has a 404 `no_route`, on every path.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(
        ErrorBody,
        super::extract::KeyOrId,
        crate::domain::money::Amount,
        crate::domain::subscription::ConsumerKey,
        crate::domain::tier::Band,
    )),
    tags(
        (name = "catalog", description = "Apis, tiers, subscribers, subscriptions and gateways (admin)"),
        (name = "metering", description = "Call records in, usage out"),
        (name = "access", description = "The gateway's access decision"),
        (name = "billing", description = "Invoice previews and billing runs (admin)"),
        (name = "stripe", description = "Stripe webhooks"),
        (name = "notifications", description = "Notifications to the provider and their delivery (admin)"),
        (name = "ops", description = "Health, readiness, metrics and this document"),
    )
)]
struct Base;

/// The document's frame: info, tags, the shared schemas, the security schemes and the shared
/// refusals. The routes add their operations to it.
pub fn base() -> OpenApi {
    let mut doc = <Base as utoipa::OpenApi>::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    let bearer = |description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build(),
        )
    };
    components.add_security_scheme(
        ADMIN,
        bearer("The admin token: `TOLLBOOTH_ADMIN_TOKEN`, or the one printed at first start."),
    );
    components.add_security_scheme(
        GATEWAY,
        bearer("A gateway key, answered once by `POST /v1/gateways`."),
    );
    for refusal in Refusal::ALL {
        components
            .responses
            .insert(refusal.name().to_owned(), RefOr::T(refusal.response()));
    }
    doc
}

/// A refusal that many operations share, kept once under `components.responses`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadRequest,
    Unauthorized,
    MethodNotAllowed,
    BodyTimeout,
    PayloadTooLarge,
    UriTooLong,
    InvalidField,
    Internal,
}

impl Refusal {
    const ALL: [Refusal; 8] = [
        Refusal::BadRequest,
        Refusal::Unauthorized,
        Refusal::MethodNotAllowed,
        Refusal::BodyTimeout,
        Refusal::PayloadTooLarge,
        Refusal::UriTooLong,
        Refusal::InvalidField,
        Refusal::Internal,
    ];

    fn name(self) -> &'static str {
        match self {
            Refusal::BadRequest => "BadRequest",
            Refusal::Unauthorized => "Unauthorized",
            Refusal::MethodNotAllowed => "MethodNotAllowed",
            Refusal::BodyTimeout => "BodyTimeout",
            Refusal::PayloadTooLarge => "PayloadTooLarge",
            Refusal::UriTooLong => "UriTooLong",
            Refusal::InvalidField => "InvalidField",
            Refusal::Internal => "InternalError",
        }
    }

    fn status(self) -> &'static str {
        match self {
            Refusal::BadRequest => "400",
            Refusal::Unauthorized => "401",
            Refusal::MethodNotAllowed => "405",
            Refusal::BodyTimeout => "408",
            Refusal::PayloadTooLarge => "413",
            Refusal::UriTooLong => "414",
            Refusal::InvalidField => "422",
            Refusal::Internal => "500",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Refusal::BadRequest => {
                "`malformed_json`: the body is not JSON (`details.line`, `details.column`); \
                 `invalid_query`: a query parameter given twice or of the wrong form \
                 (`details.field`); `invalid_path`: a path that is not UTF-8; `empty_body`: \
                 `POST /v1/events` with no record at all"
            }
            Refusal::Unauthorized => "`unauthorized`: no or a wrong admin token / gateway key",
            Refusal::MethodNotAllowed => {
                "`method_not_allowed`: the endpoint does not answer that method (any path)"
            }
            Refusal::BodyTimeout => {
                "`body_timeout`: the body stopped arriving for longer than the body read timeout"
            }
            Refusal::PayloadTooLarge => "`payload_too_large`: a body over the limit",
            Refusal::UriTooLong => "`uri_too_long`: a path and query over 8 KiB",
            Refusal::InvalidField => {
                "`invalid_field`: a bad value, named in `details.field` (also text holding NUL, \
                 in the body, the query or the path)"
            }
            Refusal::Internal => {
                "`internal_error`: tollbooth could not complete the request; the failure is in \
                 its log"
            }
        }
    }

    fn response(self) -> Response {
        error_response(self.description())
    }
}

/// An answer carrying the error body.
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
}

/// Completes the document the routes made: each operation gets the shared refusals its shape
/// can meet, and the objects that serde flattens are written as the one object they answer.
pub fn finish(mut doc: OpenApi) -> Value {
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_refusals(operation);
        }
    }
    // The document is made from static annotations: it always serializes.
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let named = doc["components"]["schemas"].clone();
    flatten_all_of(&mut doc, &named);
    doc
}

fn add_refusals(operation: &mut Operation) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_query = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let has_path = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let has_body = operation.request_body.is_some();
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let mut shared = vec![Refusal::UriTooLong];
    if has_body || has_query || has_path {
        shared.extend([Refusal::BadRequest, Refusal::InvalidField]);
    }
    if has_body {
        shared.extend([Refusal::BodyTimeout, Refusal::PayloadTooLarge]);
    }
    if secured {
        shared.extend([Refusal::Unauthorized, Refusal::Internal]);
    }
    for refusal in shared {
        operation
            .responses
            .responses
            .entry(refusal.status().to_owned())
            .or_insert_with(|| {
                RefOr::Ref(Ref::new(format!(
                    "#/components/responses/{}",
                    refusal.name()
                )))
            });
    }
}

/// `#[serde(flatten)]` gives `allOf` of objects; a spec that refuses unknown fields would then
/// refuse the row's own fields. Wherever it appears, such an `allOf` becomes one object with the
/// properties of all its parts (named parts looked up in `named`).
fn flatten_all_of(value: &mut Value, named: &Value) {
    match value {
        Value::Object(fields) => {
            if let Some(merged) = merged_object(fields, named) {
                *fields = merged;
            }
            for field in fields.values_mut() {
                flatten_all_of(field, named);
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten_all_of(item, named);
            }
        }
        _ => {}
    }
}

/// The one object an `allOf` of objects stands for; `None` when `schema` is not such an `allOf`.
fn merged_object(schema: &Map<String, Value>, named: &Value) -> Option<Map<String, Value>> {
    let parts = schema.get("allOf")?.as_array()?;
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(reference) => named.get(reference.strip_prefix("#/components/schemas/")?)?,
            None => part,
        };
        let part = part.as_object()?;
        let part = match merged_object(part, named) {
            Some(merged) => merged,
            None => part.clone(),
        };
        if part.get("type").and_then(Value::as_str) != Some("object") {
            return None;
        }
        if let Some(Value::Object(own)) = part.get("properties") {
            properties.extend(own.clone());
        }
        if let Some(Value::Array(own)) = part.get("required") {
            required.extend(own.iter().cloned());
        }
    }
    let mut merged = Map::new();
    merged.insert("type".into(), "object".into());
    if let Some(description) = schema.get("description") {
        merged.insert("description".into(), description.clone());
    }
    merged.insert("required".into(), Value::Array(required));
    merged.insert("properties".into(), Value::Object(properties));
    Some(merged)
}

/// The document, rendered once.
#[derive(Clone)]
pub struct Document(pub Bytes);

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    operation_id = "openapi_document",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub async fn document(Extension(document): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document.0)
}
