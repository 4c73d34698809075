//! All integration tests, linked into one binary. Each runs on SQLite and on PostgreSQL.

mod helpers;

mod admin_auth;
mod apis;
mod catalog_file;
mod crash;
mod events;
mod health;
mod preview;
mod serve;
mod subscriptions;
mod tiers;
