//! Incoming Stripe webhooks: the `Stripe-Signature` check and the events tollbooth acts on.
//!
//! The signature is HMAC-SHA256 of `{t}.{raw body}` under the endpoint's signing secret, sent as
//! `t=…,v1=…[,v1=…]`. Any configured secret (several while rotating) matching any `v1` passes, if
//! `t` is within the tolerance of now. Comparisons are constant-time.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far `t` may be from now: Stripe's own default.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the signature timestamp is outside the {0} s tolerance")]
    Stale(i64),
    #[error("no signature matches a configured webhook secret")]
    Mismatch,
    #[error("webhooks are refused: STRIPE_WEBHOOK_SECRET is not set")]
    NotConfigured,
}

/// The signing secrets of the webhook endpoint; several while a secret is rotated.
#[derive(Clone)]
pub struct WebhookSecrets {
    secrets: Vec<SecretString>,
    tolerance_secs: i64,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebhookSecrets({} secrets, redacted)",
            self.secrets.len()
        )
    }
}

impl WebhookSecrets {
    /// From `whsec_a,whsec_b`; `None` when there is none.
    pub fn parse(setting: Option<&SecretString>) -> Option<Self> {
        let secrets: Vec<SecretString> = setting?
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_owned()))
            .collect();
        (!secrets.is_empty()).then_some(Self {
            secrets,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        })
    }

    /// Checks `header` against `body` at `now` (Unix seconds).
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or(SignatureError::Malformed("a part is not name=value"))?;
            match name {
                "t" => {
                    timestamp = Some(
                        value
                            .parse::<i64>()
                            .map_err(|_| SignatureError::Malformed("t is not a number"))?,
                    );
                }
                "v1" => signatures.push(
                    hex::decode(value).map_err(|_| SignatureError::Malformed("v1 is not hex"))?,
                ),
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed("no t"))?;
        if signatures.is_empty() {
            return Err(SignatureError::Malformed("no v1 signature"));
        }
        // `abs_diff`: a timestamp far from now (`t=-9223372036854775808`) cannot overflow.
        if now.abs_diff(timestamp) > self.tolerance_secs.unsigned_abs() {
            return Err(SignatureError::Stale(self.tolerance_secs));
        }
        let matched = self.secrets.iter().any(|secret| {
            let expected = sign(secret.expose_secret(), timestamp, body);
            signatures
                .iter()
                .any(|candidate| bool::from(candidate.as_slice().ct_eq(&expected)))
        });
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The HMAC-SHA256 of `{t}.{body}`: how Stripe signs, and how tollbooth signs what it sends.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The event types tollbooth subscribes to, and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventType {
    InvoiceCreated,
    InvoiceFinalized,
    InvoicePaid,
    InvoicePaymentFailed,
    InvoiceMarkedUncollectible,
    SubscriptionCreated,
    SubscriptionUpdated,
    SubscriptionDeleted,
    CustomerDeleted,
    CheckoutSessionCompleted,
    /// Stored and acknowledged, nothing more.
    Other(String),
}

impl EventType {
    pub fn parse(text: &str) -> Self {
        match text {
            "invoice.created" => Self::InvoiceCreated,
            "invoice.finalized" => Self::InvoiceFinalized,
            "invoice.paid" => Self::InvoicePaid,
            "invoice.payment_failed" => Self::InvoicePaymentFailed,
            "invoice.marked_uncollectible" => Self::InvoiceMarkedUncollectible,
            "customer.subscription.created" => Self::SubscriptionCreated,
            "customer.subscription.updated" => Self::SubscriptionUpdated,
            "customer.subscription.deleted" => Self::SubscriptionDeleted,
            "customer.deleted" => Self::CustomerDeleted,
            "checkout.session.completed" => Self::CheckoutSessionCompleted,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A verified event, with the fields tollbooth reads.
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub kind: EventType,
    pub type_name: String,
    /// Stripe's `created`, Unix milliseconds.
    pub created_ms: i64,
    pub object: Value,
}

impl StripeEvent {
    /// Reads an event body; `None` names what is missing.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let event: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let id = event["id"].as_str().ok_or("no `id`")?.to_owned();
        let type_name = event["type"].as_str().ok_or("no `type`")?.to_owned();
        let created = event["created"].as_i64().ok_or("no `created`")?;
        let object = event["data"]["object"].clone();
        if !object.is_object() {
            return Err("no `data.object`".into());
        }
        Ok(Self {
            id,
            kind: EventType::parse(&type_name),
            type_name,
            created_ms: created.saturating_mul(1000),
            object,
        })
    }

    /// The Stripe Subscription the event is about: the object itself, or the invoice's.
    pub fn subscription_id(&self) -> Option<&str> {
        let object = &self.object;
        match object["object"].as_str() {
            Some("subscription") => object["id"].as_str(),
            Some("invoice") => object["parent"]["subscription_details"]["subscription"]
                .as_str()
                .or_else(|| object["subscription"].as_str()),
            _ => object["subscription"].as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(text: &str) -> WebhookSecrets {
        WebhookSecrets::parse(Some(&SecretString::from(text.to_owned()))).unwrap()
    }

    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        format!("t={t},v1={}", hex::encode(sign(secret, t, body)))
    }

    #[test]
    fn a_signature_under_any_configured_secret_passes_within_the_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let both = secrets("whsec_old, whsec_new");
        assert_eq!(
            both.verify(Some(&header("whsec_new", 1000, body)), body, 1000),
            Ok(())
        );
        assert_eq!(
            both.verify(Some(&header("whsec_old", 1000, body)), body, 1299),
            Ok(())
        );
        let two = format!(
            "t=1000,v1={},v1=00ff",
            hex::encode(sign("whsec_x", 1000, body))
        );
        assert_eq!(
            both.verify(Some(&two), body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            both.verify(Some(&header("whsec_new", 1000, body)), body, 1301),
            Err(SignatureError::Stale(300))
        );
        assert_eq!(
            both.verify(Some(&header("whsec_new", 1000, body)), b"{}", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(both.verify(None, body, 1000), Err(SignatureError::Missing));
        assert!(matches!(
            both.verify(Some("t=abc,v1=00"), body, 1000),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            both.verify(Some("t=1000"), body, 1000),
            Err(SignatureError::Malformed(_))
        ));
    }
}
