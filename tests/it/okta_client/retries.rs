//! Rate-limit waits, retries of 429, 5xx and timeouts, and the request headers.

use std::time::{Duration, UNIX_EPOCH};

use bouncewatch::okta::auth::{OktaAuth, Secret};
use bouncewatch::okta::client::{OktaClient, RetryPolicy};
use bouncewatch::okta::error::OktaError;

use super::{api_token_client, client_with_auth, fast_retries, strings, REMOVE_LIST};
use crate::support::fake_okta::{FakeOkta, Fault};

#[tokio::test]
async fn too_many_requests_waits_until_reset() {
    let fake = FakeOkta::start().await;
    fake.fail_next(1, Fault::TooManyRequests);
    let client = api_token_client(&fake);

    let outcome = client.remove_bounces(&strings(&["a@example.com"])).await;

    assert!(outcome.is_ok(), "{outcome:?}");
    let requests = fake.requests_to(REMOVE_LIST);
    assert_eq!(requests.len(), 2);
    let reset = UNIX_EPOCH + Duration::from_secs(fake.issued_429_resets()[0]);
    assert!(
        requests[1].received_at >= reset,
        "retried before X-Rate-Limit-Reset"
    );
}

#[tokio::test]
async fn too_many_requests_exhausted() {
    let fake = FakeOkta::start().await;
    fake.fail_next(2, Fault::TooManyRequests);
    let policy = RetryPolicy {
        max_attempts: 2,
        ..fast_retries()
    };
    let client = api_token_client(&fake).with_retry_policy(policy);

    let error = client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect_err("429 twice exhausts 2 attempts");

    assert!(
        matches!(
            error,
            OktaError::RateLimited {
                attempts: 2,
                reset: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn used_up_window_waits_before_request() {
    let fake = FakeOkta::start().await;
    fake.set_rate_limit(1, Duration::from_secs(1));
    let client = api_token_client(&fake);

    client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect("first call");
    let state = client
        .rate_limit(REMOVE_LIST)
        .expect("rate-limit headers recorded");
    client
        .remove_bounces(&strings(&["b@example.com"]))
        .await
        .expect("second call");

    assert_eq!(state.remaining, Some(0));
    let requests = fake.requests_to(REMOVE_LIST);
    assert_eq!(
        requests.len(),
        2,
        "the client must wait instead of drawing a 429"
    );
    let reset = UNIX_EPOCH + Duration::from_secs(state.reset_epoch.unwrap());
    assert!(
        requests[1].received_at >= reset,
        "sent before the window reset"
    );
}

#[tokio::test]
async fn server_error_retried_then_succeeds() {
    let fake = FakeOkta::start().await;
    fake.fail_next(1, Fault::ServerError(500));
    fake.fail_next(1, Fault::ServerError(503));
    let client = api_token_client(&fake);

    let outcome = client.remove_bounces(&strings(&["a@example.com"])).await;

    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(fake.requests_to(REMOVE_LIST).len(), 3);
}

#[tokio::test]
async fn server_error_exhausted() {
    let fake = FakeOkta::start().await;
    fake.fail_next(3, Fault::ServerError(503));
    let client = api_token_client(&fake);

    let error = client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect_err("three 503 responses exhaust 3 attempts");

    assert!(
        matches!(
            error,
            OktaError::Server {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(fake.requests_to(REMOVE_LIST).len(), 3);
}

#[tokio::test]
async fn timeout_retried_then_succeeds() {
    let fake = FakeOkta::start().await;
    fake.fail_next(1, Fault::Delay(Duration::from_millis(800)));
    let client = OktaClient::new(
        fake.base_url(),
        OktaAuth::ApiToken(Secret::new(crate::support::fake_okta::API_TOKEN)),
        Duration::from_millis(300),
    )
    .unwrap()
    .with_retry_policy(fast_retries());

    let outcome = client.remove_bounces(&strings(&["a@example.com"])).await;

    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(fake.requests_to(REMOVE_LIST).len(), 2);
}

#[tokio::test]
async fn wrong_api_token_unauthorized() {
    let fake = FakeOkta::start().await;
    let client = client_with_auth(&fake, OktaAuth::ApiToken(Secret::new("wrong")));

    let error = client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect_err("wrong token");

    assert!(matches!(error, OktaError::Unauthorized { .. }), "{error:?}");
    assert_eq!(error.error_code(), Some("E0000011"));
    assert_eq!(
        fake.requests_to(REMOVE_LIST).len(),
        1,
        "401 must not be retried"
    );
}

#[tokio::test]
async fn requests_carry_standard_headers() {
    let fake = FakeOkta::start().await;
    let client = api_token_client(&fake);

    client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .unwrap();

    let request = &fake.requests_to(REMOVE_LIST)[0];
    let expected_agent = format!("bouncewatch/{}", env!("CARGO_PKG_VERSION"));
    let expected_auth = format!("SSWS {}", crate::support::fake_okta::API_TOKEN);
    assert_eq!(
        request.header("user-agent").as_deref(),
        Some(expected_agent.as_str())
    );
    assert_eq!(
        request.header("accept").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        request.header("authorization").as_deref(),
        Some(expected_auth.as_str())
    );
}
