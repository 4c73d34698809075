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
/// Longest wait for the endpoint in blocking mode, whatever `notify_timeout` says: the change's
/// transaction is open meanwhile, and on SQLite holds the write lock that ingestion waits for (at
/// most its busy timeout, 10 s).
const BLOCKING_TIMEOUT_MAX: Duration = Duration::from_secs(5);
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
    /// Catalog changes wait for the provider's endpoint to accept their notification, and are
    /// refused when it does not (Windows Azure Pack's blocking billing service).
    pub blocking: bool,
}

/// Why a notification was not written.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Blocking mode: the provider's endpoint did not accept the notification of a change, so
    /// the change is not made.
    #[error("the provider's endpoint did not accept the `{kind}` notification ({reason})")]
    NotAccepted { kind: &'static str, reason: String },
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
    http: reqwest::Client,
    wake: Notify,
}

impl Notifier {
    /// Starts the delivery task when a URL is set.
    pub fn start(store: Store, settings: Option<NotifySettings>) -> Self {
        let notifier = Self::outbox(store, settings);
        if let Some(inner) = &notifier.inner {
            tokio::spawn(deliver_forever(inner.clone()));
        }
        notifier
    }

    /// Writes to the outbox without delivering (a command such as `catalog apply`: a serving
    /// tollbooth delivers what it wrote), except what blocking mode sends before a change.
    pub fn outbox(store: Store, settings: Option<NotifySettings>) -> Self {
        let Some(settings) = settings else {
            return Self::default();
        };
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .unwrap_or_default();
        let inner = Arc::new(Inner {
            store,
            settings,
            http,
            wake: Notify::new(),
        });
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
        let Some(made) = self.make(kind, data)? else {
            return Ok(());
        };
        insert(tx, &made, subscription, None).await
    }

    /// Writes the notification of a catalog change in `tx`. In blocking mode it is first sent,
    /// once, and stored as delivered: when the provider's endpoint does not accept it, nothing is
    /// written and the caller must drop `tx`, so the change is not made.
    pub async fn write_change(
        &self,
        tx: &mut Tx,
        kind: &'static str,
        subscription: &str,
        data: Value,
    ) -> Result<(), NotifyError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let Some(made) = self.make(kind, data)? else {
            return Ok(());
        };
        if !inner.settings.blocking {
            return Ok(insert(tx, &made, subscription, None).await?);
        }
        let timeout = inner.settings.timeout.min(BLOCKING_TIMEOUT_MAX);
        if let Some(reason) = post(&inner.http, &inner.settings, &made.body, timeout).await {
            metrics::counter!(names::NOTIFICATIONS, "outcome" => "not_accepted").increment(1);
            tracing::warn!(id = %made.notification.id, kind, %reason, "blocking mode: the provider did not accept a change's notification; the change is refused");
            return Err(NotifyError::NotAccepted { kind, reason });
        }
        metrics::counter!(names::NOTIFICATIONS, "outcome" => "delivered").increment(1);
        let delivered = chrono::Utc::now().timestamp_millis();
        Ok(insert(tx, &made, subscription, Some(delivered)).await?)
    }

    /// A new notification and its body, when notifications are sent at all.
    fn make(&self, kind: &'static str, data: Value) -> StoreResult<Option<Made>> {
        if self.inner.is_none() {
            return Ok(None);
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
        Ok(Some(Made {
            notification,
            body,
            created_ms: created.timestamp_millis(),
        }))
    }

    /// Whether notifications are written at all (a URL is set).
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Tells the delivery task that new notifications are committed.
    pub fn wake(&self) {
        if let Some(inner) = &self.inner {
            inner.wake.notify_one();
        }
    }
}

/// A notification made, with its body as delivered.
struct Made {
    notification: Notification,
    body: String,
    created_ms: i64,
}

async fn insert(
    tx: &mut Tx,
    made: &Made,
    subscription: &str,
    delivered_at: Option<i64>,
) -> StoreResult<()> {
    tx.insert_notification(
        &made.notification.id,
        made.notification.kind,
        subscription,
        &made.body,
        made.created_ms,
        delivered_at,
    )
    .await
}

/// Posts a body once, signed, waiting at most `timeout`; answers why it was not accepted, or
/// `None` when it was.
async fn post(
    http: &reqwest::Client,
    settings: &NotifySettings,
    body: &str,
    timeout: Duration,
) -> Option<String> {
    let t = chrono::Utc::now().timestamp();
    let signature = hex::encode(sign(settings.secret.expose_secret(), t, body.as_bytes()));
    let sent = http
        .post(&settings.url)
        .header("Content-Type", "application/json")
        .header("Tollbooth-Signature", format!("t={t},v1={signature}"))
        .body(body.to_owned())
        .timeout(timeout)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("answered {}", response.status())),
        Err(error) => Some(error.to_string()),
    }
}

/// Claims what is due, delivers it, and looks again: at once after a full claim, else when woken
/// or after a while.
async fn deliver_forever(inner: Arc<Inner>) {
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
        // A notification that left its queue (delivered or parked) lets the next of that queue be
        // claimed: look again at once, so a queue drains at the endpoint's pace, not one a poll.
        let mut moved_on = false;
        let attempts = claimed.into_iter().map(|notification| {
            let inner = &inner;
            async move { attempt(inner, notification).await }
        });
        for retry in futures::future::join_all(attempts).await {
            match retry {
                Some(retry) => soonest = soonest.min(retry),
                None => moved_on = true,
            }
        }
        if full || moved_on {
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
    if !store.begin_read().await?.any_notification_due(now).await? {
        return Ok(Vec::new());
    }
    let mut tx = store.begin().await?;
    let claimed = tx
        .claim_notifications(now, now.saturating_add(hold), IN_FLIGHT)
        .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// Posts one claimed notification once and records the outcome; answers the wait before its
/// next attempt when it is to be tried again, `None` when it left its queue (delivered or
/// parked).
async fn attempt(inner: &Inner, notification: ClaimedNotification) -> Option<Duration> {
    let settings = &inner.settings;
    let error = post(&inner.http, settings, &notification.body, settings.timeout).await;
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
