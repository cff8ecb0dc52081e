//! The notifications bouncewatch sends to subscribers and their JSON body.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `type` of a notification, as receivers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NotificationKind {
    #[serde(rename = "email.delivery")]
    EmailDelivery,
    #[serde(rename = "address.bounced")]
    AddressBounced,
    #[serde(rename = "address.cleared")]
    AddressCleared,
    #[serde(rename = "address.clear_failed")]
    AddressClearFailed,
    #[serde(rename = "domain.outage_started")]
    DomainOutageStarted,
    #[serde(rename = "domain.recovered")]
    DomainRecovered,
    #[serde(rename = "alert.clear_cap_reached")]
    AlertClearCapReached,
    #[serde(rename = "alert.okta_forbidden")]
    AlertOktaForbidden,
    #[serde(rename = "hook.unhealthy")]
    HookUnhealthy,
    #[serde(rename = "alert.dead_letters")]
    AlertDeadLetters,
    /// Sent by the admin API's test endpoint.
    #[serde(rename = "test")]
    Test,
    /// A batch of address-level notifications for one domain.
    #[serde(rename = "digest")]
    Digest,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 12] = [
        NotificationKind::EmailDelivery,
        NotificationKind::AddressBounced,
        NotificationKind::AddressCleared,
        NotificationKind::AddressClearFailed,
        NotificationKind::DomainOutageStarted,
        NotificationKind::DomainRecovered,
        NotificationKind::AlertClearCapReached,
        NotificationKind::AlertOktaForbidden,
        NotificationKind::HookUnhealthy,
        NotificationKind::AlertDeadLetters,
        NotificationKind::Test,
        NotificationKind::Digest,
    ];

    /// Returns the wire name, such as `address.bounced`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::EmailDelivery => "email.delivery",
            NotificationKind::AddressBounced => "address.bounced",
            NotificationKind::AddressCleared => "address.cleared",
            NotificationKind::AddressClearFailed => "address.clear_failed",
            NotificationKind::DomainOutageStarted => "domain.outage_started",
            NotificationKind::DomainRecovered => "domain.recovered",
            NotificationKind::AlertClearCapReached => "alert.clear_cap_reached",
            NotificationKind::AlertOktaForbidden => "alert.okta_forbidden",
            NotificationKind::HookUnhealthy => "hook.unhealthy",
            NotificationKind::AlertDeadLetters => "alert.dead_letters",
            NotificationKind::Test => "test",
            NotificationKind::Digest => "digest",
        }
    }

    /// Returns `true` for kinds about one address, which a subscription with digest settings receives
    /// it batched into a `digest` notification.
    pub fn is_address_level(self) -> bool {
        matches!(
            self,
            NotificationKind::EmailDelivery
                | NotificationKind::AddressBounced
                | NotificationKind::AddressCleared
                | NotificationKind::AddressClearFailed
        )
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that names no notification kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown notification kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for NotificationKind {
    type Err = UnknownKind;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        NotificationKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == input)
            .ok_or_else(|| UnknownKind(input.to_string()))
    }
}

/// One notification for one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The `webhook-id`: the same on every attempt and after restarts, so receivers can drop
    /// duplicates. See [`Notification::webhook_id`].
    pub id: String,
    pub kind: NotificationKind,
    /// When the event happened or the decision was made, not when the notification is sent.
    pub timestamp: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// The JSON body with its keys in the order receivers see them.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: NotificationKind,
    timestamp: String,
    data: &'a serde_json::Value,
}

impl Notification {
    /// Creates a notification whose id is derived from its cause and the subscription.
    pub fn new(
        kind: NotificationKind,
        cause_id: &str,
        subscription_id: &str,
        timestamp: DateTime<Utc>,
        data: serde_json::Value,
    ) -> Notification {
        Notification {
            id: Notification::webhook_id(cause_id, subscription_id),
            kind,
            timestamp,
            data,
        }
    }

    /// Derives a stable `webhook-id`: `msg_` and 32 hex digits of the SHA-256 of the cause (an
    /// Okta event uuid or a decision id) and the subscription id. One cause sent to two
    /// subscriptions gets two ids, and a retry or a restart gets the same one.
    pub fn webhook_id(cause_id: &str, subscription_id: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(cause_id.as_bytes());
        // A NUL separator keeps ("ab", "c") and ("a", "bc") apart.
        hasher.update([0u8]);
        hasher.update(subscription_id.as_bytes());
        let digest = hasher.finalize();
        format!("msg_{}", hex::encode(&digest[..16]))
    }

    /// Serialises the body `{"type", "timestamp", "data"}` with an RFC 3339 timestamp in UTC
    /// to millisecond precision. Sign and send these same bytes.
    pub fn to_body(&self) -> Bytes {
        let body = Body {
            kind: self.kind,
            timestamp: self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            data: &self.data,
        };
        let bytes = serde_json::to_vec(&body).expect("a JSON value always serialises");
        Bytes::from(bytes)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    #[test]
    fn kind_serde_uses_wire_names() {
        for kind in NotificationKind::ALL {
            let encoded = serde_json::to_string(&kind).unwrap();
            assert_eq!(encoded, format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.as_str().parse::<NotificationKind>(), Ok(kind));
        }
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let result = "address.deleted".parse::<NotificationKind>();
        assert_eq!(result, Err(UnknownKind("address.deleted".to_string())));
    }

    #[test]
    fn body_has_type_timestamp_data() {
        let timestamp = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let data = json!({"display_name": "José Núñez"});
        let notification = Notification::new(
            NotificationKind::AddressBounced,
            "e1",
            "sub_1",
            timestamp,
            data,
        );
        let body = notification.to_body();
        let expected = r#"{"type":"address.bounced","timestamp":"2024-05-01T12:00:00.000Z","data":{"display_name":"José Núñez"}}"#;
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
    }

    #[test]
    fn webhook_id_is_stable_per_cause_and_subscription() {
        let first = Notification::webhook_id("event-1", "sub_a");
        assert_eq!(first, Notification::webhook_id("event-1", "sub_a"));
        assert_ne!(first, Notification::webhook_id("event-1", "sub_b"));
        assert_ne!(first, Notification::webhook_id("event-2", "sub_a"));
        assert!(first.starts_with("msg_"));
        assert_eq!(first.len(), 4 + 32);
    }

    #[test]
    fn address_level_kinds() {
        assert!(NotificationKind::AddressCleared.is_address_level());
        assert!(!NotificationKind::DomainRecovered.is_address_level());
        assert!(!NotificationKind::Digest.is_address_level());
    }
}
