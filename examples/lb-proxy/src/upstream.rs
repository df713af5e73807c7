//! An upstream: the origin requests go to, the monitor that says whether they may, and
//! the passive-signal counter fed by the proxy's own traffic.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};

use health_monitor::{HealthMonitor, Monitor};
use health_types::{ErrorChain, Url};
use hyper::Uri;
use tracing::{debug, info};

use crate::error::ProxyError;

/// One upstream: an origin (`http://host:port`) and the monitor that checks it.
///
/// The monitor is the caller's: the proxy only watches it and, on passive signals, asks
/// it for a check now. Its name names the upstream in logs and in
/// [`Proxy::in_rotation`](crate::Proxy::in_rotation).
#[derive(Clone, Debug)]
pub struct Upstream {
    origin: Uri,
    monitor: Monitor,
}

impl Upstream {
    /// An upstream that forwards to `origin`, an `http://host[:port]` URL with no path
    /// (or `/`), query, fragment or credentials; requests keep their own path and query.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Upstream`] when `origin` is not such a URL.
    pub fn try_new(origin: &Url, monitor: Monitor) -> Result<Self, ProxyError> {
        let invalid = |reason| ProxyError::Upstream {
            url: origin.to_string(),
            reason,
        };
        if origin.scheme() != "http" {
            return Err(invalid("only http:// origins are supported"));
        }
        if !origin.username().is_empty() || origin.password().is_some() {
            return Err(invalid("an origin carries no credentials"));
        }
        if origin.path() != "/" || origin.query().is_some() || origin.fragment().is_some() {
            return Err(invalid(
                "an origin has no path, query or fragment (requests keep their own)",
            ));
        }
        let host = origin.host_str().ok_or_else(|| invalid("no host"))?;
        let port = origin.port_or_known_default().unwrap_or(80);
        let origin = Uri::builder()
            .scheme("http")
            .authority(format!("{host}:{port}"))
            .path_and_query("/")
            .build()
            .map_err(|_| invalid("not a valid authority"))?;
        Ok(Upstream { origin, monitor })
    }

    /// The upstream's name: its monitor's.
    pub fn name(&self) -> &str {
        self.monitor.name()
    }

    /// The origin requests are forwarded to (`http://host:port/`).
    pub fn origin(&self) -> &Uri {
        &self.origin
    }

    /// The upstream's monitor.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }
}

/// An upstream as the proxy runs it: whether it is in rotation, and its passive signals.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) upstream: Upstream,
    /// Whether the monitor last said the upstream is good; written by its watcher task.
    pub(crate) good: AtomicBool,
    /// Consecutive failed exchanges since the last good one or the last passive check.
    failures: AtomicU32,
    /// Whether a passive check of this upstream is in flight.
    checking: Arc<AtomicBool>,
}

impl Member {
    pub(crate) fn new(upstream: Upstream) -> Self {
        let good = upstream.monitor.status().is_good();
        Member {
            upstream,
            good: AtomicBool::new(good),
            failures: AtomicU32::new(0),
            checking: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Notes an exchange that went well (an answer below 500).
    pub(crate) fn passed(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Notes a failed exchange (a `5xx`, a connect or transport error); at `threshold`
    /// in a row (0 = never) asks the monitor for a check now, unless one it asked for is
    /// still in flight. Counts the checks asked for in `checks`.
    pub(crate) fn failed(&self, threshold: u32, checks: &Arc<AtomicU64>) {
        if threshold == 0 {
            return;
        }
        let run = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if run < threshold || self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        // A new run of failures is needed for the next check: the one asked for now
        // answers for these.
        self.failures.store(0, Ordering::Relaxed);
        checks.fetch_add(1, Ordering::Relaxed);
        let monitor = self.upstream.monitor.clone();
        let checking = Arc::clone(&self.checking);
        info!(
            upstream = monitor.name(),
            failures = run,
            "passive signal: checking now"
        );
        // Bounded by the monitor's own timeout; a stopped monitor answers at once.
        tokio::spawn(async move {
            match monitor.check_now().await {
                Ok(result) => debug!(
                    upstream = monitor.name(),
                    healthy = result.healthy,
                    detail = %result.detail,
                    "passive check done"
                ),
                Err(err) => debug!(
                    upstream = monitor.name(),
                    error = %ErrorChain(&err),
                    "passive check not run"
                ),
            }
            checking.store(false, Ordering::Release);
        });
    }
}
