//! The retry schedule of SPEC §6: exponential backoff with jitter and a cap.

use std::time::Duration;

use crate::NotifyError;

/// How often and how far apart a failed delivery is tried again.
///
/// The delay before retry `n` (1 for the first retry) is `base × factor^(n-1)`, capped at
/// `max_delay`, then multiplied by a random factor in `[1 - jitter, 1 + jitter)` and
/// capped again. A `Retry-After` from the receiver replaces the computed delay (still
/// capped at `max_delay`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the first retry.
    pub base: Duration,
    /// Growth factor per retry.
    pub factor: u32,
    /// The longest delay.
    pub max_delay: Duration,
    /// Relative jitter, in `[0, 1]`: 0.1 means ±10 %.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s base, ×2, cap 5 min, ±10 % jitter.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_secs(1),
            factor: 2,
            max_delay: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn never() -> Self {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Checks the fields: at least one attempt, jitter in `[0, 1]`.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if self.attempts == 0 {
            return Err(NotifyError::config("attempts", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(NotifyError::config(
                "jitter",
                format!("{} must be between 0 and 1", self.jitter),
            ));
        }
        Ok(())
    }

    /// The delay before retry `retry` (1-based), with fresh random jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, fastrand::f64())
    }

    /// The delay before retry `retry` (1-based), with the jitter drawn as `unit` in
    /// `[0, 1)`: 0 gives the lowest delay, 0.5 the nominal one.
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let exponent = retry.saturating_sub(1);
        let growth = self.factor.max(1).checked_pow(exponent).unwrap_or(u32::MAX);
        let nominal = self.base.saturating_mul(growth).min(self.max_delay);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(nominal.as_secs_f64() * scale)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_five_minutes() {
        let policy = RetryPolicy::default();
        let nominal: Vec<_> = (1..=10).map(|n| policy.delay_with(n, 0.5)).collect();
        let secs = |s| Duration::from_secs(s);
        assert_eq!(
            nominal,
            [
                secs(1),
                secs(2),
                secs(4),
                secs(8),
                secs(16),
                secs(32),
                secs(64),
                secs(128),
                secs(256),
                secs(300)
            ]
        );
        assert_eq!(policy.delay_with(u32::MAX, 0.99), secs(300));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_with(3, 0.0), Duration::from_millis(3600));
        assert!(policy.delay_with(3, 0.999_999) <= Duration::from_millis(4400));
        for _ in 0..200 {
            let d = policy.delay(2);
            assert!(
                (Duration::from_millis(1800)..=Duration::from_millis(2200)).contains(&d),
                "{d:?}"
            );
        }
    }

    #[test]
    fn validation() {
        assert!(RetryPolicy::default().validate().is_ok());
        let zero = RetryPolicy {
            attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(zero.validate().is_err());
        let wild = RetryPolicy {
            jitter: 1.5,
            ..RetryPolicy::default()
        };
        assert!(wild.validate().is_err());
    }
}
