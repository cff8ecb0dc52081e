//! One recipient domain: counts of each status, recent hourly counts on `published` time, and
//! the health the rules set. The rules read the domain's events as [`DomainEvent`]s.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::classify::Scope;
use crate::okta::DeliveryStatus;

/// Hours of hourly counts kept, counted back from the domain's newest event.
pub const HOURLY_WINDOW: i64 = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Healthy,
    Degraded,
    Outage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusCounts {
    pub delivered: u64,
    pub bounce: u64,
    pub blocked: u64,
    pub deferred: u64,
    pub dropped: u64,
    pub unknown: u64,
}

impl StatusCounts {
    pub fn add(&mut self, status: DeliveryStatus) {
        let slot = match status {
            DeliveryStatus::Delivered => &mut self.delivered,
            DeliveryStatus::Bounce => &mut self.bounce,
            DeliveryStatus::Blocked => &mut self.blocked,
            DeliveryStatus::Deferred => &mut self.deferred,
            DeliveryStatus::Dropped => &mut self.dropped,
            DeliveryStatus::Unknown => &mut self.unknown,
        };
        *slot += 1;
    }

    pub fn merge(&mut self, other: &StatusCounts) {
        self.delivered += other.delivered;
        self.bounce += other.bounce;
        self.blocked += other.blocked;
        self.deferred += other.deferred;
        self.dropped += other.dropped;
        self.unknown += other.unknown;
    }

    pub fn failures(&self) -> u64 {
        self.bounce + self.blocked + self.deferred + self.dropped + self.unknown
    }
}

/// The compact form of one event that the domain rules replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub published: DateTime<Utc>,
    pub uuid: String,
    pub address: String,
    pub status: DeliveryStatus,
    /// The verdict's scope for failures with evidence; `None` for deliveries and drops.
    pub scope: Option<Scope>,
}

/// A recorded outage episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    /// `deliveries`, `admin` or `canary`.
    pub recovered_by: Option<String>,
    pub addresses_affected: u64,
    pub clears_queued: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DomainState {
    pub domain: String,
    pub counts: StatusCounts,
    /// Hourly counts keyed by the hour's start in Unix seconds.
    pub hourly: BTreeMap<i64, StatusCounts>,
    pub addresses: u64,
    pub newest_event_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub health: Health,
    /// The open outage, if any, then earlier episodes, newest first (bounded).
    pub episodes: Vec<Episode>,
}

impl DomainState {
    pub fn new(domain: &str) -> DomainState {
        DomainState {
            domain: domain.to_string(),
            ..DomainState::default()
        }
    }

    /// Counts one new event.
    pub fn count(&mut self, status: DeliveryStatus, published: DateTime<Utc>) {
        self.counts.add(status);
        let newest = self.newest_event_at.map_or(published, |t| t.max(published));
        self.newest_event_at = Some(newest);
        if status == DeliveryStatus::Delivered {
            self.last_delivered_at = Some(
                self.last_delivered_at
                    .map_or(published, |t| t.max(published)),
            );
        } else {
            self.last_failure_at =
                Some(self.last_failure_at.map_or(published, |t| t.max(published)));
        }

        let hour = published.timestamp().div_euclid(3600) * 3600;
        let oldest_kept = newest.timestamp().div_euclid(3600) * 3600 - (HOURLY_WINDOW - 1) * 3600;
        if hour >= oldest_kept {
            self.hourly.entry(hour).or_default().add(status);
        }
        self.hourly.retain(|&start, _| start >= oldest_kept);
    }

    /// Counts of the last 24 hours of `published` time before the newest event.
    pub fn last_24h(&self) -> StatusCounts {
        let mut total = StatusCounts::default();
        let Some(newest) = self.newest_event_at else {
            return total;
        };
        let from = newest.timestamp().div_euclid(3600) * 3600 - 23 * 3600;
        for (_, counts) in self.hourly.range(from..) {
            total.merge(counts);
        }
        total
    }

    pub fn open_episode(&self) -> Option<&Episode> {
        self.episodes
            .first()
            .filter(|episode| episode.end.is_none())
    }
}
