//! Stripe webhooks signed in the test the way Stripe signs them, and the gateway's access decision
//! before and after what they say.

use crate::events::{now, post_events, record};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tollbooth::stripe::webhook::sign;

on_both_backends!(
    another_replica_sees_a_change_within_the_refresh_period,
    signatures_are_checked_and_a_bad_one_changes_nothing,
    each_event_is_handled_once_and_unknown_ones_are_acknowledged,
    updated_after_deleted_does_not_bring_a_subscription_back,
    access_follows_payment_through_the_grace_period,
    a_hard_quota_refuses_exactly_at_its_limit,
    the_provider_is_notified_signed_and_retried,
    invoices_read_as_their_newest_webhook_describes_them,
);

const OLD_SECRET: &str = "whsec_test_old";
pub const NEW_SECRET: &str = "whsec_test_new";

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |s| {
        s.stripe_webhook_secret = Some(format!("{OLD_SECRET},{NEW_SECRET}").into());
    })
    .await
}

/// A subscription (`acme-weather`, key `k1`) and a gateway key; the tier's quota when given.
async fn setup(app: &TestApp, hard_limit: Option<u64>) -> (String, String) {
    let (status, _) = app
        .post(
            "/v1/apis",
            &json!({"slug": "weather", "name": "Weather API"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut tier = crate::tiers::pro_tier("5.00");
    if let Some(limit) = hard_limit {
        tier["quota"] = json!({"hard_limit": limit});
    }
    let (status, body) = app.post("/v1/tiers", &tier).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, subscription) = app
        .post("/v1/subscriptions", &json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["k1"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");
    let (status, gateway) = app.post("/v1/gateways", &json!({"name": "kong"})).await;
    assert_eq!(status, StatusCode::CREATED);
    (
        subscription["id"].as_str().unwrap().to_owned(),
        gateway["key"].as_str().unwrap().to_owned(),
    )
}

/// A Stripe event built on Stripe's example event, about a tollbooth subscription.
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    let mut event = crate::stripe_mock::fixture("event");
    event["id"] = json!(id);
    event["type"] = json!(kind);
    event["created"] = json!(created);
    event["data"] = json!({"object": object});
    event.to_string()
}

/// A Stripe Subscription object that tollbooth made (its metadata names the subscription).
fn subscription_object(subscription_id: &str, status: &str) -> Value {
    let mut object = crate::stripe_mock::fixture("subscription");
    object["id"] = json!("sub_unknown_to_the_mirror");
    object["status"] = json!(status);
    object["metadata"] = json!({"tollbooth_subscription_id": subscription_id});
    object
}

/// An invoice of that Subscription.
fn invoice_object(subscription_id: &str) -> Value {
    let mut object = crate::stripe_mock::fixture("invoice");
    object["parent"] = json!({"type": "subscription_details", "quote_details": null,
        "subscription_details": {"subscription": "sub_unknown_to_the_mirror",
            "metadata": {"tollbooth_subscription_id": subscription_id}}});
    object
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn deliver(app: &TestApp, body: &str, signature: Option<String>) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    app.send(request).await
}

fn signed(secret: &str, t: i64, body: &str) -> Option<String> {
    Some(format!(
        "t={t},v1={}",
        hex::encode(sign(secret, t, body.as_bytes()))
    ))
}

/// Delivers an event signed with the current secret now, and answers its outcome.
pub async fn send_event(app: &TestApp, body: &str) -> String {
    let (status, answer) = deliver(app, body, signed(NEW_SECRET, unix_now(), body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["outcome"].as_str().unwrap().to_owned()
}

async fn authorize(app: &TestApp, key: &str, consumer: &str) -> (StatusCode, Value) {
    crate::forward_auth::ask(app, key, consumer, "weather").await
}

async fn status_of(app: &TestApp) -> String {
    let (_, read) = app.get("/v1/subscriptions/acme-weather").await;
    read["status"].as_str().unwrap().to_owned()
}

async fn signatures_are_checked_and_a_bad_one_changes_nothing(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (subscription, _) = setup(&app, None).await;
    let body = event(
        "evt_fail_1",
        "invoice.payment_failed",
        unix_now(),
        invoice_object(&subscription),
    );
    let now = unix_now();

    let tampered = body.replace("evt_fail_1", "evt_fail_2");
    let refused = [
        (
            "tampered body",
            deliver(&app, &tampered, signed(NEW_SECRET, now, &body)).await,
        ),
        (
            "wrong secret",
            deliver(&app, &body, signed("whsec_someone_else", now, &body)).await,
        ),
        (
            "stale timestamp",
            deliver(&app, &body, signed(NEW_SECRET, now - 301, &body)).await,
        ),
        ("no signature", deliver(&app, &body, None).await),
        (
            "malformed",
            deliver(&app, &body, Some("v1=zz".into())).await,
        ),
    ];
    for (case, (status, answer)) in refused {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {answer}");
        assert!(
            answer["error"]["code"]
                .as_str()
                .unwrap()
                .starts_with("invalid_"),
            "{case}: {answer}"
        );
    }
    assert_eq!(
        status_of(&app).await,
        "active",
        "a refused event changes nothing"
    );

    // Both secrets of a rotation are accepted; the event was not recorded by the refused tries.
    let (status, answer) = deliver(&app, &body, signed(OLD_SECRET, now, &body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "applied");
    assert_eq!(status_of(&app).await, "past_due");
    let paid = event(
        "evt_paid_1",
        "invoice.paid",
        unix_now() + 1,
        invoice_object(&subscription),
    );
    assert_eq!(send_event(&app, &paid).await, "applied");
    assert_eq!(status_of(&app).await, "active");
}

async fn each_event_is_handled_once_and_unknown_ones_are_acknowledged(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (subscription, _) = setup(&app, None).await;
    let failed = event(
        "evt_1",
        "invoice.payment_failed",
        unix_now() - 10,
        invoice_object(&subscription),
    );
    assert_eq!(send_event(&app, &failed).await, "applied");
    let paid = event(
        "evt_2",
        "invoice.paid",
        unix_now(),
        invoice_object(&subscription),
    );
    assert_eq!(send_event(&app, &paid).await, "applied");
    // The failure delivered again does nothing: the subscription stays paid.
    assert_eq!(send_event(&app, &failed).await, "replayed");
    assert_eq!(status_of(&app).await, "active");

    let other = event(
        "evt_3",
        "product.updated",
        unix_now(),
        crate::stripe_mock::fixture("product"),
    );
    assert_eq!(send_event(&app, &other).await, "ignored");
    let stranger = event(
        "evt_4",
        "invoice.paid",
        unix_now(),
        crate::stripe_mock::fixture("invoice"),
    );
    assert_eq!(send_event(&app, &stranger).await, "unknown_object");
    let (status, answer) = deliver(
        &app,
        "{\"id\": 1}",
        signed(NEW_SECRET, unix_now(), "{\"id\": 1}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_event");
}

async fn updated_after_deleted_does_not_bring_a_subscription_back(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (subscription, key) = setup(&app, None).await;
    let t = unix_now();
    let deleted = event(
        "evt_del",
        "customer.subscription.deleted",
        t,
        subscription_object(&subscription, "canceled"),
    );
    let updated = event(
        "evt_upd",
        "customer.subscription.updated",
        t - 60,
        subscription_object(&subscription, "active"),
    );
    assert_eq!(send_event(&app, &deleted).await, "applied");
    assert_eq!(send_event(&app, &updated).await, "stale");
    assert_eq!(status_of(&app).await, "canceled");
    let (status, answer) = authorize(&app, &key, "k1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(
        answer,
        json!({"allowed": false, "reason": "unknown_consumer"})
    );
    let late = event(
        "evt_upd2",
        "customer.subscription.updated",
        t + 60,
        subscription_object(&subscription, "active"),
    );
    assert_eq!(
        send_event(&app, &late).await,
        "stale",
        "nothing brings a canceled subscription back"
    );
}

async fn access_follows_payment_through_the_grace_period(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (subscription, key) = setup(&app, None).await;
    let (status, answer) = authorize(&app, &key, "k1").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"allowed": true, "subscription": subscription, "tier": "weather-pro", "remaining": null})
    );

    // A payment failed just now: past due, still inside the 3-day grace period.
    let failed = event(
        "evt_f1",
        "invoice.payment_failed",
        unix_now() - 5,
        invoice_object(&subscription),
    );
    assert_eq!(send_event(&app, &failed).await, "applied");
    let (status, _) = authorize(&app, &key, "k1").await;
    assert_eq!(status, StatusCode::OK, "inside the grace period");

    // Stripe says it failed four days ago: past the grace period, refused.
    let earlier = event(
        "evt_f0",
        "invoice.payment_failed",
        unix_now() - 4 * 86_400,
        invoice_object(&subscription),
    );
    // Delivered late, it is older than the state held, but the grace period runs from the first
    // failure: the same subscription is now past its grace period.
    assert_eq!(send_event(&app, &earlier).await, "applied");
    let (_, read) = app.get("/v1/subscriptions/acme-weather").await;
    assert_eq!(read["status"], "past_due");
    let (status, answer) = authorize(&app, &key, "k1").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
    // Paid since: back in; a failure older than the payment changes nothing.
    let paid = event(
        "evt_p1",
        "invoice.paid",
        unix_now() - 2,
        invoice_object(&subscription),
    );
    assert_eq!(send_event(&app, &paid).await, "applied");
    let (status, _) = authorize(&app, &key, "k1").await;
    assert_eq!(status, StatusCode::OK, "paid");
    let older = event(
        "evt_f00",
        "invoice.payment_failed",
        unix_now() - 5 * 86_400,
        invoice_object(&subscription),
    );
    assert_eq!(send_event(&app, &older).await, "stale");
    assert_eq!(status_of(&app).await, "active");

    // A new subscription whose first failure was four days ago.
    let (status, other) = app
        .post("/v1/subscriptions", &json!({"external_id": "acme-2", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["k2"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let other = other["id"].as_str().unwrap().to_owned();
    let old_failure = event(
        "evt_f2",
        "invoice.payment_failed",
        unix_now() - 4 * 86_400,
        invoice_object(&other),
    );
    assert_eq!(send_event(&app, &old_failure).await, "applied");
    let (status, answer) = authorize(&app, &key, "k2").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{answer}");
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["reason"], "payment_overdue");

    // Paid: back in.
    let paid = event("evt_p2", "invoice.paid", unix_now(), invoice_object(&other));
    assert_eq!(send_event(&app, &paid).await, "applied");
    let (status, _) = authorize(&app, &key, "k2").await;
    assert_eq!(status, StatusCode::OK);

    // Unknown keys, other apis, no gateway key.
    let (status, answer) = authorize(&app, &key, "nobody").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["reason"], "unknown_consumer");
    let (status, answer) = crate::forward_auth::ask(&app, &key, "k1", "maps").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["reason"], "not_subscribed");
    let (status, _) = app
        .send(
            app.client
                .get(app.url("/v1/authorize"))
                .header("x-api-key", "k1")
                .header("x-tollbooth-api", "weather"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = app
        .send(
            app.client
                .get(app.url("/v1/authorize"))
                .header("x-tollbooth-key", &key)
                .header("x-tollbooth-api", "weather"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["reason"], "missing_consumer");

    // Canceled now: refused.
    let (status, _) = app
        .post("/v1/subscriptions/acme-2/cancel", &json!({"at": "now"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = authorize(&app, &key, "k2").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn a_hard_quota_refuses_exactly_at_its_limit(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (_, key) = setup(&app, Some(3)).await;
    // The allowed call counts at once (held until its record arrives): two left after it.
    let (status, answer) = authorize(&app, &key, "k1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["remaining"], 2);

    let batch = |ids: &[&str], status: u16| {
        let records: Vec<Value> = ids
            .iter()
            .map(|id| {
                let mut r = record(id, status);
                r["timestamp"] = json!(now());
                r
            })
            .collect();
        Value::Array(records).to_string()
    };
    // Two billable calls (one of them the held one) and a failed one (not billable): this call
    // is the last one.
    let (status, _) = post_events(&app, &key, batch(&["q1", "q2"], 200)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post_events(&app, &key, batch(&["q3"], 503)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, answer) = authorize(&app, &key, "k1").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["remaining"], 0);

    // The third billable call reaches the limit: the next one is refused until the period ends.
    let (status, _) = post_events(&app, &key, batch(&["q4"], 200)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, answer) = authorize(&app, &key, "k1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["reason"], "quota_exhausted");
    assert_eq!(answer["remaining"], 0);
    assert_eq!(answer["limit"], 3);
    assert!(answer["resets_at"].as_str().unwrap() > now().as_str());
}

async fn the_provider_is_notified_signed_and_retried(backend: Backend) {
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let provider = MockServer::start().await;
    // Setting up tells the catalog's changes first, once each.
    const CATALOG: [&str; 4] = [
        "api.created",
        "tier.created",
        "subscriber.created",
        "subscription.created",
    ];
    for kind in CATALOG {
        Mock::given(method("POST"))
            .and(body_partial_json(json!({ "type": kind })))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .with_priority(1)
            .mount(&provider)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/hooks/tollbooth"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(2)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks/tollbooth"))
        .respond_with(ResponseTemplate::new(204))
        .expect(3)
        .with_priority(3)
        .mount(&provider)
        .await;
    let Some(app) = spawn_app_with(backend, |s| {
        s.stripe_webhook_secret = Some(NEW_SECRET.to_owned().into());
        s.notify_url = Some(format!("{}/hooks/tollbooth", provider.uri()));
        s.notify_secret = Some("ntf_provider_secret".to_owned().into());
        s.notify_retry_base = "10ms".to_owned().try_into().unwrap();
    })
    .await
    else {
        return;
    };
    let (subscription, key) = setup(&app, Some(1)).await;

    let failed = event(
        "evt_n1",
        "invoice.payment_failed",
        unix_now(),
        invoice_object(&subscription),
    );
    assert_eq!(send_event(&app, &failed).await, "applied");
    let (status, _) = post_events(
        &app,
        &key,
        Value::Array(vec![record("n1", 200)]).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Delivery is in the background: wait for the three notifications (one delivered twice).
    let mut received = Vec::new();
    let of_state = |requests: Vec<wiremock::Request>| -> Vec<wiremock::Request> {
        requests
            .into_iter()
            .filter(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                !CATALOG.iter().any(|kind| body["type"] == *kind)
            })
            .collect()
    };
    for _ in 0..100 {
        received = of_state(provider.received_requests().await.unwrap());
        if received.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        received.len(),
        4,
        "three notifications, one of them retried once"
    );
    let secrets = tollbooth::stripe::webhook::WebhookSecrets::parse(Some(
        &"ntf_provider_secret".to_owned().into(),
    ))
    .unwrap();
    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    for request in &received {
        let signature = request
            .headers
            .get("tollbooth-signature")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            secrets.verify(signature, &request.body, unix_now()),
            Ok(()),
            "signed like Stripe signs"
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body["data"]["subscription"],
            subscription.as_str(),
            "{body}"
        );
        ids.push(body["id"].as_str().unwrap().to_owned());
        kinds.push(body["type"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "invoice.payment_failed",
            "quota.reached",
            "subscription.status_changed"
        ]
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "the retry carries the same notification id");
}

/// With several replicas, a change made through one (a webhook, a new subscription) reaches the
/// access decision of another within the refresh period, here 200 ms.
async fn another_replica_sees_a_change_within_the_refresh_period(backend: Backend) {
    let refresh = |s: &mut tollbooth::config::Settings| {
        s.replica_refresh = "200ms".to_owned().try_into().expect("duration");
    };
    let Some(first) = spawn_app_with(backend, |s| {
        s.stripe_webhook_secret = Some(NEW_SECRET.to_owned().into());
        refresh(s);
    })
    .await
    else {
        return;
    };
    let (subscription, key) = setup(&first, None).await;
    let second = crate::helpers::spawn_replica(&first, refresh).await;
    assert_eq!(authorize(&second, &key, "k1").await.0, StatusCode::OK);

    let unpaid = event(
        "evt_u1",
        "invoice.marked_uncollectible",
        unix_now(),
        invoice_object(&subscription),
    );
    assert_eq!(send_event(&first, &unpaid).await, "applied");
    assert_eq!(
        authorize(&first, &key, "k1").await.0,
        StatusCode::PAYMENT_REQUIRED,
        "at once where it arrived"
    );
    assert!(
        eventually(|| async {
            authorize(&second, &key, "k1").await.0 == StatusCode::PAYMENT_REQUIRED
        })
        .await,
        "the other replica refuses too"
    );

    let (status, _) = first
        .post("/v1/subscriptions", &json!({"external_id": "acme-9", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["k9"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        eventually(|| async { authorize(&second, &key, "k9").await.0 == StatusCode::OK }).await,
        "the other replica knows the new consumer"
    );
}

/// Whether `check` holds within ten refresh periods (2 s), asked every 50 ms.
async fn eventually<F, Fut>(check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..40 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// `GET /v1/subscriptions/{id}/invoices`: each Stripe invoice as its newest `invoice.*` event
/// describes it, in the currency's units; an older event delivered late, or one delivered again,
/// changes nothing.
async fn invoices_read_as_their_newest_webhook_describes_them(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (subscription, _) = setup(&app, None).await;
    let invoice = |status: &str, paid: i64| {
        let mut object = invoice_object(&subscription);
        object["status"] = json!(status);
        object["amount_due"] = json!(2_500);
        object["total"] = json!(2_500);
        object["amount_paid"] = json!(paid);
        object["period_start"] = json!(1_796_083_200);
        object["period_end"] = json!(1_798_761_600);
        if status != "draft" {
            object["number"] = json!("ACME-0001");
            object["hosted_invoice_url"] = json!("https://invoice.stripe.com/i/acct_1/test_1");
        }
        object
    };
    let base = 1_798_761_600;
    let steps = [
        (
            "evt_inv_1",
            "invoice.created",
            base,
            invoice("draft", 0),
            "draft",
        ),
        (
            "evt_inv_2",
            "invoice.finalized",
            base + 60,
            invoice("open", 0),
            "open",
        ),
        (
            "evt_inv_3",
            "invoice.payment_failed",
            base + 120,
            invoice("open", 0),
            "failed",
        ),
        (
            "evt_inv_4",
            "invoice.paid",
            base + 180,
            invoice("paid", 2_500),
            "paid",
        ),
    ];
    for (id, kind, created, object, payment) in steps {
        send_event(&app, &event(id, kind, created, object)).await;
        let invoices = listed(&app).await;
        assert_eq!(invoices.len(), 1, "{invoices:?}");
        assert_eq!(invoices[0]["payment"], payment, "{kind}: {:?}", invoices[0]);
    }
    let paid = listed(&app).await[0].clone();
    assert_eq!(paid["total"], "25.00", "{paid}");
    assert_eq!(paid["amount_paid"], "25.00", "{paid}");
    assert_eq!(paid["currency"], "usd");
    assert_eq!(paid["number"], "ACME-0001");
    assert!(paid["payment_failed_at"].is_null(), "{paid}");
    assert_eq!(paid["period_start"], "2026-12-01T00:00:00.000Z", "{paid}");

    // Late and again: the failure delivered after the payment, and the payment a second time.
    let late = event(
        "evt_inv_5",
        "invoice.payment_failed",
        base + 150,
        invoice("open", 0),
    );
    send_event(&app, &late).await;
    send_event(
        &app,
        &event(
            "evt_inv_4",
            "invoice.paid",
            base + 180,
            invoice("paid", 2_500),
        ),
    )
    .await;
    assert_eq!(listed(&app).await, vec![paid]);

    let (status, _) = app.get("/v1/subscriptions/nobody/invoices").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn listed(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("/v1/subscriptions/acme-weather/invoices").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}
