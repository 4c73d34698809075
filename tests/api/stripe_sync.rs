//! The Stripe mapping against a mock Stripe: what is sent for each catalog object, with which
//! Idempotency-Key and account, and what happens when Stripe fails.

use crate::helpers::{
    Backend, TestApp, assert_error, on_both_backends, spawn_app_with, use_stripe,
};
use crate::stripe_mock::{StripeMock, fixture};
use crate::tiers::pro_tier;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

on_both_backends!(
    a_paid_tier_becomes_a_product_and_a_price_and_a_new_version_a_new_price,
    free_tiers_never_call_stripe,
    a_subscription_becomes_a_stripe_subscription_with_a_checkout_link,
    a_tier_change_moves_the_price_and_cancel_now_makes_a_final_invoice,
    a_500_then_200_sends_the_same_key_twice_and_stores_one_object,
    a_429_is_waited_out,
    a_lost_answer_then_a_rerun_makes_no_second_object,
    a_stripe_4xx_reaches_the_admin_caller_and_the_row_is_kept,
    each_provider_writes_to_its_own_account,
    ledger_mode_then_sync_mirrors_everything_once,
);

async fn app_with_stripe(backend: Backend, stripe: &StripeMock) -> Option<TestApp> {
    spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await
}

async fn post_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.post(path, &body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

fn weather_api() -> Value {
    json!({"slug": "weather", "name": "Weather API"})
}

fn acme() -> Value {
    json!({"external_id": "acme", "name": "Acme Corp", "email": "billing@acme.example"})
}

fn acme_weather() -> Value {
    json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["acme-app-1"]})
}

async fn a_paid_tier_becomes_a_product_and_a_price_and_a_new_version_a_new_price(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe
        .object("POST", "/v1/products", "product", "prod")
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/prices", "price", "price")
        .expect(2)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/prices/price_test2", "price", "price")
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    let Some(app) = app_with_stripe(backend, &stripe).await else {
        return;
    };
    post_ok(&app, "/v1/apis", weather_api()).await;

    let v1 = post_ok(&app, "/v1/tiers", pro_tier("5.00")).await;
    assert_eq!(v1["stripe"]["state"], "synced", "{v1}");
    let tier_id = v1["id"].as_str().unwrap();
    let product = &stripe.requests("POST", "/v1/products").await[0];
    assert_eq!(product.field("name"), Some("Pro"));
    assert_eq!(product.field("metadata[tollbooth_tier_id]"), Some(tier_id));
    assert_eq!(
        product.field("metadata[tollbooth_tier]"),
        Some("weather-pro")
    );
    assert_eq!(
        product.idempotency_key.as_deref(),
        Some(format!("tb-product-{tier_id}").as_str())
    );
    assert_eq!(product.account, None);
    let price = &stripe.requests("POST", "/v1/prices").await[0];
    assert_eq!(price.field("currency"), Some("usd"));
    assert_eq!(price.field("unit_amount"), Some("2500"));
    assert_eq!(price.field("recurring[interval]"), Some("month"));
    assert_eq!(price.field("recurring[interval_count]"), Some("1"));
    assert_eq!(price.field("product"), Some("prod_test1"));
    assert_eq!(price.field("metadata[tollbooth_tier_version]"), Some("1"));
    let v1_id = v1["version_id"].as_str().unwrap();
    assert_eq!(
        price.idempotency_key.as_deref(),
        Some(format!("tb-price-{v1_id}").as_str())
    );
    assert_eq!(
        v1["stripe"]["objects"],
        json!([{"kind": "product", "id": "prod_test1"}, {"kind": "price", "id": "price_test2"}])
    );

    // The same definition again sends nothing; a new version makes a new Price and retires the old.
    post_ok(&app, "/v1/tiers", pro_tier("5.00")).await;
    let mut v2_tier = pro_tier("4.00");
    v2_tier["fixed_fee"]["amount"] = json!("19.99");
    let v2 = post_ok(&app, "/v1/tiers", v2_tier).await;
    assert_eq!(v2["version"], 2);
    let prices = stripe.requests("POST", "/v1/prices").await;
    assert_eq!(prices.len(), 2);
    assert_eq!(prices[1].field("unit_amount"), Some("1999"));
    assert_eq!(
        prices[1].field("product"),
        Some("prod_test1"),
        "the Product is the tier's, made once"
    );
    let retired = &stripe.requests("POST", "/v1/prices/price_test2").await[0];
    assert_eq!(retired.field("active"), Some("false"));
    assert_eq!(v2["stripe"]["objects"][1]["id"], "price_test3");
}

async fn free_tiers_never_call_stripe(backend: Backend) {
    let stripe = StripeMock::start().await;
    for endpoint in [
        "/v1/products",
        "/v1/prices",
        "/v1/subscriptions",
        "/v1/checkout/sessions",
    ] {
        Mock::given(path_regex(format!("^{endpoint}")))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(&stripe.server)
            .await;
    }
    stripe.mount_catalog().await;
    let Some(app) = app_with_stripe(backend, &stripe).await else {
        return;
    };
    post_ok(&app, "/v1/apis", weather_api()).await;
    let free = json!({"slug": "weather-free", "api": "weather", "name": "Free", "currency": "usd",
                      "usage": {"model": "per_unit", "unit_price": "0"}, "quota": {"hard_limit": 1000}});
    let tier = post_ok(&app, "/v1/tiers", free).await;
    assert_eq!(tier["stripe"]["state"], "not_needed");
    post_ok(&app, "/v1/subscribers", acme()).await;
    let mut subscription = acme_weather();
    subscription["tier"] = json!("weather-free");
    let created = post_ok(&app, "/v1/subscriptions", subscription).await;
    assert_eq!(created["stripe"]["state"], "not_needed");
    let (status, canceled) = app
        .post(
            "/v1/subscriptions/acme-weather/cancel",
            &json!({"at": "now"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
}

async fn a_subscription_becomes_a_stripe_subscription_with_a_checkout_link(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe
        .object("POST", "/v1/customers", "customer", "cus")
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/subscriptions", "subscription", "sub")
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/checkout/sessions", "checkout_session", "cs")
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/subscriptions/[^/]+", "subscription", "sub")
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe.mount_catalog().await;
    let Some(app) = app_with_stripe(backend, &stripe).await else {
        return;
    };
    post_ok(&app, "/v1/apis", weather_api()).await;
    let tier = post_ok(&app, "/v1/tiers", pro_tier("5.00")).await;

    let subscriber = post_ok(&app, "/v1/subscribers", acme()).await;
    assert_eq!(subscriber["stripe"]["state"], "synced", "{subscriber}");
    assert_eq!(subscriber["stripe"]["objects"][0]["id"], "cus_test3");
    let customer = &stripe.requests("POST", "/v1/customers").await[0];
    assert_eq!(customer.field("name"), Some("Acme Corp"));
    assert_eq!(customer.field("email"), Some("billing@acme.example"));
    assert_eq!(
        customer.field("metadata[tollbooth_external_id]"),
        Some("acme")
    );
    let subscriber_id = subscriber["id"].as_str().unwrap();
    assert_eq!(
        customer.idempotency_key.as_deref(),
        Some(format!("tb-customer-{subscriber_id}").as_str())
    );

    let created = post_ok(&app, "/v1/subscriptions", acme_weather()).await;
    let subscription_id = created["id"].as_str().unwrap();
    let sent = &stripe.requests("POST", "/v1/subscriptions").await[0];
    assert_eq!(sent.field("customer"), Some("cus_test3"));
    assert_eq!(sent.field("items[0][price]"), Some("price_test2"));
    assert_eq!(
        sent.field("collection_method"),
        Some("charge_automatically")
    );
    assert_eq!(sent.field("proration_behavior"), Some("create_prorations"));
    let today = chrono::Utc::now().date_naive();
    use chrono::Datelike;
    assert_eq!(
        sent.field("billing_cycle_anchor_config[day_of_month]"),
        Some(today.day().to_string().as_str())
    );
    assert_eq!(sent.field("billing_cycle_anchor_config[hour]"), Some("0"));
    assert_eq!(sent.field("billing_cycle_anchor_config[minute]"), Some("0"));
    assert_eq!(sent.field("billing_cycle_anchor_config[second]"), Some("0"));
    let midnight = today.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    assert_eq!(
        sent.field("backdate_start_date"),
        Some(midnight.to_string().as_str()),
        "the first period starts at midnight, a whole period"
    );
    assert_eq!(
        sent.field("metadata[tollbooth_subscription_id]"),
        Some(subscription_id)
    );
    let version_id = tier["version_id"].as_str().unwrap();
    assert_eq!(
        sent.idempotency_key.as_deref(),
        Some(format!("tb-subscription-{subscription_id}-{version_id}").as_str())
    );
    // A new Customer has no payment method: the answer carries a setup-mode Checkout link.
    let checkout = &stripe.requests("POST", "/v1/checkout/sessions").await[0];
    assert_eq!(checkout.field("mode"), Some("setup"));
    assert_eq!(checkout.field("customer"), Some("cus_test3"));
    assert_eq!(
        checkout.field("success_url"),
        Some("https://provider.example/billing/done")
    );
    let mirrored = &created["stripe"]["subscription"];
    assert_eq!(created["stripe"]["state"], "synced", "{created}");
    assert_eq!(mirrored["id"], "sub_test4");
    assert_eq!(mirrored["status"], "active");
    assert_eq!(mirrored["current_period_end"], "2026-10-21T14:13:20.000Z");
    assert!(
        mirrored["checkout_url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/")
    );

    // Cancel at the period end: Stripe's flag, and the subscription keeps running until then.
    let (status, canceling) = app
        .post(
            "/v1/subscriptions/acme-weather/cancel",
            &json!({"at": "period_end"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{canceling}");
    assert_eq!(canceling["status"], "active");
    assert_eq!(canceling["cancel_at_period_end"], true);
    assert_eq!(
        canceling["stripe"]["subscription"]["cancel_at_period_end"],
        true
    );
    let update = &stripe.requests("POST", "/v1/subscriptions/[^/]+").await[0];
    assert_eq!(update.path, "/v1/subscriptions/sub_test4");
    assert_eq!(update.field("cancel_at_period_end"), Some("true"));
    let (status, _) = app
        .post(
            "/v1/subscriptions/acme-weather/cancel",
            &json!({"at": "period_end"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "asking again changes nothing");
    let (_, read) = app
        .get(&format!("/v1/subscriptions/{subscription_id}"))
        .await;
    assert_eq!(read["stripe"]["subscription"]["id"], "sub_test4");
}

async fn a_tier_change_moves_the_price_and_cancel_now_makes_a_final_invoice(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe
        .object("POST", "/v1/subscriptions/[^/]+", "subscription", "sub")
        .expect(3)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("DELETE", "/v1/subscriptions/[^/]+", "subscription", "sub")
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe.mount_catalog().await;
    let Some(app) = app_with_stripe(backend, &stripe).await else {
        return;
    };
    post_ok(&app, "/v1/apis", weather_api()).await;
    post_ok(&app, "/v1/tiers", pro_tier("5.00")).await;
    let mut scale = pro_tier("5.00");
    scale["slug"] = json!("weather-scale");
    scale["name"] = json!("Scale");
    scale["fixed_fee"]["amount"] = json!("99.00");
    scale["proration"] = json!("none");
    let scale = post_ok(&app, "/v1/tiers", scale).await;
    post_ok(&app, "/v1/subscribers", acme()).await;
    let created = post_ok(&app, "/v1/subscriptions", acme_weather()).await;
    let stripe_subscription = created["stripe"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, moved) = app
        .post(
            "/v1/subscriptions/acme-weather/tier",
            &json!({"tier": "weather-scale"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{moved}");
    assert_eq!(moved["tier"], "weather-scale");
    let scale_price = scale["stripe"]["objects"][1]["id"].as_str().unwrap();
    let update = &stripe.requests("POST", "/v1/subscriptions/[^/]+").await[0];
    assert_eq!(
        update.path,
        format!("/v1/subscriptions/{stripe_subscription}")
    );
    assert_eq!(
        update.field("items[0][id]"),
        Some(format!("si_{stripe_subscription}").as_str())
    );
    assert_eq!(update.field("items[0][price]"), Some(scale_price));
    assert_eq!(
        update.field("proration_behavior"),
        Some("none"),
        "the new tier's proration"
    );

    // Back to pro, then to scale again: each move is its own request, under its own key.
    for tier in ["weather-pro", "weather-scale"] {
        let (status, moved) = app
            .post(
                "/v1/subscriptions/acme-weather/tier",
                &json!({"tier": tier}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{moved}");
        assert_eq!(moved["stripe"]["state"], "synced", "{moved}");
    }
    let updates = stripe.requests("POST", "/v1/subscriptions/[^/]+").await;
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[2].field("items[0][price]"), Some(scale_price));
    let keys: std::collections::HashSet<_> =
        updates.iter().map(|u| u.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 3, "{updates:?}");
    assert!(
        updates[2]
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.ends_with("-c2")),
        "{updates:?}"
    );

    let (status, canceled) = app
        .post(
            "/v1/subscriptions/acme-weather/cancel",
            &json!({"at": "now"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["consumer_keys"], json!([]));
    assert_eq!(canceled["stripe"]["subscription"]["status"], "canceled");
    let delete = &stripe.requests("DELETE", "/v1/subscriptions/[^/]+").await[0];
    assert_eq!(delete.field("invoice_now"), Some("true"));
    assert_eq!(delete.field("prorate"), Some("false"));
    let answer = app
        .post(
            "/v1/subscriptions/acme-weather/cancel",
            &json!({"at": "now"}),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", None);
    let answer = app
        .post(
            "/v1/subscriptions/acme-weather/cancel",
            &json!({"at": "tomorrow"}),
        )
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.1);
}

async fn a_500_then_200_sends_the_same_key_twice_and_stores_one_object(backend: Backend) {
    let stripe = StripeMock::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "try again"}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/customers", "customer", "cus")
        .expect(1)
        .with_priority(2)
        .mount(&stripe.server)
        .await;
    let Some(app) = app_with_stripe(backend, &stripe).await else {
        return;
    };

    let created = post_ok(&app, "/v1/subscribers", acme()).await;
    assert_eq!(created["stripe"]["state"], "synced", "{created}");
    let sent = stripe.requests("POST", "/v1/customers").await;
    assert_eq!(sent.len(), 2);
    assert!(sent[0].idempotency_key.is_some());
    assert_eq!(
        sent[0].idempotency_key, sent[1].idempotency_key,
        "a retry keeps its key"
    );
    assert_eq!(sent[0].form, sent[1].form);
    assert_eq!(stripe.objects_made("tb-customer"), 1);
    assert_eq!(
        created["stripe"]["objects"],
        json!([{"kind": "customer", "id": "cus_test1"}])
    );
}

async fn a_429_is_waited_out(backend: Backend) {
    let stripe = StripeMock::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/customers", "customer", "cus")
        .expect(1)
        .with_priority(2)
        .mount(&stripe.server)
        .await;
    let Some(app) = app_with_stripe(backend, &stripe).await else {
        return;
    };

    let started = Instant::now();
    let created = post_ok(&app, "/v1/subscribers", acme()).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(created["stripe"]["state"], "synced");
    let sent = stripe.requests("POST", "/v1/customers").await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].idempotency_key, sent[1].idempotency_key);
}

/// A slow answer: Stripe made the object, but tollbooth gave up waiting before it heard.
struct Slow(ResponseTemplate);

impl wiremock::Respond for Slow {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.0.clone().set_delay(Duration::from_secs(2))
    }
}

async fn a_lost_answer_then_a_rerun_makes_no_second_object(backend: Backend) {
    let stripe = StripeMock::start().await;
    // Stripe's answer to the first attempt is the customer it made, but it comes too late.
    let mut lost = fixture("customer");
    lost["id"] = json!("cus_lost");
    lost["invoice_settings"]["default_payment_method"] = Value::Null;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(Slow(ResponseTemplate::new(200).set_body_json(&lost)))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    // Stripe replays the stored answer for the same key.
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(&lost)
                .insert_header("Idempotent-Replayed", "true"),
        )
        .expect(1)
        .with_priority(2)
        .mount(&stripe.server)
        .await;
    let Some(app) = spawn_app_with(backend, |s| {
        use_stripe(s, &stripe.uri());
        s.stripe_timeout = "300ms".to_owned().try_into().unwrap();
        s.stripe_max_attempts = std::num::NonZeroU32::new(1).unwrap();
    })
    .await
    else {
        return;
    };

    let answer = app.post("/v1/subscribers", &acme()).await;
    assert_error(&answer, StatusCode::BAD_GATEWAY, "stripe_unavailable", None);
    let (status, kept) = app.get("/v1/subscribers/acme").await;
    assert_eq!(status, StatusCode::OK, "the subscriber is saved: {kept}");
    assert_eq!(kept["stripe"]["state"], "failed");
    assert!(
        kept["stripe"]["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{kept}"
    );

    // `tollbooth stripe sync` runs the intent again with the same key.
    let store = tollbooth::store::Store::connect(&app.database_url)
        .await
        .unwrap();
    let mut settings = crate::helpers::test_settings(&app.database_url);
    use_stripe(&mut settings, &stripe.uri());
    let report = tollbooth::stripe::Stripe::from_settings(&settings)
        .unwrap()
        .sync(&store)
        .await
        .unwrap();
    assert_eq!((report.done, report.failed), (1, 0), "{report:?}");
    let sent = stripe.requests("POST", "/v1/customers").await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].idempotency_key, sent[1].idempotency_key);
    let (_, synced) = app.get("/v1/subscribers/acme").await;
    assert_eq!(synced["stripe"]["state"], "synced");
    assert_eq!(
        synced["stripe"]["objects"],
        json!([{"kind": "customer", "id": "cus_lost"}])
    );
    store.close().await;
}

async fn a_stripe_4xx_reaches_the_admin_caller_and_the_row_is_kept(backend: Backend) {
    let stripe = StripeMock::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "type": "invalid_request_error", "code": "email_invalid", "param": "email",
            "message": "Invalid email address: billing@acme.example"}})))
        .expect(1)
        .mount(&stripe.server)
        .await;
    let Some(app) = app_with_stripe(backend, &stripe).await else {
        return;
    };

    let answer = app.post("/v1/subscribers", &acme()).await;
    assert_error(&answer, StatusCode::BAD_GATEWAY, "stripe_refused", None);
    let error = &answer.1["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Invalid email address"),
        "{error}"
    );
    assert_eq!(error["details"]["stripe_status"], 400);
    assert_eq!(error["details"]["stripe_code"], "email_invalid");
    assert_eq!(error["details"]["stripe_param"], "email");
    let (status, kept) = app.get("/v1/subscribers/acme").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kept["stripe"]["state"], "failed");
}

async fn each_provider_writes_to_its_own_account(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe.mount_catalog().await;
    let Some(app) = app_with_stripe(backend, &stripe).await else {
        return;
    };
    post_ok(
        &app,
        "/v1/apis",
        json!({"slug": "maps", "name": "Maps API", "stripe_account": "acct_1MapsProvider"}),
    )
    .await;
    post_ok(&app, "/v1/apis", weather_api()).await;
    let mut maps = pro_tier("5.00");
    maps["slug"] = json!("maps-pro");
    maps["api"] = json!("maps");
    let maps_tier = post_ok(&app, "/v1/tiers", maps).await;
    post_ok(&app, "/v1/tiers", pro_tier("5.00")).await;
    post_ok(&app, "/v1/subscribers", acme()).await;
    let mut on_maps = acme_weather();
    on_maps["external_id"] = json!("acme-maps");
    on_maps["tier"] = json!("maps-pro");
    let subscription = post_ok(&app, "/v1/subscriptions", on_maps).await;
    assert_eq!(subscription["stripe"]["state"], "synced", "{subscription}");
    assert_eq!(
        maps_tier["stripe"]["objects"][0]["account"],
        "acct_1MapsProvider"
    );

    let maps_account = Some("acct_1MapsProvider".to_owned());
    let products = stripe.requests("POST", "/v1/products").await;
    assert_eq!(products.len(), 2);
    assert_eq!(products[0].account, maps_account);
    assert_eq!(
        products[1].account, None,
        "the weather api lives in the platform account"
    );
    // The subscriber is a Customer in the platform account, and another in the provider's.
    let customers = stripe.requests("POST", "/v1/customers").await;
    assert_eq!(customers.len(), 2);
    assert_eq!(customers[0].account, None);
    assert_eq!(customers[1].account, maps_account);
    assert!(
        customers[1]
            .idempotency_key
            .as_deref()
            .unwrap()
            .ends_with("-acct_1MapsProvider")
    );
    let subscriptions = stripe.requests("POST", "/v1/subscriptions").await;
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0].account, maps_account);
    assert_eq!(subscriptions[0].field("customer"), Some("cus_test6"));
    for request in stripe.requests("GET", "/v1/customers/[^/]+").await {
        assert_eq!(request.account, maps_account);
    }
}

async fn ledger_mode_then_sync_mirrors_everything_once(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe.mount_catalog().await;
    // No Stripe key: everything works locally and waits.
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    post_ok(&app, "/v1/apis", weather_api()).await;
    let tier = post_ok(&app, "/v1/tiers", pro_tier("5.00")).await;
    assert_eq!(tier["stripe"]["state"], "pending");
    post_ok(&app, "/v1/subscribers", acme()).await;
    let created = post_ok(&app, "/v1/subscriptions", acme_weather()).await;
    assert_eq!(created["stripe"]["state"], "pending");
    let (_, usage) = app
        .get("/v1/subscriptions/acme-weather/invoice-preview")
        .await;
    assert_eq!(
        usage["currency"], "usd",
        "rating works without Stripe: {usage}"
    );

    // A changed subscriber in the file: an update owed too.
    let file = tollbooth::catalog::CatalogFile::parse(
        r#"{"subscribers": [{"external_id": "acme", "name": "Acme Corporation", "email": "billing@acme.example"}]}"#,
    )
    .unwrap();
    let store = tollbooth::store::Store::connect(&app.database_url)
        .await
        .unwrap();
    tollbooth::catalog::apply_file(&store, &file).await.unwrap();

    let mut settings = crate::helpers::test_settings(&app.database_url);
    use_stripe(&mut settings, &stripe.uri());
    let live = tollbooth::stripe::Stripe::from_settings(&settings).unwrap();
    let report = live.sync(&store).await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(stripe.requests("POST", "/v1/products").await.len(), 1);
    assert_eq!(stripe.requests("POST", "/v1/prices").await.len(), 1);
    assert_eq!(stripe.requests("POST", "/v1/customers").await.len(), 1);
    let update = stripe.requests("POST", "/v1/customers/[^/]+").await;
    assert_eq!(update.len(), 1);
    assert_eq!(update[0].field("name"), Some("Acme Corporation"));
    assert_eq!(stripe.requests("POST", "/v1/subscriptions").await.len(), 1);

    // A second sync owes nothing.
    let before = stripe.server.received_requests().await.unwrap().len();
    let again = live.sync(&store).await.unwrap();
    assert_eq!((again.done, again.failed), (0, 0));
    assert_eq!(
        stripe.server.received_requests().await.unwrap().len(),
        before
    );
    let (_, read) = app.get("/v1/subscriptions/acme-weather").await;
    assert_eq!(read["stripe"]["state"], "synced", "{read}");
    assert_eq!(read["stripe"]["subscription"]["id"], "sub_test4");
    store.close().await;
}
