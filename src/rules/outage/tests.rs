use super::*;

fn t() -> Thresholds {
    Thresholds {
        min_failures: 3,
        min_addresses: 2,
        window: Duration::minutes(60),
        recovery_deliveries: 2,
        volume_threshold: 50,
        min_failure_ratio: 0.2,
    }
}

fn ev(
    minute: i64,
    uuid: &str,
    address: &str,
    status: DeliveryStatus,
    scope: Option<Scope>,
) -> DomainEvent {
    DomainEvent {
        published: "2025-01-15T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + Duration::minutes(minute),
        uuid: uuid.to_string(),
        address: address.to_string(),
        status,
        scope,
    }
}

fn fail(minute: i64, uuid: &str, address: &str) -> DomainEvent {
    ev(
        minute,
        uuid,
        address,
        DeliveryStatus::Bounce,
        Some(Scope::Domain),
    )
}

fn ok(minute: i64, uuid: &str, address: &str) -> DomainEvent {
    ev(minute, uuid, address, DeliveryStatus::Delivered, None)
}

#[test]
fn three_failures_two_addresses_open_outage() {
    let events = [fail(0, "u1", "a"), fail(10, "u2", "b"), fail(20, "u3", "a")];
    let analysis = analyse(&events, &t());
    assert_eq!(analysis.health, Health::Outage);
    assert_eq!(analysis.episodes.len(), 1);
    assert_eq!(analysis.episodes[0].start, events[0].published);
}

#[test]
fn failures_spread_over_more_than_window_do_not() {
    let events = [
        fail(0, "u1", "a"),
        fail(50, "u2", "b"),
        fail(120, "u3", "c"),
    ];
    let analysis = analyse(&events, &t());
    assert_eq!(analysis.health, Health::Degraded);
    assert!(analysis.episodes.is_empty());
}

#[test]
fn one_address_alone_is_no_outage() {
    let events = [fail(0, "u1", "a"), fail(1, "u2", "a"), fail(2, "u3", "a")];
    assert!(analyse(&events, &t()).episodes.is_empty());
}

#[test]
fn mailbox_failures_never_count() {
    let events: Vec<_> = (0..10)
        .map(|i| {
            ev(
                i,
                &format!("u{i}"),
                &format!("a{i}"),
                DeliveryStatus::Bounce,
                Some(Scope::Mailbox),
            )
        })
        .collect();
    let analysis = analyse(&events, &t());
    assert_eq!(analysis.health, Health::Healthy);
    assert!(analysis.episodes.is_empty());
}

#[test]
fn two_deliveries_after_last_failure_recover() {
    let events = [
        fail(0, "u1", "a"),
        fail(1, "u2", "b"),
        fail(2, "u3", "c"),
        ok(30, "u4", "d"),
        ok(31, "u5", "d"),
        ok(32, "u6", "e"),
    ];
    let analysis = analyse(&events, &t());
    assert_eq!(analysis.health, Health::Healthy);
    let episode = &analysis.episodes[0];
    assert_eq!(episode.end, Some(events[5].published));
    assert_eq!(episode.recovered_by.as_deref(), Some("deliveries"));
    assert_eq!(
        episode.caused.keys().cloned().collect::<Vec<_>>(),
        vec!["a", "b", "c"]
    );
}

#[test]
fn delivery_before_a_later_failure_does_not_recover() {
    let events = [
        fail(0, "u1", "a"),
        fail(1, "u2", "b"),
        fail(2, "u3", "c"),
        ok(3, "u4", "d"),
        fail(4, "u5", "e"),
        ok(5, "u6", "f"),
    ];
    let analysis = analyse(&events, &t());
    assert_eq!(analysis.health, Health::Outage);
}

#[test]
fn busy_domain_needs_failure_ratio() {
    let mut events: Vec<_> = (0..100)
        .map(|i| ok(i % 50, &format!("d{i:03}"), &format!("x{i}")))
        .collect();
    events.extend([
        fail(51, "f1", "a"),
        fail(52, "f2", "b"),
        fail(53, "f3", "c"),
    ]);
    events.sort_by(|a, b| (a.published, &a.uuid).cmp(&(b.published, &b.uuid)));
    assert!(analyse(&events, &t()).episodes.is_empty());
}

#[test]
fn admin_recovery_closes_outage() {
    let marker = DomainEvent {
        address: String::new(),
        uuid: format!("{ADMIN_RECOVERY_PREFIX}1"),
        ..ok(5, "", "")
    };
    let events = [
        fail(0, "u1", "a"),
        fail(1, "u2", "b"),
        fail(2, "u3", "c"),
        marker,
    ];
    let analysis = analyse(&events, &t());
    assert_eq!(analysis.health, Health::Healthy);
    assert_eq!(analysis.episodes[0].recovered_by.as_deref(), Some("admin"));
}

#[test]
fn dropped_in_episode_is_caused() {
    let events = [
        fail(0, "u1", "a"),
        fail(1, "u2", "b"),
        fail(2, "u3", "c"),
        ev(3, "u4", "z", DeliveryStatus::Dropped, None),
    ];
    let analysis = analyse(&events, &t());
    assert!(analysis.episodes[0].caused.contains_key("z"));
}

#[test]
fn resumed_pass_matches_whole_pass() {
    let events = [
        fail(0, "u1", "a"),
        fail(1, "u2", "b"),
        fail(2, "u3", "c"),
        ok(30, "u4", "d"),
        ok(31, "u5", "e"),
        fail(90, "u6", "a"),
        fail(91, "u7", "b"),
        fail(92, "u8", "f"),
    ];
    let whole = analyse(&events, &t());
    for split in 0..events.len() {
        let mut detector = Detector::default();
        for event in &events[..split] {
            detector.feed(event, &t());
        }
        let mut found = detector.take_analysis(&t()).episodes;
        found.retain(|episode| episode.end.is_some());
        let saved = serde_json::to_string(&detector).unwrap();
        let mut detector: Detector = serde_json::from_str(&saved).unwrap();
        for event in &events[split..] {
            detector.feed(event, &t());
        }
        let rest = detector.take_analysis(&t());
        found.extend(rest.episodes);
        assert_eq!(rest.health, whole.health, "split at {split}");
        assert_eq!(found, whole.episodes, "split at {split}");
    }
}
