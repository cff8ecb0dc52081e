use chrono::TimeZone;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn create(body: serde_json::Value) -> Result<Subscription, ValidationError> {
    let request: CreateSubscription = serde_json::from_value(body).unwrap();
    request.into_subscription(false, now()).map(|(sub, _)| sub)
}

fn field_of(result: Result<Subscription, ValidationError>) -> &'static str {
    result.unwrap_err().field
}

#[test]
fn create_with_only_url_uses_defaults() {
    let request = CreateSubscription {
        url: "https://hooks.example.com/in".to_string(),
        ..CreateSubscription::default()
    };
    let (sub, created) = request.into_subscription(false, now()).unwrap();
    assert!(sub.id.starts_with("sub_"));
    assert!(sub.enabled);
    assert!(sub.kinds.is_empty());
    assert!(sub.domains.is_empty());
    assert_eq!(sub.secrets.len(), 1);
    assert_eq!(created.secret, sub.secrets[0].secret.expose());
    assert_eq!(created.subscription, sub.view());
}

#[test]
fn create_keeps_given_secret() {
    let secret = WebhookSecret::generate().expose();
    let sub = create(json!({"url": "https://hooks.example.com/", "secret": secret})).unwrap();
    assert_eq!(sub.secrets[0].secret.expose(), secret);
}

#[test]
fn create_errors_name_the_field() {
    let url = "https://hooks.example.com/";
    assert_eq!(
        field_of(create(json!({"url": "http://hooks.example.com/"}))),
        "url"
    );
    assert_eq!(field_of(create(json!({"url": "https://10.0.0.5/"}))), "url");
    assert_eq!(
        field_of(create(json!({"url": url, "secret": "abc"}))),
        "secret"
    );
    assert_eq!(
        field_of(create(json!({"url": url, "kinds": ["nope"]}))),
        "kinds"
    );
    assert_eq!(
        field_of(create(json!({"url": url, "domains": ["no_dot"]}))),
        "domains"
    );
    let digest = json!({"url": url, "digest": {"window_secs": 5}});
    assert_eq!(field_of(create(digest)), "digest");
}

#[test]
fn kinds_error_says_why() {
    let error = create(json!({"url": "https://a.example/", "kinds": ["nope"]})).unwrap_err();
    assert!(error.reason.contains("\"nope\""), "{}", error.reason);
    assert!(error.reason.contains("address.bounced"), "{}", error.reason);
}

#[test]
fn unknown_field_is_rejected() {
    let result = serde_json::from_value::<CreateSubscription>(json!({"url": "x", "colour": 1}));
    assert!(result.is_err());
}

#[test]
fn domains_are_normalised() {
    let body = json!({"url": "https://a.example/", "domains": ["Bücher.Example", "xn--bcher-kva.example"]});
    let sub = create(body).unwrap();
    assert_eq!(sub.domains, vec!["xn--bcher-kva.example".to_string()]);
}

#[test]
fn wants_applies_filters() {
    let body = json!({
        "url": "https://a.example/",
        "kinds": ["address.bounced"],
        "domains": ["example.com"],
    });
    let mut sub = create(body).unwrap();
    let bounced = NotificationKind::AddressBounced;
    assert!(sub.wants(bounced, Some("example.com")));
    assert!(!sub.wants(bounced, Some("other.com")));
    assert!(!sub.wants(NotificationKind::AddressCleared, Some("example.com")));
    assert!(sub.wants(bounced, None));
    assert!(!sub.wants(NotificationKind::Digest, Some("example.com")));

    sub.digest = Some(DigestSettings { window_secs: 300 });
    assert!(sub.wants(NotificationKind::Digest, Some("example.com")));

    sub.enabled = false;
    assert!(!sub.wants(bounced, Some("example.com")));
}

#[test]
fn view_never_contains_secret() {
    let sub = create(json!({"url": "https://a.example/"})).unwrap();
    let secret = sub.secrets[0].secret.expose();
    let view = serde_json::to_string(&sub.view()).unwrap();
    assert!(!view.contains(&secret));
    assert!(!view.contains("secret"));
}

#[test]
fn stored_form_round_trips() {
    let sub = create(json!({"url": "https://a.example/", "digest": {"window_secs": 600}})).unwrap();
    let stored = serde_json::to_vec(&sub).unwrap();
    let loaded: Subscription = serde_json::from_slice(&stored).unwrap();
    assert_eq!(loaded, sub);
}

#[test]
fn patch_secret_rotates_with_grace() {
    let sub = create(json!({"url": "https://a.example/"})).unwrap();
    let old = sub.secrets[0].secret.clone();
    let new = WebhookSecret::generate();
    let patch = UpdateSubscription {
        secret: Some(new.expose()),
        ..UpdateSubscription::default()
    };
    let updated = patch
        .apply(&sub, false, now(), DEFAULT_ROTATION_GRACE)
        .unwrap();

    assert_eq!(updated.secrets[0].secret, new);
    assert_eq!(updated.secrets[0].expires_at, None);
    assert_eq!(updated.secrets[1].secret, old);
    assert_eq!(
        updated.secrets[1].expires_at,
        Some(now() + Duration::hours(24))
    );
    assert_eq!(updated.active_secrets(now()), vec![new.clone(), old]);
    assert_eq!(
        updated.active_secrets(now() + Duration::hours(25)),
        vec![new]
    );
}

#[test]
fn rotation_caps_secret_count() {
    let mut sub = create(json!({"url": "https://a.example/"})).unwrap();
    for minute in 0..10 {
        let patch = UpdateSubscription {
            secret: Some(WebhookSecret::generate().expose()),
            ..UpdateSubscription::default()
        };
        let at = now() + Duration::minutes(minute);
        sub = patch
            .apply(&sub, false, at, DEFAULT_ROTATION_GRACE)
            .unwrap();
    }
    assert_eq!(sub.secrets.len(), MAX_SECRETS);
}

#[test]
fn patch_error_leaves_other_fields() {
    let sub = create(json!({"url": "https://a.example/"})).unwrap();
    let patch: UpdateSubscription =
        serde_json::from_value(json!({"enabled": false, "kinds": ["bogus"]})).unwrap();
    let error = patch
        .apply(&sub, false, now(), DEFAULT_ROTATION_GRACE)
        .unwrap_err();
    assert_eq!(error.field, "kinds");
    assert!(sub.enabled);
}

#[test]
fn patch_null_digest_turns_digest_off() {
    let sub = create(json!({"url": "https://a.example/", "digest": {"window_secs": 600}})).unwrap();
    let keep: UpdateSubscription = serde_json::from_value(json!({"enabled": true})).unwrap();
    let kept = keep
        .apply(&sub, false, now(), DEFAULT_ROTATION_GRACE)
        .unwrap();
    assert_eq!(kept.digest, Some(DigestSettings { window_secs: 600 }));

    let clear: UpdateSubscription = serde_json::from_value(json!({"digest": null})).unwrap();
    let cleared = clear
        .apply(&sub, false, now(), DEFAULT_ROTATION_GRACE)
        .unwrap();
    assert_eq!(cleared.digest, None);
}
