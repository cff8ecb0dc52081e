//! The rules task: reads the durable rules queue, replays each touched domain's events through
//! the outage pass, and records what changed: health, outages opened, recoveries and the clears
//! they queue. Each domain's changes and the removal of its queue entries commit together, so a
//! crash resumes with the work still queued.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::outage::{Analysis, Detector, Found, Thresholds};
use crate::classify::Scope;
use crate::config::Config;
use crate::http::AppState;
use crate::state::domain::Episode;
use crate::state::{AddressState, DomainState, EventKey};
use crate::store::records::ActionStatus;
use crate::store::rules::{self as records, ClearRefusal, ClearRequest};
use crate::store::{StoreError, Txn};

/// Maximum wait between queue scans when nothing wakes the task.
const POLL: Duration = Duration::from_millis(500);
/// Episodes kept on a domain record, newest first.
const EPISODES_KEPT: usize = 20;

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        match step(&state).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(err) => tracing::error!(error = %err, "rules step failed; retrying"),
        }
        tokio::select! {
            _ = state.rules_wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Evaluates the queued domains once. Returns true when work was done.
async fn step(state: &AppState) -> Result<bool, StoreError> {
    let work = state.store.rules_work(1024)?;
    if work.is_empty() {
        return Ok(false);
    }
    let thresholds = Thresholds::from_config(&state.config);
    for (item, queued) in work {
        let domain = item.domain;
        let earliest = EventKey {
            published: item.from,
            uuid: item.from_uuid.unwrap_or_default(),
        };
        let (mut detector, events) = load_pass(state, &domain, Some(&earliest))?;
        for event in &events {
            detector.feed(event, &thresholds);
        }
        let analysis = detector.take_analysis(&thresholds);
        let config = state.config.clone();
        let domain_name = domain.clone();
        let summary = state
            .store
            .write(move |txn| {
                // Work queued while this pass ran replaced the entry; it stays for the next pass.
                let key = records::rules_work_key(&domain_name);
                if txn.get(&key).as_deref() == Some(queued.as_slice()) {
                    txn.remove(&key);
                }
                if domain_name.is_empty() {
                    return Summary::default();
                }
                txn.put_json(records::detector_key(&domain_name), &detector);
                reconcile(txn, &config, &domain_name, &analysis)
            })
            .await?;
        if summary.opened > 0 || summary.recovered > 0 {
            tracing::info!(
                domain,
                opened = summary.opened,
                recovered = summary.recovered,
                clears = summary.clears,
                "domain outage state changed"
            );
            state.clear_wake.notify_one();
        }
    }
    Ok(true)
}

/// The saved pass for a domain and the events it has not seen, or a fresh pass over the whole
/// history when an event older than the saved position arrived.
fn load_pass(
    state: &AppState,
    domain: &str,
    earliest: Option<&EventKey>,
) -> Result<(Detector, Vec<crate::state::DomainEvent>), StoreError> {
    if let Some(detector) = state.store.detector(domain)? {
        if let Some(position) = detector.position.clone() {
            let resumable = earliest
                .is_none_or(|from| (from.published, &from.uuid) > (position.0, &position.1));
            if resumable {
                let events = state.store.domain_events_after(domain, &position)?;
                return Ok((detector, events));
            }
        }
    }
    // NOTE: this replay reads the domain's whole retained history, so a busy domain whose events
    // often arrive out of order (equal `published` times with random uuids, backfills) pays for
    // its history on every pass. Keeping earlier checkpoints to resume from would bound it.
    Ok((Detector::default(), state.store.domain_events(domain)?))
}

#[derive(Debug, Default)]
struct Summary {
    opened: usize,
    recovered: usize,
    clears: usize,
}

fn episode_id(domain: &str, start: DateTime<Utc>) -> String {
    format!("ep_{domain}_{}", start.timestamp_millis())
}

fn overlaps(stored: &Episode, found: &Found) -> bool {
    let far = DateTime::<Utc>::MAX_UTC;
    stored.start <= found.end.unwrap_or(far) && found.start <= stored.end.unwrap_or(far)
}

/// Brings a domain's stored record in line with a fresh analysis, inside one write job.
fn reconcile(txn: &mut Txn<'_>, config: &Config, domain: &str, analysis: &Analysis) -> Summary {
    let mut summary = Summary::default();
    let mut record: DomainState = txn
        .get_json(&crate::store::keys::domain(domain))
        .unwrap_or_else(|| DomainState::new(domain));
    record.health = analysis.health;

    for found in &analysis.episodes {
        let index = match record
            .episodes
            .iter()
            .position(|stored| overlaps(stored, found))
        {
            Some(index) => index,
            None => {
                let episode = Episode {
                    id: episode_id(domain, found.start),
                    start: found.start,
                    end: None,
                    recovered_by: None,
                    addresses_affected: found.caused.len() as u64,
                    clears_queued: 0,
                };
                open_outage(txn, domain, &episode, found);
                summary.opened += 1;
                record.episodes.push(episode);
                record
                    .episodes
                    .sort_by_key(|episode| std::cmp::Reverse(episode.start));
                record
                    .episodes
                    .iter()
                    .position(|stored| overlaps(stored, found))
                    .expect("just added")
            }
        };
        let episode = &mut record.episodes[index];
        episode.start = episode.start.min(found.start);
        episode.addresses_affected = found.caused.len() as u64;
        if let (Some(end), None) = (found.end, episode.end) {
            episode.end = Some(end);
            episode.recovered_by = found.recovered_by.clone();
            let queued = queue_recovery_clears(txn, config, domain, episode, found);
            episode.clears_queued = queued;
            summary.recovered += 1;
            summary.clears += queued as usize;
            let mut action = records::new_action(
                &format!("rule:{}", found.recovered_by.as_deref().unwrap_or("deliveries")),
                "recovered",
                format!(
                    "{domain} recovered ({}); {queued} of {} affected addresses queued for clearing",
                    found.recovered_by.as_deref().unwrap_or("deliveries"),
                    found.caused.len()
                ),
                ActionStatus::Recorded,
            );
            action.domain = Some(domain.to_string());
            action.episode = Some(episode.id.clone());
            records::record_action(txn, action);
            crate::rules::notify::domain_recovered(txn, domain, episode);
        }
    }
    record.episodes.truncate(EPISODES_KEPT);
    records::put_domain(txn, &record);
    summary
}

fn open_outage(txn: &mut Txn<'_>, domain: &str, episode: &Episode, found: &Found) {
    let mut action = records::new_action(
        "rule:outage",
        "outage_started",
        format!(
            "{} domain- or sender-scope failures from {} addresses within the outage window",
            found.trigger.len(),
            found.caused.len().max(1)
        ),
        ActionStatus::Recorded,
    );
    action.domain = Some(domain.to_string());
    action.episode = Some(episode.id.clone());
    action.evidence = found.trigger.clone();
    records::record_action(txn, action);
    crate::rules::notify::outage_started(txn, domain, episode);
}

/// Whether an address's bounce is one an outage caused and clearing it is safe: Okta has it
/// suppressed, and its newest failure points at the domain or the sender, not the mailbox.
pub fn outage_caused(state: &AddressState) -> Result<(), &'static str> {
    if !state.status().is_suppressed() {
        return Err("not on the bounce list (its newest status is not bounced or dropped)");
    }
    match state.verdict().map(|verdict| verdict.scope) {
        Some(Scope::Domain | Scope::Sender) => Ok(()),
        Some(Scope::Mailbox) => Err("its own mailbox is the cause"),
        Some(Scope::Content) => Err("the message content is the cause"),
        Some(Scope::Unknown) | None => Err("the cause of its newest failure is unknown"),
    }
}

fn queue_recovery_clears(
    txn: &mut Txn<'_>,
    config: &Config,
    domain: &str,
    episode: &Episode,
    found: &Found,
) -> u64 {
    if config.domain_settings(domain).never_auto_clear {
        let mut action = records::new_action(
            "rule:outage-recovery",
            "kept",
            format!(
                "{domain} is set never to clear automatically; {} addresses left for an admin",
                found.caused.len()
            ),
            ActionStatus::Recorded,
        );
        action.domain = Some(domain.to_string());
        action.episode = Some(episode.id.clone());
        records::record_action(txn, action);
        return 0;
    }
    let runtime = records::runtime_settings_in(txn);
    let approval = runtime.approval_mode.unwrap_or(config.approval_mode);
    let mut queued = 0;
    for (address, evidence) in &found.caused {
        if records::queued_in_episode(txn, &episode.id, address) {
            continue;
        }
        let Some(state) = txn.get_json::<AddressState>(&crate::store::keys::address(address))
        else {
            continue;
        };
        if let Err(reason) = outage_caused(&state) {
            let mut action = records::new_action(
                "rule:outage-recovery",
                "kept",
                reason,
                ActionStatus::Recorded,
            );
            action.address = Some(address.clone());
            action.domain = Some(domain.to_string());
            action.episode = Some(episode.id.clone());
            action.evidence = evidence.clone();
            records::record_action(txn, action);
            continue;
        }
        let request = ClearRequest {
            address: address.clone(),
            actor: "rule:outage-recovery".into(),
            reason: format!("bounced during the outage of {domain}, which has recovered"),
            episode: Some(episode.id.clone()),
            evidence: evidence.clone(),
            force: false,
            dry_run: config.dry_run,
            approval,
            loop_guard: chrono::Duration::hours(config.loop_guard_hours as i64),
        };
        match records::queue_clear(txn, request) {
            Ok(_) => queued += 1,
            Err(ClearRefusal::LoopGuard(reason)) => {
                let mut action = records::new_action(
                    "rule:loop-guard",
                    "loop_guard",
                    reason,
                    ActionStatus::Recorded,
                );
                action.address = Some(address.clone());
                action.domain = Some(domain.to_string());
                action.episode = Some(episode.id.clone());
                records::record_action(txn, action);
            }
            Err(ClearRefusal::NotFound) => {}
        }
    }
    queued
}
