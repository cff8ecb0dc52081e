//! Notifications to subscribers end to end: the real binary, its outbox and dispatcher, and a
//! verifying receiver on 127.0.0.1.

use std::time::{Duration, Instant};

use bouncewatch::forward::sign::WebhookSecret;
use serde_json::{json, Value};

use crate::support::app::{envelope, event, App, ADMIN_TOKEN};
use crate::support::receiver::{Mode, ReceivedWebhook, TestReceiver};

/// A valid secret: `whsec_` and the base64 of 32 bytes.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+7YJ6wk2GfE=";

async fn start_app() -> App {
    App::start(&[("BOUNCEWATCH_FORWARD_ALLOW_PRIVATE", "true")]).await
}

async fn start_receiver() -> TestReceiver {
    TestReceiver::start(WebhookSecret::parse(SECRET).unwrap()).await
}

/// Creates a subscription for `url` with the test secret and returns its id.
async fn subscribe(app: &App, url: &str, extra: Value) -> String {
    let mut body = json!({"url": url, "secret": SECRET});
    if let Value::Object(fields) = extra {
        for (key, value) in fields {
            body[key] = value;
        }
    }
    let (status, created) = app.admin_post("/api/v1/subscriptions", &body).await;
    assert_eq!(status, 201, "create answered {created}");
    created["id"].as_str().unwrap().to_string()
}

fn bounce(uuid: &str, address: &str) -> Value {
    envelope(vec![event(
        uuid,
        "2025-01-15T10:00:00.000Z",
        "bounce",
        address,
        "550 5.1.1 user unknown",
    )])
}

/// Waits until `check` accepts the receiver's requests, for at most `limit`.
async fn wait_received(
    receiver: &TestReceiver,
    limit: Duration,
    check: impl Fn(&[ReceivedWebhook]) -> bool,
) -> Vec<ReceivedWebhook> {
    let deadline = Instant::now() + limit;
    loop {
        let received = receiver.received();
        if check(&received) {
            return received;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for notifications; received {:?}",
            received.iter().map(|r| &r.kind).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of_kind<'a>(received: &'a [ReceivedWebhook], kind: &str) -> Vec<&'a ReceivedWebhook> {
    received
        .iter()
        .filter(|r| r.kind.as_deref() == Some(kind))
        .collect()
}

fn body_json(webhook: &ReceivedWebhook) -> Value {
    serde_json::from_slice(&webhook.body).unwrap()
}

async fn admin_send(
    app: &App,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bounce_reaches_subscriber_signed() {
    let app = start_app().await;
    let receiver = start_receiver().await;
    subscribe(&app, &receiver.url("/hooks"), json!({})).await;

    let response = app.deliver(&bounce("u1", "Jane.Doe@Example.com")).await;
    assert_eq!(response.status().as_u16(), 200);

    let received = wait_received(&receiver, Duration::from_secs(10), |r| r.len() >= 2).await;
    assert_eq!(received.len(), 2);
    assert!(
        received.iter().all(|r| r.verified),
        "a signature did not verify"
    );
    assert!(received.iter().all(|r| r.path == "/hooks"));

    let delivery = of_kind(&received, "email.delivery");
    let bounced = of_kind(&received, "address.bounced");
    assert_eq!(delivery.len(), 1);
    assert_eq!(bounced.len(), 1);
    assert_ne!(delivery[0].id, bounced[0].id);

    let body = body_json(bounced[0]);
    assert_eq!(body["timestamp"], json!("2025-01-15T10:00:00.000Z"));
    let data = &body["data"];
    assert_eq!(data["address"], json!("jane.doe@example.com"));
    assert_eq!(data["raw_address"], json!("Jane.Doe@Example.com"));
    assert_eq!(data["domain"], json!("example.com"));
    assert_eq!(data["status"], json!("bounce"));
    assert_eq!(data["event_uuid"], json!("u1"));
    assert_eq!(data["version"], json!(1));
    assert!(
        data["verdict"]["scope"].is_string(),
        "verdict {}",
        data["verdict"]
    );
    assert_eq!(data["provider_message"], json!("550 5.1.1 user unknown"));

    app.wait_for("/api/v1/deliveries?state=pending", |body| {
        body["items"] == json!([])
    })
    .await;
}

#[tokio::test]
async fn delivered_event_sends_only_email_delivery() {
    let app = start_app().await;
    let receiver = start_receiver().await;
    subscribe(&app, &receiver.url("/"), json!({})).await;
    let body = envelope(vec![event(
        "d1",
        "2025-01-15T10:00:00.000Z",
        "delivered",
        "a@example.com",
        "250 ok",
    )]);
    assert_eq!(app.deliver(&body).await.status().as_u16(), 200);

    let received = wait_received(&receiver, Duration::from_secs(10), |r| !r.is_empty()).await;
    // Gives a wrongly queued second notification time to arrive.
    tokio::time::sleep(Duration::from_millis(600)).await;
    drop(received);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].kind.as_deref(), Some("email.delivery"));
    assert_eq!(
        body_json(&received[0])["data"]["status"],
        json!("delivered")
    );
}

#[tokio::test]
async fn kind_and_domain_filters_apply() {
    let app = start_app().await;
    let receiver = start_receiver().await;
    let filters = json!({"kinds": ["address.bounced"], "domains": ["Example.COM"]});
    subscribe(&app, &receiver.url("/"), filters).await;

    assert_eq!(
        app.deliver(&bounce("f1", "x@other.org"))
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        app.deliver(&bounce("f2", "y@example.com"))
            .await
            .status()
            .as_u16(),
        200
    );

    let received = wait_received(&receiver, Duration::from_secs(10), |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    drop(received);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert!(received
        .iter()
        .all(|r| r.kind.as_deref() == Some("address.bounced")));
    assert!(received
        .iter()
        .all(|r| body_json(r)["data"]["domain"] == json!("example.com")));
}

#[tokio::test]
async fn retry_keeps_webhook_id() {
    let app = start_app().await;
    let receiver = start_receiver().await;
    receiver.set_mode(Mode::Fail);
    subscribe(
        &app,
        &receiver.url("/"),
        json!({"kinds": ["address.bounced"]}),
    )
    .await;
    assert_eq!(
        app.deliver(&bounce("r1", "a@example.com"))
            .await
            .status()
            .as_u16(),
        200
    );

    let first = wait_received(&receiver, Duration::from_secs(10), |r| !r.is_empty()).await;
    receiver.set_mode(Mode::Accept);

    let pending = app
        .wait_for("/api/v1/deliveries?state=pending", |body| {
            body["items"][0]["attempts"] == json!(1)
        })
        .await;
    let item = &pending["items"][0];
    assert_eq!(item["last_attempt"]["status"], json!(500));
    assert_eq!(item["last_attempt"]["result"], json!("retry"));

    // The first retry waits 5 s, give or take a quarter.
    let received = wait_received(&receiver, Duration::from_secs(15), |r| r.len() >= 2).await;
    assert_eq!(received[1].id, first[0].id);
    assert!(received[1].verified);
    assert_ne!(received[1].timestamp, None);
    app.wait_for("/api/v1/deliveries?state=pending", |body| {
        body["items"] == json!([])
    })
    .await;
}

#[tokio::test]
async fn gone_disables_and_dead_letters() {
    let app = start_app().await;
    let receiver = start_receiver().await;
    receiver.set_mode(Mode::Gone);
    let id = subscribe(&app, &receiver.url("/"), json!({})).await;
    assert_eq!(
        app.deliver(&bounce("g1", "a@example.com"))
            .await
            .status()
            .as_u16(),
        200
    );

    let dead = app
        .wait_for("/api/v1/deliveries?state=dead", |body| {
            body["items"]
                .as_array()
                .is_some_and(|items| items.len() == 2)
        })
        .await;
    for item in dead["items"].as_array().unwrap() {
        assert_eq!(item["state"], json!("dead"));
        assert_eq!(item["subscription_id"], json!(id));
        assert!(item["dead_reason"].as_str().unwrap().contains("410"));
    }
    // Both entries may be in flight together, so the second may get its own 410 before the
    // first one dead-letters it.
    let gone_requests = receiver.received().len();
    assert!((1..=2).contains(&gone_requests), "{gone_requests} requests");

    let (status, subscription) = app.admin_get(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(subscription["enabled"], json!(false));

    // Re-enable, then retry one dead letter alone and the rest in bulk.
    receiver.set_mode(Mode::Accept);
    let path = format!("/api/v1/subscriptions/{id}");
    let (status, _) = admin_send(
        &app,
        reqwest::Method::PATCH,
        &path,
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let first = dead["items"][0]["id"].as_str().unwrap().to_string();
    let (status, retried) = app
        .admin_post(&format!("/api/v1/deliveries/{first}/retry"), &json!({}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(retried["state"], json!("pending"));
    let (status, _) = app
        .admin_post(&format!("/api/v1/deliveries/{first}/retry"), &json!({}))
        .await;
    assert!(
        status == 409 || status == 404,
        "second retry answered {status}"
    );

    let (status, bulk) = app
        .admin_post(
            &format!("/api/v1/subscriptions/{id}/retry-dead"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(bulk["retried"], json!(1));

    let received = wait_received(&receiver, Duration::from_secs(10), |r| {
        r.len() >= gone_requests + 2
    })
    .await;
    assert!(received[gone_requests..].iter().all(|r| r.verified));
    app.wait_for("/api/v1/deliveries?state=dead", |body| {
        body["items"] == json!([])
    })
    .await;
}

#[tokio::test]
async fn pending_survives_kill() {
    let mut app = start_app().await;
    let receiver = start_receiver().await;
    receiver.set_mode(Mode::Fail);
    subscribe(
        &app,
        &receiver.url("/"),
        json!({"kinds": ["address.bounced"]}),
    )
    .await;
    assert_eq!(
        app.deliver(&bounce("k1", "a@example.com"))
            .await
            .status()
            .as_u16(),
        200
    );
    let first = wait_received(&receiver, Duration::from_secs(10), |r| !r.is_empty()).await;

    app.kill();
    receiver.set_mode(Mode::Accept);
    app.spawn().await;

    let received = wait_received(&receiver, Duration::from_secs(15), |r| r.len() >= 2).await;
    assert_eq!(received[1].id, first[0].id);
    assert!(received[1].verified);
}

#[tokio::test]
async fn secret_shown_only_on_create() {
    let app = start_app().await;
    let (status, created) = app
        .admin_post(
            "/api/v1/subscriptions",
            &json!({"url": "http://127.0.0.1:9/hooks"}),
        )
        .await;
    assert_eq!(status, 201);
    let secret = created["secret"].as_str().unwrap();
    assert!(
        WebhookSecret::parse(secret).is_ok(),
        "generated secret {secret}"
    );
    assert_eq!(created["enabled"], json!(true));
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("sub_"));

    let (status, one) = app.admin_get(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one.get("secret"), None);
    assert_eq!(one.get("secrets"), None);
    let (_, list) = app.admin_get("/api/v1/subscriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("whsec_"));

    let path = format!("/api/v1/subscriptions/{id}");
    let rotate = json!({"secret": SECRET});
    let (status, patched) = admin_send(&app, reqwest::Method::PATCH, &path, Some(rotate)).await;
    assert_eq!(status, 200);
    assert!(!patched.to_string().contains("whsec_"));

    let (status, _) = admin_send(&app, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = app.admin_get(&path).await;
    assert_eq!(status, 404);
    let (status, _) = admin_send(&app, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn invalid_fields_are_named() {
    let app = start_app().await;
    let cases = [
        (
            json!({"url": "http://127.0.0.1:9/", "secret": "whsec_c2hvcnQ="}),
            "secret",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "secret": "nope"}),
            "secret",
        ),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "ftp://127.0.0.1/"}), "url"),
        (
            json!({"url": "http://127.0.0.1:9/", "kinds": ["address.deleted"]}),
            "kinds",
        ),
        (json!({"secret": SECRET}), "url"),
    ];
    for (body, field) in cases {
        let (status, error) = app.admin_post("/api/v1/subscriptions", &body).await;
        assert_eq!(status, 400, "{body} answered {error}");
        assert_eq!(error["field"], json!(field), "{body} answered {error}");
        assert_eq!(error["error"], json!("invalid_request"));
    }
}

#[tokio::test]
async fn private_url_rejected_by_default() {
    let app = App::start(&[]).await;
    let (status, error) = app
        .admin_post(
            "/api/v1/subscriptions",
            &json!({"url": "https://127.0.0.1/hooks"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["field"], json!("url"));
    let (status, error) = app
        .admin_post(
            "/api/v1/subscriptions",
            &json!({"url": "http://hooks.example.com/"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["field"], json!("url"));
}

#[tokio::test]
async fn test_endpoint_reports_receiver_answer() {
    let app = start_app().await;
    let receiver = start_receiver().await;
    receiver.set_mode(Mode::LargeBody {
        status: 418,
        length: 10_000,
    });
    let id = subscribe(&app, &receiver.url("/t"), json!({})).await;

    let (status, answer) = app
        .admin_post(&format!("/api/v1/subscriptions/{id}/test"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], json!(418));
    assert_eq!(answer["result"], json!("failed"));
    assert!(answer["body_excerpt"].as_str().unwrap().len() <= 256);
    assert!(answer.get("headers").is_none());

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].kind.as_deref(), Some("test"));
    assert!(received[0].verified);

    let (status, _) = app
        .admin_post("/api/v1/subscriptions/sub_unknown/test", &json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn deliveries_require_admin_token() {
    let app = start_app().await;
    for path in ["/api/v1/deliveries?state=dead", "/api/v1/subscriptions"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    let (status, error) = app.admin_get("/api/v1/deliveries?state=sent").await;
    assert_eq!(status, 400);
    assert_eq!(error["field"], json!("state"));
}
