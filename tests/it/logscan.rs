//! Log scan: drives the real binary at `RUST_LOG=info` through deliveries, bad secrets,
//! malformed bodies, admin calls and clears against a fake Okta org, then reads its text log.
//! No line may hold a secret, and no INFO, WARN or ERROR line a whole recipient address.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::app::{envelope, event, App, ADMIN_TOKEN, HOOK_SECRET};
use crate::support::fake_okta::{FakeOkta, Fault, API_TOKEN};

const ADDRESSES: &[&str] = &[
    "secret.person@logscan.example",
    "other.person+tag@logscan.example",
    "third.person@logscan.example",
];

/// Removes ANSI colour sequences, so level words and values compare as plain text.
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for end in chars.by_ref() {
                if end.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn level(line: &str) -> Option<&'static str> {
    let mut words = line.split_whitespace();
    let _timestamp = words.next()?;
    match words.next()? {
        "TRACE" => Some("TRACE"),
        "DEBUG" => Some("DEBUG"),
        "INFO" => Some("INFO"),
        "WARN" => Some("WARN"),
        "ERROR" => Some("ERROR"),
        _ => None,
    }
}

#[tokio::test]
async fn log_has_no_secrets_or_addresses() {
    let fake = FakeOkta::start().await;
    let url = fake.base_url().to_string();
    let mut app = App::start(&[
        ("BOUNCEWATCH_OKTA_ORG_URL", url.as_str()),
        ("BOUNCEWATCH_OKTA_API_TOKEN", API_TOKEN),
    ])
    .await;
    // App::start logs at debug; restart at info, as production runs. `App::spawn` applies
    // `app.env` after its own RUST_LOG, so this value wins.
    app.kill();
    std::fs::remove_file(app.log_path()).unwrap();
    app.env.push(("RUST_LOG".into(), "info".into()));
    app.spawn().await;

    let events = ADDRESSES
        .iter()
        .enumerate()
        .map(|(index, address)| {
            event(
                &format!("log-{index}"),
                "2025-02-01T10:00:00.000Z",
                "bounce",
                address,
                &format!("550 5.1.1 <{address}>: user unknown"),
            )
        })
        .collect();
    assert_eq!(app.deliver(&envelope(events)).await.status().as_u16(), 200);

    // Wrong secrets, a malformed body and an event without a recipient.
    let http = &app.http;
    for secret in ["wrong", HOOK_SECRET.trim_end_matches('e')] {
        let status = http
            .post(format!("{}/okta/events", app.base))
            .header("Authorization", secret)
            .body("{}")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 401);
    }
    let malformed = format!(r#"{{"data":{{"events":[{{"target":"{}"#, ADDRESSES[0]);
    let status = http
        .post(format!("{}/okta/events", app.base))
        .header("Authorization", HOOK_SECRET)
        .body(malformed)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 400);
    let mut no_recipient = event(
        "log-norecipient",
        "2025-02-01T10:00:00.000Z",
        "bounce",
        "unknown",
        &format!("550 mail for {} refused", ADDRESSES[2]),
    );
    no_recipient["actor"]["alternateId"] = json!(ADDRESSES[2]);
    assert_eq!(
        app.deliver(&envelope(vec![no_recipient]))
            .await
            .status()
            .as_u16(),
        200
    );

    // Admin calls, a wrong token, and clears, the first failing at Okta once.
    let (status, _) = app
        .admin_get("/api/v1/addresses/secret.person%40logscan.example")
        .await;
    assert_eq!(status, 200);
    let wrong = http
        .get(format!("{}/api/v1/addresses", app.base))
        .bearer_auth(format!("{ADMIN_TOKEN}x"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(wrong.as_u16(), 401);
    fake.fail_next(1, Fault::ServerError(503));
    for address in ADDRESSES {
        let path = format!("/api/v1/addresses/{}/clear", address.replace('@', "%40"));
        let (status, body) = app.admin_post(&path, &json!({})).await;
        assert_eq!(status, 202, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.accepted_removals().len() < ADDRESSES.len() {
        assert!(
            Instant::now() < deadline,
            "clears not sent; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.terminate(), Some(0));

    let log = app.log();
    let lines: Vec<String> = log.lines().map(strip_ansi).collect();
    assert!(
        lines.iter().any(|line| level(line) == Some("INFO")),
        "no INFO lines: is the log format still text?\n{log}"
    );
    for secret in [HOOK_SECRET, ADMIN_TOKEN, API_TOKEN] {
        let leaks: Vec<&String> = lines.iter().filter(|line| line.contains(secret)).collect();
        assert!(leaks.is_empty(), "log shows a secret: {leaks:#?}");
    }
    for address in ADDRESSES {
        let leaks: Vec<&String> = lines
            .iter()
            .filter(|line| matches!(level(line), Some("INFO" | "WARN" | "ERROR")))
            .filter(|line| line.to_lowercase().contains(address))
            .collect();
        assert!(leaks.is_empty(), "log shows {address}: {leaks:#?}");
    }
}
