use crate::events::{metered_setup, post_events, usage_totals};
use crate::helpers::{ADMIN_TOKEN, TestApp, on_both_databases, spawn_app_on};
use reqwest::StatusCode;
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_both_databases!(every_acknowledged_record_survives_a_sigkill_exactly_once);

const RECORDS_PER_BATCH: usize = 50;

fn batch(name: &str) -> String {
    let records: Vec<_> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            json!({"id": format!("{name}-{i}"), "consumer": "k1", "api": "weather",
                        "timestamp": chrono::Utc::now().to_rfc3339(), "status": 200})
        })
        .collect();
    serde_json::to_string(&records).unwrap()
}

async fn every_acknowledged_record_survives_a_sigkill_exactly_once(mut app: TestApp) {
    let key = metered_setup(&app).await;
    app.stop().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .arg("serve")
        .env("TOLLBOOTH_DATABASE_URL", &app.database_url)
        .env("TOLLBOOTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOLLBOOTH_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/events");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Four gateways' worth of load; each remembers which batches it sent and which got a 202.
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut loaders = Vec::new();
    for worker in 0..4 {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        let (sent, acked) = (sent.clone(), acked.clone());
        loaders.push(tokio::spawn(async move {
            for n in 0..10_000 {
                let name = format!("w{worker}-b{n}");
                sent.lock().unwrap().push(name.clone());
                let answer = client
                    .post(&url)
                    .bearer_auth(&key)
                    .body(batch(&name))
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status() == StatusCode::ACCEPTED => {
                        acked.lock().unwrap().push(name)
                    }
                    _ => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    for loader in loaders {
        loader.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let acked = acked.lock().unwrap().clone();
    assert!(
        sent.len() > acked.len(),
        "the kill came while requests were under way"
    );

    let app = spawn_app_on(&app.database_url).await;
    let stored_after_crash = usage_totals(&app).await.3;
    let acked_records = i64::try_from(acked.len() * RECORDS_PER_BATCH).unwrap();
    assert!(
        stored_after_crash >= acked_records,
        "{stored_after_crash} stored < {acked_records} acknowledged"
    );

    // The gateway sends everything again: what was acknowledged comes back as duplicates, and in
    // the end every record is counted exactly once.
    for name in &sent {
        let (status, answer) = post_events(&app, &key, batch(name)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let seen = answer["accepted"].as_u64().unwrap() + answer["duplicates"].as_u64().unwrap();
        assert_eq!(seen, RECORDS_PER_BATCH as u64, "{answer}");
        if acked.contains(name) {
            assert_eq!(
                answer["duplicates"], RECORDS_PER_BATCH,
                "acknowledged batch {name} was lost"
            );
        }
    }
    let total = usage_totals(&app).await.3;
    assert_eq!(
        total,
        i64::try_from(sent.len() * RECORDS_PER_BATCH).unwrap()
    );
}
