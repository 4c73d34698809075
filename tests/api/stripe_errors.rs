//! How tollbooth reads what Stripe answers when it is not a plain success: a refused update is
//! a late item only when Stripe's code says the invoice is no longer a draft.

use crate::billing::{Runner, calls, daily_subscription, next, setup, today};
use crate::helpers::{Backend, on_both_backends, spawn_app_with, use_stripe};
use crate::stripe_mock::{StripeMock, fixture};
use serde_json::json;
use tollbooth::billing::RunReport;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, Request, ResponseTemplate};

on_both_backends!(
    an_update_refused_as_invoice_not_editable_becomes_a_late_item,
    an_update_refused_for_another_reason_is_a_failure_and_no_late_item,
);

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
