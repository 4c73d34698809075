//! The outbox of notifications to the provider: durable across a SIGKILL, delivered once by
//! one of several replicas, in order per subscription, parked after its attempts and sent again
//! through the admin API.

use crate::billing::setup;
use crate::helpers::{
    ADMIN_TOKEN, Backend, TestApp, assert_error, on_both_backends, on_both_databases,
    spawn_app_with, spawn_replica,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

on_both_databases!(notifications_made_before_a_sigkill_are_delivered_after_the_restart);
on_both_backends!(
    a_notification_that_keeps_failing_is_parked_and_sent_again_by_hand,
    two_replicas_deliver_each_notification_once_and_in_order,
    catalog_changes_are_notified_with_the_object_as_the_admin_api_shows_it,
    catalog_apply_writes_the_events_a_serving_tollbooth_delivers,
    catalog_apply_in_blocking_mode_applies_nothing_when_one_event_is_refused,
);

pub(crate) const SECRET: &str = "ntf_provider_secret";
const STATUS_CHANGED: &str = "subscription.status_changed";

/// Takes the catalog events that setting up a test makes (`count` of them), answering 204.
async fn take_catalog_events(provider: &MockServer, count: u64) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .expect(count)
        .with_priority(10)
        .mount(provider)
        .await;
}

pub(crate) fn notify_to(provider: &MockServer) -> impl FnOnce(&mut tollbooth::config::Settings) {
    let url = format!("{}/hooks/tollbooth", provider.uri());
    move |s| {
        s.notify_url = Some(url);
        s.notify_secret = Some(SECRET.to_owned().into());
        s.notify_retry_base = "10ms".to_owned().try_into().unwrap();
    }
}

async fn cancel(app: &TestApp, subscription: &str, at: &str) {
    let (status, answer) = app
        .post(
            &format!("/v1/subscriptions/{subscription}/cancel"),
            &json!({ "at": at }),
        )
        .await;
    assert!(status.is_success(), "{answer}");
}

/// The status changes the provider received (not the catalog events), by notification id, each
/// with how often it came.
async fn received(provider: &MockServer) -> BTreeMap<String, (Value, usize)> {
    let mut by_id: BTreeMap<String, (Value, usize)> = BTreeMap::new();
    for request in provider.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        if body["type"] != STATUS_CHANGED {
            continue;
        }
        let id = body["id"].as_str().unwrap().to_owned();
        by_id.entry(id).or_insert((body, 0)).1 += 1;
    }
    by_id
}

/// Waits (up to 20 s) until `done` holds of the provider's requests.
async fn wait_for(provider: &MockServer, done: impl Fn(&BTreeMap<String, (Value, usize)>) -> bool) {
    for _ in 0..400 {
        if done(&received(provider).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the provider never got what was awaited: {:?}",
        received(provider).await
    );
}

async fn listed(app: &TestApp, status: &str) -> Vec<Value> {
    let (code, page) = app
        .get(&format!("/v1/notifications?status={status}&limit=100"))
        .await;
    assert_eq!(code, StatusCode::OK, "{page}");
    page["data"].as_array().unwrap().clone()
}

/// A child process, killed when the test ends however it ends (a mock server it posts to goes
/// back to wiremock's pool for other tests).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn notifications_made_before_a_sigkill_are_delivered_after_the_restart(mut app: TestApp) {
    setup(&app, 3).await;
    app.stop().await;
    // The provider first answers too late for tollbooth's timeout: every attempt is under way
    // or failed when the process is killed.
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Killed(
        Command::new(env!("CARGO_BIN_EXE_tollbooth"))
            .arg("serve")
            .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
            .env("TOLLBOOTH_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOLLBOOTH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("TOLLBOOTH_BILLING_ENABLED", "false")
            .env(
                "TOLLBOOTH_NOTIFY_URL",
                format!("{}/hooks/tollbooth", slow.uri()),
            )
            .env("TOLLBOOTH_NOTIFY_SECRET", SECRET)
            .env("TOLLBOOTH_NOTIFY_TIMEOUT", "1s")
            .env("TOLLBOOTH_NOTIFY_RETRY_BASE", "10ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 1..=3 {
        let answer = client
            .post(format!("{base}/v1/subscriptions/acme-{i}/cancel"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"at": "period_end"}))
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "acme-{i}: {}",
            answer.status()
        );
    }
    // All three were sent at least once, and none was answered in time.
    wait_for(&slow, |got| got.len() == 3).await;
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/tollbooth"))
        .respond_with(ResponseTemplate::new(204))
        .expect(3)
        .mount(&provider)
        .await;
    let restarted = spawn_replica(&app, notify_to(&provider)).await;
    wait_for(&provider, |got| got.len() == 3).await;
    let before = received(&slow).await;
    let after = received(&provider).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (id, (body, times)) in &after {
        assert_eq!(*times, 1, "{id} was delivered once");
        assert_eq!(body, &before[id].0, "{id} is delivered as it was made");
        assert_eq!(body["type"], "subscription.status_changed");
        assert_eq!(body["data"]["cancel_at_period_end"], true, "{body}");
    }
    let delivered = listed(&restarted, "delivered").await;
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    assert!(listed(&restarted, "pending").await.is_empty());
}

async fn a_notification_that_keeps_failing_is_parked_and_sent_again_by_hand(backend: Backend) {
    let provider = MockServer::start().await;
    let status_changed = || body_partial_json(json!({ "type": STATUS_CHANGED }));
    Mock::given(method("POST"))
        .and(status_changed())
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(status_changed())
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .with_priority(2)
        .mount(&provider)
        .await;
    // An api, two tiers, a subscriber and a subscription.
    take_catalog_events(&provider, 5).await;
    let configure = notify_to(&provider);
    let Some(app) = spawn_app_with(backend, |s| {
        configure(s);
        s.notify_max_attempts = std::num::NonZeroU32::new(2).unwrap();
    })
    .await
    else {
        return;
    };
    setup(&app, 1).await;
    cancel(&app, "acme-1", "now").await;
    wait_for(&provider, |got| got.values().any(|(_, times)| *times == 2)).await;
    let mut failed = Vec::new();
    for _ in 0..100 {
        failed = listed(&app, "failed").await;
        if !failed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed.len(), 1, "parked after its two attempts");
    let parked = &failed[0];
    assert_eq!(parked["attempts"], 2, "{parked}");
    assert_eq!(
        parked["last_error"], "answered 503 Service Unavailable",
        "{parked}"
    );
    assert_eq!(parked["type"], "subscription.status_changed");
    let id = parked["id"].as_str().unwrap().to_owned();
    let id = id.as_str();
    // Parked stays parked: nothing more is sent on its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received(&provider).await[id].1, 2);

    let (status, retried) = app
        .post(&format!("/v1/notifications/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["attempts"], 0);
    wait_for(&provider, |got| {
        got.get(id).is_some_and(|(_, times)| *times == 3)
    })
    .await;
    let ours = |list: Vec<Value>| -> Vec<Value> {
        list.into_iter()
            .filter(|n| n["type"] == STATUS_CHANGED)
            .collect()
    };
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = ours(listed(&app, "delivered").await);
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["id"], id);
    assert_eq!(
        delivered[0]["body"], parked["body"],
        "the same body each time"
    );
    assert!(listed(&app, "failed").await.is_empty());

    // The daily purge deletes delivered notifications past the retention window (35 days).
    let store = tollbooth::store::Store::connect(&app.database_url)
        .await
        .unwrap();
    let retention = Duration::from_secs(35 * 86_400);
    let now = tollbooth::store::now_ms();
    let day = 86_400_000;
    tollbooth::metering::purge_expired(&store, retention, now + 34 * day)
        .await
        .unwrap();
    assert_eq!(listed(&app, "delivered").await.len(), 1 + 5);
    tollbooth::metering::purge_expired(&store, retention, now + 36 * day)
        .await
        .unwrap();
    assert!(listed(&app, "delivered").await.is_empty());
    store.close().await;

    assert_error(
        &app.get("/v1/notifications?status=lost").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("status"),
    );
    assert_error(
        &app.post(
            "/v1/notifications/ntf_00000000000000000000000000000000/retry",
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
}

async fn two_replicas_deliver_each_notification_once_and_in_order(backend: Backend) {
    let provider = MockServer::start().await;
    // The first delivery fails once: what follows it for the same subscription waits for it.
    let status_changed = || body_partial_json(json!({ "type": STATUS_CHANGED }));
    Mock::given(method("POST"))
        .and(status_changed())
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(status_changed())
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(20)))
        .expect(12)
        .with_priority(2)
        .mount(&provider)
        .await;
    // An api, two tiers, six subscribers and six subscriptions.
    take_catalog_events(&provider, 15).await;
    let Some(first) = spawn_app_with(backend, notify_to(&provider)).await else {
        return;
    };
    let second = spawn_replica(&first, notify_to(&provider)).await;
    setup(&first, 6).await;
    // Two notifications for each subscription: cancel at the period's end, then now; the
    // replicas take turns.
    for i in 1..=6 {
        let (one, other) = if i % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        cancel(one, &format!("acme-{i}"), "period_end").await;
        cancel(other, &format!("acme-{i}"), "now").await;
    }
    wait_for(&provider, |got| {
        got.len() == 12 && got.values().map(|g| g.1).sum::<usize>() == 13
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = received(&provider).await;
    let once: BTreeSet<&String> = got
        .iter()
        .filter(|(_, g)| g.1 == 1)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        once.len(),
        11,
        "each delivered once, one of them after a failed attempt: {got:?}"
    );

    // In order per subscription: the period-end cancel before the cancel now, as made.
    let mut seen: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    let mut delivered_ids = BTreeSet::new();
    for request in provider.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let id = body["id"].as_str().unwrap().to_owned();
        if body["type"] != STATUS_CHANGED || !delivered_ids.insert(id) {
            continue;
        }
        seen.entry(body["data"]["subscription"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["data"]["status"] == "canceled");
    }
    assert_eq!(seen.len(), 6);
    for (subscription, order) in &seen {
        assert_eq!(order, &[false, true], "{subscription}: {seen:?}");
    }
    // The catalog events go one after another (in the order made), and may still be under way.
    let mut delivered = 0;
    for _ in 0..400 {
        delivered = listed(&first, "delivered").await.len();
        if delivered == 12 + 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered, 12 + 15);
}

async fn catalog_changes_are_notified_with_the_object_as_the_admin_api_shows_it(backend: Backend) {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .expect(7)
        .mount(&provider)
        .await;
    let Some(app) = spawn_app_with(backend, notify_to(&provider)).await else {
        return;
    };
    // An api, two tiers, a subscriber and a subscription (and a gateway, which is not told).
    setup(&app, 1).await;
    let request = app
        .client
        .patch(app.url("/v1/apis/weather"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"name": "Weather"}"#);
    let (status, patched) = app.send(request).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    // The same again changes nothing and tells nothing; so does archiving twice.
    let (status, _) = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "acme1", "name": "Acme", "email": "billing@acme.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..2 {
        let request = app
            .client
            .delete(app.url("/v1/tiers/weather-daily"))
            .bearer_auth(ADMIN_TOKEN);
        let (status, archived) = app.send(request).await;
        assert_eq!(status, StatusCode::OK, "{archived}");
    }
    for _ in 0..400 {
        if provider.received_requests().await.unwrap().len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bodies: Vec<Value> = Vec::new();
    for request in provider.received_requests().await.unwrap() {
        bodies.push(serde_json::from_slice(&request.body).unwrap());
    }
    assert_eq!(bodies.len(), 7, "each change told once: {bodies:?}");
    let kinds = |bodies: &[Value]| -> Vec<String> {
        bodies
            .iter()
            .map(|b| b["type"].as_str().unwrap().to_owned())
            .collect()
    };
    // Catalog events of no subscription arrive in the order made.
    let catalog: Vec<Value> = bodies
        .iter()
        .filter(|b| b["type"] != "subscription.created")
        .cloned()
        .collect();
    assert_eq!(
        kinds(&catalog),
        [
            "api.created",
            "tier.created",
            "tier.created",
            "subscriber.created",
            "api.updated",
            "tier.deleted"
        ]
    );
    let by_kind = |kind: &str| {
        bodies
            .iter()
            .filter(|b| b["type"] == kind)
            .map(|b| b["data"].clone())
            .collect::<Vec<_>>()
    };
    // The object as the admin API shows it.
    let (_, api) = app.get("/v1/apis/weather").await;
    assert_eq!(by_kind("api.updated"), [api]);
    assert_eq!(patched["name"], "Weather");
    let (_, subscription) = app.get("/v1/subscriptions/acme-1").await;
    let created = &by_kind("subscription.created")[0];
    for field in ["id", "external_id", "subscriber", "tier", "status"] {
        assert_eq!(created[field], subscription[field], "{field}");
    }
    assert_eq!(by_kind("tier.deleted")[0]["slug"], "weather-daily");
    assert!(by_kind("tier.deleted")[0]["archived_at"].is_string());
}

/// `tollbooth catalog apply FILE` as a user runs it, beside a serving tollbooth on the same
/// database: its changes' events are in the outbox when it exits, and the server delivers them;
/// applying the same file again tells nothing; pruning tells what it archived; a dry run nothing.
async fn catalog_apply_writes_the_events_a_serving_tollbooth_delivers(backend: Backend) {
    let provider = MockServer::start().await;
    let expect = |kind: &'static str, count: u64| {
        Mock::given(method("POST"))
            .and(body_partial_json(json!({ "type": kind })))
            .respond_with(ResponseTemplate::new(204))
            .expect(count)
    };
    for (kind, count) in [
        ("api.created", 1),
        ("tier.created", 3),
        ("tier.deleted", 1),
        ("subscriber.created", 1),
        ("subscription.created", 1),
    ] {
        expect(kind, count).mount(&provider).await;
    }
    let Some(app) = spawn_app_with(backend, notify_to(&provider)).await else {
        return;
    };
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/catalog.yaml");
    // Run beside the server, which runs on this test's thread: waited for off it.
    let database_url = app.database_url.clone();
    let notify_url = format!("{}/hooks/tollbooth", provider.uri());
    let apply = |file: String, more: &'static [&'static str]| {
        let (database_url, notify_url) = (database_url.clone(), notify_url.clone());
        async move {
            let output = tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_tollbooth"))
                    .args(["catalog", "apply"])
                    .args(more)
                    .arg(file)
                    .env("TOLLBOOTH_DATABASE_URL", database_url)
                    .env("TOLLBOOTH_ADMIN_TOKEN", ADMIN_TOKEN)
                    .env("TOLLBOOTH_NOTIFY_URL", notify_url)
                    .env("TOLLBOOTH_NOTIFY_SECRET", SECRET)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    apply(example.to_owned(), &[]).await;
    apply(example.to_owned(), &[]).await;
    // The example without its Scale tier, pruned; a dry run of the same first tells nothing.
    let text = std::fs::read_to_string(example).unwrap();
    let mut file = tollbooth::catalog::CatalogFile::parse(&text).unwrap();
    file.tiers.retain(|t| t.slug.as_str() != "weather-scale");
    let file = serde_json::to_string(&file).unwrap();
    let pruned = std::env::temp_dir().join(format!(
        "tollbooth-pruned-{}-{}.json",
        std::process::id(),
        if backend == Backend::Postgres {
            "pg"
        } else {
            "sqlite"
        }
    ));
    std::fs::write(&pruned, file).unwrap();
    let pruned_path = pruned.to_str().unwrap().to_owned();
    apply(pruned_path.clone(), &["--dry-run", "--prune"]).await;
    apply(pruned_path, &["--prune"]).await;
    let _ = std::fs::remove_file(&pruned);

    let bodies = loop_until_delivered(&provider, 7).await;
    let of = |kind: &str| -> Vec<Value> {
        bodies
            .iter()
            .filter(|b| b["type"] == kind)
            .map(|b| b["data"].clone())
            .collect()
    };
    let (_, api) = app.get("/v1/apis/weather").await;
    assert_eq!(
        of("api.created"),
        [api],
        "the object as the admin API shows it"
    );
    let (_, subscriber) = app.get("/v1/subscribers/acme").await;
    let told = &of("subscriber.created")[0];
    for field in ["id", "external_id", "name", "email"] {
        assert_eq!(told[field], subscriber[field], "{field}");
    }
    let (_, subscription) = app.get("/v1/subscriptions/acme-weather").await;
    let told = &of("subscription.created")[0];
    for field in ["id", "external_id", "subscriber", "tier", "status"] {
        assert_eq!(told[field], subscription[field], "{field}");
    }
    let deleted = &of("tier.deleted")[0];
    assert_eq!(deleted["slug"], "weather-scale");
    assert!(deleted["archived_at"].is_string(), "{deleted}");
    // The subscription's event went in its own order, the rest in the catalog's, as made.
    let catalog: Vec<&str> = bodies
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .filter(|kind| *kind != "subscription.created")
        .collect();
    assert_eq!(
        catalog,
        [
            "api.created",
            "tier.created",
            "tier.created",
            "tier.created",
            "subscriber.created",
            "tier.deleted"
        ]
    );
}

/// Waits (up to 20 s) for `count` deliveries, then a little more for any extra; answers the
/// bodies in the order received.
async fn loop_until_delivered(provider: &MockServer, count: usize) -> Vec<Value> {
    for _ in 0..400 {
        if provider.received_requests().await.unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let bodies: Vec<Value> = provider
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), count, "each change told once: {bodies:?}");
    bodies
}

/// Blocking mode on a file: each change's event is sent before the file's commit; one refused
/// (the first tier's) and the whole file is refused, naming that entry, with nothing stored.
async fn catalog_apply_in_blocking_mode_applies_nothing_when_one_event_is_refused(
    backend: Backend,
) {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"type": "api.created"})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"type": "tier.created"})))
        .respond_with(ResponseTemplate::new(422))
        .expect(1)
        .mount(&provider)
        .await;
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let before = app.catalog_snapshot().await;
    let database_url = app.database_url.clone();
    let notify_url = format!("{}/hooks/tollbooth", provider.uri());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tollbooth"))
            .args(["catalog", "apply"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/catalog.yaml"
            ))
            .env("TOLLBOOTH_DATABASE_URL", database_url)
            .env("TOLLBOOTH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("TOLLBOOTH_NOTIFY_URL", notify_url)
            .env("TOLLBOOTH_NOTIFY_SECRET", SECRET)
            .env("TOLLBOOTH_NOTIFY_BLOCKING", "true")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("tiers[0] (weather-free)") && stderr.contains("nothing was applied"),
        "{stderr}"
    );
    assert!(stderr.contains("422"), "{stderr}");
    assert_eq!(app.catalog_snapshot().await, before);
    assert_eq!(app.count_rows("notifications").await, 0);
}
