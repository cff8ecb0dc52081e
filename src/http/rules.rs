//! Admin actions on the rules: declare a domain recovered, clear addresses by hand, approve or
//! reject queued clears, and pause, resume or switch approval mode without a restart.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::parse_address;
use super::tokens::Admin;
use super::{ApiError, AppState};
use crate::address::normalise_domain;
use crate::rules::outage::ADMIN_RECOVERY_PREFIX;
use crate::state::{DomainEvent, DomainState, Health};
use crate::store::records::{Action, ActionStatus, ClearJob};
use crate::store::rules::{self as records, ClearRefusal, ClearRequest};

/// Most addresses in one bulk clear request.
const MAX_BULK: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/domains/{domain}/recover", post(recover))
        .route("/addresses/{address}/clear", post(clear_one))
        .route("/addresses/clear", post(clear_bulk))
        .route("/actions/{id}/approve", post(approve))
        .route("/actions/{id}/reject", post(reject))
        .route("/rules/settings", get(get_settings).patch(patch_settings))
}

async fn recover(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<Action>), ApiError> {
    let domain = normalise_domain(&raw)
        .map_err(|_| ApiError::bad_request("domain", format!("{raw:?} is not a valid domain")))?;
    let actor = admin.actor();
    let action = state
        .store
        .write(move |txn| -> Result<Action, ApiError> {
            let record: DomainState = txn
                .get_json(&crate::store::keys::domain(&domain))
                .ok_or_else(|| ApiError::NotFound(format!("no events for domain {domain}")))?;
            if record.health != Health::Outage {
                return Err(ApiError::Conflict {
                    code: "not_in_outage",
                    detail: format!("{domain} is {:?}, not in outage", record.health)
                        .to_lowercase(),
                });
            }
            // The declaration joins the domain's events just after its newest one, so replaying
            // the events gives the same episodes.
            let at = record.newest_event_at.unwrap_or_else(Utc::now);
            let id = txn.next_id();
            let marker = DomainEvent {
                published: at,
                uuid: format!("{ADMIN_RECOVERY_PREFIX}{id:020}"),
                address: String::new(),
                status: crate::okta::DeliveryStatus::Delivered,
                scope: None,
            };
            records::put_domain_event(txn, &domain, &marker);
            records::push_rules_work(txn, &domain, at);
            let mut action = records::new_action(
                &actor,
                "recover",
                format!("an admin declared {domain} recovered"),
                ActionStatus::Queued,
            );
            action.domain = Some(domain.clone());
            action.episode = record.open_episode().map(|episode| episode.id.clone());
            Ok(records::record_action(txn, action))
        })
        .await??;
    state.rules_wake.notify_one();
    tracing::info!(domain = action.domain.as_deref().unwrap_or(""), action = %action.id, "admin declared a domain recovered");
    Ok((StatusCode::ACCEPTED, Json(action)))
}

#[derive(Debug, Deserialize)]
struct ClearQuery {
    force: Option<String>,
}

fn parse_force(raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None => Ok(false),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(ApiError::bad_request(
            "force",
            format!("{other:?} is not true or false"),
        )),
    }
}

fn admin_request(state: &AppState, actor: &str, address: String, force: bool) -> ClearRequest {
    let runtime_approval = state
        .store
        .runtime_settings()
        .ok()
        .and_then(|settings| settings.approval_mode);
    ClearRequest {
        address,
        actor: actor.to_string(),
        reason: "an admin asked for this clear".into(),
        episode: None,
        evidence: Vec::new(),
        force,
        dry_run: state.config.dry_run,
        approval: runtime_approval.unwrap_or(state.config.approval_mode),
        loop_guard: chrono::Duration::hours(state.config.loop_guard_hours as i64),
    }
}

async fn clear_one(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
    Query(query): Query<ClearQuery>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let address = parse_address(&raw, "address")?;
    let force = parse_force(query.force.as_deref())?;
    let request = admin_request(&state, &admin.actor(), address.key().to_string(), force);
    let key = address.key().to_string();
    let result = state
        .store
        .write(move |txn| records::queue_clear(txn, request))
        .await?;
    match result {
        Ok(action) => {
            state.clear_wake.notify_one();
            tracing::info!(address = %address, action = %action.id, "admin queued a clear");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": action.id, "status": action.status, "action": action})),
            ))
        }
        Err(ClearRefusal::NotFound) => Err(ApiError::NotFound(format!("no events for {key}"))),
        Err(ClearRefusal::LoopGuard(reason)) => Err(ApiError::Conflict {
            code: "loop_guard",
            detail: format!("{reason}; add ?force=true to clear anyway"),
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkClear {
    addresses: Vec<String>,
    #[serde(default)]
    force: bool,
}

async fn clear_bulk(
    State(state): State<AppState>,
    admin: Admin,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: BulkClear = serde_json::from_slice(&body).map_err(|err| {
        ApiError::bad_request(
            "addresses",
            format!("expected {{\"addresses\": [\"…\"], \"force\": false}}: {err}"),
        )
    })?;
    if request.addresses.is_empty() || request.addresses.len() > MAX_BULK {
        return Err(ApiError::bad_request(
            "addresses",
            format!("give 1 to {MAX_BULK} addresses"),
        ));
    }
    let mut results = Vec::new();
    for raw in request.addresses {
        let address = match parse_address(&raw, "addresses") {
            Ok(address) => address,
            Err(_) => {
                results.push(
                    json!({"address": raw, "result": "invalid", "detail": "not a valid address"}),
                );
                continue;
            }
        };
        let clear = admin_request(
            &state,
            &admin.actor(),
            address.key().to_string(),
            request.force,
        );
        let outcome = state
            .store
            .write(move |txn| records::queue_clear(txn, clear))
            .await?;
        results.push(match outcome {
            Ok(action) => json!({"address": address.key(), "result": "queued", "id": action.id, "status": action.status}),
            Err(ClearRefusal::NotFound) => json!({"address": address.key(), "result": "not_found"}),
            Err(ClearRefusal::LoopGuard(reason)) => json!({"address": address.key(), "result": "loop_guard", "detail": reason}),
        });
    }
    state.clear_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"items": results}))))
}

async fn approve(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Action>, ApiError> {
    decide(&state, &admin, id, true).await
}

async fn reject(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Action>, ApiError> {
    decide(&state, &admin, id, false).await
}

async fn decide(
    state: &AppState,
    admin: &Admin,
    id: String,
    approve: bool,
) -> Result<Json<Action>, ApiError> {
    let actor = admin.actor();
    let jobs = state.store.clear_jobs(100_000)?;
    let job: Option<ClearJob> = jobs
        .into_iter()
        .find(|job| job.action_id == id && job.awaiting_approval);
    let job =
        job.ok_or_else(|| ApiError::NotFound(format!("no clear awaiting approval has id {id}")))?;
    let action = state
        .store
        .write(move |txn| -> Result<Action, ApiError> {
            let number = records::action_id_number(&job.action_id).ok_or(ApiError::Internal)?;
            let mut action: Action = txn
                .get_json(&records::action_key(number))
                .ok_or(ApiError::Internal)?;
            if approve {
                let mut job = job;
                job.awaiting_approval = false;
                txn.put_json(records::clear_job_key(job.id), &job);
                let key = crate::store::keys::address(&job.address);
                if let Some(mut address) = txn.get_json::<crate::state::AddressState>(&key) {
                    address.clear = Some(crate::state::ClearMark {
                        phase: crate::state::ClearPhase::Clearing,
                        action_id: action.id.clone(),
                        at: address.latest.clone(),
                    });
                    txn.put_json(key, &address);
                }
                action.status = ActionStatus::Queued;
                action.result = Some(format!("approved by {actor}"));
            } else {
                txn.remove(&records::clear_job_key(job.id));
                action.status = ActionStatus::Rejected;
                action.result = Some(format!("rejected by {actor}"));
            }
            records::update_action(txn, &action);
            Ok(action)
        })
        .await??;
    state.clear_wake.notify_one();
    Ok(Json(action))
}

async fn get_settings(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let settings = state.store.runtime_settings()?;
    Ok(Json(settings_document(&state, &settings)))
}

fn settings_document(state: &AppState, settings: &records::RuntimeSettings) -> Value {
    json!({
        "paused": settings.paused,
        "approval_mode": settings.approval_mode.unwrap_or(state.config.approval_mode),
        "stopped_by_okta": settings.forbidden,
        "dry_run": state.config.dry_run,
        "clear_cap_per_hour": state.config.clear_cap_per_hour,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    paused: Option<bool>,
    approval_mode: Option<bool>,
    /// Clears the stop caused by an Okta 403 once the permission is fixed.
    resume_after_forbidden: Option<bool>,
}

async fn patch_settings(
    State(state): State<AppState>,
    admin: Admin,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch: SettingsPatch = serde_json::from_slice(&body).map_err(|err| {
        ApiError::bad_request(
            "body",
            format!("expected paused, approval_mode or resume_after_forbidden as booleans: {err}"),
        )
    })?;
    let actor = admin.actor();
    let settings = state
        .store
        .write(move |txn| {
            let mut settings = records::runtime_settings_in(txn);
            if let Some(paused) = patch.paused {
                settings.paused = paused;
            }
            if let Some(approval) = patch.approval_mode {
                settings.approval_mode = Some(approval);
            }
            if patch.resume_after_forbidden == Some(true) {
                settings.forbidden = None;
            }
            records::put_runtime_settings(txn, &settings);
            let action = records::new_action(
                &actor,
                "settings",
                format!("rules settings changed: {settings:?}"),
                ActionStatus::Recorded,
            );
            records::record_action(txn, action);
            settings
        })
        .await?;
    tracing::info!(paused = settings.paused, approval_mode = ?settings.approval_mode, "rules settings changed");
    state.clear_wake.notify_one();
    Ok(Json(settings_document(&state, &settings)))
}
