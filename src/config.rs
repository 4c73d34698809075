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
    /// Address of the gRPC server for Envoy's `ext_authz`; unset means none.
    pub grpc_listen: Option<SocketAddr>,
    /// Bearer token of the admin API; made at first start and shown once when unset.
    pub admin_token: Option<SecretString>,
    /// When the daily billing job fires, in UTC (cron with seconds).
    pub billing_cron: CronSchedule,
    /// Whether `serve` runs the daily job (every replica may; the database picks one per day).
    pub billing_enabled: bool,
    /// How long a past-due subscription keeps access.
    pub payment_grace: HumanDuration,
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
}

/// The defaults, as the file and environment would write them.
#[derive(Serialize)]
struct Defaults {
    database_url: &'static str,
    listen: &'static str,
    billing_cron: &'static str,
    billing_enabled: bool,
    payment_grace: &'static str,
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
}

const DEFAULTS: Defaults = Defaults {
    database_url: "sqlite://tollbooth.db",
    listen: "127.0.0.1:8080",
    billing_cron: "0 5 0 * * *",
    billing_enabled: true,
    payment_grace: "3d",
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
};

/// The settings read from `TOLLBOOTH_<NAME>`.
const TOLLBOOTH_VARS: [&str; 27] = [
    "database_url",
    "listen",
    "grpc_listen",
    "admin_token",
    "billing_cron",
    "billing_enabled",
    "payment_grace",
    "decision_hold",
    "retention",
    "replica_refresh",
    "header_read_timeout",
    "body_read_timeout",
    "events_max_bytes",
    "events_max_records",
    "ingest_queue_records",
    "ingest_batch_records",
    "ingest_writers",
    "log_format",
    "stripe_timeout",
    "stripe_rate_limit",
    "stripe_max_attempts",
    "stripe_retry_base",
    "checkout_return_url",
    "notify_url",
    "notify_secret",
    "notify_max_attempts",
    "notify_retry_base",
];

/// The settings read from their Stripe names.
const STRIPE_VARS: [&str; 3] = [
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
];

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
            .merge(Env::prefixed("TOLLBOOTH_").only(&TOLLBOOTH_VARS))
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
        if self.notify_url.is_some() && self.notify_secret.is_none() {
            return Err(ConfigError(
                "notify_secret: must be set with notify_url, to sign the notifications (TOLLBOOTH_NOTIFY_SECRET)".into(),
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
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl TryFrom<String> for HumanDuration {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        humantime::parse_duration(&value)
            .map(Self)
            .map_err(|e| format!("`{value}` is not a duration such as 3d or 12h: {e}"))
    }
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
