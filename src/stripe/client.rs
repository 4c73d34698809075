//! The HTTP client under async-stripe's request builders: reqwest, our own retry loop, pacing.
//!
//! async-stripe builds each request (path, form body) and reads each answer; this client sends it.
//! Every write carries the Idempotency-Key its caller chose, the same on every retry; 429 waits out
//! `Retry-After`, 5xx and transport failures back off exponentially with jitter, up to a bound.

use super::StripeError;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeMethod};

/// Longest wait tollbooth accepts from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest back-off between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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

    /// Sends one request, retrying what is worth retrying, always with the same key.
    async fn send(&self, request: CustomizedStripeRequest) -> Result<Bytes, StripeError> {
        let (request, config) = request.into_pieces();
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
            let wait = match attempt_once(builder).await {
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

async fn attempt_once(builder: reqwest::RequestBuilder) -> Attempt {
    let response = match builder.send().await {
        Ok(response) => response,
        Err(error) if error.is_timeout() => {
            return Attempt::Retry {
                error: "timed out waiting for Stripe".into(),
                after: None,
            };
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

impl StripeClient for StripeHttp {
    type Err = StripeError;

    fn execute(
        &self,
        request: CustomizedStripeRequest,
    ) -> impl Future<Output = Result<Bytes, Self::Err>> + Send {
        self.send(request)
    }
}
