//! Envoy's gRPC `ext_authz`, asked by a client built from Envoy's own proto (`envoy-types`) as
//! Envoy asks: the caller's request in `attributes.request.http`, the api in the route's
//! `context_extensions`, the gateway key in the call's metadata.

use crate::forward_auth::{gateway, setting, two_apis};
use crate::helpers::{TestApp, on_both_databases, spawn_replica};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use serde_json::{Value, json};
use std::collections::HashMap;

on_both_databases!(envoy_grpc_check_answers_as_tollbooth_decides);

/// gRPC status codes (google.rpc.Code).
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAUTHENTICATED: i32 = 16;

async fn envoy_grpc_check_answers_as_tollbooth_decides(app: TestApp) {
    // What the shipped recipe sends: the key's metadata name, the api's context extension.
    let recipe = "envoy/envoy-grpc.yaml";
    assert_eq!(setting(recipe, "- key:"), "x-tollbooth-key");
    assert_eq!(setting(recipe, "value:"), "tbg_YOUR_GATEWAY_KEY");
    assert_eq!(setting(recipe, "api:"), "weather");
    two_apis(&app, Some(2)).await;
    let key = gateway(&app, "envoy-grpc", json!({"api_from": "auth_path"})).await;
    let server = spawn_replica(&app, |settings| {
        settings.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut client = AuthorizationClient::connect(server.grpc_address.clone().unwrap())
        .await
        .unwrap();

    // Allowed: the subscription and tier go upstream, a caller's own copy of them is replaced.
    let answer = check(&mut client, &key, "k1", &[("x-tollbooth-tier", "forged")]).await;
    assert_eq!(answer.status.as_ref().unwrap().code, OK, "{answer:?}");
    let Some(HttpResponse::OkResponse(ok)) = &answer.http_response else {
        panic!("{answer:?}")
    };
    let upstream: HashMap<_, _> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(upstream["x-tollbooth-tier"], "weather-pro");
    assert!(
        upstream.contains_key("x-tollbooth-subscription"),
        "{upstream:?}"
    );
    let caller: Vec<_> = ok
        .response_headers_to_add
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert!(caller.contains(&("ratelimit-remaining", "1")), "{caller:?}");

    // Refused: another api's key, the tester's key, and the caller naming the api itself; each
    // with tollbooth's status, reason and JSON body for the caller.
    for (consumer, extra, reason) in [
        ("maps-app-1", &[][..], "not_subscribed"),
        ("maps-app-1&api=maps#", &[][..], "unknown_consumer"),
        (
            "maps-app-1",
            &[
                ("x-tollbooth-api", "maps"),
                ("x-tollbooth-key", "tbg_forged"),
            ][..],
            "not_subscribed",
        ),
    ] {
        let answer = check(&mut client, &key, consumer, extra).await;
        let (status, headers, body) = denied(&answer);
        assert_eq!(answer.status.as_ref().unwrap().code, PERMISSION_DENIED);
        assert_eq!(status, 403, "{consumer}: {body}");
        assert_eq!(body["reason"], reason, "{consumer}");
        assert_eq!(headers["x-tollbooth-reason"], reason);
        assert_eq!(headers["content-type"], "application/json");
    }

    // The quota of 2: the second call is allowed, the third is 429 with Retry-After.
    let answer = check(&mut client, &key, "k1", &[]).await;
    assert_eq!(answer.status.as_ref().unwrap().code, OK, "{answer:?}");
    let answer = check(&mut client, &key, "k1", &[]).await;
    let (status, headers, body) = denied(&answer);
    assert_eq!(answer.status.as_ref().unwrap().code, RESOURCE_EXHAUSTED);
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("quota_exhausted"))
    );
    assert!(headers["retry-after"].parse::<u64>().unwrap() >= 1);

    // No key from the caller: 401; a wrong gateway key: 401 with tollbooth's error; no gateway
    // key at all: the call itself fails (Envoy's `status_on_error` answers the caller).
    let answer = check(&mut client, &key, "", &[]).await;
    assert_eq!(answer.status.as_ref().unwrap().code, UNAUTHENTICATED);
    assert_eq!(denied(&answer).2["reason"], "missing_consumer");
    let answer = check(&mut client, "tbg_wrong", "k1", &[]).await;
    assert_eq!(denied(&answer).0, 401);
    assert_eq!(denied(&answer).2["error"]["code"], "unauthorized");
    let error = client
        .check(tonic::Request::new(request("k1", &[])))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unauthenticated);
}

/// The check Envoy makes for `GET /forecast?city=paris` with the caller's `X-Api-Key`.
fn request(consumer: &str, extra: &[(&str, &str)]) -> CheckRequest {
    let mut headers: HashMap<String, String> = [
        (":authority", "api.provider.example"),
        (":method", "GET"),
        (":path", "/forecast?city=paris"),
        ("x-api-key", consumer),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "1".to_owned(),
                    method: "GET".to_owned(),
                    headers,
                    path: "/forecast?city=paris".to_owned(),
                    host: "api.provider.example".to_owned(),
                    scheme: "http".to_owned(),
                    protocol: "HTTP/1.1".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: [("api".to_owned(), "weather".to_owned())].into(),
            ..Default::default()
        }),
    }
}

async fn check(
    client: &mut AuthorizationClient<tonic::transport::Channel>,
    key: &str,
    consumer: &str,
    extra: &[(&str, &str)],
) -> CheckResponse {
    let mut call = tonic::Request::new(request(consumer, extra));
    call.metadata_mut()
        .insert("x-tollbooth-key", key.parse().unwrap());
    client.check(call).await.unwrap().into_inner()
}

/// A refusal's HTTP status, headers and JSON body for the caller.
fn denied(answer: &CheckResponse) -> (i32, HashMap<String, String>, Value) {
    let Some(HttpResponse::DeniedResponse(denied)) = &answer.http_response else {
        panic!("not a refusal: {answer:?}")
    };
    let headers = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    let body = serde_json::from_str(&denied.body).unwrap();
    (denied.status.as_ref().unwrap().code, headers, body)
}
