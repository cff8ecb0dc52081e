//! Signed notifications to subscribers: the Standard Webhooks signature, the notification body,
//! subscriptions, destination safety, one delivery attempt, the retry schedule and circuit
//! breakers. The durable outbox that drives them lives elsewhere, and nothing here touches the
//! store.
//!
//! Delivery is at least once: receivers drop duplicates by `webhook-id`, which stays the same
//! on every attempt of one notification.

pub mod backoff;
pub mod breaker;
pub mod dispatch;
pub mod notification;
pub mod send;
pub mod sign;
pub mod ssrf;
pub mod subscription;

pub use notification::{Notification, NotificationKind};
pub use send::{deliver_once, AttemptOutcome, AttemptResult};
pub use sign::WebhookSecret;
pub use subscription::Subscription;
