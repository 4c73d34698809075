//! All integration tests, linked into one binary. Each runs on SQLite and on PostgreSQL.

mod helpers;

mod admin_auth;
mod apis;
mod billing;
mod catalog_file;
mod checkout;
mod crash;
mod events;
mod hardening;
mod health;
mod openapi;
mod preview;
mod serve;
mod stripe_mock;
mod stripe_sync;
mod subscriptions;
mod tiers;
mod webhooks;
