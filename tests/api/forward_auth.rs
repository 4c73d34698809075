//! The access decision as each gateway asks for it (issue "gateway access decision"): the exact
//! requests NGINX `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` (HTTP), Caddy
//! `forward_auth` and APISIX `forward-auth` send, and no caller input that chooses the api.

use crate::events::{post_events, record};
use crate::helpers::{TestApp, assert_error, on_both_databases};
use crate::tiers::pro_tier;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

on_both_databases!(
    a_caller_cannot_choose_the_api_through_its_key,
    the_other_apis_key_is_refused_through_every_documented_form,
    consumer_keys_are_kept_as_hashes_and_keys_kept_before_are_hashed_at_start,
    each_gateway_is_answered_in_its_own_form,
    answers_carry_what_the_gateway_passes_on,
    a_hard_quota_counts_allowed_calls_before_their_records,
    a_gateway_with_bad_access_settings_is_refused_by_field,
    the_api_is_the_one_routed_where_the_gateway_served_the_call,
);

/// Asks as the shipped NGINX recipe does: the gateway's key and the api in headers its
/// configuration sets, the caller's own `X-Api-Key` passed through.
pub async fn ask(
    app: &TestApp,
    gateway_key: &str,
    consumer: &str,
    api: &str,
) -> (StatusCode, Value) {
    let (status, _, body) = ask_with_headers(app, gateway_key, consumer, api).await;
    (status, body)
}

async fn ask_with_headers(
    app: &TestApp,
    gateway_key: &str,
    consumer: &str,
    api: &str,
) -> (StatusCode, HeaderMap, Value) {
    let request = app
        .client
        .get(app.url("/v1/authorize"))
        .header("x-tollbooth-key", gateway_key)
        .header("x-tollbooth-api", api)
        .header("x-api-key", consumer)
        .header("x-forwarded-uri", "/forecast?city=paris");
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, Value) {
    let response = request.send().await.expect("tollbooth answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text:?}"));
    (status, headers, body)
}

/// Two apis, `weather` (Pro, `quota_limit` calls a month when given) and `maps`; `acme`
/// subscribes to weather with `k1`, `atlas` to maps with `maps-app-1`.
pub async fn two_apis(app: &TestApp, quota_limit: Option<u64>) {
    two_apis_with(
        app,
        quota_limit,
        json!({"slug": "weather", "name": "Weather API"}),
        json!({"slug": "maps", "name": "Maps API"}),
    )
    .await;
}

/// `two_apis` with these api definitions (routes, say).
async fn two_apis_with(app: &TestApp, quota_limit: Option<u64>, weather: Value, maps: Value) {
    let mut weather_tier = pro_tier("5.00");
    if let Some(limit) = quota_limit {
        weather_tier["quota"] = json!({"hard_limit": limit});
    }
    let steps = [
        ("/v1/apis", weather),
        ("/v1/apis", maps),
        ("/v1/tiers", weather_tier),
        (
            "/v1/tiers",
            json!({"slug": "maps-free", "api": "maps", "name": "Free", "currency": "usd",
                "usage": {"model": "per_unit", "unit_price": "0"}}),
        ),
        (
            "/v1/subscribers",
            json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        ),
        (
            "/v1/subscribers",
            json!({"external_id": "atlas", "name": "Atlas", "email": "billing@atlas.example"}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro",
                "consumer_keys": ["k1"]}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "atlas-maps", "subscriber": "atlas", "tier": "maps-free",
                "consumer_keys": ["maps-app-1"]}),
        ),
    ];
    for (path, body) in steps {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
    }
}

pub async fn gateway(app: &TestApp, name: &str, access: Value) -> String {
    let (status, answer) = app
        .post("/v1/gateways", &json!({"name": name, "access": access}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["key"].as_str().unwrap().to_owned()
}

async fn a_caller_cannot_choose_the_api_through_its_key(app: TestApp) {
    two_apis(&app, None).await;
    let key = gateway(&app, "nginx", json!({})).await;
    // The tester's request: a maps key with `&api=maps#` appended, at the weather location.
    let (status, body) = ask(&app, &key, "maps-app-1&api=maps#", "weather").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "unknown_consumer");
    // The maps key itself at the weather location.
    let (status, body) = ask(&app, &key, "maps-app-1", "weather").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "not_subscribed");
    // The old query form is not read: neither the consumer nor the api.
    let (status, _, body) = answer(
        app.client
            .get(app.url("/v1/authorize?consumer=maps-app-1&api=maps"))
            .header("x-tollbooth-key", &key)
            .header("x-tollbooth-api", "weather")
            .header("x-api-key", "maps-app-1"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "not_subscribed");
    let (status, _, body) = answer(
        app.client
            .get(app.url("/v1/authorize?consumer=k1&api=weather"))
            .header("x-tollbooth-key", &key),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "missing_api");
    assert_eq!(body["error"]["details"]["field"], "X-Tollbooth-Api");

    // Envoy appends the caller's path to the auth prefix: the api is the prefix's, whatever
    // path the caller sends, and its `api=` in the query is the caller's, never read.
    let envoy = gateway(
        &app,
        "envoy",
        json!({"api_from": "auth_path", "consumer_from": [{"query": "api_key"}]}),
    )
    .await;
    for path in [
        "/v1/authorize/weather/maps/tiles?api_key=maps-app-1",
        "/v1/authorize/weather/tiles?api=maps&api_key=maps-app-1",
    ] {
        let (status, _, body) = answer(
            app.client
                .post(app.url(path))
                .header("x-tollbooth-key", &envoy),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["reason"], "not_subscribed", "{path}");
    }
    for path in [
        "/v1/authorize/maps/tiles?api_key=maps-app-1",
        // The caller asked for the root path: Envoy appends `/`.
        "/v1/authorize/maps/?api_key=maps-app-1",
    ] {
        let (status, _, body) = answer(
            app.client
                .post(app.url(path))
                .header("x-tollbooth-key", &envoy),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

async fn each_gateway_is_answered_in_its_own_form(app: TestApp) {
    two_apis(&app, None).await;

    // NGINX auth_request: GET to the fixed location, the original headers, X-Original-URI.
    let nginx = gateway(&app, "nginx", json!({"refusal_status": 403})).await;
    let (status, _, body) = answer(
        app.client
            .get(app.url("/v1/authorize"))
            .header("x-tollbooth-key", &nginx)
            .header("x-tollbooth-api", "weather")
            .header("x-original-uri", "/weather/forecast?city=paris")
            .header("x-api-key", "k1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Traefik forwardAuth: GET to the address as written (the gateway key in it), with the
    // caller's own Authorization and X-Forwarded-*; the caller's key in its query.
    let traefik = gateway(
        &app,
        "traefik",
        json!({"api_from": "auth_path", "consumer_from": [{"query": "api_key"}, "bearer"]}),
    )
    .await;
    let address = format!("/v1/authorize/weather?tollbooth_key={traefik}");
    let (status, _, body) = answer(
        app.client
            .get(app.url(&address))
            .header("authorization", "Bearer caller-session-token")
            .header("x-forwarded-method", "POST")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "api.provider.example")
            .header("x-forwarded-uri", "/forecast/today?api_key=k1")
            .header("x-forwarded-for", "203.0.113.7"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The caller's bearer token is its key when the query has none.
    let (status, _, body) = answer(
        app.client
            .get(app.url(&address))
            .header("authorization", "Bearer k1")
            .header("x-forwarded-uri", "/forecast/today"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A caller token that is nobody's key.
    let (status, _, body) = answer(
        app.client
            .get(app.url(&address))
            .header("authorization", "Bearer caller-session-token")
            .header("x-forwarded-uri", "/forecast/today"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "unknown_consumer");

    // Envoy ext_authz (HTTP): the original method, path_prefix + the original path and query,
    // the gateway's key added by `headers_to_add`.
    let envoy = gateway(
        &app,
        "envoy",
        json!({"api_from": "auth_path", "consumer_from": [{"header": "x-api-key"}]}),
    )
    .await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
        reqwest::Method::HEAD,
    ] {
        let response = app
            .client
            .request(
                method.clone(),
                app.url("/v1/authorize/weather/forecast/today?days=3"),
            )
            .header("x-tollbooth-key", &envoy)
            .header("x-api-key", "k1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert!(response.headers().contains_key("x-tollbooth-subscription"));
    }

    // Caddy forward_auth and APISIX forward-auth: GET with X-Forwarded-Method/-Uri and headers
    // the configuration adds (Caddy `header_up`, APISIX `request_headers` of the route).
    let caddy = gateway(&app, "caddy", json!({})).await;
    let (status, _, body) = answer(
        app.client
            .get(app.url("/v1/authorize"))
            .header("x-tollbooth-key", &caddy)
            .header("x-tollbooth-api", "maps")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/tiles/1/2/3.png")
            .header("x-api-key", "maps-app-1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A gateway key that is not one, in each place, and none at all.
    for request in [
        app.client
            .get(app.url("/v1/authorize"))
            .header("x-tollbooth-key", "tbg_wrong"),
        app.client
            .get(app.url("/v1/authorize?tollbooth_key=tbg_wrong")),
        app.client
            .get(app.url("/v1/authorize"))
            .header("authorization", "Bearer tbg_wrong"),
    ] {
        let (status, _, body) = answer(
            request
                .header("x-tollbooth-api", "weather")
                .header("x-api-key", "k1"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // The gateway key in Authorization (the form before forward-auth) is still taken, and is
    // then never read as the caller's bearer key.
    let (status, _, body) = answer(
        app.client
            .get(app.url("/v1/authorize"))
            .bearer_auth(&caddy)
            .header("x-tollbooth-api", "weather")
            .header("x-api-key", "k1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn answers_carry_what_the_gateway_passes_on(app: TestApp) {
    two_apis(&app, Some(2)).await;
    let key = gateway(&app, "caddy", json!({})).await;
    let (_, subscription) = app.get("/v1/subscriptions/acme-weather").await;

    let (status, headers, body) = ask_with_headers(&app, &key, "k1", "weather").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subscription"], subscription["id"]);
    assert_eq!(body["tier"], "weather-pro");
    assert_eq!(body["remaining"], 1);
    assert_eq!(
        headers["x-tollbooth-subscription"],
        subscription["id"].as_str().unwrap()
    );
    assert_eq!(headers["x-tollbooth-tier"], "weather-pro");
    assert_eq!(headers["x-tollbooth-remaining"], "1");
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "1");
    let reset: u64 = headers["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=32 * 86_400).contains(&reset), "{reset}");

    // No key: 401 with the reason; each refusal names itself in X-Tollbooth-Reason.
    let (status, headers, body) = answer(
        app.client
            .get(app.url("/v1/authorize"))
            .header("x-tollbooth-key", &key)
            .header("x-tollbooth-api", "weather"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body,
        json!({"allowed": false, "reason": "missing_consumer"})
    );
    assert_eq!(headers["x-tollbooth-reason"], "missing_consumer");

    // The second call uses the quota up; the third is refused with Retry-After and RateLimit-*.
    let (status, _, _) = ask_with_headers(&app, &key, "k1", "weather").await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) = ask_with_headers(&app, &key, "k1", "weather").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["reason"], "quota_exhausted");
    assert_eq!(headers["x-tollbooth-reason"], "quota_exhausted");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(headers["retry-after"], headers["ratelimit-reset"]);

    // NGINX passes only 401 and 403: with `refusal_status` 403 every refusal is a 403 that
    // names what it stands for.
    let nginx = gateway(&app, "nginx", json!({"refusal_status": 403})).await;
    let (status, headers, body) = ask_with_headers(&app, &nginx, "k1", "weather").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "quota_exhausted");
    assert_eq!(headers["x-tollbooth-reason"], "quota_exhausted");
    assert_eq!(headers["x-tollbooth-status"], "429");
    let (status, headers, _) = ask_with_headers(&app, &nginx, "nobody", "weather").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["x-tollbooth-status"], "403");
    assert_eq!(headers["x-tollbooth-reason"], "unknown_consumer");
}

async fn a_hard_quota_counts_allowed_calls_before_their_records(app: TestApp) {
    two_apis(&app, Some(5)).await;
    let key = gateway(&app, "nginx", json!({})).await;
    // Five calls allowed and no record yet: the sixth is refused at once.
    for left in (0..5).rev() {
        let (status, body) = ask(&app, &key, "k1", "weather").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["remaining"], left);
    }
    let (status, body) = ask(&app, &key, "k1", "weather").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    // Their records arrive: they take the place of the held calls, not count twice.
    let records: Vec<Value> = (0..5).map(|i| record(&format!("held-{i}"), 200)).collect();
    let (status, answer) = post_events(&app, &key, Value::Array(records).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, body) = ask(&app, &key, "k1", "weather").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["limit"], 5);
    assert_eq!(
        crate::events::usage_totals(&app).await.0,
        5,
        "what the upstream served is what is billed"
    );
}

async fn a_gateway_with_bad_access_settings_is_refused_by_field(app: TestApp) {
    for (access, field) in [
        (json!({"consumer_from": []}), "access.consumer_from"),
        (
            json!({"consumer_from": [{"header": "bad header"}]}),
            "access.consumer_from[0]",
        ),
        (json!({"refusal_status": 200}), "access.refusal_status"),
    ] {
        let answer = app
            .send(
                app.client
                    .post(app.url("/v1/gateways"))
                    .bearer_auth(crate::helpers::ADMIN_TOKEN)
                    .json(&json!({"name": "nginx", "access": access})),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    let (status, answer) = app
        .post(
            "/v1/gateways",
            &json!({"name": "unknown", "access": {"consumer_form": []}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(app.count_rows("gateways").await, 0);

    // Shown as written, with its defaults, in the create answer and after.
    let (status, made) = app
        .post(
            "/v1/gateways",
            &json!({"name": "envoy", "access": {"api_from": "auth_path"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, read) = app
        .get(&format!("/v1/gateways/{}", made["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        read["access"],
        json!({"consumer_from": [{"header": "X-Api-Key"}], "api_from": "auth_path"})
    );
    assert_eq!(made["access"], read["access"]);
}

async fn the_api_is_the_one_routed_where_the_gateway_served_the_call(app: TestApp) {
    two_apis_with(
        &app,
        None,
        json!({"slug": "weather", "name": "Weather API", "hosts": ["api.provider.example"],
            "path_prefixes": ["/weather"]}),
        json!({"slug": "maps", "name": "Maps API", "path_prefixes": ["/maps/"]}),
    )
    .await;
    let (_, weather) = app.get("/v1/apis/weather").await;
    assert_eq!(
        weather["hosts"],
        json!(["api.provider.example"]),
        "{weather}"
    );
    assert_eq!(weather["path_prefixes"], json!(["/weather"]));
    let key = gateway(&app, "traefik", json!({"api_from": "route"})).await;
    let address = format!("/v1/authorize?tollbooth_key={key}");
    let ask_at = |host: &str, uri: &str, consumer: &str| {
        app.client
            .get(app.url(&address))
            .header("x-forwarded-host", host)
            .header("x-forwarded-uri", uri)
            .header("x-api-key", consumer)
            // The caller's own attempt to name the api is not read in route mode.
            .header("x-tollbooth-api", "maps")
    };
    for (host, uri, consumer, status, reason) in [
        (
            "api.provider.example",
            "/weather/today?days=3",
            "k1",
            StatusCode::OK,
            "",
        ),
        (
            "API.provider.example:443",
            "/weather",
            "k1",
            StatusCode::OK,
            "",
        ),
        (
            "api.provider.example",
            "/weather/today",
            "maps-app-1",
            StatusCode::FORBIDDEN,
            "not_subscribed",
        ),
        (
            "anywhere.example",
            "/maps/tiles/1",
            "maps-app-1",
            StatusCode::OK,
            "",
        ),
        (
            "anywhere.example",
            "/maps/tiles/1",
            "k1",
            StatusCode::FORBIDDEN,
            "not_subscribed",
        ),
    ] {
        let (answered, _, body) = answer(ask_at(host, uri, consumer)).await;
        assert_eq!(answered, status, "{host}{uri} {consumer}: {body}");
        if !reason.is_empty() {
            assert_eq!(body["reason"], reason, "{host}{uri}");
        }
    }
    // Weather is served on its own host only; `/weathers` is not under `/weather`.
    for (host, uri) in [
        ("other.example", "/weather/today"),
        ("api.provider.example", "/weathers"),
    ] {
        let (status, _, body) = answer(ask_at(host, uri, "k1")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}{uri}: {body}");
        assert_eq!(body["error"]["code"], "missing_api");
        assert_eq!(body["error"]["details"]["field"], "route");
    }
    // Envoy: the original path comes under /v1/authorize, the host in Host.
    let envoy = gateway(&app, "envoy", json!({"api_from": "route"})).await;
    let (status, _, body) = answer(
        app.client
            .post(app.url("/v1/authorize/weather/today"))
            .header("host", "api.provider.example")
            .header("x-tollbooth-key", &envoy)
            .header("x-api-key", "k1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Two apis cannot claim one route; bad routes name their field; nothing is written.
    let (status, body) = app
        .post(
            "/v1/apis",
            &json!({"slug": "roads", "name": "Roads", "path_prefixes": ["/maps"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for (api, field) in [
        (
            json!({"slug": "roads", "name": "Roads", "path_prefixes": ["roads"]}),
            "path_prefixes[0]",
        ),
        (
            json!({"slug": "roads", "name": "Roads", "hosts": ["Bad Host"]}),
            "hosts[0]",
        ),
    ] {
        let answer = app.post("/v1/apis", &api).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    let (_, apis) = app.get("/v1/apis").await;
    assert_eq!(apis["data"].as_array().unwrap().len(), 2);
}

/// The outside tester's request and the other api's key, through each shipped recipe of a gateway
/// Debian does not package (Traefik, Envoy, APISIX, Kong), as each one's documentation says it asks
/// with that recipe: the auth address is read from the recipe, so the two cannot drift apart.
async fn the_other_apis_key_is_refused_through_every_documented_form(app: TestApp) {
    two_apis(&app, None).await;
    let traefik = gateway(
        &app,
        "traefik",
        json!({"api_from": "auth_path", "consumer_from": [{"query": "api_key"}, "bearer"]}),
    )
    .await;
    let envoy = gateway(&app, "envoy", json!({"api_from": "auth_path"})).await;
    let apisix = gateway(&app, "apisix", json!({"api_from": "auth_path"})).await;
    let kong = gateway(&app, "kong", json!({})).await;
    let traefik_address = address_in("traefik/tollbooth.yml", &traefik);
    let envoy_prefix = setting("envoy/envoy.yaml", "path_prefix:");
    assert_eq!(setting("envoy/envoy.yaml", "- key:"), "X-Tollbooth-Key");
    assert_eq!(
        setting("envoy/envoy.yaml", "value:"),
        "tbg_YOUR_GATEWAY_KEY"
    );
    let apisix_address = address_in("apisix/apisix.yaml", &apisix);
    // Kong's pre-function sets the gateway key and the api as headers.
    let kong_address = address_in("kong/kong.yml", &kong);
    let kong_lua = recipe("kong/kong.yml");
    for line in [
        r#"["X-Tollbooth-Key"] = "tbg_YOUR_GATEWAY_KEY""#,
        r#"local api = "weather""#,
        r#"["X-Tollbooth-Api"] = api"#,
        r#"["X-Api-Key"] = kong.request.get_header("x-api-key")"#,
    ] {
        assert!(kong_lua.contains(line), "kong.yml: {line}");
    }
    for key in ["maps-app-1&api=maps#", "maps-app-1"] {
        let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
        let requests = [
            (
                "traefik, key in the query",
                app.client
                    .get(app.url(&traefik_address))
                    .header("x-forwarded-uri", format!("/forecast?api_key={encoded}"))
                    .header("x-forwarded-host", "api.provider.example"),
            ),
            (
                "traefik, key as bearer",
                app.client
                    .get(app.url(&traefik_address))
                    .header("authorization", format!("Bearer {key}"))
                    .header("x-forwarded-uri", "/forecast"),
            ),
            (
                "envoy",
                app.client
                    .post(app.url(&format!("{envoy_prefix}/forecast?api={encoded}")))
                    .header("x-tollbooth-key", &envoy)
                    .header("x-api-key", key),
            ),
            (
                "apisix",
                app.client
                    .get(app.url(&apisix_address))
                    .header("x-forwarded-proto", "http")
                    .header("x-forwarded-method", "GET")
                    .header("x-forwarded-host", "api.provider.example")
                    .header("x-forwarded-uri", "/forecast")
                    .header("x-api-key", key),
            ),
            (
                "kong pre-function",
                app.client
                    .get(app.url(&kong_address))
                    .header("x-tollbooth-key", &kong)
                    .header("x-tollbooth-api", "weather")
                    .header("x-forwarded-method", "GET")
                    .header(
                        "x-forwarded-uri",
                        format!("/weather/forecast?api={encoded}"),
                    )
                    .header("x-api-key", key),
            ),
        ];
        for (form, request) in requests {
            let (status, _, body) = answer(request).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{form}, {key}: {body}");
            let reason = if key.contains('&') {
                "unknown_consumer"
            } else {
                "not_subscribed"
            };
            assert_eq!(body["reason"], reason, "{form}, {key}");
        }
    }
}

/// A shipped recipe, `integrations/{path}`, without its comments.
fn recipe(path: &str) -> String {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integrations")
        .join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'));
    lines.collect::<Vec<_>>().join("\n")
}

/// The first address in the recipe at tollbooth's placeholder address, as a path tollbooth
/// answers, with the placeholder gateway key replaced by `key`.
fn address_in(path: &str, key: &str) -> String {
    let text = recipe(path);
    let at = text
        .find("http://127.0.0.1:8080/")
        .unwrap_or_else(|| panic!("{path} names no address of tollbooth"));
    let address = &text[at + "http://127.0.0.1:8080".len()..];
    let end = address.find(['"', ' ', '\n']).unwrap_or(address.len());
    address[..end].replace("tbg_YOUR_GATEWAY_KEY", key)
}

/// The value of the first `field:` of a YAML recipe.
pub fn setting(path: &str, field: &str) -> String {
    let text = recipe(path);
    let line = text
        .lines()
        .map(str::trim_start)
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("{path} has no `{field}`"));
    line[field.len()..].trim().trim_matches('"').to_owned()
}

async fn consumer_keys_are_kept_as_hashes_and_keys_kept_before_are_hashed_at_start(app: TestApp) {
    two_apis(&app, None).await;
    let key = gateway(&app, "nginx", json!({})).await;
    // Nowhere in the database, nowhere in an answer; still the caller's credential.
    assert_eq!(
        app.count_where("consumer_keys", "consumer_key = 'k1'")
            .await,
        0
    );
    assert_eq!(app.count_where("consumer_keys", "key_prefix = ''").await, 0);
    let (_, listed) = app.get("/v1/subscriptions").await;
    assert!(!listed.to_string().contains("maps-app-1"), "{listed}");
    assert_eq!(ask(&app, &key, "k1", "weather").await.0, StatusCode::OK);
    // The same definition again is the same subscription; a key another one holds is refused,
    // named by its index.
    let (status, _) = app
        .post(
            "/v1/subscriptions",
            &json!({"external_id": "acme-weather", "subscriber": "acme",
            "tier": "weather-pro", "consumer_keys": ["k1"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let answer = app
        .post(
            "/v1/subscriptions",
            &json!({"external_id": "acme-2", "subscriber": "acme",
            "tier": "weather-pro", "consumer_keys": ["fresh-key", "maps-app-1"]}),
        )
        .await;
    assert_eq!(answer.0, StatusCode::CONFLICT, "{}", answer.1);
    assert!(
        answer.1.to_string().contains("consumer_keys[1]"),
        "{}",
        answer.1
    );

    // A key written before keys were hashed (as an older tollbooth left it) is hashed at start.
    app.execute_sql(
        "UPDATE consumer_keys SET consumer_key = 'legacy-key-1', key_prefix = '' \
         WHERE subscription_id = (SELECT id FROM subscriptions WHERE external_id = 'atlas-maps')",
    )
    .await;
    let restarted = crate::helpers::spawn_replica(&app, |_| {}).await;
    assert_eq!(app.count_where("consumer_keys", "key_prefix = ''").await, 0);
    assert_eq!(
        app.count_where("consumer_keys", "consumer_key = 'legacy-key-1'")
            .await,
        0
    );
    let (status, body) = ask(&restarted, &key, "legacy-key-1", "maps").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, atlas) = restarted.get("/v1/subscriptions/atlas-maps").await;
    assert_eq!(atlas["consumer_keys"], json!(["lega…"]));
}
