//! `GET /v1/revenue`: the figures of closed and open periods, reconciled both ways, with the
//! invoice previews of each period and with the ledger of what was sent to Stripe.

use crate::billing::{Runner, app_with_items, calls, calls_at, setup, today};
use crate::helpers::{Backend, TestApp, assert_error, on_both_backends, spawn_app};
use chrono::{Days, NaiveDate};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

on_both_backends!(
    revenue_reconciles_with_the_previews_and_the_ledger,
    in_ledger_mode_an_ended_period_is_billed_as_rated,
    the_day_and_period_tables_are_the_sums_of_their_hours,
);

fn decimal(value: &Value) -> Decimal {
    Decimal::from_str(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a decimal: {value}")),
    )
    .unwrap()
}

fn midnight(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    day.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

/// The total of a subscription's preview of the period starting on `start` (or the open one).
async fn preview_total(app: &TestApp, subscription: &str, start: Option<NaiveDate>) -> Decimal {
    let path = match start {
        Some(day) => format!("/v1/subscriptions/{subscription}/invoice-preview?period_start={day}"),
        None => format!("/v1/subscriptions/{subscription}/invoice-preview"),
    };
    let (status, preview) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    decimal(&preview["total"])
}

/// The sum of one field over the groups of the first currency.
fn group_sum(report: &Value, pointer: &str) -> Decimal {
    report["currencies"][0]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| decimal(g.pointer(pointer).unwrap()))
        .sum()
}

async fn revenue_reconciles_with_the_previews_and_the_ledger(backend: Backend) {
    // Four invoice items: each subscription's closed month and its open one.
    let Some((stripe, app)) = app_with_items(backend, 4, None).await else {
        return;
    };
    let (key, _) = setup(&app, 2).await;
    let started = midnight(today() - Days::new(33));
    app.backdate_subscription(started).await;
    // acme-1: 12 calls in its first month and 3 today; acme-2: 4 and 1.
    for (consumer, first_month, now) in [("k1", 12_i64, 3_usize), ("k2", 4, 1)] {
        let ids: Vec<String> = (0..first_month)
            .map(|i| format!("{consumer}-m{i}"))
            .collect();
        calls_at(
            &app,
            &key,
            consumer,
            &ids,
            started + chrono::Duration::days(5),
        )
        .await;
        let today_ids: Vec<String> = (0..now).map(|i| format!("{consumer}-t{i}")).collect();
        let refs: Vec<&str> = today_ids.iter().map(String::as_str).collect();
        calls(&app, &key, consumer, &refs).await;
    }
    let runner = Runner::new(&app, &stripe).await;
    let report = runner.job("r").run_day(today()).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        (report.cycles_closed, report.items_created),
        (2, 4),
        "{report:?}"
    );

    let from = started.date_naive();
    let to = today() + Days::new(1);
    let (status, revenue) = app
        .get(&format!(
            "/v1/revenue?from={from}&to={to}&group_by=subscription"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{revenue}");
    let usd = &revenue["currencies"][0];
    assert_eq!(usd["currency"], "usd", "{revenue}");
    assert_eq!(revenue["currencies"].as_array().unwrap().len(), 1);
    assert_eq!(
        (usd["closed_periods"].as_u64(), usd["open_periods"].as_u64()),
        (Some(2), Some(2))
    );
    // $25 a month and $0.50 a call: 31.00 and 27.00 closed, 26.50 and 25.50 open.
    assert_eq!(
        decimal(&usd["billed"]["total"]),
        Decimal::from_str("58.00").unwrap()
    );
    assert_eq!(decimal(&usd["billed"]["fixed_fees"]), Decimal::from(50));
    assert_eq!(decimal(&usd["billed"]["usage"]), Decimal::from(8));
    assert_eq!(decimal(&usd["open"]["total"]), Decimal::from(52));
    assert_eq!(decimal(&usd["unreconciled"]), Decimal::ZERO);
    assert_eq!(decimal(&usd["monthly_recurring"]), Decimal::from(50));
    assert_eq!(usd["live_subscriptions"], 2);

    // One way: the invoice previews of every period.
    let mut closed = Decimal::ZERO;
    let mut open = Decimal::ZERO;
    for subscription in ["acme-1", "acme-2"] {
        closed += preview_total(&app, subscription, Some(from)).await;
        open += preview_total(&app, subscription, None).await;
    }
    assert_eq!(decimal(&usd["billed"]["total"]), closed);
    assert_eq!(decimal(&usd["rated_closed"]), closed);
    assert_eq!(decimal(&usd["open"]["total"]), open);

    // The other way: the ledger, as the invoice items Stripe was sent, plus the fixed fees its
    // Subscriptions charge.
    let items = stripe.requests("POST", "/v1/invoiceitems").await;
    let closed_items: i64 = items
        .iter()
        .filter(|r| r.field("metadata[tollbooth_period_start]") == Some(from.to_string().as_str()))
        .map(|r| r.field("amount").unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(closed_items, 800, "{items:?}");
    assert_eq!(
        decimal(&usd["billed"]["usage"]) + decimal(&usd["billed"]["fixed_fees"]),
        Decimal::new(closed_items, 2) + Decimal::from(50)
    );

    // The groups add up to the totals.
    for field in [
        "/billed/total",
        "/open/total",
        "/rated_closed",
        "/monthly_recurring",
    ] {
        let total = decimal(usd.pointer(field).unwrap());
        assert_eq!(group_sum(&revenue, field), total, "{field}");
    }
    let keys: Vec<&str> = usd["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["acme-1", "acme-2"]);
    let (_, by_tier) = app
        .get(&format!("/v1/revenue?from={from}&to={to}&group_by=tier"))
        .await;
    let tier = &by_tier["currencies"][0]["groups"][0];
    assert_eq!(tier["key"], "weather-metered");
    assert_eq!(tier["billed"], usd["billed"]);
    assert_eq!(tier["open"], usd["open"]);

    // A span with no period start bills nothing; the recurring fees are today's all the same.
    let (_, empty) = app.get("/v1/revenue?from=2001-01-01&to=2001-02-01").await;
    let usd = &empty["currencies"][0];
    assert_eq!(
        (usd["closed_periods"].as_u64(), usd["open_periods"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(decimal(&usd["billed"]["total"]), Decimal::ZERO, "{empty}");
    assert_eq!(
        decimal(&usd["monthly_recurring"]),
        Decimal::from(50),
        "{empty}"
    );
    // Bad input names its field.
    assert_error(
        &app.get("/v1/revenue?group_by=planet").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("group_by"),
    );
    assert_error(
        &app.get(&format!("/v1/revenue?from={to}&to={from}")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("from"),
    );
    assert_error(
        &app.get("/v1/revenue?from=2020-01-01&to=2026-01-01").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("to"),
    );
    runner.store.close().await;
}

async fn in_ledger_mode_an_ended_period_is_billed_as_rated(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (key, _) = setup(&app, 1).await;
    let started = midnight(today() - Days::new(33));
    app.backdate_subscription(started).await;
    let ids: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
    calls_at(&app, &key, "k1", &ids, started + chrono::Duration::days(2)).await;
    let from = started.date_naive();
    let (status, revenue) = app
        .get(&format!(
            "/v1/revenue?from={from}&to={}&group_by=api",
            today() + Days::new(1)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{revenue}");
    let usd = &revenue["currencies"][0];
    let rated = preview_total(&app, "acme-1", Some(from)).await;
    assert_eq!(rated, Decimal::from_str("28.50").unwrap());
    assert_eq!(decimal(&usd["billed"]["total"]), rated);
    assert_eq!(
        decimal(&usd["open"]["total"]),
        preview_total(&app, "acme-1", None).await
    );
    assert_eq!(usd["groups"][0]["key"], "weather");
}

async fn the_day_and_period_tables_are_the_sums_of_their_hours(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = crate::events::metered_setup(&app).await;
    let day = midnight(today() - Days::new(2));
    app.backdate_subscription(day).await;
    // Records of 0.7 units (fractions that carry into whole units), one per hour given.
    let batch = |name: &'static str, hours: &'static [i64]| {
        let records: Vec<Value> = hours
            .iter()
            .enumerate()
            .map(|(i, hour)| {
                let at = day + chrono::Duration::hours(*hour);
                serde_json::json!({"id": format!("{name}-{i}"), "consumer": "k1", "api": "weather",
                    "timestamp": at.to_rfc3339(), "status": 200, "units": "0.7"})
            })
            .collect();
        let (app, key) = (&app, &key);
        async move {
            let (status, answer) =
                crate::events::post_events(app, key, Value::Array(records).to_string()).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            assert_eq!(answer["accepted"], hours.len(), "{answer}");
        }
    };
    // An hour's row is made, then changed twice; three hours of one day and one of another.
    for name in ["b0", "b1", "b2"] {
        batch(name, &[0, 1, 2, 30]).await;
    }
    assert_eq!(app.count_rows("usage_hourly").await, 4);
    assert_eq!(app.count_rows("usage_daily").await, 2);
    let hours_of = |filter: &str, column: &str| {
        format!(
            "(SELECT SUM({column}) FROM usage_hourly h WHERE h.subscription_id = d.subscription_id AND {filter})"
        )
    };
    let differs = |filter: &str| {
        format!(
            "billable_calls <> {} OR billable_units_whole * 1000000 + billable_units_micros <> {} \
             OR failed_calls <> {} OR total_calls <> {} \
             OR billable_units_micros < 0 OR billable_units_micros >= 1000000",
            hours_of(filter, "h.billable_calls"),
            hours_of(
                filter,
                "h.billable_units_whole * 1000000 + h.billable_units_micros"
            ),
            hours_of(filter, "h.failed_calls"),
            hours_of(filter, "h.total_calls"),
        )
    };
    let daily = differs("(h.hour / 86400000) * 86400000 = d.day");
    assert_eq!(app.count_where("usage_daily d", &daily).await, 0);
    // The first day: three hours of three records of 0.7 units.
    let first = format!(
        "day = {} AND billable_calls = 9 AND billable_units_whole = 6 AND billable_units_micros = 300000",
        day.timestamp_millis()
    );
    assert_eq!(app.count_where("usage_daily d", &first).await, 1);

    // The report makes the row of the period it rates; the hours written after it keep it,
    // changed hours and new ones alike.
    let span = format!(
        "/v1/revenue?from={}&to={}",
        day.date_naive(),
        today() + Days::new(1)
    );
    let open = |report: &Value| decimal(&report["currencies"][0]["open"]["total"]);
    let (status, before) = app.get(&span).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(
        open(&before),
        preview_total(&app, "acme-weather", None).await
    );
    assert_eq!(app.count_rows("usage_periods").await, 1);
    batch("b3", &[1, 40, 41]).await;
    let period = differs("h.hour >= d.period_start AND h.hour < d.period_end");
    assert_eq!(app.count_where("usage_periods d", &period).await, 0);
    let whole = format!(
        "period_start = {} AND billable_calls = 15 AND billable_units_whole = 10 AND billable_units_micros = 500000",
        day.timestamp_millis()
    );
    assert_eq!(app.count_where("usage_periods d", &whole).await, 1);
    let (_, after) = app.get(&span).await;
    assert_eq!(
        open(&after),
        preview_total(&app, "acme-weather", None).await
    );

    // The provider's calls by day, for the console's trend.
    let by_day = "billable_calls <> (SELECT SUM(u.billable_calls) FROM usage_daily u WHERE u.day = d.day) \
        OR total_calls <> (SELECT SUM(u.total_calls) FROM usage_daily u WHERE u.day = d.day)";
    assert_eq!(app.count_rows("usage_days").await, 2);
    assert_eq!(app.count_where("usage_days d", by_day).await, 0);
}
