//! Outbound notifications to the provider's URL: subscription status changes, quota reached,
//! invoice paid or failed. Signed the way Stripe signs (`Tollbooth-Signature: t=…,v1=…`, HMAC-SHA256
//! of `{t}.{body}`), retried with back-off, and never waited for: a full queue drops the
//! notification with a warning rather than hold up ingestion or a webhook.

use crate::stripe::webhook::sign;
use crate::telemetry::names;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Notifications waiting to be sent; past that, new ones are dropped.
const QUEUE: usize = 10_000;
/// Deliveries under way at once.
const IN_FLIGHT: usize = 8;
/// Longest back-off between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Where notifications go and how they are signed and retried.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub url: String,
    pub secret: SecretString,
    pub max_attempts: u32,
    pub retry_base: Duration,
}

/// One notification as the provider receives it.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// Unique per notification: the provider can drop a redelivery.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix seconds.
    pub created: i64,
    pub data: Value,
}

/// Sends notifications in the background; a no-op without a URL. Cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Notification>>,
}

impl Notifier {
    /// Starts the sender task when a URL is set.
    pub fn start(settings: Option<NotifySettings>) -> Self {
        let Some(settings) = settings else {
            return Self::default();
        };
        let (queue, mut waiting) = mpsc::channel::<Notification>(QUEUE);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let settings = Arc::new(settings);
        let room = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(notification) = waiting.recv().await {
                let Ok(permit) = room.clone().acquire_owned().await else {
                    return;
                };
                let (http, settings) = (http.clone(), settings.clone());
                tokio::spawn(async move {
                    let delivered = deliver(&http, &settings, &notification).await;
                    drop(permit);
                    let outcome = if delivered { "delivered" } else { "failed" };
                    metrics::gauge!(names::NOTIFICATIONS_PENDING).decrement(1.0);
                    metrics::counter!(names::NOTIFICATIONS, "outcome" => outcome).increment(1);
                });
            }
        });
        Self { queue: Some(queue) }
    }

    /// Queues a notification; never waits.
    pub fn notify(&self, kind: &'static str, data: Value) {
        let Some(queue) = &self.queue else {
            return;
        };
        let notification = Notification {
            id: crate::domain::ids::new_id("ntf"),
            kind,
            created: chrono::Utc::now().timestamp(),
            data,
        };
        match queue.try_send(notification) {
            Ok(()) => metrics::gauge!(names::NOTIFICATIONS_PENDING).increment(1.0),
            Err(error) => {
                metrics::counter!(names::NOTIFICATIONS, "outcome" => "dropped").increment(1);
                tracing::warn!(%error, kind, "a notification was dropped: the queue is full");
            }
        }
    }
}

/// Posts one notification until the provider answers 2xx or the attempts run out; answers
/// whether it was delivered.
async fn deliver(
    http: &reqwest::Client,
    settings: &NotifySettings,
    notification: &Notification,
) -> bool {
    let Ok(body) = serde_json::to_vec(notification) else {
        return false;
    };
    for attempt in 1..=settings.max_attempts.max(1) {
        let t = chrono::Utc::now().timestamp();
        let signature = hex::encode(sign(settings.secret.expose_secret(), t, &body));
        let sent = http
            .post(&settings.url)
            .header("Content-Type", "application/json")
            .header("Tollbooth-Signature", format!("t={t},v1={signature}"))
            .body(body.clone())
            .send()
            .await;
        let error = match sent {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => format!("answered {}", response.status()),
            Err(error) => error.to_string(),
        };
        tracing::warn!(id = %notification.id, kind = notification.kind, attempt, %error, "a notification was not delivered");
        if attempt < settings.max_attempts {
            let exponent = (attempt - 1).min(16);
            let wait = settings
                .retry_base
                .saturating_mul(1 << exponent)
                .min(MAX_BACKOFF);
            tokio::time::sleep(wait).await;
        }
    }
    tracing::error!(id = %notification.id, kind = notification.kind, "a notification was given up");
    false
}
