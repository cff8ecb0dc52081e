//! Gap-fill and hook health through the real binary against the fake Okta org on 127.0.0.1,
//! with a one-second interval and lag so runs follow each other quickly.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::support::app::{envelope, event, App};
use crate::support::fake_okta::{FakeOkta, Fault, API_TOKEN};

const FAST: &[(&str, &str)] = &[
    ("BOUNCEWATCH_GAP_FILL_INTERVAL_SECS", "1"),
    ("BOUNCEWATCH_GAP_FILL_LAG_SECS", "1"),
];

async fn start_with_okta(okta: &FakeOkta, extra: &[(&str, &str)]) -> App {
    let org_url = okta.base_url().to_string();
    let mut settings = vec![
        ("BOUNCEWATCH_OKTA_ORG_URL", org_url.as_str()),
        ("BOUNCEWATCH_OKTA_API_TOKEN", API_TOKEN),
    ];
    settings.extend_from_slice(extra);
    App::start(&settings).await
}

fn minutes_ago(minutes: i64) -> String {
    format_time(Utc::now() - chrono::Duration::minutes(minutes))
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Query pairs of the first-page System Log requests (those without `after`) whose filter
/// names `event_type`, in the order received.
fn first_page_queries(okta: &FakeOkta, event_type: &str) -> Vec<Vec<(String, String)>> {
    let filter = format!("eventType eq \"{event_type}\"");
    okta.requests_to("/api/v1/logs")
        .iter()
        .map(|request| {
            let query = request.query.clone().unwrap_or_default();
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .filter(|pairs| !pairs.iter().any(|(name, _)| name == "after"))
        .filter(|pairs| {
            pairs
                .iter()
                .any(|(name, value)| name == "filter" && *value == filter)
        })
        .collect()
}

fn query_time(pairs: &[(String, String)], name: &str) -> DateTime<Utc> {
    let text = pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("{name} missing from {pairs:?}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn readyz(app: &App) -> (u16, Value) {
    let response = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `/readyz` until `check` accepts the body, for at most fifteen seconds.
async fn wait_for_readyz(app: &App, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = readyz(app).await;
        assert_eq!(status, 200, "{body}");
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on /readyz; last body {body}; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(app: &App, line_start: &str) -> Option<f64> {
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|rest| rest.trim().parse().ok())
}

fn runs_finished(body: &Value) -> bool {
    body["gap_fill"]["last_run_finished_at"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_fill_stores_without_hook() {
    let okta = FakeOkta::start().await;
    okta.load_events(vec![
        event(
            "g1",
            &minutes_ago(20),
            "bounce",
            "a@example.com",
            "550 5.1.1 user unknown",
        ),
        event(
            "g2",
            &minutes_ago(10),
            "delivered",
            "b@example.com",
            "250 OK",
        ),
    ]);
    let started = Utc::now();
    let app = start_with_okta(&okta, FAST).await;

    let doc = app
        .wait_for("/api/v1/addresses/a%40example.com", |doc| {
            doc["status"] == json!("bounced")
        })
        .await;
    assert_eq!(doc["event_count"], json!(1));
    app.wait_for("/api/v1/addresses/b%40example.com", |doc| {
        doc["status"] == json!("delivered")
    })
    .await;

    let queries = first_page_queries(&okta, "system.email.delivery");
    let first = queries.first().expect("a delivery query");
    let since = query_time(first, "since");
    let until = query_time(first, "until");
    let hour_back = started - chrono::Duration::hours(1);
    assert!(
        since >= hour_back - chrono::Duration::seconds(5)
            && since <= hour_back + chrono::Duration::seconds(30),
        "the first run must start one hour back: since {since}, started {started}"
    );
    assert!(until > since, "until {until} must follow since {since}");
    assert_eq!(
        metric(&app, "bouncewatch_gap_fill_events_total ").await,
        Some(2.0)
    );
    let body = wait_for_readyz(&app, runs_finished).await;
    assert_eq!(body["gap_fill"]["enabled"], json!(true));
    assert!(body["gap_fill"]["checkpoint"].is_string(), "{body}");
    assert_eq!(
        body["hook"]["healthy"],
        json!(true),
        "events before the first run are not missed deliveries: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_fill_duplicates_collapse() {
    let okta = FakeOkta::start().await;
    let bounce = event(
        "d1",
        &minutes_ago(15),
        "bounce",
        "a@example.com",
        "550 5.1.1 user unknown",
    );
    okta.load_events(vec![bounce.clone()]);
    let mut settings = FAST.to_vec();
    settings.push(("BOUNCEWATCH_GAP_FILL", "false"));
    let mut app = start_with_okta(&okta, &settings).await;
    let response = app.deliver(&envelope(vec![bounce])).await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        okta.requests_to("/api/v1/logs").is_empty(),
        "gap_fill = false must send no System Log query"
    );

    app.terminate();
    app.env.retain(|(key, _)| key != "BOUNCEWATCH_GAP_FILL");
    app.spawn().await;
    wait_for_readyz(&app, runs_finished).await;

    let (status, doc) = app.admin_get("/api/v1/addresses/a%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(doc["event_count"], json!(1), "{doc}");
    assert_eq!(
        metric(&app, "bouncewatch_gap_fill_events_total ").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&app, "bouncewatch_gap_fill_duplicate_events_total ").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_survives_restart() {
    let okta = FakeOkta::start().await;
    okta.load_events(vec![event(
        "c1",
        &minutes_ago(30),
        "bounce",
        "a@example.com",
        "550 5.1.1 user unknown",
    )]);
    let started = Utc::now();
    let mut app = start_with_okta(&okta, FAST).await;
    wait_for_readyz(&app, runs_finished).await;
    app.terminate();
    let before_restart = first_page_queries(&okta, "system.email.delivery").len();

    app.spawn().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while first_page_queries(&okta, "system.email.delivery").len() <= before_restart {
        assert!(Instant::now() < deadline, "no run after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let queries = first_page_queries(&okta, "system.email.delivery");
    let first_since = query_time(&queries[0], "since");
    assert!(first_since < started - chrono::Duration::minutes(59));
    // Every later run starts at its checkpoint minus the one-second lag, and the first
    // checkpoint is the first run's until, which is no earlier than one lag before the start.
    let floor = started - chrono::Duration::seconds(3);
    for later in &queries[1..] {
        let since = query_time(later, "since");
        assert!(
            since >= floor,
            "a later run re-read from {since}, before the checkpoint {floor}"
        );
    }
    assert!(queries.len() > before_restart);
    let (status, doc) = app.admin_get("/api/v1/addresses/a%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(doc["event_count"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_events_mark_hook_unhealthy() {
    let okta = FakeOkta::start().await;
    let app = start_with_okta(&okta, FAST).await;
    wait_for_readyz(&app, runs_finished).await;

    // Published after the first run's range, so it counts as missed by the hook.
    okta.load_events(vec![event(
        "m1",
        &format_time(Utc::now()),
        "bounce",
        "late@example.com",
        "550 5.1.1 user unknown",
    )]);
    let body = wait_for_readyz(&app, |body| body["hook"]["healthy"] == json!(false)).await;
    assert_eq!(body["status"], json!("ready"));
    assert_eq!(body["hook"]["missed_events_found"], json!(1), "{body}");
    let reason = body["hook"]["reason"].as_str().unwrap();
    assert!(reason.contains("never delivered"), "{reason}");
    app.wait_for("/api/v1/addresses/late%40example.com", |doc| {
        doc["status"] == json!("bounced")
    })
    .await;
    assert_eq!(
        metric(&app, "bouncewatch_hook_missed_events_total ").await,
        Some(1.0)
    );
    assert_eq!(metric(&app, "bouncewatch_hook_healthy ").await, Some(0.0));
    // The monitor notices the change on its next one-second tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&app, "bouncewatch_hook_unhealthy_total ").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the monitor did not count the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let delivery = event(
        "m2",
        &format_time(Utc::now()),
        "delivered",
        "ok@example.com",
        "250 OK",
    );
    let response = app.deliver(&envelope(vec![delivery])).await;
    assert_eq!(response.status(), 200);
    let body = wait_for_readyz(&app, |body| body["hook"]["healthy"] == json!(true)).await;
    assert!(body["hook"]["last_delivery"].is_string(), "{body}");
    assert_eq!(body["hook"]["missed_events_found"], json!(1));
    assert!(
        metric(&app, "bouncewatch_hook_last_delivery_timestamp_seconds ")
            .await
            .is_some_and(|seconds| seconds > 0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_failure_event_marks_unhealthy() {
    let okta = FakeOkta::start().await;
    okta.load_events(vec![json!({
        "uuid": "f1",
        "published": minutes_ago(5),
        "eventType": "event_hook.delivery",
        "displayMessage": "Event hook delivery",
        "outcome": {"result": "FAILURE", "reason": "Read timed out"},
        "target": [{"id": "who1", "type": "EventHook", "displayName": "bouncewatch"}],
    })]);
    let app = start_with_okta(&okta, FAST).await;

    let body = wait_for_readyz(&app, |body| body["hook"]["healthy"] == json!(false)).await;
    assert_eq!(body["hook"]["delivery_failure_events"], json!(1), "{body}");
    let reason = body["hook"]["reason"].as_str().unwrap();
    assert!(reason.contains("event_hook.delivery"), "{reason}");
    assert!(reason.contains("Read timed out"), "{reason}");
    assert!(
        !first_page_queries(&okta, "event_hook.delivery").is_empty(),
        "no event_hook.delivery query sent"
    );

    // The overlap re-reads the same failure, which must not be counted twice.
    let queries = first_page_queries(&okta, "event_hook.delivery").len();
    let deadline = Instant::now() + Duration::from_secs(15);
    while first_page_queries(&okta, "event_hook.delivery").len() < queries + 2 {
        assert!(Instant::now() < deadline, "no further runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = readyz(&app).await;
    assert_eq!(body["hook"]["delivery_failure_events"], json!(1), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_spaced_by_interval() {
    let okta = FakeOkta::start().await;
    let mut settings = FAST.to_vec();
    settings.retain(|(key, _)| *key != "BOUNCEWATCH_GAP_FILL_INTERVAL_SECS");
    settings.push(("BOUNCEWATCH_GAP_FILL_INTERVAL_SECS", "2"));
    let _app = start_with_okta(&okta, &settings).await;
    tokio::time::sleep(Duration::from_millis(5500)).await;

    let times: Vec<_> = okta
        .requests_to("/api/v1/logs")
        .into_iter()
        .filter(|request| {
            request
                .query
                .as_deref()
                .is_some_and(|query| query.contains("system.email.delivery"))
        })
        .map(|request| request.received_at)
        .collect();
    assert!(
        (2..=3).contains(&times.len()),
        "expected 2 or 3 runs in 5.5 s at a 2 s interval, got {}",
        times.len()
    );
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(gap >= Duration::from_millis(1900), "runs {gap:?} apart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hook_unhealthy_until_delivery() {
    let app = App::start(&[("BOUNCEWATCH_HOOK_QUIET_ALERT_SECS", "1")]).await;
    let body = wait_for_readyz(&app, |body| body["hook"]["healthy"] == json!(false)).await;
    assert!(
        body["hook"]["reason"]
            .as_str()
            .unwrap()
            .contains("hook_quiet_alert_secs"),
        "{body}"
    );
    assert_eq!(body["gap_fill"]["enabled"], json!(false));

    let delivery = event(
        "q1",
        &format_time(Utc::now()),
        "delivered",
        "ok@example.com",
        "250 OK",
    );
    let response = app.deliver(&envelope(vec![delivery])).await;
    assert_eq!(response.status(), 200);
    let body = wait_for_readyz(&app, |body| body["hook"]["healthy"] == json!(true)).await;
    assert_eq!(body["hook"]["daily_events"], json!(1), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_query_waits_for_reset() {
    let okta = FakeOkta::start().await;
    okta.load_events(vec![event(
        "r1",
        &minutes_ago(10),
        "bounce",
        "a@example.com",
        "550 5.1.1 user unknown",
    )]);
    okta.fail_next(1, Fault::TooManyRequests);
    let app = start_with_okta(&okta, FAST).await;

    app.wait_for("/api/v1/addresses/a%40example.com", |doc| {
        doc["status"] == json!("bounced")
    })
    .await;
    assert_eq!(okta.issued_429_resets().len(), 1);
    let body = wait_for_readyz(&app, runs_finished).await;
    assert_eq!(body["gap_fill"]["last_error"], Value::Null, "{body}");
    assert_eq!(
        metric(&app, "bouncewatch_gap_fill_failures_total ").await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_keeps_checkpoint() {
    let okta = FakeOkta::start().await;
    okta.load_events(vec![event(
        "x1",
        &minutes_ago(10),
        "bounce",
        "a@example.com",
        "550 5.1.1 user unknown",
    )]);
    okta.fail_next(1, Fault::Forbidden);
    let app = start_with_okta(&okta, FAST).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&app, "bouncewatch_gap_fill_failures_total ").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the 403 was not counted as a failed run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.wait_for("/api/v1/addresses/a%40example.com", |doc| {
        doc["status"] == json!("bounced")
    })
    .await;

    let queries = first_page_queries(&okta, "system.email.delivery");
    assert!(queries.len() >= 2, "{queries:?}");
    let failed_since = query_time(&queries[0], "since");
    let retried_since = query_time(&queries[1], "since");
    assert!(
        retried_since - failed_since < chrono::Duration::seconds(10),
        "the run after the failure must start where the failed one did: {failed_since} then \
         {retried_since}"
    );
    let body = wait_for_readyz(&app, |body| body["gap_fill"]["last_error"].is_null()).await;
    assert!(body["gap_fill"]["checkpoint"].is_string(), "{body}");
}
