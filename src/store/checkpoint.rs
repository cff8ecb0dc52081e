//! Durable records of the gap-fill poller and the hook health monitor, kept under the `m/`
//! meta prefix: `m/gap_fill` (the checkpoint and what the last runs found) and
//! `m/hook_daily_events` (the hook's event count for the current UTC day).

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::keys;
use super::{Store, StoreError};

const GAP_FILL: &str = "gap_fill";
const HOOK_DAILY_EVENTS: &str = "hook_daily_events";

/// The newest `event_hook.delivery` failure event gap-fill has read from the System Log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    pub uuid: String,
    pub published: DateTime<Utc>,
    /// The failed hook's name or id from the event's target, when the event names one.
    pub hook: Option<String>,
    /// `outcome.reason` or `displayMessage` of the event.
    pub reason: Option<String>,
}

/// The gap-fill checkpoint and the findings hook health reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GapFillState {
    /// Delivery events published before this time are in the store. `None` before the first
    /// run has stored anything.
    pub checkpoint: Option<DateTime<Utc>>,
    /// `event_hook.delivery` events published before this time have been read.
    pub hook_failures_checked_until: Option<DateTime<Utc>>,
    pub last_run_started_at: Option<DateTime<Utc>>,
    pub last_run_finished_at: Option<DateTime<Utc>>,
    /// The error of the last run, or `None` when it succeeded.
    pub last_error: Option<String>,
    /// The end of the first run's range. Events published before it are not counted as missed,
    /// because the first run fills the hour before the poller started, when the hook may not
    /// have been registered yet.
    pub initial_fill_until: Option<DateTime<Utc>>,
    /// Events gap-fill stored that neither the hook nor an earlier backfill had stored.
    pub missed_events_total: u64,
    /// The newest `published` among those events.
    pub newest_missed_published: Option<DateTime<Utc>>,
    /// When a run last found such events.
    pub last_missed_found_at: Option<DateTime<Utc>>,
    /// `event_hook.delivery` failure events read so far.
    pub delivery_failures_total: u64,
    pub newest_delivery_failure: Option<DeliveryFailure>,
    /// When a run last read a failure event not counted before.
    pub last_delivery_failure_found_at: Option<DateTime<Utc>>,
}

/// The hook's event count for one UTC day, kept so a restart does not reset it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookDailyEvents {
    pub day: NaiveDate,
    pub events: u64,
}

impl Store {
    /// Returns the gap-fill record, or `None` before the poller's first run.
    pub fn gap_fill_state(&self) -> Result<Option<GapFillState>, StoreError> {
        self.read_meta(GAP_FILL)
    }

    /// Replaces the gap-fill record and returns once it is durable.
    pub async fn save_gap_fill_state(&self, state: GapFillState) -> Result<(), StoreError> {
        self.write(move |txn| txn.put_json(keys::meta(GAP_FILL), &state))
            .await
    }

    pub fn hook_daily_events(&self) -> Result<Option<HookDailyEvents>, StoreError> {
        self.read_meta(HOOK_DAILY_EVENTS)
    }

    pub async fn save_hook_daily_events(&self, count: HookDailyEvents) -> Result<(), StoreError> {
        self.write(move |txn| txn.put_json(keys::meta(HOOK_DAILY_EVENTS), &count))
            .await
    }

    fn read_meta<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.tree.get(keys::meta(name))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| StoreError::Corrupt(format!("unreadable record m/{name}: {err}"))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Durability;

    #[tokio::test]
    async fn gap_fill_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = DateTime::parse_from_rfc3339("2025-01-15T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        {
            let store = Store::open(dir.path(), Durability::Crash, Duration::from_secs(5)).unwrap();
            assert_eq!(store.gap_fill_state().unwrap(), None);
            let state = GapFillState {
                checkpoint: Some(checkpoint),
                missed_events_total: 3,
                ..GapFillState::default()
            };
            store.save_gap_fill_state(state).await.unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(dir.path(), Durability::Crash, Duration::from_secs(5)).unwrap();
        let state = store
            .gap_fill_state()
            .unwrap()
            .expect("record after reopen");
        assert_eq!(state.checkpoint, Some(checkpoint));
        assert_eq!(state.missed_events_total, 3);
    }
}
