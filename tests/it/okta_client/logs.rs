//! System Log paging and backfill against the fake's `/api/v1/logs`.

use std::sync::{Arc, Mutex};

use bouncewatch::okta::logs::BackfillError;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::api_token_client;
use crate::support::fake_okta::FakeOkta;

const LOGS: &str = "/api/v1/logs";

fn delivery_event(index: usize, published: DateTime<Utc>) -> Value {
    json!({
        "uuid": format!("uuid-{index}"),
        "published": published.to_rfc3339_opts(SecondsFormat::Millis, true),
        "eventType": "system.email.delivery",
    })
}

/// Loads `count` delivery events one minute apart, starting an hour ago, plus one event of
/// another type that the filter must drop.
fn load_deliveries(fake: &FakeOkta, count: usize) -> DateTime<Utc> {
    let start = Utc::now() - Duration::hours(1);
    let mut events: Vec<Value> = (0..count)
        .map(|index| delivery_event(index, start + Duration::minutes(index as i64)))
        .collect();
    events.push(json!({
        "uuid": "uuid-other",
        "published": (start + Duration::seconds(30)).to_rfc3339(),
        "eventType": "user.session.start",
    }));
    fake.load_events(events);
    start
}

/// Runs a backfill and returns the uuids of each page passed to the callback.
async fn collect_pages(
    fake: &FakeOkta,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    limit: u32,
) -> Result<Vec<Vec<String>>, BackfillError> {
    let client = api_token_client(fake);
    let pages = Arc::new(Mutex::new(Vec::new()));
    let sink = pages.clone();
    client
        .backfill(since, until, limit, move |events| {
            let sink = sink.clone();
            async move {
                let uuids = events
                    .iter()
                    .map(|event| event["uuid"].as_str().unwrap().to_string())
                    .collect();
                sink.lock().unwrap().push(uuids);
                Ok(())
            }
        })
        .await?;
    let pages = pages.lock().unwrap().clone();
    Ok(pages)
}

#[tokio::test]
async fn polling_backfill_stops_at_empty_page() {
    let fake = FakeOkta::start().await;
    let start = load_deliveries(&fake, 7);

    let pages = collect_pages(&fake, start, None, 3)
        .await
        .expect("backfill succeeds");

    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(pages[0][0], "uuid-0");
    assert_eq!(pages[2][0], "uuid-6");
    assert_eq!(
        fake.requests_to(LOGS).len(),
        4,
        "three pages and one empty page"
    );
}

#[tokio::test]
async fn bounded_backfill_stops_without_next_link() {
    let fake = FakeOkta::start().await;
    let start = load_deliveries(&fake, 9);
    let until = start + Duration::minutes(8);

    let pages = collect_pages(&fake, start, Some(until), 3)
        .await
        .expect("backfill succeeds");

    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![3, 3, 2], "until excludes the ninth event");
    assert_eq!(
        fake.requests_to(LOGS).len(),
        3,
        "no request after the last next link"
    );
}

#[tokio::test]
async fn first_request_carries_documented_query() {
    let fake = FakeOkta::start().await;
    let start = load_deliveries(&fake, 1);

    collect_pages(&fake, start, None, 50)
        .await
        .expect("backfill succeeds");

    let query = fake.requests_to(LOGS)[0].query.clone().unwrap_or_default();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(
        value("filter").as_deref(),
        Some("eventType eq \"system.email.delivery\"")
    );
    assert_eq!(
        value("since"),
        Some(start.to_rfc3339_opts(SecondsFormat::Millis, true))
    );
    assert_eq!(value("limit").as_deref(), Some("50"));
    assert_eq!(value("sortOrder").as_deref(), Some("ASCENDING"));
    assert_eq!(value("until"), None);
}

#[tokio::test]
async fn next_pages_use_cursor_link() {
    let fake = FakeOkta::start().await;
    let start = load_deliveries(&fake, 4);

    collect_pages(&fake, start, None, 2)
        .await
        .expect("backfill succeeds");

    let second = fake.requests_to(LOGS)[1].query.clone().unwrap_or_default();
    assert!(second.contains("after="), "{second}");
    assert!(
        !second.contains("since="),
        "after cannot be combined with since: {second}"
    );
}

#[tokio::test]
async fn since_too_old_rejected_clearly() {
    let fake = FakeOkta::start().await;
    let since = Utc::now() - Duration::days(200);

    let error = collect_pages(&fake, since, None, 10)
        .await
        .expect_err("since is too old");

    let message = error.to_string();
    assert!(
        matches!(&error, BackfillError::SinceRejected { code, .. } if code == "E0000053"),
        "{error:?}"
    );
    assert!(message.contains("since="), "{message}");
    assert!(message.contains("90 days"), "{message}");
    assert!(message.contains("180 days"), "{message}");
}

#[tokio::test]
async fn callback_error_stops_backfill() {
    let fake = FakeOkta::start().await;
    let start = load_deliveries(&fake, 4);
    let client = api_token_client(&fake);

    let result = client
        .backfill(start, None, 2, |_events| async {
            Err(anyhow::anyhow!("store is full"))
        })
        .await;

    assert!(
        matches!(result, Err(BackfillError::Callback(_))),
        "{result:?}"
    );
    assert_eq!(fake.requests_to(LOGS).len(), 1);
}
