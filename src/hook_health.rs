//! Hook health: notices when Okta's event hook deliveries stop arriving or go missing.
//!
//! The hook counts every event it receives in its metrics (`bouncewatch_events_total` and the
//! duplicate, ignored and quarantined counters), so a monitor task reads their sum once a
//! second. When it grows, a delivery arrived: the monitor sets
//! `bouncewatch_hook_last_delivery_timestamp_seconds` and adds the growth to the day's count.
//! The hook counts as unhealthy when any of these holds:
//! - gap-fill found events in the System Log that the hook never delivered, and no hook
//!   delivery has arrived since that run;
//! - gap-fill read `event_hook.delivery` failure events, and no hook delivery has arrived since;
//! - `hook_quiet_alert_secs` is set and no delivery arrived for that long;
//! - the day's events reached Okta's daily event hook limit, after which Okta stops delivering.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::http::AppState;
use crate::okta::DeliveryStatus;
use crate::store::checkpoint::{DeliveryFailure, GapFillState, HookDailyEvents};
use crate::telemetry::Metrics;

/// Okta's limit of event hook events per org in 24 hours. Past it, hooks stop firing and the
/// events are not replayed. Source: developer.okta.com/docs/concepts/event-hooks/, whose older
/// versions gave 100,000 and 200,000.
pub const DAILY_EVENT_LIMIT: u64 = 400_000;
/// Okta writes a warning to the System Log at this many events, 70% of the limit.
pub const DAILY_EVENT_WARNING: u64 = 280_000;

/// How often the monitor reads the hook's counters, which bounds the error of the last
/// delivery time.
const TICK: Duration = Duration::from_secs(1);
/// How often at most the day's count is written to the store while it changes.
const PERSIST_EVERY: Duration = Duration::from_secs(60);

const LAST_DELIVERY_GAUGE: &str = "bouncewatch_hook_last_delivery_timestamp_seconds";
const MONITOR_START_GAUGE: &str = "bouncewatch_hook_monitor_start_timestamp_seconds";
const DAILY_EVENTS_GAUGE: &str = "bouncewatch_hook_daily_events";
const HEALTHY_GAUGE: &str = "bouncewatch_hook_healthy";

/// Every status the hook labels `bouncewatch_events_total` with.
const STATUSES: [DeliveryStatus; 6] = [
    DeliveryStatus::Delivered,
    DeliveryStatus::Bounce,
    DeliveryStatus::Blocked,
    DeliveryStatus::Deferred,
    DeliveryStatus::Dropped,
    DeliveryStatus::Unknown,
];

/// The hook's health as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookStatus {
    pub healthy: bool,
    /// When the monitor last saw the hook's counters grow, to within a second. `None` when no
    /// delivery arrived since the process started.
    pub last_delivery: Option<DateTime<Utc>>,
    /// Events gap-fill found that the hook never delivered, since the checkpoint was created.
    pub missed_events_found: u64,
    pub newest_missed_published: Option<DateTime<Utc>>,
    /// `event_hook.delivery` failure events gap-fill read from the System Log.
    pub delivery_failure_events: u64,
    pub newest_delivery_failure: Option<DeliveryFailure>,
    /// Hook events in the current UTC day.
    pub daily_events: u64,
    pub daily_event_limit: u64,
    /// The first of `reasons`, or `None` while healthy.
    pub reason: Option<String>,
    pub reasons: Vec<String>,
}

/// What the health verdict depends on, gathered from the metrics and the store.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub last_delivery: Option<DateTime<Utc>>,
    pub monitor_started: Option<DateTime<Utc>>,
    pub gap_fill: Option<GapFillState>,
    pub daily_events: u64,
    /// `hook_quiet_alert_secs`, or `None` when it is 0.
    pub quiet_alert: Option<chrono::Duration>,
}

/// Decides the hook's health at `now`.
pub fn assess(inputs: &Inputs, now: DateTime<Utc>) -> HookStatus {
    let gap_fill = inputs.gap_fill.clone().unwrap_or_default();
    let delivered_since = |found: DateTime<Utc>| {
        inputs
            .last_delivery
            .is_some_and(|delivery| delivery > found)
    };
    let mut reasons = Vec::new();

    if let Some(found) = gap_fill.last_missed_found_at {
        if !delivered_since(found) {
            reasons.push(format!(
                "gap-fill found events in Okta's System Log that the hook never delivered \
                 ({} since the checkpoint was created, the newest published at {}), and no hook \
                 delivery has arrived since {}",
                gap_fill.missed_events_total,
                format_optional(gap_fill.newest_missed_published),
                format_time(found)
            ));
        }
    }
    if let Some(found) = gap_fill.last_delivery_failure_found_at {
        if !delivered_since(found) {
            let failure = gap_fill.newest_delivery_failure.as_ref();
            reasons.push(format!(
                "Okta's System Log has {} event_hook.delivery failure events, the newest \
                 published at {} for hook {} ({}), and no hook delivery has arrived since {}",
                gap_fill.delivery_failures_total,
                format_optional(failure.map(|failure| failure.published)),
                failure
                    .and_then(|failure| failure.hook.as_deref())
                    .unwrap_or("unknown"),
                failure
                    .and_then(|failure| failure.reason.as_deref())
                    .unwrap_or("no reason given"),
                format_time(found)
            ));
        }
    }
    if let Some(quiet) = inputs.quiet_alert {
        if let Some(since) = inputs.last_delivery.or(inputs.monitor_started) {
            let silent = now - since;
            if silent > quiet {
                reasons.push(format!(
                    "no hook delivery for {} seconds, more than hook_quiet_alert_secs ({})",
                    silent.num_seconds(),
                    quiet.num_seconds()
                ));
            }
        }
    }
    if inputs.daily_events >= DAILY_EVENT_LIMIT {
        reasons.push(format!(
            "{} hook events today reached Okta's limit of {DAILY_EVENT_LIMIT} per 24 hours, so \
             Okta stops delivering until its window resets and gap-fill alone brings events in",
            inputs.daily_events
        ));
    }

    HookStatus {
        healthy: reasons.is_empty(),
        last_delivery: inputs.last_delivery,
        missed_events_found: gap_fill.missed_events_total,
        newest_missed_published: gap_fill.newest_missed_published,
        delivery_failure_events: gap_fill.delivery_failures_total,
        newest_delivery_failure: gap_fill.newest_delivery_failure,
        daily_events: inputs.daily_events,
        daily_event_limit: DAILY_EVENT_LIMIT,
        reason: reasons.first().cloned(),
        reasons,
    }
}

/// Returns the hook's health now, from the monitor's gauges and the gap-fill record.
pub fn status(state: &AppState) -> HookStatus {
    let metrics = &state.metrics;
    let gap_fill = match state.store.gap_fill_state() {
        Ok(record) => record,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the gap-fill record for hook health");
            None
        }
    };
    let quiet = state.config.hook_quiet_alert_secs;
    let inputs = Inputs {
        last_delivery: gauge_time(metrics, LAST_DELIVERY_GAUGE),
        monitor_started: gauge_time(metrics, MONITOR_START_GAUGE),
        gap_fill,
        daily_events: metrics.value(DAILY_EVENTS_GAUGE, &[]) as u64,
        quiet_alert: (quiet > 0).then(|| chrono::Duration::seconds(quiet as i64)),
    };
    assess(&inputs, Utc::now())
}

/// Sets `bouncewatch_hook_healthy` from the current status and returns that status.
pub fn refresh_metrics(state: &AppState) -> HookStatus {
    let status = status(state);
    state.metrics.set(
        HEALTHY_GAUGE,
        "1 while the event hook counts as healthy; /readyz gives the reason otherwise.",
        &[],
        if status.healthy { 1.0 } else { 0.0 },
    );
    status
}

/// Emits a `hook.unhealthy` notification for `status`. The monitor calls it when the hook
/// turns unhealthy, and other code may call it too.
pub async fn notify_hook_unhealthy(state: &AppState, status: &HookStatus) {
    let data = serde_json::to_value(status).unwrap_or(serde_json::Value::Null);
    let cause = format!("hook-unhealthy-{}", chrono::Utc::now().timestamp_millis());
    let queued = state
        .store
        .write(move |txn| {
            crate::store::outbox::enqueue(
                txn,
                crate::forward::notification::NotificationKind::HookUnhealthy,
                &cause,
                None,
                chrono::Utc::now(),
                data,
            );
        })
        .await;
    if let Err(err) = queued {
        tracing::error!(error = %err, "hook.unhealthy notification could not be queued");
    }
    state.metrics.inc(
        "bouncewatch_hook_unhealthy_total",
        "Times the hook turned unhealthy (each sends a hook.unhealthy notification).",
        &[],
        1,
    );
    tracing::error!(
        reason = status.reason.as_deref().unwrap_or("-"),
        missed_events_found = status.missed_events_found,
        delivery_failure_events = status.delivery_failure_events,
        last_delivery = %format_optional(status.last_delivery),
        "event hook unhealthy"
    );
}

/// Returns the number of events the hook has received since the process started, from its
/// counters. Gap-fill and backfill do not add to these counters.
pub fn hook_event_count(metrics: &Metrics) -> u64 {
    let stored: f64 = STATUSES
        .iter()
        .map(|status| metrics.value("bouncewatch_events_total", &[("status", status.as_str())]))
        .sum();
    let others = metrics.value("bouncewatch_duplicate_events_total", &[])
        + metrics.value("bouncewatch_ignored_events_total", &[])
        + metrics.value("bouncewatch_quarantined_total", &[("reason", "event")]);
    (stored + others) as u64
}

/// The hook's event count for the current UTC day, with the warnings already logged for it.
struct DailyCount {
    count: HookDailyEvents,
    persisted: HookDailyEvents,
    persisted_at: Instant,
    warned: bool,
    limit_logged: bool,
}

impl DailyCount {
    fn new(loaded: Option<HookDailyEvents>, today: NaiveDate) -> DailyCount {
        let count = loaded
            .filter(|count| count.day == today)
            .unwrap_or(HookDailyEvents {
                day: today,
                events: 0,
            });
        DailyCount {
            count,
            persisted: count,
            persisted_at: Instant::now(),
            warned: false,
            limit_logged: false,
        }
    }

    /// Adds `events` to the count of `today`, starting a new count when the day changed.
    fn add(&mut self, today: NaiveDate, events: u64) {
        if self.count.day != today {
            self.count = HookDailyEvents {
                day: today,
                events: 0,
            };
            self.warned = false;
            self.limit_logged = false;
        }
        self.count.events += events;
        if self.count.events >= DAILY_EVENT_WARNING && !self.warned {
            self.warned = true;
            tracing::warn!(
                events = self.count.events,
                warning = DAILY_EVENT_WARNING,
                limit = DAILY_EVENT_LIMIT,
                day = %self.count.day,
                "hook events today passed 70% of Okta's daily event hook limit"
            );
        }
        if self.count.events >= DAILY_EVENT_LIMIT && !self.limit_logged {
            self.limit_logged = true;
            tracing::error!(
                events = self.count.events,
                limit = DAILY_EVENT_LIMIT,
                day = %self.count.day,
                "hook events today reached Okta's daily event hook limit; Okta stops delivering \
                 and gap-fill alone brings events in"
            );
        }
    }

    fn needs_persist(&self) -> bool {
        self.count != self.persisted
            && (self.count.day != self.persisted.day
                || self.persisted_at.elapsed() >= PERSIST_EVERY)
    }
}

/// Watches the hook's counters until `stop` turns true, keeping the gauges current and calling
/// [`notify_hook_unhealthy`] when the hook turns unhealthy.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let metrics = state.metrics.clone();
    let started = Utc::now();
    metrics.set(
        MONITOR_START_GAUGE,
        "When hook health monitoring started, in Unix seconds; the quiet check counts from here \
         until the first delivery.",
        &[],
        epoch_seconds(started),
    );
    let loaded = state.store.hook_daily_events().unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot read the stored daily hook event count; starting from 0");
        None
    });
    let mut daily = DailyCount::new(loaded, started.date_naive());
    let mut seen = hook_event_count(&metrics);
    let mut was_healthy = true;

    loop {
        let now = Utc::now();
        let count = hook_event_count(&metrics);
        let delivered = count.saturating_sub(seen);
        seen = count;
        if delivered > 0 {
            metrics.set(
                LAST_DELIVERY_GAUGE,
                "When the hook last received events, in Unix seconds, to within a second.",
                &[],
                epoch_seconds(now),
            );
        }
        daily.add(now.date_naive(), delivered);
        metrics.set(
            DAILY_EVENTS_GAUGE,
            "Hook events received in the current UTC day; Okta stops delivering at 400000 in \
             24 hours and warns at 280000.",
            &[],
            daily.count.events as f64,
        );
        if daily.needs_persist() {
            persist_daily(&state, &mut daily).await;
        }

        let status = refresh_metrics(&state);
        if was_healthy && !status.healthy {
            notify_hook_unhealthy(&state, &status).await;
        } else if !was_healthy && status.healthy {
            tracing::info!("event hook healthy again");
        }
        was_healthy = status.healthy;

        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            if daily.count != daily.persisted {
                persist_daily(&state, &mut daily).await;
            }
            return;
        }
    }
}

async fn persist_daily(state: &AppState, daily: &mut DailyCount) {
    match state.store.save_hook_daily_events(daily.count).await {
        Ok(()) => {
            daily.persisted = daily.count;
            daily.persisted_at = Instant::now();
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot store the daily hook event count; retrying later");
            daily.persisted_at = Instant::now();
        }
    }
}

fn gauge_time(metrics: &Metrics, name: &'static str) -> Option<DateTime<Utc>> {
    let seconds = metrics.value(name, &[]);
    if seconds <= 0.0 {
        return None;
    }
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
}

fn epoch_seconds(time: DateTime<Utc>) -> f64 {
    time.timestamp_millis() as f64 / 1000.0
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn format_optional(time: Option<DateTime<Utc>>) -> String {
    time.map(format_time).unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn healthy_without_findings() {
        let status = assess(&Inputs::default(), time("2025-01-15T12:00:00Z"));
        assert!(status.healthy);
        assert_eq!(status.reason, None);
    }

    #[test]
    fn missed_events_unhealthy_until_delivery() {
        let found = time("2025-01-15T12:00:00Z");
        let mut inputs = Inputs {
            gap_fill: Some(GapFillState {
                missed_events_total: 2,
                last_missed_found_at: Some(found),
                ..GapFillState::default()
            }),
            last_delivery: Some(time("2025-01-15T11:59:00Z")),
            ..Inputs::default()
        };
        let status = assess(&inputs, time("2025-01-15T12:01:00Z"));
        assert!(!status.healthy);
        assert_eq!(status.missed_events_found, 2);
        assert!(status.reason.unwrap().contains("never delivered"));

        inputs.last_delivery = Some(time("2025-01-15T12:00:30Z"));
        let status = assess(&inputs, time("2025-01-15T12:01:00Z"));
        assert!(status.healthy, "{:?}", status.reasons);
        assert_eq!(status.missed_events_found, 2);
    }

    #[test]
    fn delivery_failure_event_unhealthy() {
        let inputs = Inputs {
            gap_fill: Some(GapFillState {
                delivery_failures_total: 1,
                last_delivery_failure_found_at: Some(time("2025-01-15T12:00:00Z")),
                ..GapFillState::default()
            }),
            ..Inputs::default()
        };
        let status = assess(&inputs, time("2025-01-15T12:01:00Z"));
        assert!(!status.healthy);
        assert!(status.reason.unwrap().contains("event_hook.delivery"));
    }

    #[test]
    fn quiet_alert_counts_from_monitor_start() {
        let mut inputs = Inputs {
            monitor_started: Some(time("2025-01-15T12:00:00Z")),
            quiet_alert: Some(chrono::Duration::seconds(600)),
            ..Inputs::default()
        };
        assert!(assess(&inputs, time("2025-01-15T12:05:00Z")).healthy);
        assert!(!assess(&inputs, time("2025-01-15T12:11:00Z")).healthy);
        inputs.last_delivery = Some(time("2025-01-15T12:10:00Z"));
        assert!(assess(&inputs, time("2025-01-15T12:11:00Z")).healthy);
    }

    #[test]
    fn quiet_alert_off_by_default() {
        let inputs = Inputs {
            monitor_started: Some(time("2025-01-01T00:00:00Z")),
            ..Inputs::default()
        };
        assert!(assess(&inputs, time("2025-01-15T12:00:00Z")).healthy);
    }

    #[test]
    fn daily_limit_unhealthy() {
        let inputs = Inputs {
            daily_events: DAILY_EVENT_LIMIT,
            ..Inputs::default()
        };
        assert!(!assess(&inputs, time("2025-01-15T12:00:00Z")).healthy);
        let inputs = Inputs {
            daily_events: DAILY_EVENT_WARNING,
            ..Inputs::default()
        };
        assert!(assess(&inputs, time("2025-01-15T12:00:00Z")).healthy);
    }

    #[test]
    fn daily_count_resets_on_new_day() {
        let day = NaiveDate::from_ymd_opt(2025, 1, 15).unwrap();
        let next = day.succ_opt().unwrap();
        let loaded = HookDailyEvents {
            day,
            events: 279_999,
        };
        let mut daily = DailyCount::new(Some(loaded), day);
        daily.add(day, 1);
        assert_eq!(daily.count.events, DAILY_EVENT_WARNING);
        assert!(daily.warned);
        daily.add(next, 5);
        assert_eq!(
            daily.count,
            HookDailyEvents {
                day: next,
                events: 5
            }
        );
        assert!(!daily.warned);
    }

    #[test]
    fn stored_count_of_other_day_ignored() {
        let day = NaiveDate::from_ymd_opt(2025, 1, 15).unwrap();
        let loaded = HookDailyEvents {
            day: day.pred_opt().unwrap(),
            events: 10,
        };
        let daily = DailyCount::new(Some(loaded), day);
        assert_eq!(daily.count.events, 0);
    }

    #[test]
    fn hook_event_count_sums_hook_counters() {
        let metrics = Metrics::default();
        metrics.inc("bouncewatch_events_total", "", &[("status", "bounce")], 2);
        metrics.inc(
            "bouncewatch_events_total",
            "",
            &[("status", "delivered")],
            3,
        );
        metrics.inc("bouncewatch_duplicate_events_total", "", &[], 1);
        metrics.inc("bouncewatch_ignored_events_total", "", &[], 1);
        metrics.inc(
            "bouncewatch_quarantined_total",
            "",
            &[("reason", "event")],
            1,
        );
        metrics.inc(
            "bouncewatch_quarantined_total",
            "",
            &[("reason", "malformed_envelope")],
            1,
        );
        assert_eq!(hook_event_count(&metrics), 8);
    }
}
