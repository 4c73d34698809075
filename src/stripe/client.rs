//! The HTTP client under async-stripe's request builders: reqwest, our own retry loop, pacing.
//!
//! async-stripe builds each request (path, form body) and reads each answer; this client sends it.
//! Every write carries the Idempotency-Key its caller chose, the same on every retry; 429 waits out
//! `Retry-After`, 5xx and transport failures back off exponentially with jitter, up to a bound.
//! Every request goes through [`StripeHttp::call`], which reads the answer: one it cannot read is
//! reported with its request and the start of its body, and is not retried (Stripe did answer).

use super::StripeError;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use stripe_client_core::{
    ConfigOverride, CustomizableStripeRequest, CustomizedStripeRequest, RequestBuilder,
    StripeClient, StripeMethod,
};

/// Longest wait tollbooth accepts from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest back-off between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How much of an answer that cannot be read is shown in the log and the error.
const SHOWN_BODY_CHARS: usize = 200;

/// How the client talks to Stripe.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub secret_key: SecretString,
    /// `https://api.stripe.com`, or a mock in tests.
    pub api_base: String,
    /// Per attempt.
    pub timeout: Duration,
    /// Requests per second, all accounts together.
    pub rate_limit: NonZeroU32,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The first back-off; each further one doubles.
    pub retry_base: Duration,
}

/// A Stripe API client. Cheap to clone.
#[derive(Clone)]
pub struct StripeHttp {
    http: reqwest::Client,
    settings: Arc<ClientSettings>,
    pacing: Arc<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for StripeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeHttp")
            .field("api_base", &self.settings.api_base)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Bytes),
    /// Worth another attempt, after at least this long (when the server said so).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    Fatal(StripeError),
}

impl StripeHttp {
    pub fn new(settings: ClientSettings) -> Result<Self, StripeError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("tollbooth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeError::Config(format!("building the HTTP client: {e}")))?;
        let pacing = RateLimiter::direct(Quota::per_second(settings.rate_limit));
        Ok(Self {
            http,
            settings: Arc::new(settings),
            pacing: Arc::new(pacing),
        })
    }

    /// Sends a request and reads Stripe's answer as a `T`. An answer that is not a `T` (garbage,
    /// another object) is logged with the request, the object expected and the start of the
    /// body, and is [`StripeError::Unreadable`]: Stripe answered, so it is not sent again here.
    pub async fn call<T: miniserde::Deserialize>(
        &self,
        request: CustomizableStripeRequest<T>,
    ) -> Result<T, StripeError> {
        let exchange = Exchange {
            http: self,
            request: OnceLock::new(),
            body: OnceLock::new(),
        };
        match request.send(&exchange).await {
            Err(StripeError::Decode(reason)) => {
                let request = exchange.request.into_inner().unwrap_or_default();
                let object = object_name::<T>();
                let body = self.shown(&exchange.body.into_inner().unwrap_or_default());
                tracing::error!(%request, %object, %body, %reason, "Stripe's answer could not be read; it is not sent again in this pass");
                Err(StripeError::Unreadable {
                    request,
                    object,
                    body,
                    reason,
                })
            }
            other => other,
        }
    }

    /// The start of an answer, fit for a log line: at most 200 characters, control characters
    /// blanked, the secret key (should an answer ever echo it) redacted.
    fn shown(&self, body: &[u8]) -> String {
        let secret = self.settings.secret_key.expose_secret();
        let start = &body[..body.len().min(SHOWN_BODY_CHARS * 4 + secret.len())];
        let mut text = String::from_utf8_lossy(start).into_owned();
        if !secret.is_empty() {
            text = text.replace(secret, "[REDACTED]");
        }
        let mut shown: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(SHOWN_BODY_CHARS)
            .collect();
        if text.chars().nth(SHOWN_BODY_CHARS).is_some() || start.len() < body.len() {
            shown.push('…');
        }
        shown
    }

    /// Sends one request, retrying what is worth retrying, always with the same key.
    async fn send(
        &self,
        request: RequestBuilder,
        config: ConfigOverride,
    ) -> Result<Bytes, StripeError> {
        let key = config
            .request_strategy
            .as_ref()
            .and_then(|strategy| strategy.get_key());
        let account = config.account_id.map(|id| id.as_str().to_owned());
        let method = match request.method {
            StripeMethod::Get => reqwest::Method::GET,
            StripeMethod::Post => reqwest::Method::POST,
            StripeMethod::Delete => reqwest::Method::DELETE,
        };
        let mut url = format!(
            "{}/v1{}",
            self.settings.api_base.trim_end_matches('/'),
            request.path
        );
        if let Some(query) = request.query.as_deref().filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(query);
        }
        let mut last_error = String::new();
        let endpoint = crate::telemetry::stripe_endpoint(&request.path);
        for attempt in 1..=self.settings.max_attempts.max(1) {
            self.pacing.until_ready().await;
            let mut builder = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.settings.secret_key.expose_secret())
                .header("Stripe-Version", stripe_client_core::VERSION.as_str());
            if let Some(key) = &key {
                builder = builder.header("Idempotency-Key", key.as_str());
            }
            if let Some(account) = &account {
                builder = builder.header("Stripe-Account", account);
            }
            if let Some(body) = &request.body {
                builder = builder
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.clone());
            }
            let wait = match attempt_once(builder, method.as_str(), &endpoint).await {
                Attempt::Done(bytes) => return Ok(bytes),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { error, after } => {
                    last_error = error;
                    after.unwrap_or_else(|| self.backoff(attempt))
                }
            };
            if attempt < self.settings.max_attempts {
                tracing::warn!(path = %request.path, attempt, error = %last_error, wait_ms = wait.as_millis(), "Stripe request failed; retrying with the same idempotency key");
                tokio::time::sleep(wait).await;
            }
        }
        Err(StripeError::Unavailable {
            attempts: self.settings.max_attempts.max(1),
            last: last_error,
        })
    }

    /// Exponential back-off with "equal jitter": half fixed, half random.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let full = self
            .settings
            .retry_base
            .saturating_mul(1 << exponent)
            .min(MAX_BACKOFF);
        let half = full / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// Whether a request failed because the address refused the connection.
fn connection_refused(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// One attempt, counted in `/metrics` by method, endpoint and status.
async fn attempt_once(builder: reqwest::RequestBuilder, method: &str, endpoint: &str) -> Attempt {
    let started = std::time::Instant::now();
    let sent = builder.send().await;
    let status = match &sent {
        Ok(response) => response.status().as_str().to_owned(),
        Err(error) if error.is_timeout() => "timeout".to_owned(),
        Err(_) => "unreachable".to_owned(),
    };
    let names = (
        crate::telemetry::names::STRIPE_REQUESTS,
        crate::telemetry::names::STRIPE_DURATION,
    );
    metrics::counter!(names.0, "method" => method.to_owned(), "endpoint" => endpoint.to_owned(), "status" => status)
        .increment(1);
    metrics::histogram!(names.1, "method" => method.to_owned(), "endpoint" => endpoint.to_owned())
        .record(started.elapsed().as_secs_f64());
    let response = match sent {
        Ok(response) => response,
        Err(error) if error.is_timeout() => {
            return Attempt::Retry {
                error: "timed out waiting for Stripe".into(),
                after: None,
            };
        }
        // Nothing listens where Stripe calls go (`STRIPE_API_BASE`, a proxy): trying again in a
        // moment finds the same, so the caller is told at once.
        Err(error) if connection_refused(&error) => {
            return Attempt::Fatal(StripeError::Unavailable {
                attempts: 1,
                last: format!("cannot reach Stripe: the connection was refused ({error})"),
            });
        }
        Err(error) => {
            return Attempt::Retry {
                error: format!("cannot reach Stripe: {error}"),
                after: None,
            };
        }
    };
    let status = response.status();
    let should_retry = response
        .headers()
        .get("Stripe-Should-Retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v == "true");
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => {
            return Attempt::Retry {
                error: format!("reading Stripe's answer: {error}"),
                after: None,
            };
        }
    };
    if status.is_success() {
        return Attempt::Done(body);
    }
    let refused = StripeError::refused(status.as_u16(), &body);
    // Stripe's transient answers: rate limited, a concurrent request with the same key, 5xx.
    let transient = matches!(status.as_u16(), 409 | 429 | 500..=599);
    match should_retry {
        Some(false) => Attempt::Fatal(refused),
        Some(true) => Attempt::Retry {
            error: refused.to_string(),
            after: retry_after,
        },
        None if transient => Attempt::Retry {
            error: refused.to_string(),
            after: retry_after,
        },
        None => Attempt::Fatal(refused),
    }
}

/// One request through [`StripeHttp::call`]: remembers what was asked and what came back, for
/// the report of an answer that cannot be read.
struct Exchange<'a> {
    http: &'a StripeHttp,
    /// `POST /v1/products`.
    request: OnceLock<String>,
    /// Stripe's answer.
    body: OnceLock<Bytes>,
}

impl StripeClient for Exchange<'_> {
    type Err = StripeError;

    async fn execute(&self, request: CustomizedStripeRequest) -> Result<Bytes, Self::Err> {
        let (request, config) = request.into_pieces();
        let method = match request.method {
            StripeMethod::Get => "GET",
            StripeMethod::Post => "POST",
            StripeMethod::Delete => "DELETE",
        };
        self.request
            .get_or_init(|| format!("{method} /v1{}", request.path));
        let body = self.http.send(request, config).await?;
        self.body.get_or_init(|| body.clone());
        Ok(body)
    }
}

/// The object a request expects, as its Rust type is named: `Product`, `InvoiceItem`.
fn object_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let plain = full.split('<').next().unwrap_or(full);
    plain.rsplit("::").next().unwrap_or(plain).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(secret: &str) -> StripeHttp {
        StripeHttp::new(ClientSettings {
            secret_key: secret.to_owned().into(),
            api_base: "http://127.0.0.1:1".into(),
            timeout: Duration::from_secs(1),
            rate_limit: NonZeroU32::MIN,
            max_attempts: 1,
            retry_base: Duration::from_millis(1),
        })
        .unwrap()
    }

    #[test]
    fn an_unreadable_answer_is_shown_short_on_one_line_without_the_key() {
        let http = client("sk_test_secret");
        assert_eq!(http.shown(b"{\"ok\":\ntrue}"), "{\"ok\": true}");
        let long = format!("<html>{}</html>", "x".repeat(1_000));
        let shown = http.shown(long.as_bytes());
        assert_eq!(shown.chars().count(), SHOWN_BODY_CHARS + 1);
        assert!(
            shown.starts_with("<html>xxx") && shown.ends_with('…'),
            "{shown}"
        );
        let echoed = http.shown(b"Authorization: Bearer sk_test_secret");
        assert_eq!(echoed, "Authorization: Bearer [REDACTED]");
        assert_eq!(http.shown(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn the_object_expected_is_named_by_its_type() {
        assert_eq!(object_name::<stripe_shared::Product>(), "Product");
        assert_eq!(object_name::<Vec<String>>(), "Vec");
    }
}
