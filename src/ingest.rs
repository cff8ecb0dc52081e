//! From an Okta delivery to store records: parse the envelope, then each event on its own, so
//! one malformed event is quarantined without rejecting its neighbours. Shared by the hook and
//! the System Log backfill, so both store the same thing and collapse duplicates by uuid.

use serde_json::Value;

use crate::classify;
use crate::okta::event::{Envelope, LogEvent, EMAIL_DELIVERY};
use crate::okta::recipient::find_recipient;
use crate::okta::DeliveryStatus;
use crate::state::EventKey;
use crate::store::{NewEvent, QuarantineItem};

/// Okta logs this when it holds back an email because the address is on the bounce list: the
/// same evidence as SendGrid's `dropped`.
pub const BOUNCE_BLOCKED_EMAIL: &str = "system.email.bounce.blocked_email";

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// A delivery that could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    pub field: String,
    pub detail: String,
}

/// The events of one delivery, sorted into what to store, what to quarantine and what to skip.
#[derive(Debug, Default)]
pub struct Sorted {
    pub events: Vec<NewEvent>,
    pub quarantine: Vec<QuarantineItem>,
    /// Events of other types, counted and not stored.
    pub ignored: usize,
}

/// Parses an event-hook envelope.
pub fn parse_envelope(body: &[u8]) -> Result<(Envelope, Sorted), EnvelopeError> {
    // serde_json rejects a UTF-8 byte order mark, which some tools and proxies prepend.
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    let value: Value = serde_json::from_slice(body).map_err(|err| EnvelopeError {
        field: "body".into(),
        detail: format!("the body is not valid JSON: {err}"),
    })?;
    let Some(object) = value.as_object() else {
        return Err(EnvelopeError {
            field: "body".into(),
            detail: "the body must be a JSON object".into(),
        });
    };
    let events_ok = object
        .get("data")
        .and_then(|data| data.get("events"))
        .is_some_and(Value::is_array);
    if !events_ok {
        return Err(EnvelopeError {
            field: "data.events".into(),
            detail: "data.events must be an array of events".into(),
        });
    }
    let envelope: Envelope = serde_json::from_value(value).map_err(|err| EnvelopeError {
        field: "body".into(),
        detail: format!("the envelope does not have Okta's event-hook shape: {err}"),
    })?;
    let sorted = sort_events(envelope.data.events.iter());
    Ok((envelope, sorted))
}

/// Sorts raw events (from a hook delivery or a System Log page).
pub fn sort_events<'a>(events: impl Iterator<Item = &'a Value>) -> Sorted {
    let mut sorted = Sorted::default();
    for (index, raw) in events.enumerate() {
        match read_event(raw) {
            Ok(Some(event)) => sorted.events.push(event),
            Ok(None) => sorted.ignored += 1,
            Err((reason, field, detail)) => {
                let event_uuid = raw.get("uuid").and_then(Value::as_str).map(str::to_string);
                tracing::warn!(
                    reason,
                    field,
                    index,
                    uuid = event_uuid.as_deref().unwrap_or("-"),
                    "event quarantined"
                );
                sorted.quarantine.push(QuarantineItem {
                    reason: reason.to_string(),
                    field: Some(format!("data.events[{index}].{field}")),
                    detail,
                    event_uuid,
                    raw: serde_json::to_vec(raw).unwrap_or_default(),
                });
            }
        }
    }
    sorted
}

type Rejection = (&'static str, &'static str, String);

/// Reads one event: `Ok(None)` for a type bouncewatch does not track.
fn read_event(raw: &Value) -> Result<Option<NewEvent>, Rejection> {
    let event_type = raw.get("eventType").and_then(Value::as_str);
    match event_type {
        Some(EMAIL_DELIVERY) | Some(BOUNCE_BLOCKED_EMAIL) => {}
        Some(_) => return Ok(None),
        None => {
            return Err((
                "malformed_event",
                "eventType",
                "eventType is missing or not a string".into(),
            ))
        }
    }
    for field in ["uuid", "published"] {
        if !raw.get(field).is_some_and(Value::is_string) {
            return Err((
                "malformed_event",
                field,
                format!("{field} is missing or not a string"),
            ));
        }
    }
    let event: LogEvent = serde_json::from_value(raw.clone()).map_err(|err| {
        (
            "malformed_event",
            "event",
            format!("the event does not have the LogEvent shape: {err}"),
        )
    })?;
    if event.uuid.trim().is_empty() || event.uuid.len() > 128 {
        return Err((
            "malformed_event",
            "uuid",
            "uuid must be 1 to 128 characters".into(),
        ));
    }
    let Some(address) = find_recipient(&event) else {
        return Err((
            "missing_recipient",
            "target",
            "no target or debugData field holds a valid recipient address".into(),
        ));
    };

    let status = if event.event_type == BOUNCE_BLOCKED_EMAIL {
        DeliveryStatus::Dropped
    } else {
        event.status()
    };
    let message = event.provider_message().map(str::to_string);
    let verdict = classify::classify(status, message.as_deref());
    // The event as Okta sent it: `LogEvent` types only the fields bouncewatch reads, so
    // serializing it would drop the actor, severity, transaction and the rest.
    let stored = serde_json::to_vec(raw).expect("a JSON value serializes");
    Ok(Some(NewEvent {
        key: EventKey {
            published: event.published,
            uuid: event.uuid.clone(),
        },
        address,
        status,
        verdict,
        message,
        reason: event.status_word().map(str::to_string),
        stored,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(events: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"eventType": "com.okta.event_hook", "eventId": "e1", "data": {"events": events}})).unwrap()
    }

    fn delivery(uuid: &str, reason: &str, address: &str) -> Value {
        json!({"uuid": uuid, "published": "2025-01-15T10:00:00.000Z", "eventType": "system.email.delivery",
               "outcome": {"result": "FAILURE", "reason": reason},
               "target": [{"id": "00u1", "type": "User", "alternateId": address}],
               "debugContext": {"debugData": {"providerMessage": "550 5.1.1 user unknown"}}})
    }

    #[test]
    fn mixed_batch_keeps_good_events() {
        let body = envelope(json!([
            delivery("u1", "bounce", "a@example.com"),
            {"uuid": "u2", "published": "2025-01-15T10:00:00Z", "eventType": "user.session.start"},
            {"uuid": "u3", "published": "2025-01-15T10:00:00Z", "eventType": "system.email.delivery", "debugContext": null, "target": null},
            delivery("u4", "DEFERRED", "b@example.com"),
        ]));
        let (_, sorted) = parse_envelope(&body).unwrap();
        assert_eq!(sorted.events.len(), 2);
        assert_eq!(sorted.ignored, 1);
        assert_eq!(sorted.quarantine.len(), 1);
        assert_eq!(sorted.quarantine[0].reason, "missing_recipient");
        assert_eq!(sorted.quarantine[0].event_uuid.as_deref(), Some("u3"));
    }

    #[test]
    fn malformed_envelope_names_field() {
        assert_eq!(parse_envelope(b"{oops").unwrap_err().field, "body");
        assert_eq!(parse_envelope(b"[]").unwrap_err().field, "body");
        assert_eq!(
            parse_envelope(br#"{"data": {"events": 3}}"#)
                .unwrap_err()
                .field,
            "data.events"
        );
    }

    #[test]
    fn stored_event_keeps_unread_fields() {
        let mut event = delivery("u1", "bounce", "a@example.com");
        event["actor"] = json!({"type": "SystemPrincipal", "displayName": "Okta System"});
        event["target"][0]["detailEntry"] = json!({"note": "kept"});
        let (_, sorted) = parse_envelope(&envelope(json!([event.clone()]))).unwrap();
        let stored: Value = serde_json::from_slice(&sorted.events[0].stored).unwrap();
        assert_eq!(stored, event);
    }

    #[test]
    fn envelope_metadata_of_any_type_is_read() {
        let body = br#"{"eventId": 7, "source": {"a": 1}, "data": {"events": []}}"#;
        let (envelope, _) = parse_envelope(body).unwrap();
        assert_eq!(envelope.event_id.as_deref(), Some("7"));
        assert_eq!(envelope.source.as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let body = b"\xef\xbb\xbf{\"data\": {\"events\": []}}";
        assert!(parse_envelope(body).is_ok());
    }

    #[test]
    fn event_without_published_is_quarantined() {
        let body = envelope(json!([{"uuid": "u1", "eventType": "system.email.delivery"}]));
        let (_, sorted) = parse_envelope(&body).unwrap();
        assert_eq!(
            sorted.quarantine[0].field.as_deref(),
            Some("data.events[0].published")
        );
    }
}
