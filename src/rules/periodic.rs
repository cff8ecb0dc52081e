//! Rules that act on time passing rather than on an event: canary clears for a domain whose
//! outage has gone quiet, and clears of full-mailbox bounces after a number of days. Both are
//! off by default (`canary_count = 0`, `mailbox_full_clear_days = 0`).
//!
//! Unlike the outage pass, these compare `published` times with the wall clock, because what
//! they wait for is the absence of new events.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::worker::outage_caused;
use crate::classify::{Permanence, Scope};
use crate::http::AppState;
use crate::state::{AddressStatus, Health};
use crate::store::keys;
use crate::store::rules::{self as records, ClearRequest};
use crate::store::StoreError;

/// How often the canary rule looks.
const INTERVAL: Duration = Duration::from_secs(10);
/// The full-mailbox rule scans every bounced address, so it runs every this many intervals.
const MAILBOX_EVERY: u64 = 60;

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    if state.config.canary_count == 0 && state.config.mailbox_full_clear_days == 0 {
        return;
    }
    let mut tick: u64 = 0;
    loop {
        tick += 1;
        if state.config.canary_count > 0 {
            if let Err(err) = canaries(&state).await {
                tracing::error!(error = %err, "canary rule failed; retrying");
            }
        }
        if state.config.mailbox_full_clear_days > 0 && tick % MAILBOX_EVERY == 1 {
            if let Err(err) = full_mailboxes(&state).await {
                tracing::error!(error = %err, "full-mailbox rule failed; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

fn clear_request(
    state: &AppState,
    address: &str,
    actor: &str,
    reason: String,
    episode: Option<String>,
) -> ClearRequest {
    let runtime = state.store.runtime_settings().unwrap_or_default();
    ClearRequest {
        address: address.to_string(),
        actor: actor.to_string(),
        reason,
        episode,
        evidence: Vec::new(),
        force: false,
        dry_run: state.config.dry_run,
        approval: runtime.approval_mode.unwrap_or(state.config.approval_mode),
        loop_guard: chrono::Duration::hours(state.config.loop_guard_hours as i64),
    }
}

/// Clears a few of a quiet outage's bounces; what happens to them next (deliveries, or new
/// domain-scope bounces) decides the outage through the normal pass.
async fn canaries(state: &AppState) -> Result<(), StoreError> {
    let quiet = chrono::Duration::hours(state.config.canary_quiet_hours as i64);
    for domain in state.store.domains_by_failures(usize::MAX)? {
        if domain.health != Health::Outage
            || state
                .config
                .domain_settings(&domain.domain)
                .never_auto_clear
        {
            continue;
        }
        let Some(detector) = state.store.detector(&domain.domain)? else {
            continue;
        };
        let Some(open) = detector.open_episode() else {
            continue;
        };
        let Some(episode) = domain.open_episode() else {
            continue;
        };
        if Utc::now() - open.last_failure < quiet {
            continue;
        }
        let marker = keys::meta(&format!("canary/{}", episode.id));
        let candidates: Vec<String> = open.caused.keys().cloned().collect();
        let episode_id = episode.id.clone();
        let count = state.config.canary_count as usize;
        let requests: Vec<ClearRequest> = candidates
            .iter()
            .map(|address| {
                clear_request(
                    state,
                    address,
                    "rule:canary",
                    format!(
                        "canary: {} has been quiet since its last domain failure",
                        domain.domain
                    ),
                    Some(episode_id.clone()),
                )
            })
            .collect();
        let sent = state
            .store
            .write(move |txn| {
                if txn.contains(&marker) {
                    return 0;
                }
                let mut sent = 0;
                for request in requests {
                    if sent == count {
                        break;
                    }
                    let eligible = txn
                        .get_json::<crate::state::AddressState>(&keys::address(&request.address))
                        .is_some_and(|address| outage_caused(&address).is_ok());
                    if eligible && records::queue_clear(txn, request).is_ok() {
                        sent += 1;
                    }
                }
                txn.put(marker, sent.to_string().into_bytes());
                sent
            })
            .await?;
        if sent > 0 {
            tracing::info!(domain = %domain.domain, canaries = sent, "canary clears queued for a quiet outage");
            state.clear_wake.notify_one();
        }
    }
    Ok(())
}

/// Clears bounces whose newest failure is a full mailbox (a transient mailbox fault) once it
/// is older than `mailbox_full_clear_days`.
async fn full_mailboxes(state: &AppState) -> Result<(), StoreError> {
    let age = chrono::Duration::days(state.config.mailbox_full_clear_days as i64);
    let mut cursor = None;
    loop {
        let page =
            state
                .store
                .addresses(None, Some(AddressStatus::Bounced), cursor.as_deref(), 500)?;
        for address in &page.items {
            let Some(failure) = &address.latest_failure else {
                continue;
            };
            let full_mailbox = failure.verdict.scope == Scope::Mailbox
                && failure.verdict.permanence == Permanence::Transient;
            if !full_mailbox || Utc::now() - failure.key.published < age {
                continue;
            }
            let request = clear_request(
                state,
                &address.address,
                "rule:mailbox-full",
                format!(
                    "the mailbox was full more than {} days ago",
                    state.config.mailbox_full_clear_days
                ),
                None,
            );
            let queued = state
                .store
                .write(move |txn| records::queue_clear(txn, request).is_ok())
                .await?;
            if queued {
                tracing::info!(address = %crate::address::mask_key(&address.address), "full-mailbox clear queued");
                state.clear_wake.notify_one();
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}
