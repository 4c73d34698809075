//! Meters: quantities besides the billable call (tokens, records processed, peak jobs, distinct
//! end users), dimensions such as an AI call's model, usage events that are not calls, and tiers
//! whose charges price each meter, checked in the preview and in the billing run's Stripe
//! requests. The issue's worked examples, on both databases.

use crate::billing::{Runner, app_with_items, today};
use crate::events::post_events;
use crate::helpers::{Backend, TestApp, assert_error, on_both_backends, on_both_databases};
use chrono::{DateTime, Days, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    tokens_are_priced_per_model_in_the_preview_and_the_billing_run,
    spend_alerts_price_charges_and_a_meter_s_hard_limit_is_notified,
    calls_records_minutes_peak_jobs_and_end_users_go_on_one_invoice,
);

on_both_databases!(
    meters_charges_and_usage_events_refuse_what_they_cannot_take,
    a_dimension_takes_at_most_its_max_values,
    a_hard_limit_on_a_meter_refuses_access_and_a_soft_limit_prices_the_overage,
    kong_logged_headers_and_cloudevent_data_feed_meters_and_dimensions,
    the_token_pricing_example_file_applies_and_reads_back,
);

async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.post(path, &body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

fn midnight(days_ago: u64) -> DateTime<Utc> {
    (today() - Days::new(days_ago))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

async fn post_usage_events(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    app.send(
        app.client
            .post(app.url("/v1/usage-events"))
            .bearer_auth(key)
            .json(&body),
    )
    .await
}

/// The issue's token pricing: $3 per million input tokens and $15 per million output tokens on
/// model `large`, $0.50 and $2.50 on `small`, ten days of mixed calls, the tokens and the model
/// sent as response headers for some calls and as the record's quantities and dimensions for
/// others.
async fn tokens_are_priced_per_model_in_the_preview_and_the_billing_run(backend: Backend) {
    let Some((stripe, app)) = app_with_items(backend, 4, Some(0)).await else {
        return;
    };
    created(
        &app,
        "/v1/apis",
        json!({"slug": "llm", "name": "LLM API",
            "meters": [
                {"key": "input_tokens", "aggregation": "sum", "quantity": "input_tokens", "header": "X-Usage-Input-Tokens"},
                {"key": "output_tokens", "aggregation": "sum", "quantity": "output_tokens", "header": "X-Usage-Output-Tokens"}
            ],
            "dimensions": [{"key": "model", "header": "X-Model"}]}),
    )
    .await;
    let per_million = |meter: &str, model: &str, price: &str| json!({"meter": meter, "dimensions": {"model": model}, "usage": {"model": "per_unit", "unit_price": price}});
    created(
        &app,
        "/v1/tiers",
        json!({"slug": "llm-tokens", "api": "llm", "name": "Tokens", "currency": "usd",
        "charges": [
            per_million("input_tokens", "large", "0.000003"),
            per_million("output_tokens", "large", "0.000015"),
            per_million("input_tokens", "small", "0.0000005"),
            per_million("output_tokens", "small", "0.0000025")
        ]}),
    )
    .await;
    created(
        &app,
        "/v1/subscribers",
        json!({"external_id": "writer", "name": "Writer Co", "email": "billing@writer.example"}),
    )
    .await;
    let subscription = created(
        &app,
        "/v1/subscriptions",
        json!({"external_id": "writer-llm", "subscriber": "writer", "tier": "llm-tokens", "consumer_keys": ["w1"]}),
    )
    .await;
    let gateway = created(&app, "/v1/gateways", json!({"name": "edge"})).await;
    let key = gateway["key"].as_str().unwrap();
    let started = midnight(10);
    app.backdate_subscription(started).await;

    // Ten days: each day one `large` call (150,000 in, 40,000 out) and two `small` calls
    // (150,000 in, 60,000 out each); odd days report through response headers.
    let mut records = Vec::new();
    for day in 0..10_i64 {
        let at = |hour: i64| {
            (started + chrono::Duration::days(day) + chrono::Duration::hours(hour)).to_rfc3339()
        };
        let call = |id: String, at: String, model: &str, input: u64, output: u64| {
            let base =
                json!({"id": id, "consumer": "w1", "api": "llm", "timestamp": at, "status": 200});
            let mut record = base.as_object().unwrap().clone();
            if day % 2 == 1 {
                record.insert("response_headers".into(), json!({"X-Usage-Input-Tokens": input.to_string(), "X-Usage-Output-Tokens": output.to_string(), "X-Model": model}));
            } else {
                record.insert(
                    "quantities".into(),
                    json!({"input_tokens": input, "output_tokens": output.to_string()}),
                );
                record.insert("dimensions".into(), json!({"model": model}));
            }
            Value::Object(record)
        };
        records.push(call(format!("l{day}"), at(9), "large", 150_000, 40_000));
        records.push(call(format!("s{day}a"), at(10), "small", 150_000, 60_000));
        records.push(call(format!("s{day}b"), at(14), "small", 150_000, 60_000));
    }
    // A failed call's tokens are not billed (the recording policy bills 2xx), and a model no
    // charge names is kept but priced at nothing.
    records.push(json!({"id": "failed", "consumer": "w1", "api": "llm", "timestamp": started.to_rfc3339(), "status": 500,
        "quantities": {"input_tokens": 999_999, "output_tokens": 999_999}, "dimensions": {"model": "large"}}));
    records.push(json!({"id": "medium", "consumer": "w1", "api": "llm", "timestamp": started.to_rfc3339(), "status": 200,
        "quantities": {"input_tokens": 1000, "output_tokens": 1000}, "dimensions": {"model": "medium"}}));
    let (status, answer) = post_events(&app, key, Value::Array(records.clone()).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        (
            &answer["accepted"],
            &answer["not_billable"],
            &answer["rejected"]
        ),
        (&json!(32), &json!(1), &json!([])),
        "{answer}"
    );
    // Sent again: nothing is counted twice.
    let (_, again) = post_events(&app, key, Value::Array(records).to_string()).await;
    assert_eq!(again["duplicates"], 32, "{again}");

    let (status, preview) = app
        .get("/v1/subscriptions/writer-llm/invoice-preview")
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let lines: Vec<(&str, &str)> = preview["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ("1,500,000 input_tokens (model large)", "4.50"),
            ("400,000 output_tokens (model large)", "6.00"),
            ("3,000,000 input_tokens (model small)", "1.50"),
            ("1,200,000 output_tokens (model small)", "3.00"),
        ],
        "{preview}"
    );
    assert_eq!(preview["total"], "15.00");
    assert_eq!(preview["usage"]["billable_calls"], 31);
    let meters = preview["usage"]["meters"].as_array().unwrap();
    let quantity = |meter: &str, model: &str| {
        meters
            .iter()
            .find(|m| m["meter"] == meter && m["dimensions"]["model"] == model)
            .map(|m| m["quantity"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        quantity("input_tokens", "large").as_deref(),
        Some("1500000")
    );
    assert_eq!(
        quantity("output_tokens", "small").as_deref(),
        Some("1200000")
    );
    assert_eq!(quantity("input_tokens", "medium").as_deref(), Some("1000"));
    assert_eq!(meters.len(), 6, "two meters by three models: {preview}");

    // The billing run sends one invoice item per charge, each with the preview's amount.
    let runner = Runner::new(&app, &stripe).await;
    let report = runner.job("r").run_day(today()).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.items_created, 4, "{report:?}");
    let items = stripe.requests("POST", "/v1/invoiceitems").await;
    let mut sent: Vec<(String, String)> = items
        .iter()
        .map(|r| {
            (
                r.field("amount").unwrap().to_owned(),
                r.field("description").unwrap().to_owned(),
            )
        })
        .collect();
    sent.sort();
    let id = subscription["id"].as_str().unwrap();
    assert_eq!(
        sent.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        vec!["150", "300", "450", "600"],
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|(a, d)| a == "450" && d.contains("1,500,000 input_tokens (model large)")),
        "{sent:?}"
    );
    for item in &items {
        let key = item.idempotency_key.as_deref().unwrap();
        assert!(key.starts_with(&format!("tb-usage-{id}-")), "{key}");
    }
    runner.store.close().await;
}

/// Amberflo's example ($5 per started 1,000 API calls after 5,000 free, plus $0.40 per started
/// 1,000 records processed), Kill Bill's two events of 10.5 and 15 minutes, a `max` meter of
/// peak concurrent jobs and a `unique_count` meter of distinct end users, all on one invoice.
async fn calls_records_minutes_peak_jobs_and_end_users_go_on_one_invoice(backend: Backend) {
    let Some((stripe, app)) = app_with_items(backend, 5, Some(0)).await else {
        return;
    };
    created(
        &app,
        "/v1/apis",
        json!({"slug": "jobs", "name": "Jobs API",
        "meters": [
            {"key": "records", "aggregation": "sum", "quantity": "records"},
            {"key": "minutes", "aggregation": "sum", "quantity": "minutes"},
            {"key": "peak_jobs", "aggregation": "max", "quantity": "jobs"},
            {"key": "end_users", "aggregation": "unique_count", "property": "end_user"}
        ]}),
    )
    .await;
    created(
        &app,
        "/v1/tiers",
        json!({"slug": "jobs-plan", "api": "jobs", "name": "Jobs", "currency": "usd",
            "usage": {"model": "package", "package_size": 1000, "package_price": "5", "free_units": 5000},
            "charges": [
                {"meter": "records", "name": "records processed", "usage": {"model": "package", "package_size": 1000, "package_price": "0.40"}},
                {"meter": "minutes", "usage": {"model": "per_unit", "unit_price": "0.10"}},
                {"meter": "peak_jobs", "name": "peak concurrent jobs", "usage": {"model": "per_unit", "unit_price": "10"}},
                {"meter": "end_users", "name": "end users", "usage": {"model": "per_unit", "unit_price": "0.50"}}
            ]}),
    )
    .await;
    created(
        &app,
        "/v1/subscribers",
        json!({"external_id": "etl", "name": "ETL Co", "email": "billing@etl.example"}),
    )
    .await;
    created(
        &app,
        "/v1/subscriptions",
        json!({"external_id": "etl-jobs", "subscriber": "etl", "tier": "jobs-plan", "consumer_keys": ["e1"]}),
    )
    .await;
    let gateway = created(&app, "/v1/gateways", json!({"name": "edge"})).await;
    let key = gateway["key"].as_str().unwrap();
    let started = midnight(2);
    app.backdate_subscription(started).await;

    // 7,200 calls over two days; the first 40 of each day name one of three end users, so the
    // same user is seen in several hours and on both days, and is counted once.
    for day in 0..2_i64 {
        let records: Vec<Value> = (0..3600)
            .map(|i| {
                let at = started + chrono::Duration::days(day) + chrono::Duration::seconds(i * 20);
                let mut record = json!({"id": format!("c{day}-{i}"), "consumer": "e1", "api": "jobs", "timestamp": at.to_rfc3339(), "status": 200});
                if i < 40 {
                    record["properties"] = json!({"end_user": format!("u{}", i % 3)});
                }
                record
            })
            .collect();
        let (status, answer) = post_events(&app, key, Value::Array(records).to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["accepted"], 3600, "{answer}");
    }

    let at = |hours: i64| (started + chrono::Duration::hours(hours)).to_rfc3339();
    let event = |tracking: &str, meter: &str, value: Value, hours: i64| json!({"tracking_id": tracking, "meter": meter, "subscription": "etl-jobs", "timestamp": at(hours), "value": value});
    let events = json!([
        event("batch-1", "records", json!(12500), 1),
        event("batch-2", "records", json!("30000"), 20),
        event("batch-3", "records", json!(2750), 30),
        event("kb-1", "minutes", json!(10.5), 2),
        event("kb-2", "minutes", json!("15"), 3),
        event("jobs-1", "peak_jobs", json!(3), 4),
        event("jobs-2", "peak_jobs", json!(7), 5),
        event("jobs-3", "peak_jobs", json!(5), 26),
    ]);
    // With the admin token, or a gateway key; by subscription or by consumer key.
    let (status, answer) = post_usage_events(&app, crate::helpers::ADMIN_TOKEN, events).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 8, "{answer}");
    let resent = json!([{"tracking_id": "kb-1", "meter": "minutes", "consumer": "e1", "timestamp": at(2), "value": "10.5"}]);
    let (status, answer) = post_usage_events(&app, key, resent).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        (&answer["accepted"], &answer["duplicates"]),
        (&json!(0), &json!(1)),
        "{answer}"
    );
    assert_eq!(app.count_rows("usage_events").await, 8);

    let (status, preview) = app.get("/v1/subscriptions/etl-jobs/invoice-preview").await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let lines: Vec<(&str, &str)> = preview["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                "7,200 API calls, 5,000 included: 3 blocks of 1,000",
                "15.00"
            ),
            ("45,250 records processed: 46 blocks of 1,000", "18.40"),
            ("25.5 minutes", "2.55"),
            ("7 peak concurrent jobs", "70.00"),
            ("3 end users", "1.50"),
        ],
        "{preview}"
    );
    assert_eq!(preview["total"], "107.45");

    // The billing run sends the five lines as five invoice items, each once.
    let runner = Runner::new(&app, &stripe).await;
    let report = runner.job("r").run_day(today()).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.items_created, 5, "{report:?}");
    let mut amounts: Vec<u64> = stripe
        .requests("POST", "/v1/invoiceitems")
        .await
        .iter()
        .map(|r| r.field("amount").unwrap().parse().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, vec![150, 255, 1500, 1840, 7000]);
    runner.store.close().await;
    let meters = preview["usage"]["meters"].as_array().unwrap();
    let minutes = meters.iter().find(|m| m["meter"] == "minutes").unwrap();
    assert_eq!(minutes["quantity"], "25.5", "Kill Bill's 10.5 + 15");

    // The subscriber's portal page shows the meters of the period so far, as the preview does.
    let (status, link) = app
        .post("/v1/subscriptions/etl-jobs/portal-links", &json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let page = app
        .client
        .get(app.url(link["path"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    for (meter, quantity) in [
        ("records", "45250"),
        ("minutes", "25.5"),
        ("peak_jobs", "7"),
        ("end_users", "3"),
    ] {
        assert!(
            html.contains(&format!("data-meter=\"{meter}\">{quantity}</td>")),
            "{meter} {quantity}: {html}"
        );
    }
    assert!(html.contains("3 end users"), "the charge's line: {html}");

    // The series shows each meter by day: distinct users per day, the day's peak.
    let (status, series) = app
        .get(&format!(
            "/v1/usage?subscription=etl-jobs&granularity=day&from={}",
            started.date_naive()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{series}");
    let day = |index: usize, meter: &str| {
        series["data"][index]["meters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["meter"] == meter)
            .map(|m| m["quantity"].as_str().unwrap().to_owned())
    };
    assert_eq!(series["data"][0]["billable_calls"], 3600, "{series}");
    assert_eq!(day(0, "end_users").as_deref(), Some("3"));
    assert_eq!(day(1, "end_users").as_deref(), Some("3"));
    assert_eq!(day(0, "peak_jobs").as_deref(), Some("7"));
    assert_eq!(day(1, "peak_jobs").as_deref(), Some("5"));
    assert_eq!(day(0, "records").as_deref(), Some("42500"));
    assert_eq!(day(1, "records").as_deref(), Some("2750"));

    // The export is one stream of calls' and meters' rows in revision order.
    let (status, export) = app.get("/v1/usage/export?limit=10000").await;
    assert_eq!(status, StatusCode::OK, "{export}");
    let rows = export["data"].as_array().unwrap();
    let revisions: Vec<i64> = rows
        .iter()
        .map(|r| r["revision"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    let records: i64 = rows
        .iter()
        .filter(|r| r["meter"] == "records")
        .map(|r| r["quantity"].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(records, 45_250);
    let calls: i64 = rows
        .iter()
        .filter_map(|r| r["billable_calls"].as_i64())
        .sum();
    assert_eq!(calls, 7200);
    // A page boundary falls between the two tables' rows and loses none.
    let mut seen = 0;
    let mut after = "0".to_owned();
    loop {
        let (_, page) = app
            .get(&format!("/v1/usage/export?limit=7&after={after}"))
            .await;
        seen += page["data"].as_array().unwrap().len();
        after = page["next_after"].as_str().unwrap().to_owned();
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(seen, rows.len());
}

async fn meters_charges_and_usage_events_refuse_what_they_cannot_take(app: TestApp) {
    for (meters, field) in [
        (
            json!([{"key": "calls", "aggregation": "count"}]),
            "meters[0].key",
        ),
        (
            json!([{"key": "tokens", "aggregation": "sum"}]),
            "meters[0].quantity",
        ),
        (
            json!([{"key": "users", "aggregation": "unique_count"}]),
            "meters[0].property",
        ),
        (
            json!([{"key": "t", "aggregation": "median"}]),
            "meters[0].aggregation",
        ),
    ] {
        let answer = app
            .post(
                "/v1/apis",
                &json!({"slug": "bad", "name": "Bad", "meters": meters}),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    assert_eq!(app.count_rows("apis").await, 0);
    created(
        &app,
        "/v1/apis",
        json!({"slug": "llm", "name": "LLM", "meters": [{"key": "tokens", "aggregation": "sum", "quantity": "tokens"}],
            "dimensions": [{"key": "model"}]}),
    )
    .await;
    let tier = |charges: Value| json!({"slug": "t", "api": "llm", "name": "T", "currency": "usd", "charges": charges});
    let price = json!({"model": "per_unit", "unit_price": "1"});
    for (body, field) in [
        (
            tier(json!([{"meter": "seconds", "usage": price}])),
            "charges[0].meter",
        ),
        (
            tier(json!([{"meter": "tokens", "dimensions": {"region": "eu"}, "usage": price}])),
            "charges[0].dimensions.region",
        ),
        (
            tier(json!([{"meter": "calls", "dimensions": {"model": "large"}, "usage": price}])),
            "charges[0].dimensions",
        ),
        (
            tier(json!([{"meter": "tokens", "usage": price}, {"meter": "tokens", "usage": price}])),
            "charges[1]",
        ),
        (tier(json!([])), "usage"),
        (
            json!({"slug": "t", "api": "llm", "name": "T", "currency": "usd", "usage": price,
                "charges": [{"meter": "units", "usage": price}]}),
            "charges[0].meter",
        ),
    ] {
        let answer = app.post("/v1/tiers", &body).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    assert_eq!(app.count_rows("tiers").await, 0);
    let tier = created(
        &app,
        "/v1/tiers",
        tier(json!([{"meter": "tokens", "dimensions": {"model": "large"}, "usage": price}, {"meter": "calls", "usage": price}])),
    )
    .await;
    assert_eq!(tier["charges"][0]["dimensions"]["model"], "large", "{tier}");
    let (_, api) = app.get("/v1/apis/llm").await;
    assert_eq!(api["meters"][0]["aggregation"], "sum", "{api}");
    // A meter's aggregation cannot change under it: its hours were kept by the old one.
    let answer = app
        .send(
            app.client
                .patch(app.url("/v1/apis/llm"))
                .bearer_auth(crate::helpers::ADMIN_TOKEN)
                .json(&json!({"meters": [{"key": "tokens", "aggregation": "max", "quantity": "tokens"}]})),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", None);
    let (_, unchanged) = app.get("/v1/apis/llm").await;
    assert_eq!(unchanged, api);
    assert_eq!(api["dimensions"][0]["max_values"], 100, "{api}");

    created(
        &app,
        "/v1/subscribers",
        json!({"external_id": "s", "name": "S", "email": "s@s.example"}),
    )
    .await;
    created(
        &app,
        "/v1/subscriptions",
        json!({"external_id": "s-llm", "subscriber": "s", "tier": "t", "consumer_keys": ["k"]}),
    )
    .await;
    let now = Utc::now().to_rfc3339();
    let (status, answer) = post_usage_events(
        &app,
        crate::helpers::ADMIN_TOKEN,
        json!([
            {"tracking_id": "a", "meter": "seconds", "subscription": "s-llm", "timestamp": now, "value": 1},
            {"tracking_id": "b", "meter": "tokens", "subscription": "s-llm", "timestamp": now},
            {"tracking_id": "c", "meter": "tokens", "subscription": "s-llm", "consumer": "k", "timestamp": now, "value": 1},
            {"tracking_id": "d", "meter": "tokens", "subscription": "nobody", "timestamp": now, "value": 1},
            {"tracking_id": "e", "meter": "tokens", "consumer": "k", "timestamp": now, "value": "-2"},
            {"tracking_id": "f", "meter": "calls", "consumer": "k", "timestamp": now, "value": 1},
            {"tracking_id": "g", "meter": "tokens", "consumer": "k", "timestamp": now, "value": 1, "colour": "red"}
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let codes: Vec<(u64, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (0, "unknown_meter"),
            (1, "invalid_quantity"),
            (2, "invalid_record"),
            (3, "unknown_subscription"),
            (4, "invalid_quantity"),
            (5, "unknown_meter"),
            (6, "invalid_record"),
        ],
        "{answer}"
    );
    assert_eq!(answer["accepted"], 0);
    assert_eq!(app.count_rows("usage_events").await, 0);
    let (status, _) = post_usage_events(&app, "not-a-key", json!([])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let answer = post_usage_events(&app, crate::helpers::ADMIN_TOKEN, json!("nope")).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "no_readable_records",
        None,
    );

    // A record's bad quantity is refused with its field named, the rest of the batch taken.
    let gateway = created(&app, "/v1/gateways", json!({"name": "edge"})).await;
    let records = json!([
        {"id": "r1", "consumer": "k", "api": "llm", "timestamp": now, "status": 200, "quantities": {"tokens": "lots"}},
        {"id": "r2", "consumer": "k", "api": "llm", "timestamp": now, "status": 200, "quantities": {"tokens": 12}}
    ]);
    let (status, answer) =
        post_events(&app, gateway["key"].as_str().unwrap(), records.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["code"], "invalid_quantity");
    assert!(
        answer["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("quantities.tokens: `lots`"),
        "{answer}"
    );
}

async fn a_dimension_takes_at_most_its_max_values(app: TestApp) {
    created(
        &app,
        "/v1/apis",
        json!({"slug": "llm", "name": "LLM", "meters": [{"key": "tokens", "aggregation": "sum", "quantity": "tokens"}],
            "dimensions": [{"key": "model", "max_values": 2}]}),
    )
    .await;
    created(
        &app,
        "/v1/tiers",
        json!({"slug": "t", "api": "llm", "name": "T", "currency": "usd",
            "charges": [{"meter": "tokens", "usage": {"model": "per_unit", "unit_price": "0.001"}}]}),
    )
    .await;
    created(
        &app,
        "/v1/subscribers",
        json!({"external_id": "s", "name": "S", "email": "s@s.example"}),
    )
    .await;
    created(
        &app,
        "/v1/subscriptions",
        json!({"external_id": "s-llm", "subscriber": "s", "tier": "t", "consumer_keys": ["k"]}),
    )
    .await;
    let gateway = created(&app, "/v1/gateways", json!({"name": "edge"})).await;
    let key = gateway["key"].as_str().unwrap();
    let now = Utc::now().to_rfc3339();
    let record = |id: &str, model: &str| json!({"id": id, "consumer": "k", "api": "llm", "timestamp": now, "status": 200, "quantities": {"tokens": 10}, "dimensions": {"model": model}});
    let (status, answer) = post_events(
        &app,
        key,
        json!([
            record("1", "a"),
            record("2", "b"),
            record("3", "c"),
            record("4", "a")
        ])
        .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 2);
    assert_eq!(answer["rejected"][0]["code"], "dimension_limit");
    assert!(
        answer["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("max_values of 2"),
        "{answer}"
    );
    assert_eq!(app.count_rows("dimension_values").await, 2);
    // The bound holds after a restart: the values are read back from the database.
    let replica = crate::helpers::spawn_replica(&app, |_| {}).await;
    let (_, answer) = post_events(
        &replica,
        key,
        json!([record("5", "d"), record("6", "b")]).to_string(),
    )
    .await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["code"], "dimension_limit", "{answer}");
    let (_, preview) = app.get("/v1/subscriptions/s-llm/invoice-preview").await;
    assert_eq!(preview["lines"][0]["description"], "40 tokens", "{preview}");
    assert_eq!(preview["total"], "0.04");
}

/// A charge's quota on a declared meter: beyond `soft_limit` the overage price, at `hard_limit`
/// the access decision answers 429 until the period ends, for calls' tokens and events alike.
async fn a_hard_limit_on_a_meter_refuses_access_and_a_soft_limit_prices_the_overage(app: TestApp) {
    created(
        &app,
        "/v1/apis",
        json!({"slug": "llm", "name": "LLM", "meters": [{"key": "tokens", "aggregation": "sum", "quantity": "tokens"}]}),
    )
    .await;
    created(
        &app,
        "/v1/tiers",
        json!({"slug": "t", "api": "llm", "name": "T", "currency": "usd",
            "charges": [{"meter": "tokens", "usage": {"model": "per_unit", "unit_price": "0.01"},
                "quota": {"soft_limit": 1000, "overage_unit_price": "0.05", "hard_limit": 1500}}]}),
    )
    .await;
    created(
        &app,
        "/v1/subscribers",
        json!({"external_id": "s", "name": "S", "email": "s@s.example"}),
    )
    .await;
    created(
        &app,
        "/v1/subscriptions",
        json!({"external_id": "s-llm", "subscriber": "s", "tier": "t", "consumer_keys": ["k"]}),
    )
    .await;
    let gateway = created(&app, "/v1/gateways", json!({"name": "edge"})).await;
    let key = gateway["key"].as_str().unwrap();
    let now = Utc::now().to_rfc3339();
    let record = |id: &str, tokens: u64| json!({"id": id, "consumer": "k", "api": "llm", "timestamp": now, "status": 200, "quantities": {"tokens": tokens}});
    let (status, _) = crate::forward_auth::ask(&app, key, "k", "llm").await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = post_events(
        &app,
        key,
        json!([record("1", 800), record("2", 400)]).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, _) = crate::forward_auth::ask(&app, key, "k", "llm").await;
    assert_eq!(status, StatusCode::OK, "1,200 of 1,500 tokens");
    let (_, preview) = app.get("/v1/subscriptions/s-llm/invoice-preview").await;
    let lines: Vec<(&str, &str)> = preview["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ("1,000 tokens", "10.00"),
            ("200 tokens over the soft limit of 1,000", "10.00")
        ],
        "{preview}"
    );
    // A usage event takes it to the limit: the next call is refused until the period ends.
    let (status, answer) = post_usage_events(
        &app,
        key,
        json!([{"tracking_id": "e1", "meter": "tokens", "consumer": "k", "timestamp": now, "value": "300"}]),
    )
    .await;
    assert_eq!(
        (status, &answer["accepted"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{answer}"
    );
    let (status, body) = crate::forward_auth::ask(&app, key, "k", "llm").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["limit"], 1500, "{body}");
    // Another replica reads the same from the database.
    let replica = crate::helpers::spawn_replica(&app, |_| {}).await;
    let (status, _) = crate::forward_auth::ask(&replica, key, "k", "llm").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

/// Senders' own formats carry quantities and dimensions: the response headers Kong's http-log
/// logs, the `data` of an OpenMeter CloudEvent.
async fn kong_logged_headers_and_cloudevent_data_feed_meters_and_dimensions(app: TestApp) {
    created(
        &app,
        "/v1/apis",
        json!({"slug": "llm", "name": "LLM",
            "meters": [{"key": "input_tokens", "aggregation": "sum", "header": "X-Usage-Input-Tokens", "quantity": "input_tokens"}],
            "dimensions": [{"key": "model", "header": "X-Model"}]}),
    )
    .await;
    created(
        &app,
        "/v1/tiers",
        json!({"slug": "t", "api": "llm", "name": "T", "currency": "usd",
            "charges": [{"meter": "input_tokens", "dimensions": {"model": "large"}, "usage": {"model": "per_unit", "unit_price": "0.001"}}]}),
    )
    .await;
    created(
        &app,
        "/v1/subscribers",
        json!({"external_id": "s", "name": "S", "email": "s@s.example"}),
    )
    .await;
    created(
        &app,
        "/v1/subscriptions",
        json!({"external_id": "s-llm", "subscriber": "s", "tier": "t", "consumer_keys": ["k"]}),
    )
    .await;
    let gateway = created(&app, "/v1/gateways", json!({"name": "kong"})).await;
    let key = gateway["key"].as_str().unwrap();
    let kong = json!({
        "request": {"id": "kong-1", "method": "POST", "uri": "/llm/complete", "headers": {"host": "api.example", "x-api-key": "k"}},
        "upstream_status": "200",
        "response": {"status": 200, "headers": {"content-type": "application/json", "x-usage-input-tokens": "1200", "x-model": "large"}},
        "latencies": {"kong": 1, "proxy": 40, "request": 41},
        "service": {"name": "llm"},
        "started_at": Utc::now().timestamp_millis()
    });
    let (status, answer) = post_events(&app, key, kong.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let event = json!({"specversion": "1.0", "id": "0b6d3f2e-8c1a-4e5b-9f7d-2a4c6e8b0d99", "source": "backend",
        "type": "request", "subject": "k", "time": Utc::now().to_rfc3339(),
        "data": {"api": "llm", "status": "200", "input_tokens": 300, "model": "small"}});
    let (status, answer) = app
        .send(
            app.client
                .post(app.url("/api/v1/events"))
                .bearer_auth(key)
                .header("content-type", "application/cloudevents+json")
                .body(event.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let (_, preview) = app.get("/v1/subscriptions/s-llm/invoice-preview").await;
    let meters = preview["usage"]["meters"].as_array().unwrap();
    let tokens = |model: &str| {
        meters
            .iter()
            .find(|m| m["dimensions"]["model"] == model)
            .map(|m| m["quantity"].as_str().unwrap().to_owned())
    };
    assert_eq!(tokens("large").as_deref(), Some("1200"), "{preview}");
    assert_eq!(tokens("small").as_deref(), Some("300"), "{preview}");
    assert_eq!(preview["total"], "1.20", "{preview}");
}

/// README's token-pricing example, as a catalog file: applied, read back as written, applied
/// again as no change.
async fn the_token_pricing_example_file_applies_and_reads_back(app: TestApp) {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tokens.yaml");
    let first = crate::catalog_file::apply(&app, file);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let written: Value = serde_norway::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    for (kind, key) in [("apis", "slug"), ("tiers", "slug")] {
        let entry = &written[kind][0];
        let id = entry[key].as_str().unwrap();
        let (status, answered) = app.get(&format!("/v1/{kind}/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{answered}");
        crate::catalog_file::assert_written_back(entry, &answered, &format!("{kind}/{id}"));
    }
    let again = crate::catalog_file::apply(&app, file);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("tiers: 0 created, 0 updated, 1 unchanged"),
        "{stdout}"
    );
    assert!(
        stdout.contains("apis: 0 created, 0 updated, 1 unchanged"),
        "{stdout}"
    );
}

/// A spend alert prices the charges on declared meters, reached by a usage event alone; a
/// charge's hard limit is notified as `quota.reached` naming its meter; each once.
async fn spend_alerts_price_charges_and_a_meter_s_hard_limit_is_notified(backend: Backend) {
    let provider = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .mount(&provider)
        .await;
    let Some(app) =
        crate::helpers::spawn_app_with(backend, crate::notifications::notify_to(&provider)).await
    else {
        return;
    };
    created(
        &app,
        "/v1/apis",
        json!({"slug": "llm", "name": "LLM", "meters": [{"key": "tokens", "aggregation": "sum", "quantity": "tokens"}]}),
    )
    .await;
    created(
        &app,
        "/v1/tiers",
        json!({"slug": "t", "api": "llm", "name": "T", "currency": "usd",
            "charges": [{"meter": "tokens", "usage": {"model": "per_unit", "unit_price": "0.01"}, "quota": {"hard_limit": 1500}}],
            "alerts": [{"spend": "10.00"}]}),
    )
    .await;
    created(
        &app,
        "/v1/subscribers",
        json!({"external_id": "s", "name": "S", "email": "s@s.example"}),
    )
    .await;
    created(
        &app,
        "/v1/subscriptions",
        json!({"external_id": "s-llm", "subscriber": "s", "tier": "t", "consumer_keys": ["k"]}),
    )
    .await;
    let gateway = created(&app, "/v1/gateways", json!({"name": "edge"})).await;
    let key = gateway["key"].as_str().unwrap();
    let now = Utc::now().to_rfc3339();
    let record = |id: &str, tokens: u64| json!({"id": id, "consumer": "k", "api": "llm", "timestamp": now, "status": 200, "quantities": {"tokens": tokens}});
    let thresholds = || async { crate::alerts::in_outbox(&app).await };
    let (status, _) = post_events(&app, key, json!([record("1", 800)]).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(thresholds().await.is_empty(), "$8.00 of $10.00");
    // A usage event alone takes the period to $11.00.
    let (status, answer) = post_usage_events(
        &app,
        key,
        json!([{"tracking_id": "e1", "meter": "tokens", "consumer": "k", "timestamp": now, "value": 300}]),
    )
    .await;
    assert_eq!(
        (status, &answer["accepted"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{answer}"
    );
    let found = thresholds().await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "spend.threshold_reached");
    assert_eq!(found[0].1["amount"], "11.00", "{found:?}");
    // 1,600 tokens of a 1,500 limit: the quota is reached, once.
    post_events(&app, key, json!([record("2", 500)]).to_string()).await;
    post_events(&app, key, json!([record("3", 5)]).to_string()).await;
    let found = thresholds().await;
    assert_eq!(found.len(), 2, "{found:?}");
    let quota = found
        .iter()
        .find(|(kind, _)| kind == "quota.reached")
        .unwrap();
    assert_eq!(
        (&quota.1["meter"], &quota.1["limit"], &quota.1["used"]),
        (&json!("tokens"), &json!(1500), &json!("1600")),
        "{found:?}"
    );
}
