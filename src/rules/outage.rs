//! Outage detection for one domain: a pass over its events in (`published`, uuid) order, so
//! the result depends only on which events exist, never on the order they arrived in.
//!
//! A failure counts toward an outage when its verdict's scope is `domain` or `sender`, whatever
//! its status; `dropped` and `unknown`-scope failures never count. The domain enters an outage
//! when `min_failures` counted failures from at least `min_addresses` distinct addresses fall
//! within `window` of each other. For a domain with more than `volume_threshold` events in that
//! window, they must also be at least `min_failure_ratio` of its events. The outage lasts until
//! `recovery_deliveries` deliveries to distinct addresses are published after its last counted
//! failure, or an admin declares recovery.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::classify::Scope;
use crate::okta::DeliveryStatus;
use crate::state::{DomainEvent, Health};

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub min_failures: usize,
    pub min_addresses: usize,
    pub window: Duration,
    pub recovery_deliveries: usize,
    pub volume_threshold: usize,
    pub min_failure_ratio: f64,
}

impl Thresholds {
    pub fn from_config(config: &crate::config::Config) -> Thresholds {
        Thresholds {
            min_failures: config.outage_min_failures as usize,
            min_addresses: config.outage_min_addresses as usize,
            window: Duration::minutes(config.outage_window_minutes as i64),
            recovery_deliveries: config.recovery_deliveries as usize,
            volume_threshold: config.volume_threshold_events as usize,
            min_failure_ratio: config.outage_min_failure_ratio,
        }
    }
}

/// One outage found in the events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    /// The first counted failure of the episode.
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    /// `deliveries` or `admin`.
    pub recovered_by: Option<String>,
    pub last_failure: DateTime<Utc>,
    /// Addresses with a domain- or sender-scope bounce, or a drop, published in the episode,
    /// with the uuids of those events.
    pub caused: BTreeMap<String, Vec<String>>,
    /// The counted failures that opened the outage.
    pub trigger: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub health: Health,
    pub episodes: Vec<Found>,
}

fn counts(event: &DomainEvent) -> bool {
    event.status.is_failure()
        && event.status != DeliveryStatus::Dropped
        && matches!(event.scope, Some(Scope::Domain | Scope::Sender))
}

/// Whether a domain event is an admin's declaration of recovery rather than a delivery.
pub fn is_admin_recovery(event: &DomainEvent) -> bool {
    event.address.is_empty() && event.uuid.starts_with(ADMIN_RECOVERY_PREFIX)
}

/// Uuid prefix of admin recovery markers; `~` sorts after every hex uuid at the same time.
pub const ADMIN_RECOVERY_PREFIX: &str = "~admin-recovery-";

/// A counted failure still inside the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowFailure {
    published: DateTime<Utc>,
    address: String,
    uuid: String,
    status: DeliveryStatus,
}

/// The pass's state between events, kept per domain so that new events continue from where
/// the last evaluation stopped instead of replaying the whole history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    open: Option<Found>,
    /// Episodes closed since the last [`Detector::take_analysis`].
    closed: Vec<Found>,
    failures: VecDeque<WindowFailure>,
    /// Events per minute of `published` time inside the window, for the volume rule.
    volume: VecDeque<(i64, u64)>,
    recovered_by: BTreeSet<String>,
    last_counted: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
    /// The (`published`, uuid) of the last event fed.
    pub position: Option<(DateTime<Utc>, String)>,
}

impl Detector {
    /// Feeds the next event; events must come in (`published`, uuid) order.
    pub fn feed(&mut self, event: &DomainEvent, thresholds: &Thresholds) {
        self.position = Some((event.published, event.uuid.clone()));
        self.newest = Some(event.published);
        if is_admin_recovery(event) {
            self.close(event.published, "admin");
            return;
        }
        let horizon = event.published - thresholds.window;
        let minute = event.published.timestamp().div_euclid(60);
        match self.volume.back_mut() {
            Some((last, count)) if *last == minute => *count += 1,
            _ => self.volume.push_back((minute, 1)),
        }
        let oldest_minute = horizon.timestamp().div_euclid(60);
        while self.volume.front().is_some_and(|(m, _)| *m < oldest_minute) {
            self.volume.pop_front();
        }

        if let Some(episode) = self.open.as_mut() {
            let caused = event.status == DeliveryStatus::Dropped
                || (event.status == DeliveryStatus::Bounce && counts(event));
            if caused {
                episode
                    .caused
                    .entry(event.address.clone())
                    .or_default()
                    .push(event.uuid.clone());
            }
            if counts(event) {
                episode.last_failure = episode.last_failure.max(event.published);
                self.last_counted = Some(event.published);
                self.recovered_by.clear();
            } else if event.status == DeliveryStatus::Delivered
                && event.published > episode.last_failure
            {
                self.recovered_by.insert(event.address.clone());
                if self.recovered_by.len() >= thresholds.recovery_deliveries {
                    self.close(event.published, "deliveries");
                }
            }
            return;
        }

        if !counts(event) {
            return;
        }
        self.last_counted = Some(event.published);
        self.failures.push_back(WindowFailure {
            published: event.published,
            address: event.address.clone(),
            uuid: event.uuid.clone(),
            status: event.status,
        });
        while self.failures.front().is_some_and(|f| f.published < horizon) {
            self.failures.pop_front();
        }
        if self.outage_threshold_met(thresholds) {
            self.start_episode(event.published);
        }
    }

    fn outage_threshold_met(&self, thresholds: &Thresholds) -> bool {
        let addresses: BTreeSet<&str> = self.failures.iter().map(|f| f.address.as_str()).collect();
        if self.failures.len() < thresholds.min_failures
            || addresses.len() < thresholds.min_addresses
        {
            return false;
        }
        let events: u64 = self.volume.iter().map(|(_, count)| count).sum();
        if events as usize > thresholds.volume_threshold {
            let ratio = self.failures.len() as f64 / events as f64;
            return ratio >= thresholds.min_failure_ratio;
        }
        true
    }

    fn start_episode(&mut self, at: DateTime<Utc>) {
        let first = self.failures.front().expect("failures in window").published;
        let mut caused: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for failure in &self.failures {
            if failure.status == DeliveryStatus::Bounce {
                caused
                    .entry(failure.address.clone())
                    .or_default()
                    .push(failure.uuid.clone());
            }
        }
        self.open = Some(Found {
            start: first,
            end: None,
            recovered_by: None,
            last_failure: at,
            caused,
            trigger: self.failures.iter().map(|f| f.uuid.clone()).collect(),
        });
        self.recovered_by.clear();
    }

    fn close(&mut self, at: DateTime<Utc>, by: &str) {
        if let Some(mut episode) = self.open.take() {
            episode.end = Some(at);
            episode.recovered_by = Some(by.to_string());
            self.closed.push(episode);
            self.failures.clear();
            self.recovered_by.clear();
            self.last_counted = None;
        }
    }

    /// The outage open at the current position, if any.
    pub fn open_episode(&self) -> Option<&Found> {
        self.open.as_ref()
    }

    /// The health now, and the episodes closed since the last call followed by the open one.
    pub fn take_analysis(&mut self, thresholds: &Thresholds) -> Analysis {
        let health = if self.open.is_some() {
            Health::Outage
        } else {
            match (self.last_counted, self.newest) {
                (Some(failure), Some(newest)) if failure >= newest - thresholds.window => {
                    Health::Degraded
                }
                _ => Health::Healthy,
            }
        };
        let mut episodes = std::mem::take(&mut self.closed);
        episodes.extend(self.open.clone());
        Analysis { health, episodes }
    }
}

/// Runs the pass over a whole history sorted by (`published`, uuid).
pub fn analyse(events: &[DomainEvent], thresholds: &Thresholds) -> Analysis {
    let mut detector = Detector::default();
    for event in events {
        detector.feed(event, thresholds);
    }
    detector.take_analysis(thresholds)
}

#[cfg(test)]
mod tests;
