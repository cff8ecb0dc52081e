//! Crash safety: the real binary under concurrent hook load, killed with SIGKILL at random
//! moments and restarted on the same store. Every delivery that got a 200 must be readable after
//! the restart, and clears queued before a kill must still reach Okta afterwards.
//!
//! `BOUNCEWATCH_CRASH_ROUNDS` sets the number of kill rounds (default 20); docs/crash-testing.md
//! describes the longer run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;

use crate::support::app::{envelope, event, App, HOOK_SECRET};
use crate::support::fake_okta::{FakeOkta, Fault, API_TOKEN};

/// Tasks posting deliveries at the same time.
const WRITERS: usize = 4;
/// Events in each delivery.
const EVENTS_PER_DELIVERY: usize = 2;

fn rounds() -> usize {
    std::env::var("BOUNCEWATCH_CRASH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20)
}

/// One acknowledged event: its uuid and the address only it was sent to.
#[derive(Debug, Clone)]
struct Acked {
    uuid: String,
    address: String,
}

/// Posts distinct deliveries until `stop` is set, recording every event of each delivery that
/// got a 200. Returns the number of requests that failed (connection errors after the kill).
async fn post_until_stopped(
    base: String,
    round: usize,
    writer: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> usize {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut failed = 0;
    let mut sequence = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut events = Vec::new();
        for _ in 0..EVENTS_PER_DELIVERY {
            sequence += 1;
            let uuid = format!("c{round:04}-{writer:02}-{sequence:06}");
            let address = format!("{uuid}@crash.example");
            events.push(event(
                &uuid,
                "2025-02-01T10:00:00.000Z",
                "delivered",
                &address,
                "250 2.0.0 OK",
            ));
            batch.push(Acked { uuid, address });
        }
        let sent = http
            .post(format!("{base}/okta/events"))
            .header("Authorization", HOOK_SECRET)
            .json(&envelope(events))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().as_u16() == 200 => {
                acked.lock().unwrap().extend(batch);
            }
            Ok(_) | Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    failed
}

/// Checks that each acknowledged event shows in the admin API; returns the ones missing.
async fn missing(app: &App, acked: &[Acked]) -> Vec<String> {
    let mut missing = Vec::new();
    for item in acked {
        let path = format!("/api/v1/addresses/{}", item.address.replace('@', "%40"));
        let (status, body) = app.admin_get(&path).await;
        let count = body["event_count"].as_u64().unwrap_or(0);
        if status != 200 || count < 1 || body["last_event"]["uuid"] != json!(item.uuid) {
            missing.push(format!("{} ({status}, event_count {count})", item.uuid));
        }
    }
    missing
}

async fn assert_ready(app: &App, round: usize) {
    let response = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "round {round}: /readyz after restart; log:\n{}",
        app.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_under_load_keeps_acked_events() {
    let rounds = rounds();
    let mut app = App::start(&[]).await;
    let all_acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::thread_rng();
    let failed_requests = AtomicUsize::new(0);
    let started = Instant::now();

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                tokio::spawn(post_until_stopped(
                    app.base.clone(),
                    round,
                    writer,
                    stop.clone(),
                    acked.clone(),
                ))
            })
            .collect();

        let run_for = Duration::from_millis(rng.gen_range(100..1200));
        tokio::time::sleep(run_for).await;
        app.kill();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            failed_requests.fetch_add(writer.await.unwrap(), Ordering::Relaxed);
        }

        // `spawn` panics with the log if the process exits, so a store that does not reopen
        // fails here.
        app.spawn().await;
        assert_ready(&app, round).await;
        let acked = acked.lock().unwrap().clone();
        let lost = missing(&app, &acked).await;
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged events missing after SIGKILL: {lost:?}",
            lost.len(),
            acked.len()
        );
        all_acked.lock().unwrap().extend(acked);
    }

    // Earlier rounds' events must also survive every later crash.
    let all = all_acked.lock().unwrap().clone();
    let lost = missing(&app, &all).await;
    assert!(lost.is_empty(), "missing at the end: {lost:?}");
    assert!(
        all.len() >= rounds,
        "only {} events acknowledged in {rounds} rounds",
        all.len()
    );
    eprintln!(
        "crash test: {rounds} rounds, {} events acknowledged and found, {} requests cut off, {:.1} s",
        all.len(),
        failed_requests.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn queued_clears_survive_kill() {
    const ROUNDS: usize = 3;
    const ADDRESSES: usize = 4;
    let fake = FakeOkta::start().await;
    let url = fake.base_url().to_string();
    let mut app = App::start(&[
        ("BOUNCEWATCH_OKTA_ORG_URL", url.as_str()),
        ("BOUNCEWATCH_OKTA_API_TOKEN", API_TOKEN),
    ])
    .await;
    let mut rng = rand::thread_rng();
    let mut queued = Vec::new();

    for round in 0..ROUNDS {
        let addresses: Vec<String> = (0..ADDRESSES)
            .map(|index| format!("clear{round}-{index}@slow.example"))
            .collect();
        let events = addresses
            .iter()
            .enumerate()
            .map(|(index, address)| {
                event(
                    &format!("d{round}-{index}"),
                    "2025-02-01T10:00:00.000Z",
                    "bounce",
                    address,
                    "550 5.1.1 user unknown",
                )
            })
            .collect();
        assert_eq!(app.deliver(&envelope(events)).await.status().as_u16(), 200);

        // Okta is slow: the first requests of this round are held for two seconds, so the kill
        // lands while a batch is in flight or still queued.
        fake.fail_next(2, Fault::Delay(Duration::from_secs(2)));
        for address in &addresses {
            let path = format!("/api/v1/addresses/{}/clear", address.replace('@', "%40"));
            let (status, body) = app.admin_post(&path, &json!({})).await;
            assert_eq!(status, 202, "queue clear of {address}: {body}");
        }
        queued.extend(addresses);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1500))).await;
        app.kill();
        app.spawn().await;
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let accepted: Vec<String> = fake
            .accepted_removals()
            .into_iter()
            .map(|address| address.to_lowercase())
            .collect();
        let waiting: Vec<&String> = queued
            .iter()
            .filter(|address| !accepted.contains(address))
            .collect();
        if waiting.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clears never accepted by Okta after restarts: {waiting:?}; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
