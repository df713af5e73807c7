//! What the orchestrator asks of a child process and what the child answers, as JSON:
//! the upstream's addresses, one scenario to measure, and its measurements; and the
//! flapping the upstream does for the monitors that ask for it by their URL's path.

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
    /// Debian's `haproxy`: one backend of the same servers, `check inter 1s` (run by the
    /// orchestrator itself, see the `haproxy` module).
    Haproxy,
}

impl Impl {
    /// The name used in the table and the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::Raw => "raw",
            Impl::Naive => "naive",
            Impl::Pingora => "pingora",
            Impl::Haproxy => "haproxy",
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

/// How long one flap cycle of a flapping monitor's target lasts.
pub(crate) const FLAP_PERIOD_MS: u64 = 60_000;
/// How long, in each cycle, a flapping monitor's target answers `503`: long enough
/// (ten 1 s checks) for a monitor to go `down` and come back `up`.
pub(crate) const FLAP_DOWN_MS: u64 = 10_000;
/// The path prefix that makes the upstream flap a request's answer:
/// `/flap/{phase_ms}/{monitor}` answers `503` while `(now + phase) mod` [`FLAP_PERIOD_MS`]
/// is below [`FLAP_DOWN_MS`] (`now` counted from the upstream's start), `200` otherwise.
pub(crate) const FLAP_PREFIX: &str = "/flap/";

/// Whether the upstream answers a request for `path` with `503` at `elapsed_ms` after it
/// started: only a [`FLAP_PREFIX`] path, in the down part of its cycle.
pub(crate) fn flap_down(path: &str, elapsed_ms: u64) -> bool {
    let Some(rest) = path.strip_prefix(FLAP_PREFIX) else {
        return false;
    };
    let phase = rest
        .split('/')
        .next()
        .and_then(|phase| phase.parse::<u64>().ok())
        .unwrap_or(0);
    elapsed_ms.wrapping_add(phase) % FLAP_PERIOD_MS < FLAP_DOWN_MS
}

/// The listening addresses of an upstream server process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Targets {
    /// HTTP/1.1 keep-alive listeners answering `200 ok` to any request.
    pub(crate) http: Vec<SocketAddr>,
    /// Listeners that accept a connection and close it.
    pub(crate) tcp: Vec<SocketAddr>,
    /// The listener that answers each connection with the upstream's
    /// [`UpstreamCounters`] as one JSON line (its own connections are not counted).
    pub(crate) control: Option<SocketAddr>,
}

/// What the upstream counted since it started: connections accepted and requests
/// answered. Over a scenario's window, the connections it accepted for the scenario's
/// protocol are the new connections its checks opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UpstreamCounters {
    /// Connections accepted by the HTTP listeners.
    pub(crate) http_connections: u64,
    /// Requests the HTTP listeners answered.
    pub(crate) http_requests: u64,
    /// Connections accepted by the TCP listeners.
    pub(crate) tcp_connections: u64,
}

impl UpstreamCounters {
    /// What was counted between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &UpstreamCounters) -> UpstreamCounters {
        UpstreamCounters {
            http_connections: self
                .http_connections
                .saturating_sub(earlier.http_connections),
            http_requests: self.http_requests.saturating_sub(earlier.http_requests),
            tcp_connections: self.tcp_connections.saturating_sub(earlier.tcp_connections),
        }
    }

    /// Connections accepted by the listeners of `proto`.
    pub(crate) fn connections(&self, proto: Proto) -> u64 {
        match proto {
            Proto::Http => self.http_connections,
            Proto::Tcp => self.tcp_connections,
        }
    }

    /// What the upstream saw of `proto`'s checks: a request for HTTP, a connection for TCP.
    pub(crate) fn checks(&self, proto: Proto) -> u64 {
        match proto {
            Proto::Http => self.http_requests,
            Proto::Tcp => self.tcp_connections,
        }
    }
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
    /// The upstream's counters (see [`Targets::control`]), read as the window opens and
    /// closes.
    pub(crate) control: Option<SocketAddr>,
    /// Ours only: the monitors report to one `health_store::Store` on a temp file, as
    /// healthd wires it (router set, commit hook a no-op).
    pub(crate) store: bool,
    /// HTTP only: the percentage of monitors whose target flaps (answers `503` for
    /// [`FLAP_DOWN_MS`] of every [`FLAP_PERIOD_MS`], phases spread evenly over the
    /// cycle, so that the window sees the same share of changes whenever it opens).
    pub(crate) flapping_percent: usize,
}

impl Spec {
    /// The implementation's name in the table and the report: `ours+store` for ours
    /// with the store on.
    pub(crate) fn label(&self) -> &'static str {
        if self.store && self.imp == Impl::Ours {
            "ours+store"
        } else {
            self.imp.name()
        }
    }

    /// The check interval.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The target of monitor `i`.
    pub(crate) fn target(&self, i: usize) -> SocketAddr {
        self.targets[i % self.targets.len()]
    }

    /// The URL of monitor `i`: its target, and a path that ends with the monitor's
    /// number (so a shared probe can tell monitors apart). The upstream answers `200` to
    /// any path but a flapping monitor's (see [`FLAP_PREFIX`]).
    pub(crate) fn url(&self, i: usize) -> String {
        match self.flap_phase_ms(i) {
            Some(phase) => format!(
                "{}://{}{FLAP_PREFIX}{phase}/{i}",
                self.proto.name(),
                self.target(i)
            ),
            None => self.steady_url(i),
        }
    }

    /// Monitor `i`'s URL as if it did not flap: its target always answers `200` there
    /// (for a warm-up check that must find the upstream healthy).
    pub(crate) fn steady_url(&self, i: usize) -> String {
        format!("{}://{}/m/{i}", self.proto.name(), self.target(i))
    }

    /// Monitor `i`'s phase in the flap cycle, if it flaps: every `100 / percent`-th
    /// monitor does, the `k`-th of those `k / flapping` of a cycle ahead, so that the
    /// cycles start evenly spread over the period.
    pub(crate) fn flap_phase_ms(&self, i: usize) -> Option<u64> {
        if self.flapping_percent == 0 || self.proto != Proto::Http {
            return None;
        }
        let every = (100 / self.flapping_percent).max(1);
        if !i.is_multiple_of(every) {
            return None;
        }
        let flapping = self.monitors.div_ceil(every).max(1) as u64;
        Some((i / every) as u64 * FLAP_PERIOD_MS / flapping)
    }

    /// Monitors whose target flaps.
    pub(crate) fn flapping(&self) -> usize {
        (0..self.monitors)
            .filter(|&i| self.flap_phase_ms(i).is_some())
            .count()
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
    /// New connections the upstream accepted for the scenario's protocol in the window
    /// (`None` where its counters could not be read).
    pub(crate) connections: Option<u64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(monitors: usize, flapping_percent: usize) -> Spec {
        Spec {
            name: "http-flap".to_owned(),
            imp: Impl::Ours,
            proto: Proto::Http,
            monitors,
            interval_ms: 1000,
            warmup_ms: 1,
            window_ms: 1,
            parallel: false,
            targets: vec![SocketAddr::from(([127, 0, 0, 2], 8080))],
            control: None,
            store: false,
            flapping_percent,
        }
    }

    #[test]
    fn a_share_of_monitors_flaps_with_phases_spread_over_the_cycle() {
        let spec = spec(10_000, 2);
        assert_eq!(spec.flapping(), 200);
        assert_eq!(spec.url(1), "http://127.0.0.2:8080/m/1");
        assert_eq!(spec.url(0), "http://127.0.0.2:8080/flap/0/0");
        assert_eq!(spec.steady_url(0), "http://127.0.0.2:8080/m/0");
        assert_eq!(spec.url(50), "http://127.0.0.2:8080/flap/300/50");
        assert_eq!(spec.flap_phase_ms(9_950), Some(59_700));
        // At any moment the same share of them is down: a sixth (10 s of 60).
        for elapsed_ms in [0, 12_345, 59_999, 3_600_000] {
            let down = (0..spec.monitors)
                .filter(|&i| {
                    let url = spec.url(i);
                    flap_down(&url["http://127.0.0.2:8080".len()..], elapsed_ms)
                })
                .count();
            assert!((33..=34).contains(&down), "{down} down at {elapsed_ms} ms");
        }
        assert_eq!(self::spec(10_000, 0).flapping(), 0);
    }

    #[test]
    fn only_a_flap_path_answers_503_and_only_in_its_down_part() {
        assert!(flap_down("/flap/0/7", 0));
        assert!(flap_down("/flap/0/7", FLAP_DOWN_MS - 1));
        assert!(!flap_down("/flap/0/7", FLAP_DOWN_MS));
        assert!(flap_down("/flap/1000/7", FLAP_PERIOD_MS - 1000));
        assert!(!flap_down("/m/7", 0));
        assert!(!flap_down("/", 0));
    }
}
