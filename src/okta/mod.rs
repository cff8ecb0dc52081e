//! Everything that speaks Okta: the event-hook payload types, where a delivery event keeps
//! its recipient and status, and the Management API client.

pub mod event;
pub mod recipient;

pub use event::{DeliveryStatus, Envelope, LogEvent};
