//! Configuration: defaults, then an optional TOML file, then environment variables
//! (`TOLLBOOTH_*` and `STRIPE_*`). Checked whole at start; a bad setting is named in the error.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

/// Every setting tollbooth reads. Secrets are `SecretString`: `Debug` prints them redacted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://…` (the embedded default) or `postgres://…`.
    pub database_url: DatabaseUrl,
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Address of the gRPC server (Envoy's `ext_authz`, OTLP logs); unset means none.
    pub grpc_listen: Option<SocketAddr>,
    /// The operators' own address for `/metrics` (with `/healthz` and `/readyz`); when set,
    /// `/metrics` is served there only. Unset: on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// A bearer token `/metrics` asks for; unset means none.
    pub metrics_token: Option<SecretString>,
    /// Bearer token of the admin API; made at first start and shown once when unset.
    pub admin_token: Option<SecretString>,
    /// When the daily billing job fires, in UTC (cron with seconds).
    pub billing_cron: CronSchedule,
    /// Whether `serve` runs the daily job (every replica may; the database picks one per day).
    pub billing_enabled: bool,
    /// How long a past-due subscription keeps access.
    pub payment_grace: HumanDuration,
    /// What the access decision does for a paid subscription whose Stripe Subscription has not
    /// been made yet (Stripe refused or could not be reached): serve it, or refuse it.
    pub unmirrored_access: UnmirroredAccess,
    /// How long an allowed call counts against a hard quota while its call record has not
    /// arrived; the bound on a hard quota's lag behind the gateway's records.
    pub decision_hold: HumanDuration,
    /// How long raw call records are kept for audit and dedupe; older records are refused.
    pub retention: HumanDuration,
    /// How often a replica reads the catalog and payment state again, for changes made by other
    /// replicas or the CLI: the bound on how stale another replica's change can be.
    pub replica_refresh: HumanDuration,
    /// How long a client may take to send a request's line and headers before the connection is
    /// closed (and how long an idle keep-alive connection is kept).
    pub header_read_timeout: HumanDuration,
    /// How long a request body may go without a byte arriving before it is refused (408).
    pub body_read_timeout: HumanDuration,
    /// Largest `POST /v1/events` body, in bytes.
    pub events_max_bytes: usize,
    /// Most records in one `POST /v1/events`.
    pub events_max_records: usize,
    /// Records that may wait for the writer; past that, `POST /v1/events` answers 503.
    pub ingest_queue_records: u32,
    /// Most records the writer commits in one transaction.
    pub ingest_batch_records: usize,
    /// Writer tasks; unset means 1 on SQLite (one writer at a time) and 4 on PostgreSQL.
    pub ingest_writers: Option<usize>,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// Stripe API key; unset means ledger mode (no Stripe calls).
    pub stripe_secret_key: Option<SecretString>,
    /// Stripe webhook signing secrets (`whsec_…`, comma-separated while rotating).
    pub stripe_webhook_secret: Option<SecretString>,
    /// Where Stripe calls go.
    pub stripe_api_base: String,
    /// How long one Stripe request may take before it is tried again.
    pub stripe_timeout: HumanDuration,
    /// Stripe requests per second (Stripe allows 100 live, 25 in test mode).
    pub stripe_rate_limit: NonZeroU32,
    /// Attempts per Stripe request, the first included.
    pub stripe_max_attempts: NonZeroU32,
    /// The first back-off after a failed Stripe request; each further one doubles.
    pub stripe_retry_base: HumanDuration,
    /// Where Stripe Checkout sends a subscriber back after adding a payment method; unset means
    /// no Checkout link is made.
    pub checkout_return_url: Option<String>,
    /// The provider's URL for notifications (status changes, quota reached, invoices); unset
    /// means none are sent.
    pub notify_url: Option<String>,
    /// The secret notifications are signed with (required with `notify_url`).
    pub notify_secret: Option<SecretString>,
    /// Attempts per notification.
    pub notify_max_attempts: NonZeroU32,
    /// The first back-off after a failed delivery; each further one doubles.
    pub notify_retry_base: HumanDuration,
    /// How long one delivery may take before it counts as failed.
    pub notify_timeout: HumanDuration,
    /// Catalog changes are committed only once the provider's endpoint accepted their
    /// notification, and refused when it did not.
    pub notify_blocking: bool,
}

/// The defaults, as the file and environment would write them.
#[derive(Serialize)]
struct Defaults {
    database_url: &'static str,
    listen: &'static str,
    billing_cron: &'static str,
    billing_enabled: bool,
    payment_grace: &'static str,
    unmirrored_access: &'static str,
    decision_hold: &'static str,
    retention: &'static str,
    replica_refresh: &'static str,
    header_read_timeout: &'static str,
    body_read_timeout: &'static str,
    events_max_bytes: usize,
    events_max_records: usize,
    ingest_queue_records: u32,
    ingest_batch_records: usize,
    log_format: &'static str,
    stripe_api_base: &'static str,
    stripe_timeout: &'static str,
    stripe_rate_limit: u32,
    stripe_max_attempts: u32,
    stripe_retry_base: &'static str,
    notify_max_attempts: u32,
    notify_retry_base: &'static str,
    notify_timeout: &'static str,
    notify_blocking: bool,
}

const DEFAULTS: Defaults = Defaults {
    database_url: "sqlite://tollbooth.db",
    listen: "127.0.0.1:8080",
    billing_cron: "0 5 0 * * *",
    billing_enabled: true,
    payment_grace: "3d",
    unmirrored_access: "serve",
    decision_hold: "30s",
    retention: "35d",
    replica_refresh: "5s",
    header_read_timeout: "10s",
    body_read_timeout: "30s",
    events_max_bytes: 8 * 1024 * 1024,
    events_max_records: 10_000,
    ingest_queue_records: 200_000,
    ingest_batch_records: 10_000,
    log_format: "text",
    stripe_api_base: "https://api.stripe.com",
    stripe_timeout: "30s",
    stripe_rate_limit: 25,
    stripe_max_attempts: 5,
    stripe_retry_base: "500ms",
    notify_max_attempts: 8,
    notify_retry_base: "1s",
    notify_timeout: "10s",
    notify_blocking: false,
};

/// Every setting, with its default and meaning as `--help` shows them (README's table says more).
/// Each is read from `TOLLBOOTH_<NAME>`, the Stripe ones from their own names, or from the file.
const SETTINGS: [(&str, &str, &str); 35] = [
    (
        "database_url",
        "sqlite://tollbooth.db",
        "sqlite://… (created if missing) or postgres://…",
    ),
    ("listen", "127.0.0.1:8080", "address to serve HTTP on"),
    (
        "grpc_listen",
        "unset",
        "address of the gRPC server (Envoy's ext_authz, OTLP/gRPC logs)",
    ),
    (
        "metrics_listen",
        "unset: on listen",
        "address serving /metrics (and /healthz, /readyz) alone",
    ),
    ("metrics_token", "unset", "bearer token /metrics asks for"),
    (
        "admin_token",
        "made at first start",
        "bearer token of the admin API (at least 16 characters)",
    ),
    (
        "billing_cron",
        "0 5 0 * * *",
        "when the daily billing job fires (UTC, cron with seconds)",
    ),
    (
        "billing_enabled",
        "true",
        "whether serve runs the daily billing job",
    ),
    (
        "payment_grace",
        "3d",
        "how long a past-due subscription keeps access",
    ),
    (
        "unmirrored_access",
        "serve",
        "serve or refuse a paid subscription Stripe has no Subscription for yet",
    ),
    (
        "decision_hold",
        "30s",
        "how long an allowed call counts against a hard quota before its record",
    ),
    (
        "replica_refresh",
        "5s",
        "how often catalog and payment state are read again",
    ),
    (
        "retention",
        "35d",
        "how long raw call records are kept; older ones are refused",
    ),
    (
        "header_read_timeout",
        "10s",
        "time for a request's line and headers",
    ),
    (
        "body_read_timeout",
        "30s",
        "longest wait for a request body's next byte (408 past it)",
    ),
    (
        "events_max_bytes",
        "8388608",
        "largest POST /v1/events body, in bytes",
    ),
    ("events_max_records", "10000", "most records in one request"),
    (
        "ingest_queue_records",
        "200000",
        "records waiting for the writer before 503",
    ),
    (
        "ingest_batch_records",
        "10000",
        "most records committed in one transaction",
    ),
    (
        "ingest_writers",
        "1 on SQLite, 4 on PostgreSQL",
        "writer tasks committing side by side",
    ),
    (
        "log_format",
        "text",
        "text or json logs on stderr (RUST_LOG filters)",
    ),
    (
        "stripe_secret_key",
        "unset: ledger mode",
        "Stripe secret key, sk_… or rk_…",
    ),
    (
        "stripe_webhook_secret",
        "unset: webhooks refused",
        "whsec_…, comma-separated while rotating",
    ),
    (
        "stripe_api_base",
        "https://api.stripe.com",
        "where Stripe calls go",
    ),
    (
        "stripe_timeout",
        "30s",
        "how long one Stripe attempt may take",
    ),
    ("stripe_rate_limit", "25", "Stripe requests per second"),
    (
        "stripe_max_attempts",
        "5",
        "attempts per Stripe request, the first included",
    ),
    (
        "stripe_retry_base",
        "500ms",
        "first back-off after a failed Stripe request",
    ),
    (
        "checkout_return_url",
        "unset",
        "where Stripe Checkout sends a subscriber back",
    ),
    (
        "notify_url",
        "unset",
        "the provider's URL for notifications",
    ),
    (
        "notify_secret",
        "unset",
        "the secret notifications are signed with",
    ),
    ("notify_max_attempts", "8", "attempts per notification"),
    (
        "notify_retry_base",
        "1s",
        "first back-off after a failed notification",
    ),
    (
        "notify_timeout",
        "10s",
        "how long one notification's delivery may take",
    ),
    (
        "notify_blocking",
        "false",
        "catalog changes wait for the provider to accept their notification",
    ),
];

/// The settings' environment variables, defaults and meanings, for `--help`.
pub fn environment_help() -> String {
    let mut help = String::from(
        "Settings (environment variable [default] meaning; a --config TOML file takes the same \
         names in lower case without TOLLBOOTH_, and the environment overrides it):\n",
    );
    for (key, default, meaning) in SETTINGS {
        help.push_str(&format!("  {:<32} [{default}] {meaning}\n", env_name(key)));
    }
    help.push_str("  TOLLBOOTH_CONFIG                 [unset] the TOML file, same as --config\n");
    help.push_str("Durations are written such as 35d, 12h, 90s or 500ms.");
    help
}

/// The settings read from their Stripe names.
const STRIPE_VARS: [&str; 3] = [
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
];

/// The settings read from `TOLLBOOTH_<NAME>`: all but the Stripe ones.
fn tollbooth_vars() -> Vec<&'static str> {
    SETTINGS
        .iter()
        .map(|(key, _, _)| *key)
        .filter(|key| !STRIPE_VARS.contains(&key.to_ascii_uppercase().as_str()))
        .collect()
}

/// A setting that could not be read, with the setting and where it came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Reads the settings from the defaults, `file` if given, and the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(DEFAULTS));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment
            .merge(Env::prefixed("TOLLBOOTH_").only(&tollbooth_vars()))
            .merge(
                Env::raw()
                    .only(&STRIPE_VARS)
                    .map(|key| key.as_str().to_ascii_lowercase().into()),
            );
        figment
            .extract::<Self>()
            .map_err(|error| ConfigError(describe(error)))?
            .check()
    }

    /// The rules that span settings, and those serde cannot say.
    fn check(self) -> Result<Self, ConfigError> {
        use secrecy::ExposeSecret;
        if let Some(token) = &self.admin_token
            && token.expose_secret().trim().len() < 16
        {
            return Err(ConfigError(
                "admin_token: must be at least 16 characters (from environment variable TOLLBOOTH_ADMIN_TOKEN or the file)".into(),
            ));
        }
        if let Some(key) = &self.stripe_secret_key {
            stripe_mode(key.expose_secret()).ok_or_else(|| {
                ConfigError(format!(
                    "stripe_secret_key: must be a secret key (sk_test_… or sk_live_…) or a restricted key \
                     (rk_test_… or rk_live_…){} (from environment variable STRIPE_SECRET_KEY or the file)",
                    if key.expose_secret().starts_with("pk_") {
                        "; pk_… is a publishable key, which cannot make the calls tollbooth makes"
                    } else {
                        ""
                    }
                ))
            })?;
        }
        if let Some(secrets) = &self.stripe_webhook_secret
            && let Some(bad) = secrets
                .expose_secret()
                .split(',')
                .map(str::trim)
                .position(|secret| secret.strip_prefix("whsec_").is_none_or(str::is_empty))
        {
            return Err(ConfigError(format!(
                "stripe_webhook_secret: secret {} is not a webhook signing secret: each starts with whsec_, \
                 as the Stripe Dashboard shows it (from environment variable STRIPE_WEBHOOK_SECRET or the file)",
                bad + 1
            )));
        }
        if self.notify_url.is_some() && self.notify_secret.is_none() {
            return Err(ConfigError(
                "notify_secret: must be set with notify_url, to sign the notifications (TOLLBOOTH_NOTIFY_SECRET)".into(),
            ));
        }
        if self.notify_blocking && self.notify_url.is_none() {
            return Err(ConfigError(
                "notify_blocking: needs notify_url, the endpoint that must accept each catalog change (TOLLBOOTH_NOTIFY_URL)".into(),
            ));
        }
        if self.events_max_records == 0 || self.ingest_batch_records == 0 {
            return Err(ConfigError(
                "events_max_records and ingest_batch_records must be at least 1".into(),
            ));
        }
        if usize::try_from(self.ingest_queue_records).unwrap_or(usize::MAX)
            < self.events_max_records
        {
            return Err(ConfigError(
                "ingest_queue_records must be at least events_max_records, or a full batch could never be queued".into(),
            ));
        }
        Ok(self)
    }

    /// Where notifications go, when they go anywhere.
    pub fn notify(&self) -> Option<crate::notify::NotifySettings> {
        Some(crate::notify::NotifySettings {
            url: self.notify_url.clone()?,
            secret: self.notify_secret.clone()?,
            max_attempts: self.notify_max_attempts.get(),
            retry_base: self.notify_retry_base.0,
            timeout: self.notify_timeout.0,
            blocking: self.notify_blocking,
        })
    }

    /// The settings with defaults only, for a given database: what tests and embedders start from.
    pub fn with_database(url: &str) -> Result<Self, ConfigError> {
        Figment::from(Serialized::defaults(DEFAULTS))
            .merge(Serialized::default("database_url", url))
            .extract::<Self>()
            .map_err(|error| ConfigError(describe(error)))?
            .check()
    }
}

/// Whether a Stripe secret key is a test-mode or a live key; `None` when it is neither form.
pub fn stripe_mode(key: &str) -> Option<&'static str> {
    let (kind, rest) = key.split_at_checked(3)?;
    if kind != "sk_" && kind != "rk_" {
        return None;
    }
    let (mode, secret) = rest.split_once('_')?;
    match mode {
        _ if secret.is_empty() => None,
        "test" => Some("test"),
        "live" => Some("live"),
        _ => None,
    }
}

/// Figment's error names the key and the source (file or environment variable) of each problem.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = match &e.metadata {
                Some(m) if m.name.contains("environment") => {
                    format!(" (from environment variable {})", env_name(&key))
                }
                Some(m) => match &m.source {
                    Some(source) => format!(" (from {} {source})", m.name),
                    None => format!(" (from {})", m.name),
                },
                None => String::new(),
            };
            let setting = if key.is_empty() {
                String::new()
            } else {
                format!("{key}: ")
            };
            format!("{setting}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The environment variable a setting is read from.
fn env_name(key: &str) -> String {
    let upper = key.to_ascii_uppercase();
    if STRIPE_VARS.contains(&upper.as_str()) {
        upper
    } else {
        format!("TOLLBOOTH_{upper}")
    }
}

/// A database URL tollbooth can open. `Debug` hides a password in it.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl(String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `scheme://user:password@host`: everything between the user's `:` and the `@` goes.
        let shown = match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let credentials = &self.0[scheme + 3..at];
                match credentials.find(':') {
                    Some(colon) => format!(
                        "{}:[REDACTED]{}",
                        &self.0[..scheme + 3 + colon],
                        &self.0[at..]
                    ),
                    None => self.0.clone(),
                }
            }
            _ => self.0.clone(),
        };
        f.debug_tuple("DatabaseUrl").field(&shown).finish()
    }
}

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.starts_with("sqlite:")
            || value.starts_with("postgres://")
            || value.starts_with("postgresql://")
        {
            Ok(Self(value))
        } else {
            Err("must start with sqlite:, postgres:// or postgresql://".into())
        }
    }
}

/// A cron schedule with seconds (`sec min hour day month weekday`), in UTC.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CronSchedule(String);

impl CronSchedule {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .build();
        parser
            .parse(&value)
            .map_err(|e| format!("`{value}` is not a cron schedule with seconds: {e}"))?;
        Ok(Self(value))
    }
}

/// A duration written for people: `3d`, `12h`, `90s`.
#[derive(Debug, Clone, Copy)]
pub struct HumanDuration(pub Duration);

impl TryFrom<&str> for HumanDuration {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        humantime::parse_duration(value)
            .map(Self)
            .map_err(|e| format!("`{value}` is not a duration such as 35d, 12h or 90s: {e}"))
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::try_from(value.as_str())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 35d, 12h or 90s")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<HumanDuration, E> {
                HumanDuration::try_from(value).map_err(E::custom)
            }
            // An environment variable such as `35` reaches here as a number: say what is missing.
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "`{value}` is not a duration: give its unit, such as {value}d, {value}h or {value}s"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "`{value}` is not a duration such as 35d, 12h or 90s"
                )))
            }
            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "`{value}` is not a duration such as 35d, 12h or 90s"
                )))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

/// What the access decision does while a paid subscription has no Stripe Subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmirroredAccess {
    /// Serve it: the calls are metered and billed once a sync makes the Stripe Subscription.
    Serve,
    /// Refuse it (403 `not_billable_yet`) until the Stripe Subscription exists.
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
// figment's Jail closures return figment's own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_defaults_are_the_documented_ones() {
        figment::Jail::expect_with(|_| {
            let settings = Settings::load(None).unwrap();
            assert_eq!(settings.database_url.as_str(), "sqlite://tollbooth.db");
            assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(settings.billing_cron.as_str(), "0 5 0 * * *");
            assert_eq!(settings.payment_grace.0, Duration::from_secs(3 * 86_400));
            assert!(settings.stripe_secret_key.is_none());
            Ok(())
        });
    }

    #[test]
    fn environment_beats_file_and_secrets_are_redacted() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "t.toml",
                "listen = \"127.0.0.1:9000\"\nbilling_cron = \"0 0 1 * * *\"",
            )?;
            jail.set_env("TOLLBOOTH_LISTEN", "127.0.0.1:9100");
            jail.set_env("STRIPE_SECRET_KEY", "sk_test_hidden");
            jail.set_env(
                "TOLLBOOTH_DATABASE_URL",
                "postgres://billing:pg_hidden@db.internal/tollbooth",
            );
            let settings = Settings::load(Some(Path::new("t.toml"))).unwrap();
            assert_eq!(settings.listen.port(), 9100);
            assert_eq!(settings.billing_cron.as_str(), "0 0 1 * * *");
            let key = settings.stripe_secret_key.as_ref().unwrap();
            assert_eq!(key.expose_secret(), "sk_test_hidden");
            let shown = format!("{settings:?}");
            assert!(!shown.contains("sk_test_hidden"), "{shown}");
            assert!(!shown.contains("pg_hidden"), "{shown}");
            assert!(shown.contains("postgres://billing:[REDACTED]@db.internal/tollbooth"));
            Ok(())
        });
    }

    #[test]
    fn help_lists_every_setting_that_readme_documents() {
        let help = environment_help();
        let readme = include_str!("../README.md");
        let documented: Vec<&str> = readme
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .filter(|name| name.starts_with("TOLLBOOTH_") || name.starts_with("STRIPE_"))
            .collect();
        for (key, _, _) in SETTINGS {
            let name = env_name(key);
            assert!(
                documented.contains(&name.as_str()),
                "{name} is not in README's table"
            );
        }
        for name in documented {
            assert!(help.contains(name), "README's {name} is not in --help");
        }
    }

    #[test]
    fn stripe_keys_of_the_wrong_kind_are_named() {
        for (key, taken) in [
            ("sk_test_abc", true),
            ("rk_live_abc", true),
            ("pk_test_abc", false),
            ("hello", false),
            ("sk_test_", false),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("STRIPE_SECRET_KEY", key);
                match Settings::load(None) {
                    Ok(_) => assert!(taken, "{key} was taken"),
                    Err(err) => {
                        let err = err.to_string();
                        assert!(!taken, "{key}: {err}");
                        assert!(err.contains("stripe_secret_key"), "{err}");
                        // (`sk_test_` is part of the message's own text)
                        assert!(
                            key == "sk_test_" || !err.contains(key),
                            "the key is not echoed: {err}"
                        );
                    }
                }
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("STRIPE_WEBHOOK_SECRET", "whsec_0123456789,abc");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("stripe_webhook_secret: secret 2"), "{err}");
            assert!(!err.contains("abc"), "{err}");
            Ok(())
        });
        assert_eq!(stripe_mode("sk_live_x"), Some("live"));
        assert_eq!(stripe_mode("rk_test_x"), Some("test"));
    }

    #[test]
    fn a_duration_given_as_a_bare_number_says_what_form_it_takes() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOLLBOOTH_RETENTION", "35");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("retention"), "{err}");
            assert!(err.contains("35d"), "{err}");
            assert!(err.contains("TOLLBOOTH_RETENTION"), "{err}");
            assert!(!err.contains("expected a string"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_setting_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOLLBOOTH_BILLING_CRON", "every day");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("billing_cron"), "{err}");
            assert!(err.contains("TOLLBOOTH_BILLING_CRON"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "lissen = \"x\"")?;
            let err = Settings::load(Some(Path::new("t.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("lissen"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOLLBOOTH_ADMIN_TOKEN", "short");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("admin_token"), "{err}");
            assert!(!err.contains("short"), "the secret is not echoed: {err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOLLBOOTH_DATABASE_URL", "mysql://x");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("database_url"), "{err}");
            Ok(())
        });
    }
}
