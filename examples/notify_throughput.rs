//! Measures how fast bouncewatch sends `email.delivery` notifications to a loopback receiver,
//! next to the limit of plain reqwest POSTs to the same receiver, and the delay from the hook's
//! 200 to the notification's arrival at light load.
//!
//!     cargo run --release --example notify_throughput -- target/release/bouncewatch [EVENTS]
//!
//! Steps: (a) start an axum receiver on 127.0.0.1 that responds with 200 and records when each
//! notification arrives, by `data.event_uuid`. (c) Start the bouncewatch binary with
//! `BOUNCEWATCH_FORWARD_ALLOW_PRIVATE=true`, subscribe the receiver to `email.delivery` through
//! the admin API, post EVENTS (default 20,000) delivered events through the hook in requests of
//! 100, and time until the receiver has all EVENTS notifications. (b) Time EVENTS reqwest POSTs
//! of the mean notification body size to the same receiver, 16 at a time. Last, post one event
//! every 50 ms for 30 s and report p50 and p99 of the delay from each hook 200 to its
//! notification.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

const HOOK_SECRET: &str = "example-secret";
const ADMIN_TOKEN: &str = "example-admin-token";
const SUBSCRIPTION_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+7YJ6wk2GfE=";
const BATCH: usize = 100;
const LIMIT_CONCURRENCY: usize = 16;

#[derive(Default)]
struct Received {
    /// Arrival time of each `email.delivery`, by the event uuid in its data.
    arrivals: Mutex<HashMap<String, Instant>>,
    deliveries: AtomicU64,
    body_bytes: AtomicU64,
    other_requests: AtomicU64,
    changed: Notify,
}

async fn receive(State(received): State<Arc<Received>>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let kind = parsed.as_ref().and_then(|v| v["type"].as_str());
    let uuid = parsed
        .as_ref()
        .and_then(|v| v["data"]["event_uuid"].as_str());
    match (kind, uuid) {
        (Some("email.delivery"), Some(uuid)) => {
            received
                .arrivals
                .lock()
                .unwrap()
                .insert(uuid.to_string(), now);
            received.deliveries.fetch_add(1, Ordering::Relaxed);
            received
                .body_bytes
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            received.changed.notify_waiters();
        }
        _ => {
            received.other_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
    StatusCode::OK
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn event(uuid: &str, address: &str, published: &str) -> Value {
    json!({
        "uuid": uuid, "published": published, "eventType": "system.email.delivery",
        "version": "0", "severity": "INFO", "legacyEventType": null,
        "displayMessage": "Email delivery SUCCESS: delivered",
        "actor": {"id": "0oa1system0example", "type": "SystemPrincipal",
                  "alternateId": "system@example.okta.com", "displayName": "Okta System"},
        "outcome": {"result": "SUCCESS", "reason": "delivered"},
        "target": [{"id": "00u1example0user0001", "type": "User", "alternateId": address,
                    "displayName": "Example User"}],
        "transaction": {"type": "JOB", "id": "job1example", "detail": {}},
        "debugContext": {"debugData": {"deliveryStatus": "DELIVERED",
                         "providerMessage": "250 2.0.0 OK", "emailTemplate": "ActivationEmail"}},
    })
}

fn envelope(events: Vec<Value>, id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "eventType": "com.okta.event_hook", "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1", "eventId": id,
        "source": "https://example.okta.com/api/v1/eventHooks/who1example",
        "data": {"events": events}, "contentType": "application/json",
    }))
    .unwrap()
}

fn published(n: usize) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z").unwrap();
    let at = base + chrono::Duration::milliseconds(n as i64);
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

struct Service {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_service(binary: &str, client: &reqwest::Client) -> Service {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg("serve")
        .env("BOUNCEWATCH_LISTEN", format!("127.0.0.1:{port}"))
        .env("BOUNCEWATCH_DATA_DIR", data.path())
        .env("BOUNCEWATCH_HOOK_SECRET", HOOK_SECRET)
        .env("BOUNCEWATCH_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("BOUNCEWATCH_FORWARD_ALLOW_PRIVATE", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the bouncewatch binary failed");
    // Wrapped at once, so the process is killed and reaped on every path, a panic included.
    let service = Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _data: data,
    };
    for _ in 0..200 {
        if client
            .get(format!("{}/healthz", service.base))
            .send()
            .await
            .is_ok()
        {
            return service;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bouncewatch did not respond on /healthz within 10 s");
}

async fn post_hook(client: &reqwest::Client, base: &str, body: Vec<u8>) -> Instant {
    let response = client
        .post(format!("{base}/okta/events"))
        .header("Authorization", HOOK_SECRET)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("hook request failed");
    let answered = Instant::now();
    assert!(
        response.status().is_success(),
        "hook returned {}",
        response.status()
    );
    answered
}

async fn wait_for(received: &Received, count: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while received.deliveries.load(Ordering::Relaxed) < count {
        let notified = received.changed.notified();
        if Instant::now() > deadline {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
    true
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .expect("usage: notify_throughput PATH/TO/bouncewatch [EVENTS]");
    let events: usize = args.next().map_or(20_000, |n| n.parse().expect("EVENTS"));

    // (a) The receiver.
    let received = Arc::new(Received::default());
    let app = Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let receiver_url = format!("http://{receiver}/hooks");

    let client = reqwest::Client::new();
    let service = start_service(&binary, &client).await;
    let created = client
        .post(format!("{}/api/v1/subscriptions", service.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"url": receiver_url, "secret": SUBSCRIPTION_SECRET,
                      "kinds": ["email.delivery"]}))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "subscription create returned {}: {}",
        created.status(),
        created.text().await.unwrap_or_default()
    );

    // (c) bouncewatch: EVENTS events through the hook, then wait for every notification.
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    let requests = events / BATCH;
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..4 {
        let client = client.clone();
        let base = service.base.clone();
        let next = Arc::clone(&next);
        posts.spawn(async move {
            loop {
                let request = next.fetch_add(1, Ordering::Relaxed) as usize;
                if request >= requests {
                    return;
                }
                let batch = (0..BATCH)
                    .map(|i| {
                        let n = request * BATCH + i;
                        let uuid = format!("00000000-0000-4000-8000-{n:012x}");
                        let address = format!("user{}@d{:04}.example", n % 50_000, n % 2_000);
                        event(&uuid, &address, &published(n))
                    })
                    .collect();
                post_hook(&client, &base, envelope(batch, &format!("bulk-{request}"))).await;
            }
        });
    }
    while posts.join_next().await.is_some() {}
    let ingested = started.elapsed();
    let sent = (requests * BATCH) as u64;
    let complete = wait_for(&received, sent, Duration::from_secs(300)).await;
    let product_seconds = started.elapsed().as_secs_f64();
    let delivered = received.deliveries.load(Ordering::Relaxed);
    println!(
        "bouncewatch: {sent} events ingested in {:.2} s; {delivered} email.delivery notifications \
         received in {product_seconds:.2} s ({:.0}/s){}",
        ingested.as_secs_f64(),
        delivered as f64 / product_seconds,
        if complete { "" } else { " (timed out)" }
    );
    let mean_body = (received.body_bytes.load(Ordering::Relaxed) / delivered.max(1)) as usize;

    // (b) The limit: the same count of POSTs with the mean body size, 16 at a time.
    let limit_body = Bytes::from(vec![b'x'; mean_body]);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..LIMIT_CONCURRENCY {
        let client = client.clone();
        let url = format!("http://{receiver}/limit");
        let body = limit_body.clone();
        let next = Arc::clone(&next);
        posts.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < sent {
                let response = client.post(&url).body(body.clone()).send().await.unwrap();
                assert!(response.status().is_success());
            }
        });
    }
    while posts.join_next().await.is_some() {}
    let limit_seconds = started.elapsed().as_secs_f64();
    println!(
        "limit: {sent} reqwest POSTs of {mean_body} bytes, {LIMIT_CONCURRENCY} concurrent, in \
         {limit_seconds:.2} s ({:.0}/s); ratio {:.3}",
        sent as f64 / limit_seconds,
        (delivered as f64 / product_seconds) / (sent as f64 / limit_seconds)
    );

    // Delay from the hook's 200 to the notification, one event every 50 ms for 30 s.
    let mut answered: Vec<(String, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let offset = events + 1_000_000;
    for i in 0..600 {
        tick.tick().await;
        let n = offset + i;
        let uuid = format!("00000000-0000-4000-8111-{n:012x}");
        let address = format!("light{i}@d{:04}.example", i % 2_000);
        let body = envelope(vec![event(&uuid, &address, &published(n))], &uuid);
        answered.push((uuid, post_hook(&client, &service.base, body).await));
    }
    wait_for(&received, delivered + 600, Duration::from_secs(30)).await;
    let arrivals = received.arrivals.lock().unwrap();
    let mut delays: Vec<f64> = answered
        .iter()
        .filter_map(|(uuid, at)| {
            arrivals
                .get(uuid)
                .map(|arrived| arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    println!(
        "delay from hook 200 to notification at 20 events/s: {} of 600 arrived, p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "requests at the receiver that were not email.delivery (the limit POSTs): {}",
        received.other_requests.load(Ordering::Relaxed)
    );
    drop(service);
}
