//! How tollbooth reads what Stripe answers when it is not a plain success: a refused update is
//! a late item only when Stripe's code says the invoice is no longer a draft, and an answer that
//! cannot be read is reported with its request, never taken for a passing failure and sent again.

use crate::billing::{Runner, calls, daily_subscription, next, setup, today};
use crate::helpers::{
    Backend, TestApp, assert_error, on_both_backends, spawn_app_with, use_stripe,
};
use crate::stripe_mock::{StripeMock, fixture};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tollbooth::billing::RunReport;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, Request, ResponseTemplate};

on_both_backends!(
    an_update_refused_as_invoice_not_editable_becomes_a_late_item,
    an_update_refused_for_another_reason_is_a_failure_and_no_late_item,
    an_unreadable_answer_to_an_invoice_item_is_a_failure_sent_once,
    an_unreadable_answer_to_a_product_is_a_502_sent_once,
    a_sync_sends_a_write_whose_answer_was_unreadable_once,
);

/// Longer than what is shown of an answer: the end must not be shown.
fn unreadable_page() -> String {
    format!(
        "<html><body>upstream proxy: ok{}</body><!-- the end --></html>",
        " ".repeat(400)
    )
}

fn is_late_item(request: &Request) -> bool {
    request
        .headers
        .get("idempotency-key")
        .and_then(|key| key.to_str().ok())
        .is_some_and(|key| key.starts_with("tb-late-"))
}

/// A daily subscription reported today with three calls, and a fourth call; at tomorrow's close
/// Stripe refuses the item's update with `code`. Late items are expected `late` times. Answers
/// tomorrow's report and the late items Stripe received.
async fn refused_at_the_close(
    backend: Backend,
    code: &str,
    late: u64,
) -> Option<(RunReport, Vec<crate::stripe_mock::SeenRequest>)> {
    let stripe = StripeMock::start().await;
    let mut made = fixture("invoiceitem");
    made["id"] = json!("ii_late");
    Mock::given(method("POST"))
        .and(path("/v1/invoiceitems"))
        .and(is_late_item)
        .respond_with(ResponseTemplate::new(200).set_body_json(made))
        .expect(late)
        .with_priority(1)
        .named("the late item")
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/invoiceitems", "invoiceitem", "ii")
        .expect(1)
        .with_priority(2)
        .named("today's item")
        .mount(&stripe.server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/invoiceitems/[^/]+$"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "type": "invalid_request_error", "code": code, "param": "amount",
            "message": format!("refused: {code}")}})))
        .expect(1)
        .with_priority(1)
        .named("the update at the close, refused")
        .mount(&stripe.server)
        .await;
    stripe.mount_catalog().await;
    let app = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await?;
    let (key, _) = setup(&app, 0).await;
    daily_subscription(&app).await;
    calls(&app, &key, "d1", &["t1", "t2", "t3"]).await;
    let runner = Runner::new(&app, &stripe).await;
    let report = runner.job("r").run_day(today()).await.unwrap();
    assert_eq!(report.items_created, 1, "{report:?}");
    calls(&app, &key, "d1", &["t4"]).await;
    let report = runner.job("r").run_day(next(today(), 1)).await.unwrap();
    let late_items = stripe
        .requests("POST", "/v1/invoiceitems")
        .await
        .into_iter()
        .filter(|r| {
            r.idempotency_key
                .as_deref()
                .is_some_and(|k| k.starts_with("tb-late-"))
        })
        .collect();
    runner.store.close().await;
    Some((report, late_items))
}

async fn an_update_refused_as_invoice_not_editable_becomes_a_late_item(backend: Backend) {
    let Some((report, late)) = refused_at_the_close(backend, "invoice_not_editable", 1).await
    else {
        return;
    };
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        (report.cycles_closed, report.late_items),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(late[0].field("amount"), Some("50"), "the fourth call only");
    assert!(
        late[0]
            .field("description")
            .unwrap()
            .starts_with(&format!("Late usage for the period from {}", today())),
        "{late:?}"
    );
    assert_eq!(report.reconciliation[0].difference.to_string(), "0.00");
}

async fn an_update_refused_for_another_reason_is_a_failure_and_no_late_item(backend: Backend) {
    let Some((report, late)) = refused_at_the_close(backend, "parameter_invalid_integer", 0).await
    else {
        return;
    };
    assert!(late.is_empty(), "{late:?}");
    assert_eq!(
        (report.late_items, report.subscriptions_reported),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(
        report.cycles_closed, 0,
        "the period closes once it goes through"
    );
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert!(
        report.failures[0]
            .error
            .contains("parameter_invalid_integer"),
        "{report:?}"
    );
    let reconciliation = &report.reconciliation[0];
    assert_eq!(
        reconciliation.difference.to_string(),
        "0.50",
        "the fourth call is not billed yet: {reconciliation:?}"
    );
}

async fn an_unreadable_answer_to_an_invoice_item_is_a_failure_sent_once(backend: Backend) {
    let stripe = StripeMock::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoiceitems"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "invoiceitem", "id": "ii_cut_short"})),
        )
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe.mount_catalog().await;
    let Some(app) = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await else {
        return;
    };
    let (key, _) = setup(&app, 1).await;
    calls(&app, &key, "k1", &["c1"]).await;
    let runner = Runner::new(&app, &stripe).await;

    let report = runner.job("r").run_day(today()).await.unwrap();
    assert_eq!(
        (report.subscriptions_reported, report.items_created),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let error = &report.failures[0].error;
    for shown in ["POST /v1/invoiceitems", "InvoiceItem", "ii_cut_short"] {
        assert!(error.contains(shown), "{shown} in {error}");
    }
    runner.store.close().await;
}

/// A mock Stripe that answers a Product create with a page that is not a Product, once, and
/// must never be asked for what needs the Product.
async fn stripe_with_unreadable_products() -> StripeMock {
    let stripe = StripeMock::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/products"))
        .respond_with(ResponseTemplate::new(200).set_body_string(unreadable_page()))
        .expect(1)
        .with_priority(1)
        .named("the Product create")
        .mount(&stripe.server)
        .await;
    for (path, name) in [
        ("/v1/prices", "Price"),
        ("/v1/subscriptions", "Subscription"),
    ] {
        Mock::given(method("POST"))
            .and(wiremock::matchers::path(path))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .with_priority(1)
            .named(format!("{name}s need the Product: never sent"))
            .mount(&stripe.server)
            .await;
    }
    stripe.mount_catalog().await;
    stripe
}

async fn post_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.post(path, &body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

async fn an_unreadable_answer_to_a_product_is_a_502_sent_once(backend: Backend) {
    let stripe = stripe_with_unreadable_products().await;
    let Some(app) = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await else {
        return;
    };
    crate::tiers::create_weather_api(&app).await;

    let answer = app.post("/v1/tiers", &crate::tiers::pro_tier("5.00")).await;
    assert_error(&answer, StatusCode::BAD_GATEWAY, "stripe_unreadable", None);
    let error = &answer.1["error"];
    assert_eq!(error["details"]["stripe_request"], "POST /v1/products");
    assert_eq!(error["details"]["expected"], "Product");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("upstream proxy: ok"), "{message}");
    assert!(
        !message.contains("the end"),
        "only the start is shown: {message}"
    );
    let (status, kept) = app.get("/v1/tiers/weather-pro").await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["stripe"]["state"], "failed", "{kept}");
}

/// Two subscriptions on a tier made in ledger mode; at the sync Stripe answers the Product
/// create with something unreadable. The Product is asked for once, not once per Price and
/// Subscription that needs it, and the log says what was asked and what came back.
async fn a_sync_sends_a_write_whose_answer_was_unreadable_once(backend: Backend) {
    let stripe = stripe_with_unreadable_products().await;
    // Ledger mode: everything waits for the sync.
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    crate::tiers::create_weather_api(&app).await;
    post_ok(&app, "/v1/tiers", crate::tiers::pro_tier("5.00")).await;
    for n in 1..=2 {
        post_ok(&app, "/v1/subscribers", json!({"external_id": format!("acme{n}"), "name": "Acme", "email": "billing@acme.example"})).await;
        post_ok(&app, "/v1/subscriptions", json!({"external_id": format!("acme-{n}"), "subscriber": format!("acme{n}"), "tier": "weather-pro", "consumer_keys": [format!("k{n}")]})).await;
    }

    let sync = std::process::Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .args(["stripe", "sync"])
        .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
        .env("STRIPE_SECRET_KEY", "sk_test_tollbooth")
        .env("STRIPE_API_BASE", stripe.uri())
        .env("TOLLBOOTH_STRIPE_RETRY_BASE", "10ms")
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .env_remove("TOLLBOOTH_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run tollbooth stripe sync");
    let stdout = String::from_utf8_lossy(&sync.stdout);
    let stderr = String::from_utf8_lossy(&sync.stderr);
    assert!(!sync.status.success(), "{stdout}\n{stderr}");
    let products = stripe.requests("POST", "/v1/products").await.len();
    assert_eq!(products, 1, "the Product create is sent once: {stdout}");
    assert!(
        stdout.contains("stripe sync: 2 written, 4 failed"),
        "the two Customers are written; the Product, its Price and both Subscriptions wait: {stdout}"
    );
    let logged = stderr
        .lines()
        .find(|line| line.contains("could not be read"))
        .unwrap_or_else(|| panic!("no log line: {stderr}"));
    for shown in ["POST /v1/products", "Product", "upstream proxy: ok"] {
        assert!(logged.contains(shown), "{shown} in {logged}");
    }
    assert!(!logged.contains("the end"), "{logged}");
    assert!(!stderr.contains("sk_test_tollbooth"), "{stderr}");
    assert_eq!(stripe.requests("POST", "/v1/customers").await.len(), 2);
}
