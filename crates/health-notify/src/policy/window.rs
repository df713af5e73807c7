//! `[[maintenance]]` windows (SPEC §9.5): a fixed `start`/`end`, or a `cron` schedule with
//! a `duration`, for some monitors or all of them.

use std::{
    str::FromStr,
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use croner::Cron;

/// A maintenance window could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// `end` is not after `start`.
    #[error("`end` must be after `start`")]
    EndBeforeStart,
    /// The cron pattern does not parse.
    #[error("`cron` {pattern:?}: {reason}")]
    Cron {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// The cron pattern never fires.
    #[error("`cron` {0:?} never fires")]
    NeverFires(String),
    /// A cron window needs a positive duration.
    #[error("`duration` must be more than 0s")]
    ZeroDuration,
}

/// When a window is open.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Once, from `start` (inclusive) to `end` (exclusive).
    Once {
        /// When it opens.
        start: SystemTime,
        /// When it closes.
        end: SystemTime,
    },
    /// At every time the cron pattern fires (in UTC), for `duration`.
    Cron {
        /// The pattern as written (five fields, or six with seconds first).
        pattern: String,
        /// The parsed pattern.
        cron: Box<Cron>,
        /// How long each window lasts.
        duration: Duration,
    },
}

/// One `[[maintenance]]` window: while it is open, the monitors it covers send no
/// notifications (SPEC §9.5), and the API shows them with `"maintenance": true`.
#[derive(Clone, Debug)]
pub struct MaintenanceWindow {
    monitors: Vec<String>,
    schedule: Schedule,
}

/// How far a cron window's end is followed through overlapping occurrences.
const MAX_OVERLAPS: usize = 1000;

impl MaintenanceWindow {
    /// A window open from `start` to `end` for `monitors` (empty: every monitor).
    pub fn once(
        monitors: Vec<String>,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Self, WindowError> {
        if end <= start {
            return Err(WindowError::EndBeforeStart);
        }
        Ok(MaintenanceWindow {
            monitors,
            schedule: Schedule::Once { start, end },
        })
    }

    /// A window open for `duration` each time `pattern` fires (standard five-field cron,
    /// or six fields with seconds first; evaluated in UTC), for `monitors` (empty: every
    /// monitor).
    pub fn cron(
        monitors: Vec<String>,
        pattern: &str,
        duration: Duration,
    ) -> Result<Self, WindowError> {
        if duration.is_zero() {
            return Err(WindowError::ZeroDuration);
        }
        let cron = Cron::from_str(pattern).map_err(|err| WindowError::Cron {
            pattern: pattern.to_owned(),
            reason: err.to_string(),
        })?;
        let window = MaintenanceWindow {
            monitors,
            schedule: Schedule::Cron {
                pattern: pattern.to_owned(),
                cron: Box::new(cron),
                duration,
            },
        };
        let epoch =
            DateTime::<Utc>::from(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        if let Schedule::Cron { cron, .. } = &window.schedule
            && cron.find_next_occurrence(&epoch, false).is_err()
        {
            return Err(WindowError::NeverFires(pattern.to_owned()));
        }
        Ok(window)
    }

    /// The monitors it names (empty: every monitor).
    pub fn monitors(&self) -> &[String] {
        &self.monitors
    }

    /// When it is open.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Whether it covers `monitor`.
    pub fn covers(&self, monitor: &str) -> bool {
        self.monitors.is_empty() || self.monitors.iter().any(|m| m == monitor)
    }

    /// Whether it is open at `now`.
    pub fn is_open(&self, now: SystemTime) -> bool {
        match &self.schedule {
            Schedule::Once { start, end } => *start <= now && now < *end,
            Schedule::Cron { cron, duration, .. } => {
                let at = DateTime::<Utc>::from(now);
                cron.find_previous_occurrence(&at, true)
                    .is_ok_and(|last| now < SystemTime::from(last) + *duration)
            }
        }
    }

    /// The first time after `now` at which [`is_open`](Self::is_open) may change, if
    /// any: the end of the open window (followed through overlapping occurrences), or
    /// the next opening.
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        match &self.schedule {
            Schedule::Once { start, end } => {
                if now < *start {
                    Some(*start)
                } else if now < *end {
                    Some(*end)
                } else {
                    None
                }
            }
            Schedule::Cron { cron, duration, .. } => {
                let at = DateTime::<Utc>::from(now);
                let open = cron
                    .find_previous_occurrence(&at, true)
                    .ok()
                    .filter(|last| now < SystemTime::from(*last) + *duration);
                let Some(mut last) = open else {
                    return cron
                        .find_next_occurrence(&at, false)
                        .ok()
                        .map(SystemTime::from);
                };
                let mut end = SystemTime::from(last) + *duration;
                for _ in 0..MAX_OVERLAPS {
                    match cron.find_next_occurrence(&last, false) {
                        Ok(next) if SystemTime::from(next) <= end => {
                            end = end.max(SystemTime::from(next) + *duration);
                            last = next;
                        }
                        _ => break,
                    }
                }
                Some(end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn a_fixed_window_is_open_from_start_to_end() {
        let w = MaintenanceWindow::once(
            vec!["api".into()],
            at("2024-05-01T02:00:00Z"),
            at("2024-05-01T03:00:00Z"),
        )
        .unwrap();
        assert!(w.covers("api") && !w.covers("db"));
        assert!(!w.is_open(at("2024-05-01T01:59:59Z")));
        assert!(w.is_open(at("2024-05-01T02:00:00Z")));
        assert!(!w.is_open(at("2024-05-01T03:00:00Z")));
        assert_eq!(
            w.next_change(at("2024-05-01T01:00:00Z")),
            Some(at("2024-05-01T02:00:00Z"))
        );
        assert_eq!(
            w.next_change(at("2024-05-01T02:30:00Z")),
            Some(at("2024-05-01T03:00:00Z"))
        );
        assert_eq!(w.next_change(at("2024-05-01T03:00:00Z")), None);
        assert_eq!(
            MaintenanceWindow::once(
                vec![],
                at("2024-05-01T03:00:00Z"),
                at("2024-05-01T03:00:00Z")
            )
            .unwrap_err(),
            WindowError::EndBeforeStart
        );
    }

    #[test]
    fn a_cron_window_opens_each_time_it_fires() {
        // Sundays 03:00 UTC for 2 h; 2024-05-05 is a Sunday.
        let w = MaintenanceWindow::cron(vec![], "0 3 * * SUN", Duration::from_secs(7200)).unwrap();
        assert!(w.covers("anything"));
        assert!(!w.is_open(at("2024-05-05T02:59:59Z")));
        assert!(w.is_open(at("2024-05-05T03:00:00Z")));
        assert!(w.is_open(at("2024-05-05T04:59:59Z")));
        assert!(!w.is_open(at("2024-05-05T05:00:00Z")));
        assert_eq!(
            w.next_change(at("2024-05-01T00:00:00Z")),
            Some(at("2024-05-05T03:00:00Z"))
        );
        assert_eq!(
            w.next_change(at("2024-05-05T04:00:00Z")),
            Some(at("2024-05-05T05:00:00Z"))
        );
        assert_eq!(
            w.next_change(at("2024-05-05T05:00:00Z")),
            Some(at("2024-05-12T03:00:00Z"))
        );
    }

    #[test]
    fn overlapping_cron_windows_are_one() {
        // Every hour for 90 minutes: always open once it started.
        let w = MaintenanceWindow::cron(vec![], "0 * * * *", Duration::from_secs(5400)).unwrap();
        assert!(w.is_open(at("2024-05-01T10:45:00Z")));
        let end = w.next_change(at("2024-05-01T10:45:00Z")).unwrap();
        assert!(end > at("2024-05-20T00:00:00Z"), "{end:?}");
    }

    #[test]
    fn bad_patterns_and_durations_are_refused() {
        let err = MaintenanceWindow::cron(vec![], "not cron", Duration::from_secs(60)).unwrap_err();
        assert!(
            err.to_string().starts_with("`cron` \"not cron\": "),
            "{err}"
        );
        assert_eq!(
            MaintenanceWindow::cron(vec![], "0 3 * * *", Duration::ZERO).unwrap_err(),
            WindowError::ZeroDuration
        );
        assert!(matches!(
            MaintenanceWindow::cron(vec![], "0 0 30 2 *", Duration::from_secs(60)),
            Err(WindowError::NeverFires(_) | WindowError::Cron { .. })
        ));
    }
}
