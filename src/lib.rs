//! bouncewatch receives Okta's `system.email.delivery` events through an event hook, keeps
//! per-address and per-domain delivery state in an embedded sled store, and clears the bounces
//! that a recipient domain's outage caused once the domain has recovered.
//!
//! The parts:
//! - [`http`]: the axum routers (the Okta hook, the admin API, health and metrics).
//! - [`okta`]: Okta's payload types and the Management API client.
//! - [`store`]: the only code that knows sled trees, keys and flushing.
//! - [`classify`]: SMTP replies to verdicts.
//! - [`rules`]: domain health, outage recovery and the clear queue.
//! - [`forward`]: signed notifications to subscribers through a durable outbox.
//! - [`config`] and [`telemetry`]: settings, logs and metrics.

pub mod address;
pub mod background;
pub mod classify;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod forward;
pub mod hook_health;
pub mod http;
pub mod ingest;
pub mod okta;
pub mod poller;
pub mod rules;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
