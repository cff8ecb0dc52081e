//! Retry bounds of the Okta client and the backoff delays derived from them.

use std::time::Duration;

use rand::Rng;

/// Retry bounds for 429, 5xx, timeouts and transport failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts per request, the first one included.
    pub max_attempts: u32,
    /// First backoff delay for 5xx and transport failures; it doubles with each attempt.
    pub base_delay: Duration,
    /// Upper bound of one backoff delay and of one wait for a rate-limit reset.
    pub max_delay: Duration,
    /// Upper bound of the random delay added to each wait.
    pub jitter: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(65),
            jitter: Duration::from_millis(250),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay) + self.random_jitter()
    }

    pub(crate) fn random_jitter(&self) -> Duration {
        let max_millis = self.jitter.as_millis() as u64;
        if max_millis == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::thread_rng().gen_range(0..=max_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            jitter: Duration::ZERO,
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(300));
    }
}
