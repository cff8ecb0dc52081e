//! Retention: deletes events, audit log actions and quarantine entries once they are older than
//! their configured number of days, in bounded batches through [`Store::write`] so the hook's
//! jobs keep their turn on the writer thread between batches.
//!
//! An event is removed with its `t/` time index entry, its `x/` domain event and its entry in
//! the address's history. The `e/` key is also the record of which uuids were seen, so a
//! pruned event delivered again (by a backfill, say) is stored again as new. Okta keeps its
//! System Log for 90 days, so a backfill cannot reach events older than that.
//!
//! Address and domain state outlive their events: an address bounced long ago is still on
//! Okta's bounce list, and its state is what a later clear needs.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::keys;
use super::records::{Action, QuarantineEntry};
use super::{Store, StoreError};
use crate::config::Config;
use crate::okta::event::LogEvent;
use crate::okta::recipient::find_recipient;
use crate::state::{AddressState, DomainState};
use crate::telemetry::Metrics;

/// Records deleted by one write job.
pub const BATCH: usize = 500;
/// Keys examined while planning one batch, so a long run of kept events bounds each step.
const SCAN_LIMIT: usize = BATCH * 8;

/// Records deleted by one retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub events: u64,
    pub actions: u64,
    pub quarantine: u64,
}

/// One event to delete and where its other records live.
struct DoomedEvent {
    uuid: String,
    time_key: Vec<u8>,
    domain_event_key: Option<Vec<u8>>,
    address: Option<String>,
}

/// A planned batch and the key to continue after.
struct EventPlan {
    doomed: Vec<DoomedEvent>,
    /// The last key examined; `None` when the scan reached the cutoff.
    resume_after: Option<Vec<u8>>,
}

/// Returns the cutoff `days` before `now`, or `None` when `days` is 0 (keep forever).
pub fn cutoff(now: DateTime<Utc>, days: u64) -> Option<DateTime<Utc>> {
    if days == 0 {
        return None;
    }
    Some(now - chrono::Duration::days(days.min(365 * 1000) as i64))
}

impl Store {
    /// Runs one retention pass with the configured periods, stopping early when `stop` turns true.
    pub async fn prune_expired(
        &self,
        config: &Config,
        now: DateTime<Utc>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        if let Some(cutoff) = cutoff(now, config.retention_days) {
            pruned.events = self.prune_events_before(cutoff, stop).await?;
        }
        if let Some(cutoff) = cutoff(now, config.action_retention_days) {
            pruned.actions = self
                .prune_log_before(keys::ACTION, cutoff, stop, |action: &Action| action.at)
                .await?;
        }
        if let Some(cutoff) = cutoff(now, config.quarantine_retention_days) {
            pruned.quarantine = self.prune_quarantine_before(cutoff, stop).await?;
        }
        // TODO: dead letters of the outbox get no retention yet. Their key layout belongs to the
        // outbox; once it is merged, prune them here with `prune_log_before`.
        Ok(pruned)
    }

    /// Deletes events published before `cutoff`, except those of a domain with an open outage:
    /// the rules need an open episode's events to detect its recovery and clear its bounces.
    pub async fn prune_events_before(
        &self,
        cutoff: DateTime<Utc>,
        stop: &watch::Receiver<bool>,
    ) -> Result<u64, StoreError> {
        let end = keys::join(keys::EVENT_TIME, &[&keys::millis(cutoff)]);
        let mut resume_after: Option<Vec<u8>> = None;
        let mut total = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            let plan = self.plan_events(resume_after.as_deref(), &end)?;
            let count = plan.doomed.len() as u64;
            if count > 0 {
                self.write(move |txn| {
                    for event in plan.doomed {
                        txn.remove(&event.time_key);
                        txn.remove(&keys::event(&event.uuid));
                        if let Some(key) = &event.domain_event_key {
                            txn.remove(key);
                        }
                        let Some(address) = event.address else {
                            continue;
                        };
                        let key = keys::address(&address);
                        if let Some(mut state) = txn.get_json::<AddressState>(&key) {
                            let before = state.history.len();
                            state.history.retain(|entry| entry.uuid != event.uuid);
                            if state.history.len() != before {
                                txn.put_json(key, &state);
                            }
                        }
                    }
                })
                .await?;
                total += count;
            }
            match plan.resume_after {
                Some(key) => resume_after = Some(key),
                None => break,
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }

    /// Reads up to [`BATCH`] events to delete from the `t/` index, below `end`.
    fn plan_events(&self, after: Option<&[u8]>, end: &[u8]) -> Result<EventPlan, StoreError> {
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Included(keys::EVENT_TIME),
        };
        let mut outage: HashMap<String, bool> = HashMap::new();
        let mut doomed = Vec::new();
        let mut examined = 0;
        let mut last_key = None;
        for entry in self.tree.range::<&[u8], _>((start, Bound::Excluded(end))) {
            let (time_key, _) = entry?;
            examined += 1;
            last_key = Some(time_key.to_vec());
            let uuid =
                String::from_utf8_lossy(&time_key[keys::EVENT_TIME.len() + 8..]).into_owned();
            let recipient = match self.tree.get(keys::event(&uuid))? {
                Some(stored) => serde_json::from_slice::<LogEvent>(&stored)
                    .ok()
                    .and_then(|event| find_recipient(&event).map(|address| (event, address))),
                None => None,
            };
            let (domain_event_key, address) = match &recipient {
                Some((event, address)) => {
                    let domain = address.domain().to_string();
                    let in_outage = match outage.get(&domain) {
                        Some(known) => *known,
                        None => {
                            let known = self.domain_in_outage(&domain)?;
                            outage.insert(domain.clone(), known);
                            known
                        }
                    };
                    if in_outage {
                        if examined >= SCAN_LIMIT {
                            break;
                        }
                        continue;
                    }
                    let key = keys::domain_event(&domain, event.published, &uuid);
                    (Some(key), Some(address.key().to_string()))
                }
                None => {
                    // An event that cannot be read no longer feeds the rules; its index goes too.
                    tracing::warn!(
                        uuid,
                        "pruning an event whose stored record is missing or unreadable"
                    );
                    (None, None)
                }
            };
            doomed.push(DoomedEvent {
                uuid,
                time_key: time_key.to_vec(),
                domain_event_key,
                address,
            });
            if doomed.len() >= BATCH || examined >= SCAN_LIMIT {
                break;
            }
        }
        let finished = doomed.len() < BATCH && examined < SCAN_LIMIT;
        Ok(EventPlan {
            doomed,
            resume_after: if finished { None } else { last_key },
        })
    }

    fn domain_in_outage(&self, domain: &str) -> Result<bool, StoreError> {
        let state: Option<DomainState> = self.domain(domain)?;
        Ok(state.is_some_and(|state| state.open_episode().is_some()))
    }

    /// Deletes records of a newest-first log (keys of a prefix followed by a reversed id)
    /// whose time, read by `time_of`, is before `cutoff`. Ids grow with time, so the scan runs
    /// from the oldest entry and stops at the first one to keep. Usable for any log stored
    /// that way: the audit log, the quarantine and the outbox's dead letters.
    pub async fn prune_log_before<T, F>(
        &self,
        prefix: &'static [u8],
        cutoff: DateTime<Utc>,
        stop: &watch::Receiver<bool>,
        time_of: F,
    ) -> Result<u64, StoreError>
    where
        T: DeserializeOwned,
        F: Fn(&T) -> DateTime<Utc>,
    {
        let mut total = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            let doomed = self.plan_log(prefix, cutoff, &time_of)?;
            let count = doomed.len() as u64;
            if count == 0 {
                break;
            }
            self.write(move |txn| {
                for key in doomed {
                    txn.remove(&key);
                }
            })
            .await?;
            total += count;
            if count < BATCH as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }

    /// Returns the oldest keys of a newest-first log that are older than `cutoff`, at most [`BATCH`].
    fn plan_log<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        cutoff: DateTime<Utc>,
        time_of: &impl Fn(&T) -> DateTime<Utc>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut doomed = Vec::new();
        for entry in self.tree.scan_prefix(prefix).rev() {
            let (key, value) = entry?;
            match serde_json::from_slice::<T>(&value) {
                Ok(record) if time_of(&record) >= cutoff => break,
                Ok(_) => {}
                Err(err) => {
                    // Kept out of the way of the scan: an unreadable record would otherwise
                    // stop retention for the whole log.
                    tracing::warn!(error = %err, key = %String::from_utf8_lossy(&key), "pruning an unreadable log record");
                }
            }
            doomed.push(key.to_vec());
            if doomed.len() >= BATCH {
                break;
            }
        }
        Ok(doomed)
    }

    /// Deletes quarantine entries received before `cutoff`, with their raw bytes.
    pub async fn prune_quarantine_before(
        &self,
        cutoff: DateTime<Utc>,
        stop: &watch::Receiver<bool>,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            let doomed = self.plan_log(keys::QUARANTINE, cutoff, &|entry: &QuarantineEntry| {
                entry.received_at
            })?;
            let count = doomed.len() as u64;
            if count == 0 {
                break;
            }
            let mut raw_keys = Vec::new();
            for key in &doomed {
                let Some(id) = keys::id_from_reversed(&key[keys::QUARANTINE.len()..]) else {
                    continue;
                };
                let chunks = keys::join(keys::QUARANTINE_RAW, &[&keys::id_bytes(id)]);
                for chunk in self.tree.scan_prefix(chunks).keys() {
                    raw_keys.push(chunk?.to_vec());
                }
            }
            self.write(move |txn| {
                for key in doomed.iter().chain(&raw_keys) {
                    txn.remove(key);
                }
            })
            .await?;
            total += count;
            if count < BATCH as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }
}

/// Runs the retention task: one pass at start, then one every `retention_interval_seconds`.
pub async fn run(
    store: Store,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = Duration::from_secs(config.retention_interval_seconds.max(1));
    loop {
        match store.prune_expired(&config, Utc::now(), &stop).await {
            Ok(pruned) => record(&metrics, pruned),
            Err(err) => {
                tracing::error!(error = %err, "retention pass failed; retrying at the next interval")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

fn record(metrics: &Metrics, pruned: Pruned) {
    for (kind, count) in [
        ("events", pruned.events),
        ("actions", pruned.actions),
        ("quarantine", pruned.quarantine),
    ] {
        metrics.inc(
            "bouncewatch_retention_pruned_total",
            "Records deleted by retention, by kind.",
            &[("kind", kind)],
            count,
        );
    }
    if pruned != Pruned::default() {
        tracing::info!(
            events = pruned.events,
            actions = pruned.actions,
            quarantine = pruned.quarantine,
            "retention pass deleted expired records"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use crate::store::records::ActionStatus;
    use crate::store::rules::{new_action, record_action};

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(dir.path(), Durability::Crash, Duration::from_secs(1)).unwrap()
    }

    fn quarantine(id: u64, received_at: DateTime<Utc>) -> (Vec<u8>, QuarantineEntry, Vec<u8>) {
        let entry = QuarantineEntry {
            id: format!("q_{id}"),
            received_at,
            reason: "malformed_event".into(),
            field: None,
            detail: "test".into(),
            event_uuid: None,
            size: 3,
        };
        let key = keys::join(keys::QUARANTINE, &[&keys::reversed_id(id)]);
        let raw = keys::join(
            keys::QUARANTINE_RAW,
            &[&keys::id_bytes(id), &0u32.to_be_bytes()],
        );
        (key, entry, raw)
    }

    #[tokio::test]
    async fn old_actions_go_new_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = Utc::now();
        store
            .write(move |txn| {
                for days in [400, 380, 1] {
                    let mut action = new_action("rule:test", "test", "r", ActionStatus::Recorded);
                    action.at = now - chrono::Duration::days(days);
                    record_action(txn, action);
                }
            })
            .await
            .unwrap();
        let (_, stop) = watch::channel(false);
        let cutoff = cutoff(now, 365).unwrap();
        let pruned = store
            .prune_log_before(keys::ACTION, cutoff, &stop, |action: &Action| action.at)
            .await
            .unwrap();
        assert_eq!(pruned, 2);
        let left = store.actions(None, 10).unwrap().items;
        assert_eq!(left.len(), 1);
        assert!(left[0].at > cutoff);
    }

    #[tokio::test]
    async fn quarantine_goes_with_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let now = Utc::now();
        let old = quarantine(1, now - chrono::Duration::days(40));
        let new = quarantine(2, now);
        let (new_key, new_raw) = (new.0.clone(), new.2.clone());
        store
            .write(move |txn| {
                for (key, entry, raw) in [old, new] {
                    txn.put_json(key, &entry);
                    txn.put(raw, b"abc".to_vec());
                }
            })
            .await
            .unwrap();
        let (_, stop) = watch::channel(false);
        let pruned = store
            .prune_quarantine_before(cutoff(now, 30).unwrap(), &stop)
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        assert_eq!(store.count_prefix(keys::QUARANTINE), 1);
        assert_eq!(store.count_prefix(keys::QUARANTINE_RAW), 1);
        assert!(store.tree.contains_key(new_key).unwrap());
        assert!(store.tree.contains_key(new_raw).unwrap());
    }

    #[test]
    fn zero_days_keeps_forever() {
        assert_eq!(cutoff(Utc::now(), 0), None);
    }
}
