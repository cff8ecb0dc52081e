//! Notifications the rules emit, written to the outbox in the same job as the decision, with
//! the decision's id as their cause so a replay after a crash gives the same webhook id.

use chrono::Utc;
use serde_json::{json, Value};

use crate::forward::notification::NotificationKind;
use crate::state::domain::Episode;
use crate::store::outbox::enqueue;
use crate::store::Txn;

pub fn outage_started(txn: &mut Txn<'_>, domain: &str, episode: &Episode) {
    let data = json!({
        "domain": domain,
        "episode": episode.id,
        "start": episode.start,
        "addresses_affected": episode.addresses_affected,
    });
    enqueue(
        txn,
        NotificationKind::DomainOutageStarted,
        &episode.id,
        Some(domain),
        episode.start,
        data,
    );
}

pub fn domain_recovered(txn: &mut Txn<'_>, domain: &str, episode: &Episode) {
    let data = json!({
        "domain": domain,
        "episode": episode.id,
        "start": episode.start,
        "end": episode.end,
        "recovered_by": episode.recovered_by,
        "addresses_affected": episode.addresses_affected,
        "clears_queued": episode.clears_queued,
    });
    let at = episode.end.unwrap_or_else(Utc::now);
    enqueue(
        txn,
        NotificationKind::DomainRecovered,
        &episode.id,
        Some(domain),
        at,
        data,
    );
}

/// An alert to operators; `kind` is one of the `alert.*` kinds.
pub fn alert(txn: &mut Txn<'_>, kind: NotificationKind, cause: &str, data: Value) {
    enqueue(txn, kind, cause, None, Utc::now(), data);
}

/// An address-level result such as `address.cleared`.
pub fn address(txn: &mut Txn<'_>, kind: NotificationKind, cause: &str, domain: &str, data: Value) {
    enqueue(txn, kind, cause, Some(domain), Utc::now(), data);
}
