//! The shipped gateway recipes (`integrations/`) run by the real gateways Debian packages — NGINX,
//! Caddy, HAProxy — in front of a toy upstream and a live tollbooth: each refusal reaches the
//! caller with tollbooth's status and reason, an allowed call is served as the upstream answers,
//! and no caller input chooses the api. Without the gateway's binary the test says NOT RUN; under
//! `CI=true` (where `.ci/run` installs them) that is a failure.

use crate::forward_auth::two_apis;
use crate::helpers::{TestApp, on_both_databases};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

on_both_databases!(
    nginx_auth_request_answers_as_tollbooth_decides,
    nginx_records_reach_tollbooth_across_its_restart,
    caddy_forward_auth_answers_as_tollbooth_decides,
    haproxy_lua_answers_as_tollbooth_decides,
    nginx_records_units_and_failures_up_to_a_graceful_stop,
    haproxy_records_units_and_failures_up_to_a_graceful_stop,
);

async fn nginx_auth_request_answers_as_tollbooth_decides(app: TestApp) {
    let Some(nginx) = binary("nginx") else { return };
    let key = setup(&app, json!({"refusal_status": 403})).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (gateway, app) = start_nginx(&nginx, app, &upstream, &key, dir.path(), port).await;
    answers_as_tollbooth_decides(&app, &gateway, &upstream).await;
    // The shipper posts the records of the served calls (and of those only).
    wait_for_usage(&app, 3).await;
}

async fn nginx_records_reach_tollbooth_across_its_restart(app: TestApp) {
    let Some(nginx) = binary("nginx") else { return };
    let key = setup(&app, json!({"refusal_status": 403})).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (gateway, mut app) = start_nginx(&nginx, app, &upstream, &key, dir.path(), port).await;
    let client = app.client.clone();
    let call = || {
        client
            .get(gateway.url("/weather/forecast"))
            .header("x-api-key", "k1")
    };
    let (status, _, body) = send(call()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // tollbooth stops at once, most likely before the shipper's next post: the record waits.
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    app.stop().await;
    let (status, _, _) = send(call()).await;
    assert!(status.is_server_error(), "no decision, no call: {status}");
    let replica = crate::helpers::spawn_replica(&app, |settings| settings.listen = address).await;
    wait_for_usage(&replica, 1).await;
    for _ in 0..2 {
        let (status, _, body) = send(call()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _, body) = send(call()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    wait_for_usage(&replica, 3).await;
    assert_eq!(upstream.served.load(Ordering::SeqCst), 3);
}

async fn nginx_records_units_and_failures_up_to_a_graceful_stop(app: TestApp) {
    let Some(nginx) = binary("nginx") else { return };
    let key = setup(&app, json!({"refusal_status": 403})).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (gateway, app) = start_nginx(&nginx, app, &upstream, &key, dir.path(), free_port()).await;
    // SIGQUIT: NGINX's graceful stop, which the shipper's timer sees as the worker stopping.
    records_as_served_up_to_a_graceful_stop(&app, gateway, "QUIT").await;
}

async fn haproxy_records_units_and_failures_up_to_a_graceful_stop(app: TestApp) {
    let Some(haproxy) = binary("haproxy") else {
        return;
    };
    let key = setup(&app, json!({})).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_haproxy(&haproxy, &app, &upstream, &key, dir.path()).await;
    // SIGUSR1: HAProxy's soft stop, as a reload sends the old process.
    records_as_served_up_to_a_graceful_stop(&app, gateway, "USR1").await;
}

/// A plain call, one whose upstream answer names 2.5 units, and one the upstream fails: the
/// gateway is stopped gracefully (`signal`) at once, and the three records still reach tollbooth.
async fn records_as_served_up_to_a_graceful_stop(
    app: &TestApp,
    mut gateway: Gateway,
    signal: &str,
) {
    for (path, expected) in [
        ("/weather/forecast", StatusCode::OK),
        ("/weather/heavy", StatusCode::OK),
        ("/weather/fail", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let (status, _, body) =
            send(app.client.get(gateway.url(path)).header("x-api-key", "k1")).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    gateway.stop_gracefully(signal).await;
    let mut seen = (0, String::new(), 0, 0);
    for _ in 0..50 {
        seen = crate::events::usage_totals(app).await;
        if seen.3 >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        (2, "3.5".to_owned(), 1, 3),
        "(billable, units, failed, total) of what the upstream served; the gateway's log:\n{}",
        std::fs::read_to_string(&gateway.log).unwrap_or_default()
    );
}

/// The recipe (with its call-record shipper) run by NGINX in front of `upstream`.
async fn start_nginx(
    nginx: &Path,
    app: TestApp,
    upstream: &Upstream,
    key: &str,
    dir: &Path,
    port: u16,
) -> (Gateway, TestApp) {
    std::fs::copy(
        repository().join("integrations/nginx/tollbooth_records.lua"),
        dir.join("tollbooth_records.lua"),
    )
    .unwrap();
    let recipe = recipe(
        "integrations/nginx/tollbooth.conf",
        &app,
        upstream,
        key,
        &[
            ("127.0.0.1:8000", format!("127.0.0.1:{port}")),
            ("/etc/nginx/tollbooth/", format!("{}/", dir.display())),
        ],
    );
    std::fs::write(dir.join("tollbooth.conf"), recipe).unwrap();
    let d = dir.display();
    // Debian's nginx.conf loads the Lua module from modules-enabled; this one names it.
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
             load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n\
             daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid;\n\
             user root root;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             include {d}/tollbooth.conf; }}\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"));
    let gateway = Gateway::start(command, port, dir.join("error.log")).await;
    (gateway, app)
}

/// Waits (up to 10 s: the shipper posts once a second) until the subscription `acme-weather`
/// has exactly `calls` billable calls, and then a little longer to see no more arrive.
async fn wait_for_usage(app: &TestApp, calls: i64) {
    let mut seen = 0;
    for _ in 0..100 {
        seen = crate::events::usage_totals(app).await.0;
        if seen >= calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (billable, _, _, total) = crate::events::usage_totals(app).await;
    assert_eq!(
        (billable, total),
        (calls, calls),
        "the records of the served calls (saw {seen})"
    );
}

async fn caddy_forward_auth_answers_as_tollbooth_decides(app: TestApp) {
    let Some(caddy) = binary("caddy") else { return };
    let key = setup(&app, json!({})).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let recipe = recipe(
        "integrations/caddy/Caddyfile",
        &app,
        &upstream,
        &key,
        &[("127.0.0.1:8001", format!("127.0.0.1:{port}"))],
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, recipe).unwrap();
    let mut command = Command::new(caddy);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path());
    let gateway = Gateway::start(command, port, dir.path().join("caddy.log")).await;
    answers_as_tollbooth_decides(&app, &gateway, &upstream).await;
}

async fn haproxy_lua_answers_as_tollbooth_decides(app: TestApp) {
    let Some(haproxy) = binary("haproxy") else {
        return;
    };
    let key = setup(&app, json!({})).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_haproxy(&haproxy, &app, &upstream, &key, dir.path()).await;
    answers_as_tollbooth_decides(&app, &gateway, &upstream).await;
    wait_for_usage(&app, 3).await;
}

/// The recipe (with its call-record shipper) run by HAProxy in front of `upstream`.
async fn start_haproxy(
    haproxy: &Path,
    app: &TestApp,
    upstream: &Upstream,
    key: &str,
    dir: &Path,
) -> Gateway {
    let port = free_port();
    let lua = dir.join("tollbooth.lua");
    std::fs::copy(
        repository().join("integrations/haproxy/tollbooth.lua"),
        &lua,
    )
    .unwrap();
    let recipe = recipe(
        "integrations/haproxy/haproxy.cfg",
        app,
        upstream,
        key,
        &[
            ("127.0.0.1:8002", format!("127.0.0.1:{port}")),
            ("/etc/haproxy/tollbooth.lua", lua.display().to_string()),
        ],
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, recipe).unwrap();
    let mut command = Command::new(haproxy);
    command.arg("-db").arg("-f").arg(&file);
    Gateway::start(command, port, dir.join("haproxy.log")).await
}

/// The catalog of `forward_auth::two_apis` with a hard quota of 3 calls, a subscription that is
/// unpaid (`k-late`), and a gateway with these access settings; answers its key.
async fn setup(app: &TestApp, access: Value) -> String {
    two_apis(app, Some(3)).await;
    for (path, body) in [
        (
            "/v1/subscribers",
            json!({"external_id": "late", "name": "Late", "email": "billing@late.example"}),
        ),
        (
            "/v1/subscriptions",
            json!({"external_id": "late-weather", "subscriber": "late", "tier": "weather-pro",
                "consumer_keys": ["k-late"]}),
        ),
    ] {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    app.execute_sql(
        "UPDATE subscriptions SET status = 'unpaid', past_due_since = 1 \
         WHERE external_id = 'late-weather'",
    )
    .await;
    let (status, answer) = app
        .post(
            "/v1/gateways",
            &json!({"name": "gateway", "access": access}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["key"].as_str().unwrap().to_owned()
}

async fn answers_as_tollbooth_decides(app: &TestApp, gateway: &Gateway, upstream: &Upstream) {
    let call = |key: Option<&str>| {
        let mut request = app.client.get(gateway.url("/weather/forecast?city=paris"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request
    };
    let (status, _, body) = send(call(Some("k1"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["served"], "/weather/forecast?city=paris");
    assert_eq!(body["subscription_header"], "present");

    for (key, status, reason) in [
        (None, StatusCode::UNAUTHORIZED, "missing_consumer"),
        (Some("nobody"), StatusCode::FORBIDDEN, "unknown_consumer"),
        (Some("maps-app-1"), StatusCode::FORBIDDEN, "not_subscribed"),
        // The outside tester's request: a maps key that tries to name the api.
        (
            Some("maps-app-1&api=maps#"),
            StatusCode::FORBIDDEN,
            "unknown_consumer",
        ),
        (
            Some("k-late"),
            StatusCode::PAYMENT_REQUIRED,
            "payment_overdue",
        ),
    ] {
        let (answered, headers, body) = send(call(key)).await;
        assert_eq!(answered, status, "{key:?}: {body}");
        assert_eq!(body["reason"], reason, "{key:?}: {body}");
        assert_eq!(headers["x-tollbooth-reason"], reason, "{key:?}");
    }
    // The caller naming the api itself changes nothing: the recipe sets it.
    let (status, _, body) = send(
        call(Some("maps-app-1"))
            .header("x-tollbooth-api", "maps")
            .header("x-forwarded-uri", "/maps/tiles"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "not_subscribed");

    // The hard quota of 3: two more calls, then 429 with Retry-After, before any record.
    for _ in 0..2 {
        let (status, _, body) = send(call(Some("k1"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, headers, body) = send(call(Some("k1"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["reason"], "quota_exhausted");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(
        upstream.served.load(Ordering::SeqCst),
        3,
        "the upstream served the allowed calls only"
    );
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// The gateway's binary, or `None` (NOT RUN) when it is not installed; under `CI=true` it must be.
fn binary(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {name} is not installed: .ci/run installs it"
        );
        eprintln!("NOT RUN: {name} is not installed (apt-get install {name})");
    }
    found
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A shipped recipe with its placeholders replaced by this test's addresses and key; each
/// placeholder must be there, so that the recipe cannot drift from what is tested.
fn recipe(
    path: &str,
    app: &TestApp,
    upstream: &Upstream,
    key: &str,
    more: &[(&str, String)],
) -> String {
    let mut text = std::fs::read_to_string(repository().join(path)).unwrap();
    let tollbooth = app.address.trim_start_matches("http://").to_owned();
    let mut replacements = vec![
        ("127.0.0.1:8080", tollbooth),
        ("127.0.0.1:9000", upstream.address.clone()),
        ("tbg_YOUR_GATEWAY_KEY", key.to_owned()),
    ];
    replacements.extend(more.iter().map(|(from, to)| (*from, to.clone())));
    for (from, to) in replacements {
        assert!(text.contains(from), "{path} has no `{from}`");
        text = text.replace(from, &to);
    }
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A toy API: answers every call with what it served, and counts them; `/weather/heavy` is 2.5
/// units (`X-Usage-Units`), `/weather/fail` a 500.
struct Upstream {
    address: String,
    served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request.uri().path().to_owned();
                let subscription = request
                    .headers()
                    .get("x-tollbooth-subscription")
                    .map_or("absent", |_| "present");
                let status = if path == "/weather/fail" {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                let units = if path == "/weather/heavy" { "2.5" } else { "1" };
                let body = axum::Json(json!({
                    "served": request.uri().to_string(),
                    "subscription_header": subscription,
                }));
                (status, [("x-usage-units", units)], body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            address,
            served,
            task,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway process, killed when dropped.
struct Gateway {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Gateway {
    async fn start(mut command: Command, port: u16, log: PathBuf) -> Self {
        let output = std::fs::File::create(&log).unwrap();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("the gateway starts");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self { child, port, log };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the gateway exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        panic!(
            "the gateway did not listen on {port}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Sends the gateway `signal` (its graceful stop) and waits until it has exited.
    async fn stop_gracefully(&mut self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        for _ in 0..100 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not stop on SIG{signal}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Gateway {
    /// SIGTERM first (NGINX's master then stops its workers), SIGKILL after two seconds.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..40 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
