//! Stripe: the only code that calls it. The catalog writes what it owes Stripe as intents in its
//! own transaction ([`intents`]); [`Stripe::settle`] and [`Stripe::sync`] carry them out
//! ([`mirror`]) through our client ([`client`]), each with its deterministic Idempotency-Key.
//! Without a secret key tollbooth runs in ledger mode: the intents wait for `tollbooth stripe sync`.

pub mod client;
pub mod intents;
mod mirror;
mod params;
mod payment_method;
mod portal;
pub(crate) use portal::customer_of;
mod usage;
pub mod webhook;

pub use client::{ClientSettings, StripeHttp};
pub use usage::UsageItem;

use crate::store::{Store, StoreError};
use serde::Serialize;
use stripe_client_core::StripeClientErr;

/// Why a Stripe write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error that another attempt would not change.
    #[error("Stripe refused the request ({status}{}): {message}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Refused {
        status: u16,
        /// Stripe's error `type` (`invalid_request_error`, `idempotency_error`, …).
        kind: Option<String>,
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
    /// Stripe could not be reached, or kept failing, for every attempt.
    #[error("Stripe did not answer after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// Stripe's answer was not the object expected.
    #[error("Stripe's answer could not be read: {0}")]
    Decode(String),
    /// Stripe answered a request with something that is not the object it asks for (garbage, a
    /// body cut short, another object). Stripe did answer: it is not retried as if passing.
    #[error("Stripe's answer to {request} is not a {object} ({reason}); it begins: {body}")]
    Unreadable {
        /// Method and path: `POST /v1/products`.
        request: String,
        object: String,
        /// The first 200 characters of the answer.
        body: String,
        reason: String,
    },
    /// An intent needs something that is not there (a deleted row, a dependency that failed).
    #[error("{0}")]
    Missing(String),
    #[error("Stripe client configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StripeClientErr for StripeError {
    fn deserialize_err(msg: impl std::fmt::Display) -> Self {
        Self::Decode(msg.to_string())
    }
}

impl StripeError {
    /// Stripe's error body (`{"error": {"type", "code", "message", "param"}}`) as an error.
    fn refused(status: u16, body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            error: Detail,
        }
        #[derive(serde::Deserialize)]
        struct Detail {
            #[serde(rename = "type")]
            kind: Option<String>,
            code: Option<String>,
            message: Option<String>,
            param: Option<String>,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(Body { error }) => Self::Refused {
                status,
                kind: error.kind,
                code: error.code,
                message: error
                    .message
                    .unwrap_or_else(|| "no message given".to_owned()),
                param: error.param,
            },
            Err(_) => Self::Refused {
                status,
                kind: None,
                code: None,
                message: String::from_utf8_lossy(body).chars().take(300).collect(),
                param: None,
            },
        }
    }
}

/// Stripe, or ledger mode when no secret key is set. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stripe {
    client: Option<StripeHttp>,
    /// Where Checkout sends a subscriber back after adding a payment method.
    checkout_return_url: Option<String>,
    /// Intents under way in this process, so that two requests never send one side by side.
    in_flight: mirror::InFlight,
}

/// What a sync did.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub done: u64,
    pub failed: u64,
    /// The errors of the intents that failed, by idempotency key.
    pub errors: Vec<(String, String)>,
}

impl Stripe {
    pub fn new(client: Option<StripeHttp>, checkout_return_url: Option<String>) -> Self {
        Self {
            client,
            checkout_return_url,
            in_flight: mirror::InFlight::default(),
        }
    }

    /// Ledger mode: no Stripe key, nothing is sent, intents wait.
    pub fn ledger() -> Self {
        Self::new(None, None)
    }

    pub fn is_live(&self) -> bool {
        self.client.is_some()
    }

    /// Carries out the pending intents of one catalog row, in order, stopping at the first failure
    /// (a later intent may need an earlier one). In ledger mode it does nothing.
    pub async fn settle(&self, store: &Store, subject_id: &str) -> Result<(), StripeError> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        let pending = store
            .begin_read()
            .await?
            .pending_intents(Some(subject_id), 0, 1_000)
            .await?;
        let pass = mirror::Pass::default();
        for intent in pending {
            mirror::run(client, self, store, &pass, &intent.idempotency_key).await?;
        }
        Ok(())
    }

    /// Carries out every pending intent, in order, each sent at most once; one that fails is
    /// recorded with its error and the others go on (those that need it fail unsent). In ledger
    /// mode it does nothing.
    pub async fn sync(&self, store: &Store) -> Result<SyncReport, StripeError> {
        let mut report = SyncReport::default();
        let Some(client) = &self.client else {
            return Ok(report);
        };
        let pass = mirror::Pass::default();
        let (pending, failed_before) = store.begin_read().await?.stripe_intents_owed().await?;
        let owed = pending + failed_before;
        if owed > 0 {
            tracing::info!(owed, "stripe sync: {owed} Stripe writes owed");
        }
        let mut after = 0;
        loop {
            let batch = store
                .begin_read()
                .await?
                .pending_intents(None, after, 500)
                .await?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.seq;
            for intent in batch {
                match mirror::run(client, self, store, &pass, &intent.idempotency_key).await {
                    Ok(()) => report.done += 1,
                    Err(StripeError::Store(error)) => return Err(StripeError::Store(error)),
                    Err(error) => {
                        report.failed += 1;
                        tracing::warn!(key = %intent.idempotency_key, %error, "stripe sync: a write failed; it stays owed");
                        report
                            .errors
                            .push((intent.idempotency_key, error.to_string()));
                    }
                }
                let tried = report.done + report.failed;
                if tried % SYNC_PROGRESS_EVERY == 0 {
                    tracing::info!(
                        written = report.done,
                        failed = report.failed,
                        "stripe sync: {tried} of {owed} tried"
                    );
                }
            }
        }
        Ok(report)
    }
}

/// How often `sync` says how far it got, in writes tried.
const SYNC_PROGRESS_EVERY: u64 = 25;

impl Stripe {
    /// Stripe as the settings say: live with a secret key, ledger mode without.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Self, StripeError> {
        let client = settings
            .stripe_secret_key
            .clone()
            .map(|secret_key| {
                StripeHttp::new(ClientSettings {
                    secret_key,
                    api_base: settings.stripe_api_base.clone(),
                    timeout: settings.stripe_timeout.0,
                    rate_limit: settings.stripe_rate_limit,
                    max_attempts: settings.stripe_max_attempts.get(),
                    retry_base: settings.stripe_retry_base.0,
                })
            })
            .transpose()?;
        Ok(Self::new(client, settings.checkout_return_url.clone()))
    }
}

/// Stripe's error codes for a change to an invoice that is no longer a draft:
/// `invoice_not_editable` (the current code) and `invoice_already_finalized` (its name since API
/// version 2018-11-08, before that `immutable_frozen_invoice`).
const INVOICE_NOT_A_DRAFT: [&str; 2] = ["invoice_not_editable", "invoice_already_finalized"];

impl StripeError {
    /// Stripe refused a change to an invoice item because its invoice is no longer a draft, by
    /// Stripe's own error code. Any other refusal (a bad parameter, an idempotency error) is not
    /// that, and is a failure to report, never a reason to bill the change elsewhere.
    pub fn is_finalized_invoice(&self) -> bool {
        matches!(
            self,
            Self::Refused { status: 400, code: Some(code), .. }
                if INVOICE_NOT_A_DRAFT.contains(&code.as_str())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stripe_s_not_a_draft_codes_mean_a_finalized_invoice() {
        let refused = |status: u16, body: &str| StripeError::refused(status, body.as_bytes());
        for code in ["invoice_not_editable", "invoice_already_finalized"] {
            let body = format!(
                r#"{{"error": {{"type": "invalid_request_error", "code": "{code}", "message": "m"}}}}"#
            );
            assert!(refused(400, &body).is_finalized_invoice(), "{code}");
        }
        for body in [
            r#"{"error": {"type": "invalid_request_error", "code": "parameter_invalid_integer", "param": "amount", "message": "m"}}"#,
            r#"{"error": {"type": "idempotency_error", "message": "m"}}"#,
            r#"{"error": {"type": "invalid_request_error", "message": "The invoice is finalized"}}"#,
            "<html>bad gateway</html>",
        ] {
            assert!(!refused(400, body).is_finalized_invoice(), "{body}");
        }
        let not_editable = r#"{"error": {"code": "invoice_not_editable", "message": "m"}}"#;
        assert!(!refused(404, not_editable).is_finalized_invoice());
    }
}
