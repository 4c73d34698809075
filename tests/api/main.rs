//! All integration tests, linked into one binary. Each runs on SQLite and on PostgreSQL.

mod helpers;

mod admin_auth;
mod apis;
mod billing;
mod billing_failures;
mod catalog_file;
mod checkout;
mod crash;
mod events;
mod health;
mod preview;
mod serve;
mod stripe_errors;
mod stripe_mock;
mod stripe_sync;
mod subscriptions;
mod tiers;
mod webhooks;
