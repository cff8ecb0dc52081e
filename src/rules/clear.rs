//! The clear task: sends queued clears to Okta's bounce-removal API in batches, under the
//! hourly cap, and records each address's result. Jobs stay in the durable queue until their
//! result is written, so a crash mid-batch resends that batch (Okta accepts a repeat).

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;

use crate::forward::notification::NotificationKind;
use crate::http::AppState;
use crate::okta::client::{OktaClient, RemoveListOutcome, MAX_REMOVE_BATCH};
use crate::okta::error::OktaError;
use crate::state::{AddressState, ClearMark, ClearPhase};
use crate::store::keys;
use crate::store::records::{Action, ActionStatus, ClearJob};
use crate::store::rules::{self as records, ClearWindow};
use crate::store::{StoreError, Txn};

const POLL: Duration = Duration::from_secs(1);
/// Attempts before a clear that keeps failing for a retryable reason is given up.
const MAX_ATTEMPTS: u32 = 8;

pub async fn run(state: AppState, client: Option<OktaClient>, mut stop: watch::Receiver<bool>) {
    let mut warned_no_client = false;
    loop {
        match step(&state, client.as_ref(), &mut warned_no_client).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(err) => tracing::error!(error = %err, "clear step failed; retrying"),
        }
        tokio::select! {
            _ = state.clear_wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Sends one batch. Returns true when it did, so the caller goes straight on to the next.
async fn step(
    state: &AppState,
    client: Option<&OktaClient>,
    warned: &mut bool,
) -> Result<bool, StoreError> {
    let settings = state.store.runtime_settings()?;
    if settings.paused || settings.forbidden.is_some() {
        return Ok(false);
    }
    let now = Utc::now();
    let due: Vec<ClearJob> = state
        .store
        .clear_jobs(10_000)?
        .into_iter()
        .filter(|job| !job.awaiting_approval && job.not_before <= now)
        .collect();
    if due.is_empty() {
        return Ok(false);
    }
    let Some(client) = client else {
        if !*warned {
            tracing::warn!(
                queued = due.len(),
                "clears are queued but no Okta org is configured (okta_org_url, okta_api_token)"
            );
            *warned = true;
        }
        return Ok(false);
    };

    let cap = state.config.clear_cap_per_hour;
    let hour_start = now.timestamp().div_euclid(3600) * 3600;
    let room = state
        .store
        .write(move |txn| {
            let mut window = records::clear_window_in(txn);
            if window.hour_start != hour_start {
                window = ClearWindow {
                    hour_start,
                    sent: 0,
                    cap_alerted: false,
                };
            }
            let room = cap.saturating_sub(window.sent);
            if room == 0 && !window.cap_alerted {
                window.cap_alerted = true;
                let action = records::new_action(
                    "rule:clear-cap",
                    "clear_cap",
                    format!(
                        "the cap of {cap} clears an hour is reached; the rest wait in the queue"
                    ),
                    ActionStatus::Recorded,
                );
                records::record_action(txn, action);
                crate::rules::notify::alert(
                    txn,
                    NotificationKind::AlertClearCapReached,
                    &format!("cap-{hour_start}"),
                    json!({"cap_per_hour": cap}),
                );
                tracing::warn!(cap, "hourly clear cap reached");
            }
            records::put_clear_window(txn, &window);
            room
        })
        .await?;
    if room == 0 {
        return Ok(false);
    }

    let batch: Vec<ClearJob> = due
        .into_iter()
        .take(MAX_REMOVE_BATCH.min(room as usize))
        .collect();
    let addresses: Vec<String> = batch.iter().map(|job| job.raw.clone()).collect();
    let result = client.remove_bounces(&addresses).await;
    let sent = batch.len() as u64;
    match &result {
        Ok(outcome) => tracing::info!(
            sent,
            accepted = outcome.accepted.len(),
            rejected = outcome.rejected.len(),
            "clears sent to Okta"
        ),
        Err(err) => tracing::warn!(sent, error = %err, "clears not accepted by Okta"),
    }
    state
        .store
        .write(move |txn| {
            let mut window = records::clear_window_in(txn);
            if window.hour_start == hour_start && result.is_ok() {
                window.sent += sent;
                records::put_clear_window(txn, &window);
            }
            record_result(txn, batch, result)
        })
        .await?;
    Ok(true)
}

fn record_result(
    txn: &mut Txn<'_>,
    batch: Vec<ClearJob>,
    result: Result<RemoveListOutcome, OktaError>,
) {
    match result {
        Ok(outcome) => {
            let rejected: HashMap<String, String> = outcome
                .rejected
                .into_iter()
                .map(|(address, reason)| (address.to_lowercase(), reason))
                .collect();
            for job in batch {
                match rejected.get(&job.raw.to_lowercase()) {
                    Some(reason) => finish(txn, &job, Err(reason.clone())),
                    None => finish(txn, &job, Ok(())),
                }
            }
        }
        Err(err @ (OktaError::Forbidden { .. } | OktaError::Unauthorized { .. })) => {
            let message = err.to_string();
            let mut settings = records::runtime_settings_in(txn);
            settings.forbidden = Some(message.clone());
            records::put_runtime_settings(txn, &settings);
            let action = records::new_action(
                "rule:clear",
                "okta_forbidden",
                message.clone(),
                ActionStatus::Failed,
            );
            records::record_action(txn, action);
            crate::rules::notify::alert(
                txn,
                NotificationKind::AlertOktaForbidden,
                &format!("forbidden-{}", Utc::now().timestamp()),
                json!({"detail": message}),
            );
            tracing::error!(error = %message, "Okta rejected clears with 403; automatic clearing stopped until an admin resumes it");
        }
        Err(err) => {
            let retry_at = match &err {
                OktaError::RateLimited { reset, .. } => *reset,
                _ => None,
            };
            for mut job in batch {
                job.attempts += 1;
                if !err.is_retryable() || job.attempts >= MAX_ATTEMPTS {
                    finish(
                        txn,
                        &job,
                        Err(format!("gave up after {} attempts: {err}", job.attempts)),
                    );
                    continue;
                }
                let backoff = chrono::Duration::seconds(5i64 << job.attempts.min(10));
                job.not_before = retry_at
                    .unwrap_or_else(|| Utc::now() + backoff.min(chrono::Duration::hours(1)));
                txn.put_json(records::clear_job_key(job.id), &job);
            }
        }
    }
}

/// Records one address's result and removes its job.
fn finish(txn: &mut Txn<'_>, job: &ClearJob, result: Result<(), String>) {
    txn.remove(&records::clear_job_key(job.id));
    let key = keys::address(&job.address);
    let mut state: Option<AddressState> = txn.get_json(&key);
    if let Some(state) = state.as_mut() {
        let ours = state
            .clear
            .as_ref()
            .is_some_and(|mark| mark.action_id == job.action_id);
        match &result {
            Ok(()) => {
                state.last_cleared_at = Some(Utc::now());
                state.clear_count += 1;
                if ours {
                    let at = state
                        .clear
                        .as_ref()
                        .map(|mark| mark.at.clone())
                        .expect("mark exists");
                    state.clear = Some(ClearMark {
                        phase: ClearPhase::Cleared,
                        action_id: job.action_id.clone(),
                        at,
                    });
                }
            }
            Err(_) if ours => state.clear = None,
            Err(_) => {}
        }
        txn.put_json(key, state);
    }
    if let Some(mut action) = txn.get_json::<Action>(&records::action_key(
        records::action_id_number(&job.action_id).unwrap_or(0),
    )) {
        action.status = if result.is_ok() {
            ActionStatus::Done
        } else {
            ActionStatus::Failed
        };
        action.result = Some(match &result {
            Ok(()) => "accepted by Okta for removal from the bounce list".to_string(),
            Err(reason) => reason.clone(),
        });
        records::update_action(txn, &action);
    }
    let (kind, data) = match &result {
        Ok(()) => (
            NotificationKind::AddressCleared,
            json!({"address": job.address, "domain": job.domain, "action": job.action_id}),
        ),
        Err(reason) => (
            NotificationKind::AddressClearFailed,
            json!({"address": job.address, "domain": job.domain, "action": job.action_id, "reason": reason}),
        ),
    };
    crate::rules::notify::address(txn, kind, &job.action_id, &job.domain, data);
}
