//! Where a `system.email.delivery` event keeps its recipient. Okta does not document it, and
//! the layouts seen differ, so every known variant is read here and nowhere else:
//!
//! 1. each `target[]` entry whose `type` names a recipient (`User`, `email`, `EmailAddress`,
//!    `EmailList`), trying `alternateId`, then `id`, then `displayName`;
//! 2. then any other target, in the same field order;
//! 3. then `debugData` keys whose names say they hold the recipient.
//!
//! The first value that parses as an address wins. The actor is never read, and neither is
//! free text such as `providerMessage`, which can quote other addresses.

use serde_json::Value;

use super::event::{LogEvent, Target};
use crate::address::EmailAddress;

/// Target types that carry the recipient, compared without regard to case.
const RECIPIENT_TARGET_TYPES: &[&str] = &["user", "email", "emailaddress", "emaillist"];

/// `debugData` keys that name the recipient, in the order they are tried.
const RECIPIENT_DEBUG_KEYS: &[&str] = &[
    "recipient",
    "recipientEmail",
    "recipientAddress",
    "toAddress",
    "email",
    "emailAddress",
];

/// Returns the recipient of a delivery event, or `None` when no documented place holds one.
pub fn find_recipient(event: &LogEvent) -> Option<EmailAddress> {
    let targets: &[Target] = event.target.as_deref().unwrap_or(&[]);
    let is_recipient_type = |target: &&Target| {
        target.kind.as_deref().is_some_and(|kind| {
            RECIPIENT_TARGET_TYPES.contains(&kind.to_ascii_lowercase().as_str())
        })
    };
    let preferred = targets.iter().filter(is_recipient_type);
    let others = targets.iter().filter(|target| !is_recipient_type(target));
    for target in preferred.chain(others) {
        let fields = [&target.alternate_id, &target.id, &target.display_name];
        if let Some(address) = fields.into_iter().flatten().find_map(|value| parse(value)) {
            return Some(address);
        }
    }

    let debug = event.debug_context.as_ref()?.debug_data.as_ref()?;
    RECIPIENT_DEBUG_KEYS
        .iter()
        .filter_map(|key| debug.get(*key).and_then(Value::as_str))
        .find_map(parse)
}

fn parse(value: &str) -> Option<EmailAddress> {
    EmailAddress::parse(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(target: Value, debug: Value) -> LogEvent {
        serde_json::from_value(json!({
            "uuid": "u1", "published": "2025-01-15T10:00:00Z", "eventType": "system.email.delivery",
            "actor": {"type": "User", "alternateId": "admin@example.com"},
            "target": target, "debugContext": {"debugData": debug}
        }))
        .unwrap()
    }

    fn key(event: &LogEvent) -> Option<String> {
        find_recipient(event).map(|address| address.key().to_string())
    }

    #[test]
    fn user_target_alternate_id() {
        let e = event(
            json!([{"id": "00u1", "type": "User", "alternateId": "A@Example.com", "displayName": "A"}]),
            json!({}),
        );
        assert_eq!(key(&e).as_deref(), Some("a@example.com"));
    }

    #[test]
    fn email_target_id_and_display_name() {
        let e = event(
            json!([{"id": "b@example.com", "type": "email", "displayName": "b@example.com"}]),
            json!({}),
        );
        assert_eq!(key(&e).as_deref(), Some("b@example.com"));
        let e = event(
            json!([{"id": "x1", "type": "email", "displayName": "c@example.com"}]),
            json!({}),
        );
        assert_eq!(key(&e).as_deref(), Some("c@example.com"));
    }

    #[test]
    fn group_target_and_unknown_alternate_id_skipped() {
        let e = event(
            json!([
                {"id": "00g1", "type": "UserGroup", "alternateId": "unknown", "displayName": "contractors"},
                {"id": "00u1", "type": "User", "alternateId": "Jane.Doe+okta@Example.COM", "displayName": "Jane Doe"}
            ]),
            json!({"providerMessage": "550 5.1.1 forwarded copy to old-box@example.org rejected"}),
        );
        let address = find_recipient(&e).unwrap();
        assert_eq!(address.key(), "jane.doe+okta@example.com");
        assert_eq!(address.raw(), "Jane.Doe+okta@Example.COM");
    }

    #[test]
    fn debug_data_recipient_key() {
        let e = event(json!(null), json!({"recipient": "d@example.com"}));
        assert_eq!(key(&e).as_deref(), Some("d@example.com"));
    }

    #[test]
    fn never_reads_actor_or_provider_message() {
        for target in [
            json!(null),
            json!([]),
            json!([{"id": "00u1", "type": "User", "alternateId": "unknown"}]),
        ] {
            let e = event(
                target,
                json!({"providerMessage": "550 rejected old-box@example.org"}),
            );
            assert_eq!(key(&e), None);
        }
    }
}
