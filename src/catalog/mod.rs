//! The local catalog: apis, tiers, subscribers, subscriptions and gateways, as the admin API and
//! `tollbooth catalog apply` create them. Every operation runs inside the caller's unit of work.

mod archive;
pub mod events;
pub mod file;
mod put;

pub use archive::{archive_api, archive_subscriber, archive_tier};
pub use events::{CatalogEvents, Changed, Verb};
pub use file::{
    ApplyOptions, ApplyReport, CatalogFile, FileError, apply_file, apply_file_with, dry_run_file,
    export_file,
};
pub use put::{
    cancel_subscription, change_tier, create_gateway, put_api, put_subscriber, put_subscription,
    put_tier, revoke_gateway, rotate_gateway_key,
};

use crate::domain::FieldError;
use crate::store::StoreError;

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// Changed in place, or — for a tier — a new version written.
    Updated,
    Unchanged,
}

/// How a put treats an existing row with the same key and a different definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The admin API's create: the same definition again is fine, a different one is a conflict
    /// (except tiers, where a change is how a new version is made).
    Create,
    /// A declarative file: the file is the truth, existing rows are brought in line with it.
    Apply,
}

/// Why a catalog operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The input names a field with a bad value, or a row that does not exist.
    #[error("{0}")]
    Invalid(FieldError),
    /// The thing asked for does not exist.
    #[error("{kind} `{key}` does not exist")]
    NotFound { kind: &'static str, key: String },
    /// The input contradicts what tollbooth's own checks found stored: a taken key, a different
    /// definition.
    #[error("{0}")]
    Conflict(String),
    /// An archive refused: live subscriptions depend on the row.
    #[error(
        "{kind} `{key}` has {} live subscription(s) ({}): cancel them before archiving it",
        live.count,
        live.first.join(", ")
    )]
    InUse {
        kind: &'static str,
        key: String,
        live: crate::store::LiveSubscriptions,
    },
    /// A subscription asked of an archived api, tier or subscriber.
    #[error("{kind} `{key}` is archived: create or change it again to restore it")]
    Archived { kind: &'static str, key: String },
    /// The store refused: a unique key taken past those checks ([`StoreError::Conflict`], a
    /// request racing this one), or a failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FieldError> for CatalogError {
    fn from(error: FieldError) -> Self {
        CatalogError::Invalid(error)
    }
}

pub type CatalogResult<T> = Result<T, CatalogError>;
