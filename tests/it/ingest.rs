//! The hook end to end through the real binary.

use serde_json::json;

use crate::support::app::{envelope, event, App};

#[tokio::test]
async fn bounce_is_stored_and_shown() {
    let app = App::start(&[]).await;
    let body = envelope(vec![event(
        "u1",
        "2025-01-15T10:00:00.000Z",
        "bounce",
        "Jane.Doe@Example.com",
        "550 5.1.1 user unknown",
    )]);
    let response = app.deliver(&body).await;
    assert_eq!(response.status().as_u16(), 200);
    let (status, doc) = app
        .admin_get("/api/v1/addresses/jane.doe%40example.com")
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], json!("bounced"));
    assert_eq!(doc["domain"], json!("example.com"));
    assert_eq!(doc["raw"], json!("Jane.Doe@Example.com"));
}

#[tokio::test]
async fn restart_keeps_acknowledged_events() {
    let mut app = App::start(&[]).await;
    let body = envelope(vec![event(
        "u1",
        "2025-01-15T10:00:00.000Z",
        "bounce",
        "a@example.com",
        "550 5.1.1 user unknown",
    )]);
    assert_eq!(app.deliver(&body).await.status().as_u16(), 200);
    app.kill();
    app.spawn().await;
    let (status, doc) = app.admin_get("/api/v1/addresses/a%40example.com").await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], json!("bounced"));
}
