//! One recipient address: its status in the shared vocabulary, the verdict of its newest
//! failure, and a bounded history. The newest event by [`EventKey`] sets the status whatever the
//! order of arrival, so a late older event joins the history without overwriting anything.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::EventKey;
use crate::classify::Verdict;
use crate::okta::DeliveryStatus;

/// Events kept in an address's history, newest last.
pub const HISTORY_LEN: usize = 20;
/// Maximum length of a provider message kept in state and history, in characters.
pub const MESSAGE_LEN: usize = 500;

/// The address status vocabulary of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressStatus {
    Delivered,
    Deferred,
    Bounced,
    Blocked,
    Dropped,
    Clearing,
    Cleared,
    Unknown,
}

impl AddressStatus {
    pub fn from_delivery(status: DeliveryStatus) -> AddressStatus {
        match status {
            DeliveryStatus::Delivered => AddressStatus::Delivered,
            DeliveryStatus::Bounce => AddressStatus::Bounced,
            DeliveryStatus::Blocked => AddressStatus::Blocked,
            DeliveryStatus::Deferred => AddressStatus::Deferred,
            DeliveryStatus::Dropped => AddressStatus::Dropped,
            DeliveryStatus::Unknown => AddressStatus::Unknown,
        }
    }

    pub fn parse(word: &str) -> Option<AddressStatus> {
        serde_json::from_value(serde_json::Value::String(word.to_string())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AddressStatus::Delivered => "delivered",
            AddressStatus::Deferred => "deferred",
            AddressStatus::Bounced => "bounced",
            AddressStatus::Blocked => "blocked",
            AddressStatus::Dropped => "dropped",
            AddressStatus::Clearing => "clearing",
            AddressStatus::Cleared => "cleared",
            AddressStatus::Unknown => "unknown",
        }
    }

    /// Whether Okta has the address on its bounce list, as far as bouncewatch can infer.
    pub fn is_suppressed(self) -> bool {
        matches!(self, AddressStatus::Bounced | AddressStatus::Dropped)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClearPhase {
    /// A clear is queued or sent.
    Clearing,
    /// Okta accepted it.
    Cleared,
}

/// A clear in progress or done, tied to the newest event at the time: a newer event ends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClearMark {
    pub phase: ClearPhase,
    pub action_id: String,
    pub at: EventKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub uuid: String,
    pub published: DateTime<Utc>,
    pub status: DeliveryStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The spelling Okta used in this event.
    pub raw_address: String,
}

/// The newest failure that carried evidence (not `dropped`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRef {
    pub key: EventKey,
    pub status: DeliveryStatus,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddressState {
    /// The normalised key.
    pub address: String,
    pub domain: String,
    /// The spelling of the newest event, used for calls to Okta.
    pub raw: String,
    pub latest: EventKey,
    pub latest_status: DeliveryStatus,
    pub last_message: Option<String>,
    pub last_reason: Option<String>,
    pub latest_failure: Option<FailureRef>,
    pub first_failure_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub event_count: u64,
    pub history: Vec<HistoryEntry>,
    pub clear: Option<ClearMark>,
    /// When Okta last accepted a clear of this address, for the loop guard.
    pub last_cleared_at: Option<DateTime<Utc>>,
    /// Clears Okta accepted so far.
    pub clear_count: u32,
}

/// The parts of one event that address state needs.
pub struct Observation<'a> {
    pub key: EventKey,
    pub status: DeliveryStatus,
    pub verdict: Option<Verdict>,
    pub raw_address: &'a str,
    pub message: Option<&'a str>,
    pub reason: Option<&'a str>,
}

fn truncate(text: &str) -> String {
    text.chars().take(MESSAGE_LEN).collect()
}

impl AddressState {
    /// State for an address seen for the first time.
    pub fn new(address: &str, domain: &str, seen: &Observation<'_>) -> AddressState {
        AddressState {
            address: address.to_string(),
            domain: domain.to_string(),
            raw: seen.raw_address.to_string(),
            latest: seen.key.clone(),
            latest_status: seen.status,
            last_message: seen.message.map(truncate),
            last_reason: seen.reason.map(str::to_string),
            latest_failure: None,
            first_failure_at: None,
            last_failure_at: None,
            last_delivered_at: None,
            event_count: 0,
            history: Vec::new(),
            clear: None,
            last_cleared_at: None,
            clear_count: 0,
        }
    }

    /// The status the admin API shows.
    pub fn status(&self) -> AddressStatus {
        match &self.clear {
            Some(mark) if mark.at == self.latest => match mark.phase {
                ClearPhase::Clearing => AddressStatus::Clearing,
                ClearPhase::Cleared => AddressStatus::Cleared,
            },
            _ => AddressStatus::from_delivery(self.latest_status),
        }
    }

    /// The verdict of the newest failure, if the address ever failed.
    pub fn verdict(&self) -> Option<Verdict> {
        self.latest_failure.as_ref().map(|failure| failure.verdict)
    }

    /// Applies one event. The caller has already dropped duplicates by uuid.
    pub fn apply(&mut self, seen: &Observation<'_>) {
        self.event_count += 1;
        if seen.key > self.latest || self.event_count == 1 {
            self.latest = seen.key.clone();
            self.latest_status = seen.status;
            self.raw = seen.raw_address.to_string();
            self.last_message = seen.message.map(truncate);
            self.last_reason = seen.reason.map(str::to_string);
        }

        let published = seen.key.published;
        if seen.status == DeliveryStatus::Delivered {
            self.last_delivered_at = Some(
                self.last_delivered_at
                    .map_or(published, |t| t.max(published)),
            );
        } else {
            self.first_failure_at = Some(
                self.first_failure_at
                    .map_or(published, |t| t.min(published)),
            );
            self.last_failure_at =
                Some(self.last_failure_at.map_or(published, |t| t.max(published)));
        }
        if let Some(verdict) = seen.verdict {
            let newer = self
                .latest_failure
                .as_ref()
                .is_none_or(|failure| seen.key > failure.key);
            if newer {
                self.latest_failure = Some(FailureRef {
                    key: seen.key.clone(),
                    status: seen.status,
                    verdict,
                });
            }
        }

        let entry = HistoryEntry {
            uuid: seen.key.uuid.clone(),
            published,
            status: seen.status,
            message: seen.message.map(truncate),
            raw_address: seen.raw_address.to_string(),
        };
        let position = self
            .history
            .partition_point(|old| (old.published, &old.uuid) < (published, &entry.uuid));
        self.history.insert(position, entry);
        if self.history.len() > HISTORY_LEN {
            let excess = self.history.len() - HISTORY_LEN;
            self.history.drain(..excess);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Permanence, Scope};

    fn key(minute: u32, uuid: &str) -> EventKey {
        EventKey {
            published: format!("2025-01-15T10:{minute:02}:00Z").parse().unwrap(),
            uuid: uuid.to_string(),
        }
    }

    fn seen(minute: u32, uuid: &'static str, status: DeliveryStatus) -> Observation<'static> {
        let verdict = crate::classify::classify(status, Some("550 5.1.1 user unknown"));
        Observation {
            key: key(minute, uuid),
            status,
            verdict,
            raw_address: "A@example.com",
            message: Some("550 5.1.1 user unknown"),
            reason: None,
        }
    }

    fn replay(events: &[Observation<'_>]) -> AddressState {
        let mut state = AddressState::new("a@example.com", "example.com", &events[0]);
        for event in events {
            state.apply(event);
        }
        state
    }

    #[test]
    fn late_older_event_keeps_newer_status() {
        let state = replay(&[
            seen(10, "u1", DeliveryStatus::Bounce),
            seen(5, "u2", DeliveryStatus::Delivered),
        ]);
        assert_eq!(state.status(), AddressStatus::Bounced);
        assert_eq!(state.history.len(), 2);
        assert_eq!(state.history[0].uuid, "u2");
    }

    #[test]
    fn equal_published_greater_uuid_wins_in_any_order() {
        let forward = replay(&[
            seen(10, "u1", DeliveryStatus::Bounce),
            seen(10, "u2", DeliveryStatus::Delivered),
        ]);
        let backward = replay(&[
            seen(10, "u2", DeliveryStatus::Delivered),
            seen(10, "u1", DeliveryStatus::Bounce),
        ]);
        assert_eq!(forward.status(), AddressStatus::Delivered);
        assert_eq!(backward.status(), AddressStatus::Delivered);
        assert_eq!(forward.history, backward.history);
    }

    #[test]
    fn dropped_keeps_verdict() {
        let mut state = replay(&[seen(1, "u1", DeliveryStatus::Bounce)]);
        let verdict = state.verdict();
        state.apply(&Observation {
            verdict: None,
            ..seen(2, "u2", DeliveryStatus::Dropped)
        });
        assert_eq!(state.status(), AddressStatus::Dropped);
        assert_eq!(state.verdict(), verdict);
    }

    #[test]
    fn clear_mark_ends_with_newer_event() {
        let mut state = replay(&[seen(1, "u1", DeliveryStatus::Bounce)]);
        state.clear = Some(ClearMark {
            phase: ClearPhase::Cleared,
            action_id: "a1".into(),
            at: state.latest.clone(),
        });
        assert_eq!(state.status(), AddressStatus::Cleared);
        state.apply(&seen(2, "u2", DeliveryStatus::Delivered));
        assert_eq!(state.status(), AddressStatus::Delivered);
    }

    #[test]
    fn verdict_follows_newest_failure() {
        let mut state = replay(&[seen(5, "u1", DeliveryStatus::Bounce)]);
        state.apply(&Observation {
            verdict: Some(Verdict {
                scope: Scope::Domain,
                permanence: Permanence::Transient,
            }),
            ..seen(1, "u0", DeliveryStatus::Bounce)
        });
        assert_eq!(state.latest_failure.as_ref().unwrap().key.uuid, "u1");
    }
}
