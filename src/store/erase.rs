//! Erasure of one address on request: its state, its `i/` index entry, its events (found through
//! the domain's `x/` events and the address's history), its queued clears and episode markers.
//! Audit log actions that named it keep their record but name only the masked form. An `erased`
//! action names the masked form and the SHA-256 of the normalised key, so the erasure can be
//! shown later for an address someone presents, without the store keeping the address.
//!
//! NOTE: quarantined raw bytes and outbox notifications are not searched, and may still contain
//! the address until retention deletes them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::keys;
use super::records::{Action, ActionStatus, ClearJob};
use super::retention::BATCH;
use super::rules::{self as records, push_rules_work};
use super::{Store, StoreError};
use crate::address::mask_key;
use crate::state::{AddressState, DomainEvent, DomainState};

/// Key prefix of the markers that an address was queued for clearing in an outage episode.
const EPISODE_CLEAR: &[u8] = b"k/";

/// The `published` time of one of the address's events, and its `x/` key if it has one.
type EventKeys = (DateTime<Utc>, Option<Vec<u8>>);

/// The result of one erasure: the number of events deleted and the audit action recording it.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub events: u64,
    pub action: Action,
}

/// Returns the lowercase hex SHA-256 of a normalised address key.
pub fn address_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Store {
    /// Erases everything the store keeps about the address `key` (normalised). Returns `None`
    /// when the address is unknown.
    ///
    /// Events are deleted in batches before the address state goes, so an erasure cut short by
    /// a crash leaves the address visible and can be run again.
    // NOTE: an event stored for the address while the erasure runs may survive it; erasing
    // again removes it.
    pub async fn erase_address(
        &self,
        key: &str,
        actor: &str,
    ) -> Result<Option<Erasure>, StoreError> {
        let Some(state) = self.address(key)? else {
            return Ok(None);
        };
        let events = self.address_events(&state)?;
        let count = events.len() as u64;
        let keys_to_remove: Vec<Vec<u8>> = events
            .into_iter()
            .flat_map(|(uuid, (published, domain_event))| {
                let mut doomed = vec![keys::event(&uuid), keys::event_time(published, &uuid)];
                doomed.extend(domain_event);
                doomed
            })
            .collect();
        for chunk in keys_to_remove.chunks(BATCH * 3) {
            let chunk = chunk.to_vec();
            self.write(move |txn| {
                for key in chunk {
                    txn.remove(&key);
                }
            })
            .await?;
        }

        let naming_actions = self.actions_naming(key)?;
        let clear_jobs = self.clear_jobs_of(key)?;
        let markers = self.episode_markers_of(key)?;
        let address = state.address.clone();
        let domain = state.domain.clone();
        let actor = actor.to_string();
        let action = self
            .write(move |txn| {
                let masked = mask_key(&address);
                txn.remove(&keys::address(&address));
                txn.remove(&keys::address_by_domain(&domain, &address));
                if let Some(mut record) = txn.get_json::<DomainState>(&keys::domain(&domain)) {
                    record.addresses = record.addresses.saturating_sub(1);
                    txn.put_json(keys::domain(&domain), &record);
                }
                for job in clear_jobs {
                    txn.remove(&records::clear_job_key(job));
                }
                for marker in markers {
                    txn.remove(&marker);
                }
                for action_key in naming_actions {
                    if let Some(mut action) = txn.get_json::<Action>(&action_key) {
                        action.address = Some(masked.clone());
                        txn.put_json(action_key, &action);
                    }
                }
                // The domain's health is evaluated again without the erased events.
                push_rules_work(txn, &domain, DateTime::<Utc>::UNIX_EPOCH);

                let digest = address_digest(&address);
                let mut action = records::new_action(
                    &actor,
                    "erased",
                    format!(
                        "erased on request: the address's state, history and {count} events; \
                         the SHA-256 of its normalised form is {digest}"
                    ),
                    ActionStatus::Done,
                );
                action.address = Some(masked);
                action.domain = Some(domain.clone());
                action.result = Some(format!("sha256:{digest}"));
                records::record_action(txn, action)
            })
            .await?;
        Ok(Some(Erasure {
            events: count,
            action,
        }))
    }

    /// Collects the address's events by uuid from the domain's `x/` events and from the
    /// address's history, which also covers an event without a domain event.
    fn address_events(
        &self,
        state: &AddressState,
    ) -> Result<BTreeMap<String, EventKeys>, StoreError> {
        let mut events = BTreeMap::new();
        for entry in self
            .tree
            .scan_prefix(keys::domain_event_prefix(&state.domain))
        {
            let (key, value) = entry?;
            let Ok(event) = serde_json::from_slice::<DomainEvent>(&value) else {
                continue;
            };
            if event.address == state.address {
                events.insert(event.uuid, (event.published, Some(key.to_vec())));
            }
        }
        for entry in &state.history {
            events
                .entry(entry.uuid.clone())
                .or_insert((entry.published, None));
        }
        Ok(events)
    }

    /// Keys of audit log actions whose `address` is `key`.
    fn actions_naming(&self, key: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut found = Vec::new();
        for entry in self.tree.scan_prefix(keys::ACTION) {
            let (action_key, value) = entry?;
            let Ok(action) = serde_json::from_slice::<Action>(&value) else {
                continue;
            };
            if action.address.as_deref() == Some(key) {
                found.push(action_key.to_vec());
            }
        }
        Ok(found)
    }

    /// Ids of queued clears of `key`.
    fn clear_jobs_of(&self, key: &str) -> Result<Vec<u64>, StoreError> {
        let mut found = Vec::new();
        for entry in self.tree.scan_prefix(keys::CLEAR_QUEUE) {
            let (_, value) = entry?;
            if let Ok(job) = serde_json::from_slice::<ClearJob>(&value) {
                if job.address == key {
                    found.push(job.id);
                }
            }
        }
        Ok(found)
    }

    /// Keys of the episode markers of `key` (`k/` episode, 0, address).
    fn episode_markers_of(&self, key: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut suffix = vec![0];
        suffix.extend_from_slice(key.as_bytes());
        let mut found = Vec::new();
        for entry in self.tree.scan_prefix(EPISODE_CLEAR).keys() {
            let marker = entry?;
            if marker.ends_with(&suffix) {
                found.push(marker.to_vec());
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_hex_of_key() {
        assert_eq!(
            address_digest("a@example.com"),
            "08168cd80dfd534ab0f10af10f1303fe00af2d43ab5c1432360d137f8197e17a"
        );
    }
}
