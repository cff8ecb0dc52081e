//! The operator commands `backfill`, `register` and `unregister` through the real binary,
//! against the fake Okta org on 127.0.0.1.
//!
//! The tests run on a multi-threaded runtime and call the command inside `block_in_place`,
//! because the fake Okta serves on the test's runtime while the command runs.

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::support::app::{envelope, event, App, HOOK_SECRET};
use crate::support::fake_okta::{FakeOkta, API_TOKEN};

/// Exit status, stdout and stderr of one command.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run(app: &App, args: &[&str]) -> Outcome {
    let output = tokio::task::block_in_place(|| app.command(args));
    Outcome {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn start_with_okta(extra: &[(&str, &str)]) -> (FakeOkta, App) {
    let okta = FakeOkta::start().await;
    let org_url = okta.base_url().to_string();
    let mut settings = vec![
        ("BOUNCEWATCH_OKTA_ORG_URL", org_url.as_str()),
        ("BOUNCEWATCH_OKTA_API_TOKEN", API_TOKEN),
        // These tests count the System Log requests the commands send, so the service's own
        // gap-fill queries must not mix in.
        ("BOUNCEWATCH_GAP_FILL", "false"),
    ];
    settings.extend_from_slice(extra);
    let app = App::start(&settings).await;
    (okta, app)
}

fn hours_ago(hours: i64) -> String {
    (Utc::now() - Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Query parameters of the first-page System Log requests (those without `after`).
fn first_logs_queries(okta: &FakeOkta) -> Vec<Vec<(String, String)>> {
    okta.requests_to("/api/v1/logs")
        .iter()
        .map(|request| {
            let query = request.query.clone().unwrap_or_default();
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .filter(|pairs| !pairs.iter().any(|(name, _)| name == "after"))
        .collect()
}

fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_into_stopped_service_store() {
    let (okta, mut app) = start_with_okta(&[]).await;
    okta.load_events(vec![
        event(
            "b1",
            &hours_ago(5),
            "bounce",
            "a@example.com",
            "550 5.1.1 user unknown",
        ),
        event("b2", &hours_ago(4), "delivered", "b@example.com", "250 OK"),
    ]);
    let mut session = event("s1", &hours_ago(3), "delivered", "c@example.com", "250 OK");
    session["eventType"] = json!("user.session.start");
    okta.load_events(vec![session]);
    app.kill();

    let since = hours_ago(24);
    let outcome = run(&app, &["backfill", "--since", &since]);
    assert!(outcome.success, "backfill failed: {}", outcome.stderr);
    assert!(
        outcome.stderr.contains("opening the store"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("2 events"), "{}", outcome.stderr);

    app.spawn().await;
    let (status, doc) = app.admin_get("/api/v1/addresses/a%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], json!("bounced"));
    let (status, doc) = app.admin_get("/api/v1/addresses/b%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], json!("delivered"));
    let (status, _) = app.admin_get("/api/v1/addresses/c%40example.com").await;
    assert_eq!(status, 404, "an event of another type must not be stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_always_sends_until() {
    let (okta, mut app) = start_with_okta(&[]).await;
    app.kill();
    let since = hours_ago(24);

    let before = Utc::now();
    let outcome = run(&app, &["backfill", "--since", &since]);
    assert!(outcome.success, "backfill failed: {}", outcome.stderr);
    let until = "2099-01-01T00:00:00Z";
    let outcome = run(&app, &["backfill", "--since", &since, "--until", until]);
    assert!(outcome.success, "backfill failed: {}", outcome.stderr);

    let queries = first_logs_queries(&okta);
    assert_eq!(queries.len(), 2, "{queries:?}");
    let default_until = query_value(&queries[0], "until").expect("until sent without --until");
    let default_until = chrono::DateTime::parse_from_rfc3339(default_until).unwrap();
    assert!(
        default_until >= before - Duration::seconds(1),
        "{default_until}"
    );
    assert!(default_until <= Utc::now(), "{default_until}");
    assert_eq!(
        query_value(&queries[1], "until"),
        Some("2099-01-01T00:00:00.000Z")
    );
    assert_eq!(
        query_value(&queries[1], "filter"),
        Some("eventType eq \"system.email.delivery\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_follows_pages() {
    let (okta, mut app) = start_with_okta(&[]).await;
    let addresses = 30;
    let events: Vec<Value> = (0..2100)
        .map(|index| {
            let published = (Utc::now() - Duration::hours(10) + Duration::seconds(index))
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            let address = format!("user{}@example.com", index % addresses);
            event(
                &format!("p{index:05}"),
                &published,
                "delivered",
                &address,
                "250 OK",
            )
        })
        .collect();
    okta.load_events(events);
    app.kill();

    let outcome = run(&app, &["backfill", "--since", &hours_ago(24)]);
    assert!(outcome.success, "backfill failed: {}", outcome.stderr);
    assert!(
        outcome.stderr.contains("page 3, 2100 events"),
        "{}",
        outcome.stderr
    );
    assert_eq!(okta.requests_to("/api/v1/logs").len(), 3);

    app.spawn().await;
    let (status, doc) = app.admin_get("/api/v1/addresses/user7%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(doc["event_count"], json!(70));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_through_running_service() {
    let (okta, app) = start_with_okta(&[]).await;
    let delivered = event(
        "dup1",
        &hours_ago(2),
        "bounce",
        "d@example.com",
        "550 5.1.1 user unknown",
    );
    assert_eq!(
        app.deliver(&envelope(vec![delivered.clone()]))
            .await
            .status()
            .as_u16(),
        200
    );
    okta.load_events(vec![
        delivered,
        event(
            "new1",
            &hours_ago(1),
            "bounce",
            "e@example.com",
            "550 5.1.1 user unknown",
        ),
    ]);

    let outcome = run(&app, &["backfill", "--since", &hours_ago(24)]);
    assert!(outcome.success, "backfill failed: {}", outcome.stderr);
    assert!(
        outcome.stderr.contains("a service answers"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("1 stored, 1 duplicates"),
        "{}",
        outcome.stderr
    );
    assert_eq!(first_logs_queries(&okta).len(), 1);
    assert!(app
        .log()
        .contains("backfill requested through the admin API"));

    let (status, doc) = app.admin_get("/api/v1/addresses/d%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["event_count"],
        json!(1),
        "the duplicate must collapse by uuid"
    );
    let (status, doc) = app.admin_get("/api/v1/addresses/e%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], json!("bounced"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_endpoint_requires_admin_token() {
    let (_okta, app) = start_with_okta(&[]).await;
    let response = app
        .http
        .post(format!("{}/api/v1/backfill", app.base))
        .json(&json!({"since": hours_ago(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (status, body) = app
        .admin_post("/api/v1/backfill", &json!({"since": "yesterday"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], json!("since"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_rejects_old_since() {
    let (okta, mut app) = start_with_okta(&[]).await;
    app.kill();
    let since = (Utc::now() - Duration::days(200)).to_rfc3339();
    let outcome = run(&app, &["backfill", "--since", &since]);
    assert!(!outcome.success);
    assert!(outcome.stderr.contains("--since"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("180 days"), "{}", outcome.stderr);
    assert!(okta.requests_to("/api/v1/logs").is_empty());

    let outcome = run(&app, &["backfill", "--since", "yesterday"]);
    assert!(!outcome.success);
    assert!(outcome.stderr.contains("--since"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("RFC 3339"), "{}", outcome.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_update_and_unregister() {
    let header = "X-Bouncewatch-Secret";
    let (okta, app) = start_with_okta(&[("BOUNCEWATCH_HOOK_AUTH_HEADER", header)]).await;
    let hook_url = format!("{}/okta/events", app.base);

    let outcome = run(&app, &["register", "--url", &hook_url]);
    assert!(outcome.success, "register failed: {}", outcome.stderr);
    assert!(!outcome.stdout.contains(HOOK_SECRET));
    assert!(!outcome.stderr.contains(HOOK_SECRET));
    let hooks = okta.hooks();
    assert_eq!(hooks.len(), 1);
    let hook_id = hooks[0]["id"].as_str().unwrap().to_string();
    assert_eq!(hooks[0]["status"], json!("ACTIVE"));
    assert_eq!(hooks[0]["verificationStatus"], json!("VERIFIED"));
    assert_eq!(hooks[0]["channel"]["config"]["uri"], json!(hook_url));
    assert_eq!(
        hooks[0]["channel"]["config"]["authScheme"]["key"],
        json!(header)
    );
    assert!(outcome.stdout.contains(&hook_id), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("ACTIVE"), "{}", outcome.stdout);
    let created = okta.requests_to("/api/v1/eventHooks");
    let create = created
        .iter()
        .find(|request| request.method == "POST")
        .unwrap();
    assert_eq!(
        create.json()["channel"]["config"]["authScheme"]["value"],
        json!(HOOK_SECRET)
    );
    assert!(app
        .log()
        .contains("responded to Okta's verification challenge"));

    // The secret Okta now sends in the configured header is accepted by the hook.
    let delivery = envelope(vec![event(
        "r1",
        &hours_ago(1),
        "delivered",
        "f@example.com",
        "250 OK",
    )]);
    let response = app
        .http
        .post(&hook_url)
        .header(header, HOOK_SECRET)
        .json(&delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let outcome = run(&app, &["register", "--url", &hook_url]);
    assert!(
        outcome.success,
        "second register failed: {}",
        outcome.stderr
    );
    let hooks = okta.hooks();
    assert_eq!(hooks.len(), 1, "register again must update, not create");
    assert_eq!(hooks[0]["id"], json!(hook_id));
    let replaced = okta.requests_to(&format!("/api/v1/eventHooks/{hook_id}"));
    assert!(replaced.iter().any(|request| request.method == "PUT"));

    let outcome = run(&app, &["unregister"]);
    assert!(outcome.success, "unregister failed: {}", outcome.stderr);
    assert!(outcome.stdout.contains(&hook_id), "{}", outcome.stdout);
    assert!(okta.hooks().is_empty());

    let outcome = run(&app, &["unregister"]);
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("nothing to unregister"),
        "{}",
        outcome.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_rejects_http_public_url() {
    let (okta, app) = start_with_okta(&[]).await;
    let outcome = run(
        &app,
        &["register", "--url", "http://hooks.example.com/okta/events"],
    );
    assert!(!outcome.success);
    assert!(outcome.stderr.contains("--url"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("https"), "{}", outcome.stderr);
    assert!(okta.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_require_okta_org_url() {
    let app = App::start(&[]).await;
    let since = hours_ago(1);
    let commands: [&[&str]; 3] = [
        &["backfill", "--since", &since],
        &["register", "--url", "https://hooks.example.com/okta/events"],
        &["unregister"],
    ];
    for args in commands {
        let outcome = run(&app, args);
        assert!(!outcome.success, "{args:?} succeeded");
        assert!(
            outcome.stderr.contains("okta_org_url"),
            "{args:?}: {}",
            outcome.stderr
        );
        assert!(
            outcome.stderr.contains("BOUNCEWATCH_OKTA_ORG_URL"),
            "{args:?}: {}",
            outcome.stderr
        );
    }
}
