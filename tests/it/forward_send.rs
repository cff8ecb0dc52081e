//! `deliver_once` against a real receiver on 127.0.0.1.
//!
//! Every destination here is a loopback server the test started. The refusal tests rely on the
//! guard rejecting loopback before any connection, and the receiver checks that nothing came.

use std::time::{Duration, SystemTime};

use bouncewatch::forward::send::{build_client, BODY_EXCERPT_BYTES, USER_AGENT};
use bouncewatch::forward::ssrf::Destination;
use bouncewatch::forward::subscription::SigningSecret;
use bouncewatch::forward::{
    deliver_once, AttemptResult, Notification, NotificationKind, Subscription, WebhookSecret,
};
use chrono::{TimeZone, Utc};
use serde_json::json;

use crate::support::receiver::{Mode, TestReceiver};

const TIMEOUT: Duration = Duration::from_secs(5);
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

fn subscription(url: String, secret: &WebhookSecret) -> Subscription {
    Subscription {
        id: "sub_test".to_string(),
        url,
        secrets: vec![SigningSecret {
            secret: secret.clone(),
            expires_at: None,
        }],
        kinds: Vec::new(),
        domains: Vec::new(),
        enabled: true,
        digest: None,
        created_at: Utc::now(),
    }
}

fn bounce_notification() -> Notification {
    let data = json!({
        "address": "jose.nunez@example.com",
        "display_name": "José Núñez",
        "status": "Bounce",
    });
    let happened = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    Notification::new(
        NotificationKind::AddressBounced,
        "event-1",
        "sub_test",
        happened,
        data,
    )
}

async fn receiver_and_subscription() -> (TestReceiver, Subscription) {
    let secret = WebhookSecret::generate();
    let receiver = TestReceiver::start(secret.clone()).await;
    let sub = subscription(receiver.url("/hook"), &secret);
    (receiver, sub)
}

#[tokio::test]
async fn non_ascii_body_verifies() {
    let (receiver, sub) = receiver_and_subscription().await;
    let notification = bounce_notification();

    let outcome = deliver_once(&sub, &notification, true, TIMEOUT).await;

    assert_eq!(outcome.result, AttemptResult::Delivered);
    assert_eq!(outcome.status, Some(204));
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert!(request.verified, "signature {:?}", request.signature);
    assert_eq!(request.body, notification.to_body());
    let text = std::str::from_utf8(&request.body).unwrap();
    assert!(text.contains("José Núñez"), "{text}");
    assert_eq!(request.kind.as_deref(), Some("address.bounced"));
    assert_eq!(request.id.as_deref(), Some(notification.id.as_str()));
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(request.user_agent.as_deref(), Some(USER_AGENT));
}

#[tokio::test]
async fn timestamp_header_is_send_time() {
    let (receiver, sub) = receiver_and_subscription().await;
    let before = Utc::now().timestamp();

    deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;

    let after = Utc::now().timestamp();
    let sent: i64 = receiver.received()[0]
        .timestamp
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent >= before, "{sent} < {before}");
    assert!(sent <= after, "{sent} > {after}");
}

#[tokio::test]
async fn rotation_signs_with_both_secrets() {
    let old = WebhookSecret::generate();
    let new = WebhookSecret::generate();
    let receiver = TestReceiver::start(old.clone()).await;
    let mut sub = subscription(receiver.url("/hook"), &new);
    sub.secrets.push(SigningSecret {
        secret: old,
        expires_at: Some(Utc::now() + chrono::Duration::hours(1)),
    });

    let outcome = deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;

    assert_eq!(outcome.result, AttemptResult::Delivered);
    let request = &receiver.received()[0];
    assert_eq!(request.signature.as_deref().unwrap().split(' ').count(), 2);
    assert!(request.verified);
}

#[tokio::test]
async fn retry_keeps_webhook_id() {
    let (receiver, sub) = receiver_and_subscription().await;
    let notification = bounce_notification();

    receiver.set_mode(Mode::Fail);
    let first = deliver_once(&sub, &notification, true, TIMEOUT).await;
    receiver.set_mode(Mode::Accept);
    let second = deliver_once(&sub, &notification, true, TIMEOUT).await;

    assert_eq!(first.result, AttemptResult::Retry { after: None });
    assert_eq!(second.result, AttemptResult::Delivered);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].id, received[1].id);
    assert_eq!(received[0].id.as_deref(), Some(notification.id.as_str()));
    assert!(received[1].verified);
}

#[tokio::test]
async fn server_error_gives_retry() {
    let (receiver, sub) = receiver_and_subscription().await;
    receiver.set_mode(Mode::Fail);

    let outcome = deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;

    assert_eq!(outcome.result, AttemptResult::Retry { after: None });
    assert_eq!(outcome.status, Some(500));
    assert_eq!(outcome.body_excerpt.as_deref(), Some("internal error"));
    assert_eq!(outcome.error, None);
}

#[tokio::test]
async fn gone_gives_gone() {
    let (receiver, sub) = receiver_and_subscription().await;
    receiver.set_mode(Mode::Gone);

    let outcome = deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;

    assert_eq!(outcome.result, AttemptResult::Gone);
    assert_eq!(outcome.status, Some(410));
}

#[tokio::test]
async fn retry_after_seconds_parsed() {
    let (receiver, sub) = receiver_and_subscription().await;
    receiver.set_mode(Mode::RetryAfter {
        status: 429,
        value: "120".to_string(),
    });

    let outcome = deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;

    let expected = Some(Duration::from_secs(120));
    assert_eq!(outcome.result, AttemptResult::Retry { after: expected });
    assert_eq!(outcome.status, Some(429));
}

#[tokio::test]
async fn retry_after_date_parsed() {
    let (receiver, sub) = receiver_and_subscription().await;
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
    receiver.set_mode(Mode::RetryAfter {
        status: 503,
        value: date,
    });

    let outcome = deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;

    let AttemptResult::Retry { after: Some(after) } = outcome.result else {
        panic!("expected a retry with a delay, got {:?}", outcome.result);
    };
    assert!(after <= Duration::from_secs(600), "{after:?}");
    assert!(after >= Duration::from_secs(590), "{after:?}");
    assert_eq!(outcome.status, Some(503));
}

#[tokio::test]
async fn slow_receiver_times_out() {
    let (receiver, sub) = receiver_and_subscription().await;
    receiver.set_mode(Mode::Slow(Duration::from_secs(3)));

    let outcome = deliver_once(&sub, &bounce_notification(), true, SHORT_TIMEOUT).await;

    assert_eq!(outcome.result, AttemptResult::Retry { after: None });
    assert_eq!(outcome.status, None);
    let error = outcome.error.unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    assert!(outcome.latency_ms < 2_000, "{} ms", outcome.latency_ms);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn hanging_receiver_times_out() {
    let (receiver, sub) = receiver_and_subscription().await;
    receiver.set_mode(Mode::Hang);

    let outcome = deliver_once(&sub, &bounce_notification(), true, SHORT_TIMEOUT).await;

    assert_eq!(outcome.result, AttemptResult::Retry { after: None });
    assert_eq!(outcome.status, None);
    assert!(outcome.latency_ms < 2_000, "{} ms", outcome.latency_ms);
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let (receiver, sub) = receiver_and_subscription().await;
    let target = TestReceiver::start(WebhookSecret::generate()).await;
    receiver.set_mode(Mode::Redirect(target.url("/containers/json")));

    let outcome = deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;

    assert_eq!(outcome.result, AttemptResult::Retry { after: None });
    assert_eq!(outcome.status, Some(302));
    assert_eq!(receiver.received().len(), 1);
    assert!(target.received().is_empty());
}

#[tokio::test]
async fn loopback_refused_without_allow_private() {
    let (receiver, _) = receiver_and_subscription().await;
    let secret = WebhookSecret::generate();
    let port = receiver.addr.port();
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("https://127.0.0.1:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        format!("https://[::ffff:127.0.0.1]:{port}/hook"),
        format!("https://0x7f000001:{port}/hook"),
        format!("https://2130706433:{port}/hook"),
    ];

    for url in urls {
        let sub = subscription(url.clone(), &secret);
        let outcome = deliver_once(&sub, &bounce_notification(), false, TIMEOUT).await;
        assert_eq!(outcome.result, AttemptResult::Refused, "{url}");
        assert_eq!(outcome.status, None, "{url}");
        assert!(outcome.error.is_some(), "{url}");
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn loopback_delivered_with_allow_private() {
    let (receiver, sub) = receiver_and_subscription().await;
    let by_name = subscription(
        format!("http://localhost:{}/hook", receiver.addr.port()),
        &sub.secrets[0].secret,
    );

    let by_address = deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;
    let by_name = deliver_once(&by_name, &bounce_notification(), true, TIMEOUT).await;

    assert_eq!(by_address.result, AttemptResult::Delivered);
    assert_eq!(by_name.result, AttemptResult::Delivered);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn body_excerpt_is_bounded() {
    let (receiver, sub) = receiver_and_subscription().await;
    receiver.set_mode(Mode::LargeBody {
        status: 400,
        length: 100_000,
    });

    let outcome = deliver_once(&sub, &bounce_notification(), true, TIMEOUT).await;

    assert_eq!(outcome.result, AttemptResult::Failed);
    let excerpt = outcome.body_excerpt.unwrap();
    assert_eq!(excerpt.len(), BODY_EXCERPT_BYTES);
    assert!(excerpt.bytes().all(|byte| byte == b'x'));
}

#[tokio::test]
async fn pinned_client_uses_checked_address() {
    let (receiver, _) = receiver_and_subscription().await;
    let port = receiver.addr.port();
    // `.invalid` names never resolve (RFC 6761), so a request can only arrive through the pin.
    let destination = Destination::Resolved {
        host: "hooks.invalid".to_string(),
        addrs: vec![receiver.addr],
    };
    let client = build_client(&destination, TIMEOUT).unwrap();

    let pinned = client
        .post(format!("http://hooks.invalid:{port}/pinned"))
        .send()
        .await;
    let unpinned = client
        .post(format!("http://other.invalid:{port}/unpinned"))
        .send()
        .await;

    assert_eq!(pinned.unwrap().status(), 204);
    assert!(unpinned.is_err());
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/pinned".to_string()]);
}
