//! Running tollbooth for real: gateway keys rotated and revoked, the admin token rotated and
//! replaced for good, and a command line that explains itself.

use crate::events::post_events;
use crate::helpers::{
    ADMIN_TOKEN, Backend, TestApp, fresh_database, on_both_backends, on_both_databases,
    spawn_app_on,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::time::Duration;

on_both_databases!(
    a_gateway_key_is_rotated_with_an_overlap_and_a_revoked_gateway_is_refused_for_good,
    the_admin_token_is_rotated_for_good_and_a_configured_one_replaces_the_stored_one,
    health_answers_whether_the_tollbooth_on_listen_is_ready,
    billing_run_says_when_nothing_is_due,
    apis_subscribers_and_tiers_are_changed_by_a_merge_patch_checked_as_a_create,
);
on_both_backends!(
    serve_logs_plainly_to_a_file_without_library_noise,
    stripe_out_of_reach_is_told_at_once_and_sync_says_how_far_it_got,
);

/// Whether tollbooth takes `key` as a gateway's key: a refused key is a 401 that says so.
async fn gateway_key_taken(app: &TestApp, key: &str) -> bool {
    let record = json!({"id": "r1", "consumer": "nobody", "api": "weather",
        "timestamp": "2026-12-01T00:00:00Z", "status": 200});
    let (status, body) = post_events(app, key, record.to_string()).await;
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        return false;
    }
    true
}

async fn a_gateway_key_is_rotated_with_an_overlap_and_a_revoked_gateway_is_refused_for_good(
    app: TestApp,
) {
    let (status, gateway) = app.post("/v1/gateways", &json!({"name": "edge"})).await;
    assert_eq!(status, StatusCode::CREATED, "{gateway}");
    let id = gateway["id"].as_str().unwrap().to_owned();
    let first = gateway["key"].as_str().unwrap().to_owned();
    assert!(gateway_key_taken(&app, &first).await);

    // Rotated with an hour's overlap: both keys are taken, the new one is shown this once.
    let (status, rotated) = app
        .post(
            &format!("/v1/gateways/{id}/keys"),
            &json!({"previous_key_valid_for": "1h"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(rotated["previous_key_expires_at"].is_string(), "{rotated}");
    assert!(gateway_key_taken(&app, &first).await);
    assert!(gateway_key_taken(&app, &second).await);
    let (_, shown) = app.get(&format!("/v1/gateways/{id}")).await;
    assert!(shown.get("key").is_none(), "a key is shown once: {shown}");
    assert!(shown["key_rotated_at"].is_string(), "{shown}");

    // An overlap runs out by itself.
    let (status, rotated) = app
        .post(
            &format!("/v1/gateways/{id}/keys"),
            &json!({"previous_key_valid_for": "1s"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let third = rotated["key"].as_str().unwrap().to_owned();
    assert!(!gateway_key_taken(&app, &first).await, "two rotations ago");
    assert!(gateway_key_taken(&app, &second).await);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        !gateway_key_taken(&app, &second).await,
        "its overlap ran out"
    );
    assert!(gateway_key_taken(&app, &third).await);

    // No body: the previous key keeps the default overlap (24h).
    let response = app
        .client
        .post(app.url(&format!("/v1/gateways/{id}/keys")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let rotated: Value = response.json().await.unwrap();
    let fourth = rotated["key"].as_str().unwrap().to_owned();
    assert!(gateway_key_taken(&app, &third).await);
    assert!(gateway_key_taken(&app, &fourth).await);

    // A bad overlap is refused by field and changes nothing.
    for bad in [
        json!({"previous_key_valid_for": "31d"}),
        json!({"previous_key_valid_for": "soon"}),
    ] {
        let (status, body) = app.post(&format!("/v1/gateways/{id}/keys"), &bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            body["error"]["details"]["field"], "previous_key_valid_for",
            "{body}"
        );
    }
    assert!(gateway_key_taken(&app, &fourth).await);

    // Revoked: no key of it is taken, and it cannot be given a new one.
    let response = app
        .client
        .delete(app.url(&format!("/v1/gateways/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let revoked: Value = response.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert!(!gateway_key_taken(&app, &fourth).await);
    assert!(!gateway_key_taken(&app, &third).await);
    let (status, body) = app
        .post(&format!("/v1/gateways/{id}/keys"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app.post("/v1/gateways/gw_nope/keys", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The gateway is kept, and says it is revoked.
    let (status, shown) = app.get(&format!("/v1/gateways/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["revoked_at"], revoked["revoked_at"]);
}

/// `tollbooth` run as a user runs it, on the app's database, with `env` set and nothing else.
fn tollbooth(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollbooth"));
    command
        .args(args)
        .env("TOLLBOOTH_DATABASE_URL", database_url)
        .env_remove("TOLLBOOTH_ADMIN_TOKEN")
        .env_remove("TOLLBOOTH_CONFIG")
        .env_remove("TOLLBOOTH_LISTEN")
        .env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run tollbooth")
}

/// `tollbooth` run beside a tollbooth of this test's runtime, which must go on answering meanwhile.
async fn tollbooth_beside(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let database_url = database_url.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        tollbooth(&database_url, &args, &env)
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The status of `GET /v1/apis` with `token`.
async fn admin_status(app: &TestApp, token: &str) -> StatusCode {
    let request = app.client.get(app.url("/v1/apis")).bearer_auth(token);
    app.send(request).await.0
}

async fn the_admin_token_is_rotated_for_good_and_a_configured_one_replaces_the_stored_one(
    mut app: TestApp,
) {
    assert_eq!(admin_status(&app, ADMIN_TOKEN).await, StatusCode::OK);

    // While a token is configured, a rotation would not last: refused, and nothing changes.
    let refused = tollbooth(
        &app.database_url,
        &["admin-token", "rotate"],
        &[("TOLLBOOTH_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("TOLLBOOTH_ADMIN_TOKEN"),
        "{refused:?}"
    );
    assert!(
        !text(&refused.stdout).contains("admin token"),
        "{refused:?}"
    );
    assert_eq!(admin_status(&app, ADMIN_TOKEN).await, StatusCode::OK);

    let rotated = tollbooth(&app.database_url, &["admin-token", "rotate"], &[]);
    assert!(rotated.status.success(), "{rotated:?}");
    let stdout = text(&rotated.stdout);
    let new_token = stdout
        .lines()
        .find_map(|line| line.strip_prefix("admin token (shown once, keep it safe): "))
        .unwrap_or_else(|| panic!("no token printed: {stdout}"))
        .to_owned();
    // The running tollbooth refuses the old token within a second, and takes the new one.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        admin_status(&app, ADMIN_TOKEN).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(admin_status(&app, &new_token).await, StatusCode::OK);
    app.stop().await;

    // A start with a configured token puts it in place of the stored one, for good: a later start
    // without it does not bring the rotated token back.
    let mut configured = spawn_app_on(&app.database_url).await;
    assert_eq!(admin_status(&configured, ADMIN_TOKEN).await, StatusCode::OK);
    assert_eq!(
        admin_status(&configured, &new_token).await,
        StatusCode::UNAUTHORIZED
    );
    configured.stop().await;
    let unset = crate::helpers::spawn_replica(&app, |settings| settings.admin_token = None).await;
    assert_eq!(
        admin_status(&unset, &new_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(admin_status(&unset, ADMIN_TOKEN).await, StatusCode::OK);
}

async fn health_answers_whether_the_tollbooth_on_listen_is_ready(mut app: TestApp) {
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    for listen in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let ready = tollbooth_beside(
            &app.database_url,
            &["health"],
            &[("TOLLBOOTH_LISTEN", &listen)],
        )
        .await;
        assert!(ready.status.success(), "{ready:?}");
        assert!(text(&ready.stdout).contains("ready"), "{ready:?}");
    }
    app.stop().await;
    let down = tollbooth(
        &app.database_url,
        &["health", "--timeout", "2s"],
        &[("TOLLBOOTH_LISTEN", &format!("127.0.0.1:{port}"))],
    );
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(
        text(&down.stderr).contains(&format!("not answering on http://127.0.0.1:{port}/readyz")),
        "{down:?}"
    );
}

/// `tollbooth serve` with its stderr in a file (a pipe here), as a service manager or a container
/// runtime keeps it: no colour codes, no scheduler bookkeeping, no PostgreSQL notices.
async fn serve_logs_plainly_to_a_file_without_library_noise(backend: Backend) {
    let Some(database) = fresh_database(backend).await else {
        return;
    };
    // Migrated once already, so the second start meets every `IF NOT EXISTS` PostgreSQL notes.
    let migrated = tollbooth(&database.url, &["migrate"], &[]);
    assert!(migrated.status.success(), "{migrated:?}");
    let output = crate::serve::serve_until_signal_output(&database.url, "TERM").await;
    let log = text(&output.stderr);
    assert!(log.contains("tollbooth serving"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log}");
    assert!(!log.to_lowercase().contains("notice"), "{log}");
    assert!(!log.contains("tokio_cron_scheduler"), "{log}");
}

#[test]
fn the_command_line_explains_itself() {
    let unused = "sqlite://never-opened.db";
    let help = text(&tollbooth(unused, &["--help"], &[]).stdout);
    for wanted in [
        "TOLLBOOTH_RETENTION",
        "STRIPE_SECRET_KEY",
        "TOLLBOOTH_CONFIG",
        "admin-token",
        "health",
    ] {
        assert!(help.contains(wanted), "--help lacks {wanted}: {help}");
    }
    let apply = text(&tollbooth(unused, &["catalog", "apply", "--help"], &[]).stdout);
    assert!(
        apply.contains("<FILE>") && apply.contains("YAML or JSON"),
        "{apply}"
    );
    let run = text(&tollbooth(unused, &["billing", "run", "--help"], &[]).stdout);
    assert!(
        run.contains("--as-of") && run.contains("every earlier day"),
        "{run}"
    );

    // A setting in the wrong form says which form it takes.
    let bad = tollbooth(unused, &["migrate"], &[("TOLLBOOTH_RETENTION", "35")]);
    assert!(!bad.status.success());
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("TOLLBOOTH_RETENTION") && stderr.contains("35d"),
        "{stderr}"
    );
    assert!(!std::path::Path::new("never-opened.db").exists());

    // A database that cannot be opened is named, once, with the system's reason.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent").join("tollbooth.db");
    let output = tollbooth(
        &format!("sqlite://{}", missing.display()),
        &["migrate"],
        &[],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{} does not exist",
            missing.parent().unwrap().display()
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("cannot open the database").count(),
        1,
        "{stderr}"
    );
    let output = tollbooth(
        &format!("sqlite://{}", dir.path().display()),
        &["migrate"],
        &[],
    );
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("Is a directory"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );
    // A PostgreSQL server that refuses is named with its host and port, in the system's words
    // (not as a pool that timed out).
    let output = tollbooth(
        "postgres://postgres@127.0.0.1:1/tollbooth",
        &["migrate"],
        &[],
    );
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot open the database tollbooth at 127.0.0.1:1 as postgres"),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

async fn billing_run_says_when_nothing_is_due(app: TestApp) {
    let first = tollbooth(&app.database_url, &["billing", "run"], &[]);
    assert!(first.status.success(), "{first:?}");
    assert!(text(&first.stderr).contains("billing run: "), "{first:?}");
    let second = tollbooth(&app.database_url, &["billing", "run"], &[]);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(text(&second.stdout), "", "no report when no day ran");
    assert!(
        text(&second.stderr).contains("billing run: nothing due"),
        "{second:?}"
    );
}

/// Nothing listens where Stripe calls go: the create is told at once (no five attempts with
/// back-off), the subscriber is saved with its Stripe state failed, and `stripe sync` says what is
/// owed and what failed as it goes.
async fn stripe_out_of_reach_is_told_at_once_and_sync_says_how_far_it_got(backend: Backend) {
    let nowhere = "http://127.0.0.1:1";
    let Some(app) = crate::helpers::spawn_app_with(backend, |settings| {
        crate::helpers::use_stripe(settings, nowhere);
        settings.stripe_retry_base = "2s".to_owned().try_into().unwrap();
    })
    .await
    else {
        return;
    };
    let subscriber =
        json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"});
    let (status, body) = app.post("/v1/subscribers", &subscriber).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "stripe_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("after 1 attempts"),
        "refused is not tried again: {body}"
    );
    // The answer carries what was saved, as GET shows it.
    let (_, saved) = app.get("/v1/subscribers/acme").await;
    assert_eq!(saved["stripe"]["state"], "failed", "{saved}");
    assert_eq!(body["error"]["details"]["saved"], saved, "{body}");

    let sync = tollbooth(
        &app.database_url,
        &["stripe", "sync"],
        &[
            ("STRIPE_SECRET_KEY", "sk_test_tollbooth"),
            ("STRIPE_API_BASE", nowhere),
        ],
    );
    assert!(!sync.status.success(), "{sync:?}");
    let stderr = text(&sync.stderr);
    assert!(
        stderr.contains("stripe sync: 1 Stripe writes owed"),
        "{stderr}"
    );
    assert!(stderr.contains("stripe sync: a write failed"), "{stderr}");
    assert!(
        text(&sync.stdout).contains("stripe sync: 0 written, 1 failed"),
        "{sync:?}"
    );
}

/// `PATCH` with a JSON merge patch of the object's definition.
async fn patch(app: &TestApp, path: &str, body: &str) -> (StatusCode, Value) {
    let request = app
        .client
        .patch(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/merge-patch+json")
        .body(body.to_owned());
    app.send(request).await
}

async fn apis_subscribers_and_tiers_are_changed_by_a_merge_patch_checked_as_a_create(app: TestApp) {
    crate::tiers::create_weather_api(&app).await;
    let (status, changed) = patch(&app, "/v1/apis/weather", r#"{"name": "Weather API v2"}"#).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "Weather API v2");
    let (_, read) = app.get("/v1/apis/weather").await;
    assert_eq!(read, changed);

    // Refused by field, and nothing changes.
    for (body, field) in [
        (r#"{"slug": "climate"}"#, "slug"),
        (r#"{"name": ""}"#, "name"),
        (r#"{"hosts": ["Not A Host"]}"#, "hosts[0]"),
        (r#"{"colour": "blue"}"#, "colour"),
        (r#"["name"]"#, "body"),
    ] {
        let answer = patch(&app, "/v1/apis/weather", body).await;
        crate::helpers::assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        );
    }
    let (_, again) = app.get("/v1/apis/weather").await;
    assert_eq!(again, changed);
    let answer = patch(&app, "/v1/apis/nope", r#"{"name": "x"}"#).await;
    assert_eq!(answer.0, StatusCode::NOT_FOUND, "{}", answer.1);

    let (status, _) = app
        .post(
            "/v1/subscribers",
            &json!({"external_id": "acme", "name": "Acme", "email": "billing@acme.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, changed) = patch(
        &app,
        "/v1/subscribers/acme",
        r#"{"email": "accounts@acme.example"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["email"], "accounts@acme.example");
    assert_eq!(changed["name"], "Acme");

    // A tier's change is a new version, as a create with a changed definition is.
    let (status, v1) = app.post("/v1/tiers", &crate::tiers::pro_tier("5.00")).await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    let (status, v2) = patch(
        &app,
        "/v1/tiers/weather-pro",
        r#"{"usage": {"package_price": "6.00"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["usage"]["package_price"], "6.00");
    assert_eq!(
        v2["usage"]["package_size"], 1000,
        "the rest of `usage` is kept"
    );
    let (status, same) = patch(&app, "/v1/tiers/weather-pro", r#"{"name": "Pro"}"#).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["version"], 2);
    let answer = patch(&app, "/v1/tiers/weather-pro", r#"{"api": "maps"}"#).await;
    crate::helpers::assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("api"),
    );
}

/// `tollbooth demo` on a fresh file: the example catalog, 8,000 calls through `POST /v1/events`
/// (every 40th a 503), the billing job in ledger mode, and the invoice preview: Pro's $25 fee
/// plus 7,800 billable calls past 5,000 free in blocks of 1,000 at $5 (3 blocks).
#[test]
fn the_demo_bills_a_day_of_calls_on_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("demo.db");
    let database = database.to_str().unwrap();
    let output = tollbooth("sqlite://unused.db", &["demo", "--database", database], &[]);
    assert!(output.status.success(), "{output:?}");
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("8000 stored, 200 of them not billable"),
        "{stdout}"
    );
    let total = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("total "))
        .unwrap_or_else(|| panic!("no total: {stdout}"));
    assert!(total.contains("40.00 USD"), "{total}");
    assert!(
        stdout.contains("admin token (shown once, keep it safe): tba_"),
        "{stdout}"
    );
    let again = tollbooth("sqlite://unused.db", &["demo", "--database", database], &[]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("exists already"), "{again:?}");
}
