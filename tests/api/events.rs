use crate::helpers::{TestApp, assert_error, on_both_databases, spawn_app_on};
use crate::tiers::pro_tier;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_databases!(
    a_mixed_batch_is_counted_exactly,
    a_record_sent_again_is_counted_once_even_after_a_restart,
    refused_requests_leave_the_tables_unchanged,
    the_export_cursor_sees_every_change_once_while_records_arrive,
);

/// An api billing 2xx except OPTIONS, a subscription with consumer keys `k1` and `k2`, and a
/// gateway; answers the gateway key.
pub async fn metered_setup(app: &TestApp) -> String {
    let (status, body) = app
        .post("/v1/apis", &json!({"slug": "weather", "name": "Weather API",
            "recording_policy": {"billable_status": ["2xx"], "exclude_methods": ["OPTIONS"], "units_header": "x-usage-units"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app.post("/v1/tiers", &pro_tier("5.00")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .post("/v1/subscriptions", &json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro", "consumer_keys": ["k1", "k2"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, gateway) = app.post("/v1/gateways", &json!({"name": "kong"})).await;
    assert_eq!(status, StatusCode::CREATED);
    gateway["key"].as_str().unwrap().to_owned()
}

pub fn record(id: &str, status: u16) -> Value {
    json!({"id": id, "consumer": "k1", "api": "weather", "timestamp": now(), "status": status, "method": "GET", "path": "/v1/forecast"})
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

pub async fn post_events(app: &TestApp, key: &str, body: String) -> (StatusCode, Value) {
    app.send(
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

/// The subscription's usage summed over the series.
pub async fn usage_totals(app: &TestApp) -> (i64, String, i64, i64) {
    let (status, usage) = app
        .get("/v1/usage?subscription=acme-weather&granularity=day&from=2000-01-01")
        .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    let rows = usage["data"].as_array().unwrap();
    let sum = |field: &str| rows.iter().map(|r| r[field].as_i64().unwrap()).sum::<i64>();
    let units: rust_decimal::Decimal = rows
        .iter()
        .map(|r| {
            r["billable_units"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    (
        sum("billable_calls"),
        units.normalize().to_string(),
        sum("failed_calls"),
        sum("total_calls"),
    )
}

async fn a_mixed_batch_is_counted_exactly(app: TestApp) {
    let key = metered_setup(&app).await;
    let old = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let in_ten_minutes = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let mut options = record("r4", 200);
    options["method"] = json!("OPTIONS");
    let mut units = record("r8", 201);
    units["units"] = json!("2.5");
    let mut header_units = record("r10", 200);
    header_units["response_headers"] = json!({"X-Usage-Units": "4"});
    let batch = json!([
        record("r1", 200),
        record("r2", 404),
        record("r3", 503),
        options,
        {"id": "r5", "consumer": "k1", "api": "weather", "timestamp": now()},
        {"id": "r6", "consumer": "nobody", "api": "weather", "timestamp": now(), "status": 200},
        record("r1", 200),
        units,
        {"id": "r9", "consumer": "k1", "api": "weather", "timestamp": old, "status": 200},
        header_units,
        {"id": "r11", "consumer": "k1", "api": "maps", "timestamp": now(), "status": 200},
        {"id": "r12", "consumer": "k1", "api": "weather", "timestamp": yesterday, "status": 200},
        {"id": "r13", "consumer": "k1", "api": "weather", "timestamp": in_ten_minutes, "status": 200},
    ]);
    let (status, answer) = post_events(&app, &key, batch.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 6, "{answer}");
    assert_eq!(answer["not_billable"], 3, "{answer}");
    assert_eq!(answer["duplicates"], 1, "{answer}");
    let rejected: Vec<(i64, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_i64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        [
            (4, "invalid_record"),
            (5, "unknown_consumer"),
            (8, "too_old"),
            (10, "unknown_api"),
            (11, "before_subscription"),
            (12, "in_future")
        ]
    );
    assert!(
        answer["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("status"),
        "{answer}"
    );
    // Billable: r1 (1 unit), r8 (2.5 units), r10 (4 units from the header); failed: r3; total 6.
    assert_eq!(usage_totals(&app).await, (3, "7.5".to_owned(), 1, 6));

    // NDJSON is taken too.
    let ndjson = format!("{}\n{}\n", record("n1", 200), record("n2", 200));
    let (status, answer) = post_events(&app, &key, ndjson).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(usage_totals(&app).await.0, 5);
}

async fn a_record_sent_again_is_counted_once_even_after_a_restart(mut app: TestApp) {
    let key = metered_setup(&app).await;
    let one = json!([record("same-id", 200)]).to_string();
    let (_, first) = post_events(&app, &key, one.clone()).await;
    assert_eq!(first["accepted"], 1, "{first}");
    let (_, second) = post_events(&app, &key, one.clone()).await;
    assert_eq!(
        (second["accepted"].as_i64(), second["duplicates"].as_i64()),
        (Some(0), Some(1)),
        "{second}"
    );
    app.stop().await;
    let restarted = spawn_app_on(&app.database_url).await;
    let (_, third) = post_events(&restarted, &key, one).await;
    assert_eq!(
        (third["accepted"].as_i64(), third["duplicates"].as_i64()),
        (Some(0), Some(1)),
        "{third}"
    );
    assert_eq!(usage_totals(&restarted).await, (1, "1".to_owned(), 0, 1));
}

async fn refused_requests_leave_the_tables_unchanged(app: TestApp) {
    let key = metered_setup(&app).await;
    let (status, _) = post_events(&app, &key, json!([record("kept", 200)]).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, before) = app.get("/v1/usage/export").await;
    let raw_before = app.count_rows("call_records").await;

    let good = json!([record("x1", 200)]).to_string();
    let missing_key = app
        .send(app.client.post(app.url("/v1/events")).body(good.clone()))
        .await;
    assert_error(&missing_key, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let wrong_key = post_events(&app, "tbg_wrong", good.clone()).await;
    assert_error(&wrong_key, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let admin_key = post_events(&app, crate::helpers::ADMIN_TOKEN, good).await;
    assert_error(&admin_key, StatusCode::UNAUTHORIZED, "unauthorized", None);

    let malformed = post_events(&app, &key, format!("[{}, {{\"id\": ", record("x2", 200))).await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "malformed_json", None);
    assert!(malformed.1["error"]["details"]["column"].as_i64().unwrap() > 1);
    // NDJSON of which no line is JSON: a 400 naming each line (a body with one good line is
    // taken, its bad lines rejected by index: `formats::a_bad_ndjson_line_is_rejected_alone`).
    let ndjson = "{\"id\": \"x3\",, }\n{\"id\": \n".to_owned();
    let malformed = post_events(&app, &key, ndjson).await;
    assert_error(
        &malformed,
        StatusCode::BAD_REQUEST,
        "no_readable_records",
        None,
    );
    let rejected = &malformed.1["error"]["details"]["rejected"];
    assert_eq!(rejected[0]["index"], 0, "{}", malformed.1);
    assert!(
        rejected[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2: "),
        "{}",
        malformed.1
    );

    let many: Vec<Value> = (0..10_001).map(|i| record(&format!("m{i}"), 200)).collect();
    let too_many = post_events(&app, &key, serde_json::to_string(&many).unwrap()).await;
    assert_error(
        &too_many,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_records",
        None,
    );

    let huge = format!("[{}]", " ".repeat(9 * 1024 * 1024));
    let too_big = post_events(&app, &key, huge).await;
    assert_error(
        &too_big,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );

    let (_, after) = app.get("/v1/usage/export").await;
    assert_eq!(after, before);
    assert_eq!(usage_totals(&app).await.3, 1);
    assert_eq!(app.count_rows("call_records").await, raw_before);
}

async fn the_export_cursor_sees_every_change_once_while_records_arrive(app: TestApp) {
    let key = metered_setup(&app).await;
    // Hours of today only: the subscription started today, and earlier calls are not its calls.
    let midnight = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let hours: Vec<String> = (0..4)
        .map(|h| {
            (chrono::Utc::now() - chrono::Duration::hours(h))
                .max(midnight)
                .to_rfc3339()
        })
        .collect();
    let writer = {
        let client = app.client.clone();
        let url = app.url("/v1/events");
        let key = key.clone();
        let hours = hours.clone();
        tokio::spawn(async move {
            for batch in 0..40 {
                let records: Vec<Value> = (0..25)
                    .map(|i| json!({"id": format!("e{batch}-{i}"), "consumer": if i % 2 == 0 { "k1" } else { "k2" },
                        "api": "weather", "timestamp": hours[i % hours.len()], "status": 200}))
                    .collect();
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&records)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::ACCEPTED);
            }
        })
    };
    let mut cursor = "0".to_owned();
    let mut seen_revisions = Vec::new();
    let mut latest: std::collections::HashMap<(String, String), i64> = Default::default();
    let mut poll = async |cursor: &mut String| {
        let (status, page) = app
            .get(&format!("/v1/usage/export?after={cursor}&limit=7"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for row in page["data"].as_array().unwrap() {
            seen_revisions.push(row["revision"].as_str().unwrap().parse::<i64>().unwrap());
            latest.insert(
                (
                    row["subscription"].as_str().unwrap().to_owned(),
                    row["hour"].as_str().unwrap().to_owned(),
                ),
                row["billable_calls"].as_i64().unwrap(),
            );
        }
        *cursor = page["next_after"].as_str().unwrap().to_owned();
        page["has_more"].as_bool().unwrap()
    };
    while !writer.is_finished() {
        poll(&mut cursor).await;
    }
    writer.await.unwrap();
    while poll(&mut cursor).await {}
    poll(&mut cursor).await;
    assert!(
        seen_revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions repeat or go back: {seen_revisions:?}"
    );
    assert_eq!(
        latest.values().sum::<i64>(),
        1000,
        "the last change of each subscription-hour adds up to every record"
    );
}

on_both_databases!(the_purge_deletes_expired_raw_records_and_keeps_the_aggregates);

async fn the_purge_deletes_expired_raw_records_and_keeps_the_aggregates(app: TestApp) {
    let key = metered_setup(&app).await;
    let (status, _) = post_events(&app, &key, json!([record("call", 200)]).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let store = tollbooth::store::Store::connect(&app.database_url)
        .await
        .unwrap();
    let retention = std::time::Duration::from_secs(35 * 86_400);
    let count = async || {
        store
            .begin_read()
            .await
            .unwrap()
            .count_call_records()
            .await
            .unwrap()
    };
    let now = tollbooth::store::now_ms();
    let day = 86_400_000;
    assert_eq!(
        tollbooth::metering::purge_expired(&store, retention, now + 34 * day)
            .await
            .unwrap(),
        0
    );
    assert_eq!(count().await, 1);
    // Past the 35-day window the raw record goes; the aggregate stays.
    assert_eq!(
        tollbooth::metering::purge_expired(&store, retention, now + 36 * day)
            .await
            .unwrap(),
        1
    );
    assert_eq!(count().await, 0);
    assert_eq!(usage_totals(&app).await.3, 1, "aggregates are kept");
}

on_both_databases!(concurrent_batches_sharing_ids_count_each_record_once);

/// Gateways retrying at once send the same ids in different orders; every id counts once, and no
/// request fails (on PostgreSQL several writers commit side by side).
async fn concurrent_batches_sharing_ids_count_each_record_once(app: TestApp) {
    let key = metered_setup(&app).await;
    let ids: Vec<String> = (0..400).map(|i| format!("shared-{i}")).collect();
    let mut senders = Vec::new();
    for worker in 0..8usize {
        let (client, url, key) = (app.client.clone(), app.url("/v1/events"), key.clone());
        let mut order = ids.clone();
        order.rotate_left(worker * 37);
        if worker % 2 == 1 {
            order.reverse();
        }
        senders.push(tokio::spawn(async move {
            let mut accepted = 0;
            for chunk in order.chunks(100) {
                let records: Vec<Value> = chunk.iter().map(|id| record(id, 200)).collect();
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&records)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::ACCEPTED);
                let answer: Value = response.json().await.unwrap();
                assert_eq!(
                    answer["accepted"].as_i64().unwrap() + answer["duplicates"].as_i64().unwrap(),
                    100
                );
                accepted += answer["accepted"].as_i64().unwrap();
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for sender in senders {
        accepted += sender.await.unwrap();
    }
    assert_eq!(accepted, 400);
    assert_eq!(usage_totals(&app).await.0, 400);
}

crate::helpers::on_both_backends!(
    a_full_queue_answers_503_with_retry_after_and_stores_nothing,
    a_graceful_stop_answers_and_stores_what_was_queued
);

/// Another connection holding the database so the ingestion writer waits: the write lock on
/// SQLite, the aggregation table on PostgreSQL.
enum HeldWriter {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl HeldWriter {
    async fn hold(app: &TestApp) -> Self {
        use sqlx::Connection;
        let url = &app.database_url;
        if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            Self::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let lock = "BEGIN; LOCK TABLE usage_hourly IN ACCESS EXCLUSIVE MODE";
            sqlx::raw_sql(lock).execute(&mut conn).await.unwrap();
            Self::Postgres(conn)
        }
    }

    async fn release(self) {
        let result = match self {
            Self::Sqlite(mut conn) => sqlx::raw_sql("COMMIT").execute(&mut conn).await.map(drop),
            Self::Postgres(mut conn) => sqlx::raw_sql("COMMIT").execute(&mut conn).await.map(drop),
        };
        result.unwrap();
    }
}

/// Posts a body in the background and answers its status.
fn post_in_background(
    app: &TestApp,
    key: &str,
    body: String,
) -> tokio::task::JoinHandle<StatusCode> {
    let (client, url, key) = (app.client.clone(), app.url("/v1/events"), key.to_owned());
    tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(key)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    })
}

/// SIGTERM while records wait for the writer: the stop waits for them, their request is answered
/// 202, and they are in the database after the stop.
async fn a_graceful_stop_answers_and_stores_what_was_queued(backend: crate::helpers::Backend) {
    let Some(mut app) = crate::helpers::spawn_app(backend).await else {
        return;
    };
    let key = metered_setup(&app).await;
    let held = HeldWriter::hold(&app).await;
    let three: Vec<Value> = (0..3).map(|i| record(&format!("s{i}"), 200)).collect();
    let first = post_in_background(&app, &key, serde_json::to_string(&three).unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ((), status) = tokio::join!(app.stop(), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!first.is_finished(), "the request waits for the writer");
        held.release().await;
        first.await.unwrap()
    });
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.count_rows("call_records").await, 3);
    assert_eq!(app.count_rows("usage_hourly").await, 1);
}

/// While the database holds the writer up, a queue of 5 records is full after one request of 5:
/// the next is refused at once with 503 + `Retry-After`, and the first is stored once it can be.
async fn a_full_queue_answers_503_with_retry_after_and_stores_nothing(
    backend: crate::helpers::Backend,
) {
    let Some(app) = crate::helpers::spawn_app_with(backend, |s| {
        s.ingest_queue_records = 5;
        s.events_max_records = 5;
    })
    .await
    else {
        return;
    };
    let key = metered_setup(&app).await;
    let five: Vec<Value> = (0..5).map(|i| record(&format!("q{i}"), 200)).collect();
    let five = serde_json::to_string(&five).unwrap();

    let held = HeldWriter::hold(&app).await;
    let first = {
        let app_url = app.url("/v1/events");
        let client = app.client.clone();
        let (key, body) = (key.clone(), five.clone());
        tokio::spawn(async move {
            client
                .post(app_url)
                .bearer_auth(key)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // The first request's records are queued once the writer has taken them.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&key)
        .body(json!([record("q9", 200)]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full", "{body}");

    held.release().await;
    assert_eq!(first.await.unwrap(), StatusCode::ACCEPTED);
    assert_eq!(
        app.count_rows("call_records").await,
        5,
        "the refused record was not stored"
    );
    assert_eq!(usage_totals(&app).await.0, 5);
}
