use crate::helpers::{
    Backend, TestApp, fresh_database, on_both_backends, on_both_databases, spawn_app_on,
};
use reqwest::StatusCode;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

on_both_databases!(a_restart_keeps_the_catalog);

async fn a_restart_keeps_the_catalog(mut app: TestApp) {
    let (status, created) = app
        .post(
            "/v1/apis",
            &json!({"slug": "weather", "name": "Weather API"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
    let again = spawn_app_on(&app.database_url).await;
    let (status, read) = again.get("/v1/apis/weather").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `tollbooth serve` as users do, waits until it answers, stops it with `signal` (`TERM`
/// or `INT`), and answers what it printed on stdout.
async fn serve_until_signal(database_url: &str, signal: &str) -> String {
    let output = serve_until_signal_output(database_url, signal).await;
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The same, answering all it printed on stdout and stderr (as a service manager keeps them:
/// pipes, not a terminal), with `RUST_LOG` unset.
pub async fn serve_until_signal_output(database_url: &str, signal: &str) -> std::process::Output {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .arg("serve")
        .env("TOLLBOOTH_DATABASE_URL", database_url)
        .env("TOLLBOOTH_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            ready = response.status() == StatusCode::OK;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "tollbooth serve did not answer /healthz");
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "tollbooth serve exited with {} on SIG{signal}",
        output.status
    );
    output
}

on_both_backends!(first_start_prints_an_admin_token_once_and_a_signal_stops_cleanly);

/// With no admin token configured, the first start makes one and prints it once; the next start
/// prints nothing, and the token printed works. SIGTERM and SIGINT both stop it cleanly.
async fn first_start_prints_an_admin_token_once_and_a_signal_stops_cleanly(backend: Backend) {
    let Some(database) = fresh_database(backend).await else {
        return;
    };
    let first = serve_until_signal(&database.url, "TERM").await;
    let token = first
        .lines()
        .find_map(|line| line.strip_prefix("admin token (shown once, keep it safe): "))
        .unwrap_or_else(|| panic!("no admin token printed: {first}"))
        .to_owned();
    let second = serve_until_signal(&database.url, "INT").await;
    assert!(!second.contains("admin token"), "{second}");
    assert!(!second.contains(&token));

    // The printed token is the one the service checks.
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollbooth"))
        .arg("serve")
        .env("TOLLBOOTH_DATABASE_URL", &database.url)
        .env("TOLLBOOTH_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/v1/apis"))
            .bearer_auth(&token)
            .send()
            .await
        {
            answered = Some(response.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answered, Some(StatusCode::OK));
}
