//! The hook end to end through the real binary.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::app::{envelope, event, event_with_target, App, HOOK_SECRET};

const BOUNCE_MESSAGE: &str = "550 5.1.1 user unknown";
const DELIVERED_MESSAGE: &str = "250 2.0.0 OK";

fn bounce(uuid: &str, published: &str, address: &str) -> Value {
    event(uuid, published, "bounce", address, BOUNCE_MESSAGE)
}

fn delivered(uuid: &str, published: &str, address: &str) -> Value {
    event(uuid, published, "delivered", address, DELIVERED_MESSAGE)
}

fn body_of(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// Returns the status code and the body of a hand-written HTTP/1.1 exchange.
fn split_response(response: &str) -> (u16, String) {
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (code, body)
}

async fn quarantine(app: &App) -> Vec<Value> {
    let (status, page) = app.admin_get("/api/v1/quarantine").await;
    assert_eq!(status, 200, "quarantine list: {page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn address(app: &App, encoded: &str) -> (u16, Value) {
    app.admin_get(&format!("/api/v1/addresses/{encoded}")).await
}

async fn post_with(app: &App, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let response = app.post_hook("/okta/events", headers, body_of(body)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bounce_is_stored_and_shown() {
    let app = App::start(&[]).await;
    let body = envelope(vec![event(
        "u1",
        "2025-01-15T10:00:00.000Z",
        "bounce",
        "Jane.Doe@Example.com",
        "550 5.1.1 user unknown",
    )]);
    let response = app.deliver(&body).await;
    assert_eq!(response.status().as_u16(), 200);
    let (status, doc) = app
        .admin_get("/api/v1/addresses/jane.doe%40example.com")
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], json!("bounced"));
    assert_eq!(doc["domain"], json!("example.com"));
    assert_eq!(doc["raw"], json!("Jane.Doe@Example.com"));
}

#[tokio::test]
async fn restart_keeps_acknowledged_events() {
    let mut app = App::start(&[]).await;
    let body = envelope(vec![event(
        "u1",
        "2025-01-15T10:00:00.000Z",
        "bounce",
        "a@example.com",
        "550 5.1.1 user unknown",
    )]);
    assert_eq!(app.deliver(&body).await.status().as_u16(), 200);
    app.kill();
    app.spawn().await;
    let (status, doc) = app.admin_get("/api/v1/addresses/a%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], json!("bounced"));
}

// Verification GET.

#[tokio::test]
async fn verification_echoes_challenge() {
    let app = App::start(&[]).await;
    let response = app
        .http
        .get(format!("{}/okta/events", app.base))
        .header(
            "x-okta-verification-challenge",
            "ch4ll3nge_Placeholder-0123",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert_eq!(content_type, "application/json");
    let body = response.text().await.unwrap();
    assert_eq!(body, r#"{"verification":"ch4ll3nge_Placeholder-0123"}"#);
}

#[tokio::test]
async fn verification_header_any_case() {
    let app = App::start(&[]).await;
    let response = app.raw_request(
        "GET /okta/events HTTP/1.1\r\nX-OKTA-Verification-Challenge: MiXeD-Case\r\nAccept: application/json\r\n",
        b"",
    );
    let (code, body) = split_response(&response);
    assert_eq!(code, 200, "{response}");
    assert_eq!(body, r#"{"verification":"MiXeD-Case"}"#);
}

#[tokio::test]
async fn verification_accepts_secret_and_slash() {
    let app = App::start(&[]).await;
    let response = app
        .http
        .get(format!("{}/okta/events/", app.base))
        .header("Authorization", HOOK_SECRET)
        .header("X-Okta-Verification-Challenge", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"verification":"abc"}"#);
}

#[tokio::test]
async fn verification_without_challenge_is_400() {
    let app = App::start(&[]).await;
    let response = app
        .http
        .get(format!("{}/okta/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["field"], json!("x-okta-verification-challenge"));
}

// Authentication.

#[tokio::test]
async fn hook_accepts_mixed_case_header_name() {
    let app = App::start(&[]).await;
    let body = body_of(&envelope(vec![bounce(
        "u1",
        "2025-01-15T10:00:00Z",
        "a@example.com",
    )]));
    let head = format!("POST /okta/events HTTP/1.1\r\nAUTHORIZATION: {HOOK_SECRET}\r\n");
    let (code, _) = split_response(&app.raw_request(&head, &body));
    assert_eq!(code, 200);
}

#[tokio::test]
async fn hook_accepts_lowercase_header_name() {
    let app = App::start(&[]).await;
    let body = body_of(&envelope(vec![bounce(
        "u1",
        "2025-01-15T10:00:00Z",
        "a@example.com",
    )]));
    let head = format!("POST /okta/events HTTP/1.1\r\nauthorization: {HOOK_SECRET}\r\n");
    let (code, _) = split_response(&app.raw_request(&head, &body));
    assert_eq!(code, 200);
    let (status, _) = address(&app, "a%40example.com").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn hook_custom_auth_header() {
    let app = App::start(&[
        ("BOUNCEWATCH_HOOK_AUTH_HEADER", "X-Hook-Token"),
        ("BOUNCEWATCH_HOOK_SECRET", "s3cr3t-placeholder"),
    ])
    .await;
    let body = envelope(vec![bounce("u1", "2025-01-15T10:00:00Z", "a@example.com")]);
    let (in_authorization, _) =
        post_with(&app, &[("Authorization", "s3cr3t-placeholder")], &body).await;
    assert_eq!(in_authorization, 401);
    let (in_custom, _) = post_with(&app, &[("X-Hook-Token", "s3cr3t-placeholder")], &body).await;
    assert_eq!(in_custom, 200);
}

#[tokio::test]
async fn hook_accepts_previous_secret() {
    let app = App::start(&[("BOUNCEWATCH_HOOK_SECRET_PREVIOUS", "old-secret-value")]).await;
    let body = envelope(vec![bounce("u1", "2025-01-15T10:00:00Z", "a@example.com")]);
    let (previous, _) = post_with(&app, &[("Authorization", "old-secret-value")], &body).await;
    assert_eq!(previous, 200);
    let body = envelope(vec![bounce("u2", "2025-01-15T10:00:00Z", "a@example.com")]);
    let (current, _) = post_with(&app, &[("Authorization", HOOK_SECRET)], &body).await;
    assert_eq!(current, 200);
}

#[tokio::test]
async fn hook_rejects_bad_credentials() {
    let basic = "Basic dGVzdHVzZXI6dGVzdHBhc3M=";
    let app = App::start(&[("BOUNCEWATCH_HOOK_SECRET", basic)]).await;
    let body = envelope(vec![bounce("u1", "2025-01-15T10:00:00Z", "a@example.com")]);
    let cases: [(&str, &[(&str, &str)]); 4] = [
        (
            "wrong secret",
            &[("Authorization", "Basic d3Jvbmc6c2VjcmV0")],
        ),
        ("missing header", &[]),
        (
            "scheme missing",
            &[("Authorization", "dGVzdHVzZXI6dGVzdHBhc3M=")],
        ),
        ("empty value", &[("Authorization", "")]),
    ];
    for (case, headers) in cases {
        let (status, error) = post_with(&app, headers, &body).await;
        assert_eq!(status, 401, "{case}");
        assert_eq!(error["error"], json!("unauthorized"), "{case}");
    }
    let (stored, _) = address(&app, "a%40example.com").await;
    assert_eq!(stored, 404);
    assert!(quarantine(&app).await.is_empty());
    let (with_scheme, _) = post_with(&app, &[("Authorization", basic)], &body).await;
    assert_eq!(with_scheme, 200);
}

// Bodies and content types.

#[tokio::test]
async fn invalid_json_is_400_and_quarantined() {
    let app = App::start(&[]).await;
    let raw = br#"{"data":{"events":["#.to_vec();
    let response = app
        .post_hook(
            "/okta/events",
            &[("Authorization", HOOK_SECRET)],
            raw.clone(),
        )
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["field"], json!("body"));
    let items = quarantine(&app).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["reason"], json!("malformed_envelope"));
    assert_eq!(items[0]["size"], json!(raw.len()));

    let id = items[0]["id"].as_str().unwrap();
    let kept = app
        .http
        .get(format!("{}/api/v1/quarantine/{id}/raw", app.base))
        .bearer_auth(crate::support::app::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status().as_u16(), 200);
    assert_eq!(kept.bytes().await.unwrap().to_vec(), raw);
}

#[tokio::test]
async fn events_not_array_is_400() {
    let app = App::start(&[]).await;
    let body = json!({"eventType": "com.okta.event_hook", "data": {"events": {"uuid": "u1"}}});
    let (status, error) = post_with(&app, &[("Authorization", HOOK_SECRET)], &body).await;
    assert_eq!(status, 400);
    assert_eq!(error["field"], json!("data.events"));
}

#[tokio::test]
async fn any_content_type_is_accepted() {
    let app = App::start(&[]).await;
    let types = [
        None,
        Some("application/json; charset=UTF-8"),
        Some("text/plain"),
        Some("application/cloudevents+json"),
    ];
    for (index, content_type) in types.into_iter().enumerate() {
        let body = envelope(vec![bounce(
            &format!("u{index}"),
            "2025-01-15T10:00:00Z",
            &format!("ct{index}@example.com"),
        )]);
        let mut headers = vec![("Authorization", HOOK_SECRET)];
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        let (status, _) = post_with(&app, &headers, &body).await;
        assert_eq!(status, 200, "content type {content_type:?}");
        let (stored, _) = address(&app, &format!("ct{index}%40example.com")).await;
        assert_eq!(stored, 200, "content type {content_type:?}");
    }
}

#[tokio::test]
async fn trailing_slash_path_stores() {
    let app = App::start(&[]).await;
    let body = envelope(vec![bounce("u1", "2025-01-15T10:00:00Z", "a@example.com")]);
    let response = app
        .post_hook(
            "/okta/events/",
            &[("Authorization", HOOK_SECRET)],
            body_of(&body),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let (stored, _) = address(&app, "a%40example.com").await;
    assert_eq!(stored, 200);
}

#[tokio::test]
async fn body_over_limit_is_413() {
    let app = App::start(&[("BOUNCEWATCH_BODY_LIMIT_BYTES", "65536")]).await;
    let padding = "x".repeat(70_000);
    let body = envelope(vec![event(
        "u1",
        "2025-01-15T10:00:00Z",
        "bounce",
        "a@example.com",
        &padding,
    )]);
    let (status, error) = post_with(&app, &[("Authorization", HOOK_SECRET)], &body).await;
    assert_eq!(status, 413);
    assert_eq!(error["error"], json!("payload_too_large"));
    let (stored, _) = address(&app, "a%40example.com").await;
    assert_eq!(stored, 404);
}

#[tokio::test]
async fn large_batch_is_stored() {
    let app = App::start(&[]).await;
    let message = format!("550 5.1.1 user unknown {}", "y".repeat(380));
    let events: Vec<Value> = (0..3000)
        .map(|i| {
            event(
                &format!("big-{i:05}"),
                "2025-01-15T10:00:00Z",
                "bounce",
                &format!("user{i}@big.example"),
                &message,
            )
        })
        .collect();
    let body = body_of(&envelope(events));
    assert!(body.len() > 2_500_000, "body is {} bytes", body.len());
    let response = app
        .post_hook("/okta/events", &[("Authorization", HOOK_SECRET)], body)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let (status, domain) = app.admin_get("/api/v1/domains/big.example").await;
    assert_eq!(status, 200);
    assert_eq!(domain["addresses"], json!(3000));
    assert_eq!(domain["counts"]["bounce"], json!(3000));
    let (last, _) = address(&app, "user2999%40big.example").await;
    assert_eq!(last, 200);
}

// Duplicates and ordering.

#[tokio::test]
async fn duplicate_in_two_envelopes_applied_once() {
    let app = App::start(&[]).await;
    let first = bounce("u1", "2025-01-15T10:00:00Z", "a@example.com");
    assert_eq!(
        app.deliver(&envelope(vec![first.clone()])).await.status(),
        200
    );
    let other = bounce("u9", "2025-01-15T10:00:00Z", "other@example.com");
    assert_eq!(
        app.deliver(&envelope(vec![other, first])).await.status(),
        200
    );
    let (_, doc) = address(&app, "a%40example.com").await;
    assert_eq!(doc["event_count"], json!(1));
    assert_eq!(doc["history"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn duplicate_within_one_batch_applied_once() {
    let app = App::start(&[]).await;
    let first = bounce("u1", "2025-01-15T10:00:00Z", "a@example.com");
    let response = app.deliver(&envelope(vec![first.clone(), first])).await;
    assert_eq!(response.status(), 200);
    let (_, doc) = address(&app, "a%40example.com").await;
    assert_eq!(doc["event_count"], json!(1));
}

#[tokio::test]
async fn late_older_event_keeps_newer_status() {
    let app = App::start(&[]).await;
    let newer = bounce("u1", "2025-01-15T10:00:00Z", "a@example.com");
    let older = delivered("u2", "2025-01-15T09:59:00Z", "a@example.com");
    assert_eq!(
        app.deliver(&envelope(vec![newer.clone()])).await.status(),
        200
    );
    assert_eq!(
        app.deliver(&envelope(vec![newer, older])).await.status(),
        200
    );
    let (_, doc) = address(&app, "a%40example.com").await;
    assert_eq!(doc["status"], json!("bounced"));
    assert_eq!(doc["history"].as_array().unwrap().len(), 2);
    assert_eq!(doc["last_event"]["uuid"], json!("u1"));
}

#[tokio::test]
async fn equal_published_greater_uuid_wins() {
    let app = App::start(&[]).await;
    let at = "2025-01-15T10:00:00Z";
    // "u-b" > "u-a": the delivered event wins in both arrival orders.
    let orders = [
        ("first@example.com", ["u-a1", "u-b1"], false),
        ("second@example.com", ["u-a2", "u-b2"], true),
    ];
    for (recipient, [small, large], reversed) in orders {
        let mut events = vec![
            bounce(small, at, recipient),
            delivered(large, at, recipient),
        ];
        if reversed {
            events.reverse();
        }
        for event in events {
            assert_eq!(app.deliver(&envelope(vec![event])).await.status(), 200);
        }
        let (_, doc) = address(&app, &recipient.replace('@', "%40")).await;
        assert_eq!(doc["status"], json!("delivered"), "{recipient}");
    }
}

// Recipient layouts.

#[tokio::test]
async fn recipient_layouts_are_read() {
    let app = App::start(&[]).await;
    let message = json!({"providerMessage": "550 5.1.1 rejected, copy to old-box@example.org"});
    let layouts = [
        (
            "user target alternateId",
            json!([{"id": "00u1", "type": "User", "alternateId": "one@example.com", "displayName": "One"}]),
            message.clone(),
            "one%40example.com",
        ),
        (
            "email target id",
            json!([{"id": "two@example.com", "type": "email", "displayName": "Mailbox Two"}]),
            message.clone(),
            "two%40example.com",
        ),
        (
            "email target displayName",
            json!([{"id": "x1", "type": "email", "displayName": "three@example.com"}]),
            message.clone(),
            "three%40example.com",
        ),
        (
            "group target first",
            json!([
                {"id": "00g1", "type": "UserGroup", "alternateId": "unknown", "displayName": "contractors"},
                {"id": "00u4", "type": "User", "alternateId": "Four+okta@Example.COM", "displayName": "Four"}
            ]),
            message.clone(),
            "four+okta%40example.com",
        ),
        (
            "debugData recipient",
            json!(null),
            json!({"recipient": "five@example.com", "providerMessage": "550 5.1.1 no such user"}),
            "five%40example.com",
        ),
    ];
    let events = layouts
        .iter()
        .enumerate()
        .map(|(i, (_, target, debug, _))| {
            event_with_target(&format!("layout-{i}"), target.clone(), debug.clone())
        })
        .collect();
    assert_eq!(app.deliver(&envelope(events)).await.status(), 200);
    for (layout, _, _, path) in layouts {
        let (status, _) = address(&app, path).await;
        assert_eq!(status, 200, "{layout}");
    }
    let (scraped, _) = address(&app, "old-box%40example.org").await;
    assert_eq!(scraped, 404);
    let (actor, _) = address(&app, "system%40example.okta.com").await;
    assert_eq!(actor, 404);
}

#[tokio::test]
async fn missing_recipient_quarantined_neighbours_kept() {
    let app = App::start(&[]).await;
    let events = vec![
        bounce("n1", "2025-01-15T10:00:00Z", "before@example.com"),
        event_with_target("m1", json!(null), json!({"providerMessage": "550"})),
        event_with_target(
            "m2",
            json!([{"id": "00u1", "type": "User", "alternateId": "unknown", "displayName": "Someone"}]),
            json!({}),
        ),
        event_with_target("m3", json!([]), json!(null)),
        bounce("n2", "2025-01-15T10:00:00Z", "after@example.com"),
    ];
    assert_eq!(app.deliver(&envelope(events)).await.status(), 200);
    let (before, _) = address(&app, "before%40example.com").await;
    assert_eq!(before, 200);
    let (after, _) = address(&app, "after%40example.com").await;
    assert_eq!(after, 200);
    let items = quarantine(&app).await;
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(item["reason"], json!("missing_recipient"), "{item}");
    }
}

#[tokio::test]
async fn mixed_batch_one_malformed_event() {
    let app = App::start(&[]).await;
    let events = vec![
        bounce("a1", "2025-01-15T10:00:00Z", "a@example.com"),
        json!({"uuid": "s1", "published": "2025-01-15T10:00:00Z", "eventType": "user.session.start"}),
        json!({"uuid": "bad1", "eventType": "system.email.delivery", "target": 7}),
        event(
            "b1",
            "2025-01-15T10:00:00Z",
            "DEFERRED",
            "b@example.com",
            "421 4.7.0 try again later",
        ),
    ];
    assert_eq!(app.deliver(&envelope(events)).await.status(), 200);
    let (a, _) = address(&app, "a%40example.com").await;
    assert_eq!(a, 200);
    let (b, doc) = address(&app, "b%40example.com").await;
    assert_eq!(b, 200);
    assert_eq!(doc["status"], json!("deferred"));
    let items = quarantine(&app).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["reason"], json!("malformed_event"));
    assert_eq!(items[0]["event_uuid"], json!("bad1"));
}

// Address normalisation and admin lookups.

#[tokio::test]
async fn case_variants_are_one_record() {
    let app = App::start(&[]).await;
    let first = bounce("u1", "2025-01-15T10:00:00Z", "Jane.Doe@Example.com");
    let second = delivered("u2", "2025-01-15T11:00:00Z", "jane.doe@example.com");
    assert_eq!(app.deliver(&envelope(vec![first])).await.status(), 200);
    assert_eq!(app.deliver(&envelope(vec![second])).await.status(), 200);
    let (_, doc) = address(&app, "JANE.DOE%40EXAMPLE.COM").await;
    assert_eq!(doc["address"], json!("jane.doe@example.com"));
    assert_eq!(doc["status"], json!("delivered"));
    assert_eq!(doc["event_count"], json!(2));
    let (_, page) = app.admin_get("/api/v1/addresses?domain=example.com").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unicode_and_punycode_domain_one_record() {
    let app = App::start(&[]).await;
    let unicode = bounce("u1", "2025-01-15T10:00:00Z", "user@bücher.example");
    let ascii = delivered("u2", "2025-01-15T11:00:00Z", "user@xn--bcher-kva.example");
    assert_eq!(
        app.deliver(&envelope(vec![unicode, ascii])).await.status(),
        200
    );
    let (_, doc) = address(&app, "user%40xn--bcher-kva.example").await;
    assert_eq!(doc["event_count"], json!(2));
    assert_eq!(doc["domain"], json!("xn--bcher-kva.example"));
    let (status, by_unicode) = address(&app, "user%40b%C3%BCcher.example").await;
    assert_eq!(status, 200);
    assert_eq!(by_unicode["address"], json!("user@xn--bcher-kva.example"));
}

#[tokio::test]
async fn plus_in_path_literal_or_encoded() {
    let app = App::start(&[]).await;
    let body = envelope(vec![bounce(
        "u1",
        "2025-01-15T10:00:00Z",
        "first.last+okta@example.com",
    )]);
    assert_eq!(app.deliver(&body).await.status(), 200);
    let (literal, _) = address(&app, "first.last+okta%40example.com").await;
    assert_eq!(literal, 200);
    let (encoded, _) = address(&app, "first.last%2Bokta%40example.com").await;
    assert_eq!(encoded, 200);
}

#[tokio::test]
async fn status_filter_lists_matching() {
    let app = App::start(&[]).await;
    let events = vec![
        bounce("u1", "2025-01-15T10:00:00Z", "b1@example.com"),
        delivered("u2", "2025-01-15T10:00:00Z", "d1@example.com"),
        bounce("u3", "2025-01-15T10:00:00Z", "b2@example.com"),
    ];
    assert_eq!(app.deliver(&envelope(events)).await.status(), 200);
    let (status, page) = app.admin_get("/api/v1/addresses?status=bounced").await;
    assert_eq!(status, 200);
    let found: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["address"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["b1@example.com", "b2@example.com"]);
}

#[tokio::test]
async fn list_pages_with_cursor() {
    let app = App::start(&[]).await;
    let events = (0..3)
        .map(|i| {
            bounce(
                &format!("u{i}"),
                "2025-01-15T10:00:00Z",
                &format!("p{i}@example.com"),
            )
        })
        .collect();
    assert_eq!(app.deliver(&envelope(events)).await.status(), 200);
    let mut seen = Vec::new();
    let mut path = "/api/v1/addresses?limit=1".to_string();
    for _ in 0..5 {
        let (status, page) = app.admin_get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
        seen.push(page["items"][0]["address"].as_str().unwrap().to_string());
        match page["next"].as_str() {
            Some(cursor) => path = format!("/api/v1/addresses?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["p0@example.com", "p1@example.com", "p2@example.com"]);
}

// Process life.

#[tokio::test]
async fn sigterm_exits_zero() {
    let mut app = App::start(&[]).await;
    let body = envelope(vec![bounce("u1", "2025-01-15T10:00:00Z", "a@example.com")]);
    assert_eq!(app.deliver(&body).await.status(), 200);
    assert_eq!(app.terminate(), Some(0));
}

#[tokio::test]
async fn logs_never_show_whole_addresses() {
    let app = App::start(&[("RUST_LOG", "info")]).await;
    let recipients = ["secret.person@example.com", "Other.Person+tag@example.net"];
    let events = vec![
        bounce("u1", "2025-01-15T10:00:00Z", recipients[0]),
        delivered("u2", "2025-01-15T10:00:00Z", recipients[1]),
        event_with_target(
            "u3",
            json!(null),
            json!({"providerMessage": "550 5.1.1 <secret.person@example.com> unknown"}),
        ),
    ];
    assert_eq!(app.deliver(&envelope(events)).await.status(), 200);
    let malformed = br#"{"data":{"events":[{"target":"secret.person@example.com""#.to_vec();
    let response = app
        .post_hook("/okta/events", &[("Authorization", HOOK_SECRET)], malformed)
        .await;
    assert_eq!(response.status().as_u16(), 400);
    // Give the rules, woken by the delivery, time to run and log.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = app.log().to_lowercase();
    for recipient in recipients {
        let lowercase = recipient.to_lowercase();
        assert!(!log.contains(&lowercase), "{recipient} in log:\n{log}");
        let local = lowercase.split('@').next().unwrap();
        assert!(
            !log.contains(local),
            "local part of {recipient} in log:\n{log}"
        );
    }
}

/// Mounts a small tmpfs, so filling it makes the store's writes fail with ENOSPC even for
/// root, who ignores file permissions. Returns `None` where mounting is not permitted.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: std::path::PathBuf) -> Option<SmallDisk> {
        std::fs::create_dir_all(&path).ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(&path)
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { path })
    }

    /// Writes a file until the file system is full.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.write_all(&[0u8; 1]);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test]
async fn full_disk_answers_503() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(mount_point.path().join("disk")) else {
        eprintln!("skipped: mounting a tmpfs is not permitted here");
        return;
    };

    let data_dir = disk.path.join("data").display().to_string();
    let mut app = App::start(&[("BOUNCEWATCH_DATA_DIR", data_dir.as_str())]).await;

    disk.fill();
    let events: Vec<Value> = (0..200)
        .map(|i| {
            bounce(
                &format!("full-{i}"),
                "2025-01-15T10:00:00Z",
                &format!("f{i}@example.com"),
            )
        })
        .collect();
    let response = app.deliver(&envelope(events)).await;
    assert_eq!(response.status().as_u16(), 503);
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    // NOTE: the running process keeps failing writes after space is freed (sled 0.34 keeps
    // its I/O error), so it stays unready until a restart, which this test checks recovers.
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    app.kill();
    app.spawn().await;
    let retry = envelope(vec![bounce(
        "after-full",
        "2025-01-15T10:00:00Z",
        "after@example.com",
    )]);
    let response = app.deliver(&retry).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "after a restart with free space"
    );
    app.kill();
    drop(disk);
}

// Envelope details bouncewatch only logs, and body framing.

#[tokio::test]
async fn odd_envelope_metadata_still_stored() {
    let app = App::start(&[]).await;
    let mut body = envelope(vec![bounce("u1", "2025-01-15T10:00:00Z", "a@example.com")]);
    body["eventId"] = json!(12345);
    body["source"] = json!({"href": "https://example.okta.com"});
    let (status, error) = post_with(&app, &[("Authorization", HOOK_SECRET)], &body).await;
    assert_eq!(status, 200, "{error}");
    let (stored, _) = address(&app, "a%40example.com").await;
    assert_eq!(stored, 200);
}

#[tokio::test]
async fn body_with_byte_order_mark_stored() {
    let app = App::start(&[]).await;
    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend(body_of(&envelope(vec![bounce(
        "u1",
        "2025-01-15T10:00:00Z",
        "a@example.com",
    )])));
    let response = app
        .post_hook("/okta/events", &[("Authorization", HOOK_SECRET)], body)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let (stored, _) = address(&app, "a%40example.com").await;
    assert_eq!(stored, 200);
}

#[tokio::test]
async fn chunked_body_over_limit_is_413() {
    let app = App::start(&[("BOUNCEWATCH_BODY_LIMIT_BYTES", "65536")]).await;
    let padding = "x".repeat(70_000);
    let body = body_of(&envelope(vec![event(
        "u1",
        "2025-01-15T10:00:00Z",
        "bounce",
        "a@example.com",
        &padding,
    )]));
    let address = app.base.trim_start_matches("http://");
    let mut request = format!(
        "POST /okta/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: {HOOK_SECRET}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(8192) {
        request.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (code, body) = split_response(&app.raw_exchange(&request));
    assert_eq!(code, 413, "{body}");
}

#[tokio::test]
async fn long_challenge_is_400() {
    let app = App::start(&[]).await;
    let response = app
        .http
        .get(format!("{}/okta/events", app.base))
        .header("x-okta-verification-challenge", "c".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}
