//! What history keeps (SPEC §9.2): every status change, and every check's latency
//! rolled up per minute (48 h) and per hour (`[storage] retention`), from which uptime
//! is computed exactly.
//!
//! Two ports: a monitor reports to a [`HistorySink`]; the daemon's API and status page
//! read through a [`HistoryReader`]. `health-store` implements both on its embedded
//! file; `health-monitor` reports; only `healthd` wires them together.
//!
//! Uptime (SPEC §9.2) is the time in `healthy` or `napping` over the time observed, where
//! time in `starting`, `stopped` or `unknown` (and any time the process was not running)
//! counts on neither side; `unhealthy` and `error` count as down.

use std::{
    collections::HashMap,
    fmt::Debug,
    time::{Duration, SystemTime},
};

use crate::Status;

/// One check's outcome, as history keeps it. Local failures (SPEC §9.3) are not
/// reported: they say nothing about the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// When the check ended (wall clock).
    pub time: SystemTime,
    /// How long it took.
    pub latency: Duration,
    /// It was not healthy (unhealthy or error).
    pub failed: bool,
}

/// One status change of a monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// When it changed (wall clock).
    pub time: SystemTime,
    /// The status before.
    pub from: Status,
    /// The status after.
    pub to: Status,
    /// The detail of the result that caused it (empty for a start or a stop).
    pub detail: String,
}

/// Receives what history keeps, as it happens. Called from the check's task (or from
/// `start`/`stop`): it must not block (queue, then commit elsewhere).
pub trait HistorySink: Send + Sync + Debug {
    /// A check of `monitor` ended.
    fn observe(&self, monitor: &str, observation: &Observation);

    /// `monitor`'s status changed, including to `starting` when it starts and to
    /// `stopped` when it stops.
    fn change(&self, monitor: &str, change: &StatusChange);
}

/// The checks of one minute or one hour of a monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyBucket {
    /// The bucket's start (a whole minute or hour, unix time).
    pub time: SystemTime,
    /// Its length: one minute or one hour.
    pub step: Duration,
    /// Checks in it.
    pub count: u64,
    /// Their latencies, summed.
    pub sum: Duration,
    /// The shortest latency.
    pub min: Duration,
    /// The longest latency.
    pub max: Duration,
    /// Checks that failed.
    pub failures: u64,
}

impl LatencyBucket {
    /// The mean latency (`None` for an empty bucket).
    pub fn average(&self) -> Option<Duration> {
        (self.count > 0).then(|| {
            let nanos = self.sum.as_nanos() / u128::from(self.count);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        })
    }
}

/// A monitor's history over a span (`GET /api/v1/monitors/{name}/history`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistorySpan {
    /// The status changes in the span, oldest first.
    pub changes: Vec<StatusChange>,
    /// The latency buckets overlapping the span, oldest first, the current open one
    /// included: minutes when the whole span lies within the last 48 h, else hours.
    pub latency: Vec<LatencyBucket>,
}

/// One UTC day of a monitor, for the status page's 90-day bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DaySummary {
    /// The day's start (UTC midnight).
    pub day: SystemTime,
    /// Uptime that day (`None`: nothing observed).
    pub uptime: Option<f64>,
    /// Time observed down (`unhealthy` or `error`) that day.
    pub down: Duration,
    /// Checks that day.
    pub checks: u64,
    /// Checks that failed that day.
    pub failures: u64,
    /// Mean latency that day (`None`: no checks).
    pub average: Option<Duration>,
}

/// What the API and the status page show of one monitor's history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistorySummary {
    /// Uptime over the last 24 hours (`None`: nothing observed).
    pub uptime_24h: Option<f64>,
    /// Uptime over the last 7 days.
    pub uptime_7d: Option<f64>,
    /// Uptime over the last 30 days.
    pub uptime_30d: Option<f64>,
    /// The last [`HistorySummary::DAYS`] UTC days, oldest first, today last.
    pub days: Vec<DaySummary>,
    /// The last 24 hours of latency, one bucket an hour, oldest first, the current hour
    /// last (hours without checks are absent).
    pub latency_24h: Vec<LatencyBucket>,
    /// The last hour of latency, one bucket a minute, oldest first, the current minute
    /// last (minutes without checks are absent): what a young monitor's chart draws
    /// while it has too few hours for a 24-hour line. Empty once `latency_24h` has
    /// [`HistorySummary::FEW_HOURS`] buckets or more (it would not be drawn, and 10 000
    /// monitors would hold 40 MB of it).
    pub latency_1h: Vec<LatencyBucket>,
}

impl HistorySummary {
    /// Days in [`HistorySummary::days`].
    pub const DAYS: u32 = 90;
    /// Below this many hours in `latency_24h`, `latency_1h` is filled.
    pub const FEW_HOURS: usize = 3;
}

/// History could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("history: {0}")]
pub struct HistoryError(pub String);

/// Reads history back. Synchronous and possibly slow (a database): call it from a
/// blocking thread.
pub trait HistoryReader: Send + Sync + Debug {
    /// `monitor`'s changes and latency in `since..until`, the still-open minute or hour
    /// included.
    fn history(
        &self,
        monitor: &str,
        since: SystemTime,
        until: SystemTime,
    ) -> Result<HistorySpan, HistoryError>;

    /// The summary of every monitor with any history, as of `now`.
    fn summaries(&self, now: SystemTime) -> Result<HashMap<String, HistorySummary>, HistoryError>;
}
