//! `/okta/events`: Okta's one-time verification (GET) and event deliveries (POST). The POST
//! authenticates, reads the body as bytes under the size limit (the content type is not
//! trusted), parses, stores durably and only then responds 200.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, AppState};
use crate::ingest::parse_envelope;
use crate::store::QuarantineItem;

pub const CHALLENGE_HEADER: &str = "x-okta-verification-challenge";
/// Maximum challenge length echoed back, so the route cannot be used to reflect large payloads.
const MAX_CHALLENGE: usize = 1024;
/// Maximum time a client may take to send a delivery's body. Okta gives up after 3 seconds, so
/// a body still arriving after this is a stalled or hostile client holding a connection open.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub fn router(state: &AppState) -> Router<AppState> {
    let limit = state.config.body_limit_bytes as usize;
    let route = get(verify)
        .post(receive)
        .layer(DefaultBodyLimit::max(limit));
    Router::new()
        .route("/okta/events", route.clone())
        .route("/okta/events/", route)
}

/// Echoes the challenge header as `{"verification": …}`.
async fn verify(headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    let challenge = headers.get(CHALLENGE_HEADER).ok_or_else(|| {
        ApiError::bad_request(
            CHALLENGE_HEADER,
            "the x-okta-verification-challenge header is missing",
        )
    })?;
    let challenge = challenge
        .to_str()
        .ok()
        .filter(|value| value.len() <= MAX_CHALLENGE)
        .ok_or_else(|| {
            ApiError::bad_request(
                CHALLENGE_HEADER,
                "the challenge must be printable ASCII of at most 1024 bytes",
            )
        })?;
    tracing::info!("responded to Okta's verification challenge");
    Ok(Json(json!({ "verification": challenge })))
}

/// Authenticates, parses, stores, then responds.
async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    // Authenticate before reading the body, so an unauthenticated client cannot make the
    // service buffer up to the body limit.
    if let Err(rejection) = authenticate(&state, &headers) {
        return rejection.into_response();
    }
    let limit = state.config.body_limit_bytes;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return too_large_response(&state, limit);
    }
    let read = axum::body::to_bytes(body, limit as usize);
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(body)) => body,
        Err(_elapsed) => {
            tracing::warn!(
                timeout_secs = BODY_READ_TIMEOUT.as_secs(),
                "hook body not received in time; closing the request"
            );
            return ApiError::RequestTimeout.into_response();
        }
        Ok(Err(err)) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                return too_large_response(&state, limit);
            }
            tracing::warn!(error = %err, "hook body could not be read");
            return ApiError::bad_request("body", format!("the body could not be read: {err}"))
                .into_response();
        }
    };
    note_content_type(&state, &headers);

    let (envelope, sorted) = match parse_envelope(&body) {
        Ok(parsed) => parsed,
        Err(err) => return quarantine_envelope(&state, &body, err).await,
    };
    let quarantined = sorted.quarantine.len();
    let ignored = sorted.ignored;
    let report = match state.store.ingest(sorted.events, sorted.quarantine).await {
        Ok(report) => report,
        Err(err) => {
            tracing::error!(error = %err, "hook delivery not stored; responding 503 so Okta retries");
            return ApiError::Unavailable.into_response();
        }
    };

    record(
        &state,
        &report.statuses,
        report.duplicates,
        quarantined,
        ignored,
    );
    state.rules_wake.notify_one();
    if report.stored > 0 {
        // The outbox entries of these events are committed now; the wake sent while they were
        // being written may have found them not yet applied.
        crate::store::outbox::outbox_wake().notify_one();
    }
    tracing::debug!(
        delivery = envelope.event_id.as_deref().unwrap_or("-"),
        stored = report.stored,
        duplicates = report.duplicates,
        quarantined,
        ignored,
        "hook delivery stored"
    );
    StatusCode::OK.into_response()
}

/// Counts and logs a delivery over the body limit: its events are lost, because Okta never
/// retries a 413.
fn too_large_response(state: &AppState, limit: u64) -> Response {
    state.metrics.inc(
        "bouncewatch_hook_too_large_total",
        "Hook deliveries over the body limit (lost events).",
        &[],
        1,
    );
    tracing::error!(
        limit,
        "hook delivery over the body limit rejected; raise body_limit_bytes"
    );
    ApiError::PayloadTooLarge(limit).into_response()
}

fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers.get(state.config.hook_auth_header.as_str());
    let valid = presented.is_some_and(|value| state.hook_secrets.matches(value.as_bytes()));
    if valid {
        return Ok(());
    }
    let reason = if presented.is_some() {
        "wrong"
    } else {
        "missing"
    };
    state.metrics.inc(
        "bouncewatch_auth_failures_total",
        "Requests rejected for a missing or wrong credential.",
        &[("endpoint", "hook"), ("reason", reason)],
        1,
    );
    tracing::warn!(reason, "hook delivery rejected: secret {reason}");
    Err(ApiError::Unauthorized(
        "the hook secret is missing or wrong",
    ))
}

fn note_content_type(state: &AppState, headers: &HeaderMap) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.to_ascii_lowercase().contains("json") {
        state.metrics.inc(
            "bouncewatch_hook_unexpected_content_type_total",
            "Hook deliveries whose content type does not say JSON (accepted when the body parses).",
            &[],
            1,
        );
    }
}

/// Keeps an unreadable delivery in the quarantine, then responds 400 (Okta never retries it).
async fn quarantine_envelope(
    state: &AppState,
    body: &Bytes,
    err: crate::ingest::EnvelopeError,
) -> Response {
    let item = QuarantineItem {
        reason: "malformed_envelope".into(),
        field: Some(err.field.clone()),
        detail: err.detail.clone(),
        event_uuid: None,
        raw: body.to_vec(),
    };
    if let Err(store_err) = state.store.ingest(Vec::new(), vec![item]).await {
        tracing::error!(error = %store_err, "malformed delivery could not be quarantined; responding 503");
        return ApiError::Unavailable.into_response();
    }
    state.metrics.inc(
        "bouncewatch_quarantined_total",
        "Deliveries and events kept in the quarantine.",
        &[("reason", "malformed_envelope")],
        1,
    );
    tracing::warn!(field = %err.field, size = body.len(), "malformed hook delivery quarantined");
    ApiError::BadRequest {
        field: Some(err.field),
        detail: err.detail,
    }
    .into_response()
}

fn record(
    state: &AppState,
    statuses: &[&'static str],
    duplicates: usize,
    quarantined: usize,
    ignored: usize,
) {
    let metrics = &state.metrics;
    for status in statuses {
        metrics.inc(
            "bouncewatch_events_total",
            "Delivery events stored, by status.",
            &[("status", status)],
            1,
        );
    }
    if duplicates > 0 {
        metrics.inc(
            "bouncewatch_duplicate_events_total",
            "Events already stored, ignored by uuid.",
            &[],
            duplicates as u64,
        );
    }
    if quarantined > 0 {
        metrics.inc(
            "bouncewatch_quarantined_total",
            "Deliveries and events kept in the quarantine.",
            &[("reason", "event")],
            quarantined as u64,
        );
    }
    if ignored > 0 {
        metrics.inc(
            "bouncewatch_ignored_events_total",
            "Events of types bouncewatch does not track.",
            &[],
            ignored as u64,
        );
    }
}
