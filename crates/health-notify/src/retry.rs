//! The retry schedule of SPEC §6 and §9.1: exponential backoff with jitter and a cap,
//! bounded by the age of the message rather than by a count of attempts.

use std::time::Duration;

use crate::NotifyError;

/// How far apart a failed delivery is tried again, and for how long.
///
/// The delay before retry `n` (1 for the first retry) is `base × factor^(n-1)`, capped at
/// `max_backoff`, then multiplied by a random factor in `[1 - jitter, 1 + jitter)` and
/// capped again. A receiver's `Retry-After` is honoured: the dispatcher waits at least
/// that long (longer when the backoff is longer, so a receiver that keeps answering
/// `Retry-After: 0` is not hammered), even past `max_backoff`.
///
/// Retries of one message go on until it is delivered, fails for good (a 4xx other than
/// 408 and 429, or a message that cannot be built), or is `max_age` old, counted from
/// when it entered the outbox. No wait runs past that age: the last attempt is made at
/// `max_age` at the latest, and when it fails too the message is given up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry (more than zero).
    pub base: Duration,
    /// Growth factor per retry (1 keeps the delay constant).
    pub factor: u32,
    /// Relative jitter, in `[0, 1]`: 0.1 means ±10 %.
    pub jitter: f64,
    /// The longest computed delay (a `Retry-After` may ask for more).
    pub max_backoff: Duration,
    /// How old a message may get while it is retried; zero means one attempt only.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    /// 1 s base, ×2, ±10 % jitter, cap 5 min, retried for 24 h (SPEC §9.1's
    /// `[delivery]` defaults).
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            factor: 2,
            jitter: 0.1,
            max_backoff: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries: the default with a `max_age` of zero.
    pub fn never() -> Self {
        RetryPolicy {
            max_age: Duration::ZERO,
            ..RetryPolicy::default()
        }
    }

    /// Checks the fields: `base` more than zero (a zero delay would retry in a tight
    /// loop), `factor` at least 1, jitter in `[0, 1]`, `max_backoff` at least `base`.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if self.base.is_zero() {
            return Err(NotifyError::config("base", "must be more than zero"));
        }
        if self.factor == 0 {
            return Err(NotifyError::config("factor", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(NotifyError::config(
                "jitter",
                format!("{} must be between 0 and 1", self.jitter),
            ));
        }
        if self.max_backoff < self.base {
            return Err(NotifyError::config(
                "max_backoff",
                format!(
                    "{:?} is shorter than the base delay {:?}",
                    self.max_backoff, self.base
                ),
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
        let nominal = self.base.saturating_mul(growth).min(self.max_backoff);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(nominal.as_secs_f64() * scale)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
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
    fn defaults_are_the_delivery_section_defaults() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_backoff, Duration::from_secs(300));
        assert_eq!(policy.max_age, Duration::from_secs(86_400));
        assert_eq!(RetryPolicy::never().max_age, Duration::ZERO);
    }

    #[test]
    fn validation() {
        assert!(RetryPolicy::default().validate().is_ok());
        assert!(RetryPolicy::never().validate().is_ok());
        let bad = [
            (
                RetryPolicy {
                    base: Duration::ZERO,
                    ..RetryPolicy::default()
                },
                "invalid `base`: must be more than zero",
            ),
            (
                RetryPolicy {
                    factor: 0,
                    ..RetryPolicy::default()
                },
                "invalid `factor`: must be at least 1",
            ),
            (
                RetryPolicy {
                    jitter: 1.5,
                    ..RetryPolicy::default()
                },
                "invalid `jitter`: 1.5 must be between 0 and 1",
            ),
            (
                RetryPolicy {
                    max_backoff: Duration::from_millis(500),
                    ..RetryPolicy::default()
                },
                "invalid `max_backoff`: 500ms is shorter than the base delay 1s",
            ),
        ];
        for (policy, message) in bad {
            assert_eq!(policy.validate().unwrap_err().to_string(), message);
        }
    }
}
