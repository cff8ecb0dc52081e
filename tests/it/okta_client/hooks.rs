//! Event hook registration against the fake, with a small loopback receiver that echoes
//! Okta's verification challenge.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use bouncewatch::okta::auth::Secret;
use bouncewatch::okta::error::OktaError;
use bouncewatch::okta::hooks::{register, unregister, HookError, HOOK_NAME};
use serde_json::{json, Value};
use url::Url;

use super::api_token_client;
use crate::support::fake_okta::FakeOkta;

const AUTH_HEADER: &str = "x-bouncewatch-secret";

/// A receiver on 127.0.0.1 that echoes `x-okta-verification-challenge` and stores the auth
/// header value of each verification request.
struct Receiver {
    url: Url,
    auth_values: Arc<Mutex<Vec<String>>>,
}

async fn start_receiver() -> Receiver {
    let auth_values = Arc::new(Mutex::new(Vec::new()));
    let seen = auth_values.clone();
    let router = Router::new().route(
        "/okta/events",
        get(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get(AUTH_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                seen.lock().unwrap().push(auth.to_string());
                let challenge = headers
                    .get("x-okta-verification-challenge")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                (StatusCode::OK, Json(json!({ "verification": challenge })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Receiver {
        url: Url::parse(&format!("http://{address}/okta/events")).unwrap(),
        auth_values,
    }
}

fn requests_with(fake: &FakeOkta, method: &str, suffix: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|request| request.method == method && request.path.ends_with(suffix))
        .count()
}

#[tokio::test]
async fn register_creates_and_verifies() {
    let fake = FakeOkta::start().await;
    let receiver = start_receiver().await;
    let client = api_token_client(&fake);

    let hook = register(&client, &receiver.url, AUTH_HEADER, &Secret::new("s3cret"))
        .await
        .expect("register succeeds");

    assert_eq!(hook.name, HOOK_NAME);
    assert!(hook.is_verified());
    assert!(hook.is_active());
    assert_eq!(hook.uri(), Some(receiver.url.as_str()));
    assert_eq!(hook.events.items, vec!["system.email.delivery".to_string()]);
    assert_eq!(
        *receiver.auth_values.lock().unwrap(),
        vec!["s3cret".to_string()]
    );
    assert_eq!(requests_with(&fake, "POST", "/lifecycle/verify"), 1);
}

#[tokio::test]
async fn register_sends_documented_hook_shape() {
    let fake = FakeOkta::start().await;
    let receiver = start_receiver().await;
    let client = api_token_client(&fake);

    register(&client, &receiver.url, AUTH_HEADER, &Secret::new("s3cret"))
        .await
        .expect("register succeeds");

    let create = fake
        .requests_to("/api/v1/eventHooks")
        .into_iter()
        .find(|request| request.method == "POST")
        .unwrap();
    let body = create.json();
    assert_eq!(
        body["events"],
        json!({"type": "EVENT_TYPE", "items": ["system.email.delivery"]})
    );
    assert_eq!(body["channel"]["type"], "HTTP");
    assert_eq!(body["channel"]["version"], "1.0.0");
    assert_eq!(
        body["channel"]["config"]["authScheme"],
        json!({"type": "HEADER", "key": AUTH_HEADER, "value": "s3cret"})
    );
    assert_eq!(
        fake.hooks()[0]["channel"]["config"]["authScheme"].get("value"),
        None,
        "value is write-only"
    );
}

#[tokio::test]
async fn register_activates_inactive_hook() {
    let fake = FakeOkta::start().await;
    let receiver = start_receiver().await;
    let client = api_token_client(&fake);
    let first = register(&client, &receiver.url, AUTH_HEADER, &Secret::new("s3cret"))
        .await
        .unwrap();
    client.deactivate_event_hook(&first.id).await.unwrap();

    let hook = register(&client, &receiver.url, AUTH_HEADER, &Secret::new("s3cret"))
        .await
        .expect("register succeeds");

    assert!(hook.is_active());
    assert_eq!(requests_with(&fake, "POST", "/lifecycle/activate"), 1);
}

#[tokio::test]
async fn register_again_replaces_same_hook() {
    let fake = FakeOkta::start().await;
    let old_receiver = start_receiver().await;
    let new_receiver = start_receiver().await;
    let client = api_token_client(&fake);
    let first = register(&client, &old_receiver.url, AUTH_HEADER, &Secret::new("one"))
        .await
        .unwrap();

    let second = register(&client, &new_receiver.url, AUTH_HEADER, &Secret::new("two"))
        .await
        .expect("register again");

    assert_eq!(second.id, first.id);
    assert_eq!(second.uri(), Some(new_receiver.url.as_str()));
    assert!(second.is_verified());
    assert_eq!(fake.hooks().len(), 1);
    assert_eq!(requests_with(&fake, "PUT", &first.id), 1);
    assert_eq!(
        *new_receiver.auth_values.lock().unwrap(),
        vec!["two".to_string()]
    );
}

#[tokio::test]
async fn unregister_deactivates_then_deletes() {
    let fake = FakeOkta::start().await;
    let receiver = start_receiver().await;
    let client = api_token_client(&fake);
    let hook = register(&client, &receiver.url, AUTH_HEADER, &Secret::new("s3cret"))
        .await
        .unwrap();

    let removed = unregister(&client).await.expect("unregister succeeds");

    assert_eq!(removed.id, hook.id);
    assert!(fake.hooks().is_empty());
    let methods: Vec<String> = fake
        .requests()
        .iter()
        .filter(|request| request.path.contains(&hook.id))
        .map(|request| {
            format!(
                "{} {}",
                request.method,
                request.path.trim_start_matches("/api/v1/eventHooks/")
            )
        })
        .collect();
    let deactivate = methods
        .iter()
        .position(|entry| entry.ends_with("/lifecycle/deactivate"))
        .expect("deactivate sent");
    let delete = methods
        .iter()
        .position(|entry| entry.starts_with("DELETE"))
        .expect("delete sent");
    assert!(deactivate < delete, "{methods:?}");
}

#[tokio::test]
async fn unregister_without_hook_fails() {
    let fake = FakeOkta::start().await;
    let client = api_token_client(&fake);

    let error = unregister(&client)
        .await
        .expect_err("nothing to unregister");

    assert!(matches!(error, HookError::NotRegistered), "{error:?}");
}

#[tokio::test]
async fn register_rejects_plain_http_public_url() {
    let fake = FakeOkta::start().await;
    let client = api_token_client(&fake);
    let url = Url::parse("http://hooks.example.com/okta/events").unwrap();

    let error = register(&client, &url, AUTH_HEADER, &Secret::new("s3cret"))
        .await
        .expect_err("http is rejected");

    assert!(matches!(error, HookError::InvalidUrl { .. }), "{error:?}");
    assert!(fake.requests().is_empty(), "no request may reach Okta");
}

#[tokio::test]
async fn unreachable_receiver_fails_verification() {
    let fake = FakeOkta::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = Url::parse(&format!("http://127.0.0.1:{closed_port}/okta/events")).unwrap();
    let client = api_token_client(&fake);

    let error = register(&client, &url, AUTH_HEADER, &Secret::new("s3cret"))
        .await
        .expect_err("no receiver is listening");

    let message = error.to_string();
    assert!(
        matches!(error, HookError::VerificationFailed { .. }),
        "{error:?}"
    );
    assert!(message.contains("https"), "{message}");
    assert!(
        message.contains("x-okta-verification-challenge"),
        "{message}"
    );
}

#[tokio::test]
async fn active_hook_cannot_be_deleted() {
    let fake = FakeOkta::start().await;
    let receiver = start_receiver().await;
    let client = api_token_client(&fake);
    let hook = register(&client, &receiver.url, AUTH_HEADER, &Secret::new("s3cret"))
        .await
        .unwrap();

    let error = client
        .delete_event_hook(&hook.id)
        .await
        .expect_err("active hooks are not deleted");

    assert!(matches!(error, OktaError::Forbidden { .. }), "{error:?}");
    let stored: Vec<Value> = fake.hooks();
    assert_eq!(stored.len(), 1);
}
