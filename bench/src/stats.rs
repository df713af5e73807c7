//! Measurement inside a child process: checks and lag counted lock-free while a window
//! is open, process CPU time from `getrusage`, resident memory from `/proc/self/status`,
//! the upstream's counters of new connections as the window opens and closes, and the
//! warm-up/window sequence every implementation goes through.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use nix::sys::resource::{UsageWho, getrusage};
use tokio::time::Instant;

use crate::{
    server,
    spec::{LagSummary, Measured, Spec, UpstreamCounters},
};

/// Fine buckets: 10 µs wide, up to 20.48 ms.
const FINE_BUCKETS: u64 = 2048;
const FINE_WIDTH_US: u64 = 10;
/// Coarse buckets after those: 1 ms wide, up to about 4 s; the last one takes the rest.
const COARSE_BUCKETS: u64 = 4000;
const COARSE_WIDTH_US: u64 = 1000;

/// A fixed-size, lock-free histogram of durations, allocated up front so that it adds
/// nothing to the memory measured after the baseline.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        let len = usize::try_from(FINE_BUCKETS + COARSE_BUCKETS).unwrap_or(usize::MAX);
        Histogram {
            buckets: (0..len).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    fn index(ns: u64) -> usize {
        let us = ns / 1000;
        let fine_end = FINE_BUCKETS * FINE_WIDTH_US;
        let index = if us < fine_end {
            us / FINE_WIDTH_US
        } else {
            FINE_BUCKETS + ((us - fine_end) / COARSE_WIDTH_US).min(COARSE_BUCKETS - 1)
        };
        usize::try_from(index).unwrap_or(usize::MAX)
    }

    /// The middle of bucket `index`, in milliseconds.
    fn value_ms(index: usize) -> f64 {
        let index = index as u64;
        let (start_us, width_us) = if index < FINE_BUCKETS {
            (index * FINE_WIDTH_US, FINE_WIDTH_US)
        } else {
            (
                FINE_BUCKETS * FINE_WIDTH_US + (index - FINE_BUCKETS) * COARSE_WIDTH_US,
                COARSE_WIDTH_US,
            )
        };
        (start_us as f64 + width_us as f64 / 2.0) / 1000.0
    }

    fn record(&self, ns: u64) {
        if let Some(bucket) = self.buckets.get(Self::index(ns)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The value below which a fraction `q` of the samples fall (bucket middle).
    fn quantile_ms(&self, q: f64) -> f64 {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return 0.0;
        }
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                // A bucket's middle can lie past the largest sample; never report more.
                return Self::value_ms(index).min(self.max_ms());
            }
        }
        self.max_ms()
    }

    fn max_ms(&self) -> f64 {
        self.max_ns.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn summary(&self) -> Option<LagSummary> {
        let samples = self.count.load(Ordering::Relaxed);
        (samples > 0).then(|| LagSummary {
            p50_ms: self.quantile_ms(0.50),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.max_ms(),
            samples,
        })
    }
}

/// Counters shared by every check of one implementation; they count only while the
/// window is open.
#[derive(Debug)]
pub(crate) struct Stats {
    base: Instant,
    recording: AtomicBool,
    checks: AtomicU64,
    failures: AtomicU64,
    lag: Histogram,
}

impl Stats {
    /// Counters with the window closed.
    pub(crate) fn new() -> Self {
        Stats {
            base: Instant::now(),
            recording: AtomicBool::new(false),
            checks: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            lag: Histogram::new(),
        }
    }

    /// Nanoseconds from the process's base instant to `at` (a compact time stamp for
    /// atomics).
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// [`nanos`](Self::nanos) of now.
    pub(crate) fn now_nanos(&self) -> u64 {
        self.nanos(Instant::now())
    }

    /// Records the schedule lag of a check that is starting.
    pub(crate) fn lag_nanos(&self, lag: u64) {
        if self.recording.load(Ordering::Relaxed) {
            self.lag.record(lag);
        }
    }

    /// Counts a finished check.
    pub(crate) fn done(&self, healthy: bool) {
        if self.recording.load(Ordering::Relaxed) {
            self.checks.fetch_add(1, Ordering::Relaxed);
            if !healthy {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The warm-up, the memory reading and the window: called once the implementation's
    /// monitors are running, with the resident memory read before they were created.
    pub(crate) async fn measure(&self, spec: &Spec, rss_base: u64) -> Measured {
        tokio::time::sleep(Duration::from_millis(spec.warmup_ms)).await;
        let rss_after = rss_bytes();
        let window = Duration::from_millis(spec.window_ms);
        let (cpu, elapsed, connections) = if window.is_zero() {
            (Duration::ZERO, Duration::ZERO, None)
        } else {
            // Read outside the CPU window: the reading is the bench's work, not a check's.
            let before = upstream_counters(spec).await;
            self.recording.store(true, Ordering::SeqCst);
            let cpu_start = cpu_time();
            let start = Instant::now();
            tokio::time::sleep(window).await;
            let cpu_end = cpu_time();
            let elapsed = start.elapsed();
            self.recording.store(false, Ordering::SeqCst);
            let after = upstream_counters(spec).await;
            let connections = before
                .zip(after)
                .map(|(before, after)| after.since(&before).connections(spec.proto));
            (cpu_end.saturating_sub(cpu_start), elapsed, connections)
        };
        Measured {
            checks: self.checks.load(Ordering::SeqCst),
            failures: self.failures.load(Ordering::SeqCst),
            window_s: elapsed.as_secs_f64(),
            cpu_s: cpu.as_secs_f64(),
            rss_base,
            rss_after,
            lag: self.lag.summary(),
            connections,
        }
    }
}

/// The upstream's counters, where the scenario knows its control listener and it answers
/// (a missing figure is reported as such, not as a failed scenario).
pub(crate) async fn upstream_counters(spec: &Spec) -> Option<UpstreamCounters> {
    let control = spec.control?;
    match server::counters(control).await {
        Ok(counters) => Some(counters),
        Err(err) => {
            eprintln!("health-bench: {err:#}");
            None
        }
    }
}

/// User plus system CPU time of this process so far (every thread, ended ones too).
pub(crate) fn cpu_time() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let micros = |tv: nix::sys::time::TimeVal| {
                Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap_or(0))
                    + Duration::from_micros(u64::try_from(tv.tv_usec()).unwrap_or(0))
            };
            micros(usage.user_time()) + micros(usage.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Resident memory of this process (`VmRSS`), in bytes; zero where unreadable.
pub(crate) fn rss_bytes() -> u64 {
    rss_of("/proc/self/status")
}

/// Resident memory (`VmRSS`) from a `/proc/<pid>/status` file, in bytes; zero where
/// unreadable.
pub(crate) fn rss_of(status_path: &str) -> u64 {
    let status = std::fs::read_to_string(status_path).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Lets the allocator and the runtime settle, then reads the baseline memory.
pub(crate) async fn baseline() -> u64 {
    tokio::time::sleep(Duration::from_millis(200)).await;
    rss_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets_and_never_pass_the_maximum() {
        let histogram = Histogram::new();
        for us in 1..=100u64 {
            histogram.record(us * 1000);
        }
        histogram.record(3_000_000_000);
        let summary = histogram.summary().unwrap();
        assert_eq!(summary.samples, 101);
        assert!((summary.p50_ms - 0.055).abs() < 0.011, "{summary:?}");
        assert!((summary.p99_ms - 0.1).abs() < 0.011, "{summary:?}");
        assert!((summary.max_ms - 3000.0).abs() < 1e-9, "{summary:?}");
    }

    #[test]
    fn long_lags_land_in_coarse_buckets() {
        let histogram = Histogram::new();
        histogram.record(55_400_000);
        let p99 = histogram.quantile_ms(0.99);
        assert!((p99 - 55.4).abs() < 0.6, "{p99}");
    }
}
