//! The on-call engineer's tools through the real binary: retention, the event endpoint,
//! erasure, export and import, replay, status, domains and bulk clear, each against a running
//! service and, where the command supports it, against a stopped one.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::app::{binary, envelope, event, App, ADMIN_TOKEN};

const CONNECTION_REFUSED: &str = "421 4.4.1 Connection refused by mx.example.net[192.0.2.10]:25";
const USER_UNKNOWN: &str = "550 5.1.1 The email account that you tried to reach does not exist";

/// Exit status, stdout and stderr of one command.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Outcome {
        Outcome {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn run(app: &App, args: &[&str]) -> Outcome {
    tokio::task::block_in_place(|| app.command(args)).into()
}

/// Runs a command with the app's settings and some of them replaced.
fn run_with(app: &App, overrides: &[(&str, &str)], args: &[&str]) -> Outcome {
    let mut env = app.env.clone();
    for (key, value) in overrides {
        env.retain(|(name, _)| name != key);
        env.push((key.to_string(), value.to_string()));
    }
    let output = tokio::task::block_in_place(|| {
        Command::new(binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(app.path())
            .output()
            .unwrap()
    });
    output.into()
}

fn days_ago(days: i64) -> String {
    (Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn minutes_ago(minutes: i64) -> String {
    (Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn uuid(n: u32) -> String {
    format!("c0000000-0000-4000-8000-{n:012}")
}

async fn deliver(app: &App, events: Vec<Value>) {
    let response = app.deliver(&envelope(events)).await;
    assert_eq!(response.status().as_u16(), 200);
}

/// Polls an admin path until it returns `status`, for at most ten seconds.
async fn wait_for_status(app: &App, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (answer, body) = app.admin_get(path).await;
        if answer == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {status} on {path}; last answer {answer} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_delete(app: &App, path: &str) -> u16 {
    app.http
        .delete(format!("{}{path}", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Three connection failures from two addresses of example.net: an outage by the defaults.
fn outage_events() -> Vec<Value> {
    vec![
        event(
            &uuid(101),
            &minutes_ago(30),
            "bounce",
            "one@example.net",
            CONNECTION_REFUSED,
        ),
        event(
            &uuid(102),
            &minutes_ago(29),
            "bounce",
            "two@example.net",
            CONNECTION_REFUSED,
        ),
        event(
            &uuid(103),
            &minutes_ago(28),
            "bounce",
            "one@example.net",
            CONNECTION_REFUSED,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_events() {
    let mut app = App::start(&[]).await;
    let old = event(
        &uuid(1),
        &days_ago(3),
        "bounce",
        "r@example.com",
        USER_UNKNOWN,
    );
    let new = event(
        &uuid(2),
        &minutes_ago(5),
        "delivered",
        "r@example.com",
        "250 OK",
    );
    deliver(&app, vec![old.clone(), new]).await;
    let (status, _) = app.admin_get(&format!("/api/v1/events/{}", uuid(1))).await;
    assert_eq!(status, 200, "kept under the default of 90 days");

    // The pass at start prunes with the new setting. The next pass is 300 s away.
    app.kill();
    app.env
        .push(("BOUNCEWATCH_RETENTION_DAYS".to_string(), "1".to_string()));
    app.spawn().await;
    wait_for_status(&app, &format!("/api/v1/events/{}", uuid(1)), 404).await;
    let (status, stored) = app.admin_get(&format!("/api/v1/events/{}", uuid(2))).await;
    assert_eq!(status, 200);
    assert_eq!(stored["uuid"], json!(uuid(2)));
    let (_, address) = app.admin_get("/api/v1/addresses/r%40example.com").await;
    let history: Vec<&str> = address["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(history, vec![uuid(2).as_str()]);
    assert_eq!(address["status"], json!("delivered"));

    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bouncewatch_retention_pruned_total{kind=\"events\"} 1"),
        "{metrics}"
    );

    // The uuid record went with the event, so a second delivery is stored as new.
    deliver(&app, vec![old]).await;
    let (status, _) = app.admin_get(&format!("/api/v1/events/{}", uuid(1))).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_endpoint_unknown_uuid_is_404() {
    let app = App::start(&[]).await;
    let (status, body) = app.admin_get("/api/v1/events/no-such-uuid").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], json!("not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_removes_address_and_records_digest() {
    let app = App::start(&[]).await;
    deliver(
        &app,
        vec![
            event(
                &uuid(11),
                &minutes_ago(9),
                "bounce",
                "Erin@Example.com",
                USER_UNKNOWN,
            ),
            event(
                &uuid(12),
                &minutes_ago(8),
                "bounce",
                "erin@example.com",
                USER_UNKNOWN,
            ),
            event(
                &uuid(13),
                &minutes_ago(7),
                "delivered",
                "kept@example.com",
                "250 OK",
            ),
        ],
    )
    .await;
    let (status, _) = app
        .admin_post("/api/v1/addresses/erin%40example.com/clear", &json!({}))
        .await;
    assert_eq!(status, 202);

    assert_eq!(
        admin_delete(&app, "/api/v1/addresses/erin%40example.com").await,
        204
    );

    let (status, _) = app.admin_get("/api/v1/addresses/erin%40example.com").await;
    assert_eq!(status, 404);
    for erased in [uuid(11), uuid(12)] {
        let (status, _) = app.admin_get(&format!("/api/v1/events/{erased}")).await;
        assert_eq!(status, 404, "event {erased} survived the erasure");
    }
    let (status, _) = app.admin_get(&format!("/api/v1/events/{}", uuid(13))).await;
    assert_eq!(status, 200);
    let (_, listed) = app.admin_get("/api/v1/addresses?domain=example.com").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    let (_, actions) = app.admin_get("/api/v1/actions").await;
    let text = actions.to_string();
    assert!(!text.contains("erin@example.com"), "{text}");
    let erased = actions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|action| action["kind"] == json!("erased"))
        .expect("an erased action");
    assert_eq!(erased["address"], json!("e***@example.com"));
    let digest = hex::encode(Sha256::digest(b"erin@example.com"));
    assert_eq!(erased["result"], json!(format!("sha256:{digest}")));

    let (_, status_doc) = app.admin_get("/api/v1/status").await;
    assert_eq!(status_doc["clears"]["pending"], json!(0));
    assert_eq!(
        admin_delete(&app, "/api/v1/addresses/erin%40example.com").await,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_command_with_and_without_service() {
    let mut app = App::start(&[]).await;
    deliver(
        &app,
        vec![
            event(
                &uuid(21),
                &minutes_ago(5),
                "bounce",
                "a@example.org",
                USER_UNKNOWN,
            ),
            event(
                &uuid(22),
                &minutes_ago(5),
                "bounce",
                "b@example.org",
                USER_UNKNOWN,
            ),
        ],
    )
    .await;

    let outcome = run(&app, &["erase", "A@example.org"]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("a***@example.org"),
        "{}",
        outcome.stdout
    );
    let (status, _) = app.admin_get("/api/v1/addresses/a%40example.org").await;
    assert_eq!(status, 404);

    app.kill();
    let outcome = run(&app, &["erase", "b@example.org"]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(outcome.stdout.contains("1 events"), "{}", outcome.stdout);
    let outcome = run(&app, &["erase", "b@example.org"]);
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("nothing to erase"),
        "{}",
        outcome.stderr
    );

    app.spawn().await;
    let (status, _) = app.admin_get("/api/v1/addresses/b%40example.org").await;
    assert_eq!(status, 404);
    let (status, _) = app.admin_get(&format!("/api/v1/events/{}", uuid(22))).await;
    assert_eq!(status, 404);
}

fn header_of(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(text.lines().next().expect("a header line")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_round_trip() {
    let mut app = App::start(&[]).await;
    deliver(
        &app,
        vec![event(
            &uuid(31),
            &minutes_ago(5),
            "bounce",
            "x@example.com",
            USER_UNKNOWN,
        )],
    )
    .await;
    let (status, _) = app
        .admin_post("/api/v1/addresses/x%40example.com/clear", &json!({}))
        .await;
    assert_eq!(status, 202);

    let live = app.path().join("live.ndjson");
    let outcome = run(&app, &["export", live.to_str().unwrap()]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert_eq!(header_of(&live)["schema_version"], json!(1));
    assert!(std::fs::read_to_string(&live).unwrap().lines().count() > 5);

    let outcome = run(&app, &["import", live.to_str().unwrap()]);
    assert!(!outcome.success);
    assert!(outcome.stderr.contains("stop it"), "{}", outcome.stderr);

    app.kill();
    let stopped = app.path().join("stopped.ndjson");
    let outcome = run(&app, &["export", stopped.to_str().unwrap()]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert_eq!(header_of(&stopped)["format"], json!("bouncewatch-export"));

    let outcome = run(&app, &["import", stopped.to_str().unwrap()]);
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("already holds"),
        "{}",
        outcome.stderr
    );

    let fresh = app.path().join("fresh");
    let fresh_dir = fresh.to_str().unwrap();
    let data = [("BOUNCEWATCH_DATA_DIR", fresh_dir)];
    let outcome = run_with(&app, &data, &["import", stopped.to_str().unwrap()]);
    assert!(outcome.success, "{}", outcome.stderr);

    let imported = App::start(&data).await;
    let (status, doc) = imported
        .admin_get("/api/v1/addresses/x%40example.com")
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], json!("clearing"));
    let (status, _) = imported
        .admin_get(&format!("/api/v1/events/{}", uuid(31)))
        .await;
    assert_eq!(status, 200);

    // Ids continue after the imported ones, so a new action overwrites none of them.
    let (_, before) = imported.admin_get("/api/v1/actions").await;
    let (status, _) = imported
        .admin_post(
            "/api/v1/addresses/x%40example.com/clear?force=true",
            &json!({}),
        )
        .await;
    assert_eq!(status, 202);
    let (_, after) = imported.admin_get("/api/v1/actions").await;
    assert_eq!(
        after["items"].as_array().unwrap().len(),
        before["items"].as_array().unwrap().len() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_rejects_other_schema_and_garbage() {
    let mut app = App::start(&[]).await;
    app.kill();
    let data = [("BOUNCEWATCH_DATA_DIR", "new-data")];

    let other = app.path().join("other.ndjson");
    std::fs::write(
        &other,
        "{\"format\":\"bouncewatch-export\",\"schema_version\":2,\"tree\":\"bouncewatch-v2\",\
         \"exported_at\":\"2025-01-15T10:00:00Z\",\"next_id\":9}\n",
    )
    .unwrap();
    let outcome = run_with(&app, &data, &["import", other.to_str().unwrap()]);
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("schema version 2"),
        "{}",
        outcome.stderr
    );

    let garbage = app.path().join("garbage.ndjson");
    std::fs::write(&garbage, "[1, 2, 3]\n").unwrap();
    let outcome = run_with(&app, &data, &["import", garbage.to_str().unwrap()]);
    assert!(!outcome.success);
    assert!(outcome.stderr.contains("line 1"), "{}", outcome.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_queues_rules_work() {
    let mut app = App::start(&[]).await;
    deliver(
        &app,
        vec![
            event(
                &uuid(41),
                &minutes_ago(5),
                "delivered",
                "a@one.example",
                "250 OK",
            ),
            event(
                &uuid(42),
                &minutes_ago(5),
                "delivered",
                "a@two.example",
                "250 OK",
            ),
        ],
    )
    .await;

    let outcome = run(&app, &["replay"]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("queued 2 domains"),
        "{}",
        outcome.stdout
    );
    let outcome = run(&app, &["replay", "--domain", "nowhere.example"]);
    assert!(!outcome.success);
    assert!(outcome.stderr.contains("404"), "{}", outcome.stderr);
    app.wait_for("/api/v1/status", |doc| doc["queues"]["rules"] == json!(0))
        .await;

    app.kill();
    let outcome = run(&app, &["replay", "--domain", "ONE.example"]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("queued 1 domains"),
        "{}",
        outcome.stdout
    );
    let outcome = run(&app, &["status", "--format", "json"]);
    assert!(outcome.success, "{}", outcome.stderr);
    let status: Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(status["queues"]["rules"], json!(1));
    assert_eq!(status["service"]["running"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_domains_show_outage() {
    let mut app = App::start(&[]).await;
    let mut events = outage_events();
    events.push(event(
        &uuid(104),
        &minutes_ago(5),
        "delivered",
        "a@quiet.example",
        "250 OK",
    ));
    deliver(&app, events).await;
    app.wait_for("/api/v1/domains/example.net", |doc| {
        doc["health"] == json!("outage")
    })
    .await;

    let doc = app
        .wait_for("/api/v1/status", |doc| doc["queues"]["rules"] == json!(0))
        .await;
    assert_eq!(doc["domains_in_outage"], json!(["example.net"]));
    assert_eq!(doc["clears"]["pending"], json!(0));

    let outcome = run(&app, &["status"]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(outcome.stdout.contains("running at"), "{}", outcome.stdout);
    assert!(
        outcome.stdout.contains("outages    example.net"),
        "{}",
        outcome.stdout
    );

    let outcome = run(&app, &["domains", "--limit", "1"]);
    assert!(outcome.success, "{}", outcome.stderr);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", outcome.stdout);
    assert!(lines[0].starts_with("DOMAIN"), "{}", outcome.stdout);
    assert!(
        lines[1].starts_with("example.net  outage  3"),
        "{}",
        outcome.stdout
    );

    app.kill();
    let outcome = run(&app, &["domains", "--format", "json"]);
    assert!(outcome.success, "{}", outcome.stderr);
    let listed: Value = serde_json::from_str(&outcome.stdout).unwrap();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["domain"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["example.net", "quiet.example"]);
    let outcome = run(&app, &["status"]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(outcome.stdout.contains("not running"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("example.net"), "{}", outcome.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_command_reports_each_address() {
    let mut app = App::start(&[]).await;
    deliver(
        &app,
        vec![
            event(
                &uuid(51),
                &minutes_ago(5),
                "bounce",
                "c1@example.com",
                USER_UNKNOWN,
            ),
            event(
                &uuid(52),
                &minutes_ago(5),
                "bounce",
                "c2@example.com",
                USER_UNKNOWN,
            ),
        ],
    )
    .await;

    let outcome = run(&app, &["clear", "c1@example.com"]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("c1@example.com  queued"),
        "{}",
        outcome.stdout
    );

    let csv = app.path().join("clear.csv");
    std::fs::write(
        &csv,
        "name,email\nTwo,c2@example.com\nNobody,nobody@example.com\n",
    )
    .unwrap();
    let outcome = run(
        &app,
        &["clear", "--file", csv.to_str().unwrap(), "not-an-address"],
    );
    assert!(!outcome.success);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", outcome.stdout);
    assert!(
        outcome.stdout.contains("not-an-address"),
        "{}",
        outcome.stdout
    );
    assert!(outcome.stdout.contains("invalid"), "{}", outcome.stdout);
    assert!(
        outcome.stdout.contains("nobody@example.com  not_found"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("c2@example.com      queued"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stderr.contains("2 of 3 addresses"),
        "{}",
        outcome.stderr
    );
    let (_, doc) = app.admin_get("/api/v1/addresses/c2%40example.com").await;
    assert_eq!(doc["status"], json!("clearing"));

    app.kill();
    let outcome = run(&app, &["clear", "c1@example.com"]);
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("needs the running service"),
        "{}",
        outcome.stderr
    );
}
