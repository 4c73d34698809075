//! `TOLLBOOTH_UNMIRRORED_ACCESS`: what the access decision does for a paid subscription whose
//! Stripe Subscription could not be made. `serve` (the default) lets its calls through, metered
//! and billed once a sync makes it; `refuse` answers 403 `not_billable_yet` until then, on every
//! replica.

use crate::forward_auth::{ask, gateway};
use crate::helpers::{
    Backend, assert_error, on_both_backends, spawn_app_with, spawn_replica, use_stripe,
};
use crate::stripe_mock::StripeMock;
use reqwest::StatusCode;
use serde_json::json;
use tollbooth::config::UnmirroredAccess;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

on_both_backends!(a_paid_subscription_stripe_refused_is_refused_until_a_sync_makes_it);

async fn a_paid_subscription_stripe_refused_is_refused_until_a_sync_makes_it(backend: Backend) {
    let stripe = StripeMock::start().await;
    // Stripe refuses the first Subscription create (a customer with no way to pay, say); the
    // catalog's other objects are made as usual, and so is the Subscription at the sync.
    Mock::given(method("POST"))
        .and(path("/v1/subscriptions"))
        .respond_with(ResponseTemplate::new(402).set_body_json(json!({"error": {
            "type": "card_error", "code": "card_declined",
            "message": "Your card was declined."}})))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .named("the first Subscription create, refused")
        .mount(&stripe.server)
        .await;
    stripe.mount_catalog().await;
    let refresh = |s: &mut tollbooth::config::Settings| {
        s.replica_refresh = "200ms".to_owned().try_into().unwrap();
    };
    let Some(app) = spawn_app_with(backend, |s| {
        use_stripe(s, &stripe.uri());
        refresh(s);
        s.unmirrored_access = UnmirroredAccess::Refuse;
    })
    .await
    else {
        return;
    };
    crate::tiers::create_weather_api(&app).await;
    let (status, answer) = app.post("/v1/tiers", &crate::tiers::pro_tier("5.00")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let answer = app
        .post(
            "/v1/subscriptions",
            &json!({"external_id": "acme-weather", "subscriber": "acme",
            "tier": "weather-pro", "consumer_keys": ["k1"]}),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_GATEWAY, "stripe_refused", None);
    assert_eq!(
        answer.1["error"]["details"]["saved"]["stripe"]["state"],
        "failed"
    );

    let key = gateway(&app, "nginx", json!({})).await;
    let (status, decision) = ask(&app, &key, "k1", "weather").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{decision}");
    assert_eq!(decision["reason"], "not_billable_yet", "{decision}");
    // A replica left at the default serves it meanwhile.
    let serving = spawn_replica(&app, |s| {
        use_stripe(s, &stripe.uri());
        refresh(s);
    })
    .await;
    let (status, decision) = ask(&serving, &key, "k1", "weather").await;
    assert_eq!(status, StatusCode::OK, "{decision}");

    // The sync (another process) makes the Subscription: the refusing replica serves it next.
    let sync = std::process::Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .args(["stripe", "sync"])
        .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
        .env("STRIPE_SECRET_KEY", "sk_test_tollbooth")
        .env("STRIPE_API_BASE", stripe.uri())
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .env_remove("TOLLBOOTH_CONFIG")
        .output()
        .expect("run tollbooth stripe sync");
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    assert_eq!(stripe.requests("POST", "/v1/subscriptions").await.len(), 2);
    let mut decision = json!(null);
    for _ in 0..50 {
        let (status, answer) = ask(&app, &key, "k1", "weather").await;
        decision = answer;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(decision["allowed"], true, "{decision}");
}
