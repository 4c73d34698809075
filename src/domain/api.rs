//! An api: one monetized API of the provider, with its recording policy.

use super::FieldError;
use super::ids::Key;
use super::policy::RecordingPolicy;
use serde::{Deserialize, Serialize};

/// An api as the provider writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    pub slug: Key,
    pub name: String,
    #[serde(default)]
    pub recording_policy: RecordingPolicy,
}

impl ApiSpec {
    pub fn validate(&self) -> Result<(), FieldError> {
        non_empty_name(&self.name)
    }
}

/// Names are shown on invoices, so they must say something.
pub fn non_empty_name(name: &str) -> Result<(), FieldError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(FieldError::new("name", "must be 1 to 200 characters"));
    }
    Ok(())
}
