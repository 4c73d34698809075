//! All integration tests, linked into one binary. Each runs on SQLite and on PostgreSQL.
// Tests fail loudly on what they did not expect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod admin_auth;
mod alerts;
mod apis;
mod archive;
mod billing;
mod billing_failures;
mod catalog_file;
mod checkout;
mod conflicts;
mod console;
mod crash;
mod events;
mod ext_authz_grpc;
mod formats;
mod forward_auth;
mod hardening;
mod health;
mod meters;
mod notifications;
mod openapi;
mod operating;
mod otlp;
mod preview;
mod races;
mod real_gateways;
mod revenue;
mod serve;
mod stripe_errors;
mod stripe_mock;
mod stripe_sync;
mod subscriptions;
mod tiers;
mod unmirrored;
mod webhooks;
