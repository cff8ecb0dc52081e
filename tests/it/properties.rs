//! Property tests through the public API: address normalisation, and the ordering rule (any
//! order and any repeats of a set of events give the same address state). The classifier's
//! properties are in src/classify/tests.rs.

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::Value;

use bouncewatch::address::EmailAddress;
use bouncewatch::classify::classify;
use bouncewatch::okta::DeliveryStatus;
use bouncewatch::state::address::Observation;
use bouncewatch::state::{AddressState, EventKey};

use crate::support::app::{envelope, event, App};

/// Unicode domain labels with their IDNA ASCII forms (UTS 46, non-transitional).
const LABELS: &[(&str, &str)] = &[
    ("bücher", "xn--bcher-kva"),
    ("straße", "xn--strae-oqa"),
    ("münchen", "xn--mnchen-3ya"),
    ("例え", "xn--r8jz45g"),
    ("example", "example"),
    ("mail", "mail"),
];

fn local_part() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.+_'&%-]{0,20}"
}

fn domain_labels() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..LABELS.len(), 1..3)
}

fn unicode_and_ascii(labels: &[usize], tld: &str) -> (String, String) {
    let unicode: Vec<&str> = labels.iter().map(|&index| LABELS[index].0).collect();
    let ascii: Vec<&str> = labels.iter().map(|&index| LABELS[index].1).collect();
    (
        format!("{}.{tld}", unicode.join(".")),
        format!("{}.{tld}", ascii.join(".")),
    )
}

proptest! {
    #[test]
    fn normalised_key_is_idempotent(local in local_part(), labels in domain_labels()) {
        let (unicode, _) = unicode_and_ascii(&labels, "example");
        let address = EmailAddress::parse(&format!("{local}@{unicode}")).unwrap();
        let again = EmailAddress::parse(address.key()).unwrap();
        prop_assert_eq!(again.key(), address.key());
    }

    #[test]
    fn key_ignores_ascii_case(local in local_part(), labels in domain_labels()) {
        let (unicode, _) = unicode_and_ascii(&labels, "Example");
        let mixed = format!("{local}@{unicode}");
        let lower = EmailAddress::parse(&mixed.to_lowercase()).unwrap();
        let upper = EmailAddress::parse(&mixed.to_ascii_uppercase()).unwrap();
        let original = EmailAddress::parse(&mixed).unwrap();
        prop_assert_eq!(original.key(), lower.key());
        prop_assert_eq!(original.key(), upper.key());
        prop_assert_eq!(original.raw(), mixed.as_str());
    }

    #[test]
    fn unicode_and_punycode_share_key(local in local_part(), labels in domain_labels()) {
        let (unicode, ascii) = unicode_and_ascii(&labels, "example");
        let from_unicode = EmailAddress::parse(&format!("{local}@{unicode}")).unwrap();
        let from_ascii = EmailAddress::parse(&format!("{local}@{ascii}")).unwrap();
        prop_assert_eq!(from_unicode.key(), from_ascii.key());
        prop_assert_eq!(from_unicode.domain(), ascii.as_str());
    }

    #[test]
    fn parse_never_panics(input in any::<String>()) {
        if let Ok(address) = EmailAddress::parse(&input) {
            prop_assert!(address.key().contains('@'));
            prop_assert!(address.key().is_ascii() || !address.domain().is_empty());
        }
    }
}

/// One distinct event for the ordering property.
#[derive(Debug, Clone)]
struct Sample {
    key: EventKey,
    status: DeliveryStatus,
    message: &'static str,
    raw: &'static str,
}

const MESSAGES: &[(DeliveryStatus, &str)] = &[
    (DeliveryStatus::Delivered, "250 2.0.0 OK"),
    (DeliveryStatus::Bounce, "550 5.1.1 user unknown"),
    (
        DeliveryStatus::Deferred,
        "421 4.4.1 Connection refused by mx.example.net",
    ),
    (DeliveryStatus::Blocked, "554 5.7.1 listed at bl.example"),
    (DeliveryStatus::Dropped, ""),
];
const SPELLINGS: &[&str] = &["Jane@Example.com", "jane@example.com", "JANE@EXAMPLE.COM"];

fn published(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 10, minute, 0).unwrap()
}

/// Up to eight distinct events, several sharing a `published` time so the uuid tie-break
/// matters.
fn samples() -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec((0u32..4, 0..MESSAGES.len(), 0..SPELLINGS.len()), 1..8).prop_map(
        |items| {
            items
                .into_iter()
                .enumerate()
                .map(|(index, (minute, message, spelling))| Sample {
                    key: EventKey {
                        published: published(minute),
                        uuid: format!("u{index:02}"),
                    },
                    status: MESSAGES[message].0,
                    message: MESSAGES[message].1,
                    raw: SPELLINGS[spelling],
                })
                .collect()
        },
    )
}

/// Applies `arrivals` as the store does: the first arrival of a uuid creates or updates the
/// state, later arrivals of it are dropped.
fn fold(arrivals: &[Sample]) -> AddressState {
    let mut seen = HashSet::new();
    let mut state: Option<AddressState> = None;
    for sample in arrivals {
        if !seen.insert(sample.key.uuid.clone()) {
            continue;
        }
        let message = (!sample.message.is_empty()).then_some(sample.message);
        let observation = Observation {
            key: sample.key.clone(),
            status: sample.status,
            verdict: classify(sample.status, message),
            raw_address: sample.raw,
            message,
            reason: Some(sample.status.as_str()),
        };
        let state = state.get_or_insert_with(|| {
            AddressState::new("jane@example.com", "example.com", &observation)
        });
        state.apply(&observation);
    }
    state.expect("at least one event")
}

/// A delivery order of `events`: a permutation with some events repeated.
fn arrivals() -> impl Strategy<Value = (Vec<Sample>, Vec<Sample>)> {
    samples()
        .prop_flat_map(|events| {
            let count = events.len();
            let orders = (
                Just(events.clone()).prop_shuffle(),
                prop::collection::vec(0..count, 0..6),
            );
            (Just(events), orders)
        })
        .prop_map(|(events, (mut shuffled, repeats))| {
            for index in repeats {
                let position = index % (shuffled.len() + 1);
                shuffled.insert(position, events[index].clone());
            }
            (events, shuffled)
        })
}

proptest! {
    #[test]
    fn any_order_gives_same_address_state((events, shuffled) in arrivals()) {
        let in_order = fold(&events);
        let reordered = fold(&shuffled);
        prop_assert_eq!(&reordered.latest, &in_order.latest);
        prop_assert_eq!(reordered.latest_status, in_order.latest_status);
        prop_assert_eq!(&reordered.raw, &in_order.raw);
        prop_assert_eq!(&reordered.history, &in_order.history);
        prop_assert_eq!(reordered.verdict(), in_order.verdict());
        prop_assert_eq!(reordered.status(), in_order.status());
        prop_assert_eq!(reordered, in_order);
    }
}

/// The same events through the real binary in two delivery orders, with duplicates, give the
/// same address document.
#[tokio::test]
async fn store_order_gives_same_document() {
    let events: Vec<Value> = [
        (
            "o1",
            0,
            "bounce",
            "Jane@Example.com",
            "550 5.1.1 user unknown",
        ),
        ("o2", 5, "delivered", "jane@example.com", "250 OK"),
        (
            "o3",
            5,
            "deferred",
            "JANE@example.com",
            "421 4.4.1 connection refused",
        ),
        (
            "o4",
            2,
            "blocked",
            "jane@EXAMPLE.com",
            "554 5.7.1 listed at bl.example",
        ),
        ("o5", 9, "dropped", "Jane@example.com", ""),
        ("o6", 9, "delivered", "jane@example.com", "250 OK"),
    ]
    .iter()
    .map(|(uuid, minute, reason, address, message)| {
        event(
            uuid,
            &format!("2025-03-04T10:{minute:02}:00.000Z"),
            reason,
            address,
            message,
        )
    })
    .collect();
    let first_order = [vec![0, 1], vec![2, 3, 1], vec![4, 5, 0]];
    let second_order = [vec![5], vec![4, 3, 5], vec![2], vec![1, 0, 2]];

    let mut documents = Vec::new();
    for order in [&first_order[..], &second_order[..]] {
        let app = App::start(&[]).await;
        for delivery in order {
            let batch = delivery
                .iter()
                .map(|&index| events[index].clone())
                .collect();
            assert_eq!(app.deliver(&envelope(batch)).await.status().as_u16(), 200);
        }
        let (status, document) = app.admin_get("/api/v1/addresses/jane%40example.com").await;
        assert_eq!(status, 200);
        assert_eq!(document["event_count"], serde_json::json!(6));
        documents.push(document);
    }
    assert_eq!(documents[0], documents[1]);
}
