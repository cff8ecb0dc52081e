//! Records of the rules: the rules work queue, run-time settings, queued clears and the audit
//! log. Functions taking a `Txn` run inside a caller's write job, so a decision and its
//! effects commit together.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ingest::RulesWork;
use super::keys;
use super::records::{Action, ActionStatus, ClearJob};
use super::{Store, StoreError, Txn};
use crate::state::{AddressState, ClearMark, ClearPhase, DomainState};

/// Key prefix marking that an address was queued for clearing in an episode.
const EPISODE_CLEAR: &[u8] = b"k/";
const SETTINGS: &str = "rules_settings";
const CLEAR_WINDOW: &str = "clear_window";

/// Settings an admin changes at run time, without a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeSettings {
    /// Automatic clearing paused by an admin.
    #[serde(default)]
    pub paused: bool,
    /// Overrides the configured approval mode when set.
    #[serde(default)]
    pub approval_mode: Option<bool>,
    /// Okta's reason after a 403. Clearing stays stopped until an admin resumes it.
    #[serde(default)]
    pub forbidden: Option<String>,
}

/// Clears sent in the current hour, for the hourly cap.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClearWindow {
    pub hour_start: i64,
    pub sent: u64,
    pub cap_alerted: bool,
}

/// The reason a clear was not queued.
#[derive(Debug, Clone, PartialEq)]
pub enum ClearRefusal {
    NotFound,
    LoopGuard(String),
}

/// The parameters of one clear request.
#[derive(Debug, Clone)]
pub struct ClearRequest {
    pub address: String,
    pub actor: String,
    pub reason: String,
    pub episode: Option<String>,
    pub evidence: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
    pub approval: bool,
    pub loop_guard: chrono::Duration,
}

pub fn action_key(id: u64) -> Vec<u8> {
    keys::join(keys::ACTION, &[&keys::reversed_id(id)])
}

pub fn action_id_number(id: &str) -> Option<u64> {
    id.strip_prefix("act_")?.parse().ok()
}

/// Writes a new audit log entry and returns it.
pub fn record_action(txn: &mut Txn<'_>, mut action: Action) -> Action {
    let id = txn.next_id();
    action.id = format!("act_{id}");
    txn.put_json(action_key(id), &action);
    action
}

pub fn update_action(txn: &mut Txn<'_>, action: &Action) {
    if let Some(id) = action_id_number(&action.id) {
        txn.put_json(action_key(id), action);
    }
}

pub fn new_action(
    actor: &str,
    kind: &str,
    reason: impl Into<String>,
    status: ActionStatus,
) -> Action {
    Action {
        id: String::new(),
        at: Utc::now(),
        actor: actor.to_string(),
        kind: kind.to_string(),
        address: None,
        domain: None,
        reason: reason.into(),
        evidence: Vec::new(),
        episode: None,
        status,
        result: None,
    }
}

/// Queues a clear of one address through the safeguards, inside the caller's job.
pub fn queue_clear(txn: &mut Txn<'_>, request: ClearRequest) -> Result<Action, ClearRefusal> {
    let key = keys::address(&request.address);
    let mut state: AddressState = txn.get_json(&key).ok_or(ClearRefusal::NotFound)?;
    let now = Utc::now();

    if !request.force {
        if let (Some(cleared), Some(failure)) = (state.last_cleared_at, &state.latest_failure) {
            let bounced_again = failure.key.published > cleared;
            if bounced_again && now < cleared + request.loop_guard {
                return Err(ClearRefusal::LoopGuard(format!(
                    "the address bounced again after it was cleared at {}; the loop guard holds it until {}",
                    cleared.to_rfc3339(),
                    (cleared + request.loop_guard).to_rfc3339()
                )));
            }
        }
    }

    let status = if request.dry_run {
        ActionStatus::DryRun
    } else if request.approval {
        ActionStatus::AwaitingApproval
    } else {
        ActionStatus::Queued
    };
    let mut action = new_action(&request.actor, "clear", request.reason, status);
    action.address = Some(state.address.clone());
    action.domain = Some(state.domain.clone());
    action.episode = request.episode.clone();
    action.evidence = request.evidence;
    let action = record_action(txn, action);
    if let Some(episode) = &request.episode {
        txn.put(
            episode_clear_key(episode, &state.address),
            action.id.clone().into_bytes(),
        );
    }
    if request.dry_run {
        return Ok(action);
    }

    let id = txn.next_id();
    let job = ClearJob {
        id,
        action_id: action.id.clone(),
        address: state.address.clone(),
        raw: state.raw.clone(),
        domain: state.domain.clone(),
        attempts: 0,
        not_before: now,
        awaiting_approval: request.approval,
    };
    txn.put_json(clear_job_key(id), &job);
    if !request.approval {
        state.clear = Some(ClearMark {
            phase: ClearPhase::Clearing,
            action_id: action.id.clone(),
            at: state.latest.clone(),
        });
        txn.put_json(key, &state);
    }
    Ok(action)
}

pub fn clear_job_key(id: u64) -> Vec<u8> {
    keys::join(keys::CLEAR_QUEUE, &[&keys::id_bytes(id)])
}

fn episode_clear_key(episode: &str, address: &str) -> Vec<u8> {
    keys::join(
        EPISODE_CLEAR,
        &[episode.as_bytes(), &[0], address.as_bytes()],
    )
}

/// Whether an address was already queued for clearing in an episode.
pub fn queued_in_episode(txn: &mut Txn<'_>, episode: &str, address: &str) -> bool {
    txn.contains(&episode_clear_key(episode, address))
}

pub fn runtime_settings_in(txn: &mut Txn<'_>) -> RuntimeSettings {
    txn.get_json(&keys::meta(SETTINGS)).unwrap_or_default()
}

pub fn put_runtime_settings(txn: &mut Txn<'_>, settings: &RuntimeSettings) {
    txn.put_json(keys::meta(SETTINGS), settings);
}

pub fn clear_window_in(txn: &mut Txn<'_>) -> ClearWindow {
    txn.get_json(&keys::meta(CLEAR_WINDOW)).unwrap_or_default()
}

pub fn put_clear_window(txn: &mut Txn<'_>, window: &ClearWindow) {
    txn.put_json(keys::meta(CLEAR_WINDOW), window);
}

pub fn put_domain(txn: &mut Txn<'_>, state: &DomainState) {
    txn.put_json(keys::domain(&state.domain), state);
}

/// Adds rules work for a domain (after an admin's recovery, say), from `from` on.
pub fn push_rules_work(txn: &mut Txn<'_>, domain: &str, from: DateTime<Utc>) {
    queue_rules_work(
        txn,
        domain,
        &crate::state::EventKey {
            published: from,
            uuid: String::new(),
        },
    );
}

/// Key of a domain's entry in the rules queue. There is one entry per domain, so the queue
/// stays as long as the number of domains with new events, however many events arrive.
pub fn rules_work_key(domain: &str) -> Vec<u8> {
    keys::join(keys::RULES_QUEUE, &[domain.as_bytes()])
}

/// Queues a domain for the rules from the event at `from` on, keeping the earlier position
/// when the domain is already queued.
pub fn queue_rules_work(txn: &mut Txn<'_>, domain: &str, from: &crate::state::EventKey) {
    let key = rules_work_key(domain);
    let earlier = txn.get_json::<RulesWork>(&key).is_some_and(|queued| {
        let queued = (queued.from, queued.from_uuid.unwrap_or_default());
        queued <= (from.published, from.uuid.clone())
    });
    if earlier {
        return;
    }
    txn.put_json(
        key,
        &RulesWork {
            domain: domain.to_string(),
            from: from.published,
            from_uuid: Some(from.uuid.clone()),
        },
    );
}

pub fn put_domain_event(txn: &mut Txn<'_>, domain: &str, event: &crate::state::DomainEvent) {
    txn.put_json(
        keys::domain_event(domain, event.published, &event.uuid),
        event,
    );
}

impl Store {
    /// Queued rules work, one entry per domain, each with its stored bytes so the worker can
    /// remove the entry only if no newer work replaced it meanwhile.
    pub fn rules_work(&self, limit: usize) -> Result<Vec<(RulesWork, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(keys::RULES_QUEUE).take(limit) {
            let (key, value) = entry?;
            let work = serde_json::from_slice(&value).unwrap_or_else(|_| RulesWork {
                domain: String::from_utf8_lossy(&key[keys::RULES_QUEUE.len()..]).to_string(),
                from: DateTime::<Utc>::UNIX_EPOCH,
                from_uuid: None,
            });
            out.push((work, value.to_vec()));
        }
        Ok(out)
    }

    pub fn runtime_settings(&self) -> Result<RuntimeSettings, StoreError> {
        Ok(match self.tree.get(keys::meta(SETTINGS))? {
            Some(raw) => serde_json::from_slice(&raw).unwrap_or_default(),
            None => RuntimeSettings::default(),
        })
    }

    pub fn action(&self, id: &str) -> Result<Option<Action>, StoreError> {
        let Some(number) = action_id_number(id) else {
            return Ok(None);
        };
        Ok(match self.tree.get(action_key(number))? {
            Some(raw) => serde_json::from_slice(&raw).ok(),
            None => None,
        })
    }
}

/// Key of a domain's outage-pass checkpoint.
pub fn detector_key(domain: &str) -> Vec<u8> {
    keys::meta(&format!("detector/{domain}"))
}

impl Store {
    /// The outage pass's saved state for a domain.
    pub fn detector(
        &self,
        domain: &str,
    ) -> Result<Option<crate::rules::outage::Detector>, StoreError> {
        Ok(match self.tree.get(detector_key(domain))? {
            Some(raw) => serde_json::from_slice(&raw).ok(),
            None => None,
        })
    }

    /// A domain's events after a position, in order.
    pub fn domain_events_after(
        &self,
        domain: &str,
        after: &(DateTime<Utc>, String),
    ) -> Result<Vec<crate::state::DomainEvent>, StoreError> {
        let prefix = keys::domain_event_prefix(domain);
        let start = keys::domain_event(domain, after.0, &after.1);
        let mut out = Vec::new();
        let range = self.tree.range::<&[u8], _>((
            std::ops::Bound::Excluded(start.as_slice()),
            std::ops::Bound::Unbounded,
        ));
        for entry in range {
            let (key, value) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            match serde_json::from_slice(&value) {
                Ok(event) => out.push(event),
                Err(err) => {
                    tracing::error!(error = %err, domain, "unreadable domain event skipped")
                }
            }
        }
        Ok(out)
    }
}
