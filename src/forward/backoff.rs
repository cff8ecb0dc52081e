//! The retry schedule for notifications that a subscriber did not accept.
//!
//! A notification gets [`MAX_ATTEMPTS`] attempts. After the n-th failed attempt the next one
//! waits about `RETRY_DELAYS[n - 1]`: 5 s, 30 s, 2 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h,
//! 6 h and 8 h. Before jitter, the last attempt starts about 21.9 h after the first. Each delay is drawn
//! uniformly from 75 % to 125 % of its step, so receivers that recover together do not get every
//! retry at once. Full jitter (0 to 100 %) was not used because it would halve the mean
//! total and could shrink the early steps to almost nothing.

use std::time::{Duration, SystemTime};

use rand::Rng;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// The wait after each failed attempt, before jitter.
pub const RETRY_DELAYS: [Duration; 11] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * MINUTE),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(15 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(HOUR),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(4 * HOUR),
    Duration::from_secs(6 * HOUR),
    Duration::from_secs(8 * HOUR),
];

/// The number of attempts, the first one included, before a notification is dead-lettered.
pub const MAX_ATTEMPTS: u32 = RETRY_DELAYS.len() as u32 + 1;

/// The fraction of a step by which jitter may lengthen or shorten it.
pub const JITTER_FRACTION: f64 = 0.25;

/// The longest `Retry-After` that is honoured. A longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * HOUR);

/// Returns the wait before the next attempt after `failed_attempts` failures, or `None` when
/// the notification has had [`MAX_ATTEMPTS`] and should be dead-lettered. A `Retry-After` from
/// the receiver is a lower bound: the wait is the longer of it and the jittered step.
pub fn next_delay<R: Rng + ?Sized>(
    failed_attempts: u32,
    retry_after: Option<Duration>,
    rng: &mut R,
) -> Option<Duration> {
    let sample: f64 = rng.gen();
    next_delay_with_sample(failed_attempts, retry_after, sample)
}

/// [`next_delay`] with the jitter sample given: `sample` in `[0, 1)` maps linearly onto 75 %
/// to 125 % of the step.
pub fn next_delay_with_sample(
    failed_attempts: u32,
    retry_after: Option<Duration>,
    sample: f64,
) -> Option<Duration> {
    if failed_attempts == 0 || failed_attempts >= MAX_ATTEMPTS {
        return None;
    }
    let step = RETRY_DELAYS[failed_attempts as usize - 1];
    let factor = 1.0 - JITTER_FRACTION + 2.0 * JITTER_FRACTION * sample.clamp(0.0, 1.0);
    let jittered = step.mul_f64(factor);
    let floor = retry_after.map_or(Duration::ZERO, |after| after.min(MAX_RETRY_AFTER));
    Some(jittered.max(floor))
}

/// Parses a `Retry-After` header value, either delay seconds or an HTTP date, into a wait from
/// `now`, capped at [`MAX_RETRY_AFTER`]. A date in the past gives zero. Returns `None` for a
/// value that is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let date = httpdate::parse_http_date(value).ok()?;
        date.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn schedule_spans_about_a_day() {
        let total: Duration = RETRY_DELAYS.iter().sum();
        assert_eq!(MAX_ATTEMPTS, 12);
        assert_eq!(total, Duration::from_secs(78_755));
    }

    #[test]
    fn sample_maps_onto_jitter_range() {
        let low = next_delay_with_sample(1, None, 0.0);
        let middle = next_delay_with_sample(1, None, 0.5);
        let high = next_delay_with_sample(11, None, 1.0);
        assert_eq!(low, Some(Duration::from_millis(3750)));
        assert_eq!(middle, Some(Duration::from_secs(5)));
        assert_eq!(high, Some(Duration::from_secs(10 * HOUR)));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        assert!(next_delay_with_sample(MAX_ATTEMPTS - 1, None, 0.5).is_some());
        assert_eq!(next_delay_with_sample(MAX_ATTEMPTS, None, 0.5), None);
        assert_eq!(next_delay_with_sample(0, None, 0.5), None);
    }

    #[test]
    fn seeded_delays_stay_in_range() {
        let mut rng = StdRng::seed_from_u64(7);
        for failed in 1..MAX_ATTEMPTS {
            let step = RETRY_DELAYS[failed as usize - 1];
            let delay = next_delay(failed, None, &mut rng).unwrap();
            assert!(delay >= step.mul_f64(0.75), "attempt {failed}: {delay:?}");
            assert!(delay <= step.mul_f64(1.25), "attempt {failed}: {delay:?}");
        }
    }

    #[test]
    fn retry_after_is_a_lower_bound() {
        let longer = next_delay_with_sample(1, Some(Duration::from_secs(120)), 0.5);
        let shorter = next_delay_with_sample(3, Some(Duration::from_secs(1)), 0.5);
        let huge = next_delay_with_sample(1, Some(Duration::from_secs(100 * HOUR)), 0.5);
        assert_eq!(longer, Some(Duration::from_secs(120)));
        assert_eq!(shorter, Some(Duration::from_secs(2 * MINUTE)));
        assert_eq!(huge, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn parse_retry_after_seconds() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn parse_retry_after_http_date() {
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480 - 90);
        let parsed = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now);
        assert_eq!(parsed, Some(Duration::from_secs(90)));

        let later = now + Duration::from_secs(1000);
        let past = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", later);
        assert_eq!(past, Some(Duration::ZERO));
    }

    #[test]
    fn parse_retry_after_rejects_garbage() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }
}
