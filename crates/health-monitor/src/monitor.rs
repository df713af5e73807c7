//! The handle: the [`HealthMonitor`] trait, [`Monitor`] (a cheap, cloneable handle to
//! one monitor) and its [`MonitorBuilder`].
//!
//! The top of the monitor's modules. Imports run one way, down this list; no module
//! uses one above it:
//!
//! ```text
//! monitor    the handle: HealthMonitor, Monitor, MonitorBuilder
//! scope      the public Scope, a scheduler of monitors      (uses lifecycle)
//! check      check_once and the check task: Runner for Shared (uses lifecycle)
//! lifecycle  Shared: start, finish, complete, events       (uses snapshot)
//! snapshot   Snapshot, ResultCounts, the JSON form
//! scheduler, machine, last_seen, error: used by the above, use none of them
//! ```

use std::{
    fmt::Debug,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use health_types::{
    CheckResult, Clock, EventSink, HealthCheckConfig, HistorySink, MonitorJson, MonitorState,
    Probe, ProbeError, StateSink, Status, Url,
};
use tokio::{sync::watch, time::Instant};

use crate::{
    check::check_once,
    error::MonitorError,
    last_seen::LastSeenRegistry,
    lifecycle::{Parts, Shared},
    scope::Scope,
    snapshot::Snapshot,
};

/// The monitor API of SPEC §4, equivalent to the seed's `HealthMonitor` interface.
///
/// [`Monitor`] implements it; a proxy can hold monitors as `Arc<dyn HealthMonitor>`.
#[async_trait]
pub trait HealthMonitor: Send + Sync + Debug {
    /// Starts periodic checks under `scope`: the first check runs at once.
    ///
    /// A stopped monitor can be started again, with counters reset and status Starting;
    /// an outage already notified is kept, so its `down` is not sent again and its `up`
    /// reports the whole outage. A [restored](MonitorBuilder::restore) monitor starts
    /// from the restored state. Must be called inside a tokio runtime.
    fn start(&self, scope: &Scope) -> Result<(), MonitorError>;

    /// Stops the monitor: status Stopped, no event, a check in flight is dropped.
    fn finish(&self, reason: &str);

    /// Stops and starts again under the last scope, with counters reset and the outage
    /// kept (as [`start`](Self::start) after a stop).
    fn restart(&self) -> Result<(), MonitorError>;

    /// Replaces the URL atomically; the next check uses it. Invalid URLs are rejected.
    fn update_url(&self, url: Url) -> Result<(), MonitorError>;

    /// The URL being checked.
    fn url(&self) -> Arc<Url>;

    /// The config.
    fn config(&self) -> &HealthCheckConfig;

    /// The monitor's (service's) name.
    fn name(&self) -> &str;

    /// The current status.
    fn status(&self) -> Status;

    /// Time since the monitor started (zero while not running).
    fn uptime(&self) -> Duration;

    /// The latency of the last check.
    fn latency(&self) -> Duration;

    /// The detail of the last check.
    fn detail(&self) -> String;

    /// Runs one check now and returns its outcome; the monitor's state is untouched.
    async fn check_health(&self) -> Result<CheckResult, ProbeError>;

    /// One consistent view of the monitor's state (never torn).
    fn snapshot(&self) -> Arc<Snapshot>;

    /// A receiver that sees every snapshot published from now on.
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>>;
}

/// A health monitor: one target, one probe, one state machine.
///
/// Cheap to clone (all clones are the same monitor). Dropping every clone ends the
/// monitor at its next due time; call [`finish`](HealthMonitor::finish) to end it now.
#[derive(Clone, Debug)]
pub struct Monitor {
    shared: Arc<Shared>,
}

/// Builds a [`Monitor`]; see [`Monitor::builder`].
#[derive(Debug)]
pub struct MonitorBuilder {
    parts: Parts,
}

impl MonitorBuilder {
    /// The health-check config (default: [`HealthCheckConfig::default`]).
    #[must_use]
    pub fn config(mut self, config: HealthCheckConfig) -> Self {
        self.parts.config = Arc::new(config);
        self
    }

    /// A config shared with other monitors: many monitors built from one `[defaults]`
    /// table then hold one copy between them.
    #[must_use]
    pub fn shared_config(mut self, config: Arc<HealthCheckConfig>) -> Self {
        self.parts.config = config;
        self
    }

    /// Where `down`, `up` and `stopped` events go (default: nowhere).
    #[must_use]
    pub fn sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.parts.sink = Some(sink);
        self
    }

    /// Where the monitor's persisted state goes (default: nowhere): after each check that
    /// changed it, [`StateSink::record`] gets the new [`MonitorState`] and that check's
    /// events in one call, before the [`sink`](Self::sink) gets the same events.
    ///
    /// A change is one of status, the counters as far as they matter (capped at F, R and
    /// `max_errors`), `down_sent`, the outage's start, or an event; so a monitor in a
    /// steady state records nothing per check. `last_seen` alone is recorded at most once
    /// a minute, and on a stop (`finish`, `restart`, the scope cancelled): after a
    /// `kill -9` the restored Last Seen may be up to a minute old. A stop records no
    /// `stopped` status: the state stays the last check's, so the next process resumes.
    #[must_use]
    pub fn state_sink(mut self, sink: Arc<dyn StateSink>) -> Self {
        self.parts.state_sink = Some(sink);
        self
    }

    /// Where the monitor's history goes (default: nowhere; SPEC §9.2).
    ///
    /// [`HistorySink::observe`] gets every check but local ones (SPEC §9.3), and
    /// [`HistorySink::change`] every status change: to `starting` when a run starts (a
    /// restart or a restored monitor's first start included), each change a check makes
    /// with that check's detail, and to `stopped` when the run stops, whether by
    /// [`finish`](HealthMonitor::finish), its scope, or by itself after `max_errors`
    /// (when its snapshot still shows `error`). Each change starts from the status last
    /// reported. The calls are made from the check's task or the caller of
    /// `start`/`finish`, outside the monitor's locks, in the order the changes
    /// happened; a sink that panics is logged and the monitor goes on.
    #[must_use]
    pub fn history(mut self, sink: Arc<dyn HistorySink>) -> Self {
        self.parts.history = Some(sink);
        self
    }

    /// Resumes from `state`, persisted by an earlier process (default: a fresh monitor).
    ///
    /// Until its first check the monitor shows the restored status and counters, and
    /// its last-seen time; the first check still runs as soon as it starts. An outage
    /// whose `down` was sent is not notified again, and its `up` reports the whole
    /// outage from the persisted start. A monitor persisted as stopped (or that had
    /// stopped itself after `max_errors`) checks again from Starting, keeping its outage;
    /// see [`StateMachine::restore`](crate::StateMachine::restore) for every case.
    #[must_use]
    pub fn restore(mut self, state: MonitorState) -> Self {
        self.parts.restore = Some(state);
        self
    }

    /// The wall clock for time stamps (default: [`SystemClock`](health_types::SystemClock)).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.parts.clock = Some(clock);
        self
    }

    /// The last-seen registry (default: [`LastSeenRegistry::global`]).
    #[must_use]
    pub fn last_seen(mut self, registry: Arc<LastSeenRegistry>) -> Self {
        self.parts.last_seen = Some(registry);
        self
    }

    /// Validates the config and the URL and builds the monitor (not started).
    pub fn build(self) -> Result<Monitor, MonitorError> {
        self.parts.config.validate()?;
        self.parts.probe.validate_url(&self.parts.url)?;
        Ok(Monitor {
            shared: Arc::new(Shared::new(self.parts)),
        })
    }
}

impl Monitor {
    /// Starts building a monitor named `name` that checks `url` with `probe`.
    pub fn builder(name: impl Into<Arc<str>>, url: Url, probe: Arc<dyn Probe>) -> MonitorBuilder {
        MonitorBuilder {
            parts: Parts::new(name.into(), url, probe),
        }
    }

    /// Whether the monitor is scheduling checks.
    pub fn is_running(&self) -> bool {
        self.shared.snapshot.load().running
    }

    /// The latencies of this monitor's results since it was built (local ones left
    /// out), in [`LatencyHistogram::BOUNDS`](crate::LatencyHistogram::BOUNDS) buckets.
    pub fn latencies(&self) -> crate::LatencyHistogram {
        self.shared.latencies.read()
    }

    /// Wall-clock time of the last healthy result (kept across `update_url` and restarts).
    pub fn last_seen(&self) -> Option<SystemTime> {
        self.shared.snapshot.load().last_seen
    }

    /// The GoDoxy-compatible JSON form (SPEC §4).
    pub fn to_json(&self) -> MonitorJson {
        self.snapshot().to_json(&self.shared.config, Instant::now())
    }

    /// Runs the monitor's next check now and returns its result; if a check is already in
    /// flight, waits for that one instead (SPEC §9.3).
    ///
    /// The check is the monitor's own: it never runs alongside another check of this
    /// monitor, and callers that ask while one is in flight (scheduled, or asked for by
    /// another caller) share it, so N concurrent calls make one probe call. It runs in
    /// the monitor's scope like a scheduled check (taking one of its
    /// [`max_in_flight`](crate::SchedulerOptions::max_in_flight) slots, under the
    /// monitor's `timeout`), and its result feeds the state machine exactly as a
    /// scheduled check's does: counters, status, `down`/`up`/`stopped` events, persisted
    /// state. It takes the place of the check that was due: the next one is due one
    /// interval after this one began.
    ///
    /// The result is the one the monitor took in: a probe error comes back as its record
    /// ([`ProbeError::to_result`]: `healthy = false`, its kind, the latency the monitor
    /// measured), a late check as an unhealthy `timeout` result, a local one with kind
    /// `local` (which the state machine did not count).
    ///
    /// # Errors
    ///
    /// [`MonitorError::NotRunning`] when the monitor is not running (never started,
    /// stopped, stopped itself after `max_errors`, or its scope cancelled), or when it is
    /// stopped before the check ends. A restart during the check does not fail the call:
    /// it returns the restarted run's first check instead.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future abandons only the wait. The check goes on in the
    /// monitor's scope, its result is taken in, and other callers still get it.
    pub async fn check_now(&self) -> Result<CheckResult, MonitorError> {
        self.shared.check_now().await
    }

    /// Waits until the monitor is not running (stopped, finished or its scope cancelled).
    pub async fn stopped(&self) {
        let mut rx = self.subscribe();
        // The sender lives as long as the monitor, which `self` keeps alive.
        let _ = rx.wait_for(|snapshot| !snapshot.running).await;
    }
}

#[async_trait]
impl HealthMonitor for Monitor {
    fn start(&self, scope: &Scope) -> Result<(), MonitorError> {
        self.shared.start(scope.scheduler())
    }

    fn finish(&self, reason: &str) {
        self.shared.finish(reason);
    }

    fn restart(&self) -> Result<(), MonitorError> {
        self.shared.restart()
    }

    fn update_url(&self, url: Url) -> Result<(), MonitorError> {
        self.shared.update_url(url)
    }

    fn url(&self) -> Arc<Url> {
        self.shared.url()
    }

    fn config(&self) -> &HealthCheckConfig {
        &self.shared.config
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    fn status(&self) -> Status {
        self.shared.snapshot.load().status
    }

    fn uptime(&self) -> Duration {
        self.shared.snapshot.load().uptime(Instant::now())
    }

    fn latency(&self) -> Duration {
        self.shared.snapshot.load().latency
    }

    fn detail(&self) -> String {
        self.shared.snapshot.load().detail.clone()
    }

    async fn check_health(&self) -> Result<CheckResult, ProbeError> {
        let url = self.shared.url();
        check_once(&*self.shared.probe, &url, self.shared.config.timeout).await
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.subscribe()
    }
}
