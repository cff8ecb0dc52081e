//! Everything that speaks Okta: the event-hook payload types, where a delivery event keeps
//! its recipient and status, and the Management API client.

pub mod auth;
pub mod client;
pub mod error;
pub mod event;
pub mod hooks;
pub mod logs;
pub mod rate_limit;
pub mod recipient;
pub mod retry;
pub mod setup;

pub use event::{DeliveryStatus, Envelope, LogEvent};
