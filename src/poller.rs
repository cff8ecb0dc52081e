//! The gap-fill poller: reads `system.email.delivery` events from Okta's System Log that the
//! event hook missed, and stores them through the same ingest path as the hook, so events the
//! hook delivered collapse by uuid.
//!
//! Okta retries a failed hook delivery once and then drops it, while the System Log keeps
//! events for 90 days. Each run sends a bounded query from the checkpoint minus
//! `gap_fill_lag_secs` to now minus `gap_fill_lag_secs`. Because both `since` and `until` are
//! set, Okta filters by `published` and returns pages in order. The run follows `next` links
//! to the end and moves the checkpoint forward only after the pages are durably stored. It
//! also reads `event_hook.delivery` events, which Okta writes when it drops a delivery, for
//! hook health.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio::sync::watch;
use url::Url;

use crate::http::AppState;
use crate::ingest::sort_events;
use crate::okta::client::OktaClient;
use crate::okta::error::OktaError;
use crate::okta::logs::MAX_LOGS_LIMIT;
use crate::store::checkpoint::{DeliveryFailure, GapFillState};
use crate::store::{IngestReport, StoreError};

/// How far back the first run reads. Older gaps need `bouncewatch backfill`, because reading
/// the whole 90 days on every fresh start would spend the org's System Log rate limit.
pub const FIRST_RUN_LOOKBACK: chrono::Duration = chrono::Duration::hours(1);

/// Okta's System Log returns no events older than this.
const RETENTION: chrono::Duration = chrono::Duration::days(90);

/// The event type Okta logs when it drops an event hook delivery after its one retry.
pub const HOOK_DELIVERY_EVENT: &str = "event_hook.delivery";

/// The poller's settings, read once from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub interval: Duration,
    pub lag: chrono::Duration,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        Settings {
            interval: Duration::from_secs(config.gap_fill_interval_secs),
            lag: chrono::Duration::seconds(config.gap_fill_lag_secs as i64),
        }
    }
}

/// The time range of one run, computed from the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// Returns the range to read at `now` after `checkpoint`, or `None` when it would be empty
/// because the checkpoint is not before `now`, as after the system clock was set back.
pub fn next_range(
    checkpoint: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    lag: chrono::Duration,
) -> Option<Range> {
    let until = now - lag;
    let mut since = match checkpoint {
        // The overlap re-reads events that Okta wrote after the previous run read this range.
        Some(checkpoint) => checkpoint - lag,
        None => {
            let first = now - FIRST_RUN_LOOKBACK;
            if first < until {
                first
            } else {
                until - FIRST_RUN_LOOKBACK
            }
        }
    };
    // Okta rejects a since more than 180 days back and has nothing older than 90 days.
    since = since.max(now - RETENTION);
    (since < until).then_some(Range { since, until })
}

/// Totals of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub pages: usize,
    pub events: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub quarantined: usize,
    pub delivery_failures: usize,
}

/// A failed run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("System Log request failed: {0}")]
    Okta(#[from] OktaError),
    #[error("storing gap-fill results failed: {0}")]
    Store(#[from] StoreError),
}

/// Runs gap-fill every `gap_fill_interval_secs` until `stop` turns true. Returns at once when
/// gap-fill is turned off, no org is configured, or `client` is `None`.
pub async fn run(state: AppState, client: Option<OktaClient>, mut stop: watch::Receiver<bool>) {
    let config = state.config.clone();
    if !config.gap_fill {
        tracing::info!("gap-fill is off (gap_fill = false)");
        return;
    }
    if config.okta_org_url.is_none() {
        tracing::info!("gap-fill is off: okta_org_url is not set");
        return;
    }
    let Some(client) = client else {
        tracing::error!("gap-fill is off: the Okta client could not be built");
        return;
    };
    let settings = Settings::from_config(&config);
    tracing::info!(
        interval_secs = settings.interval.as_secs(),
        lag_secs = settings.lag.num_seconds(),
        "gap-fill poller started"
    );

    loop {
        let wait = match state.store.gap_fill_state() {
            Ok(record) => wait_before_next_run(record.as_ref(), settings.interval, Utc::now()),
            Err(err) => {
                tracing::error!(error = %err, "cannot read the gap-fill checkpoint; retrying after the interval");
                settings.interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            tracing::info!("gap-fill poller stopped");
            return;
        }
        run_logged(&state, &client, settings, &stop).await;
    }
}

/// Returns how long to wait so that two runs start at least `interval` apart, also across
/// restarts, because the start of the last run is stored.
pub fn wait_before_next_run(
    record: Option<&GapFillState>,
    interval: Duration,
    now: DateTime<Utc>,
) -> Duration {
    let Some(last) = record.and_then(|record| record.last_run_started_at) else {
        return Duration::ZERO;
    };
    let next = last + chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
    (next - now).to_std().unwrap_or(Duration::ZERO)
}

async fn run_logged(
    state: &AppState,
    client: &OktaClient,
    settings: Settings,
    stop: &watch::Receiver<bool>,
) {
    let metrics = &state.metrics;
    metrics.inc(
        "bouncewatch_gap_fill_runs_total",
        "Gap-fill runs started.",
        &[],
        1,
    );
    match run_once(state, client, settings, Utc::now(), stop).await {
        Ok(counts) => {
            tracing::info!(
                pages = counts.pages,
                events = counts.events,
                stored = counts.stored,
                duplicates = counts.duplicates,
                quarantined = counts.quarantined,
                delivery_failures = counts.delivery_failures,
                "gap-fill run finished"
            );
        }
        Err(err) => {
            metrics.inc(
                "bouncewatch_gap_fill_failures_total",
                "Gap-fill runs that failed; the next run retries from the checkpoint.",
                &[],
                1,
            );
            tracing::error!(error = %err, "gap-fill run failed; the next run retries from the checkpoint");
            let message = err.to_string();
            let recorded = match state.store.gap_fill_state() {
                Ok(record) => {
                    let mut record = record.unwrap_or_default();
                    record.last_run_finished_at = Some(Utc::now());
                    record.last_error = Some(message);
                    state.store.save_gap_fill_state(record).await
                }
                Err(err) => Err(err),
            };
            if let Err(err) = recorded {
                tracing::error!(error = %err, "cannot record the failed gap-fill run");
            }
        }
    }
    refresh_metrics(state, Utc::now());
}

/// Runs gap-fill once at `now`: the delivery events, then the hook delivery failures.
pub async fn run_once(
    state: &AppState,
    client: &OktaClient,
    settings: Settings,
    now: DateTime<Utc>,
    stop: &watch::Receiver<bool>,
) -> Result<RunCounts, RunError> {
    let store = &state.store;
    let mut record = store.gap_fill_state()?.unwrap_or_default();
    record.last_run_started_at = Some(now);
    store.save_gap_fill_state(record.clone()).await?;

    let mut counts = RunCounts::default();
    if let Some(range) = next_range(record.checkpoint, now, settings.lag) {
        if record.initial_fill_until.is_none() {
            record.initial_fill_until = Some(range.until);
        }
        tracing::debug!(since = %format_time(range.since), until = %format_time(range.until), "gap-fill reading delivery events");
        let url = client.logs_url(range.since, Some(range.until), MAX_LOGS_LIMIT);
        let mut next = Some(url);
        while let Some(url) = next.take() {
            if *stop.borrow() {
                // The checkpoint already covers every stored page, so the next start resumes.
                return Ok(counts);
            }
            let page = client.fetch_page(&url).await?;
            if page.events.is_empty() {
                break;
            }
            let newest = store_page(state, &page.events, &mut record, &mut counts).await?;
            // Bounded pages come in `published` order, so everything before the page's newest
            // event is stored. Events sharing that time may follow on the next page, and the
            // next run re-reads them through its overlap.
            if let Some(newest) = newest {
                if record
                    .checkpoint
                    .is_none_or(|checkpoint| newest > checkpoint)
                {
                    record.checkpoint = Some(newest.min(range.until));
                }
            }
            store.save_gap_fill_state(record.clone()).await?;
            next = page.next;
        }
        // After `gap_fill_lag_secs` was raised, `until` can lie before the checkpoint.
        record.checkpoint = record.checkpoint.max(Some(range.until));
    }

    read_hook_failures(client, &mut record, now, settings.lag, &mut counts).await?;

    record.last_run_finished_at = Some(Utc::now());
    record.last_error = None;
    store.save_gap_fill_state(record).await?;
    if counts.stored > 0 {
        state.rules_wake.notify_one();
    }
    Ok(counts)
}

/// Stores one page of delivery events and returns the newest `published` on it.
async fn store_page(
    state: &AppState,
    events: &[Value],
    record: &mut GapFillState,
    counts: &mut RunCounts,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let sorted = sort_events(events.iter());
    let newest = sorted
        .events
        .iter()
        .map(|event| event.key.published)
        .chain(events.iter().filter_map(published))
        .max();
    // The events the store lacks before this page is written are the ones the hook missed. A
    // hook delivery of the same event in between can make this list one too long, so the
    // count is capped by what the ingest actually stored.
    let baseline = record.initial_fill_until;
    let mut missed: Vec<DateTime<Utc>> = Vec::new();
    for event in &sorted.events {
        let published = event.key.published;
        let after_initial_fill = baseline.is_some_and(|baseline| published >= baseline);
        if after_initial_fill && state.store.event(&event.key.uuid)?.is_none() {
            missed.push(published);
        }
    }
    let report: IngestReport = state.store.ingest(sorted.events, sorted.quarantine).await?;

    counts.pages += 1;
    counts.events += events.len();
    counts.stored += report.stored;
    counts.duplicates += report.duplicates;
    counts.quarantined += report.quarantined;
    record_page_metrics(state, &report);

    let missed_count = missed.len().min(report.stored);
    if missed_count > 0 {
        let newest_missed = missed.iter().copied().max();
        record.missed_events_total += missed_count as u64;
        record.newest_missed_published = record.newest_missed_published.max(newest_missed);
        record.last_missed_found_at = Some(Utc::now());
        state.metrics.inc(
            "bouncewatch_hook_missed_events_total",
            "Events gap-fill found in the System Log that the hook had not delivered.",
            &[],
            missed_count as u64,
        );
        tracing::warn!(
            events = missed_count,
            newest_published = %newest_missed.map(format_time).unwrap_or_default(),
            "gap-fill found events the hook did not deliver"
        );
    }
    Ok(newest)
}

fn record_page_metrics(state: &AppState, report: &IngestReport) {
    let metrics = &state.metrics;
    // A separate family from the hook's bouncewatch_events_total, which hook health reads as
    // the count of hook deliveries.
    metrics.inc(
        "bouncewatch_gap_fill_events_total",
        "Events gap-fill stored for the first time (not duplicates).",
        &[],
        report.stored as u64,
    );
    metrics.inc(
        "bouncewatch_gap_fill_duplicate_events_total",
        "Events gap-fill read that were already stored.",
        &[],
        report.duplicates as u64,
    );
}

/// Reads `event_hook.delivery` events after the last range read and keeps the newest failure.
async fn read_hook_failures(
    client: &OktaClient,
    record: &mut GapFillState,
    now: DateTime<Utc>,
    lag: chrono::Duration,
    counts: &mut RunCounts,
) -> Result<(), OktaError> {
    let Some(range) = next_range(record.hook_failures_checked_until, now, lag) else {
        return Ok(());
    };
    // The overlap would count a failure twice, so events at or before the newest one already
    // counted are skipped.
    let known = record
        .newest_delivery_failure
        .as_ref()
        .map(|failure| failure.published);
    let mut next = Some(hook_delivery_url(client, range));
    while let Some(url) = next.take() {
        let page = client.fetch_page(&url).await?;
        if page.events.is_empty() {
            break;
        }
        for event in &page.events {
            let Some(failure) = delivery_failure(event) else {
                continue;
            };
            if known.is_some_and(|known| failure.published <= known) {
                continue;
            }
            counts.delivery_failures += 1;
            record.delivery_failures_total += 1;
            record.last_delivery_failure_found_at = Some(Utc::now());
            tracing::warn!(
                uuid = %failure.uuid,
                published = %format_time(failure.published),
                hook = failure.hook.as_deref().unwrap_or("-"),
                reason = failure.reason.as_deref().unwrap_or("-"),
                "Okta's System Log reports a failed event hook delivery"
            );
            let newer = record
                .newest_delivery_failure
                .as_ref()
                .is_none_or(|newest| failure.published > newest.published);
            if newer {
                record.newest_delivery_failure = Some(failure);
            }
        }
        next = page.next;
    }
    record.hook_failures_checked_until = record.hook_failures_checked_until.max(Some(range.until));
    Ok(())
}

/// Builds the first-page URL of a bounded `event_hook.delivery` query.
fn hook_delivery_url(client: &OktaClient, range: Range) -> Url {
    let mut url = client.api_url("/api/v1/logs");
    url.query_pairs_mut()
        .append_pair("filter", &format!("eventType eq \"{HOOK_DELIVERY_EVENT}\""))
        .append_pair("since", &format_time(range.since))
        .append_pair("until", &format_time(range.until))
        .append_pair("limit", &MAX_LOGS_LIMIT.to_string())
        .append_pair("sortOrder", "ASCENDING");
    url
}

/// Reads a failed delivery from an `event_hook.delivery` event. Events whose
/// `outcome.result` is present and not `FAILURE` are skipped.
// NOTE: Okta documents that it logs this event when a delivery fails, but not its fields. The
// hook name is read from the first target, and the event is not matched to bouncewatch's own
// hook, so a failing hook of another application in the same org counts too.
pub fn delivery_failure(event: &Value) -> Option<DeliveryFailure> {
    if event.get("eventType").and_then(Value::as_str) != Some(HOOK_DELIVERY_EVENT) {
        return None;
    }
    let result = event
        .pointer("/outcome/result")
        .and_then(Value::as_str)
        .unwrap_or("FAILURE");
    if !result.eq_ignore_ascii_case("FAILURE") {
        return None;
    }
    let uuid = event.get("uuid").and_then(Value::as_str)?.to_string();
    let published = published(event)?;
    let target = event.pointer("/target/0");
    let hook = target
        .and_then(|target| {
            target
                .get("displayName")
                .or_else(|| target.get("alternateId"))
                .or_else(|| target.get("id"))
        })
        .and_then(Value::as_str)
        .map(str::to_string);
    let reason = event
        .pointer("/outcome/reason")
        .or_else(|| event.get("displayMessage"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(DeliveryFailure {
        uuid,
        published,
        hook,
        reason,
    })
}

fn published(event: &Value) -> Option<DateTime<Utc>> {
    let text = event.get("published")?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Returns gap-fill's settings and last run for `/readyz`.
pub fn readiness(state: &AppState) -> Value {
    let config = &state.config;
    let enabled = config.gap_fill && config.okta_org_url.is_some();
    let record = match state.store.gap_fill_state() {
        Ok(record) => record.unwrap_or_default(),
        Err(err) => {
            tracing::error!(error = %err, "cannot read the gap-fill record for /readyz");
            GapFillState::default()
        }
    };
    serde_json::json!({
        "enabled": enabled,
        "interval_secs": config.gap_fill_interval_secs,
        "lag_secs": config.gap_fill_lag_secs,
        "checkpoint": record.checkpoint,
        "last_run_started_at": record.last_run_started_at,
        "last_run_finished_at": record.last_run_finished_at,
        "last_error": record.last_error,
    })
}

/// Sets the checkpoint-age gauge from the stored checkpoint.
pub fn refresh_metrics(state: &AppState, now: DateTime<Utc>) {
    let Ok(Some(record)) = state.store.gap_fill_state() else {
        return;
    };
    if let Some(checkpoint) = record.checkpoint {
        state.metrics.set(
            "bouncewatch_gap_fill_checkpoint_age_seconds",
            "Seconds between now and the gap-fill checkpoint; it stays near gap_fill_lag_secs \
             plus gap_fill_interval_secs while runs succeed.",
            &[],
            (now - checkpoint).num_milliseconds() as f64 / 1000.0,
        );
    }
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
    fn first_range_starts_one_hour_back() {
        let now = time("2025-01-15T12:00:00Z");
        let range = next_range(None, now, chrono::Duration::minutes(10)).unwrap();
        assert_eq!(range.since, time("2025-01-15T11:00:00Z"));
        assert_eq!(range.until, time("2025-01-15T11:50:00Z"));
    }

    #[test]
    fn first_range_with_lag_over_an_hour() {
        let now = time("2025-01-15T12:00:00Z");
        let range = next_range(None, now, chrono::Duration::hours(2)).unwrap();
        assert_eq!(range.since, time("2025-01-15T09:00:00Z"));
        assert_eq!(range.until, time("2025-01-15T10:00:00Z"));
    }

    #[test]
    fn later_range_overlaps_by_lag() {
        let now = time("2025-01-15T12:00:00Z");
        let checkpoint = time("2025-01-15T11:45:00Z");
        let range = next_range(Some(checkpoint), now, chrono::Duration::minutes(10)).unwrap();
        assert_eq!(range.since, time("2025-01-15T11:35:00Z"));
        assert_eq!(range.until, time("2025-01-15T11:50:00Z"));
    }

    #[test]
    fn range_empty_when_checkpoint_ahead() {
        let now = time("2025-01-15T12:00:00Z");
        let checkpoint = time("2025-01-15T12:01:00Z");
        assert_eq!(
            next_range(Some(checkpoint), now, chrono::Duration::minutes(30)),
            None
        );
    }

    #[test]
    fn old_checkpoint_clamped_to_retention() {
        let now = time("2025-06-01T00:00:00Z");
        let checkpoint = time("2024-06-01T00:00:00Z");
        let range = next_range(Some(checkpoint), now, chrono::Duration::minutes(10)).unwrap();
        assert_eq!(range.since, now - chrono::Duration::days(90));
    }

    #[test]
    fn runs_spaced_by_interval_across_restarts() {
        let now = time("2025-01-15T12:00:00Z");
        let record = GapFillState {
            last_run_started_at: Some(time("2025-01-15T11:58:00Z")),
            ..GapFillState::default()
        };
        let interval = Duration::from_secs(300);
        assert_eq!(
            wait_before_next_run(Some(&record), interval, now),
            Duration::from_secs(180)
        );
        assert_eq!(wait_before_next_run(None, interval, now), Duration::ZERO);
        let old = GapFillState {
            last_run_started_at: Some(time("2025-01-15T10:00:00Z")),
            ..GapFillState::default()
        };
        assert_eq!(
            wait_before_next_run(Some(&old), interval, now),
            Duration::ZERO
        );
    }

    #[test]
    fn delivery_failure_read_from_event() {
        let event = serde_json::json!({
            "uuid": "f1",
            "published": "2025-01-15T10:00:00.000Z",
            "eventType": "event_hook.delivery",
            "displayMessage": "Event hook delivery",
            "outcome": {"result": "FAILURE", "reason": "Request timed out"},
            "target": [{"id": "who1", "type": "EventHook", "displayName": "bouncewatch"}],
        });
        let failure = delivery_failure(&event).unwrap();
        assert_eq!(failure.uuid, "f1");
        assert_eq!(failure.hook.as_deref(), Some("bouncewatch"));
        assert_eq!(failure.reason.as_deref(), Some("Request timed out"));
    }

    #[test]
    fn successful_delivery_event_skipped() {
        let event = serde_json::json!({
            "uuid": "f2",
            "published": "2025-01-15T10:00:00.000Z",
            "eventType": "event_hook.delivery",
            "outcome": {"result": "SUCCESS"},
        });
        assert_eq!(delivery_failure(&event), None);
    }
}
