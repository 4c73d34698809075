//! `spawn_app`: a real tollbooth on port 0 over a fresh database (a SQLite file in a temporary
//! directory, or a new PostgreSQL database), and the requests tests make of it.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use tollbooth::config::Settings;
use tollbooth::startup::Application;

pub const ADMIN_TOKEN: &str = "tba_test_admin_token";

/// The variable that points the PostgreSQL half of the suite at a server.
pub const POSTGRES_URL_VAR: &str = "TOLLBOOTH_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running tollbooth and what a test needs to talk to it and to its database.
pub struct TestApp {
    pub address: String,
    /// The gRPC server's address (`http://…`), when the settings asked for one.
    pub grpc_address: Option<String>,
    /// The metrics server's address (`http://…`), when the settings asked for one.
    pub metrics_address: Option<String>,
    pub database_url: String,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL test database to drop when the test is over.
    postgres_database: Option<(String, String)>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some((server, name)) = self.postgres_database.take() {
            drop_postgres_database(server, name);
        }
    }
}

/// Drops a test database. Drop runs inside the test's runtime, which cannot block on itself:
/// the work is done on a thread of its own.
fn drop_postgres_database(server: String, name: String) {
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&server).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            anyhow::Ok(())
        })
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("could not drop the test database {name}; it can be dropped by hand");
    }
}

/// A database made for one test: its URL, and what to clean up after.
pub struct FreshDatabase {
    pub url: String,
    dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if let Some((server, name)) = self.postgres.take() {
            drop_postgres_database(server, name);
        }
    }
}

/// A fresh, empty database of the given kind; `None` when PostgreSQL is not configured.
pub async fn fresh_database(backend: Backend) -> Option<FreshDatabase> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}/tollbooth.db", dir.path().display());
            Some(FreshDatabase {
                url,
                dir: Some(dir),
                postgres: None,
            })
        }
        Backend::Postgres => {
            let server = std::env::var(POSTGRES_URL_VAR).ok()?;
            let name = format!("tollbooth_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&server)
                .await
                .expect("connect to the PostgreSQL test server");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create a test database");
            let base = server
                .rsplit_once('/')
                .map_or(server.as_str(), |(base, _)| base);
            Some(FreshDatabase {
                url: format!("{base}/{name}"),
                dir: None,
                postgres: Some((server.clone(), name)),
            })
        }
    }
}

/// Starts tollbooth on a fresh database; `None` when PostgreSQL is asked for but not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    let mut database = fresh_database(backend).await?;
    let mut app = spawn_app_on(&database.url).await;
    app._dir = database.dir.take();
    app.postgres_database = database.postgres.take();
    Some(app)
}

/// Starts tollbooth on a fresh database with settings of the test's own (a Stripe key and a
/// mock Stripe, say); `None` when PostgreSQL is asked for but not configured.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let mut database = fresh_database(backend).await?;
    let mut settings = test_settings(&database.url);
    configure(&mut settings);
    let mut app = spawn_app_from(settings).await;
    app._dir = database.dir.take();
    app.postgres_database = database.postgres.take();
    Some(app)
}

/// The settings every test app starts from: port 0, the test admin token.
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::with_database(database_url).expect("settings");
    settings.listen = "127.0.0.1:0".parse().expect("address");
    settings.admin_token = Some(ADMIN_TOKEN.to_owned().into());
    // Tests run the billing job themselves, on the days they choose.
    settings.billing_enabled = false;
    settings
}

/// Settings that point tollbooth at a mock Stripe, with retries fast enough for tests.
pub fn use_stripe(settings: &mut Settings, api_base: &str) {
    settings.stripe_secret_key = Some("sk_test_tollbooth".to_owned().into());
    settings.stripe_api_base = api_base.to_owned();
    settings.stripe_retry_base = "10ms".to_owned().try_into().expect("duration");
    settings.stripe_rate_limit = std::num::NonZeroU32::new(1_000).expect("non-zero");
    settings.checkout_return_url = Some("https://provider.example/billing/done".to_owned());
}

/// Starts tollbooth on an existing database (to restart it, or after the CLI wrote to it).
/// Another replica on the database of `app`, with its own settings.
pub async fn spawn_replica(app: &TestApp, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(&app.database_url);
    configure(&mut settings);
    spawn_app_from(settings).await
}

pub async fn spawn_app_on(database_url: &str) -> TestApp {
    spawn_app_from(test_settings(database_url)).await
}

async fn spawn_app_from(settings: Settings) -> TestApp {
    let database_url = settings.database_url.as_str().to_owned();
    let app = Application::build(&settings)
        .await
        .expect("tollbooth starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let grpc_address = app
        .grpc_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let metrics_address = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        grpc_address,
        metrics_address,
        database_url,
        client: reqwest::Client::new(),
        shutdown: Some(shutdown),
        server: Some(server),
        _dir: None,
        postgres_database: None,
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until it has closed the database.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path)).bearer_auth(ADMIN_TOKEN))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .json(body),
        )
        .await
    }

    /// Posts a raw body, for bodies that are not valid JSON.
    pub async fn post_raw(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned());
        self.send(request).await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request reaches tollbooth");
        let status = response.status();
        let text = response.text().await.expect("response body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// Runs SQL straight on the app's database, for tests that break or inspect it underneath.
    pub async fn execute_sql(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.database_url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.database_url)
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.database_url)
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }

    /// Its one subscription as if it had started on its current tier at `started`; a gateway is
    /// made so that the catalog is read again and ingestion sees it.
    pub async fn backdate_subscription(&self, started: chrono::DateTime<chrono::Utc>) {
        let ms = started.timestamp_millis();
        self.execute_sql(
            "DELETE FROM subscription_tiers WHERE from_ms < (SELECT MAX(from_ms) FROM subscription_tiers)",
        )
        .await;
        self.execute_sql(&format!("UPDATE subscriptions SET started_at = {ms}"))
            .await;
        self.execute_sql(&format!("UPDATE subscription_tiers SET from_ms = {ms}"))
            .await;
        let (status, _) = self
            .post("/v1/gateways", &serde_json::json!({"name": "reload"}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }

    /// How many rows a table of the app's database holds.
    pub async fn count_rows(&self, table: &str) -> i64 {
        self.count_where(table, "1 = 1").await
    }

    /// How many rows of a table meet a condition.
    pub async fn count_where(&self, table: &str, condition: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE {condition}"));
        if self.database_url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.database_url)
                .await
                .unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.database_url)
                .await
                .unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }

    /// Everything the admin API lists, to compare the catalog before and after a refused request.
    pub async fn catalog_snapshot(&self) -> Value {
        let mut snapshot = serde_json::Map::new();
        for kind in ["apis", "tiers", "subscribers", "subscriptions", "gateways"] {
            let (status, body) = self.get(&format!("/v1/{kind}?limit=100")).await;
            assert_eq!(status, StatusCode::OK, "listing {kind}: {body}");
            snapshot.insert(kind.to_owned(), body["data"].clone());
        }
        Value::Object(snapshot)
    }
}

/// Asserts an error answer: its status, its code, and (when given) the field it names.
pub fn assert_error(
    answer: &(StatusCode, Value),
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    let (actual, body) = answer;
    assert_eq!(*actual, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    if let Some(field) = field {
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
}

/// Says, past the test harness's output capture, that a PostgreSQL half did not run. Under
/// `CI=true` a PostgreSQL half that cannot run is a failure, not a pass.
pub fn say_not_run(test: &str) {
    use std::io::Write;
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {POSTGRES_URL_VAR} is unset: the PostgreSQL half of `{test}` must run in CI"
    );
    let line = format!("NOT RUN: the PostgreSQL half of `{test}` ({POSTGRES_URL_VAR} is unset)\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Runs each listed `async fn(TestApp)` once on SQLite and once on PostgreSQL. Without
/// `TOLLBOOTH_TEST_POSTGRES_URL` the PostgreSQL half prints that it did not run.
macro_rules! on_both_databases {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                use $crate::helpers::{Backend, spawn_app};

                #[tokio::test]
                async fn sqlite() {
                    let app = spawn_app(Backend::Sqlite).await.expect("SQLite is always there");
                    super::$test(app).await;
                }

                #[tokio::test]
                async fn postgres() {
                    match spawn_app(Backend::Postgres).await {
                        Some(app) => super::$test(app).await,
                        None => $crate::helpers::say_not_run(stringify!($test)),
                    }
                }
            }
        )*
    };
}
pub(crate) use on_both_databases;

/// Runs each listed `async fn(Backend)` once on SQLite and once on PostgreSQL, for tests that
/// start tollbooth themselves (with a mock Stripe, say).
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                use $crate::helpers::{Backend, POSTGRES_URL_VAR};

                #[tokio::test]
                async fn sqlite() {
                    super::$test(Backend::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    if std::env::var(POSTGRES_URL_VAR).is_ok() {
                        super::$test(Backend::Postgres).await;
                    } else {
                        $crate::helpers::say_not_run(stringify!($test));
                    }
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;
