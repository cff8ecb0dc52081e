//! The dispatcher: sends due outbox entries to their subscribers and records each outcome in
//! the store. Entries stay in the store until they are delivered or dead-lettered, so a crash
//! loses none of them, and an attempt cut off by a crash is sent again with the same
//! `webhook-id` (at least once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use url::Url;

use crate::forward::backoff;
use crate::forward::breaker::{BreakerState, Breakers};
use crate::forward::send::{deliver_once, AttemptOutcome, AttemptResult};
use crate::forward::NotificationKind;
use crate::http::AppState;
use crate::store::outbox::{outbox_wake, AttemptRecord, OutboxEntry, Outcome};

/// Dead letters kept before an `alert.dead_letters` notification goes out.
const DEAD_LETTER_ALERT_AT: usize = 10;

/// The maximum number of attempts in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// The maximum number of attempts in flight to one origin (scheme, host and port).
pub const MAX_IN_FLIGHT_PER_ORIGIN: usize = 8;

/// The time limit of one attempt: resolution, connection, response and the excerpt read.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the dispatcher looks for due entries when nothing wakes it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The maximum number of due entries read per pass. Entries past it wait for the next pass.
/// A pass runs after every finished attempt and parses every entry it reads, so this bounds
/// the cost of each notification sent.
// NOTE: entries of one origin that is at its in-flight limit still take room in this window, so
// more than this many due entries for a slow origin can delay other origins until its circuit
// breaker opens and moves them later.
pub const MAX_SCANNED: usize = 256;

/// Consecutive failed attempts to one origin that open its circuit breaker.
pub const BREAKER_THRESHOLD: u32 = 5;

/// How long an open breaker blocks attempts before it lets one probe through.
pub const BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);

/// How far an entry held back by an open breaker is moved, without counting an attempt.
pub const CIRCUIT_OPEN_DELAY: Duration = Duration::from_secs(10);

/// How long a stop waits for attempts in flight before leaving them to the next start.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Shared between the pass loop and the attempt tasks.
struct Dispatcher {
    state: AppState,
    breakers: Mutex<Breakers>,
    /// Every origin sent to since the start, for the open-circuit gauge.
    origins: Mutex<HashMap<String, Url>>,
}

/// Runs until `stop` turns true.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let dispatcher = Arc::new(Dispatcher {
        state,
        breakers: Mutex::new(Breakers::new(BREAKER_THRESHOLD, BREAKER_COOL_DOWN)),
        origins: Mutex::new(HashMap::new()),
    });
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks: JoinSet<(u64, String)> = JoinSet::new();
    let mut in_flight: HashSet<u64> = HashSet::new();
    let mut per_origin: HashMap<String, usize> = HashMap::new();
    tracing::info!("notification dispatcher started");

    loop {
        while let Some(done) = tasks.try_join_next() {
            finish(done, &mut in_flight, &mut per_origin);
        }
        if *stop.borrow() {
            break;
        }
        if let Err(err) = dispatcher
            .pass(&slots, &mut tasks, &mut in_flight, &mut per_origin)
            .await
        {
            tracing::error!(error = %err, "outbox pass failed; retrying at the next poll");
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = outbox_wake().notified() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                finish(done, &mut in_flight, &mut per_origin);
            }
        }
    }

    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    in_flight = tasks.len(),
                    "stopping with attempts in flight; they are sent again after the next start"
                );
                tasks.abort_all();
                break;
            }
        }
    }
    tracing::info!("notification dispatcher stopped");
}

fn finish(
    done: Result<(u64, String), tokio::task::JoinError>,
    in_flight: &mut HashSet<u64>,
    per_origin: &mut HashMap<String, usize>,
) {
    match done {
        Ok((id, origin)) => {
            in_flight.remove(&id);
            if let Some(count) = per_origin.get_mut(&origin) {
                *count = count.saturating_sub(1);
            }
        }
        Err(err) => {
            // The task's ids are lost with it. Its entry stays in flight until a restart, and
            // a panic here is a bug to fix.
            tracing::error!(error = %err, "notification attempt task failed");
        }
    }
}

impl Dispatcher {
    /// Reads due entries, folds finished digest windows, and starts attempts for the rest as
    /// far as the concurrency limits allow.
    async fn pass(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<(u64, String)>,
        in_flight: &mut HashSet<u64>,
        per_origin: &mut HashMap<String, usize>,
    ) -> Result<(), crate::store::StoreError> {
        let store = &self.state.store;
        let now = Utc::now();
        let due = store.due_entries(now, MAX_SCANNED)?;
        let mut digests: BTreeMap<(String, String, DateTime<Utc>), Vec<&OutboxEntry>> =
            BTreeMap::new();
        // Entries not sent in this pass: disabled subscriptions and open circuits.
        let mut skipped: Vec<(u64, Outcome)> = Vec::new();
        let mut subscriptions = HashMap::new();

        for entry in &due {
            if in_flight.contains(&entry.id) {
                continue;
            }
            if let (Some(window), Some(domain)) = (entry.digest_window, &entry.domain) {
                let group = (entry.subscription_id.clone(), domain.clone(), window);
                digests.entry(group).or_default().push(entry);
                continue;
            }
            if slots.available_permits() == 0 {
                break;
            }
            if !subscriptions.contains_key(&entry.subscription_id) {
                let found = store.subscription(&entry.subscription_id)?;
                subscriptions.insert(entry.subscription_id.clone(), found);
            }
            let Some(subscription) = subscriptions[&entry.subscription_id].clone() else {
                // Deleting a subscription removes its entries in the same write, so this
                // entry is being removed right now.
                continue;
            };
            if !subscription.enabled {
                let reason = "the subscription is disabled".to_string();
                let attempt = skipped_attempt(now, "disabled", &reason);
                skipped.push((entry.id, Outcome::Dead { reason, attempt }));
                self.count_dead("disabled");
                continue;
            }
            let origin = match Url::parse(&subscription.url) {
                Ok(url) => Breakers::origin_key(&url),
                Err(_) => String::new(),
            };
            if per_origin.get(&origin).copied().unwrap_or(0) >= MAX_IN_FLIGHT_PER_ORIGIN {
                continue;
            }
            if !self.acquire_breaker(&subscription.url) {
                let at = now + chrono::Duration::from_std(CIRCUIT_OPEN_DELAY).unwrap_or_default();
                let error = "the circuit breaker for this origin is open";
                let attempt = skipped_attempt(now, "circuit_open", error);
                let outcome = Outcome::Reschedule {
                    at,
                    attempt,
                    counted: false,
                };
                skipped.push((entry.id, outcome));
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };

            in_flight.insert(entry.id);
            *per_origin.entry(origin.clone()).or_default() += 1;
            let dispatcher = Arc::clone(self);
            let entry = entry.clone();
            tasks.spawn(async move {
                let id = entry.id;
                dispatcher.attempt(entry, subscription).await;
                drop(permit);
                (id, origin)
            });
        }

        store.record_outcomes(skipped).await?;
        for ((subscription_id, domain, start), members) in digests {
            let window = members
                .first()
                .map(|member| member.next_attempt_at)
                .unwrap_or(now);
            let ids = members.iter().map(|member| member.id).collect();
            store
                .fold_digest(subscription_id, domain, start, window, ids)
                .await?;
        }
        self.update_open_circuits();
        Ok(())
    }

    /// Asks the origin's breaker whether an attempt may start now.
    fn acquire_breaker(&self, url: &str) -> bool {
        let Ok(url) = Url::parse(url) else {
            return true;
        };
        let mut breakers = self.breakers.lock().expect("breakers lock");
        breakers.for_url(&url).try_acquire(Instant::now())
    }

    /// Sends one entry once and records the outcome.
    async fn attempt(&self, entry: OutboxEntry, subscription: crate::forward::Subscription) {
        let allow_private = self.state.config.forward_allow_private;
        let outcome = deliver_once(
            &subscription,
            &entry.notification,
            allow_private,
            ATTEMPT_TIMEOUT,
        )
        .await;
        self.observe(&subscription.url, &outcome);

        let attempt = AttemptRecord {
            at: Utc::now(),
            status: outcome.status,
            latency_ms: outcome.latency_ms,
            result: result_word(outcome.result).to_string(),
            error: outcome.error.clone(),
        };
        let failed_attempts = entry.attempts + 1;
        let next = match outcome.result {
            AttemptResult::Delivered => Outcome::Delivered,
            AttemptResult::Gone => {
                self.count_dead("gone");
                Outcome::Gone { attempt }
            }
            AttemptResult::Refused => {
                let reason = format!(
                    "the destination was refused: {}",
                    outcome.error.as_deref().unwrap_or("no reason given")
                );
                self.count_dead("refused");
                Outcome::Dead { reason, attempt }
            }
            AttemptResult::Retry { after } => self.schedule(failed_attempts, after, attempt),
            AttemptResult::Failed => self.schedule(failed_attempts, None, attempt),
        };
        if let Err(err) = self.state.store.record_outcome(entry.id, next).await {
            // The entry stays due as it was, so it is sent again: at least once.
            tracing::error!(
                error = %err,
                delivery_id = entry.id,
                webhook_id = %entry.notification.id,
                "recording a notification attempt failed"
            );
        }
    }

    /// Returns the next step after a failed attempt: a retry on the backoff schedule, or the
    /// dead letters once the schedule is used up.
    fn schedule(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        attempt: AttemptRecord,
    ) -> Outcome {
        let delay = backoff::next_delay(failed_attempts, retry_after, &mut rand::thread_rng());
        match delay {
            Some(delay) => Outcome::Reschedule {
                at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                attempt,
                counted: true,
            },
            None => {
                self.count_dead("exhausted");
                let reason = format!("no success after {failed_attempts} attempts");
                Outcome::Dead { reason, attempt }
            }
        }
    }

    /// Updates the breaker and the metrics after an attempt. A response other than a retryable
    /// one shows the receiver is up, so only `Retry` counts against the breaker.
    fn observe(&self, url: &str, outcome: &AttemptOutcome) {
        if let Ok(url) = Url::parse(url) {
            let origin = Breakers::origin_key(&url);
            self.origins
                .lock()
                .expect("origins lock")
                .entry(origin)
                .or_insert_with(|| url.clone());
            let mut breakers = self.breakers.lock().expect("breakers lock");
            let breaker = breakers.for_url(&url);
            match outcome.result {
                AttemptResult::Retry { .. } => breaker.record_failure(Instant::now()),
                AttemptResult::Refused => {}
                _ => breaker.record_success(),
            }
        }
        let metrics = &self.state.metrics;
        metrics.inc(
            "bouncewatch_notification_attempts_total",
            "Notification attempts to subscribers, by result.",
            &[("result", result_word(outcome.result))],
            1,
        );
        if outcome.status.is_some() {
            metrics.observe(
                "bouncewatch_notification_latency_seconds",
                "Time from the start of a notification attempt to the subscriber's response.",
                &[],
                outcome.latency_ms as f64 / 1000.0,
            );
        }
    }

    fn count_dead(&self, reason: &str) {
        self.state.metrics.inc(
            "bouncewatch_notification_dead_letters_total",
            "Notifications moved to the dead letters, by reason.",
            &[("reason", reason)],
            1,
        );
        self.alert_dead_letters(reason);
    }

    /// Queues an `alert.dead_letters` notification when dead letters pile up (at least
    /// [`DEAD_LETTER_ALERT_AT`] kept), at most one an hour.
    fn alert_dead_letters(&self, reason: &str) {
        let store = self.state.store.clone();
        if store.count_prefix(crate::store::outbox::DEAD_LETTER) < DEAD_LETTER_ALERT_AT {
            return;
        }
        let hour = Utc::now().timestamp().div_euclid(3600);
        let reason = reason.to_string();
        tokio::spawn(async move {
            let marker = crate::store::keys::meta(&format!("dead_letter_alert/{hour}"));
            let queued = store
                .write(move |txn| {
                    if txn.contains(&marker) {
                        return;
                    }
                    txn.put(marker, Vec::new());
                    let data = serde_json::json!({
                        "reason": reason,
                        "threshold": DEAD_LETTER_ALERT_AT,
                        "detail": "notifications are piling up in the dead letters; see GET /api/v1/deliveries?state=dead",
                    });
                    crate::store::outbox::enqueue(
                        txn,
                        NotificationKind::AlertDeadLetters,
                        &format!("dead-letters-{hour}"),
                        None,
                        Utc::now(),
                        data,
                    );
                })
                .await;
            if let Err(err) = queued {
                tracing::error!(error = %err, "alert.dead_letters could not be queued");
            }
        });
    }

    fn update_open_circuits(&self) {
        // NOTE: breakers are never removed, so this walks every origin ever sent to since the
        // start, which stays small for a handful of subscriptions.
        let now = Instant::now();
        let origins: Vec<Url> = {
            let origins = self.origins.lock().expect("origins lock");
            origins.values().cloned().collect()
        };
        let mut breakers = self.breakers.lock().expect("breakers lock");
        let open = origins
            .iter()
            .filter(|url| breakers.for_url(url).state(now) == BreakerState::Open)
            .count();
        drop(breakers);
        self.state.metrics.set(
            "bouncewatch_notification_open_circuits",
            "Subscriber origins whose circuit breaker is open.",
            &[],
            open as f64,
        );
    }
}

fn skipped_attempt(at: DateTime<Utc>, result: &str, error: &str) -> AttemptRecord {
    AttemptRecord {
        at,
        status: None,
        latency_ms: 0,
        result: result.to_string(),
        error: Some(error.to_string()),
    }
}

/// Returns the word the metrics and the deliveries API use for an attempt result.
pub fn result_word(result: AttemptResult) -> &'static str {
    match result {
        AttemptResult::Delivered => "delivered",
        AttemptResult::Retry { .. } => "retry",
        AttemptResult::Gone => "gone",
        AttemptResult::Failed => "failed",
        AttemptResult::Refused => "refused",
    }
}
