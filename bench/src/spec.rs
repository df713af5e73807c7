//! What the orchestrator asks of a child process and what the child answers, as JSON:
//! the upstream's addresses, one scenario to measure, and its measurements.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

/// The implementation a scenario measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Impl {
    /// Our monitors: one `Scope` (heap + timer + check slots), shared probes.
    Ours,
    /// A pooled hyper-util client (or bare connects) in a tight loop: the limit.
    Raw,
    /// One tokio task per target with its own interval, reqwest for HTTP.
    Naive,
    /// pingora-load-balancing's `HttpHealthCheck` / `TcpHealthCheck`.
    Pingora,
}

impl Impl {
    /// The name used in the table and the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::Raw => "raw",
            Impl::Naive => "naive",
            Impl::Pingora => "pingora",
        }
    }
}

/// What a check does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Proto {
    /// An HTTP/1.1 `GET` on a keep-alive connection (where the implementation pools).
    Http,
    /// A TCP connect, then close.
    Tcp,
}

impl Proto {
    /// The name used in the table and the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Tcp => "tcp",
        }
    }
}

/// The listening addresses of an upstream server process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Targets {
    /// HTTP/1.1 keep-alive listeners answering `200 ok` to any request.
    pub(crate) http: Vec<SocketAddr>,
    /// Listeners that accept a connection and close it.
    pub(crate) tcp: Vec<SocketAddr>,
}

/// One scenario, run by one child process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Spec {
    /// The scenario's name in the report (`http-10k-1s`).
    pub(crate) name: String,
    /// Which implementation runs.
    pub(crate) imp: Impl,
    /// HTTP or TCP checks.
    pub(crate) proto: Proto,
    /// Monitors (targets checked periodically), or loops in flight for [`Impl::Raw`].
    pub(crate) monitors: usize,
    /// The check interval (unused by [`Impl::Raw`]).
    pub(crate) interval_ms: u64,
    /// Time from starting the monitors to the steady window (and the RSS reading).
    pub(crate) warmup_ms: u64,
    /// The steady window over which CPU, checks and lag are measured; zero for a
    /// memory-only scenario.
    pub(crate) window_ms: u64,
    /// Pingora only: check every backend of a round at once (`parallel_health_check`).
    pub(crate) parallel: bool,
    /// The upstream addresses for `proto`; monitor `i` checks `targets[i % len]`.
    pub(crate) targets: Vec<SocketAddr>,
}

impl Spec {
    /// The check interval.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The target of monitor `i`.
    pub(crate) fn target(&self, i: usize) -> SocketAddr {
        self.targets[i % self.targets.len()]
    }

    /// The URL of monitor `i`: its target, and a path that names the monitor (so a
    /// shared probe can tell monitors apart; the upstream answers any path).
    pub(crate) fn url(&self, i: usize) -> String {
        format!("{}://{}/m/{i}", self.proto.name(), self.target(i))
    }
}

/// Schedule lag over the window: actual start of a check minus its due time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LagSummary {
    /// Median, in milliseconds.
    pub(crate) p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub(crate) p99_ms: f64,
    /// Largest, in milliseconds.
    pub(crate) max_ms: f64,
    /// Checks whose lag was recorded.
    pub(crate) samples: u64,
}

/// What one child measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Measured {
    /// Checks completed in the window.
    pub(crate) checks: u64,
    /// Of those, checks that did not find the target healthy.
    pub(crate) failures: u64,
    /// The window's length, in seconds.
    pub(crate) window_s: f64,
    /// Process CPU time (user + system) spent in the window, in seconds.
    pub(crate) cpu_s: f64,
    /// Resident memory before the monitors were created, in bytes.
    pub(crate) rss_base: u64,
    /// Resident memory at the end of the warm-up, in bytes.
    pub(crate) rss_after: u64,
    /// Schedule lag, where the implementation schedules.
    pub(crate) lag: Option<LagSummary>,
}

/// The detection-latency scenario: how long from the upstream stopping to `down`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DetectSpec {
    /// `interval` of every monitor.
    pub(crate) interval_ms: u64,
    /// `fast_interval` of the monitors that have one.
    pub(crate) fast_interval_ms: u64,
    /// `retries`: consecutive failures before `down`.
    pub(crate) retries: i64,
    /// Monitors per variant (with and without `fast_interval`).
    pub(crate) monitors: usize,
    /// When the upstream is stopped, after the monitors started.
    pub(crate) stop_after_ms: u64,
    /// The factor the parameters were scaled by (1 in the full run).
    pub(crate) scale: f64,
}

/// Detection latencies of one variant, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct DetectionStats {
    /// Monitors in the variant.
    pub(crate) monitors: usize,
    /// Monitors that reported `down` before the deadline.
    pub(crate) detected: usize,
    /// Mean latency.
    pub(crate) mean_ms: f64,
    /// Median latency.
    pub(crate) p50_ms: f64,
    /// Shortest latency.
    pub(crate) min_ms: f64,
    /// Longest latency.
    pub(crate) max_ms: f64,
}

/// The outcome of the detection scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Detection {
    /// `interval`, in milliseconds.
    pub(crate) interval_ms: u64,
    /// `fast_interval` of the fast variant, in milliseconds.
    pub(crate) fast_interval_ms: u64,
    /// `retries`.
    pub(crate) retries: i64,
    /// The factor the parameters were scaled by (1: not scaled).
    pub(crate) scale: f64,
    /// Monitors without `fast_interval`.
    pub(crate) without_fast_interval: DetectionStats,
    /// Monitors with `fast_interval`.
    pub(crate) with_fast_interval: DetectionStats,
    /// Mean with `fast_interval` ÷ mean without.
    pub(crate) ratio: f64,
}
