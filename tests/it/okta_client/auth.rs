//! OAuth 2.0 service app authentication with a `private_key_jwt` client assertion.

use bouncewatch::okta::auth::{OktaAuth, Secret};
use bouncewatch::okta::error::OktaError;

use super::{client_with_auth, strings, REMOVE_LIST};
use crate::support::fake_okta::FakeOkta;

const CLIENT_ID: &str = "0oafakeserviceapp";
const TOKEN_PATH: &str = "/oauth2/v1/token";
// Test-only key pair from tests/fixtures; it protects nothing.
const PRIVATE_KEY: &str = include_str!("../../fixtures/service_app_test_key.pem");
const PUBLIC_KEY: &str = include_str!("../../fixtures/service_app_test_key.pub.pem");

fn service_app_auth(scopes: &[&str]) -> OktaAuth {
    OktaAuth::PrivateKeyJwt {
        client_id: CLIENT_ID.to_string(),
        private_key_pem: Secret::new(PRIVATE_KEY),
        key_id: Some("test-key".to_string()),
        scopes: strings(scopes),
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[tokio::test]
async fn access_token_reused_across_calls() {
    let fake = FakeOkta::start().await;
    fake.register_service_app(CLIENT_ID, PUBLIC_KEY, &["okta.orgs.manage"]);
    let client = client_with_auth(&fake, service_app_auth(&["okta.orgs.manage"]));

    client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect("first call");
    client
        .remove_bounces(&strings(&["b@example.com"]))
        .await
        .expect("second call");

    assert_eq!(
        fake.requests_to(TOKEN_PATH).len(),
        1,
        "one token request for two calls"
    );
    let calls = fake.requests_to(REMOVE_LIST);
    assert_eq!(calls.len(), 2);
    for call in &calls {
        let authorization = call.header("authorization").unwrap_or_default();
        assert!(authorization.starts_with("Bearer "), "{authorization}");
    }
}

#[tokio::test]
async fn token_request_uses_client_credentials() {
    let fake = FakeOkta::start().await;
    fake.register_service_app(
        CLIENT_ID,
        PUBLIC_KEY,
        &["okta.orgs.manage", "okta.logs.read"],
    );
    let client = client_with_auth(
        &fake,
        service_app_auth(&["okta.orgs.manage", "okta.logs.read"]),
    );

    client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect("call succeeds");

    let body = fake.requests_to(TOKEN_PATH)[0].body.clone();
    assert_eq!(
        form_field(&body, "grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        form_field(&body, "scope").as_deref(),
        Some("okta.orgs.manage okta.logs.read")
    );
    assert_eq!(
        form_field(&body, "client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    let assertion = form_field(&body, "client_assertion").unwrap_or_default();
    let header = jsonwebtoken::decode_header(&assertion).expect("assertion is a JWT");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some("test-key"));
}

#[tokio::test]
async fn scope_not_granted_fails_token_request() {
    let fake = FakeOkta::start().await;
    fake.register_service_app(CLIENT_ID, PUBLIC_KEY, &["okta.logs.read"]);
    let client = client_with_auth(&fake, service_app_auth(&["okta.orgs.manage"]));

    let error = client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect_err("scope not granted");

    assert!(
        matches!(&error, OktaError::TokenRequest { error, .. } if error == "invalid_scope"),
        "{error:?}"
    );
    assert!(fake.requests_to(REMOVE_LIST).is_empty());
}

#[tokio::test]
async fn unknown_key_fails_token_request() {
    let fake = FakeOkta::start().await;
    let client = client_with_auth(&fake, service_app_auth(&["okta.orgs.manage"]));

    let error = client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect_err("app not registered");

    assert!(
        matches!(&error, OktaError::TokenRequest { status: 401, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn dpop_requirement_explained() {
    let fake = FakeOkta::start().await;
    fake.register_service_app(CLIENT_ID, PUBLIC_KEY, &["okta.orgs.manage"]);
    fake.require_dpop(true);
    let client = client_with_auth(&fake, service_app_auth(&["okta.orgs.manage"]));

    let error = client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect_err("DPoP required");

    assert!(matches!(error, OktaError::DpopRequired { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("Require Demonstrating Proof of Possession (DPoP)"),
        "{message}"
    );
}

#[tokio::test]
async fn client_debug_hides_secrets() {
    let fake = FakeOkta::start().await;
    let client = client_with_auth(&fake, service_app_auth(&["okta.orgs.manage"]));

    let printed = format!("{client:?}");

    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
}
