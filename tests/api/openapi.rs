//! `GET /openapi.json`: an OpenAPI 3.1 document that names every route the router serves, each
//! with the refusals it can answer, so that a route added without documentation fails here.

use crate::helpers::{ADMIN_TOKEN, TestApp, on_both_databases};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

on_both_databases!(
    the_document_is_openapi_3_1_and_names_every_route_the_router_serves,
    every_documented_operation_is_served_and_documents_its_refusals,
);

/// The routes the router serves, `(METHOD, path)`, read from the router itself. axum shows a
/// router's paths and each route's `Allow` methods only in its `Debug` form, so that is walked;
/// HEAD is left out, as axum answers it for every GET. (`events_max_bytes` plays no part here.)
fn served_routes() -> BTreeSet<(String, String)> {
    let (router, _) = tollbooth::http::routes(1024).split_for_parts();
    let shown = format!("{router:?}");
    // The routes are in `path_router`; `fallback_router` has ids of its own.
    let shown = shown
        .split_once("fallback_router:")
        .map_or(shown.as_str(), |(routes, _)| routes);
    let mut paths = BTreeMap::new();
    let mut methods = BTreeMap::new();
    for chunk in shown.split("RouteId(").skip(1) {
        let Some((id, rest)) = chunk.split_once("): ") else {
            continue;
        };
        if let Some(path) = rest.strip_prefix('"') {
            let path = path.split('"').next().unwrap_or_default();
            paths.insert(id.to_owned(), path.to_owned());
        } else if let Some(allow) = rest
            .split_once("allow_header: Bytes(b\"")
            .map(|(_, allow)| allow.split('"').next().unwrap_or_default())
        {
            methods.insert(id.to_owned(), allow.to_owned());
        }
    }
    let mut routes = BTreeSet::new();
    for (id, path) in &paths {
        // A route of `any()` has no `Allow` list: it answers every method.
        let allow = methods.get(id).map_or("*", String::as_str);
        for method in allow.split(',').filter(|m| *m != "HEAD") {
            routes.insert((method.to_owned(), path.clone()));
        }
    }
    // The forward-auth forms of the access decision: every method at `/v1/authorize` and any
    // path under it answers as the documented `GET /v1/authorize` (Envoy keeps the caller's
    // method and appends its path). Only these are taken out; any other route must be documented.
    routes.retain(|(method, path)| {
        let alias = (path == "/v1/authorize" && method != "GET")
            || (path == "/v1/authorize/{*under}" && method == "*");
        !alias
    });
    assert!(
        routes.len() > 20,
        "the router's routes could not be read from its Debug form: {shown}"
    );
    routes
}

async fn fetch_document(app: &TestApp) -> Value {
    // No token: the document is public.
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("tollbooth answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    response.json().await.expect("the document is JSON")
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// Every operation of the document: `(METHOD, path, operation)`.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_uppercase(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

async fn the_document_is_openapi_3_1_and_names_every_route_the_router_serves(app: TestApp) {
    let doc = fetch_document(&app).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "{version}");
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served = served_routes();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );
    // The surface as the README lists it, so that a route removed or renamed is seen too.
    for (method, path) in [
        ("GET", "/openapi.json"),
        ("POST", "/v1/apis"),
        ("GET", "/v1/tiers/{id}/versions"),
        ("POST", "/v1/subscriptions/{id}/cancel"),
        ("POST", "/v1/subscriptions/{id}/tier"),
        ("GET", "/v1/subscriptions/{id}/invoice-preview"),
        ("POST", "/v1/events"),
        ("GET", "/v1/authorize"),
        ("GET", "/v1/usage/export"),
        ("GET", "/v1/billing/runs/{day}"),
        ("POST", "/webhooks/stripe"),
        ("GET", "/readyz"),
    ] {
        assert!(
            documented.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not documented"
        );
    }
    let ids: BTreeSet<String> = operations(&doc)
        .iter()
        .filter_map(|(_, _, op)| op["operationId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), documented.len(), "operation ids are unique");
}

/// The error answer schema, followed through `components.responses`.
fn error_schema<'a>(doc: &'a Value, response: &'a Value) -> Option<&'a str> {
    let response = match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next()?;
            &doc["components"]["responses"][name]
        }
        None => response,
    };
    response["content"]["application/json"]["schema"]["$ref"].as_str()
}

async fn every_documented_operation_is_served_and_documents_its_refusals(app: TestApp) {
    let doc = fetch_document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    for scheme in ["admin_token", "gateway_key"] {
        assert_eq!(schemes[scheme]["type"], "http", "{scheme}");
        assert_eq!(schemes[scheme]["scheme"], "bearer", "{scheme}");
    }
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().expect("responses");
        let name = format!("{method} {path}");
        assert!(responses.contains_key("414"), "{name}: 414");
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        if secured {
            assert!(responses.contains_key("401"), "{name}: 401");
        }
        if operation.get("requestBody").is_some() {
            for status in ["400", "408", "413", "422"] {
                assert!(responses.contains_key(status), "{name}: {status}");
            }
        }
        let takes_parameters = operation["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["in"] == "query" || p["in"] == "path"));
        if takes_parameters {
            for status in ["400", "422"] {
                assert!(responses.contains_key(status), "{name}: {status}");
            }
        }
        for (status, response) in responses {
            let own_body = matches!(
                (path.as_str(), status.as_str()),
                ("/v1/authorize", "401" | "402" | "403" | "429") | ("/readyz", "503")
            );
            if status.as_str() >= "400" && !own_body {
                assert_eq!(
                    error_schema(&doc, response),
                    Some("#/components/schemas/ErrorBody"),
                    "{name}: {status} is the error body"
                );
            }
        }

        // The router answers the operation: not as a path it lacks, nor a method it refuses.
        let concrete = path
            .replace("{id}", "nothing-here")
            .replace("{day}", "2026-01-01");
        let request = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).expect("method"),
                app.url(&concrete),
            )
            .bearer_auth(ADMIN_TOKEN);
        let (status, body) = app.send(request).await;
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && body["error"]["code"] != "no_route",
            "{name} is documented but not served: {status} {body}"
        );
        assert!(
            responses.contains_key(status.as_str()),
            "{name} answered {status}, which its documentation does not list: {body}"
        );
    }
    assert!(
        doc["components"]["responses"]["MethodNotAllowed"].is_object(),
        "405 is documented once, for every path"
    );
}
