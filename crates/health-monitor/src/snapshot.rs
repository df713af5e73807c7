//! The snapshot: one consistent, immutable view of a monitor, and its JSON form.
//!
//! The bottom of the monitor's modules: it imports none of them (`lifecycle` publishes
//! snapshots, `monitor` hands them out).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::{
    CheckKind, ConfigJson, HealthCheckConfig, MonitorJson, Status, Url, Verdict, redacted,
};
use tokio::time::Instant;

/// One consistent view of a monitor, published after every change.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The monitor's name.
    pub name: Arc<str>,
    /// The URL being checked.
    pub url: Arc<Url>,
    /// The status.
    pub status: Status,
    /// Kind of the last result (`None` before the first).
    pub kind: Option<CheckKind>,
    /// Detail of the last result.
    pub detail: String,
    /// Latency of the last result.
    pub latency: Duration,
    /// Wall-clock time of the last healthy result.
    pub last_seen: Option<SystemTime>,
    /// Wall-clock time the current run started.
    pub started: Option<SystemTime>,
    /// Monotonic time the current run started.
    pub started_at: Option<Instant>,
    /// Consecutive unhealthy-or-error results.
    pub failures: u32,
    /// Consecutive error results.
    pub errors: u32,
    /// Consecutive healthy results.
    pub passes: u32,
    /// Results of the current run, by verdict.
    pub results: ResultCounts,
    /// Status changes in the current run (not counting start and stop).
    pub transitions: u64,
    /// Whether the monitor is scheduling checks.
    pub running: bool,
    /// When the next check is due (`None` while not running).
    pub next_check: Option<Instant>,
}

/// Results counted since a monitor's run started, by verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResultCounts {
    /// Healthy results.
    pub healthy: u64,
    /// Unhealthy results (timeouts included).
    pub unhealthy: u64,
    /// Error results (panics included).
    pub error: u64,
    /// Local results: checks that failed on our side (out of file descriptors, buffers
    /// or memory; no local address). Counted here and nowhere else: they move none of
    /// the state machine's counters (SPEC §9.3).
    pub local: u64,
}

impl ResultCounts {
    /// All results, local ones included.
    pub fn total(&self) -> u64 {
        self.healthy + self.unhealthy + self.error + self.local
    }

    /// Counts one result of `verdict`.
    pub(crate) fn count(&mut self, verdict: Verdict) {
        let counter = match verdict {
            Verdict::Healthy => &mut self.healthy,
            Verdict::Unhealthy => &mut self.unhealthy,
            Verdict::Error => &mut self.error,
            Verdict::Local => &mut self.local,
        };
        *counter += 1;
    }
}

impl Snapshot {
    /// The view of a monitor named `name` checking `url` that has not run: status
    /// Unknown, no result, counters at zero; `last_seen` is kept from earlier runs.
    pub(crate) fn fresh(name: Arc<str>, url: Arc<Url>, last_seen: Option<SystemTime>) -> Self {
        Snapshot {
            name,
            url,
            status: Status::Unknown,
            kind: None,
            detail: String::new(),
            latency: Duration::ZERO,
            last_seen,
            started: None,
            started_at: None,
            failures: 0,
            errors: 0,
            passes: 0,
            results: ResultCounts::default(),
            transitions: 0,
            running: false,
            next_check: None,
        }
    }

    /// Checks completed in the current run.
    pub fn checks(&self) -> u64 {
        self.results.total()
    }

    /// Time since the run started, as of `now` (zero while not running).
    pub fn uptime(&self, now: Instant) -> Duration {
        match (self.running, self.started_at) {
            (true, Some(at)) => now.saturating_duration_since(at),
            _ => Duration::ZERO,
        }
    }

    /// The GoDoxy-compatible JSON form (SPEC §4), with `config` and the uptime as of `now`.
    /// A password in the URL is shown as `***` (SPEC §9.3).
    pub fn to_json(&self, config: &HealthCheckConfig, now: Instant) -> MonitorJson {
        MonitorJson {
            name: self.name.to_string(),
            config: ConfigJson::from(config),
            started: self.started.map_or(0, unix_seconds),
            status: self.status,
            uptime: self.uptime(now).as_secs_f64(),
            latency: i64::try_from(self.latency.as_millis()).unwrap_or(i64::MAX),
            last_seen: self.last_seen.map_or(0, unix_seconds),
            detail: self.detail.clone(),
            url: redacted(&self.url).into_owned(),
            failures: self.failures,
        }
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
