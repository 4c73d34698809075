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
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

on_both_databases!(notifications_made_before_a_sigkill_are_delivered_after_the_restart);
on_both_backends!(
    a_notification_that_keeps_failing_is_parked_and_sent_again_by_hand,
    two_replicas_deliver_each_notification_once_and_in_order,
);

const SECRET: &str = "ntf_provider_secret";

fn notify_to(provider: &MockServer) -> impl FnOnce(&mut tollbooth::config::Settings) {
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

/// The bodies the provider received, by notification id, each with how often it came.
async fn received(provider: &MockServer) -> BTreeMap<String, (Value, usize)> {
    let mut by_id: BTreeMap<String, (Value, usize)> = BTreeMap::new();
    for request in provider.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
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
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .with_priority(2)
        .mount(&provider)
        .await;
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
    let id = parked["id"].as_str().unwrap();
    // Parked stays parked: nothing more is sent on its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.received_requests().await.unwrap().len(), 2);

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
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = listed(&app, "delivered").await;
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
    assert_eq!(listed(&app, "delivered").await.len(), 1);
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
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(20)))
        .expect(12)
        .with_priority(2)
        .mount(&provider)
        .await;
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
        if !delivered_ids.insert(id) {
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
    assert_eq!(listed(&first, "delivered").await.len(), 12);
}
