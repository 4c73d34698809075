//! After Checkout (setup mode): the payment method the subscriber added becomes the Customer's
//! default, and the invoice the Subscription waits on is paid with it — once.

use crate::helpers::{Backend, on_both_backends, spawn_app_with, use_stripe};
use crate::stripe_mock::{StripeMock, fixture};
use crate::webhooks::{NEW_SECRET, event, send_event};
use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

on_both_backends!(a_completed_checkout_adopts_the_payment_method_and_pays_the_waiting_invoice);

async fn a_completed_checkout_adopts_the_payment_method_and_pays_the_waiting_invoice(
    backend: Backend,
) {
    let stripe = StripeMock::start().await;
    let mut setup_intent = fixture("setup_intent");
    setup_intent["id"] = json!("seti_added");
    setup_intent["payment_method"] = json!("pm_card_added");
    Mock::given(method("GET"))
        .and(path("/v1/setup_intents/seti_added"))
        .respond_with(ResponseTemplate::new(200).set_body_json(setup_intent))
        .expect(1)
        .mount(&stripe.server)
        .await;
    let mut invoice = fixture("invoice");
    invoice["id"] = json!("in_first");
    invoice["status"] = json!("paid");
    Mock::given(method("POST"))
        .and(path("/v1/invoices/in_first/pay"))
        .respond_with(ResponseTemplate::new(200).set_body_json(invoice))
        .expect(1)
        .mount(&stripe.server)
        .await;
    stripe.mount_catalog().await;
    let Some(app) = spawn_app_with(backend, |s| {
        use_stripe(s, &stripe.uri());
        s.stripe_webhook_secret = Some(NEW_SECRET.to_owned().into());
    })
    .await
    else {
        return;
    };
    for (path, body) in [
        (
            "/v1/apis",
            json!({"slug": "weather", "name": "Weather API"}),
        ),
        ("/v1/tiers", crate::tiers::pro_tier("5.00")),
        (
            "/v1/subscribers",
            json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        ),
    ] {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
    }
    let (status, created) = app
        .post("/v1/subscriptions", &json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["k1"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        created["stripe"]["subscription"]["checkout_url"].is_string(),
        "{created}"
    );
    let subscription_id = created["id"].as_str().unwrap().to_owned();
    let stripe_subscription = created["stripe"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Stripe could not charge the first invoice without a payment method.
    let mut waiting = fixture("subscription");
    waiting["id"] = json!(stripe_subscription);
    waiting["status"] = json!("incomplete");
    waiting["latest_invoice"] = json!("in_first");
    Mock::given(method("GET"))
        .and(path(format!("/v1/subscriptions/{stripe_subscription}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(waiting))
        .expect(1)
        .mount(&stripe.server)
        .await;

    let mut session = fixture("checkout_session");
    session["mode"] = json!("setup");
    session["setup_intent"] = json!("seti_added");
    session["metadata"] = json!({"tollbooth_subscription_id": subscription_id});
    let body = event(
        "evt_checkout",
        "checkout.session.completed",
        chrono::Utc::now().timestamp(),
        session,
    );
    assert_eq!(send_event(&app, &body).await, "applied");

    let mut paid = Vec::new();
    for _ in 0..100 {
        paid = stripe.requests("POST", "/v1/invoices/in_first/pay").await;
        if !paid.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(paid.len(), 1, "the waiting invoice was paid");
    assert_eq!(paid[0].field("payment_method"), Some("pm_card_added"));
    let (_, subscriber) = app.get("/v1/subscribers/acme").await;
    let customer_id = subscriber["stripe"]["objects"][0]["id"].as_str().unwrap();
    let updates = stripe.requests("POST", "/v1/customers/[^/]+").await;
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].path, format!("/v1/customers/{customer_id}"));
    assert_eq!(
        updates[0].field("invoice_settings[default_payment_method]"),
        Some("pm_card_added")
    );
    let key = updates[0].idempotency_key.as_deref().unwrap();
    assert_eq!(key, "tb-adopt-payment-method-seti_added");
    assert_eq!(
        paid[0].idempotency_key.as_deref(),
        Some(format!("{key}-pay-in_first").as_str())
    );

    let (_, read) = app
        .get(&format!("/v1/subscriptions/{subscription_id}"))
        .await;
    assert!(
        read["stripe"]["subscription"]["checkout_url"].is_null(),
        "{read}"
    );
    // A replay of the event sends nothing more (the mocks' `expect(1)` hold when they drop).
    assert_eq!(send_event(&app, &body).await, "replayed");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}
