//! From hook deliveries through an outage and its recovery to the exact set of addresses
//! cleared at the fake Okta org.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::app::{envelope, event, App};
use crate::support::fake_okta::{FakeOkta, Fault, API_TOKEN};

const CONNECTION_REFUSED: &str = "421 4.4.1 Connection refused by mx.example.net[192.0.2.10]:25";
const USER_UNKNOWN: &str = "550 5.1.1 The email account that you tried to reach does not exist";

async fn start_with_okta(extra: &[(&str, &str)]) -> (App, FakeOkta) {
    let fake = FakeOkta::start().await;
    let url = fake.base_url().to_string();
    // Gap-fill would send its own requests to the fake and take the faults meant for clears.
    let mut settings = vec![
        ("BOUNCEWATCH_OKTA_ORG_URL", url.as_str()),
        ("BOUNCEWATCH_OKTA_API_TOKEN", API_TOKEN),
        ("BOUNCEWATCH_GAP_FILL", "false"),
    ];
    settings.extend_from_slice(extra);
    let app = App::start(&settings).await;
    (app, fake)
}

fn at(minute: u32) -> String {
    format!("2025-03-04T10:{minute:02}:00.000Z")
}

/// An outage at example.net: three connection failures from three addresses, a dead mailbox,
/// then two deliveries to other addresses.
fn outage_and_recovery() -> Vec<Value> {
    vec![
        event(
            "a0000000-0000-4000-8000-000000000001",
            &at(0),
            "bounce",
            "One@Example.net",
            CONNECTION_REFUSED,
        ),
        event(
            "a0000000-0000-4000-8000-000000000002",
            &at(1),
            "bounce",
            "two@example.net",
            CONNECTION_REFUSED,
        ),
        event(
            "a0000000-0000-4000-8000-000000000003",
            &at(2),
            "bounce",
            "three@example.net",
            CONNECTION_REFUSED,
        ),
        event(
            "a0000000-0000-4000-8000-000000000004",
            &at(3),
            "bounce",
            "gone@example.net",
            USER_UNKNOWN,
        ),
        event(
            "a0000000-0000-4000-8000-000000000005",
            &at(30),
            "delivered",
            "four@example.net",
            "250 2.0.0 OK",
        ),
        event(
            "a0000000-0000-4000-8000-000000000006",
            &at(31),
            "delivered",
            "five@example.net",
            "250 2.0.0 OK",
        ),
    ]
}

async fn wait_for_removals(fake: &FakeOkta, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut removed = fake.accepted_removals();
        if removed.len() >= count {
            removed.sort();
            return removed;
        }
        assert!(Instant::now() < deadline, "only {removed:?} removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn recovery_clears_exactly_outage_bounces() {
    let (app, fake) = start_with_okta(&[]).await;
    let events = outage_and_recovery();
    assert_eq!(
        app.deliver(&envelope(events[..4].to_vec()))
            .await
            .status()
            .as_u16(),
        200
    );
    app.wait_for("/api/v1/domains/example.net", |doc| {
        doc["health"] == json!("outage")
    })
    .await;

    assert_eq!(
        app.deliver(&envelope(events[4..].to_vec()))
            .await
            .status()
            .as_u16(),
        200
    );
    let removed = wait_for_removals(&fake, 3).await;
    assert_eq!(
        removed,
        vec!["One@Example.net", "three@example.net", "two@example.net"]
    );

    let doc = app
        .wait_for("/api/v1/addresses/one%40example.net", |doc| {
            doc["status"] == json!("cleared")
        })
        .await;
    assert_eq!(doc["verdict"]["scope"], json!("domain"));
    let (_, gone) = app.admin_get("/api/v1/addresses/gone%40example.net").await;
    assert_eq!(gone["status"], json!("bounced"));
    assert_eq!(gone["verdict"]["scope"], json!("mailbox"));
    let (_, domain) = app.admin_get("/api/v1/domains/example.net").await;
    assert_eq!(domain["health"], json!("healthy"));
}

#[tokio::test]
async fn arrival_order_does_not_change_clears() {
    let (app, fake) = start_with_okta(&[]).await;
    let mut events = outage_and_recovery();
    events.reverse();
    for event in events {
        assert_eq!(
            app.deliver(&envelope(vec![event])).await.status().as_u16(),
            200
        );
    }
    let removed = wait_for_removals(&fake, 3).await;
    assert_eq!(
        removed,
        vec!["One@Example.net", "three@example.net", "two@example.net"]
    );
}

#[tokio::test]
async fn dry_run_records_and_calls_nothing() {
    let (app, fake) = start_with_okta(&[("BOUNCEWATCH_DRY_RUN", "true")]).await;
    app.deliver(&envelope(outage_and_recovery())).await;
    let actions = app
        .wait_for("/api/v1/actions", |doc| {
            doc["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["status"] == json!("dry_run"))
                .count()
                == 3
        })
        .await;
    assert!(actions["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["kind"] == json!("recovered")));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fake
        .requests_to("/api/v1/org/email/bounces/remove-list")
        .is_empty());
    let (_, doc) = app.admin_get("/api/v1/addresses/two%40example.net").await;
    assert_eq!(doc["status"], json!("bounced"));
}

#[tokio::test]
async fn admin_recovery_clears_outage_bounces() {
    let (app, fake) = start_with_okta(&[]).await;
    app.deliver(&envelope(outage_and_recovery()[..4].to_vec()))
        .await;
    app.wait_for("/api/v1/domains/example.net", |doc| {
        doc["health"] == json!("outage")
    })
    .await;
    let (status, action) = app
        .admin_post("/api/v1/domains/example.net/recover", &json!({}))
        .await;
    assert_eq!(status, 202, "{action}");
    let removed = wait_for_removals(&fake, 3).await;
    assert_eq!(removed.len(), 3);
    let (status, _) = app
        .admin_post("/api/v1/domains/example.net/recover", &json!({}))
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn admin_clear_and_per_address_error() {
    let (app, fake) = start_with_okta(&[]).await;
    fake.add_unknown_address("nobody@example.org");
    app.deliver(&envelope(vec![
        event(
            "b0000000-0000-4000-8000-000000000001",
            &at(0),
            "bounce",
            "nobody@example.org",
            USER_UNKNOWN,
        ),
        event(
            "b0000000-0000-4000-8000-000000000002",
            &at(0),
            "bounce",
            "someone@example.org",
            USER_UNKNOWN,
        ),
    ]))
    .await;
    let (status, body) = app
        .admin_post("/api/v1/addresses/someone%40example.org/clear", &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = app
        .admin_post("/api/v1/addresses/nobody%40example.org/clear", &json!({}))
        .await;
    assert_eq!(status, 202);
    let (status, _) = app
        .admin_post("/api/v1/addresses/missing%40example.org/clear", &json!({}))
        .await;
    assert_eq!(status, 404);

    app.wait_for("/api/v1/addresses/someone%40example.org", |doc| {
        doc["status"] == json!("cleared")
    })
    .await;
    let doc = app
        .wait_for("/api/v1/addresses/nobody%40example.org", |doc| {
            doc["status"] == json!("bounced")
        })
        .await;
    assert_eq!(doc["clear_count"], json!(0));
    let actions = app
        .wait_for("/api/v1/actions", |doc| {
            doc["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["status"] == json!("failed"))
        })
        .await;
    let failed = actions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["status"] == json!("failed"))
        .unwrap();
    assert_eq!(failed["address"], json!("nobody@example.org"));
}

#[tokio::test]
async fn approval_mode_waits_for_admin() {
    let (app, fake) = start_with_okta(&[("BOUNCEWATCH_APPROVAL_MODE", "true")]).await;
    app.deliver(&envelope(vec![event(
        "c0000000-0000-4000-8000-000000000001",
        &at(0),
        "bounce",
        "x@example.org",
        USER_UNKNOWN,
    )]))
    .await;
    let (status, body) = app
        .admin_post("/api/v1/addresses/x%40example.org/clear", &json!({}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["status"], json!("awaiting_approval"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(fake.accepted_removals().is_empty());
    let id = body["id"].as_str().unwrap();
    let (status, _) = app
        .admin_post(&format!("/api/v1/actions/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(wait_for_removals(&fake, 1).await, vec!["x@example.org"]);
}

#[tokio::test]
async fn simulate_reports_outage_and_clears() {
    let app = App::start(&[]).await;
    let path = app.path().join("export.json");
    let mut events = outage_and_recovery();
    events.push(events[0].clone());
    std::fs::write(&path, serde_json::to_vec(&events).unwrap()).unwrap();
    let output = app.command(&["simulate", path.to_str().unwrap(), "--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["would_clear"],
        json!(["one@example.net", "three@example.net", "two@example.net"])
    );
    assert_eq!(report["outages"][0]["domain"], json!("example.net"));
    assert_eq!(report["outages"][0]["start"], json!("2025-03-04T10:00:00Z"));
    assert_eq!(report["outages"][0]["end"], json!("2025-03-04T10:31:00Z"));
    assert_eq!(report["duplicates"], json!(1));
    let kept = report["kept"].as_array().unwrap();
    assert!(
        kept.iter()
            .all(|k| k["address"] != json!("gone@example.net")),
        "{kept:?}"
    );
}

#[tokio::test]
async fn simulate_reads_one_event_per_line() {
    let app = App::start(&[]).await;
    let path = app.path().join("export.ndjson");
    let lines: Vec<String> = outage_and_recovery()
        .iter()
        .map(|e| e.to_string())
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let output = app.command(&["simulate", path.to_str().unwrap(), "--format", "json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["would_clear"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn canary_clears_part_of_quiet_outage() {
    let (app, fake) = start_with_okta(&[
        ("BOUNCEWATCH_CANARY_COUNT", "2"),
        ("BOUNCEWATCH_CANARY_QUIET_HOURS", "1"),
    ])
    .await;
    app.deliver(&envelope(outage_and_recovery()[..4].to_vec()))
        .await;
    app.wait_for("/api/v1/domains/example.net", |doc| {
        doc["health"] == json!("outage")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(25);
    while fake.accepted_removals().len() < 2 {
        assert!(Instant::now() < deadline, "no canaries sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let removed = fake.accepted_removals();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        !removed.iter().any(|a| a.starts_with("gone")),
        "{removed:?}"
    );
}

#[tokio::test]
async fn loop_guard_holds_repeat_clear() {
    let (app, fake) = start_with_okta(&[]).await;
    app.deliver(&envelope(vec![event(
        "d0000000-0000-4000-8000-000000000001",
        &at(0),
        "bounce",
        "r@example.org",
        CONNECTION_REFUSED,
    )]))
    .await;
    let (status, _) = app
        .admin_post("/api/v1/addresses/r%40example.org/clear", &json!({}))
        .await;
    assert_eq!(status, 202);
    app.wait_for("/api/v1/addresses/r%40example.org", |doc| {
        doc["status"] == json!("cleared")
    })
    .await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    app.deliver(&envelope(vec![event(
        "d0000000-0000-4000-8000-000000000002",
        &now,
        "bounce",
        "r@example.org",
        CONNECTION_REFUSED,
    )]))
    .await;
    let (status, body) = app
        .admin_post("/api/v1/addresses/r%40example.org/clear", &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], json!("loop_guard"));
    let (status, _) = app
        .admin_post(
            "/api/v1/addresses/r%40example.org/clear?force=true",
            &json!({}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(wait_for_removals(&fake, 2).await.len(), 2);
}

#[tokio::test]
async fn okta_forbidden_stops_clearing_until_resumed() {
    let (app, fake) = start_with_okta(&[]).await;
    fake.fail_next(1, Fault::Forbidden);
    app.deliver(&envelope(vec![event(
        "e0000000-0000-4000-8000-000000000001",
        &at(0),
        "bounce",
        "f@example.org",
        CONNECTION_REFUSED,
    )]))
    .await;
    let (status, _) = app
        .admin_post("/api/v1/addresses/f%40example.org/clear", &json!({}))
        .await;
    assert_eq!(status, 202);
    let settings = app
        .wait_for("/api/v1/rules/settings", |doc| {
            doc["stopped_by_okta"].is_string()
        })
        .await;
    assert!(
        settings["stopped_by_okta"]
            .as_str()
            .unwrap()
            .contains("okta.orgs.manage"),
        "{settings}"
    );
    let (_, doc) = app.admin_get("/api/v1/addresses/f%40example.org").await;
    assert_eq!(doc["status"], json!("clearing"));

    let response = app
        .http
        .patch(format!("{}/api/v1/rules/settings", app.base))
        .bearer_auth(crate::support::app::ADMIN_TOKEN)
        .json(&json!({"resume_after_forbidden": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(wait_for_removals(&fake, 1).await, vec!["f@example.org"]);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (app, fake) = start_with_okta(&[]).await;
    fake.fail_next(2, Fault::ServerError(503));
    app.deliver(&envelope(vec![event(
        "e1000000-0000-4000-8000-000000000001",
        &at(0),
        "bounce",
        "s@example.org",
        CONNECTION_REFUSED,
    )]))
    .await;
    let (status, _) = app
        .admin_post("/api/v1/addresses/s%40example.org/clear", &json!({}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(wait_for_removals(&fake, 1).await, vec!["s@example.org"]);
}
