//! The operator's endpoints under `/api/v1`: one stored event, erasure of an address, a
//! streamed export of the store, replay of the rules, and a status summary. The commands of the
//! same names call these when a service runs, and the functions shared with them live here.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::admin::parse_address;
use super::{ApiError, AppState};
use crate::address::normalise_domain;
use crate::config::Config;
use crate::state::Health;
use crate::store::export::record_line;
use crate::store::rules::push_rules_work;
use crate::store::{keys, Store, StoreError};

const ADMIN_ACTOR: &str = "admin:token";
/// Bytes of export lines gathered before they are sent as one chunk.
const EXPORT_CHUNK: usize = 64 * 1024;
/// Domains queued by one write job of a replay.
const REPLAY_BATCH: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events/{uuid}", get(get_event))
        .route("/addresses/{address}", delete(erase))
        .route("/export", get(export))
        .route("/replay", post(replay))
        .route("/status", get(status))
}

async fn get_event(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let event = state.store.event(&uuid)?;
    let event =
        event.ok_or_else(|| ApiError::NotFound(format!("no stored event has uuid {uuid:?}")))?;
    Ok(Json(event))
}

async fn erase(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let address = parse_address(&raw, "address")?;
    let erased = state
        .store
        .erase_address(address.key(), ADMIN_ACTOR)
        .await?;
    let erased =
        erased.ok_or_else(|| ApiError::NotFound(format!("no events for {}", address.key())))?;
    tracing::info!(address = %address, events = erased.events, action = %erased.action.id, "address erased");
    Ok(StatusCode::NO_CONTENT)
}

/// Streams the export: the header line, then every record. A store error cuts the response
/// short, so the client sees an incomplete body rather than a complete-looking export.
async fn export(State(state): State<AppState>) -> Result<Response, ApiError> {
    let header_line = state.store.export_header()?;
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut chunk = header_line;
        let mut records: u64 = 0;
        for entry in store.export_records() {
            let (key, value) = match entry {
                Ok(record) => record,
                Err(err) => {
                    tracing::error!(error = %err, records, "export failed while reading the store");
                    let _ = sender.blocking_send(Err(std::io::Error::other(err.to_string())));
                    return;
                }
            };
            chunk.extend_from_slice(&record_line(&key, &value));
            records += 1;
            if chunk.len() >= EXPORT_CHUNK {
                let full = std::mem::take(&mut chunk);
                if sender.blocking_send(Ok(Bytes::from(full))).is_err() {
                    tracing::warn!(records, "export stopped: the client went away");
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = sender.blocking_send(Ok(Bytes::from(chunk)));
        }
        tracing::info!(records, "export sent");
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    domain: Option<String>,
}

async fn replay(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::bad_request(
                "domain",
                format!("expected {{\"domain\": \"…\"}} or an empty body: {err}"),
            )
        })?
    };
    let domain = match request.domain.as_deref() {
        None => None,
        Some(raw) => Some(normalise_domain(raw).map_err(|_| {
            ApiError::bad_request("domain", format!("{raw:?} is not a valid domain"))
        })?),
    };
    let queued = queue_replay(&state.store, domain.as_deref()).await?;
    let queued = queued.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no events for domain {}",
            domain.as_deref().unwrap_or("")
        ))
    })?;
    state.rules_wake.notify_one();
    tracing::info!(
        domains = queued,
        domain = domain.as_deref().unwrap_or("*"),
        "rules replay queued"
    );
    Ok((StatusCode::ACCEPTED, Json(json!({"domains": queued}))))
}

/// Queues rules work for one domain, or for every domain when `domain` is `None`, so the rules
/// evaluate the stored events again with the current settings. Returns the number of domains,
/// or `None` when the named domain has no record.
pub async fn queue_replay(
    store: &Store,
    domain: Option<&str>,
) -> Result<Option<usize>, StoreError> {
    let domains: Vec<String> = match domain {
        Some(name) => match store.domain(name)? {
            Some(_) => vec![name.to_string()],
            None => return Ok(None),
        },
        None => store
            .domains_by_failures(usize::MAX)?
            .into_iter()
            .map(|state| state.domain)
            .collect(),
    };
    let count = domains.len();
    for batch in domains.chunks(REPLAY_BATCH) {
        let batch = batch.to_vec();
        store
            .write(move |txn| {
                for domain in batch {
                    push_rules_work(txn, &domain, DateTime::<Utc>::UNIX_EPOCH);
                }
            })
            .await?;
    }
    Ok(Some(count))
}

async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(status_document(&state.store, &state.config)?))
}

/// Builds the status summary that `GET /api/v1/status` returns and `bouncewatch status` prints:
/// queue depths, domains in outage, clears waiting, the rules settings and the store's size.
pub fn status_document(store: &Store, config: &Config) -> Result<Value, StoreError> {
    let jobs = store.clear_jobs(usize::MAX)?;
    let awaiting = jobs.iter().filter(|job| job.awaiting_approval).count();
    let mut outages: Vec<String> = store
        .domains_by_failures(usize::MAX)?
        .into_iter()
        .filter(|domain| domain.health == Health::Outage)
        .map(|domain| domain.domain)
        .collect();
    outages.sort();
    let settings = store.runtime_settings()?;
    Ok(json!({
        "queues": {
            "rules": store.count_prefix(keys::RULES_QUEUE),
            "clears": store.count_prefix(keys::CLEAR_QUEUE),
            "outbox": store.count_prefix(keys::OUTBOX),
            "quarantine": store.count_prefix(keys::QUARANTINE),
        },
        "domains_in_outage": outages,
        "clears": {"pending": jobs.len() - awaiting, "awaiting_approval": awaiting},
        "rules": {
            "paused": settings.paused,
            "approval_mode": settings.approval_mode.unwrap_or(config.approval_mode),
            "stopped_by_okta": settings.forbidden,
            "dry_run": config.dry_run,
        },
        "store": {"path": store.path(), "bytes_on_disk": store.size_on_disk()},
        "retention": {
            "retention_days": config.retention_days,
            "action_retention_days": config.action_retention_days,
            "quarantine_retention_days": config.quarantine_retention_days,
        },
    }))
}
