//! The durable outbox: subscriptions, pending notifications, and dead letters.
//!
//! [`enqueue`] runs inside the write job that stores the event or decision causing a
//! notification, so a notification is durable exactly when its cause is. The dispatcher in
//! `crate::forward::dispatch` reads due entries, sends them, and records each outcome here.
//!
//! | prefix | key after the prefix | value |
//! |---|---|---|
//! | `s/` | subscription id | `Subscription` |
//! | `o/` | next attempt ms (8 bytes BE, as `keys::millis`) + entry id (8 bytes BE) | a pending `OutboxEntry` |
//! | `O/` | entry id (8 bytes BE) | the entry's `o/` key: the index for lookups by id |
//! | `D/` | reversed entry id | a dead `OutboxEntry`, newest first |

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::ingest::NewEvent;
use super::keys;
use super::reads::{decode_cursor, Page};
use super::{Store, StoreError, Txn};
use crate::forward::notification::{Notification, NotificationKind};
use crate::forward::subscription::Subscription;
use crate::okta::DeliveryStatus;
use crate::state::AddressState;

pub const OUTBOX_INDEX: &[u8] = b"O/";
pub const DEAD_LETTER: &[u8] = b"D/";

/// The maximum number of attempt records kept on one entry. Older ones are dropped.
pub const MAX_ATTEMPT_RECORDS: usize = 20;

/// The maximum number of member notifications copied into one `digest`. Its `counts` cover all.
pub const MAX_DIGEST_ITEMS: usize = 100;

/// Woken after notifications are enqueued or retried, so the dispatcher need not wait for its
/// next poll. One per process: a spurious wake only costs the dispatcher one scan.
pub fn outbox_wake() -> &'static Notify {
    static WAKE: OnceLock<Notify> = OnceLock::new();
    WAKE.get_or_init(Notify::new)
}

/// The lifecycle state of an outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Dead,
}

/// One attempt to send an entry, as the deliveries API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    /// The response status, when a response arrived.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// `delivered`, `retry`, `failed`, `gone`, `refused` or `circuit_open`.
    pub result: String,
    pub error: Option<String>,
}

/// One notification for one subscription, waiting to be sent or dead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: u64,
    pub subscription_id: String,
    pub notification: Notification,
    /// The recipient domain of an address-level notification, used to group digests.
    pub domain: Option<String>,
    pub state: DeliveryState,
    /// Attempts since the entry was created or last retried from the dead letters.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// For a subscription with digest settings: the start of the window this entry waits in.
    /// The dispatcher folds such entries into one `digest` when the window ends.
    #[serde(default)]
    pub digest_window: Option<DateTime<Utc>>,
    /// The newest attempts, oldest first, at most [`MAX_ATTEMPT_RECORDS`].
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
    /// The reason the entry was dead-lettered.
    #[serde(default)]
    pub dead_reason: Option<String>,
}

impl OutboxEntry {
    /// Returns the id the API shows, such as `dlv_42`.
    pub fn public_id(&self) -> String {
        format!("dlv_{}", self.id)
    }

    /// Returns the document for the deliveries API.
    pub fn view(&self) -> Value {
        json!({
            "id": self.public_id(),
            "webhook_id": self.notification.id,
            "subscription_id": self.subscription_id,
            "type": self.notification.kind,
            "timestamp": self.notification.timestamp,
            "domain": self.domain,
            "state": self.state,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "next_attempt_at": (self.state == DeliveryState::Pending).then_some(self.next_attempt_at),
            "digest_window": self.digest_window,
            "last_attempt": self.history.last(),
            "history": self.history,
            "dead_reason": self.dead_reason,
        })
    }

    fn record(&mut self, attempt: AttemptRecord) {
        self.history.push(attempt);
        if self.history.len() > MAX_ATTEMPT_RECORDS {
            let excess = self.history.len() - MAX_ATTEMPT_RECORDS;
            self.history.drain(..excess);
        }
    }
}

/// Parses an API delivery id (`dlv_42`).
pub fn parse_delivery_id(text: &str) -> Option<u64> {
    text.strip_prefix("dlv_")?.parse().ok()
}

/// The result of one attempt, as the dispatcher records it on the entry.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The receiver accepted it: the entry is removed.
    Delivered,
    /// Try again at `at`. `counted` is false when no request was sent (an open circuit).
    Reschedule {
        at: DateTime<Utc>,
        attempt: AttemptRecord,
        counted: bool,
    },
    /// No more attempts: move the entry to the dead letters.
    Dead {
        reason: String,
        attempt: AttemptRecord,
    },
    /// The receiver returned 410 Gone: disable the subscription and dead-letter all of its pending
    /// entries.
    Gone { attempt: AttemptRecord },
}

fn subscription_key(id: &str) -> Vec<u8> {
    keys::join(keys::SUBSCRIPTION, &[id.as_bytes()])
}

fn pending_key(at: DateTime<Utc>, id: u64) -> Vec<u8> {
    keys::join(keys::OUTBOX, &[&keys::millis(at), &keys::id_bytes(id)])
}

fn index_key(id: u64) -> Vec<u8> {
    keys::join(OUTBOX_INDEX, &[&keys::id_bytes(id)])
}

fn dead_key(id: u64) -> Vec<u8> {
    keys::join(DEAD_LETTER, &[&keys::reversed_id(id)])
}

/// Reads every enabled subscription as committed before this write group.
fn enabled_subscriptions(txn: &Txn<'_>) -> Vec<Subscription> {
    let mut found = Vec::new();
    for entry in txn.scan_committed(keys::SUBSCRIPTION) {
        let (key, value) = match entry {
            Ok(pair) => pair,
            Err(err) => {
                tracing::error!(error = %err, "reading subscriptions failed, so this event queues no notifications");
                break;
            }
        };
        match serde_json::from_slice::<Subscription>(&value) {
            Ok(subscription) if subscription.enabled => found.push(subscription),
            Ok(_) => {}
            Err(err) => tracing::error!(
                error = %err,
                key = %String::from_utf8_lossy(&key),
                "unreadable subscription skipped"
            ),
        }
    }
    found
}

/// Writes a new pending entry and its index.
fn put_pending(txn: &mut Txn<'_>, entry: &OutboxEntry) {
    let key = pending_key(entry.next_attempt_at, entry.id);
    txn.put(index_key(entry.id), key.clone());
    txn.put_json(key, entry);
}

/// Removes a pending entry and its index, and returns the entry if it was there.
fn take_pending(txn: &mut Txn<'_>, id: u64) -> Option<OutboxEntry> {
    let index = index_key(id);
    let key = txn.get(&index)?;
    let entry = txn.get_json::<OutboxEntry>(&key);
    txn.remove(&key);
    txn.remove(&index);
    entry
}

fn put_dead(txn: &mut Txn<'_>, mut entry: OutboxEntry, reason: String) {
    tracing::warn!(
        delivery_id = entry.id,
        subscription_id = %entry.subscription_id,
        webhook_id = %entry.notification.id,
        attempts = entry.attempts,
        reason = %reason,
        "notification dead-lettered"
    );
    entry.state = DeliveryState::Dead;
    entry.dead_reason = Some(reason);
    txn.put_json(dead_key(entry.id), &entry);
}

/// Queues one notification of `kind` for every enabled subscription that wants it, inside the
/// caller's write job, so it commits together with its cause.
///
/// The `webhook-id` is `Notification::webhook_id("{kind}/{cause_id}", subscription id)`, so
/// enqueueing the same kind for the same cause twice yields the same id, and receivers drop the
/// copy. `domain` is the normalised recipient domain, or `None` for notifications about no
/// domain. Subscriptions created in the same write group are not seen.
pub fn enqueue(
    txn: &mut Txn<'_>,
    kind: NotificationKind,
    cause_id: &str,
    domain: Option<&str>,
    timestamp: DateTime<Utc>,
    data: Value,
) {
    let subscriptions = enabled_subscriptions(txn);
    enqueue_for(txn, &subscriptions, kind, cause_id, domain, timestamp, data);
}

fn enqueue_for(
    txn: &mut Txn<'_>,
    subscriptions: &[Subscription],
    kind: NotificationKind,
    cause_id: &str,
    domain: Option<&str>,
    timestamp: DateTime<Utc>,
    data: Value,
) {
    let now = Utc::now();
    let cause = format!("{kind}/{cause_id}");
    let mut queued = false;
    for subscription in subscriptions {
        if !subscription.wants(kind, domain) {
            continue;
        }
        let digest_window = match (subscription.digest, domain) {
            (Some(settings), Some(domain)) if kind.is_address_level() && !always_notify(domain) => {
                Some(window_start(now, settings.window_secs))
            }
            _ => None,
        };
        let next_attempt_at = match (digest_window, subscription.digest) {
            (Some(start), Some(settings)) => start + Duration::seconds(settings.window_secs as i64),
            _ => now,
        };
        let entry = OutboxEntry {
            id: txn.next_id(),
            subscription_id: subscription.id.clone(),
            notification: Notification::new(
                kind,
                &cause,
                &subscription.id,
                timestamp,
                data.clone(),
            ),
            domain: domain.map(str::to_string),
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            next_attempt_at,
            digest_window,
            history: Vec::new(),
            dead_reason: None,
        };
        put_pending(txn, &entry);
        queued = true;
    }
    if queued {
        // The group is not committed yet. The dispatcher may scan too early, and then finds
        // the entry at its next poll.
        outbox_wake().notify_one();
    }
}

/// Returns the start of the digest window of `window_secs` that contains `now`, aligned to the
/// Unix epoch.
fn window_start(now: DateTime<Utc>, window_secs: u64) -> DateTime<Utc> {
    let window = window_secs.max(1) as i64;
    let start = now.timestamp().div_euclid(window) * window;
    DateTime::from_timestamp(start, 0).unwrap_or(now)
}

/// Queues `email.delivery` for a newly stored event, and `address.bounced` too when it is a
/// bounce. `state` is the address state after the event was applied: its `event_count` is the
/// per-address version receivers use to drop stale updates.
pub(super) fn enqueue_event(txn: &mut Txn<'_>, event: &NewEvent, state: &AddressState) {
    let subscriptions = enabled_subscriptions(txn);
    if subscriptions.is_empty() {
        return;
    }
    let domain = event.address.domain();
    let data = json!({
        "address": event.address.key(),
        "raw_address": event.address.raw(),
        "domain": domain,
        "status": event.status,
        "verdict": event.verdict,
        "provider_message": event.message,
        "event_uuid": event.key.uuid,
        "published": event.key.published,
        "address_status": state.status(),
        "version": state.event_count,
    });
    let uuid = &event.key.uuid;
    let published = event.key.published;
    if event.status == DeliveryStatus::Bounce {
        let kind = NotificationKind::AddressBounced;
        enqueue_for(
            txn,
            &subscriptions,
            kind,
            uuid,
            Some(domain),
            published,
            data.clone(),
        );
    }
    let kind = NotificationKind::EmailDelivery;
    enqueue_for(
        txn,
        &subscriptions,
        kind,
        uuid,
        Some(domain),
        published,
        data,
    );
}

/// Builds the body of a `digest` from its member entries, which share a subscription, a domain
/// and a window.
fn digest_data(
    domain: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    members: &[OutboxEntry],
) -> Value {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for member in members {
        *counts.entry(member.notification.kind.as_str()).or_default() += 1;
    }
    let items: Vec<Value> = members
        .iter()
        .take(MAX_DIGEST_ITEMS)
        .map(|member| {
            json!({
                "type": member.notification.kind,
                "webhook_id": member.notification.id,
                "timestamp": member.notification.timestamp,
                "data": member.notification.data,
            })
        })
        .collect();
    json!({
        "domain": domain,
        "window_start": start,
        "window_end": end,
        "total": members.len(),
        "counts": counts,
        "items": items,
        "truncated": members.len() > MAX_DIGEST_ITEMS,
    })
}

impl Store {
    // Subscriptions.

    pub fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        match self.tree.get(subscription_key(id))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| StoreError::Corrupt(format!("unreadable subscription {id}: {err}"))),
            None => Ok(None),
        }
    }

    /// Subscriptions in id order.
    pub fn subscriptions(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Subscription>, StoreError> {
        let cursor = cursor.and_then(|c| decode_cursor(c, keys::SUBSCRIPTION));
        self.scan_page(keys::SUBSCRIPTION, cursor, limit, |_: &Subscription| true)
    }

    pub async fn create_subscription(&self, subscription: Subscription) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.put_json(subscription_key(&subscription.id), &subscription);
        })
        .await
    }

    /// Replaces a subscription with what `update` makes of it, in one write job. Returns
    /// `Ok(None)` when the id is unknown.
    pub async fn update_subscription<E, F>(
        &self,
        id: &str,
        update: F,
    ) -> Result<Option<Result<Subscription, E>>, StoreError>
    where
        E: Send + 'static,
        F: FnOnce(&Subscription) -> Result<Subscription, E> + Send + 'static,
    {
        let key = subscription_key(id);
        self.write(move |txn| {
            let current: Subscription = txn.get_json(&key)?;
            let result = update(&current);
            if let Ok(updated) = &result {
                txn.put_json(key, updated);
            }
            Some(result)
        })
        .await
    }

    /// Deletes a subscription with its pending entries and dead letters. Returns `false` when
    /// the id is unknown.
    pub async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |txn| {
            let key = subscription_key(&id);
            if !txn.contains(&key) {
                return false;
            }
            txn.remove(&key);
            for entry in committed_entries(txn, keys::OUTBOX) {
                if entry.subscription_id == id {
                    take_pending(txn, entry.id);
                }
            }
            for entry in committed_entries(txn, DEAD_LETTER) {
                if entry.subscription_id == id {
                    txn.remove(&dead_key(entry.id));
                }
            }
            true
        })
        .await
    }

    // The dispatcher's side.

    /// Pending entries due at `now`, in due order, reading at most `max_scanned` entries.
    pub fn due_entries(
        &self,
        now: DateTime<Utc>,
        max_scanned: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let end = pending_key(now, u64::MAX);
        let mut due = Vec::new();
        for item in self
            .tree
            .range(keys::OUTBOX.to_vec()..=end)
            .take(max_scanned)
        {
            let (key, value) = item?;
            match serde_json::from_slice::<OutboxEntry>(&value) {
                Ok(entry) => due.push(entry),
                Err(err) => tracing::error!(
                    error = %err,
                    key = %String::from_utf8_lossy(&key),
                    "unreadable outbox entry skipped"
                ),
            }
        }
        Ok(due)
    }

    /// Records the outcome of an attempt on a pending entry. Does nothing when the entry is no
    /// longer pending (its subscription was deleted meanwhile).
    pub async fn record_outcome(&self, id: u64, outcome: Outcome) -> Result<(), StoreError> {
        self.record_outcomes(vec![(id, outcome)]).await
    }

    /// Records several outcomes in one write job.
    pub async fn record_outcomes(&self, outcomes: Vec<(u64, Outcome)>) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.write(move |txn| {
            for (id, outcome) in outcomes {
                apply_outcome(txn, id, outcome);
            }
        })
        .await
    }

    /// Replaces due digest-waiting entries of one subscription, domain and window with one
    /// pending `digest` entry due now. Members already gone are left out, and nothing is
    /// written when none remain.
    pub async fn fold_digest(
        &self,
        subscription_id: String,
        domain: String,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        member_ids: Vec<u64>,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut members: Vec<OutboxEntry> = member_ids
                .into_iter()
                .filter_map(|id| take_pending(txn, id))
                .collect();
            if members.is_empty() {
                return;
            }
            members.sort_by(|a, b| {
                (a.notification.timestamp, a.id).cmp(&(b.notification.timestamp, b.id))
            });
            // The cause lists every member's id, so a window split over two folds gives two
            // digests with different webhook ids.
            let cause: Vec<&str> = members.iter().map(|m| m.notification.id.as_str()).collect();
            let cause = format!("digest/{}", cause.join(","));
            let now = Utc::now();
            let entry = OutboxEntry {
                id: txn.next_id(),
                subscription_id: subscription_id.clone(),
                notification: Notification::new(
                    NotificationKind::Digest,
                    &cause,
                    &subscription_id,
                    window_end,
                    digest_data(&domain, window_start, window_end, &members),
                ),
                domain: Some(domain),
                state: DeliveryState::Pending,
                attempts: 0,
                created_at: now,
                next_attempt_at: now,
                digest_window: None,
                history: Vec::new(),
                dead_reason: None,
            };
            put_pending(txn, &entry);
        })
        .await
    }

    // The admin API's side.

    /// Pending entries in due order, or dead letters newest first, optionally of one
    /// subscription.
    pub fn deliveries(
        &self,
        state: DeliveryState,
        subscription_id: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<OutboxEntry>, StoreError> {
        let prefix = match state {
            DeliveryState::Pending => keys::OUTBOX,
            DeliveryState::Dead => DEAD_LETTER,
        };
        let cursor = cursor.and_then(|c| decode_cursor(c, prefix));
        self.scan_page(prefix, cursor, limit, |entry: &OutboxEntry| {
            subscription_id.is_none_or(|id| entry.subscription_id == id)
        })
    }

    /// Moves one dead letter back into the outbox, due now with a fresh attempt count.
    /// Returns `Err` with the entry's state when it is not dead, `Ok(None)` when it is unknown.
    pub async fn retry_dead(
        &self,
        id: u64,
    ) -> Result<Result<Option<OutboxEntry>, DeliveryState>, StoreError> {
        let result = self
            .write(move |txn| {
                if txn.contains(&index_key(id)) {
                    return Err(DeliveryState::Pending);
                }
                let key = dead_key(id);
                let Some(entry) = txn.get_json::<OutboxEntry>(&key) else {
                    return Ok(None);
                };
                txn.remove(&key);
                Ok(Some(revive(txn, entry)))
            })
            .await?;
        outbox_wake().notify_one();
        Ok(result)
    }

    /// Moves every dead letter of a subscription back into the outbox. Returns how many moved.
    pub async fn retry_dead_for_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<usize, StoreError> {
        let subscription_id = subscription_id.to_string();
        let moved = self
            .write(move |txn| {
                let mut moved = 0;
                for entry in committed_entries(txn, DEAD_LETTER) {
                    if entry.subscription_id == subscription_id {
                        txn.remove(&dead_key(entry.id));
                        revive(txn, entry);
                        moved += 1;
                    }
                }
                moved
            })
            .await?;
        outbox_wake().notify_one();
        Ok(moved)
    }

    /// Scans records under `prefix` after `cursor`, keeping those `keep` accepts, until `limit`
    /// are found.
    fn scan_page<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
        cursor: Option<Vec<u8>>,
        limit: usize,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Result<Page<T>, StoreError> {
        let range = match &cursor {
            Some(after) => self.tree.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_slice()),
                std::ops::Bound::Unbounded,
            )),
            None => self.tree.range::<&[u8], _>(prefix..),
        };
        let mut items = Vec::new();
        let mut next = None;
        let mut last_key: Option<Vec<u8>> = None;
        for item in range {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            let Ok(record) = serde_json::from_slice::<T>(&value) else {
                tracing::error!(key = %String::from_utf8_lossy(&key), "unreadable stored record skipped");
                continue;
            };
            if !keep(&record) {
                continue;
            }
            if items.len() == limit {
                // One more match exists, so the page ends at the last returned key.
                next = last_key.as_deref().map(|key| {
                    use base64::Engine;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
                });
                break;
            }
            items.push(record);
            last_key = Some(key.to_vec());
        }
        Ok(Page { items, next })
    }
}

fn apply_outcome(txn: &mut Txn<'_>, id: u64, outcome: Outcome) {
    let Some(mut entry) = take_pending(txn, id) else {
        return;
    };
    match outcome {
        Outcome::Delivered => {}
        Outcome::Reschedule {
            at,
            attempt,
            counted,
        } => {
            if counted {
                entry.attempts += 1;
            }
            entry.record(attempt);
            entry.next_attempt_at = at;
            put_pending(txn, &entry);
        }
        Outcome::Dead { reason, attempt } => {
            entry.attempts += 1;
            entry.record(attempt);
            put_dead(txn, entry, reason);
        }
        Outcome::Gone { attempt } => {
            entry.attempts += 1;
            entry.record(attempt);
            let subscription_id = entry.subscription_id.clone();
            let reason = "the receiver answered 410 Gone, so the subscription was disabled";
            put_dead(txn, entry, reason.to_string());
            disable_subscription(txn, &subscription_id, reason);
        }
    }
}

/// Reads every committed entry under `prefix` (pending or dead).
fn committed_entries(txn: &Txn<'_>, prefix: &[u8]) -> Vec<OutboxEntry> {
    txn.scan_committed(prefix)
        .values()
        .filter_map(|value| value.ok())
        .filter_map(|value| serde_json::from_slice(&value).ok())
        .collect()
}

/// Puts a dead entry back as pending, due now, with its attempt count reset.
fn revive(txn: &mut Txn<'_>, mut entry: OutboxEntry) -> OutboxEntry {
    entry.state = DeliveryState::Pending;
    entry.attempts = 0;
    entry.dead_reason = None;
    entry.next_attempt_at = Utc::now();
    put_pending(txn, &entry);
    entry
}

/// Disables a subscription and dead-letters all of its pending entries.
fn disable_subscription(txn: &mut Txn<'_>, id: &str, reason: &str) {
    let key = subscription_key(id);
    if let Some(mut subscription) = txn.get_json::<Subscription>(&key) {
        subscription.enabled = false;
        txn.put_json(key, &subscription);
        tracing::warn!(subscription_id = %id, reason, "subscription disabled");
    }
    for entry in committed_entries(txn, keys::OUTBOX) {
        if entry.subscription_id == id {
            if let Some(entry) = take_pending(txn, entry.id) {
                put_dead(txn, entry, reason.to_string());
            }
        }
    }
}

/// Domains whose per-domain settings say `always_notify`: their address-level notifications are
/// sent one by one even to subscriptions that ask for digests. Set once at start-up.
static ALWAYS_NOTIFY: std::sync::OnceLock<std::collections::HashSet<String>> =
    std::sync::OnceLock::new();

/// Records the normalised domains set to `always_notify`; later calls change nothing.
pub fn set_always_notify_domains(domains: impl IntoIterator<Item = String>) {
    let _ = ALWAYS_NOTIFY.set(domains.into_iter().collect());
}

fn always_notify(domain: &str) -> bool {
    ALWAYS_NOTIFY
        .get()
        .is_some_and(|domains| domains.contains(domain))
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use chrono::TimeZone;

    use super::*;
    use crate::config::Durability;
    use crate::forward::subscription::{CreateSubscription, DigestSettings};

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Crash, StdDuration::from_secs(1)).unwrap();
        (dir, store)
    }

    async fn subscribe(store: &Store, digest: Option<DigestSettings>) -> Subscription {
        let request = CreateSubscription {
            url: "http://127.0.0.1:9/hooks".to_string(),
            digest,
            ..CreateSubscription::default()
        };
        let (subscription, _) = request.into_subscription(true, Utc::now()).unwrap();
        store
            .create_subscription(subscription.clone())
            .await
            .unwrap();
        subscription
    }

    async fn enqueue_bounce(store: &Store, cause: &str, domain: &str) {
        let cause = cause.to_string();
        let domain = domain.to_string();
        store
            .write(move |txn| {
                let timestamp = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
                let data = json!({"address": format!("a@{domain}")});
                let kind = NotificationKind::AddressBounced;
                enqueue(txn, kind, &cause, Some(&domain), timestamp, data);
            })
            .await
            .unwrap();
    }

    fn pending(store: &Store) -> Vec<OutboxEntry> {
        store
            .deliveries(DeliveryState::Pending, None, None, 1000)
            .unwrap()
            .items
    }

    fn dead(store: &Store) -> Vec<OutboxEntry> {
        store
            .deliveries(DeliveryState::Dead, None, None, 1000)
            .unwrap()
            .items
    }

    fn attempt(result: &str) -> AttemptRecord {
        AttemptRecord {
            at: Utc::now(),
            status: Some(500),
            latency_ms: 3,
            result: result.to_string(),
            error: None,
        }
    }

    #[tokio::test]
    async fn enqueue_without_subscriptions_writes_nothing() {
        let (_dir, store) = open();
        enqueue_bounce(&store, "e1", "example.com").await;
        assert_eq!(store.count_prefix(keys::OUTBOX), 0);
        assert_eq!(store.count_prefix(OUTBOX_INDEX), 0);
    }

    #[tokio::test]
    async fn enqueue_gives_stable_ids_per_subscription() {
        let (_dir, store) = open();
        let first = subscribe(&store, None).await;
        let second = subscribe(&store, None).await;
        enqueue_bounce(&store, "e1", "example.com").await;
        enqueue_bounce(&store, "e1", "example.com").await;

        let entries = pending(&store);
        assert_eq!(entries.len(), 4);
        for subscription in [&first, &second] {
            let ids: Vec<&str> = entries
                .iter()
                .filter(|entry| entry.subscription_id == subscription.id)
                .map(|entry| entry.notification.id.as_str())
                .collect();
            assert_eq!(ids.len(), 2);
            assert_eq!(ids[0], ids[1]);
        }
        let due = store.due_entries(Utc::now(), 100).unwrap();
        assert_eq!(due.len(), 4);
    }

    #[tokio::test]
    async fn reschedule_moves_entry_out_of_due() {
        let (_dir, store) = open();
        subscribe(&store, None).await;
        enqueue_bounce(&store, "e1", "example.com").await;
        let entry = pending(&store).remove(0);
        let outcome = Outcome::Reschedule {
            at: Utc::now() + Duration::seconds(60),
            attempt: attempt("retry"),
            counted: true,
        };
        store.record_outcome(entry.id, outcome).await.unwrap();

        assert!(store.due_entries(Utc::now(), 100).unwrap().is_empty());
        let later = Utc::now() + Duration::seconds(61);
        let due = store.due_entries(later, 100).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].attempts, 1);
        assert_eq!(due[0].history.len(), 1);
        assert_eq!(due[0].notification.id, entry.notification.id);
    }

    #[tokio::test]
    async fn dead_letter_and_retry() {
        let (_dir, store) = open();
        subscribe(&store, None).await;
        enqueue_bounce(&store, "e1", "example.com").await;
        let entry = pending(&store).remove(0);

        assert!(matches!(
            store.retry_dead(entry.id).await.unwrap(),
            Err(DeliveryState::Pending)
        ));
        let reason = "no success after 12 attempts".to_string();
        let outcome = Outcome::Dead {
            reason: reason.clone(),
            attempt: attempt("retry"),
        };
        store.record_outcome(entry.id, outcome).await.unwrap();
        assert!(pending(&store).is_empty());
        assert_eq!(store.count_prefix(OUTBOX_INDEX), 0);
        let letters = dead(&store);
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].dead_reason, Some(reason));
        assert_eq!(letters[0].state, DeliveryState::Dead);

        let revived = store.retry_dead(entry.id).await.unwrap().unwrap().unwrap();
        assert_eq!(revived.attempts, 0);
        assert_eq!(revived.notification.id, entry.notification.id);
        assert!(dead(&store).is_empty());
        assert_eq!(pending(&store).len(), 1);
        assert!(store
            .retry_dead(u64::MAX - 1)
            .await
            .unwrap()
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn gone_disables_and_dead_letters_pending() {
        let (_dir, store) = open();
        let gone = subscribe(&store, None).await;
        enqueue_bounce(&store, "e1", "example.com").await;
        enqueue_bounce(&store, "e2", "example.com").await;
        let entry = pending(&store).remove(0);

        let outcome = Outcome::Gone {
            attempt: attempt("gone"),
        };
        store.record_outcome(entry.id, outcome).await.unwrap();
        assert!(pending(&store).is_empty());
        assert_eq!(dead(&store).len(), 2);
        assert!(!store.subscription(&gone.id).unwrap().unwrap().enabled);

        // A disabled subscription gets nothing new.
        enqueue_bounce(&store, "e3", "example.com").await;
        assert!(pending(&store).is_empty());

        let moved = store.retry_dead_for_subscription(&gone.id).await.unwrap();
        assert_eq!(moved, 2);
        assert_eq!(pending(&store).len(), 2);
    }

    #[tokio::test]
    async fn delete_removes_entries() {
        let (_dir, store) = open();
        let subscription = subscribe(&store, None).await;
        enqueue_bounce(&store, "e1", "example.com").await;
        assert!(store.delete_subscription(&subscription.id).await.unwrap());
        assert!(pending(&store).is_empty());
        assert_eq!(store.count_prefix(OUTBOX_INDEX), 0);
        assert!(!store.delete_subscription(&subscription.id).await.unwrap());
    }

    #[tokio::test]
    async fn digest_entries_wait_then_fold() {
        let (_dir, store) = open();
        let settings = DigestSettings { window_secs: 60 };
        let subscription = subscribe(&store, Some(settings)).await;
        enqueue_bounce(&store, "e1", "example.com").await;
        enqueue_bounce(&store, "e2", "example.com").await;

        let entries = pending(&store);
        assert_eq!(entries.len(), 2);
        let window = entries[0].digest_window.unwrap();
        assert_eq!(window.timestamp() % 60, 0);
        assert_eq!(entries[0].next_attempt_at, window + Duration::seconds(60));
        assert!(store.due_entries(Utc::now(), 100).unwrap().is_empty());

        let ids = entries.iter().map(|entry| entry.id).collect();
        let end = window + Duration::seconds(60);
        store
            .fold_digest(
                subscription.id.clone(),
                "example.com".into(),
                window,
                end,
                ids,
            )
            .await
            .unwrap();
        let folded = pending(&store);
        assert_eq!(folded.len(), 1);
        let digest = &folded[0];
        assert_eq!(digest.notification.kind, NotificationKind::Digest);
        assert_eq!(digest.digest_window, None);
        let data = &digest.notification.data;
        assert_eq!(data["domain"], json!("example.com"));
        assert_eq!(data["counts"]["address.bounced"], json!(2));
        assert_eq!(data["items"].as_array().unwrap().len(), 2);
        assert_eq!(data["truncated"], json!(false));
        assert_eq!(store.due_entries(Utc::now(), 100).unwrap().len(), 1);
    }

    #[test]
    fn window_start_aligns_to_epoch() {
        let now = Utc.with_ymd_and_hms(2025, 1, 15, 10, 7, 31).unwrap();
        let start = window_start(now, 300);
        assert_eq!(start, Utc.with_ymd_and_hms(2025, 1, 15, 10, 5, 0).unwrap());
    }

    #[test]
    fn delivery_ids_parse() {
        assert_eq!(parse_delivery_id("dlv_42"), Some(42));
        assert_eq!(parse_delivery_id("42"), None);
        assert_eq!(parse_delivery_id("dlv_x"), None);
    }
}
