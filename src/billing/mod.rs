//! Billing: what a subscription owes for a period. The invoice preview is the rating engine on the
//! usage recorded so far; the daily job ([`BillingJob`]) reports the same figures to Stripe.

mod commits;
mod ledger;
mod preview;
pub mod revenue;
mod run;
pub mod schedule;

pub use preview::{InvoicePreview, MeterFigure, meter_quantities, preview, usage_of_meters};
pub use run::{BillingJob, CLOSE_JOB, JOB, RunReport};

use crate::domain::FieldError;
use crate::pricing::PricingError;
use crate::store::StoreError;

/// Why a bill could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("subscription `{0}` does not exist")]
    UnknownSubscription(String),
    /// The caller asked for a period that does not exist.
    #[error("{0}")]
    Invalid(FieldError),
    /// The subscription was canceled before this period began: the period bills nothing.
    #[error("subscription `{subscription}` was canceled before the period starting {period_start}")]
    NotActive {
        subscription: String,
        period_start: chrono::NaiveDate,
    },
    /// The stored tier and usage could not be rated: a fault, not the caller's.
    #[error("rating failed: {0}")]
    Pricing(#[from] PricingError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
