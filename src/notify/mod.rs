//! Outbound notifications to the provider's URL: subscription status changes, quota reached,
//! invoice paid or failed. Signed the way Stripe signs (`Tollbooth-Signature: t=…,v1=…`,
//! HMAC-SHA256 of `{t}.{body}`).
//!
//! Each notification is written to the outbox table (`notifications`) in the transaction of the
//! change it reports, so none is lost to a crash or a restart. A delivery task in every process
//! claims what is due (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so that of several replicas
//! one sends each), posts it, and marks it delivered, or due again after a back-off, or parked as
//! `failed` after its attempts; parked ones are listed and sent again through the admin API.
//! Delivery is at least once, with the same `id` every time, and in order per subscription.

use crate::store::{ClaimedNotification, Store, StoreResult, Tx};
use crate::stripe::webhook::sign;
use crate::telemetry::names;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Deliveries under way at once, per process.
const IN_FLIGHT: i64 = 8;
/// Longest back-off between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the outbox is looked at when nothing wakes the task: for retries that come due, and
/// for notifications other replicas wrote.
const POLL: Duration = Duration::from_secs(1);

/// Where notifications go and how they are signed and retried.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub url: String,
    pub secret: SecretString,
    pub max_attempts: u32,
    pub retry_base: Duration,
    /// How long one delivery may take.
    pub timeout: Duration,
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

/// Writes notifications to the outbox and delivers them in the background; a no-op without a
/// URL. Cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: Store,
    settings: NotifySettings,
    wake: Notify,
}

impl Notifier {
    /// Starts the delivery task when a URL is set.
    pub fn start(store: Store, settings: Option<NotifySettings>) -> Self {
        let Some(settings) = settings else {
            return Self::default();
        };
        let inner = Arc::new(Inner {
            store,
            settings,
            wake: Notify::new(),
        });
        tokio::spawn(deliver_forever(inner.clone()));
        Self { inner: Some(inner) }
    }

    /// Writes a notification in `tx`: it is delivered once `tx` commits. Call [`Self::wake`]
    /// after the commit to send it at once rather than at the next look.
    pub async fn write(
        &self,
        tx: &mut Tx,
        kind: &'static str,
        subscription: &str,
        data: Value,
    ) -> StoreResult<()> {
        if self.inner.is_none() {
            return Ok(());
        }
        let created = chrono::Utc::now();
        let notification = Notification {
            id: crate::domain::ids::new_id("ntf"),
            kind,
            created: created.timestamp(),
            data,
        };
        let body = serde_json::to_string(&notification)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
        tx.insert_notification(
            &notification.id,
            kind,
            subscription,
            &body,
            created.timestamp_millis(),
        )
        .await
    }

    /// Tells the delivery task that new notifications are committed.
    pub fn wake(&self) {
        if let Some(inner) = &self.inner {
            inner.wake.notify_one();
        }
    }

    /// Writes a notification in a transaction of its own, in the background, for a change
    /// already committed elsewhere (a quota reached, counted after the usage's commit): a crash
    /// between the two commits loses it.
    pub fn notify_after(&self, kind: &'static str, subscription: String, data: Value) {
        let Some(inner) = &self.inner else {
            return;
        };
        let notifier = self.clone();
        let store = inner.store.clone();
        tokio::spawn(async move {
            let written = async {
                let mut tx = store.begin().await?;
                notifier.write(&mut tx, kind, &subscription, data).await?;
                tx.commit().await
            };
            match written.await {
                Ok(()) => notifier.wake(),
                Err(error) => {
                    metrics::counter!(names::NOTIFICATIONS, "outcome" => "dropped").increment(1);
                    tracing::error!(%error, kind, "a notification could not be written");
                }
            }
        });
    }
}

/// Claims what is due, delivers it, and looks again: at once after a full claim, else when woken
/// or after a while.
async fn deliver_forever(inner: Arc<Inner>) {
    let http = reqwest::Client::builder()
        .timeout(inner.settings.timeout)
        .build()
        .unwrap_or_default();
    loop {
        let claimed = match claim(&inner.store, claim_hold(&inner.settings)).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "the notification outbox could not be read");
                Vec::new()
            }
        };
        metrics::gauge!(names::NOTIFICATIONS_PENDING).set(claimed.len() as f64);
        let full = claimed.len() as i64 >= IN_FLIGHT;
        let mut soonest = POLL;
        let attempts = claimed.into_iter().map(|notification| {
            let (http, inner) = (&http, &inner);
            async move { attempt(http, inner, notification).await }
        });
        for retry in futures::future::join_all(attempts)
            .await
            .into_iter()
            .flatten()
        {
            soonest = soonest.min(retry);
        }
        if full {
            continue;
        }
        tokio::select! {
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(soonest) => {}
        }
    }
}

/// How long a claim holds a notification: past it, another process may send it again. Twice a
/// delivery's timeout and a second to record it, so a process that was killed while sending
/// keeps it that long only.
fn claim_hold(settings: &NotifySettings) -> Duration {
    settings
        .timeout
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(1))
}

async fn claim(store: &Store, hold: Duration) -> StoreResult<Vec<ClaimedNotification>> {
    let now = chrono::Utc::now().timestamp_millis();
    let hold = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
    let mut tx = store.begin().await?;
    let claimed = tx
        .claim_notifications(now, now.saturating_add(hold), IN_FLIGHT)
        .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// Posts one claimed notification once and records the outcome; answers the wait before its
/// next attempt when it is to be tried again.
async fn attempt(
    http: &reqwest::Client,
    inner: &Inner,
    notification: ClaimedNotification,
) -> Option<Duration> {
    let settings = &inner.settings;
    let t = chrono::Utc::now().timestamp();
    let signature = hex::encode(sign(
        settings.secret.expose_secret(),
        t,
        notification.body.as_bytes(),
    ));
    let sent = http
        .post(&settings.url)
        .header("Content-Type", "application/json")
        .header("Tollbooth-Signature", format!("t={t},v1={signature}"))
        .body(notification.body.clone())
        .send()
        .await;
    let error = match sent {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("answered {}", response.status())),
        Err(error) => Some(error.to_string()),
    };
    let attempt = u32::try_from(notification.attempts)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let now = chrono::Utc::now().timestamp_millis();
    let retry = match &error {
        None => {
            metrics::counter!(names::NOTIFICATIONS, "outcome" => "delivered").increment(1);
            None
        }
        Some(error) => {
            tracing::warn!(id = %notification.id, kind = %notification.kind, attempt, %error, "a notification was not delivered");
            let retry = (attempt < settings.max_attempts).then(|| {
                let exponent = (attempt - 1).min(16);
                settings
                    .retry_base
                    .saturating_mul(1 << exponent)
                    .min(MAX_BACKOFF)
            });
            if retry.is_none() {
                metrics::counter!(names::NOTIFICATIONS, "outcome" => "failed").increment(1);
                tracing::error!(id = %notification.id, kind = %notification.kind, "a notification was parked after its attempts");
            }
            retry
        }
    };
    let recorded = async {
        let mut tx = inner.store.begin().await?;
        match &error {
            None => tx.notification_delivered(notification.seq, now).await?,
            Some(error) => {
                let retry_at = retry.map(|wait| {
                    now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
                });
                tx.notification_not_delivered(notification.seq, error, retry_at)
                    .await?;
            }
        }
        tx.commit().await
    };
    if let Err(error) = recorded.await {
        // The claim runs out and the notification is sent again: at least once.
        tracing::warn!(id = %notification.id, %error, "a notification's delivery could not be recorded");
    }
    retry
}
