//! Storing hook deliveries and backfilled events: one job per delivery, so every event of it,
//! the state it changes and the rules work it causes commit together.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::keys;
use super::records::QuarantineEntry;
use super::{Store, StoreError, Txn};
use crate::state::address::Observation;
use crate::state::{AddressState, DomainEvent, DomainState, EventKey};

/// Raw bytes are kept in chunks well under sled's blob threshold (a quarter of its 512 KiB
/// segment), because sled never syncs the separate files it writes larger values to.
const RAW_CHUNK: usize = 64 * 1024;

/// One parsed, classified event ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub key: EventKey,
    pub address: crate::address::EmailAddress,
    pub status: crate::okta::DeliveryStatus,
    pub verdict: Option<crate::classify::Verdict>,
    pub message: Option<String>,
    pub reason: Option<String>,
    /// The event as Okta sent it, in compact JSON, stored under its uuid.
    pub stored: Vec<u8>,
}

/// Something to keep in the quarantine.
#[derive(Debug, Clone)]
pub struct QuarantineItem {
    pub reason: String,
    pub field: Option<String>,
    pub detail: String,
    pub event_uuid: Option<String>,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub stored: usize,
    pub duplicates: usize,
    pub quarantined: usize,
    /// Per stored event: its status word, for metrics.
    pub statuses: Vec<&'static str>,
}

/// Rules work for one domain: evaluate it, starting no later than the event at `from` (and
/// `from_uuid`, when known).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RulesWork {
    pub domain: String,
    pub from: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_uuid: Option<String>,
}

/// Most events stored by one write job. A larger delivery is stored in several jobs, one after
/// another, so the deliveries queued behind it wait for one chunk rather than the whole of it.
/// Committing a delivery in parts is safe because it is acknowledged only after the last part,
/// and a retried delivery finds the stored parts as duplicates.
const EVENTS_PER_JOB: usize = 500;

impl Store {
    /// Stores a delivery's events and quarantine entries durably before returning. Events whose
    /// uuid is already stored are counted as duplicates and change nothing.
    pub async fn ingest(
        &self,
        mut events: Vec<NewEvent>,
        quarantine: Vec<QuarantineItem>,
    ) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let mut quarantine = Some(quarantine);
        loop {
            let rest = events.split_off(events.len().min(EVENTS_PER_JOB));
            let chunk = std::mem::replace(&mut events, rest);
            let part = self
                .ingest_job(chunk, quarantine.take().unwrap_or_default())
                .await?;
            report.stored += part.stored;
            report.duplicates += part.duplicates;
            report.quarantined += part.quarantined;
            report.statuses.extend(part.statuses);
            if events.is_empty() {
                return Ok(report);
            }
        }
    }

    async fn ingest_job(
        &self,
        events: Vec<NewEvent>,
        quarantine: Vec<QuarantineItem>,
    ) -> Result<IngestReport, StoreError> {
        self.write(move |txn| {
            let mut report = IngestReport::default();
            for item in quarantine {
                put_quarantine(txn, item);
                report.quarantined += 1;
            }
            let mut touched: BTreeMap<String, EventKey> = BTreeMap::new();
            // Each domain's state is read once and written once per delivery, however many of
            // its events the delivery carries.
            let mut domains: BTreeMap<String, DomainState> = BTreeMap::new();
            for event in events {
                let domain = event.address.domain().to_string();
                let domain_state = domains.entry(domain.clone()).or_insert_with(|| {
                    txn.get_json(&keys::domain(&domain))
                        .unwrap_or_else(|| DomainState::new(&domain))
                });
                let status = event.status;
                let key = event.key.clone();
                if !apply_event(txn, domain_state, event) {
                    report.duplicates += 1;
                    continue;
                }
                report.stored += 1;
                report.statuses.push(status.as_str());
                let from = touched.entry(domain).or_insert_with(|| key.clone());
                if key < *from {
                    *from = key;
                }
            }
            for (domain, domain_state) in &domains {
                if touched.contains_key(domain) {
                    txn.put_json(keys::domain(domain), domain_state);
                }
            }
            for (domain, from) in touched {
                super::rules::queue_rules_work(txn, &domain, &from);
            }
            report
        })
        .await
    }
}

/// Writes one event and its address's state, and counts it in `domain_state`, which the caller
/// writes. Returns false for a duplicate.
fn apply_event(txn: &mut Txn<'_>, domain_state: &mut DomainState, mut event: NewEvent) -> bool {
    let event_key = keys::event(&event.key.uuid);
    if txn.contains(&event_key) {
        return false;
    }
    let published = event.key.published;
    let address = event.address.key();
    let domain = event.address.domain();
    txn.put(event_key, std::mem::take(&mut event.stored));
    txn.put(keys::event_time(published, &event.key.uuid), Vec::new());
    txn.put_json(
        keys::domain_event(domain, published, &event.key.uuid),
        &DomainEvent {
            published,
            uuid: event.key.uuid.clone(),
            address: address.to_string(),
            status: event.status,
            scope: event.verdict.map(|verdict| verdict.scope),
        },
    );

    let seen = Observation {
        key: event.key.clone(),
        status: event.status,
        verdict: event.verdict,
        raw_address: event.address.raw(),
        message: event.message.as_deref(),
        reason: event.reason.as_deref(),
    };
    let address_key = keys::address(address);
    let mut state = match txn.get_json::<AddressState>(&address_key) {
        Some(state) => state,
        None => {
            txn.put(keys::address_by_domain(domain, address), Vec::new());
            domain_state.addresses += 1;
            AddressState::new(address, domain, &seen)
        }
    };
    state.apply(&seen);
    txn.put_json(address_key, &state);
    super::outbox::enqueue_event(txn, &event, &state);
    domain_state.count(event.status, published);
    true
}

/// Writes a quarantine entry and its raw bytes.
pub(super) fn put_quarantine(txn: &mut Txn<'_>, item: QuarantineItem) -> String {
    let id = txn.next_id();
    let entry = QuarantineEntry {
        id: format!("q_{id}"),
        received_at: Utc::now(),
        reason: item.reason,
        field: item.field,
        detail: item.detail,
        event_uuid: item.event_uuid,
        size: item.raw.len() as u64,
    };
    txn.put_json(
        keys::join(keys::QUARANTINE, &[&keys::reversed_id(id)]),
        &entry,
    );
    for (index, chunk) in item.raw.chunks(RAW_CHUNK).enumerate() {
        let key = keys::join(
            keys::QUARANTINE_RAW,
            &[&keys::id_bytes(id), &(index as u32).to_be_bytes()],
        );
        txn.put(key, chunk.to_vec());
    }
    entry.id
}
