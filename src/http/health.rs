//! `/healthz` (the process runs), `/readyz` (the store takes a durable write), `/metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::store::keys;

/// How long the readiness probe's write may take before the store counts as not ready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let probe = state.store.write(|txn| {
        txn.put(
            keys::meta("readyz_probe"),
            chrono::Utc::now().to_rfc3339().into_bytes(),
        );
    });
    let writable = matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(())));
    let status = if writable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !writable {
        tracing::error!("readiness probe failed: the store does not take writes");
    }
    // Hook health and gap-fill are details only. An unhealthy hook does not make the service
    // unready, because the service still stores what arrives.
    let body = json!({
        "status": if writable { "ready" } else { "store_unwritable" },
        "store": {"writable": writable, "bytes_on_disk": state.store.size_on_disk()},
        "hook": crate::hook_health::status(&state),
        "gap_fill": crate::poller::readiness(&state),
    });
    (status, Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.metrics;
    let store = &state.store;
    metrics.set(
        "bouncewatch_store_bytes",
        "Bytes the sled store takes on disk.",
        &[],
        store.size_on_disk() as f64,
    );
    for (queue, prefix) in [
        ("rules", keys::RULES_QUEUE),
        ("clears", keys::CLEAR_QUEUE),
        ("outbox", keys::OUTBOX),
    ] {
        metrics.set(
            "bouncewatch_queue_depth",
            "Entries waiting in each durable queue.",
            &[("queue", queue)],
            store.count_prefix(prefix) as f64,
        );
    }
    crate::poller::refresh_metrics(&state, chrono::Utc::now());
    crate::hook_health::refresh_metrics(&state);
    let health = store.health();
    metrics.set(
        "bouncewatch_store_commits",
        "Group commits (one flush each) since start.",
        &[],
        health.commits.load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    metrics.set(
        "bouncewatch_store_writable",
        "1 while the last store commit succeeded.",
        &[],
        if store.is_writable() { 1.0 } else { 0.0 },
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
