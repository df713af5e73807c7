//! The monitor: lifecycle (start, finish, restart), the check path, snapshots and events.

use std::{
    any::Any,
    fmt::Debug,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use futures_util::FutureExt;
use health_types::{
    CheckKind, CheckResult, Clock, ConfigJson, Event, EventKind, EventSink, HealthCheckConfig,
    MonitorJson, Probe, ProbeError, Status, SystemClock, Url, Verdict,
};
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, watch},
    time::Instant,
};

use crate::{
    LastSeenRegistry, MonitorError, StateMachine,
    last_seen::Slot,
    machine::Transition,
    scope::{Job, Scope},
};

/// The monitor API of SPEC §4, equivalent to the seed's `HealthMonitor` interface.
///
/// [`Monitor`] implements it; a proxy can hold monitors as `Arc<dyn HealthMonitor>`.
#[async_trait]
pub trait HealthMonitor: Send + Sync + Debug {
    /// Starts periodic checks under `scope`: the first check runs at once.
    ///
    /// A stopped monitor can be started again, with counters reset and status Starting.
    /// Must be called inside a tokio runtime.
    fn start(&self, scope: &Scope) -> Result<(), MonitorError>;

    /// Stops the monitor: status Stopped, no event, a check in flight is dropped.
    fn finish(&self, reason: &str);

    /// Stops and starts again under the last scope, with counters reset.
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
}

impl ResultCounts {
    /// All results.
    pub fn total(&self) -> u64 {
        self.healthy + self.unhealthy + self.error
    }

    fn count(&mut self, verdict: Verdict) {
        let counter = match verdict {
            Verdict::Healthy => &mut self.healthy,
            Verdict::Unhealthy => &mut self.unhealthy,
            Verdict::Error => &mut self.error,
        };
        *counter += 1;
    }
}

impl Snapshot {
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
            url: self.url.to_string(),
            failures: self.failures,
        }
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
    name: Arc<str>,
    url: Url,
    probe: Arc<dyn Probe>,
    config: Arc<HealthCheckConfig>,
    sink: Option<Arc<dyn EventSink>>,
    clock: Arc<dyn Clock>,
    last_seen: Option<Arc<LastSeenRegistry>>,
}

impl MonitorBuilder {
    /// The health-check config (default: [`HealthCheckConfig::default`]).
    #[must_use]
    pub fn config(mut self, config: HealthCheckConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// A config shared with other monitors: many monitors built from one `[defaults]`
    /// table then hold one copy between them.
    #[must_use]
    pub fn shared_config(mut self, config: Arc<HealthCheckConfig>) -> Self {
        self.config = config;
        self
    }

    /// Where `down`, `up` and `stopped` events go (default: nowhere).
    #[must_use]
    pub fn sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The wall clock for time stamps (default: [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The last-seen registry (default: [`LastSeenRegistry::global`]).
    #[must_use]
    pub fn last_seen(mut self, registry: Arc<LastSeenRegistry>) -> Self {
        self.last_seen = Some(registry);
        self
    }

    /// Validates the config and the URL and builds the monitor (not started).
    pub fn build(self) -> Result<Monitor, MonitorError> {
        self.config.validate()?;
        self.probe.validate_url(&self.url)?;
        let url = Arc::new(self.url);
        let last_seen = self.last_seen.unwrap_or_else(LastSeenRegistry::global);
        let seen = last_seen.slot(&self.name);
        let snapshot = Snapshot {
            name: self.name.clone(),
            url: url.clone(),
            status: Status::Unknown,
            kind: None,
            detail: String::new(),
            latency: Duration::ZERO,
            last_seen: last_seen.get(&self.name),
            started: None,
            started_at: None,
            failures: 0,
            errors: 0,
            passes: 0,
            results: ResultCounts::default(),
            transitions: 0,
            running: false,
            next_check: None,
        };
        Ok(Monitor {
            shared: Arc::new(Shared {
                run: Mutex::new(RunState {
                    machine: StateMachine::new(&self.config),
                    scope: None,
                    jitter_pending: false,
                }),
                name: self.name,
                config: self.config,
                url: ArcSwap::new(url),
                probe: self.probe,
                sink: self.sink,
                clock: self.clock,
                seen,
                last_seen,
                snapshot: ArcSwap::from_pointee(snapshot),
                watch: OnceLock::new(),
                stop: Notify::new(),
                generation: AtomicU64::new(0),
            }),
        })
    }
}

impl Monitor {
    /// Starts building a monitor named `name` that checks `url` with `probe`.
    pub fn builder(name: impl Into<Arc<str>>, url: Url, probe: Arc<dyn Probe>) -> MonitorBuilder {
        MonitorBuilder {
            name: name.into(),
            url,
            probe,
            config: Arc::default(),
            sink: None,
            clock: Arc::new(SystemClock),
            last_seen: None,
        }
    }

    /// Whether the monitor is scheduling checks.
    pub fn is_running(&self) -> bool {
        self.shared.snapshot.load().running
    }

    /// Wall-clock time of the last healthy result (kept across `update_url` and restarts).
    pub fn last_seen(&self) -> Option<SystemTime> {
        self.shared.snapshot.load().last_seen
    }

    /// The GoDoxy-compatible JSON form (SPEC §4).
    pub fn to_json(&self) -> MonitorJson {
        self.snapshot().to_json(&self.shared.config, Instant::now())
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
        self.shared.start(scope)
    }

    fn finish(&self, reason: &str) {
        self.shared.finish(reason);
    }

    fn restart(&self) -> Result<(), MonitorError> {
        let scope = self
            .shared
            .lock_run()
            .scope
            .clone()
            .ok_or_else(|| MonitorError::NotStarted(self.shared.name.to_string()))?;
        self.shared.finish("restart");
        self.shared.start(&scope)
    }

    fn update_url(&self, url: Url) -> Result<(), MonitorError> {
        self.shared.probe.validate_url(&url)?;
        let url = Arc::new(url);
        let _run = self.shared.lock_run();
        self.shared.url.store(url.clone());
        self.shared.publish(|s| s.url = url);
        Ok(())
    }

    fn url(&self) -> Arc<Url> {
        self.shared.url.load_full()
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
        let url = self.shared.url.load_full();
        check_once(&*self.shared.probe, &url, self.shared.config.timeout).await
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared
            .watch
            .get_or_init(|| watch::Sender::new(self.shared.snapshot.load_full()))
            .subscribe()
    }
}

/// Everything of one monitor, shared by its handles and its scheduled checks.
#[derive(Debug)]
pub(crate) struct Shared {
    name: Arc<str>,
    config: Arc<HealthCheckConfig>,
    url: ArcSwap<Url>,
    probe: Arc<dyn Probe>,
    sink: Option<Arc<dyn EventSink>>,
    clock: Arc<dyn Clock>,
    last_seen: Arc<LastSeenRegistry>,
    /// This monitor's slot in `last_seen`: a healthy result is one atomic store.
    seen: Arc<Slot>,
    snapshot: ArcSwap<Snapshot>,
    /// Created on the first `subscribe`, so that monitors nobody watches pay nothing.
    watch: OnceLock<watch::Sender<Arc<Snapshot>>>,
    /// Wakes the check in flight when the monitor is finished or restarted.
    stop: Notify,
    /// Bumped on every start and stop; scheduled checks of an older run are skipped.
    generation: AtomicU64,
    /// Written only by the one check in flight and by lifecycle calls; never held
    /// across an await.
    run: Mutex<RunState>,
}

#[derive(Debug)]
struct RunState {
    machine: StateMachine,
    scope: Option<Scope>,
    jitter_pending: bool,
}

impl Shared {
    fn lock_run(&self) -> MutexGuard<'_, RunState> {
        // A panic never happens while the lock is held (no foreign code runs under it),
        // but if one did the state is still consistent: take it back.
        self.run
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes a new snapshot made from the current one. Call with the run lock held,
    /// so that snapshots are published in the order the changes happened.
    fn publish(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut next = Snapshot::clone(&self.snapshot.load());
        change(&mut next);
        self.store(next);
    }

    /// As [`publish`](Self::publish), with a new detail moved in rather than the current
    /// one copied and then overwritten (a check's result: one allocation less).
    fn publish_result(&self, detail: String, change: impl FnOnce(&mut Snapshot)) {
        let mut next = {
            let current = self.snapshot.load();
            Snapshot {
                name: current.name.clone(),
                url: current.url.clone(),
                detail,
                ..**current
            }
        };
        change(&mut next);
        self.store(next);
    }

    fn store(&self, next: Snapshot) {
        let next = Arc::new(next);
        self.snapshot.store(next.clone());
        if let Some(tx) = self.watch.get() {
            tx.send_replace(next);
        }
    }

    fn start(self: &Arc<Self>, scope: &Scope) -> Result<(), MonitorError> {
        if scope.is_cancelled() {
            return Err(MonitorError::ScopeClosed(self.name.to_string()));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(MonitorError::NoRuntime(self.name.to_string()));
        }
        let now = Instant::now();
        let generation = {
            let mut run = self.lock_run();
            if self.snapshot.load().running {
                return Err(MonitorError::AlreadyRunning(self.name.to_string()));
            }
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            run.machine = StateMachine::new(&self.config);
            run.scope = Some(scope.clone());
            run.jitter_pending = !self.config.effective_jitter().is_zero();
            let wall = self.clock.now();
            let last_seen = self.last_seen.get(&self.name);
            self.publish(|s| {
                s.status = Status::Starting;
                s.kind = None;
                s.detail.clear();
                s.latency = Duration::ZERO;
                s.last_seen = last_seen.or(s.last_seen);
                s.started = Some(wall);
                s.started_at = Some(now);
                s.failures = 0;
                s.errors = 0;
                s.passes = 0;
                s.results = ResultCounts::default();
                s.transitions = 0;
                s.running = true;
                s.next_check = Some(now);
            });
            generation
        };
        tracing::debug!(monitor = %self.name, url = %self.url.load(), "monitor started");
        if scope
            .schedule(now, generation, Arc::downgrade(self))
            .is_err()
        {
            self.stop_by_scope(generation);
            return Err(MonitorError::ScopeClosed(self.name.to_string()));
        }
        Ok(())
    }

    fn finish(&self, reason: &str) {
        if self.stop_run(None) {
            self.stop.notify_waiters();
            tracing::info!(monitor = %self.name, reason, "monitor stopped");
        }
    }

    /// Marks run `generation` stopped because its scope was cancelled or closed.
    pub(crate) fn stop_by_scope(&self, generation: u64) {
        if self.stop_run(Some(generation)) {
            tracing::debug!(monitor = %self.name, "monitor stopped: scope cancelled");
        }
    }

    /// Stops the current run (only if it is `generation`, when given): status Stopped,
    /// scheduled checks invalidated. Returns whether a running monitor was stopped.
    fn stop_run(&self, generation: Option<u64>) -> bool {
        let mut run = self.lock_run();
        let current = self.generation.load(Ordering::SeqCst);
        if generation.is_some_and(|g| g != current) || !self.snapshot.load().running {
            return false;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        run.machine.stop();
        self.publish(|s| {
            s.status = Status::Stopped;
            s.running = false;
            s.next_check = None;
        });
        true
    }

    /// Feeds the outcome of a check that began at `began` to run `generation`, publishes
    /// the snapshot, emits events and schedules the next check.
    fn complete(
        self: &Arc<Self>,
        scope: &Scope,
        generation: u64,
        began: Instant,
        outcome: Result<CheckResult, ProbeError>,
    ) {
        let ended = Instant::now();
        let verdict = Verdict::of(&outcome);
        let result = outcome.unwrap_or_else(|err| err.to_result(ended - began));
        let wall = self.clock.now();

        let (transition, next, snapshot) = {
            let mut run = self.lock_run();
            if self.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            let transition = run.machine.observe(verdict, ended);
            if verdict == Verdict::Healthy {
                self.last_seen.record_in(&self.seen, &self.name, wall);
            }
            let next = if transition.events.stopped {
                self.generation.fetch_add(1, Ordering::SeqCst);
                None
            } else {
                let mut due = began + run.machine.next_interval(&self.config);
                if run.jitter_pending {
                    run.jitter_pending = false;
                    due += random_below(self.config.effective_jitter());
                }
                Some(due.max(ended))
            };
            let machine = &run.machine;
            let transition = &transition;
            self.publish_result(result.detail, |s| {
                s.status = machine.status();
                s.kind = Some(result.kind);
                s.latency = result.latency;
                if verdict == Verdict::Healthy {
                    s.last_seen = Some(wall);
                }
                s.failures = machine.failures();
                s.errors = machine.errors();
                s.passes = machine.passes();
                s.results.count(verdict);
                if transition.from != transition.to {
                    s.transitions += 1;
                }
                s.running = next.is_some();
                s.next_check = next;
            });
            (*transition, next, self.snapshot.load_full())
        };

        self.log(&transition, verdict, &snapshot);
        if let Some(sink) = &self.sink {
            for kind in transition.events.iter() {
                let event = self.event(kind, &transition, &snapshot, wall);
                // A sink that panics must not take the monitor's schedule down with it.
                let delivered = std::panic::catch_unwind(AssertUnwindSafe(|| sink.notify(event)));
                if delivered.is_err() {
                    tracing::error!(monitor = %self.name, event = %kind, "event sink panicked");
                }
            }
        }
        if let Some(at) = next
            && scope
                .schedule(at, generation, Arc::downgrade(self))
                .is_err()
        {
            self.stop_by_scope(generation);
        }
    }

    fn event(
        &self,
        kind: EventKind,
        transition: &Transition,
        snapshot: &Snapshot,
        time: SystemTime,
    ) -> Event {
        Event {
            kind,
            service: self.name.clone(),
            url: snapshot.url.to_string(),
            detail: snapshot.detail.clone(),
            latency: snapshot.latency,
            last_seen: snapshot.last_seen,
            outage: if kind == EventKind::Up {
                transition.outage
            } else {
                None
            },
            time,
        }
    }

    fn log(&self, transition: &Transition, verdict: Verdict, snapshot: &Snapshot) {
        let name = &*self.name;
        if transition.from != transition.to {
            tracing::debug!(monitor = name, from = %transition.from, to = %transition.to, "status changed");
        }
        if verdict == Verdict::Error {
            tracing::error!(monitor = name, detail = %snapshot.detail, "health check error");
        }
        for kind in transition.events.iter() {
            match kind {
                EventKind::Down => {
                    tracing::warn!(monitor = name, detail = %snapshot.detail, "service is down");
                }
                EventKind::Up => {
                    tracing::info!(monitor = name, latency = ?snapshot.latency, "service is up");
                }
                EventKind::Stopped => tracing::error!(
                    monitor = name,
                    errors = snapshot.errors,
                    "monitor stopped after {} consecutive errors",
                    snapshot.errors
                ),
            }
        }
    }
}

/// A uniformly random duration in `[0, bound)` (zero when `bound` is zero).
fn random_below(bound: Duration) -> Duration {
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(fastrand::u64(..nanos))
    }
}

/// Runs one scheduled check (the body of a check task).
pub(crate) async fn run_check(scope: Scope, job: Job, permit: OwnedSemaphorePermit) {
    let Some(shared) = job.monitor.upgrade() else {
        return;
    };
    // Register for the stop signal before reading the generation, so that a finish()
    // in between is never missed.
    let stopped = shared.stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    if shared.generation.load(Ordering::SeqCst) != job.generation {
        return;
    }
    let began = Instant::now();
    let url = shared.url.load_full();
    let outcome = tokio::select! {
        biased;
        () = &mut stopped => return,
        () = scope.token().cancelled() => {
            shared.stop_by_scope(job.generation);
            return;
        }
        outcome = check_once(&*shared.probe, &url, shared.config.timeout) => outcome,
    };
    drop(permit);
    shared.complete(&scope, job.generation, began, outcome);
}

/// One check with `probe` exactly as a monitor runs it, without a monitor: under
/// `timeout`, with panics caught. A late check is dropped and becomes an unhealthy
/// `timeout` result (`timed out after <timeout>`); a panic becomes an error whose detail
/// starts with `check panicked`. For one-off checks (a CLI, an agent endpoint).
pub async fn check_once(
    probe: &dyn Probe,
    url: &Url,
    timeout: Duration,
) -> Result<CheckResult, ProbeError> {
    let check = AssertUnwindSafe(async { probe.check(url).await }).catch_unwind();
    match tokio::time::timeout(timeout, check).await {
        Err(_) => Ok(CheckResult::unhealthy(
            CheckKind::Timeout,
            format!("timed out after {}", humantime::format_duration(timeout)),
            timeout,
        )),
        Ok(Err(panic)) => Err(ProbeError::new(
            CheckKind::Internal,
            format!("check panicked: {}", panic_message(&*panic)),
        )),
        Ok(Ok(outcome)) => outcome,
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}
