//! The snapshot: one consistent, immutable view of a monitor, and its JSON form.
//!
//! The bottom of the monitor's modules: it imports none of them (`lifecycle` publishes
//! snapshots, `monitor` hands them out).

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::{
    CertInfo, CheckKind, ConfigJson, HealthCheckConfig, MonitorJson, Phases, Status, Url, Verdict,
    redacted,
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
    /// The last measured value of each phase (SPEC §9.4): a check that did not go
    /// through a phase (a reused connection has only `first_byte`) leaves that phase's
    /// last value, so a phase once measured stays shown (and its metric series stays
    /// alive) instead of coming and going with connection reuse.
    pub phases: PhaseTimes,
    /// The peer certificate the last TLS check saw; kept while later results (a
    /// refused connection, say) show none, so an expiry stays visible in an outage.
    pub cert: Option<Arc<CertInfo>>,
    /// The HTTP status code of the last result; `None` when it had no HTTP answer.
    pub status_code: Option<u16>,
    /// Wall-clock time of the last healthy result.
    pub last_seen: Option<SystemTime>,
    /// Wall-clock time the last check ended; `None` before the monitor's first check
    /// (kept across restarts). A local result (SPEC §9.3) shows nothing, so it does not
    /// move this either.
    pub last_check: Option<SystemTime>,
    /// Wall-clock start of the current outage, while one is going on: from the first
    /// failure after a healthy period until the status is Healthy again. Kept across
    /// restarts and restored with the persisted state.
    pub outage_start: Option<SystemTime>,
    /// Why the monitor stopped, while it is not running after a run (`None` before the
    /// first start and while running).
    pub stop_cause: Option<StopCause>,
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

/// Why a monitor stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// [`finish`](crate::HealthMonitor::finish) was called with this reason.
    Finished(String),
    /// Its [`Scope`](crate::Scope) was cancelled or shut down.
    Scope,
    /// It stopped itself after `errors` consecutive error results (`max_errors`, SPEC §3).
    MaxErrors {
        /// The consecutive errors.
        errors: u32,
        /// The detail of the last one.
        detail: String,
    },
}

impl fmt::Display for StopCause {
    /// `stopped: <reason>`, `stopped: its scope was shut down`, or `stopped itself after
    /// <n> errors in a row: <detail>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopCause::Finished(reason) => write!(f, "stopped: {reason}"),
            StopCause::Scope => f.write_str("stopped: its scope was shut down"),
            StopCause::MaxErrors { errors, detail } => {
                write!(f, "stopped itself after {errors} errors in a row: {detail}")
            }
        }
    }
}

/// The latencies of a monitor's results (local ones excepted) in fixed buckets, as
/// [`Monitor::latencies`](crate::Monitor::latencies) reads them; `/metrics` turns it
/// into a Prometheus histogram.
///
/// Kept beside the snapshot, not in it (a [`LatencyCounter`] of atomics): a snapshot is
/// copied on every check and held for every monitor, and 100 000 monitors should not
/// pay 100 bytes each for a histogram twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Results per bucket: `counts[i]` had a latency in `(BOUNDS[i-1], BOUNDS[i]]`; the
    /// last entry counts those above every bound. Read through
    /// [`cumulative`](Self::cumulative), so the buckets can change without breaking users.
    counts: [u64; LatencyHistogram::BOUNDS.len() + 1],
    /// The sum of all latencies counted.
    pub sum: Duration,
}

impl LatencyHistogram {
    /// The upper bounds of the buckets, in seconds (Prometheus' default buckets).
    pub const BOUNDS: [f64; 11] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    /// Counts one latency.
    pub fn observe(&mut self, latency: Duration) {
        self.counts[bucket_of(latency)] += 1;
        self.sum = self.sum.saturating_add(latency);
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Cumulative counts per upper bound, `+Inf` (as `f64::INFINITY`) last: the
    /// `_bucket{le}` series of a Prometheus histogram.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        LatencyHistogram::BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().scan(0, |total, n| {
                *total += n;
                Some(*total)
            }))
    }
}

/// The last measured value of each phase of a monitor's checks, in whole microseconds
/// (16 bytes where [`Phases`] takes 64: every snapshot holds one, and a snapshot is
/// copied on every check). A phase over `u32::MAX - 1` µs (71 minutes) is held there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseTimes([u32; 4]);

impl Default for PhaseTimes {
    /// No phase measured.
    fn default() -> Self {
        PhaseTimes([PhaseTimes::NONE; 4])
    }
}

impl PhaseTimes {
    const NONE: u32 = u32::MAX;

    /// The phases, in [`Phases`]' form.
    pub fn get(&self) -> Phases {
        let [dns, connect, tls, first_byte] = self
            .0
            .map(|us| (us != PhaseTimes::NONE).then(|| Duration::from_micros(u64::from(us))));
        Phases {
            dns,
            connect,
            tls,
            first_byte,
        }
    }

    /// Takes each phase `new` measured, keeping the others' last values.
    pub fn merge(&mut self, new: &Phases) {
        for (slot, value) in self
            .0
            .iter_mut()
            .zip([new.dns, new.connect, new.tls, new.first_byte])
        {
            if let Some(took) = value {
                *slot = u32::try_from(took.as_micros())
                    .unwrap_or(u32::MAX)
                    .min(PhaseTimes::NONE - 1);
            }
        }
    }
}

/// The bucket of [`LatencyHistogram::BOUNDS`] a latency falls in (the last: above all).
fn bucket_of(latency: Duration) -> usize {
    let seconds = latency.as_secs_f64();
    LatencyHistogram::BOUNDS
        .iter()
        .position(|&bound| seconds <= bound)
        .unwrap_or(LatencyHistogram::BOUNDS.len())
}

/// A monitor's latency histogram as counters that checks add to without a lock: 56
/// bytes a monitor, one relaxed add per check for the bucket and one for the sum.
#[derive(Debug, Default)]
pub(crate) struct LatencyCounter {
    counts: [AtomicU32; LatencyHistogram::BOUNDS.len() + 1],
    /// Nanoseconds, saturating at `u64::MAX` (584 years).
    sum: AtomicU64,
}

impl LatencyCounter {
    /// Counts one latency.
    pub(crate) fn observe(&self, latency: Duration) {
        self.counts[bucket_of(latency)].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always answers Some.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(sum.saturating_add(nanos))
            });
    }

    /// The counts now. Read bucket by bucket while checks may add: a scrape may see a
    /// check in one bucket and not yet in the sum, never a count going down.
    pub(crate) fn read(&self) -> LatencyHistogram {
        let mut histogram = LatencyHistogram {
            sum: Duration::from_nanos(self.sum.load(Ordering::Relaxed)),
            ..LatencyHistogram::default()
        };
        for (count, counter) in histogram.counts.iter_mut().zip(&self.counts) {
            *count = u64::from(counter.load(Ordering::Relaxed));
        }
        histogram
    }
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
            phases: PhaseTimes::default(),
            cert: None,
            status_code: None,
            last_seen,
            last_check: None,
            outage_start: None,
            stop_cause: None,
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

    /// Whether the monitor is down: its status is Unhealthy or Error.
    pub fn is_down(&self) -> bool {
        self.status.is_down()
    }

    /// When the monitor went down, while it is [down](Self::is_down): the start of its
    /// outage (its first failure).
    pub fn down_since(&self) -> Option<SystemTime> {
        self.outage_start.filter(|_| self.is_down())
    }

    /// The GoDoxy-compatible JSON form (SPEC §4), with `config` and the uptime as of `now`.
    /// A password in the URL is shown as `***` (SPEC §9.3). Of SPEC §9.2's keys it fills
    /// `downSince` and `lastCheck`; the uptimes, which only history knows, are `None`.
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
            uptime_24h: None,
            uptime_7d: None,
            uptime_30d: None,
            down_since: self.down_since().map_or(0, unix_seconds),
            last_check: self.last_check.map_or(0, unix_seconds),
            phases: self
                .phases
                .get()
                .iter()
                .map(|(name, took)| (name.to_owned(), took.as_secs_f64() * 1000.0))
                .collect(),
            cert_expiry: self.cert.as_ref().map_or(0, |cert| cert.not_after),
            maintenance: false,
        }
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_not_measured_keeps_its_last_value() {
        let ms = Duration::from_millis;
        let mut shown = PhaseTimes::default();
        assert!(shown.get().is_empty());
        shown.merge(&Phases {
            dns: Some(ms(1)),
            connect: Some(ms(2)),
            tls: Some(ms(3)),
            first_byte: Some(ms(4)),
        });
        // A check on a reused connection measures only its first byte.
        shown.merge(&Phases {
            first_byte: Some(ms(9)),
            ..Phases::default()
        });
        assert_eq!(
            shown.get(),
            Phases {
                dns: Some(ms(1)),
                connect: Some(ms(2)),
                tls: Some(ms(3)),
                first_byte: Some(ms(9)),
            }
        );
        // Microseconds kept; a phase past 71 minutes is held at the largest.
        shown.merge(&Phases {
            dns: Some(Duration::from_nanos(1_500)),
            connect: Some(Duration::from_secs(365 * 86_400)),
            ..Phases::default()
        });
        assert_eq!(shown.get().dns, Some(Duration::from_micros(1)));
        assert_eq!(
            shown.get().connect,
            Some(Duration::from_micros(u64::from(u32::MAX - 1)))
        );
    }

    #[test]
    fn latencies_fall_in_their_buckets_and_read_back_cumulatively() {
        let counter = LatencyCounter::default();
        for ms in [1, 5, 6, 300, 20_000] {
            counter.observe(Duration::from_millis(ms));
        }
        // A latency no u64 of nanoseconds holds saturates the sum.
        counter.observe(Duration::MAX);
        let histogram = counter.read();
        assert_eq!(histogram.count(), 6);
        assert_eq!(histogram.sum, Duration::from_nanos(u64::MAX));
        let cumulative: Vec<(f64, u64)> = histogram.cumulative().collect();
        assert_eq!(cumulative.len(), LatencyHistogram::BOUNDS.len() + 1);
        // le 0.005 holds 1 ms and 5 ms; le 0.01 adds 6 ms; le 0.5 adds 300 ms; +Inf the rest.
        assert_eq!(cumulative[0], (0.005, 2));
        assert_eq!(cumulative[1], (0.01, 3));
        assert_eq!(cumulative[5], (0.25, 3));
        assert_eq!(cumulative[6], (0.5, 4));
        assert_eq!(cumulative[10], (10.0, 4));
        assert_eq!(cumulative[11], (f64::INFINITY, 6));
        let mut plain = LatencyHistogram::default();
        for ms in [1, 5, 6, 300, 20_000] {
            plain.observe(Duration::from_millis(ms));
        }
        assert_eq!(plain.count(), 5);
        assert_eq!(plain.sum, Duration::from_millis(20_312));
    }
}
