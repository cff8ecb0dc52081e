//! Circuit breakers per subscriber endpoint, so a dead endpoint stops getting attempts for a
//! while instead of one per queued notification.
//!
//! The breakers are plain state machines that take the current `Instant` as an argument, so
//! tests drive them without a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use url::Url;

/// The externally visible state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Attempts go through.
    Closed,
    /// Attempts are held back until the cool-down ends.
    Open,
    /// One probe attempt is allowed, and its result closes or reopens the breaker.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// `probe_started` is when the probe was let through. A probe whose result never arrives
    /// (the task died) stops blocking once a cool-down has passed, and another probe goes.
    HalfOpen {
        probe_started: Instant,
    },
}

/// A breaker for one endpoint: opens after `failure_threshold` consecutive failures, lets one
/// probe through after `cool_down`, and closes on a success.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cool_down: Duration,
    consecutive_failures: u32,
    phase: Phase,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, cool_down: Duration) -> CircuitBreaker {
        CircuitBreaker {
            failure_threshold: failure_threshold.max(1),
            cool_down,
            consecutive_failures: 0,
            phase: Phase::Closed,
        }
    }

    /// Returns the state at `now`, without taking the probe.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Decides whether an attempt may start at `now`. In the half-open state the first caller
    /// gets `true` and becomes the probe, and later callers get `false` until the probe reports.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed => true,
            Phase::Open { until } if now < until => false,
            Phase::HalfOpen { probe_started } if now < probe_started + self.cool_down => false,
            Phase::Open { .. } | Phase::HalfOpen { .. } => {
                self.phase = Phase::HalfOpen { probe_started: now };
                true
            }
        }
    }

    /// Records a successful attempt, which closes the breaker.
    pub fn record_success(&mut self) {
        self.consecutive_failures = 0;
        self.phase = Phase::Closed;
    }

    /// Records a failed attempt. A failed probe reopens the breaker at once.
    pub fn record_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let probe_failed = matches!(self.phase, Phase::HalfOpen { .. });
        if probe_failed || self.consecutive_failures >= self.failure_threshold {
            self.phase = Phase::Open {
                until: now + self.cool_down,
            };
        }
    }
}

/// Breakers keyed by URL origin (scheme, host and port), so every subscription that points at
/// one server shares one breaker.
#[derive(Debug, Clone)]
pub struct Breakers {
    failure_threshold: u32,
    cool_down: Duration,
    by_origin: HashMap<String, CircuitBreaker>,
}

impl Breakers {
    pub fn new(failure_threshold: u32, cool_down: Duration) -> Breakers {
        Breakers {
            failure_threshold,
            cool_down,
            by_origin: HashMap::new(),
        }
    }

    /// Returns the key for a URL: its ASCII origin, such as `https://hooks.example.com:8443`.
    pub fn origin_key(url: &Url) -> String {
        url.origin().ascii_serialization()
    }

    /// Returns the breaker for a URL's origin, creating a closed one if needed.
    pub fn for_url(&mut self, url: &Url) -> &mut CircuitBreaker {
        let (threshold, cool_down) = (self.failure_threshold, self.cool_down);
        self.by_origin
            .entry(Breakers::origin_key(url))
            .or_insert_with(|| CircuitBreaker::new(threshold, cool_down))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(60);

    fn open_breaker(start: Instant) -> CircuitBreaker {
        let mut breaker = CircuitBreaker::new(3, COOL_DOWN);
        for _ in 0..3 {
            breaker.record_failure(start);
        }
        breaker
    }

    #[test]
    fn opens_after_threshold_failures() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(3, COOL_DOWN);
        breaker.record_failure(start);
        breaker.record_failure(start);
        assert_eq!(breaker.state(start), BreakerState::Closed);
        assert!(breaker.try_acquire(start));

        breaker.record_failure(start);
        assert_eq!(breaker.state(start), BreakerState::Open);
        assert!(!breaker.try_acquire(start + Duration::from_secs(59)));
    }

    #[test]
    fn success_resets_failure_count() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(3, COOL_DOWN);
        breaker.record_failure(start);
        breaker.record_failure(start);
        breaker.record_success();
        breaker.record_failure(start);
        breaker.record_failure(start);
        assert_eq!(breaker.state(start), BreakerState::Closed);
    }

    #[test]
    fn half_open_allows_one_probe() {
        let start = Instant::now();
        let mut breaker = open_breaker(start);
        let later = start + COOL_DOWN;
        assert_eq!(breaker.state(later), BreakerState::HalfOpen);
        assert!(breaker.try_acquire(later));
        assert!(!breaker.try_acquire(later));
        assert!(!breaker.try_acquire(later + Duration::from_secs(1)));
    }

    #[test]
    fn probe_success_closes() {
        let start = Instant::now();
        let mut breaker = open_breaker(start);
        assert!(breaker.try_acquire(start + COOL_DOWN));
        breaker.record_success();
        assert_eq!(breaker.state(start + COOL_DOWN), BreakerState::Closed);
        assert!(breaker.try_acquire(start + COOL_DOWN));
    }

    #[test]
    fn probe_failure_reopens() {
        let start = Instant::now();
        let mut breaker = open_breaker(start);
        let probe_at = start + COOL_DOWN;
        assert!(breaker.try_acquire(probe_at));
        breaker.record_failure(probe_at);
        assert_eq!(breaker.state(probe_at), BreakerState::Open);
        assert!(!breaker.try_acquire(probe_at + Duration::from_secs(59)));
        assert!(breaker.try_acquire(probe_at + COOL_DOWN));
    }

    #[test]
    fn lost_probe_expires() {
        let start = Instant::now();
        let mut breaker = open_breaker(start);
        let probe_at = start + COOL_DOWN;
        assert!(breaker.try_acquire(probe_at));
        assert!(breaker.try_acquire(probe_at + COOL_DOWN));
    }

    #[test]
    fn breakers_share_one_per_origin() {
        let start = Instant::now();
        let mut breakers = Breakers::new(1, COOL_DOWN);
        let first = Url::parse("https://hooks.example.com/a").unwrap();
        let same_origin = Url::parse("https://HOOKS.example.com:443/b?x=1").unwrap();
        let other_port = Url::parse("https://hooks.example.com:8443/a").unwrap();

        breakers.for_url(&first).record_failure(start);
        assert_eq!(
            breakers.for_url(&same_origin).state(start),
            BreakerState::Open
        );
        assert_eq!(
            breakers.for_url(&other_port).state(start),
            BreakerState::Closed
        );
    }
}
