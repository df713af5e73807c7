//! The monitor's lifecycle: its shared state ([`Shared`]) and the calls that change it
//! (start, finish, restart, a check's completion), with the snapshots and events they
//! publish and the state they persist.
//!
//! # What is persisted, when
//!
//! With a [`StateSink`], each check that changed the persisted [`MonitorState`] hands it
//! to the sink in one call with that check's events (the same `down`, `up` and `stopped`
//! events the [`EventSink`] gets, given to the state sink first). "Changed" compares the
//! new state with the one last recorded (or restored): status, the counters as far as
//! they matter (capped at F, R and `max_errors`), `down_sent`, the outage's start, or any
//! event. `last_seen` alone moves on every healthy check, so it is recorded at most every
//! [`LAST_SEEN_EVERY`] (or with another change): a monitor that stays healthy costs the
//! store one write a minute, and after a `kill -9` the restored Last Seen may be up to
//! that old. A stop (`finish`, `restart`, the scope cancelled or shut down) records
//! nothing new but a newer `last_seen`, so a graceful shutdown loses nothing; the status
//! recorded is still the last check's, never `stopped`, so that a new process resumes
//! the monitor rather than restoring it stopped.
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
    CheckResult, Clock, Event, EventKind, EventSink, HealthCheckConfig, MonitorState, Probe,
    ProbeError, StateSink, Status, SystemClock, Url, Verdict, duration_nanos,
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
    state_sink: Option<Arc<dyn StateSink>>,
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
    pub(crate) state_sink: Option<Arc<dyn StateSink>>,
    /// The state an earlier process persisted, to resume from.
    pub(crate) restore: Option<MonitorState>,
    pub(crate) clock: Arc<dyn Clock>,
    /// `None`: the process-wide [`LastSeenRegistry::global`].
    pub(crate) last_seen: Option<Arc<LastSeenRegistry>>,
}

impl Parts {
    /// A monitor named `name` that checks `url` with `probe`, with the default config, no
    /// sinks, nothing restored, the system clock and the process-wide last-seen registry.
    pub(crate) fn new(name: Arc<str>, url: Url, probe: Arc<dyn Probe>) -> Self {
        Parts {
            name,
            url,
            probe,
            config: Arc::default(),
            sink: None,
            state_sink: None,
            restore: None,
            clock: Arc::new(SystemClock),
            last_seen: None,
        }
    }
}

/// How often, at most, a `last_seen` that changed alone is recorded (see the module docs).
const LAST_SEEN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct RunState {
    machine: StateMachine,
    /// The scheduler of the last start, for `restart`.
    scheduler: Option<Scheduler<Shared>>,
    jitter_pending: bool,
    /// The machine was restored and not started yet: the first start keeps its state.
    restored: bool,
    /// Wall-clock start of the machine's current outage (kept by restarts).
    outage_start: Option<SystemTime>,
    /// The state last handed to the state sink, or restored: what a change is measured
    /// against.
    recorded: MonitorState,
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
            state_sink,
            restore,
            clock,
            last_seen,
        } = parts;
        let last_seen = last_seen.unwrap_or_else(LastSeenRegistry::global);
        let seen = last_seen.slot(&name);
        let url = Arc::new(url);
        let run = match restore {
            None => RunState {
                machine: StateMachine::new(&config),
                scheduler: None,
                jitter_pending: false,
                restored: false,
                outage_start: None,
                recorded: MonitorState::default(),
            },
            Some(state) => {
                let machine = StateMachine::restore(&config, &state, Instant::now(), clock.now());
                // The registry learns the restored time unless it knows a later one.
                if let Some(at) = state.last_seen
                    && last_seen.get(&name) < Some(at)
                {
                    last_seen.record_in(&seen, &name, at);
                }
                RunState {
                    outage_start: state.outage_start.filter(|_| machine.in_outage()),
                    machine,
                    scheduler: None,
                    jitter_pending: false,
                    restored: true,
                    recorded: state,
                }
            }
        };
        let mut snapshot = Snapshot::fresh(name.clone(), url.clone(), last_seen.get(&name));
        if run.restored {
            // Not started yet, but no longer unknown: the state it resumes from.
            show_machine(&mut snapshot, &run.machine);
        }
        Shared {
            run: Mutex::new(run),
            seen,
            name,
            config,
            url: ArcSwap::new(url),
            probe,
            sink,
            state_sink,
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

    /// Starts a run on `scheduler`, the first check due now: status Starting with the
    /// counters reset and the outage kept, or, on the first start of a restored monitor,
    /// the restored state as it is.
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
            if !std::mem::take(&mut run.restored) {
                // SPEC §3: a restart resets the counters but keeps a notified outage, so
                // it never sends a second `down` for it.
                run.machine.restart();
            }
            run.scheduler = Some(scheduler.clone());
            run.jitter_pending = !self.config.effective_jitter().is_zero();
            let wall = self.clock.now();
            let last_seen = self.last_seen.get(&self.name);
            let current = self.snapshot.load();
            let mut next = Snapshot {
                started: Some(wall),
                started_at: Some(now),
                running: true,
                next_check: Some(now),
                ..Snapshot::fresh(
                    current.name.clone(),
                    current.url.clone(),
                    last_seen.or(current.last_seen),
                )
            };
            show_machine(&mut next, &run.machine);
            self.store(next);
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

    /// Stops and starts again on the scheduler of the last start, with counters reset and
    /// the outage kept.
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
    /// scheduled checks invalidated, a `last_seen` newer than the recorded one recorded.
    /// Returns whether a running monitor was stopped.
    fn stop_run(&self, generation: Option<u64>) -> bool {
        let flush = {
            let mut run = self.lock_run();
            let current = self.generation.load(Ordering::SeqCst);
            let snapshot = self.snapshot.load();
            if generation.is_some_and(|g| g != current) || !snapshot.running {
                return false;
            }
            self.generation.fetch_add(1, Ordering::SeqCst);
            run.machine.stop();
            // The status recorded stays the last check's (see the module docs).
            let flush = (self.state_sink.is_some() && snapshot.last_seen != run.recorded.last_seen)
                .then(|| MonitorState {
                    last_seen: snapshot.last_seen,
                    ..run.recorded
                });
            if let Some(state) = &flush {
                run.recorded = state.clone();
            }
            self.publish(|s| {
                s.status = Status::Stopped;
                s.running = false;
                s.next_check = None;
            });
            flush
        };
        if let Some(state) = flush {
            self.record(&state, &[]);
        }
        true
    }

    /// Hands `state` and `events` to the state sink, if any. Call without the run lock.
    fn record(&self, state: &MonitorState, events: &[Event]) {
        if let Some(sink) = &self.state_sink {
            // A sink that panics must not take the monitor's schedule down with it.
            let recorded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                sink.record(&self.name, state, events)
            }));
            if recorded.is_err() {
                tracing::error!(monitor = %self.name, "state sink panicked");
            }
        }
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

        let (transition, next, snapshot, outage_start, record) = {
            let mut run = self.lock_run();
            if !self.is_current(generation) {
                return;
            }
            let before = run.outage_start;
            let transition = run.machine.observe(verdict, ended);
            run.outage_start = if run.machine.in_outage() {
                before.or(Some(wall))
            } else {
                None
            };
            // The outage a `down` or an `up` of this check belongs to (an `up` ends it).
            let outage_start = before.or(run.outage_start);
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
                show_machine(s, machine);
                s.kind = Some(result.kind);
                s.latency = result.latency;
                if verdict == Verdict::Healthy {
                    s.last_seen = Some(wall);
                }
                s.results.count(verdict);
                if transition.from != transition.to {
                    s.transitions += 1;
                }
                s.running = next.is_some();
                s.next_check = next;
            });
            let snapshot = self.snapshot.load_full();
            let record = self.state_sink.is_some().then(|| {
                let state = run.machine.state(run.outage_start, snapshot.last_seen);
                let due = !transition.events.is_empty() || changed(&run.recorded, &state);
                if due {
                    run.recorded = state.clone();
                }
                due.then_some(state)
            });
            (*transition, next, snapshot, outage_start, record.flatten())
        };

        self.log(&transition, verdict, &snapshot);
        // Built only when there are events and someone takes them: a check that changes
        // nothing allocates nothing here.
        let events: Vec<Event> = if self.sink.is_some() || record.is_some() {
            transition
                .events
                .iter()
                .map(|kind| self.event(kind, &transition, &snapshot, wall, outage_start))
                .collect()
        } else {
            Vec::new()
        };
        // The state and its events are recorded before any of them is notified (SPEC §9.1).
        if let Some(state) = &record {
            self.record(state, &events);
        }
        if let Some(sink) = &self.sink {
            for event in events {
                let kind = event.kind;
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
        outage_start: Option<SystemTime>,
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
            outage_start: if kind == EventKind::Stopped {
                None
            } else {
                outage_start
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

/// Shows `machine`'s status and counters in `snapshot`.
fn show_machine(snapshot: &mut Snapshot, machine: &StateMachine) {
    snapshot.status = machine.status();
    snapshot.failures = machine.failures();
    snapshot.errors = machine.errors();
    snapshot.passes = machine.passes();
}

/// Whether `state` differs from the `recorded` one enough to record it: in anything but
/// `last_seen`, or in `last_seen` by [`LAST_SEEN_EVERY`] or more (or backwards).
fn changed(recorded: &MonitorState, state: &MonitorState) -> bool {
    let apart_from_seen = MonitorState {
        last_seen: recorded.last_seen,
        ..*state
    };
    if apart_from_seen != *recorded {
        return true;
    }
    match (recorded.last_seen, state.last_seen) {
        (Some(old), Some(new)) => new
            .duration_since(old)
            .map_or(true, |since| since >= LAST_SEEN_EVERY),
        (None, seen) => seen.is_some(),
        // `last_seen` is never cleared.
        (Some(_), None) => false,
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
