//! Business types that can only be built valid: parsing them is validating them.

pub mod alert;
pub mod api;
pub mod field;
pub mod gateway;
pub mod ids;
pub mod ingest;
pub mod meter;
pub mod money;
pub mod policy;
pub mod schema;
pub mod subscriber;
pub mod subscription;
pub mod text;
pub mod tier;
pub mod time;
pub mod units;

pub use field::FieldError;
