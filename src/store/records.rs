//! Records the store keeps besides address and domain state: the audit log, queued clears and
//! the quarantine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Queued,
    AwaitingApproval,
    Done,
    Failed,
    DryRun,
    Rejected,
    /// A decision that calls nothing, such as an outage opening.
    Recorded,
}

/// One entry of the audit log: what was decided or done, to what, why, by whom, with what result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    /// Wall-clock time of the decision.
    pub at: DateTime<Utc>,
    /// `rule:<name>` or `admin:<name>`.
    pub actor: String,
    /// `clear`, `outage_started`, `recovered`, `loop_guard`, `clear_cap`, …
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub reason: String,
    /// Event uuids behind the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<String>,
    pub status: ActionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// A clear waiting to be sent to Okta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClearJob {
    pub id: u64,
    pub action_id: String,
    /// Normalised key.
    pub address: String,
    /// The spelling sent to Okta.
    pub raw: String,
    pub domain: String,
    pub attempts: u32,
    pub not_before: DateTime<Utc>,
    /// Waiting for an admin's approval.
    pub awaiting_approval: bool,
}

/// Something that could not be read: a whole delivery or one event of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: String,
    pub received_at: DateTime<Utc>,
    /// Short code: `malformed_envelope`, `malformed_event`, `missing_recipient`, …
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_uuid: Option<String>,
    /// Size of the raw bytes kept with the entry.
    pub size: u64,
}
