//! Okta's event-hook envelope and System Log `LogEvent`, typed only as far as bouncewatch reads
//! them. Every field but `uuid`, `published` and `eventType` may be missing or `null`. Other
//! fields are not kept here: `ingest` stores the event's raw JSON, so it is the one Okta sent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The event type bouncewatch tracks; other types in a delivery are counted and skipped.
pub const EMAIL_DELIVERY: &str = "system.email.delivery";

/// An event-hook delivery: CloudEvents 0.1 naming, events under `data.events`.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// Only logged, so a value of another JSON type is kept as its JSON text rather than
    /// rejecting a delivery whose events are readable.
    #[serde(rename = "eventId", default, deserialize_with = "text_of_any")]
    pub event_id: Option<String>,
    #[serde(default, deserialize_with = "text_of_any")]
    pub source: Option<String>,
    pub data: EnvelopeData,
}

/// Reads a string as itself, `null` as `None`, and any other JSON value as its JSON text.
fn text_of_any<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = Value::deserialize(deserializer)?;
    Ok(match value {
        Value::Null => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    })
}

#[derive(Debug, Deserialize)]
pub struct EnvelopeData {
    /// Kept as raw values so one malformed event can be quarantined without rejecting the rest.
    pub events: Vec<Value>,
}

/// One System Log event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEvent {
    pub uuid: String,
    pub published: DateTime<Utc>,
    #[serde(rename = "eventType")]
    pub event_type: String,
    #[serde(
        rename = "displayMessage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub display_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<Target>>,
    #[serde(
        rename = "debugContext",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_context: Option<DebugContext>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A `target[]` entry: `{id, type, alternateId?, displayName?, detailEntry?}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Target {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(rename = "alternateId", default)]
    pub alternate_id: Option<String>,
    #[serde(rename = "displayName", default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DebugContext {
    #[serde(rename = "debugData", default)]
    pub debug_data: Option<Map<String, Value>>,
}

/// What SendGrid decided for one message, as Okta reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Delivered,
    Bounce,
    Blocked,
    Deferred,
    /// SendGrid did not try because the address is already suppressed.
    Dropped,
    /// A status word bouncewatch does not know; never a reason to clear.
    Unknown,
}

impl DeliveryStatus {
    /// Maps one status word, in any letter case, as Okta and SendGrid spell them.
    pub fn from_word(word: &str) -> Option<DeliveryStatus> {
        let status = match word.trim().to_ascii_lowercase().as_str() {
            "delivered" | "delivery" | "success" | "sent" => DeliveryStatus::Delivered,
            "bounce" | "bounced" | "hard_bounce" | "soft_bounce" => DeliveryStatus::Bounce,
            "blocked" | "block" => DeliveryStatus::Blocked,
            "deferred" | "deferral" => DeliveryStatus::Deferred,
            "dropped" | "drop" => DeliveryStatus::Dropped,
            _ => return None,
        };
        Some(status)
    }

    pub fn is_failure(self) -> bool {
        !matches!(self, DeliveryStatus::Delivered)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Bounce => "bounce",
            DeliveryStatus::Blocked => "blocked",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Dropped => "dropped",
            DeliveryStatus::Unknown => "unknown",
        }
    }
}

impl LogEvent {
    fn debug_string(&self, keys: &[&str]) -> Option<&str> {
        let data = self.debug_context.as_ref()?.debug_data.as_ref()?;
        keys.iter()
            .find_map(|key| data.get(*key).and_then(Value::as_str))
            .filter(|value| !value.trim().is_empty())
    }

    /// The SMTP reply or SendGrid reason, from `debugData.providerMessage` in either spelling.
    pub fn provider_message(&self) -> Option<&str> {
        self.debug_string(&["providerMessage", "ProviderMessage", "provider_message"])
    }

    /// The delivery status, read in this order: `outcome.reason`, `debugData.deliveryStatus`,
    /// the word after the colon in `displayMessage`, then `outcome.result` (`SUCCESS` means
    /// delivered, and a non-standard `DEFERRED` result is read as deferred). A failure that
    /// names no known status is `Unknown`.
    pub fn status(&self) -> DeliveryStatus {
        let outcome = self.outcome.as_ref();
        let display_word = self
            .display_message
            .as_deref()
            .and_then(|text| text.rsplit_once(':'))
            .map(|(_, word)| word);
        let candidates = [
            outcome.and_then(|outcome| outcome.reason.as_deref()),
            self.debug_string(&["deliveryStatus", "DeliveryStatus", "status"]),
            display_word,
            outcome.and_then(|outcome| outcome.result.as_deref()),
        ];
        let status = candidates
            .into_iter()
            .flatten()
            .find_map(DeliveryStatus::from_word);
        status.unwrap_or(DeliveryStatus::Unknown)
    }

    /// The status word as Okta sent it, kept for display and for unknown values.
    pub fn status_word(&self) -> Option<&str> {
        let outcome = self.outcome.as_ref()?;
        outcome.reason.as_deref().or(outcome.result.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event_with(outcome: Value, debug: Value, display: &str) -> LogEvent {
        serde_json::from_value(json!({
            "uuid": "u1", "published": "2025-01-15T10:00:00.000Z",
            "eventType": EMAIL_DELIVERY, "displayMessage": display,
            "outcome": outcome, "debugContext": {"debugData": debug}
        }))
        .unwrap()
    }

    #[test]
    fn status_reads_reason_in_any_case() {
        let cases = [
            (
                json!({"result": "FAILURE", "reason": "DEFERRED"}),
                DeliveryStatus::Deferred,
            ),
            (
                json!({"result": "FAILURE", "reason": "bounce"}),
                DeliveryStatus::Bounce,
            ),
            (
                json!({"result": "FAILURE", "reason": "Bounce"}),
                DeliveryStatus::Bounce,
            ),
            (
                json!({"result": "FAILURE", "reason": "dropped"}),
                DeliveryStatus::Dropped,
            ),
            (json!({"result": "SUCCESS"}), DeliveryStatus::Delivered),
            (json!({"result": "DEFERRED"}), DeliveryStatus::Deferred),
            (
                json!({"result": "FAILURE", "reason": "SPAMREPORT"}),
                DeliveryStatus::Unknown,
            ),
        ];
        for (outcome, expected) in cases {
            let event = event_with(outcome.clone(), json!({}), "");
            assert_eq!(event.status(), expected, "outcome {outcome}");
        }
    }

    #[test]
    fn status_falls_back_to_debug_data_and_display() {
        let event = event_with(
            json!({"result": "FAILURE"}),
            json!({"deliveryStatus": "BLOCKED"}),
            "",
        );
        assert_eq!(event.status(), DeliveryStatus::Blocked);
        let event = event_with(json!(null), json!({}), "Email delivery FAILURE: bounce");
        assert_eq!(event.status(), DeliveryStatus::Bounce);
    }

    #[test]
    fn provider_message_accepts_both_spellings() {
        let event = event_with(json!({}), json!({"ProviderMessage": "451 try later"}), "");
        assert_eq!(event.provider_message(), Some("451 try later"));
    }
}
