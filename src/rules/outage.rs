//! Outage detection for one domain: a pass over its events in (`published`, uuid) order, so
//! the result depends only on which events exist, never on the order they arrived in.
//!
//! A failure counts toward an outage when its verdict's scope is `domain` or `sender`, whatever
//! its status; `dropped` and `unknown`-scope failures never count. The domain enters an outage
//! when `min_failures` counted failures from at least `min_addresses` distinct addresses fall
//! within `window` of each other (for a domain with more than `volume_threshold` events in that
//! window, they must also be at least `min_failure_ratio` of its events). The outage lasts until
//! `recovery_deliveries` deliveries to distinct addresses are published after its last counted
//! failure, or an admin declares recovery.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Duration, Utc};

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
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The first counted failure of the episode.
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    /// `deliveries` or `admin`.
    pub recovered_by: Option<&'static str>,
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

/// Runs the pass over events sorted by (`published`, uuid).
pub fn analyse(events: &[DomainEvent], thresholds: &Thresholds) -> Analysis {
    let mut episodes: Vec<Found> = Vec::new();
    let mut open: Option<Found> = None;
    let mut recent_failures: VecDeque<&DomainEvent> = VecDeque::new();
    let mut recent_events: VecDeque<DateTime<Utc>> = VecDeque::new();
    let mut recovered_by: BTreeSet<&str> = BTreeSet::new();
    let mut last_counted: Option<DateTime<Utc>> = None;
    let mut newest: Option<DateTime<Utc>> = None;

    for event in events {
        newest = Some(event.published);
        if is_admin_recovery(event) {
            if let Some(mut episode) = open.take() {
                episode.end = Some(event.published);
                episode.recovered_by = Some("admin");
                episodes.push(episode);
                recent_failures.clear();
                last_counted = None;
            }
            continue;
        }
        let horizon = event.published - thresholds.window;
        recent_events.push_back(event.published);
        while recent_events.front().is_some_and(|t| *t < horizon) {
            recent_events.pop_front();
        }

        if let Some(episode) = open.as_mut() {
            let in_episode_bounce = matches!(
                event.status,
                DeliveryStatus::Bounce | DeliveryStatus::Dropped
            ) && (event.status == DeliveryStatus::Dropped || counts(event));
            if in_episode_bounce {
                episode
                    .caused
                    .entry(event.address.clone())
                    .or_default()
                    .push(event.uuid.clone());
            }
            if counts(event) {
                episode.last_failure = episode.last_failure.max(event.published);
                last_counted = Some(event.published);
                recovered_by.clear();
            } else if event.status == DeliveryStatus::Delivered
                && event.published > episode.last_failure
            {
                recovered_by.insert(event.address.as_str());
                if recovered_by.len() >= thresholds.recovery_deliveries {
                    let mut episode = open.take().expect("episode is open");
                    episode.end = Some(event.published);
                    episode.recovered_by = Some("deliveries");
                    episodes.push(episode);
                    recent_failures.clear();
                    recovered_by.clear();
                    last_counted = None;
                }
            }
            continue;
        }

        if !counts(event) {
            continue;
        }
        last_counted = Some(event.published);
        recent_failures.push_back(event);
        while recent_failures
            .front()
            .is_some_and(|f| f.published < horizon)
        {
            recent_failures.pop_front();
        }
        let addresses: BTreeSet<&str> =
            recent_failures.iter().map(|f| f.address.as_str()).collect();
        let mut enough = recent_failures.len() >= thresholds.min_failures
            && addresses.len() >= thresholds.min_addresses;
        if enough && recent_events.len() > thresholds.volume_threshold {
            let ratio = recent_failures.len() as f64 / recent_events.len() as f64;
            enough = ratio >= thresholds.min_failure_ratio;
        }
        if enough {
            let first = recent_failures.front().expect("failures in window");
            let mut caused: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for failure in &recent_failures {
                if failure.status == DeliveryStatus::Bounce {
                    caused
                        .entry(failure.address.clone())
                        .or_default()
                        .push(failure.uuid.clone());
                }
            }
            open = Some(Found {
                start: first.published,
                end: None,
                recovered_by: None,
                last_failure: event.published,
                caused,
                trigger: recent_failures.iter().map(|f| f.uuid.clone()).collect(),
            });
            recovered_by.clear();
        }
    }

    let health = if open.is_some() {
        Health::Outage
    } else {
        match (last_counted, newest) {
            (Some(failure), Some(newest)) if failure >= newest - thresholds.window => {
                Health::Degraded
            }
            _ => Health::Healthy,
        }
    };
    episodes.extend(open);
    Analysis { health, episodes }
}

#[cfg(test)]
mod tests;
