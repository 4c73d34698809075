//! Envoy's gRPC `ext_authz` (`envoy.service.auth.v3.Authorization/Check`, with Envoy's own
//! messages from `envoy-types`): the access decision of the forward-auth form, carried in gRPC.
//!
//! A `CheckRequest` is read as the HTTP request Envoy's HTTP `ext_authz` would have sent: the
//! caller's method, `/v1/authorize` + the caller's path and query, the caller's headers. What the
//! caller cannot choose comes from Envoy's configuration only: the gateway's key from the gRPC
//! call's metadata (`x-tollbooth-key`, the `grpc_service`'s `initial_metadata`), the api from the
//! route's `context_extensions` (`api`, read as the auth path, `"api_from": "auth_path"`). The
//! caller's own `X-Tollbooth-*` headers are dropped before anything is read.

use super::AppState;
use super::authorize;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// The gRPC service; serve it with `tonic`.
pub fn service(state: AppState) -> AuthorizationServer<ExtAuthz> {
    AuthorizationServer::new(ExtAuthz { state })
}

pub struct ExtAuthz {
    state: AppState,
}

/// Where Envoy puts the gateway's key (gRPC metadata) and the api (`context_extensions`).
const GATEWAY_KEY: &str = "x-tollbooth-key";
const API_EXTENSION: &str = "api";

/// Headers the caller's request may not bring into the decision.
const OURS: &str = "x-tollbooth-";

/// What an allowed call passes upstream, and what it tells the caller.
const TO_UPSTREAM: [&str; 3] = [
    "x-tollbooth-subscription",
    "x-tollbooth-tier",
    "x-tollbooth-remaining",
];
const TO_CALLER: [&str; 7] = [
    "content-type",
    "retry-after",
    "x-tollbooth-reason",
    "x-tollbooth-status",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
];

/// Largest answer body read back into a `CheckResponse` (tollbooth's own are a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let key = request
            .metadata()
            .get(GATEWAY_KEY)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                tonic::Status::unauthenticated(
                    "send the gateway key as `x-tollbooth-key` in the grpc_service's \
                     initial_metadata",
                )
            })?;
        let (uri, headers) = as_forward_auth(&request.into_inner(), &key);
        let answer = authorize::decide(&self.state, &uri, &headers)
            .await
            .unwrap_or_else(IntoResponse::into_response);
        Ok(tonic::Response::new(check_response(answer).await))
    }
}

/// The forward-auth request Envoy's HTTP form would have sent for this check.
fn as_forward_auth(check: &CheckRequest, key: &str) -> (Uri, HeaderMap) {
    let attributes = check.attributes.as_ref();
    let http = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let mut prefix = "/v1/authorize".to_owned();
    if let Some(api) = attributes.and_then(|a| a.context_extensions.get(API_EXTENSION)) {
        prefix = format!("{prefix}/{}", utf8_percent_encode(api, NON_ALPHANUMERIC));
    }
    let path = http.map_or("", |h| h.path.as_str());
    let path = if path.starts_with('/') { path } else { "/" };
    // A path no URI can hold (Envoy has checked it already) is asked as the root.
    let uri = format!("{prefix}{path}")
        .parse()
        .unwrap_or_else(|_| Uri::from_maybe_shared(format!("{prefix}/")).unwrap_or_default());
    let mut headers = HeaderMap::new();
    for (name, value) in http.into_iter().flat_map(|h| h.headers.iter()) {
        if name.starts_with(':') || name.to_ascii_lowercase().starts_with(OURS) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(host) = http
        .map(|h| h.host.as_str())
        .filter(|host| !host.is_empty())
        .and_then(|host| HeaderValue::from_str(host).ok())
    {
        headers.insert(axum::http::header::HOST, host);
    }
    if let Ok(key) = HeaderValue::from_str(key) {
        headers.insert(HeaderName::from_static(GATEWAY_KEY), key);
    }
    (uri, headers)
}

/// The forward-auth answer as Envoy's `CheckResponse`: an allowed call goes on with the
/// subscription and tier (a caller's own copies of those headers removed) and the caller sees the
/// `RateLimit-*` fields; a refusal is answered to the caller with tollbooth's status, headers and
/// JSON body.
async fn check_response(answer: Response) -> CheckResponse {
    let (parts, body) = answer.into_parts();
    let (status, headers) = (parts.status, parts.headers);
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut response = CheckResponse::new();
    if status == StatusCode::OK {
        let mut ok = OkHttpResponseBuilder::new();
        for name in TO_UPSTREAM {
            match text(name) {
                Some(value) => ok.add_header(
                    name,
                    value,
                    Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                    false,
                ),
                None => ok.remove_header(name),
            };
        }
        for name in TO_CALLER
            .iter()
            .filter(|name| name.starts_with("ratelimit-"))
        {
            if let Some(value) = text(name) {
                ok.add_response_header(*name, value, None, false);
            }
        }
        response.set_status(tonic::Status::ok("allowed"));
        response.set_http_response(ok);
        return response;
    }
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let mut denied = DeniedHttpResponseBuilder::new();
    denied.set_http_status(
        HttpStatusCode::try_from(i32::from(status.as_u16())).unwrap_or(HttpStatusCode::Forbidden),
    );
    for name in TO_CALLER {
        if let Some(value) = text(name) {
            denied.add_header(name, value, None, false);
        }
    }
    denied.set_body(String::from_utf8_lossy(&body));
    response.set_status(match status {
        StatusCode::UNAUTHORIZED => tonic::Status::unauthenticated("refused"),
        StatusCode::TOO_MANY_REQUESTS => tonic::Status::resource_exhausted("refused"),
        StatusCode::BAD_REQUEST => tonic::Status::invalid_argument("refused"),
        _ => tonic::Status::permission_denied("refused"),
    });
    response.set_http_response(denied);
    response
}
