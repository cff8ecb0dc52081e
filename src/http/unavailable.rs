//! The router served when the store cannot be opened (corrupt or unreadable files). It keeps the
//! listen address answering so Okta gets a 503, which it retries, instead of a refused
//! connection, and so `/readyz` fails with the reason until an operator moves the store aside.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

/// Interval at which the reason is logged again while the service runs without a store.
const REPEAT_LOG: Duration = Duration::from_secs(60);

/// Serves `/healthz` with 200, `/readyz` 503 with `reason`, and every other request 503 in the API's
/// error shape.
pub fn router(reason: String) -> Router {
    let reason = Arc::new(reason);
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(not_ready))
        .fallback(unavailable)
        .with_state(reason)
}

/// Serves [`router`] on `listener` until `shutdown` completes, logging `reason` at start and
/// then every minute.
pub async fn serve(
    listener: TcpListener,
    reason: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::error!(
        reason = %reason,
        "store unavailable: responding 503 on every route until the store is repaired"
    );
    let repeat_reason = reason.clone();
    let reminder = tokio::spawn(async move {
        let mut interval = tokio::time::interval(REPEAT_LOG);
        interval.tick().await;
        loop {
            interval.tick().await;
            tracing::error!(reason = %repeat_reason, "store still unavailable");
        }
    });
    let served = axum::serve(listener, router(reason))
        .with_graceful_shutdown(shutdown)
        .await;
    reminder.abort();
    served?;
    Ok(())
}

async fn not_ready(State(reason): State<Arc<String>>) -> Response {
    let body = json!({
        "status": "store_unavailable",
        "store": {"writable": false},
        "detail": reason.as_str(),
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn unavailable() -> Response {
    let body = json!({
        "error": "store_unavailable",
        "detail": "the store cannot be opened; see /readyz and the service log",
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
