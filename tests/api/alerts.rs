//! Usage and spend alerts, and the hard quota's `quota.reached`: written in the ingestion commit
//! that reaches them (visible in the outbox as soon as the records' 202 is answered), each once per
//! period however the records arrive; and the blocking mode, where a catalog change the
//! provider's endpoint does not accept is refused and stores nothing.

use crate::events::{post_events, record};
use crate::helpers::{
    Backend, TestApp, assert_error, on_both_backends, on_both_databases, spawn_app_with,
};
use crate::notifications::SECRET;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

on_both_backends!(
    thresholds_are_notified_by_the_commit_of_the_record_that_reaches_them,
    batches_committed_side_by_side_reach_each_threshold_once,
    a_blocking_endpoint_that_refuses_a_change_leaves_it_unmade,
);
on_both_databases!(
    a_tier_s_alerts_are_checked_and_shown_as_written,
    a_subscription_the_access_book_does_not_hold_yet_is_measured_from_the_database,
);

const THRESHOLD_KINDS: [&str; 3] = [
    "quota.reached",
    "usage.threshold_reached",
    "spend.threshold_reached",
];

/// Notifications to the provider, as `notifications` sends them; `blocking` for blocking mode.
fn notify_to(
    provider: &MockServer,
    blocking: bool,
) -> impl FnOnce(&mut tollbooth::config::Settings) {
    let notify = crate::notifications::notify_to(provider);
    move |s| {
        notify(s);
        s.notify_blocking = blocking;
    }
}

/// The provider takes everything; each threshold kind must come exactly `count` times.
async fn expect_thresholds(provider: &MockServer, counts: [u64; 3]) {
    for (kind, count) in THRESHOLD_KINDS.into_iter().zip(counts) {
        Mock::given(method("POST"))
            .and(body_partial_json(json!({ "type": kind })))
            .respond_with(ResponseTemplate::new(204))
            .expect(count)
            .with_priority(1)
            .mount(provider)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(10)
        .mount(provider)
        .await;
}

/// An api, a tier of $1 a call with a hard quota of 10 calls, alerts at 50 % and 100 % of it and
/// at $3 spent, one subscription (key `k1`) and a gateway key.
async fn setup(app: &TestApp) -> (String, String) {
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
        json!({"slug": "weather-pro", "api": "weather", "name": "Pro", "currency": "usd",
            "usage": {"model": "per_unit", "unit_price": "1.00"},
            "quota": {"hard_limit": 10},
            "alerts": [{"quota": "hard_limit", "percent": "50"},
                       {"quota": "hard_limit", "percent": "100"},
                       {"spend": "3.00"}]}),
    )
    .await;
    post(
        "/v1/subscribers",
        json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
    )
    .await;
    let subscription = post(
        "/v1/subscriptions",
        json!({"external_id": "acme-weather", "subscriber": "acme", "tier": "weather-pro",
               "consumer_keys": ["k1"]}),
    )
    .await;
    let gateway = post("/v1/gateways", json!({"name": "kong"})).await;
    (
        subscription["id"].as_str().unwrap().to_owned(),
        gateway["key"].as_str().unwrap().to_owned(),
    )
}

/// The threshold notifications in the outbox, whatever their delivery state (one listing, so
/// none is seen twice as it moves from pending to delivered), by type then data.
pub(crate) async fn in_outbox(app: &TestApp) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    let (code, page) = app.get("/v1/notifications?limit=100").await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert_eq!(page["has_more"], false);
    for notification in page["data"].as_array().unwrap() {
        let kind = notification["type"].as_str().unwrap().to_owned();
        if THRESHOLD_KINDS.contains(&kind.as_str()) {
            found.push((kind, notification["body"]["data"].clone()));
        }
    }
    found.sort_by_key(|(kind, data)| (kind.clone(), data.to_string()));
    found
}

/// Waits (up to 20 s) until the provider has had `count` threshold notifications; answers them.
async fn delivered(provider: &MockServer, count: usize) -> Vec<Value> {
    for _ in 0..400 {
        let bodies: Vec<Value> = provider
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .filter(|b| THRESHOLD_KINDS.iter().any(|kind| b["type"] == *kind))
            .collect();
        if bodies.len() >= count {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the provider never had {count} threshold notifications");
}

async fn post_one(app: &TestApp, key: &str, id: &str) {
    let (status, answer) = post_events(app, key, json!([record(id, 200)]).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

async fn thresholds_are_notified_by_the_commit_of_the_record_that_reaches_them(backend: Backend) {
    let provider = MockServer::start().await;
    expect_thresholds(&provider, [1, 2, 1]).await;
    let Some(app) = spawn_app_with(backend, notify_to(&provider, false)).await else {
        return;
    };
    let (subscription, key) = setup(&app).await;

    // What the outbox holds after each record's 202: a threshold appears with the record that
    // reaches it, and never again.
    let mut expected: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    expected.insert(3, vec!["spend.threshold_reached"]);
    expected.insert(5, vec!["usage.threshold_reached"]);
    expected.insert(10, vec!["quota.reached", "usage.threshold_reached"]);
    let mut so_far: Vec<&str> = Vec::new();
    for i in 1..=12u32 {
        post_one(&app, &key, &format!("r{i}")).await;
        if let Some(reached) = expected.get(&i) {
            so_far.extend(reached);
            so_far.sort_unstable();
        }
        let kinds: Vec<String> = in_outbox(&app).await.into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, so_far, "after record {i}");
    }
    // A record sent again is a duplicate: it reaches nothing.
    post_one(&app, &key, "r10").await;
    assert_eq!(in_outbox(&app).await.len(), 4);

    let bodies = delivered(&provider, 4).await;
    let data_of = |kind: &str, key: &str, value: &str| -> Value {
        bodies
            .iter()
            .find(|b| b["type"] == kind && b["data"][key] == value)
            .unwrap_or_else(|| panic!("no {kind} with {key} {value}: {bodies:?}"))["data"]
            .clone()
    };
    let half = data_of("usage.threshold_reached", "percent", "50");
    assert_eq!(half["subscription"], subscription.as_str());
    assert_eq!(half["quota"], "hard_limit");
    assert_eq!(half["limit"], 10);
    assert_eq!(half["threshold"], "5");
    assert_eq!(half["used"], 5);
    assert!(
        half["period_start"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );
    let full = data_of("usage.threshold_reached", "percent", "100");
    assert_eq!(full["used"], 10);
    let spend = data_of("spend.threshold_reached", "spend", "3.00");
    assert_eq!(spend["amount"], "3.00");
    assert_eq!(spend["currency"], "usd");
    assert_eq!(spend["subscription"], subscription.as_str());
    let quota = bodies
        .iter()
        .find(|b| b["type"] == "quota.reached")
        .unwrap();
    assert_eq!(quota["data"]["limit"], 10);
    assert_eq!(quota["data"]["resets_at"], full["period_end"]);
    // Every notification is delivered once: the mocks' `expect` is checked as the server drops.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Twelve requests of two records each, sent at once, each its own batch (at most two records a
/// transaction): on PostgreSQL four writers commit side by side. Each threshold still fires once,
/// from the commit that reached it.
async fn batches_committed_side_by_side_reach_each_threshold_once(backend: Backend) {
    let provider = MockServer::start().await;
    expect_thresholds(&provider, [1, 2, 1]).await;
    let notify = notify_to(&provider, false);
    let Some(app) = spawn_app_with(backend, |s| {
        notify(s);
        s.ingest_batch_records = 2;
    })
    .await
    else {
        return;
    };
    let (_, key) = setup(&app).await;
    let sends = (0..12).map(|i| {
        let (app, key) = (&app, &key);
        async move {
            let body = json!([
                record(&format!("c{i}a"), 200),
                record(&format!("c{i}b"), 200)
            ]);
            post_events(app, key, body.to_string()).await
        }
    });
    for (status, answer) in futures::future::join_all(sends).await {
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["accepted"], 2, "{answer}");
    }
    let outbox = in_outbox(&app).await;
    let kinds: Vec<&str> = outbox.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "quota.reached",
            "spend.threshold_reached",
            "usage.threshold_reached",
            "usage.threshold_reached"
        ],
        "{outbox:?}"
    );
    // Told by the batch of two that reached it: at most one call past the threshold.
    for (_, data) in outbox
        .iter()
        .filter(|(k, _)| k == "usage.threshold_reached")
    {
        let threshold: i64 = data["threshold"].as_str().unwrap().parse().unwrap();
        let used = data["used"].as_i64().unwrap();
        assert!((threshold..=threshold + 1).contains(&used), "{data}");
    }
    let bodies = delivered(&provider, 4).await;
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn a_blocking_endpoint_that_refuses_a_change_leaves_it_unmade(backend: Backend) {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(
            json!({"type": "api.created", "data": {"slug": "refused"}}),
        ))
        .respond_with(ResponseTemplate::new(409))
        .expect(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(
            json!({"type": "api.created", "data": {"slug": "weather"}}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&provider)
        .await;
    let Some(app) = spawn_app_with(backend, notify_to(&provider, true)).await else {
        return;
    };
    let before = app.catalog_snapshot().await;
    let refused = app
        .post(
            "/v1/apis",
            &json!({"slug": "refused", "name": "Refused API"}),
        )
        .await;
    assert_error(
        &refused,
        StatusCode::BAD_GATEWAY,
        "notification_not_accepted",
        None,
    );
    let answer = refused.1;
    assert_eq!(answer["error"]["details"]["notification"], "api.created");
    assert!(
        answer["error"]["details"]["endpoint_answer"]
            .as_str()
            .unwrap()
            .contains("409"),
        "{answer}"
    );
    assert_eq!(app.get("/v1/apis/refused").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.catalog_snapshot().await, before, "nothing was stored");
    assert_eq!(app.count_rows("notifications").await, 0);

    // Accepted: made, and its notification stored as delivered, never sent again.
    let (status, answer) = app
        .post(
            "/v1/apis",
            &json!({"slug": "weather", "name": "Weather API"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (code, page) = app.get("/v1/notifications?status=delivered").await;
    assert_eq!(code, StatusCode::OK);
    let delivered = page["data"].as_array().unwrap();
    assert_eq!(delivered.len(), 1, "{page}");
    assert_eq!(delivered[0]["type"], "api.created");
    assert_eq!(delivered[0]["attempts"], 1);
    // Stored as delivered, nothing is pending for the delivery task, which looks every second
    // (a second send would break the mock's `expect(1)`, checked as the test ends).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.get("/v1/notifications?status=pending").await.1["data"],
        json!([])
    );
}

async fn a_tier_s_alerts_are_checked_and_shown_as_written(app: TestApp) {
    crate::tiers::create_weather_api(&app).await;
    let tier = |alerts: Value| {
        json!({"slug": "weather-pro", "api": "weather", "name": "Pro", "currency": "usd",
               "usage": {"model": "per_unit", "unit_price": "0.01"},
               "quota": {"hard_limit": 1000}, "alerts": alerts})
    };
    let before = app.catalog_snapshot().await;
    for (alerts, field) in [
        (
            json!([{"quota": "soft_limit", "percent": "80"}]),
            "alerts[0].quota",
        ),
        (
            json!([{"quota": "hard_limit", "percent": "0"}]),
            "alerts[0].percent",
        ),
        (
            json!([{"quota": "hard_limit", "percent": "101"}]),
            "alerts[0].percent",
        ),
        (json!([{"spend": "10"}, {"spend": "10.00"}]), "alerts[1]"),
        (json!([{"quota": "hard_limit"}]), "alerts[0]"),
        (
            json!([{"spend": "5", "quota": "hard_limit", "percent": "5"}]),
            "alerts[0]",
        ),
    ] {
        let answer = app.post("/v1/tiers", &tier(alerts.clone())).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    assert_eq!(app.catalog_snapshot().await, before, "nothing was stored");
    let written = json!([{"quota": "hard_limit", "percent": "80"}, {"spend": "250.00"}]);
    let (status, created) = app.post("/v1/tiers", &tier(written.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["alerts"], written);
    let (_, shown) = app.get("/v1/tiers/weather-pro").await;
    assert_eq!(shown["alerts"], written);
}

/// A subscription made on another replica since this one's last catch-up is not in its access
/// book yet; its first batches are measured against its tier as the database has it, in the
/// batch's transaction (the writer's own path, driven here with a book that knows nothing).
async fn a_subscription_the_access_book_does_not_hold_yet_is_measured_from_the_database(
    app: TestApp,
) {
    use std::sync::Arc;
    use tollbooth::metering::thresholds::{Thresholds, Watched};
    use tollbooth::store::{Store, UsageIncrement};
    let (subscription, _) = setup(&app).await;
    let store = Store::connect(&app.database_url).await.unwrap();
    let settings = tollbooth::notify::NotifySettings {
        url: "http://127.0.0.1:9/never-posted".to_owned(),
        secret: SECRET.to_owned().into(),
        max_attempts: 1,
        retry_base: Duration::from_millis(10),
        timeout: Duration::from_secs(1),
        blocking: false,
    };
    let thresholds = Thresholds {
        notifier: tollbooth::notify::Notifier::outbox(store.clone(), Some(settings)),
        watch_of: Arc::new(|_| Watched::Unknown),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let batch = |calls: i64| UsageIncrement {
        subscription_id: subscription.clone(),
        hour: now - now.rem_euclid(3_600_000),
        billable_calls: calls,
        billable_units_micros: i128::from(calls) * 1_000_000,
        failed_calls: 0,
        total_calls: calls,
    };
    let mut kinds_after = Vec::new();
    for calls in [5, 5] {
        let increments = [batch(calls)];
        let mut tx = store.begin().await.unwrap();
        tx.add_usage(&increments).await.unwrap();
        let wrote = thresholds
            .notify_reached(&mut tx, &increments, &[], now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(wrote);
        let outbox = in_outbox(&app).await;
        kinds_after.push(
            outbox
                .into_iter()
                .map(|(k, d)| (k, d["threshold"].clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        kinds_after[0],
        [
            ("spend.threshold_reached".to_owned(), Value::Null),
            ("usage.threshold_reached".to_owned(), json!("5")),
        ]
    );
    assert_eq!(kinds_after[1].len(), 4, "{:?}", kinds_after[1]);
    assert!(kinds_after[1].contains(&("quota.reached".to_owned(), Value::Null)));
    assert!(kinds_after[1].contains(&("usage.threshold_reached".to_owned(), json!("10"))));
    store.close().await;
}
