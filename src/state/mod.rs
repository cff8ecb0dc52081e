//! Per-address and per-domain delivery state, and how one event changes it. Pure data and
//! functions: the store persists these records, the rules read them.

pub mod address;
pub mod domain;

pub use address::{AddressState, AddressStatus, ClearMark, ClearPhase, HistoryEntry};
pub use domain::{DomainEvent, DomainState, Health, StatusCounts};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The position of an event in the ordering every rule uses: `published`, ties broken by the
/// greater `uuid` compared as a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    pub published: DateTime<Utc>,
    pub uuid: String,
}
