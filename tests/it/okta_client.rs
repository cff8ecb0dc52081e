//! The Okta client against the fake Okta org: bounce removal, authentication, rate limits and
//! retries, System Log paging and event hook registration.

mod auth;
mod bounces;
mod hooks;
mod logs;
mod retries;

use std::time::Duration;

use bouncewatch::okta::auth::{OktaAuth, Secret};
use bouncewatch::okta::client::{OktaClient, RetryPolicy};

use crate::support::fake_okta::{FakeOkta, API_TOKEN};

/// Retry bounds that keep the tests fast: short backoff, at most 3 attempts.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(3),
        jitter: Duration::from_millis(20),
    }
}

/// Returns a client for the fake that authenticates with the fake's API token.
fn api_token_client(fake: &FakeOkta) -> OktaClient {
    client_with_auth(fake, OktaAuth::ApiToken(Secret::new(API_TOKEN)))
}

fn client_with_auth(fake: &FakeOkta, auth: OktaAuth) -> OktaClient {
    OktaClient::new(fake.base_url(), auth, Duration::from_secs(5))
        .expect("build the Okta client")
        .with_retry_policy(fast_retries())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

const REMOVE_LIST: &str = "/api/v1/org/email/bounces/remove-list";
