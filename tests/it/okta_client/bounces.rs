//! `remove_bounces` against the fake's remove-list endpoint.

use bouncewatch::okta::error::OktaError;

use super::{api_token_client, strings, REMOVE_LIST};
use crate::support::fake_okta::{FakeOkta, Fault};

const NOT_A_USER: &str = "This email address does not belong to any user in your organization.";
const INVALID: &str =
    "Invalid email address. The provided email address failed validation against RFC 3696.";

#[tokio::test]
async fn rejections_matched_case_insensitively() {
    let fake = FakeOkta::start().await;
    fake.add_unknown_address("nobody@example.com");
    let client = api_token_client(&fake);
    let sent = strings(&[
        "First.Last+okta@example.com",
        "Nobody@Example.COM",
        "bad@@example.com",
    ]);

    let outcome = client
        .remove_bounces(&sent)
        .await
        .expect("remove-list succeeds");

    assert_eq!(outcome.accepted, strings(&["First.Last+okta@example.com"]));
    assert_eq!(
        outcome.rejected,
        vec![
            ("Nobody@Example.COM".to_string(), NOT_A_USER.to_string()),
            ("bad@@example.com".to_string(), INVALID.to_string()),
        ]
    );
    assert_eq!(
        fake.accepted_removals(),
        strings(&["First.Last+okta@example.com"])
    );
}

#[tokio::test]
async fn body_carries_literal_plus() {
    let fake = FakeOkta::start().await;
    let client = api_token_client(&fake);

    client
        .remove_bounces(&strings(&["first.last+okta@example.com"]))
        .await
        .expect("remove-list succeeds");

    let request = &fake.requests_to(REMOVE_LIST)[0];
    let body = String::from_utf8(request.body.to_vec()).unwrap();
    assert_eq!(
        body,
        r#"{"emailAddresses":["first.last+okta@example.com"]}"#
    );
}

#[tokio::test]
async fn all_rejected_is_still_success() {
    let fake = FakeOkta::start().await;
    let client = api_token_client(&fake);

    let outcome = client
        .remove_bounces(&strings(&["name@okta@com", "no-at-sign"]))
        .await
        .expect("a 200 with only errors is a success");

    assert!(outcome.accepted.is_empty());
    assert_eq!(outcome.rejected.len(), 2);
}

#[tokio::test]
async fn no_content_means_all_accepted() {
    let fake = FakeOkta::start().await;
    fake.fail_next(1, Fault::NoContent);
    let client = api_token_client(&fake);
    let sent = strings(&["a@example.com", "b@example.com"]);

    let outcome = client
        .remove_bounces(&sent)
        .await
        .expect("204 is a success");

    assert_eq!(outcome.accepted, sent);
    assert!(outcome.rejected.is_empty());
}

#[tokio::test]
async fn empty_object_means_all_accepted() {
    let fake = FakeOkta::start().await;
    fake.fail_next(1, Fault::EmptyObject);
    let client = api_token_client(&fake);
    let sent = strings(&["a@example.com"]);

    let outcome = client.remove_bounces(&sent).await.expect("{} is a success");

    assert_eq!(outcome.accepted, sent);
    assert!(outcome.rejected.is_empty());
}

#[tokio::test]
async fn forbidden_names_permission() {
    let fake = FakeOkta::start().await;
    fake.fail_next(1, Fault::Forbidden);
    let client = api_token_client(&fake);

    let error = client
        .remove_bounces(&strings(&["a@example.com"]))
        .await
        .expect_err("403 is an error");

    let message = error.to_string();
    assert!(matches!(error, OktaError::Forbidden { .. }), "{error:?}");
    assert_eq!(error.error_code(), Some("E0000006"));
    assert!(message.contains("Super Admin"), "{message}");
    assert!(message.contains("okta.orgs.manage"), "{message}");
    assert!(message.contains("Developer orgs"), "{message}");
    assert!(!error.is_retryable());
    assert_eq!(
        fake.requests_to(REMOVE_LIST).len(),
        1,
        "403 must not be retried"
    );
}

#[tokio::test]
async fn empty_list_rejected_without_retry() {
    let fake = FakeOkta::start().await;
    let client = api_token_client(&fake);

    let error = client
        .remove_bounces(&[])
        .await
        .expect_err("empty list is invalid");

    assert_eq!(error.status(), Some(400));
    assert_eq!(error.error_code(), Some("E0000001"));
    assert!(
        error.to_string().contains("cannot be left blank"),
        "{error}"
    );
    assert_eq!(fake.requests_to(REMOVE_LIST).len(), 1);
}

#[tokio::test]
async fn fake_rejects_missing_body() {
    let fake = FakeOkta::start().await;
    let url = fake.base_url().join(REMOVE_LIST).unwrap();

    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .header(
            "authorization",
            format!("SSWS {}", crate::support::fake_okta::API_TOKEN),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000003");
}
