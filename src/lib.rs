//! tollbooth: a Stripe-integrated API monetization sidecar.
#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod billing;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod metering;
pub mod notify;
pub mod pricing;
pub mod startup;
pub mod store;
pub mod stripe;
pub mod telemetry;
