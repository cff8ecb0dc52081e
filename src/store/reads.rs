//! Reads for the admin API and the rules: committed data only, paged by an opaque cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;

use super::keys;
use super::records::{Action, ClearJob, QuarantineEntry};
use super::{Store, StoreError};
use crate::state::{AddressState, AddressStatus, DomainEvent, DomainState};

/// One page of a list: the items and the cursor of the next page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

fn encode_cursor(key: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// Decodes a cursor; `None` when it is not one this store made for `prefix`.
pub fn decode_cursor(cursor: &str, prefix: &[u8]) -> Option<Vec<u8>> {
    let key = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    key.starts_with(prefix).then_some(key)
}

impl Store {
    fn get_record<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| StoreError::Corrupt(format!("unreadable record: {err}"))),
            None => Ok(None),
        }
    }

    /// Scans records under `prefix` after the cursor, keeping those `keep` accepts, until
    /// `limit` are found.
    fn page<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        limit: usize,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Result<Page<T>, StoreError> {
        let mut items = Vec::new();
        let mut range = match cursor {
            Some(after) => self
                .tree
                .range::<&[u8], _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => self.tree.range::<&[u8], _>(prefix..),
        };
        let mut last_key = None;
        for entry in range.by_ref() {
            let (key, value) = entry?;
            if !key.starts_with(prefix) {
                break;
            }
            let Ok(record) = serde_json::from_slice::<T>(&value) else {
                // Keys of address records contain whole addresses, so only the prefix is logged.
                tracing::error!(
                    prefix = %String::from_utf8_lossy(prefix),
                    key_bytes = key.len(),
                    "unreadable stored record skipped"
                );
                continue;
            };
            if keep(&record) {
                items.push(record);
                last_key = Some(key.to_vec());
                if items.len() == limit {
                    break;
                }
            }
        }
        let more = items.len() == limit
            && match &last_key {
                Some(key) => self
                    .tree
                    .range::<&[u8], _>((
                        std::ops::Bound::Excluded(key.as_slice()),
                        std::ops::Bound::Unbounded,
                    ))
                    .next()
                    .transpose()?
                    .is_some_and(|(next, _)| next.starts_with(prefix)),
                None => false,
            };
        Ok(Page {
            items,
            next: if more {
                last_key.as_deref().map(encode_cursor)
            } else {
                None
            },
        })
    }

    pub fn address(&self, key: &str) -> Result<Option<AddressState>, StoreError> {
        self.get_record(&keys::address(key))
    }

    /// Addresses, optionally of one domain and one status, in key order.
    pub fn addresses(
        &self,
        domain: Option<&str>,
        status: Option<AddressStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AddressState>, StoreError> {
        let wanted = |state: &AddressState| status.is_none_or(|status| state.status() == status);
        match domain {
            None => {
                let cursor = cursor.and_then(|c| decode_cursor(c, keys::ADDRESS));
                self.page(keys::ADDRESS, cursor.as_deref(), limit, wanted)
            }
            Some(domain) => {
                // Walk the domain's index and read each address; the cursor is an index key.
                let prefix = keys::address_by_domain_prefix(domain);
                let start = cursor.and_then(|c| decode_cursor(c, &prefix));
                let mut items = Vec::new();
                let mut next = None;
                let mut last_key: Option<Vec<u8>> = None;
                let iter = match &start {
                    Some(after) => self.tree.range::<&[u8], _>((
                        std::ops::Bound::Excluded(after.as_slice()),
                        std::ops::Bound::Unbounded,
                    )),
                    None => self.tree.range::<&[u8], _>(prefix.as_slice()..),
                };
                for entry in iter {
                    let (key, _) = entry?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    if items.len() == limit {
                        // One more index entry exists: the page ends at the last returned key.
                        next = last_key.as_deref().map(encode_cursor);
                        break;
                    }
                    let address = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
                    if let Some(state) = self.address(&address)? {
                        if wanted(&state) {
                            items.push(state);
                            last_key = Some(key.to_vec());
                        }
                    }
                }
                Ok(Page { items, next })
            }
        }
    }

    /// Every address key of a domain (for the rules).
    pub fn domain_address_keys(&self, domain: &str) -> Result<Vec<String>, StoreError> {
        let prefix = keys::address_by_domain_prefix(domain);
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(&prefix) {
            let (key, _) = entry?;
            out.push(String::from_utf8_lossy(&key[prefix.len()..]).to_string());
        }
        Ok(out)
    }

    pub fn domain(&self, name: &str) -> Result<Option<DomainState>, StoreError> {
        self.get_record(&keys::domain(name))
    }

    /// Domains, sorted by failures in their last 24 hours, most first.
    pub fn domains_by_failures(&self, limit: usize) -> Result<Vec<DomainState>, StoreError> {
        let mut all = Vec::new();
        for entry in self.tree.scan_prefix(keys::DOMAIN) {
            let (_, value) = entry?;
            if let Ok(state) = serde_json::from_slice::<DomainState>(&value) {
                all.push(state);
            }
        }
        all.sort_by(|a, b| {
            b.last_24h()
                .failures()
                .cmp(&a.last_24h().failures())
                .then_with(|| a.domain.cmp(&b.domain))
        });
        all.truncate(limit);
        Ok(all)
    }

    /// A domain's events for the rules, in (`published`, uuid) order.
    pub fn domain_events(&self, domain: &str) -> Result<Vec<DomainEvent>, StoreError> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(keys::domain_event_prefix(domain)) {
            let (_, value) = entry?;
            match serde_json::from_slice(&value) {
                Ok(event) => out.push(event),
                Err(err) => {
                    tracing::error!(error = %err, domain, "unreadable domain event skipped")
                }
            }
        }
        Ok(out)
    }

    /// A stored event as JSON.
    pub fn event(&self, uuid: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.get_record(&keys::event(uuid))
    }

    /// The audit log, newest first.
    pub fn actions(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Action>, StoreError> {
        let cursor = cursor.and_then(|c| decode_cursor(c, keys::ACTION));
        self.page(keys::ACTION, cursor.as_deref(), limit, |_: &Action| true)
    }

    pub fn quarantine(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<QuarantineEntry>, StoreError> {
        let cursor = cursor.and_then(|c| decode_cursor(c, keys::QUARANTINE));
        self.page(
            keys::QUARANTINE,
            cursor.as_deref(),
            limit,
            |_: &QuarantineEntry| true,
        )
    }

    /// Queued clears in the order they were queued.
    pub fn clear_jobs(&self, limit: usize) -> Result<Vec<ClearJob>, StoreError> {
        let page = self.page(keys::CLEAR_QUEUE, None, limit, |_: &ClearJob| true)?;
        Ok(page.items)
    }

    /// Number of records under a prefix (queue depths for metrics and status).
    pub fn count_prefix(&self, prefix: &[u8]) -> usize {
        self.tree.scan_prefix(prefix).keys().count()
    }
}

impl Store {
    /// The raw bytes kept with a quarantine entry (`q_<n>`), or `None` when there is no such
    /// entry.
    pub fn quarantine_raw(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(number) = id.strip_prefix("q_").and_then(|n| n.parse::<u64>().ok()) else {
            return Ok(None);
        };
        let entry_key = keys::join(keys::QUARANTINE, &[&keys::reversed_id(number)]);
        if self.tree.get(entry_key)?.is_none() {
            return Ok(None);
        }
        let mut raw = Vec::new();
        let prefix = keys::join(keys::QUARANTINE_RAW, &[&keys::id_bytes(number)]);
        for chunk in self.tree.scan_prefix(prefix) {
            let (_, value) = chunk?;
            raw.extend_from_slice(&value);
        }
        Ok(Some(raw))
    }
}
