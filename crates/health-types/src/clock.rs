//! The one place that reads the wall clock.
//!
//! Monotonic time everywhere else is `tokio::time::Instant`, which tests can pause.
#![allow(clippy::disallowed_methods)]

use std::{fmt::Debug, time::SystemTime};

/// A source of wall-clock time stamps (events, last seen, start time).
pub trait Clock: Send + Sync + Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Wall-clock time that advances with tokio's clock, so that paused-time tests get
/// deterministic time stamps: `now() = base + (tokio::time::Instant::now() - anchor)`.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    base: SystemTime,
    anchor: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `base` now and follows tokio's clock from here on.
    pub fn starting_at(base: SystemTime) -> Self {
        TokioClock {
            base,
            anchor: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.anchor.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = TokioClock::starting_at(base);
        assert_eq!(clock.now(), base);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), base + Duration::from_secs(90));
    }

    #[test]
    fn system_clock_is_after_2020() {
        let since = SystemClock.now().duration_since(UNIX_EPOCH).unwrap();
        assert!(since > Duration::from_secs(1_577_836_800));
    }
}
