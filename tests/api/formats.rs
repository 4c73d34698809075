//! Call records as senders post them by default (issue "gateway ingestion"): each fixture in
//! `tests/fixtures/formats/` was built from that sender's own documentation (its README says
//! from where), is posted as the sender posts it, and is counted exactly through `GET /v1/usage`;
//! posted again, it is counted once. A body tollbooth cannot read is a 4xx, never a 202.

use crate::events::usage_totals;
use crate::helpers::{TestApp, assert_error, on_both_databases};
use crate::tiers::pro_tier;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Write as _;

on_both_databases!(
    kong_http_log_one_entry,
    kong_http_log_batch,
    openmeter_cloudevent,
    openmeter_cloudevents_batch,
    apisix_http_logger,
    otlp_logs_from_a_collector,
    fluent_bit_json,
    vector_http_sink_after_a_file_source,
    nginx_json_log_as_a_person_writes_it,
    a_field_mapping_reads_names_the_provider_chose,
    kong_ids_come_from_the_header_the_provider_names,
    gzip_bodies_are_read_and_bounded_after_inflating,
    zstd_bodies_are_read_frame_by_frame_and_bounded_after_inflating,
    a_bad_ndjson_line_is_rejected_alone,
    a_body_with_no_readable_record_is_a_400,
    a_call_the_upstream_never_answered_is_not_a_failure,
    the_gateway_shows_what_its_sender_was_told,
    cloudevent_ids_are_told_apart_by_source_unless_unique_everywhere,
);

/// (billable calls, billable units, failed calls, total calls) of `acme-weather` (key `k1`).
pub(crate) type Totals = (i64, &'static str, i64, i64);

async fn kong_http_log_one_entry(app: TestApp) {
    let body = fixture(include_str!("../fixtures/formats/kong_http_log.json"));
    counted(
        &app,
        "/v1/events",
        "application/json",
        &body,
        (1, "1", 0, 1),
    )
    .await;
}

async fn kong_http_log_batch(app: TestApp) {
    let body = fixture(include_str!("../fixtures/formats/kong_http_log_batch.json"));
    // The 200 and the 500 of k1; the 403 Kong answered itself is k2's (another subscription).
    counted(
        &app,
        "/v1/events",
        "application/json",
        &body,
        (1, "1", 1, 2),
    )
    .await;
}

async fn openmeter_cloudevent(app: TestApp) {
    let body = fixture(include_str!(
        "../fixtures/formats/openmeter_cloudevents.json"
    ));
    let kind = "application/cloudevents+json";
    counted(&app, "/api/v1/events", kind, &body, (1, "1", 0, 1)).await;
}

async fn openmeter_cloudevents_batch(app: TestApp) {
    let body = fixture(include_str!(
        "../fixtures/formats/openmeter_cloudevents_batch.json"
    ));
    let kind = "application/cloudevents-batch+json";
    counted(&app, "/api/v1/events", kind, &body, (1, "1", 1, 2)).await;
}

async fn apisix_http_logger(app: TestApp) {
    let body = fixture(include_str!("../fixtures/formats/apisix_http_logger.json"));
    counted(
        &app,
        "/v1/events",
        "application/json",
        &body,
        (1, "1", 1, 2),
    )
    .await;
}

async fn otlp_logs_from_a_collector(app: TestApp) {
    let body = fixture(include_str!("../fixtures/formats/otlp_logs.json"));
    counted(&app, "/v1/logs", "application/json", &body, (1, "1", 1, 2)).await;
}

async fn fluent_bit_json(app: TestApp) {
    let body = fixture(include_str!("../fixtures/formats/fluentbit_json.json"));
    counted(
        &app,
        "/v1/events",
        "application/json",
        &body,
        (1, "1", 1, 2),
    )
    .await;
}

async fn vector_http_sink_after_a_file_source(app: TestApp) {
    let body = fixture(include_str!("../fixtures/formats/vector_file_json.json"));
    counted(
        &app,
        "/v1/events",
        "application/json",
        &body,
        (1, "1", 1, 2),
    )
    .await;
}

async fn nginx_json_log_as_a_person_writes_it(app: TestApp) {
    // `"status":"$status"`, `$request_time` as the latency, `$msec` as the time, `"units":""`.
    let body = fixture(include_str!(
        "../fixtures/formats/nginx_json_access_log.ndjson"
    ));
    let kind = "application/x-ndjson";
    counted(&app, "/v1/events", kind, &body, (1, "1", 1, 2)).await;
    let (_, export) = app.get("/v1/usage/export").await;
    assert!(!export["data"].as_array().unwrap().is_empty(), "{export}");
}

async fn a_field_mapping_reads_names_the_provider_chose(app: TestApp) {
    let ingest = json!({"format": "access_log", "api": "weather",
        "fields": {"id": "rid", "consumer": "who.key", "timestamp": "when", "status": "code",
            "latency_seconds": "took", "path": "p", "units": "n"}});
    let key = setup(&app, ingest).await;
    let when = chrono::Utc::now().timestamp_millis() - 60_000;
    let lines = [
        json!({"rid": "m1", "who": {"key": "k1"}, "when": when, "code": 200, "took": 0.5,
            "p": "/forecast?x=1", "n": "2.5", "status": "ignored"}),
        json!({"rid": "m2", "who": {"key": "k1"}, "when": when.to_string(), "code": "503"}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (status, answer) = post(&app, &key, "/v1/events", "application/x-ndjson", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(usage_totals(&app).await, totals((1, "2.5", 1, 2)));
}

async fn kong_ids_come_from_the_header_the_provider_names(app: TestApp) {
    let key = setup(&app, json!({"id_header": "X-Correlation-Id"})).await;
    let entry: Value = serde_json::from_str(&fixture(include_str!(
        "../fixtures/formats/kong_http_log.json"
    )))
    .unwrap();
    // Two calls Kong logged with the same `request.id` (say, two Kong nodes' counters), told
    // apart by the provider's own correlation header.
    let entries: Vec<Value> = ["c-1", "c-2"]
        .iter()
        .map(|id| {
            let mut entry = entry.clone();
            entry["request"]["headers"]["x-correlation-id"] = json!(id);
            entry
        })
        .collect();
    let body = Value::Array(entries).to_string();
    let (status, answer) = post(&app, &key, "/v1/events", "application/json", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        (answer["accepted"].clone(), answer["duplicates"].clone()),
        (json!(2), json!(0))
    );
    assert_eq!(usage_totals(&app).await, totals((2, "2", 0, 2)));
}

async fn gzip_bodies_are_read_and_bounded_after_inflating(app: TestApp) {
    let key = setup(&app, json!({})).await;
    let body = fixture(include_str!(
        "../fixtures/formats/nginx_json_access_log.ndjson"
    ));
    let (status, answer) = post_gzip(&app, &key, gzip(body.as_bytes()), "gzip").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));
    // 20 MB of spaces inflate past the 8 MiB limit from a few kilobytes: a 413, nothing stored.
    let bomb = gzip(&vec![b' '; 20 * 1024 * 1024]);
    assert!(bomb.len() < 100_000);
    let answer = post_gzip(&app, &key, bomb, "gzip").await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );
    let answer = post_gzip(&app, &key, b"not gzip".to_vec(), "gzip").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "malformed_gzip", None);
    let answer = post_gzip(&app, &key, body.into_bytes(), "br").await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_encoding",
        Some("Content-Encoding"),
    );
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));
}

/// `Content-Encoding: zstd`, as Vector's `compression = "zstd"` sends it: every frame read (here
/// the lines split over two), bounded after inflating like gzip.
async fn zstd_bodies_are_read_frame_by_frame_and_bounded_after_inflating(app: TestApp) {
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};
    let key = setup(&app, json!({})).await;
    let body = fixture(include_str!(
        "../fixtures/formats/nginx_json_access_log.ndjson"
    ));
    let lines: Vec<&str> = body.lines().collect();
    let (first, second) = lines.split_at(1);
    let mut frames = compress_to_vec(
        format!("{}\n", first.join("\n")).as_bytes(),
        CompressionLevel::Fastest,
    );
    frames.extend(compress_to_vec(
        format!("{}\n", second.join("\n")).as_bytes(),
        CompressionLevel::Fastest,
    ));
    let (status, answer) = post_gzip(&app, &key, frames, "zstd").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));
    let bomb = compress_to_vec(&vec![b' '; 20 * 1024 * 1024][..], CompressionLevel::Fastest);
    assert!(bomb.len() < 1_000_000, "{}", bomb.len());
    let answer = post_gzip(&app, &key, bomb, "zstd").await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );
    let answer = post_gzip(&app, &key, b"not zstd".to_vec(), "zstd").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "malformed_zstd", None);
    assert_eq!(usage_totals(&app).await, totals((1, "1", 1, 2)));
}

async fn a_bad_ndjson_line_is_rejected_alone(app: TestApp) {
    let key = setup(&app, json!({})).await;
    let body = fixture(include_str!(
        "../fixtures/formats/nginx_json_access_log.ndjson"
    ));
    // The last line cut short, as a shipper stopped mid-write leaves it.
    let cut = &body.trim_end()[..body.trim_end().len() - 20];
    let (status, answer) = post(
        &app,
        &key,
        "/v1/events",
        "application/x-ndjson",
        cut.to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["code"], "invalid_record");
    assert!(
        answer["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 3: "),
        "{answer}"
    );
}

async fn a_body_with_no_readable_record_is_a_400(app: TestApp) {
    let key = setup(&app, json!({"format": "kong"})).await;
    // Kong entries from a setup that logs no caller key: not one can be counted.
    let entries: Vec<Value> = (0..3)
        .map(|i| {
            json!({"request": {"id": format!("r{i}"), "headers": {}}, "started_at": 1,
            "response": {"status": 200}, "latencies": {}})
        })
        .collect();
    let answer = post(
        &app,
        &key,
        "/v1/events",
        "application/json",
        Value::Array(entries).to_string(),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "no_readable_records",
        None,
    );
    let first = &answer.1["error"]["details"]["rejected"][0];
    assert!(
        first["message"].as_str().unwrap().contains("X-Api-Key"),
        "{first}"
    );
    // An OTLP request with no log record.
    let answer = post(
        &app,
        &key,
        "/v1/logs",
        "application/json",
        r#"{"resourceLogs": []}"#.to_owned(),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "no_readable_records",
        None,
    );
    assert_eq!(app.count_rows("call_records").await, 0);
}

async fn a_call_the_upstream_never_answered_is_not_a_failure(app: TestApp) {
    let key = setup(&app, json!({})).await;
    let when = chrono::Utc::now().timestamp_millis() as f64 / 1000.0 - 60.0;
    let nginx = |id: &str, status: &str, upstream: &str| {
        json!({"request_id": id, "msec": format!("{when:.3}"), "status": status,
            "upstream_status": upstream, "http_x_api_key": "k1", "uri": "/weather/forecast"})
    };
    let lines = [
        nginx("g1", "502", ""),    // NGINX could not reach the upstream
        nginx("g2", "504", "-"),   // nor here
        nginx("g3", "503", "503"), // the upstream's own 503: the api's failure
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (status, answer) = post(&app, &key, "/v1/events", "application/x-ndjson", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(usage_totals(&app).await, totals((0, "0", 1, 3)));
}

async fn the_gateway_shows_what_its_sender_was_told(app: TestApp) {
    let key = setup(&app, json!({})).await;
    let body = fixture(include_str!(
        "../fixtures/formats/nginx_json_access_log.ndjson"
    ));
    let (status, _) = post(
        &app,
        &key,
        "/v1/events",
        "application/x-ndjson",
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post(&app, &key, "/v1/events", "application/x-ndjson", body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let unknown =
        r#"{"request_id": "u1", "msec": "1", "status": "200", "http_x_api_key": "nobody"}"#;
    let (status, _) = post(
        &app,
        &key,
        "/v1/events",
        "application/x-ndjson",
        unknown.to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, gateways) = app.get("/v1/gateways").await;
    let id = gateways["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, gateway) = app.get(&format!("/v1/gateways/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{gateway}");
    let seen = &gateway["ingestion"];
    assert_eq!(seen["bodies"], 3, "{gateway}");
    assert_eq!(seen["accepted"], 3, "{gateway}");
    assert_eq!(seen["duplicates"], 3, "{gateway}");
    assert_eq!(seen["rejected"], json!({"too_old": 1}), "{gateway}");
    assert_eq!(seen["recent_rejections"][0]["code"], "too_old");
    assert!(seen["last_sent_at"].as_i64().unwrap() > 0);
    // Another replica sees the same, once this one has saved its counts (every second).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let replica = crate::helpers::spawn_replica(&app, |_| {}).await;
    let (_, elsewhere) = replica.get(&format!("/v1/gateways/{id}")).await;
    assert_eq!(elsewhere["ingestion"], *seen, "{elsewhere}");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics.lines().any(|line| {
        line.starts_with("tollbooth_gateway_rejected_total{")
            && line.contains("code=\"too_old\"")
            && line.contains(&format!("gateway=\"{id}\""))
            && line.ends_with(" 1")
    });
    assert!(counted, "{metrics}");
}

/// The catalog the fixtures call: the api `weather` (routed at `/weather/`), `acme-weather` with
/// the key `k1`, `other-weather` with `k2`, and a gateway with these ingest settings; its key.
pub(crate) async fn setup(app: &TestApp, ingest: Value) -> String {
    let steps = [
        (
            "/v1/apis",
            json!({"slug": "weather", "name": "Weather API", "path_prefixes": ["/weather/"]}),
        ),
        ("/v1/tiers", pro_tier("5.00")),
        (
            "/v1/subscribers",
            json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro",
                "consumer_keys": ["k1"]}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "other-weather", "subscriber": "acme", "tier": "weather-pro",
                "consumer_keys": ["k2"]}),
        ),
        ("/v1/gateways", json!({"name": "sender", "ingest": ingest})),
    ];
    let mut key = String::new();
    for (path, body) in steps {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
        if let Some(k) = answer["key"].as_str() {
            key = k.to_owned();
        }
    }
    key
}

/// Posts the fixture as its sender does and checks what `acme-weather` counts; posted again, the
/// same body adds nothing.
async fn counted(app: &TestApp, path: &str, kind: &str, body: &str, expected: Totals) {
    let key = setup(app, json!({})).await;
    let (status, answer) = post(app, &key, path, kind, body.to_owned()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["rejected"], json!([]), "{answer}");
    assert_eq!(usage_totals(app).await, totals(expected), "{answer}");
    let (status, again) = post(app, &key, path, kind, body.to_owned()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["accepted"], 0, "{again}");
    assert_eq!(again["duplicates"], answer["accepted"], "{again}");
    assert_eq!(usage_totals(app).await, totals(expected));
}

pub(crate) fn totals((billable, units, failed, total): Totals) -> (i64, String, i64, i64) {
    (billable, units.to_owned(), failed, total)
}

pub(crate) async fn post(
    app: &TestApp,
    key: &str,
    path: &str,
    kind: &str,
    body: String,
) -> (StatusCode, Value) {
    app.send(
        app.client
            .post(app.url(path))
            .bearer_auth(key)
            .header("content-type", kind)
            .body(body),
    )
    .await
}

async fn post_gzip(app: &TestApp, key: &str, body: Vec<u8>, encoding: &str) -> (StatusCode, Value) {
    app.send(
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", encoding)
            .body(body),
    )
    .await
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A fixture with its calls moved to a minute ago (they were made on 2026-12-01, which is
/// before any test subscription began and leaves the retention window): every form of each
/// call's time the fixtures' README lists, the nanoseconds before the milliseconds they start
/// with.
pub(crate) fn fixture(text: &str) -> String {
    let made = [1_796_126_400_123_i64, 1_796_126_401_456, 1_796_126_402_789];
    let now = chrono::Utc::now().timestamp_millis() - 60_000;
    let mut text = text.to_owned();
    for at in made {
        let moved = now + (at - made[0]);
        let rfc3339 = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let seconds = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
        for (from, to) in [
            (format!("{at}000000"), format!("{moved}000000")),
            (at.to_string(), moved.to_string()),
            (seconds(at), seconds(moved)),
            (rfc3339(at), rfc3339(moved)),
        ] {
            text = text.replace(&from, &to);
        }
    }
    text
}

/// CloudEvents are the same event when `source` and `id` are (the spec's rule): a counter id
/// `1` of two sources is two events. A UUID or ULID id is unique by its making, so it is one
/// event whatever the source says (and keeps its time order in the dedupe index).
async fn cloudevent_ids_are_told_apart_by_source_unless_unique_everywhere(app: TestApp) {
    let key = setup(&app, json!({})).await;
    let time = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let event = |id: &str, source: &str| {
        json!({"specversion": "1.0", "id": id, "source": source, "type": "request",
            "subject": "k1", "time": time, "data": {"service": "weather", "status": 200}})
    };
    let uuid = "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b";
    let batch = json!([
        event("1", "a"),
        event("1", "b"),
        event(uuid, "a"),
        event(uuid, "b")
    ]);
    let kind = "application/cloudevents-batch+json";
    let (status, answer) = post(&app, &key, "/api/v1/events", kind, batch.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["duplicates"], 1, "{answer}");
}
