//! The daily billing job when something fails underneath it: a period that cannot be rated (a
//! corrupt row in a real database) is a failure of its subscription, reported and retried, and
//! the usage watermark never passes it.

use crate::billing::{
    Runner, app_with_items, calls, calls_at, daily_subscription, next, setup, today,
};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with, use_stripe};
use crate::stripe_mock::StripeMock;
use chrono::{DateTime, Days, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    a_late_record_in_a_period_that_cannot_be_rated_keeps_the_watermark_until_it_is_billed,
    a_period_that_cannot_be_rated_is_a_failure_while_open_and_while_closing,
    a_subscription_stripe_canceled_is_billed_to_its_cancellation_and_then_left_alone,
);

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

/// Turns the billable units of the subscription's usage rows before `before` negative, or back:
/// a row the rating refuses (`billable units must not be negative`), as a corrupt row would be.
async fn negate_units_before(app: &TestApp, before: DateTime<Utc>) {
    app.execute_sql(&format!(
        "UPDATE usage_hourly SET billable_units_whole = -billable_units_whole WHERE hour < {}",
        before.timestamp_millis()
    ))
    .await;
}

/// The aggregation-table revision the last clean run had seen.
async fn watermark(runner: &Runner) -> Option<String> {
    let mut tx = runner.store.begin_read().await.unwrap();
    tx.setting("billing_usage_revision").await.unwrap()
}

/// `tollbooth billing run` on the app's database against the mock Stripe.
fn billing_run(app: &TestApp, stripe_uri: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .args(["billing", "run"])
        .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
        .env("STRIPE_SECRET_KEY", "sk_test_tollbooth")
        .env("STRIPE_API_BASE", stripe_uri)
        .env("TOLLBOOTH_STRIPE_RETRY_BASE", "10ms")
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .env_remove("TOLLBOOTH_CONFIG")
        .output()
        .expect("run tollbooth billing run")
}

/// A daily subscription that started two days ago: its first day is billed and closed, then a
/// record of that day arrives late while the day's usage cannot be rated. The run says so and
/// keeps the watermark; once the row is mended the late record is billed, once.
async fn a_late_record_in_a_period_that_cannot_be_rated_keeps_the_watermark_until_it_is_billed(
    backend: Backend,
) {
    // One item for the first day, created once and updated once: by the late record.
    let Some((stripe, app)) = app_with_items(backend, 1, Some(1)).await else {
        return;
    };
    let (key, _) = setup(&app, 0).await;
    let subscription = daily_subscription(&app).await;
    let subscription_id = subscription["id"].as_str().unwrap().to_owned();
    let first_day = today().checked_sub_days(Days::new(2)).unwrap();
    app.backdate_subscription(midnight(first_day)).await;
    let at_nine = midnight(first_day) + chrono::Duration::hours(9);
    let ids: Vec<String> = (1..=3).map(|n| format!("c{n}")).collect();
    calls_at(&app, &key, "d1", &ids, at_nine).await;
    let runner = Runner::new(&app, &stripe).await;

    let report = runner.job("r").run_day(first_day).await.unwrap();
    assert_eq!(report.items_created, 1, "{report:?}");
    let report = runner.job("r").run_day(next(first_day, 1)).await.unwrap();
    assert_eq!(report.cycles_closed, 1, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    let seen = watermark(&runner).await;

    // A record of the closed first day arrives late; that day's rows cannot be rated.
    calls_at(&app, &key, "d1", &["late".to_owned()], at_nine).await;
    negate_units_before(&app, midnight(next(first_day, 1))).await;
    let run = billing_run(&app, &stripe.uri());
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success(),
        "the command fails: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("1 subscriptions could not be billed"),
        "{stderr}"
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["day"], today().to_string(), "{report}");
    assert_eq!(report["subscriptions_reported"], 0, "{report}");
    assert_eq!(report["failures"][0]["subscription"], subscription_id);
    let error = report["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("billable units must not be negative"),
        "{error}"
    );
    assert_eq!(
        watermark(&runner).await,
        seen,
        "the watermark stays before the late record"
    );
    let (status, stored) = app.get(&format!("/v1/billing/runs/{}", today())).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(
        stored["report"]["failures"][0]["subscription"],
        subscription_id
    );

    // Mended: the next run bills the late record on the first day's item.
    negate_units_before(&app, midnight(next(first_day, 1))).await;
    let report = runner.job("r").run_day(next(today(), 1)).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        (report.subscriptions_reported, report.items_updated),
        (1, 1),
        "{report:?}"
    );
    let updates = stripe.requests("POST", "/v1/invoiceitems/[^/]+").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].field("amount"), Some("200"), "4 calls at $0.50");
    assert_ne!(watermark(&runner).await, seen, "the watermark moves on");

    // Once: the run after sends nothing.
    let before = stripe.server.received_requests().await.unwrap().len();
    let report = runner.job("r").run_day(next(today(), 2)).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        stripe.server.received_requests().await.unwrap().len(),
        before
    );
    runner.store.close().await;
}

/// Today's usage cannot be rated: today's run reports the failure instead of skipping the open
/// period, and tomorrow's instead of leaving the period unclosed. Mended, the period closes
/// with all of its usage.
async fn a_period_that_cannot_be_rated_is_a_failure_while_open_and_while_closing(backend: Backend) {
    // The item is made once the rows are mended, at the close: nothing is ever updated.
    let Some((stripe, app)) = app_with_items(backend, 1, Some(0)).await else {
        return;
    };
    let (key, _) = setup(&app, 0).await;
    let subscription = daily_subscription(&app).await;
    let subscription_id = subscription["id"].as_str().unwrap().to_owned();
    calls(&app, &key, "d1", &["t1", "t2"]).await;
    negate_units_before(&app, midnight(next(today(), 1))).await;
    let runner = Runner::new(&app, &stripe).await;

    for (day, what) in [(today(), "open"), (next(today(), 1), "closing")] {
        let report = runner.job("r").run_day(day).await.unwrap();
        assert_eq!(report.subscriptions_reported, 0, "{what}: {report:?}");
        assert_eq!(report.failures.len(), 1, "{what}: {report:?}");
        assert_eq!(report.failures[0].subscription, subscription_id);
        assert!(
            report.failures[0]
                .error
                .contains("billable units must not be negative"),
            "{what}: {report:?}"
        );
        assert_eq!(report.cycles_closed, 0, "{what}: {report:?}");
    }
    assert!(stripe.requests("POST", "/v1/invoiceitems").await.is_empty());

    negate_units_before(&app, midnight(next(today(), 1))).await;
    let report = runner.job("r").run_day(next(today(), 2)).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        report.cycles_closed, 2,
        "today's period and tomorrow's: {report:?}"
    );
    let created = stripe.requests("POST", "/v1/invoiceitems").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].field("amount"), Some("100"), "2 calls at $0.50");
    assert_eq!(report.reconciliation[0].difference.to_string(), "0.00");
    runner.store.close().await;
}

/// Stripe ends the Subscription (a cancel at period end, say): its last period closes with its
/// usage, and no period after the cancellation is billed or reported as a failure.
async fn a_subscription_stripe_canceled_is_billed_to_its_cancellation_and_then_left_alone(
    backend: Backend,
) {
    use crate::webhooks::{NEW_SECRET, event, send_event};
    let stripe = StripeMock::start().await;
    stripe
        .object("POST", "/v1/invoiceitems", "invoiceitem", "ii")
        .expect(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    stripe
        .object("POST", "/v1/invoiceitems/[^/]+", "invoiceitem", "ii")
        .expect(0)
        .with_priority(1)
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
    let (key, _) = setup(&app, 0).await;
    let subscription = daily_subscription(&app).await;
    calls(&app, &key, "d1", &["t1", "t2"]).await;
    let runner = Runner::new(&app, &stripe).await;
    let report = runner.job("r").run_day(today()).await.unwrap();
    assert_eq!(report.items_created, 1, "{report:?}");

    let mut object = crate::stripe_mock::fixture("subscription");
    object["id"] = subscription["stripe"]["subscription"]["id"].clone();
    object["status"] = json!("canceled");
    object["metadata"] = json!({"tollbooth_subscription_id": subscription["id"]});
    let deleted = event(
        "evt_deleted",
        "customer.subscription.deleted",
        Utc::now().timestamp(),
        object,
    );
    assert_eq!(send_event(&app, &deleted).await, "applied");

    for n in 1..=2 {
        let report = runner.job("r").run_day(next(today(), n)).await.unwrap();
        assert!(report.failures.is_empty(), "day +{n}: {report:?}");
        assert_eq!(report.subscriptions_reported, 1, "day +{n}: {report:?}");
        let closed = u64::from(n == 1);
        assert_eq!(report.cycles_closed, closed, "day +{n}: {report:?}");
    }
    runner.store.close().await;
}
