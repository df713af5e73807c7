//! The monitor's lifecycle: its shared state ([`Shared`]) and the calls that change it
//! (start, finish, restart, a check's completion), with the snapshots and events they
//! publish.
//!
//! Imports run one way: `monitor` (the handle) and `check` (the check run) use this
//! module; it uses `snapshot`, the state machine and the scheduler, and never the
//! modules above it. It hands the scheduler a `Weak<Shared>`; that `Shared` is a
//! scheduler's [`Runner`](crate::scheduler::Runner) is said in `check`.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use health_types::{
    CheckResult, Clock, Event, EventKind, EventSink, HealthCheckConfig, Probe, ProbeError, Status,
    SystemClock, Url, Verdict, duration_nanos,
};
use tokio::{
    sync::{Notify, futures::Notified, watch},
    time::Instant,
};

use crate::{
    error::MonitorError,
    last_seen::{LastSeenRegistry, Slot},
    machine::{StateMachine, Transition},
    scheduler::Scheduler,
    snapshot::Snapshot,
};

/// Everything of one monitor, shared by its handles and its scheduled checks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) config: Arc<HealthCheckConfig>,
    pub(crate) url: ArcSwap<Url>,
    pub(crate) probe: Arc<dyn Probe>,
    sink: Option<Arc<dyn EventSink>>,
    clock: Arc<dyn Clock>,
    last_seen: Arc<LastSeenRegistry>,
    /// This monitor's slot in `last_seen`: a healthy result is one atomic store.
    seen: Arc<Slot>,
    pub(crate) snapshot: ArcSwap<Snapshot>,
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

/// What a monitor is built from, as its builder collects it.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) name: Arc<str>,
    pub(crate) url: Url,
    pub(crate) probe: Arc<dyn Probe>,
    pub(crate) config: Arc<HealthCheckConfig>,
    pub(crate) sink: Option<Arc<dyn EventSink>>,
    pub(crate) clock: Arc<dyn Clock>,
    /// `None`: the process-wide [`LastSeenRegistry::global`].
    pub(crate) last_seen: Option<Arc<LastSeenRegistry>>,
}

impl Parts {
    /// A monitor named `name` that checks `url` with `probe`, with the default config, no
    /// sink, the system clock and the process-wide last-seen registry.
    pub(crate) fn new(name: Arc<str>, url: Url, probe: Arc<dyn Probe>) -> Self {
        Parts {
            name,
            url,
            probe,
            config: Arc::default(),
            sink: None,
            clock: Arc::new(SystemClock),
            last_seen: None,
        }
    }
}

#[derive(Debug)]
struct RunState {
    machine: StateMachine,
    /// The scheduler of the last start, for `restart`.
    scheduler: Option<Scheduler<Shared>>,
    jitter_pending: bool,
}

impl Shared {
    /// A monitor made of `parts` (not started). The config and the URL were validated by
    /// the caller.
    pub(crate) fn new(parts: Parts) -> Self {
        let Parts {
            name,
            url,
            probe,
            config,
            sink,
            clock,
            last_seen,
        } = parts;
        let last_seen = last_seen.unwrap_or_else(LastSeenRegistry::global);
        let url = Arc::new(url);
        let snapshot = Snapshot::fresh(name.clone(), url.clone(), last_seen.get(&name));
        Shared {
            run: Mutex::new(RunState {
                machine: StateMachine::new(&config),
                scheduler: None,
                jitter_pending: false,
            }),
            seen: last_seen.slot(&name),
            name,
            config,
            url: ArcSwap::new(url),
            probe,
            sink,
            clock,
            last_seen,
            snapshot: ArcSwap::from_pointee(snapshot),
            watch: OnceLock::new(),
            stop: Notify::new(),
            generation: AtomicU64::new(0),
        }
    }

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

    /// Starts a run on `scheduler`: status Starting, counters reset, the first check due
    /// now.
    pub(crate) fn start(
        self: &Arc<Self>,
        scheduler: &Scheduler<Shared>,
    ) -> Result<(), MonitorError> {
        if scheduler.is_cancelled() {
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
            run.scheduler = Some(scheduler.clone());
            run.jitter_pending = !self.config.effective_jitter().is_zero();
            let wall = self.clock.now();
            let last_seen = self.last_seen.get(&self.name);
            let current = self.snapshot.load();
            self.store(Snapshot {
                status: Status::Starting,
                started: Some(wall),
                started_at: Some(now),
                running: true,
                next_check: Some(now),
                ..Snapshot::fresh(
                    current.name.clone(),
                    current.url.clone(),
                    last_seen.or(current.last_seen),
                )
            });
            generation
        };
        tracing::debug!(monitor = %self.name, url = %self.url.load(), "monitor started");
        if scheduler
            .schedule(now, generation, Arc::downgrade(self))
            .is_err()
        {
            self.stop_by_scope(generation);
            return Err(MonitorError::ScopeClosed(self.name.to_string()));
        }
        Ok(())
    }

    /// Stops the current run: status Stopped, no event, a check in flight is dropped.
    pub(crate) fn finish(&self, reason: &str) {
        if self.stop_run(None) {
            self.stop.notify_waiters();
            tracing::info!(monitor = %self.name, reason, "monitor stopped");
        }
    }

    /// Stops and starts again on the scheduler of the last start, with counters reset.
    pub(crate) fn restart(self: &Arc<Self>) -> Result<(), MonitorError> {
        let scheduler = self
            .lock_run()
            .scheduler
            .clone()
            .ok_or_else(|| MonitorError::NotStarted(self.name.to_string()))?;
        self.finish("restart");
        self.start(&scheduler)
    }

    /// Replaces the URL (the next check uses it) once the probe accepts it.
    pub(crate) fn update_url(&self, url: Url) -> Result<(), MonitorError> {
        self.probe.validate_url(&url)?;
        let url = Arc::new(url);
        let _run = self.lock_run();
        self.url.store(url.clone());
        self.publish(|s| s.url = url);
        Ok(())
    }

    /// A receiver of every snapshot published from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.watch
            .get_or_init(|| watch::Sender::new(self.snapshot.load_full()))
            .subscribe()
    }

    /// Resolves when the current run is finished or restarted. Enable it before checking
    /// [`is_current`](Self::is_current), so that a finish in between is never missed.
    pub(crate) fn stopped(&self) -> Notified<'_> {
        self.stop.notified()
    }

    /// Whether `generation` is the current run (not stopped or restarted since).
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) == generation
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
    pub(crate) fn complete(
        self: &Arc<Self>,
        scheduler: &Scheduler<Shared>,
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
            if !self.is_current(generation) {
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
            && scheduler
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
            outage_start: None,
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
    let nanos = duration_nanos(bound);
    if nanos == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(fastrand::u64(..nanos))
    }
}
