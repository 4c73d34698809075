//! The daily billing job against a mock Stripe: usage reported as invoice items created once and
//! then updated, days claimed once, missed days caught up, one failing subscription not holding up
//! the others.

use crate::events::post_events;
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with, use_stripe};
use crate::stripe_mock::StripeMock;
use chrono::{Days, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tollbooth::billing::BillingJob;
use tollbooth::store::Store;
use tollbooth::stripe::Stripe;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

on_both_backends!(
    usage_becomes_an_invoice_item_created_once_then_updated,
    a_day_is_run_once_however_often_it_is_started,
    a_stripe_500_for_one_subscription_leaves_the_others_billed,
    missed_days_are_caught_up_in_order_and_a_stopped_run_is_taken_over,
    a_cycle_end_closes_the_period_and_late_records_go_on_the_next_invoice,
    a_run_stopped_part_way_is_completed_without_a_second_item,
    invoice_created_closes_the_period_at_once,
    cancel_now_puts_the_usage_so_far_on_the_final_invoice,
    a_month_of_usage_across_a_cycle_end_is_billed_exactly,
);

/// A tier at $0.50 a call plus $25 a month, a gateway, and `count` subscriptions `acme-{i}` with
/// consumer keys `k{i}`.
pub(crate) async fn setup(app: &TestApp, count: usize) -> (String, Vec<Value>) {
    let post = |path: &'static str, body: Value| async move {
        let (status, answer) = app.post(path, &body).await;
        assert!(status.is_success(), "{path}: {answer}");
        answer
    };
    post(
        "/v1/apis",
        json!({"slug": "weather", "name": "Weather API"}),
    )
    .await;
    post(
        "/v1/tiers",
        json!({"slug": "weather-metered", "api": "weather", "name": "Metered", "currency": "usd",
        "fixed_fee": {"amount": "25.00", "interval": "month"},
        "usage": {"model": "per_unit", "unit_price": "0.50"}}),
    )
    .await;
    // Daily periods: a cycle ends every midnight.
    post(
        "/v1/tiers",
        json!({"slug": "weather-daily", "api": "weather", "name": "Daily", "currency": "usd",
        "billing_period": {"interval": "day"},
        "usage": {"model": "per_unit", "unit_price": "0.50"}}),
    )
    .await;
    let mut subscriptions = Vec::new();
    for i in 1..=count {
        post("/v1/subscribers", json!({"external_id": format!("acme{i}"), "name": "Acme", "email": "billing@acme.example"})).await;
        subscriptions.push(
            post(
                "/v1/subscriptions",
                json!({"external_id": format!("acme-{i}"), "subscriber": format!("acme{i}"),
                "tier": "weather-metered", "consumer_keys": [format!("k{i}")]}),
            )
            .await,
        );
    }
    let gateway = post("/v1/gateways", json!({"name": "kong"})).await;
    (gateway["key"].as_str().unwrap().to_owned(), subscriptions)
}

/// A subscription `daily-1` (key `d1`) of a new subscriber on the daily tier.
pub(crate) async fn daily_subscription(app: &TestApp) -> Value {
    let (status, _) = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "daily", "name": "Daily Co", "email": "billing@daily.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, subscription) = app
        .post("/v1/subscriptions", &json!({"external_id": "daily-1", "subscriber": "daily", "tier": "weather-daily", "consumer_keys": ["d1"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");
    subscription
}

pub(crate) async fn calls(app: &TestApp, key: &str, consumer: &str, ids: &[&str]) {
    let records: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "consumer": consumer, "api": "weather", "timestamp": Utc::now().to_rfc3339(), "status": 200}))
        .collect();
    let (status, answer) = post_events(app, key, Value::Array(records).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

pub(crate) struct Runner {
    pub(crate) store: Store,
    stripe: Stripe,
    lease: std::time::Duration,
}

impl Runner {
    pub(crate) async fn new(app: &TestApp, stripe: &StripeMock) -> Self {
        let mut settings = crate::helpers::test_settings(&app.database_url);
        use_stripe(&mut settings, &stripe.uri());
        Self {
            store: Store::connect(&app.database_url).await.unwrap(),
            stripe: Stripe::from_settings(&settings).unwrap(),
            lease: std::time::Duration::from_secs(15 * 60),
        }
    }

    pub(crate) fn job<'a>(&'a self, owner: &'a str) -> BillingJob<'a> {
        BillingJob {
            store: &self.store,
            stripe: &self.stripe,
            owner,
            retention: std::time::Duration::from_secs(35 * 86_400),
            lease: self.lease,
        }
    }
}

pub(crate) fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub(crate) fn next(day: NaiveDate, n: u64) -> NaiveDate {
    day.checked_add_days(Days::new(n)).unwrap()
}

async fn usage_becomes_an_invoice_item_created_once_then_updated(backend: Backend) {
    let Some((stripe, app)) = app_with_items(backend, 1, Some(1)).await else {
        return;
    };
    let (key, subscriptions) = setup(&app, 1).await;
    let subscription = subscriptions[0]["id"].as_str().unwrap();
    let stripe_subscription = subscriptions[0]["stripe"]["subscription"]["id"]
        .as_str()
        .unwrap();
    calls(&app, &key, "k1", &["c1", "c2", "c3"]).await;
    let runner = Runner::new(&app, &stripe).await;

    let report = runner.job("runner-a").run_day(today()).await.unwrap();
    assert_eq!(report.outcome, "done");
    assert_eq!(
        (report.subscriptions_reported, report.items_created),
        (1, 1),
        "{report:?}"
    );
    let created = &stripe.requests("POST", "/v1/invoiceitems").await[0];
    assert_eq!(created.field("amount"), Some("150"), "3 calls at $0.50");
    assert_eq!(created.field("currency"), Some("usd"));
    assert_eq!(created.field("subscription"), Some(stripe_subscription));
    assert!(created.field("customer").unwrap().starts_with("cus_"));
    assert!(
        created.field("description").unwrap().contains('3'),
        "{:?}",
        created.field("description")
    );
    let period_start = today()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let item_key = format!("tb-usage-{subscription}-{period_start}-usage-1");
    assert_eq!(created.idempotency_key.as_deref(), Some(item_key.as_str()));

    // Two more calls: the next day's run updates the same item to the new amount.
    calls(&app, &key, "k1", &["c4", "c5"]).await;
    let report = runner
        .job("runner-a")
        .run_day(next(today(), 1))
        .await
        .unwrap();
    assert_eq!(
        (report.items_created, report.items_updated),
        (0, 1),
        "{report:?}"
    );
    let updated = &stripe.requests("POST", "/v1/invoiceitems/[^/]+").await[0];
    assert!(
        updated.path.starts_with("/v1/invoiceitems/ii_test"),
        "the item made the day before"
    );
    assert_eq!(updated.field("amount"), Some("250"));
    let update_key = updated.idempotency_key.as_deref().unwrap();
    assert!(
        update_key.starts_with(&format!("{item_key}-r2-250-")),
        "the key names the revision and the amount it sets: {update_key}"
    );

    // Nothing changed: the day after sends nothing.
    let before = stripe.server.received_requests().await.unwrap().len();
    let report = runner
        .job("runner-a")
        .run_day(next(today(), 2))
        .await
        .unwrap();
    assert_eq!((report.items_created, report.items_updated), (0, 0));
    assert_eq!(
        stripe.server.received_requests().await.unwrap().len(),
        before
    );

    let (status, runs) = app.get("/v1/billing/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        runs["data"][0]["day"],
        next(today(), 2).to_string(),
        "newest first"
    );
    let (_, first) = app.get("/v1/billing/runs?limit=2").await;
    assert_eq!(
        (first["data"].as_array().unwrap().len(), &first["has_more"]),
        (2, &json!(true))
    );
    let after = first["next_after"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!("/v1/billing/runs?limit=2&after={after}"))
        .await;
    assert_eq!(rest["data"][0]["day"], today().to_string());
    assert_eq!(rest["has_more"], false);
    let wrong = app.get("/v1/billing/runs?job=weekly").await;
    crate::helpers::assert_error(
        &wrong,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("job"),
    );
    let (status, run) = app
        .get(&format!("/v1/billing/runs/{}", next(today(), 1)))
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "done");
    assert_eq!(run["report"]["items_updated"], 1);
    let (status, _) = app.get("/v1/billing/runs/1999-01-01").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    runner.store.close().await;
}

/// A mock Stripe whose invoice items must be created `created` times and updated `updated`
/// times (when given), and tollbooth on it.
pub(crate) async fn app_with_items(
    backend: Backend,
    created: u64,
    updated: Option<u64>,
) -> Option<(StripeMock, TestApp)> {
    let stripe = StripeMock::start().await;
    let mocks = [
        ("/v1/invoiceitems", Some(created)),
        ("/v1/invoiceitems/[^/]+", updated),
    ];
    for (path, times) in mocks {
        if let Some(times) = times {
            stripe
                .object("POST", path, "invoiceitem", "ii")
                .expect(times)
                .with_priority(1)
                .mount(&stripe.server)
                .await;
        }
    }
    stripe.mount_catalog().await;
    let app = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await?;
    Some((stripe, app))
}

async fn a_day_is_run_once_however_often_it_is_started(backend: Backend) {
    let Some((stripe, app)) = app_with_items(backend, 1, None).await else {
        return;
    };
    let (key, _) = setup(&app, 1).await;
    calls(&app, &key, "k1", &["c1"]).await;
    let runner = Runner::new(&app, &stripe).await;

    let (job_a, job_b) = (runner.job("replica-a"), runner.job("replica-b"));
    let (a, b) = tokio::join!(job_a.run_day(today()), job_b.run_day(today()));
    let mut outcomes = vec![a.unwrap().outcome, b.unwrap().outcome];
    outcomes.sort();
    assert_eq!(outcomes[1], "done", "{outcomes:?}");
    assert!(
        ["already_done", "claimed_elsewhere"].contains(&outcomes[0].as_str()),
        "{outcomes:?}"
    );
    let again = runner.job("manual").run_day(today()).await.unwrap();
    assert_eq!(again.outcome, "already_done");
    runner.store.close().await;
}

async fn a_stripe_500_for_one_subscription_leaves_the_others_billed(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe.mount_catalog().await;
    let Some(app) = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await else {
        return;
    };
    let (key, subscriptions) = setup(&app, 2).await;
    let failing = subscriptions[0]["stripe"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    calls(&app, &key, "k1", &["a1"]).await;
    calls(&app, &key, "k2", &["b1", "b2"]).await;
    Mock::given(method("POST"))
        .and(path("/v1/invoiceitems"))
        .and(body_string_contains(format!("subscription={failing}")))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "boom"}})),
        )
        .expect(5)
        .with_priority(1)
        .named("the failing subscription's item, every attempt")
        .mount(&stripe.server)
        .await;
    let runner = Runner::new(&app, &stripe).await;

    let report = runner.job("runner").run_day(today()).await.unwrap();
    assert_eq!(report.subscriptions_reported, 1, "{report:?}");
    assert_eq!(report.failures.len(), 1);
    assert_eq!(
        report.failures[0].subscription,
        subscriptions[0]["id"].as_str().unwrap()
    );
    assert!(report.failures[0].error.contains("boom"), "{report:?}");
    let items = stripe.requests("POST", "/v1/invoiceitems").await;
    let billed: Vec<_> = items
        .iter()
        .filter(|r| r.field("subscription") != Some(failing.as_str()))
        .collect();
    assert_eq!(billed.len(), 1);
    assert_eq!(billed[0].field("amount"), Some("100"));

    // Stripe recovers: the next run bills the one that failed, with the key it used before.
    let first_key = items
        .iter()
        .find(|r| r.field("subscription") == Some(failing.as_str()))
        .unwrap()
        .idempotency_key
        .clone();
    stripe.server.reset().await;
    stripe
        .object("POST", "/v1/invoiceitems", "invoiceitem", "ii")
        .expect(1)
        .mount(&stripe.server)
        .await;
    let report = runner
        .job("runner")
        .run_day(next(today(), 1))
        .await
        .unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    let retried = &stripe.requests("POST", "/v1/invoiceitems").await[0];
    assert_eq!(retried.field("subscription"), Some(failing.as_str()));
    assert_eq!(retried.field("amount"), Some("50"));
    assert_eq!(retried.idempotency_key, first_key);
    runner.store.close().await;
}

async fn missed_days_are_caught_up_in_order_and_a_stopped_run_is_taken_over(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe.mount_catalog().await;
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let runner = Runner::new(&app, &stripe).await;
    let start = today().checked_sub_days(Days::new(4)).unwrap();
    assert_eq!(
        runner.job("a").run_day(start).await.unwrap().outcome,
        "done"
    );

    // Down for three days: the next start runs them, oldest first, then today.
    let reports = runner.job("a").run_due(today()).await.unwrap();
    let days: Vec<String> = reports.iter().map(|r| r.day.clone()).collect();
    let expected: Vec<String> = (1..=4).map(|n| next(start, n).to_string()).collect();
    assert_eq!(days, expected);
    assert!(reports.iter().all(|r| r.outcome == "done"));
    assert!(
        runner
            .job("a")
            .run_due(today())
            .await
            .unwrap()
            .iter()
            .all(|r| r.outcome == "already_done")
    );

    // A runner that stopped mid-run keeps the day until its lease passes; then the next takes over.
    let tomorrow = next(today(), 1).to_string();
    let mut tx = runner.store.begin().await.unwrap();
    tx.claim_run(tollbooth::billing::JOB, &tomorrow, "killed", -1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = runner.job("b").run_day(next(today(), 1)).await.unwrap();
    assert_eq!(report.outcome, "done");
    let mut tx = runner.store.begin().await.unwrap();
    tx.claim_run(
        tollbooth::billing::JOB,
        &next(today(), 2).to_string(),
        "alive",
        60_000,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        runner
            .job("b")
            .run_day(next(today(), 2))
            .await
            .unwrap()
            .outcome,
        "claimed_elsewhere"
    );
    runner.store.close().await;
}

async fn a_cycle_end_closes_the_period_and_late_records_go_on_the_next_invoice(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe.mount_catalog().await;
    let Some(app) = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await else {
        return;
    };
    let (key, _) = setup(&app, 0).await;
    let subscription = daily_subscription(&app).await;
    let subscription_id = subscription["id"].as_str().unwrap().to_owned();
    let runner = Runner::new(&app, &stripe).await;

    // Today: three calls reported on today's period.
    calls(&app, &key, "d1", &["t1", "t2", "t3"]).await;
    let report = runner.job("r").run_day(today()).await.unwrap();
    assert_eq!(report.items_created, 1, "{report:?}");
    let item = stripe.requests("POST", "/v1/invoiceitems").await[0].clone();
    assert_eq!(item.field("amount"), Some("150"));

    // A fourth call, then the cycle ends at midnight: tomorrow's run puts the final usage on the item.
    calls(&app, &key, "d1", &["t4"]).await;
    let report = runner.job("r").run_day(next(today(), 1)).await.unwrap();
    assert_eq!(report.cycles_closed, 1, "{report:?}");
    assert_eq!(report.items_updated, 1);
    let update = stripe.requests("POST", "/v1/invoiceitems/[^/]+").await[0].clone();
    assert_eq!(update.field("amount"), Some("200"));
    let reconciliation = &report.reconciliation[0];
    assert_eq!(reconciliation.subscription, subscription_id);
    assert_eq!(reconciliation.rated.to_string(), "2.00");
    assert_eq!(reconciliation.difference.to_string(), "0.00");

    // Stripe has finalized today's invoice; a record of today arrives late.
    Mock::given(method("POST"))
        .and(path(update.path.clone()))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"type": "invalid_request_error",
            "code": "invoice_not_editable",
            "message": "The invoice item is attached to an invoice that is finalized and cannot be modified."}})))
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    calls(&app, &key, "d1", &["t5"]).await;
    let report = runner.job("r").run_day(next(today(), 2)).await.unwrap();
    assert_eq!(report.late_items, 1, "{report:?}");
    let late = stripe.requests("POST", "/v1/invoiceitems").await;
    assert_eq!(late.len(), 2);
    assert_eq!(late[1].field("amount"), Some("50"), "only the difference");
    assert!(
        late[1]
            .field("description")
            .unwrap()
            .starts_with(&format!("Late usage for the period from {}", today()))
    );
    assert!(
        late[1]
            .idempotency_key
            .as_deref()
            .unwrap()
            .starts_with("tb-late-")
    );

    // Once: the next run sends nothing.
    let before = stripe.server.received_requests().await.unwrap().len();
    let report = runner.job("r").run_day(next(today(), 3)).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        stripe.server.received_requests().await.unwrap().len(),
        before
    );
    runner.store.close().await;
}

async fn a_run_stopped_part_way_is_completed_without_a_second_item(backend: Backend) {
    let stripe = StripeMock::start().await;
    // Stripe makes the item, but the run is stopped before its answer comes back.
    stripe
        .object_answering_in(
            "POST",
            "/v1/invoiceitems",
            "invoiceitem",
            "ii",
            Some(std::time::Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe.mount_catalog().await;
    let Some(app) = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await else {
        return;
    };
    let (key, _) = setup(&app, 1).await;
    calls(&app, &key, "k1", &["c1", "c2"]).await;
    let mut runner = Runner::new(&app, &stripe).await;
    runner.lease = std::time::Duration::from_millis(1);

    let stopped = tokio::time::timeout(
        std::time::Duration::from_millis(1_500),
        runner.job("killed").run_day(today()),
    )
    .await;
    assert!(
        stopped.is_err(),
        "the run was stopped while Stripe was answering"
    );
    // More calls arrive before the next run: the item Stripe made must not be made again.
    calls(&app, &key, "k1", &["c3"]).await;
    let report = runner.job("next").run_day(today()).await.unwrap();
    assert_eq!(
        report.outcome, "done",
        "the stopped run's day is taken over"
    );
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!((report.items_created, report.items_updated), (1, 1));
    let sent = stripe.requests("POST", "/v1/invoiceitems").await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].idempotency_key, sent[1].idempotency_key);
    assert_eq!(
        sent[0].form, sent[1].form,
        "the stopped request is resent unchanged"
    );
    assert_eq!(sent[1].field("amount"), Some("100"));
    let updates = stripe.requests("POST", "/v1/invoiceitems/[^/]+").await;
    assert_eq!(updates.len(), 1);
    assert_ne!(updates[0].idempotency_key, sent[0].idempotency_key);
    assert_eq!(
        updates[0].field("amount"),
        Some("150"),
        "then the third call is added"
    );
    assert_eq!(
        runner.job("again").run_day(today()).await.unwrap().outcome,
        "already_done"
    );
    runner.store.close().await;
}

async fn invoice_created_closes_the_period_at_once(backend: Backend) {
    use crate::webhooks::{NEW_SECRET, event, send_event};
    let stripe = StripeMock::start().await;
    stripe.mount_catalog().await;
    let Some(app) = spawn_app_with(backend, |s| {
        use_stripe(s, &stripe.uri());
        s.stripe_webhook_secret = Some(NEW_SECRET.to_owned().into());
    })
    .await
    else {
        return;
    };
    let (key, _) = setup(&app, 0).await;
    let subscription = daily_subscription(&app).await;
    let stripe_subscription = subscription["stripe"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    calls(&app, &key, "d1", &["t1"]).await;
    let runner = Runner::new(&app, &stripe).await;
    runner.job("r").run_day(today()).await.unwrap();
    calls(&app, &key, "d1", &["t2", "t3"]).await;

    // Stripe drafts the renewal invoice at midnight and says so.
    let midnight = next(today(), 1)
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    let mut invoice = crate::stripe_mock::fixture("invoice");
    invoice["billing_reason"] = json!("subscription_cycle");
    invoice["period_end"] = json!(midnight);
    invoice["parent"] = json!({"type": "subscription_details", "quote_details": null,
        "subscription_details": {"subscription": stripe_subscription, "metadata": {}}});
    let body = event("evt_renewal", "invoice.created", midnight, invoice);
    assert_eq!(send_event(&app, &body).await, "applied");
    let mut updates = Vec::new();
    for _ in 0..100 {
        updates = stripe.requests("POST", "/v1/invoiceitems/[^/]+").await;
        if !updates.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        updates.len(),
        1,
        "the final usage went on the draft at once"
    );
    assert_eq!(updates[0].field("amount"), Some("150"));
    // The close marks its run done just after Stripe answered, in the background: wait for it.
    for _ in 0..100 {
        let (_, closes) = app.get("/v1/billing/runs?job=close_period").await;
        if closes["data"][0]["state"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The daily run that follows finds the period closed and sends nothing for it.
    let report = runner.job("r").run_day(next(today(), 1)).await.unwrap();
    assert_eq!(
        (report.cycles_closed, report.items_updated),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(
        stripe
            .requests("POST", "/v1/invoiceitems/[^/]+")
            .await
            .len(),
        1
    );
    let (status, closes) = app.get("/v1/billing/runs?job=close_period").await;
    assert_eq!(status, StatusCode::OK, "{closes}");
    assert_eq!(closes["data"][0]["state"], "done", "{closes}");
    assert_eq!(closes["data"][0]["report"]["cycles_closed"], 1, "{closes}");
    runner.store.close().await;
}

async fn cancel_now_puts_the_usage_so_far_on_the_final_invoice(backend: Backend) {
    let Some((stripe, app)) = app_with_items(backend, 1, None).await else {
        return;
    };
    let (key, _) = setup(&app, 1).await;
    calls(&app, &key, "k1", &["c1", "c2", "c3"]).await;
    let (status, canceled) = app
        .post("/v1/subscriptions/acme-1/cancel", &json!({"at": "now"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{canceled}");
    let order: Vec<(String, String)> = stripe
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| (r.method.to_string(), r.url.path().to_owned()))
        .filter(|(_, path)| {
            path.starts_with("/v1/invoiceitems") || path.starts_with("/v1/subscriptions/")
        })
        .collect();
    assert_eq!(order.len(), 2, "{order:?}");
    assert_eq!(
        order[0],
        ("POST".to_owned(), "/v1/invoiceitems".to_owned()),
        "usage first"
    );
    assert_eq!(
        order[1].0, "DELETE",
        "then the cancel with its final invoice"
    );
    let item = &stripe.requests("POST", "/v1/invoiceitems").await[0];
    assert_eq!(item.field("amount"), Some("150"));

    // The canceled Subscription is not billed again.
    let runner = Runner::new(&app, &stripe).await;
    let report = runner.job("r").run_day(today()).await.unwrap();
    assert_eq!(report.subscriptions_reported, 0, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    runner.store.close().await;
}

/// Calls of `consumer` stamped at `at`.
pub(crate) async fn calls_at(
    app: &TestApp,
    key: &str,
    consumer: &str,
    ids: &[String],
    at: chrono::DateTime<Utc>,
) {
    let records: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "consumer": consumer, "api": "weather", "timestamp": at.to_rfc3339(), "status": 200}))
        .collect();
    let (status, answer) = post_events(app, key, Value::Array(records).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], ids.len(), "{answer}");
}

/// A monthly subscription that started 33 days ago: its first month has ended, its second is open.
/// Calls spread over the first month and a few in the second; one run closes the first with its
/// final usage and reports the second; a record of the first month that arrives late is billed
/// on the next run as the difference.
async fn a_month_of_usage_across_a_cycle_end_is_billed_exactly(backend: Backend) {
    let Some((stripe, app)) = app_with_items(backend, 2, Some(1)).await else {
        return;
    };
    let (key, _) = setup(&app, 1).await;
    let midnight = |day: NaiveDate| day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let started = midnight(today() - Days::new(33));
    app.backdate_subscription(started).await;
    // 12 calls over the first month (days 3 to 25), 3 today.
    for day in 0..12_u64 {
        let at = started
            + chrono::Duration::days(3 + 2 * i64::try_from(day).unwrap())
            + chrono::Duration::hours(9);
        calls_at(&app, &key, "k1", &[format!("m{day}")], at).await;
    }
    calls(&app, &key, "k1", &["t1", "t2", "t3"]).await;

    let runner = Runner::new(&app, &stripe).await;
    let report = runner.job("r").run_day(today()).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        (report.cycles_closed, report.items_created),
        (1, 2),
        "{report:?}"
    );
    let created = stripe.requests("POST", "/v1/invoiceitems").await;
    let first_month = started.date_naive().to_string();
    let closed = created
        .iter()
        .find(|r| r.field("metadata[tollbooth_period_start]") == Some(first_month.as_str()))
        .expect("an item for the first month");
    assert_eq!(closed.field("amount"), Some("600"), "12 calls at $0.50");
    assert!(
        closed
            .field("description")
            .unwrap()
            .starts_with(&format!("For the period from {first_month}: ")),
        "{closed:?}"
    );
    let open = created.iter().find(|r| !std::ptr::eq(*r, closed)).unwrap();
    assert_eq!(open.field("amount"), Some("150"), "3 calls at $0.50");
    let reconciliation = &report.reconciliation[0];
    assert_eq!(reconciliation.period_start, started);
    assert_eq!(
        (
            reconciliation.rated.to_string(),
            reconciliation.difference.is_zero()
        ),
        ("6.00".to_owned(), true)
    );

    // A record of the first month, arriving late: the next run sends the difference once.
    calls_at(
        &app,
        &key,
        "k1",
        &["late".to_owned()],
        started + chrono::Duration::days(10),
    )
    .await;
    let report = runner.job("r").run_day(next(today(), 1)).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    let updates = stripe.requests("POST", "/v1/invoiceitems/[^/]+").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].field("amount"), Some("650"), "13 calls at $0.50");
    runner.store.close().await;
}
