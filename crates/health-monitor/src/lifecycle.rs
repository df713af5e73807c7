//! The monitor's lifecycle: its shared state ([`Shared`]) and the calls that change it
//! (start, finish, restart, a check asked for now, a check's completion), with the
//! snapshots and events they publish and the state they persist.
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
//! # What history is told, when
//!
//! With a [`HistorySink`], the monitor reports every check but local ones
//! ([`HistorySink::observe`]) and every status change ([`HistorySink::change`]): to
//! `starting` when a run starts (a first start, a restart, and the first start of a
//! restored monitor, which shows its restored status until its first check), each change
//! a check makes (with that check's detail), and to `stopped` when the run stops (by
//! `finish`, its scope, or by itself after `max_errors`, where the snapshot's status
//! stays `error` but no more time is observed). Each change goes from the status last
//! reported, so the changes history receives form one chain. Reports are made outside
//! the run lock, in the order the changes happened.
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
    CertInfo, CheckResult, Clock, Event, EventKind, EventSink, HealthCheckConfig, HistorySink,
    MonitorState, Observation, Probe, ProbeError, StateSink, Status, StatusChange, SystemClock,
    Url, Verdict, duration_nanos, redacted,
};
use tokio::{
    sync::{Notify, futures::Notified, oneshot, watch},
    time::Instant,
};

use crate::{
    error::MonitorError,
    last_seen::{LastSeenRegistry, Slot},
    machine::{StateMachine, Transition},
    scheduler::Scheduler,
    snapshot::{LatencyCounter, Snapshot, StopCause},
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
    history: Option<Arc<dyn HistorySink>>,
    /// Held from the moment a report to `history` is decided (under the run lock) until
    /// it is made (outside it), so that reports reach the sink in order.
    history_turn: Mutex<()>,
    clock: Arc<dyn Clock>,
    last_seen: Arc<LastSeenRegistry>,
    /// This monitor's slot in `last_seen`: a healthy result is one atomic store.
    seen: Arc<Slot>,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    /// The latencies of its results, beside the snapshot rather than in it.
    pub(crate) latencies: LatencyCounter,
    /// Created on the first `subscribe`, so that monitors nobody watches pay nothing.
    watch: OnceLock<watch::Sender<Arc<Snapshot>>>,
    /// Wakes the check in flight when the monitor is finished or restarted.
    stop: Notify,
    /// Bumped on every start and stop, and when [`check_now`](Self::check_now) puts a
    /// check due now in place of the one the scheduler holds; a scheduled check of an
    /// older value is skipped.
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
    pub(crate) history: Option<Arc<dyn HistorySink>>,
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
            history: None,
            restore: None,
            clock: Arc::new(SystemClock),
            last_seen: None,
        }
    }
}

/// How often, at most, a `last_seen` that changed alone is recorded (see the module docs).
const LAST_SEEN_EVERY: Duration = Duration::from_secs(60);

/// How often, at most, one monitor logs a local result: a storm of them (the process out
/// of file descriptors) logs one line per monitor per minute, with the count in between.
const LOCAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// The check of the current run that is in flight or asked for by `check_now`, with the
/// `check_now` callers waiting for its result.
#[derive(Debug, Default)]
struct Flight {
    waiters: Vec<oneshot::Sender<CheckResult>>,
}

impl Flight {
    /// Whether anyone waits for the result.
    fn awaited(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Hands `result` to every caller waiting.
    fn answer(self, result: &CheckResult) {
        for waiter in self.waiters {
            // A caller that went away (its future dropped) needs nothing.
            let _ = waiter.send(result.clone());
        }
    }
}

/// What a stop does with the `check_now` callers waiting for the check it drops.
#[derive(Clone, Copy, Debug)]
enum Waiters {
    /// They fail: the monitor stopped.
    Fail,
    /// They wait for the first check of the run that follows at once (a restart).
    Keep,
}

/// When a monitor last logged a local result, and how many it did not log since.
#[derive(Debug, Default)]
struct LocalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl LocalLog {
    /// Notes a local result at `now`: `Some(results not logged before it)` when this one
    /// is to be logged (the first, or [`LOCAL_LOG_EVERY`] after the last logged one).
    fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < LOCAL_LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

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
    /// A check of the current run is in flight or asked for by `check_now` (then a
    /// `check_now` joins it); `None` between checks.
    flight: Option<Flight>,
    /// The rate limit of local results' log lines (kept across restarts).
    local_log: LocalLog,
    /// The status last reported to the history sink (or, before any report, the one
    /// shown): where the next change reported starts from.
    reported: Status,
    /// The `not_after` of the last certificate warned of (persisted, SPEC §9.4).
    cert_warned: Option<i64>,
}

/// What one report hands the history sink: a check's observation, then the status
/// changes, in the order they happened.
#[derive(Debug, Default)]
struct HistoryNote {
    observation: Option<Observation>,
    changes: Vec<StatusChange>,
}

/// A report to the history sink with its turn, taken under the run lock.
type HistoryReport<'a> = Option<(MutexGuard<'a, ()>, HistoryNote)>;

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
            history,
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
                flight: None,
                local_log: LocalLog::default(),
                reported: Status::Unknown,
                cert_warned: None,
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
                    cert_warned: state.cert_warned,
                    outage_start: state.outage_start.filter(|_| machine.in_outage()),
                    machine,
                    scheduler: None,
                    jitter_pending: false,
                    restored: true,
                    recorded: state,
                    flight: None,
                    local_log: LocalLog::default(),
                    // The store closed the previous process's run with `stopped` (on
                    // close, or at its next open after a kill): the chain goes on from
                    // there.
                    reported: Status::Stopped,
                }
            }
        };
        let mut snapshot = Snapshot::fresh(name.clone(), url.clone(), last_seen.get(&name));
        if run.restored {
            // Not started yet, but no longer unknown: the state it resumes from.
            show_machine(&mut snapshot, &run.machine);
            snapshot.outage_start = run.outage_start;
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
            history,
            history_turn: Mutex::new(()),
            clock,
            last_seen,
            snapshot: ArcSwap::from_pointee(snapshot),
            latencies: LatencyCounter::default(),
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

    /// Notes, for the history sink, a change from the status last reported to `to` at
    /// `time` (nothing when there is no sink or no change). Call with the run lock held.
    fn change_to(
        &self,
        run: &mut RunState,
        note: &mut HistoryNote,
        to: Status,
        time: SystemTime,
        detail: impl FnOnce() -> String,
    ) {
        if self.history.is_none() || run.reported == to {
            return;
        }
        note.changes.push(StatusChange {
            time,
            from: run.reported,
            to,
            detail: detail(),
        });
        run.reported = to;
    }

    /// Takes the turn to report `note`, when there is a sink and something to say. Call
    /// with the run lock held, so that reports are made in the order of their changes.
    fn history_turn(&self, note: HistoryNote) -> HistoryReport<'_> {
        if self.history.is_none() || (note.observation.is_none() && note.changes.is_empty()) {
            return None;
        }
        // A sink that panicked poisoned nothing that matters: the lock guards no data.
        let turn = self
            .history_turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some((turn, note))
    }

    /// Hands a report to the history sink. Call without the run lock.
    fn report(&self, report: HistoryReport<'_>) {
        let (Some((_turn, note)), Some(sink)) = (report, &self.history) else {
            return;
        };
        // A sink that panics must not take the monitor's schedule down with it.
        let reported = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if let Some(observation) = &note.observation {
                sink.observe(&self.name, observation);
            }
            for change in &note.changes {
                sink.change(&self.name, change);
            }
        }));
        if reported.is_err() {
            tracing::error!(monitor = %self.name, "history sink panicked");
        }
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
                stop_cause: current.stop_cause.clone(),
                cert: current.cert.clone(),
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
        let (generation, report) = {
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
                outage_start: run.outage_start,
                // Like `last_seen`, a time stamp of what happened before: kept.
                last_check: current.last_check,
                ..Snapshot::fresh(
                    current.name.clone(),
                    current.url.clone(),
                    last_seen.or(current.last_seen),
                )
            };
            show_machine(&mut next, &run.machine);
            self.store(next);
            let mut note = HistoryNote::default();
            self.change_to(&mut run, &mut note, Status::Starting, wall, String::new);
            (generation, self.history_turn(note))
        };
        self.report(report);
        tracing::debug!(monitor = %self.name, url = %redacted(&self.url.load()), "monitor started");
        if scheduler
            .schedule(now, generation, Arc::downgrade(self))
            .is_err()
        {
            self.stop_by_scope(generation);
            return Err(MonitorError::ScopeClosed(self.name.to_string()));
        }
        Ok(())
    }

    /// Stops the current run: status Stopped, no event, a check in flight is dropped
    /// (and `check_now` callers waiting for it fail).
    pub(crate) fn finish(&self, reason: &str) {
        self.finish_run(reason, Waiters::Fail);
    }

    fn finish_run(&self, reason: &str, waiters: Waiters) {
        if self.stop_run(None, waiters, StopCause::Finished(reason.to_owned())) {
            self.stop.notify_waiters();
            tracing::info!(monitor = %self.name, reason, "monitor stopped");
        }
    }

    /// Stops and starts again on the scheduler of the last start, with counters reset and
    /// the outage kept. `check_now` callers waiting for a check that this drops get the
    /// restarted run's first check, due at once.
    pub(crate) fn restart(self: &Arc<Self>) -> Result<(), MonitorError> {
        let scheduler = self
            .lock_run()
            .scheduler
            .clone()
            .ok_or_else(|| MonitorError::NotStarted(self.name.to_string()))?;
        self.finish_run("restart", Waiters::Keep);
        let started = self.start(&scheduler);
        if started.is_err() {
            let mut run = self.lock_run();
            if !self.snapshot.load().running {
                // No first check will answer them.
                run.flight = None;
            }
        }
        started
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

    /// Claims the check of run `generation` that came due: `false` when that run is over
    /// (stopped, restarted, or its scheduled check replaced by `check_now`'s). Until the
    /// check completes, `check_now` joins it.
    pub(crate) fn begin_check(&self, generation: u64) -> bool {
        let mut run = self.lock_run();
        if !self.is_current(generation) {
            return false;
        }
        // Asked for by `check_now` (with its callers waiting), or a scheduled one.
        run.flight.get_or_insert_with(Flight::default);
        true
    }

    /// Runs the next check now, or joins the one in flight, and returns its result (see
    /// [`Monitor::check_now`](crate::Monitor::check_now)).
    pub(crate) async fn check_now(self: &Arc<Self>) -> Result<CheckResult, MonitorError> {
        self.join_check()?
            .await
            // The check was dropped by a stop.
            .map_err(|_| MonitorError::NotRunning(self.name.to_string()))
    }

    /// A receiver of the result of the check in flight, or of one put in place of the
    /// scheduled check, due now.
    fn join_check(self: &Arc<Self>) -> Result<oneshot::Receiver<CheckResult>, MonitorError> {
        let not_running = || MonitorError::NotRunning(self.name.to_string());
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let due_now = {
            let mut run = self.lock_run();
            if !self.snapshot.load().running {
                return Err(not_running());
            }
            if let Some(flight) = &mut run.flight {
                flight.waiters.push(tx);
                None
            } else {
                let scheduler = run.scheduler.clone().ok_or_else(not_running)?;
                // The check the scheduler holds belongs to the old value: it is skipped
                // when it comes due, and this one takes its place.
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                run.flight = Some(Flight { waiters: vec![tx] });
                self.publish(|s| s.next_check = Some(now));
                Some((scheduler, generation))
            }
        };
        if let Some((scheduler, generation)) = due_now
            && scheduler
                .schedule(now, generation, Arc::downgrade(self))
                .is_err()
        {
            // The scope is closing: the monitor stops, and the receiver learns it.
            self.stop_by_scope(generation);
        }
        Ok(rx)
    }

    /// Resolves when the current run is finished or restarted. Enable it before
    /// [`begin_check`](Self::begin_check), so that a finish in between is never missed.
    pub(crate) fn stopped(&self) -> Notified<'_> {
        self.stop.notified()
    }

    /// Whether `generation` is the current run (not stopped, restarted, or its scheduled
    /// check replaced by `check_now`'s since).
    fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) == generation
    }

    /// Marks run `generation` stopped because its scope was cancelled or closed.
    pub(crate) fn stop_by_scope(&self, generation: u64) {
        if self.stop_run(Some(generation), Waiters::Fail, StopCause::Scope) {
            tracing::debug!(monitor = %self.name, "monitor stopped: scope cancelled");
        }
    }

    /// Stops the current run (only if it is `generation`, when given): status Stopped,
    /// scheduled checks invalidated, `check_now` callers failed or kept for the next run
    /// as `waiters` says, a `last_seen` newer than the recorded one recorded, `cause`
    /// shown. Returns whether a running monitor was stopped.
    fn stop_run(&self, generation: Option<u64>, waiters: Waiters, cause: StopCause) -> bool {
        let (flush, report) = {
            let mut run = self.lock_run();
            let current = self.generation.load(Ordering::SeqCst);
            let snapshot = self.snapshot.load();
            if generation.is_some_and(|g| g != current) || !snapshot.running {
                return false;
            }
            self.generation.fetch_add(1, Ordering::SeqCst);
            run.machine.stop();
            // The check in flight (if any) is dropped. Its `check_now` callers learn it
            // from their channels, or, kept, are answered by the next run's first check.
            run.flight = match waiters {
                Waiters::Fail => None,
                Waiters::Keep => run.flight.take().filter(Flight::awaited),
            };
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
                s.stop_cause = Some(cause);
            });
            let mut note = HistoryNote::default();
            if self.history.is_some() {
                let wall = self.clock.now();
                self.change_to(&mut run, &mut note, Status::Stopped, wall, String::new);
            }
            (flush, self.history_turn(note))
        };
        if let Some(state) = flush {
            self.record(&state, &[]);
        }
        self.report(report);
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
    /// the snapshot, emits events, answers `check_now` callers and schedules the next
    /// check.
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
        if verdict == Verdict::Local {
            self.complete_local(scheduler, generation, began, ended, result);
            return;
        }
        let wall = self.clock.now();

        let (transition, next, snapshot, outage_start, record, answer, report, cert_due) = {
            let mut run = self.lock_run();
            if !self.is_current(generation) {
                return;
            }
            // `check_now` callers get the result as the monitor took it in.
            let answer = run
                .flight
                .take()
                .filter(Flight::awaited)
                .map(|flight| (flight, result.clone()));
            self.latencies.observe(result.latency);
            let before = run.outage_start;
            let transition = run.machine.observe(verdict, ended);
            let cert_due = self.cert_due(&mut run, result.cert.as_deref(), wall);
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
                Some(self.next_due(&mut run, began, ended))
            };
            // History: the check, then what it changed, with its detail.
            let mut note = HistoryNote::default();
            if self.history.is_some() {
                note.observation = Some(Observation {
                    time: wall,
                    latency: result.latency,
                    failed: verdict != Verdict::Healthy,
                });
                let to = run.machine.status();
                let detail = || result.detail.clone();
                self.change_to(&mut run, &mut note, to, wall, detail);
                if transition.events.stopped {
                    self.change_to(&mut run, &mut note, Status::Stopped, wall, detail);
                }
            }
            let machine = &run.machine;
            let outage = run.outage_start;
            let transition = &transition;
            self.publish_result(result.detail, |s| {
                show_machine(s, machine);
                s.kind = Some(result.kind);
                s.latency = result.latency;
                s.phases.merge(&result.phases);
                if let Some(cert) = &result.cert {
                    s.cert = Some(cert.clone());
                }
                s.status_code = result.status_code;
                if verdict == Verdict::Healthy {
                    s.last_seen = Some(wall);
                }
                s.last_check = Some(wall);
                s.outage_start = outage;
                s.results.count(verdict);
                if transition.from != transition.to {
                    s.transitions += 1;
                }
                s.running = next.is_some();
                s.next_check = next;
                if transition.events.stopped {
                    s.stop_cause = Some(StopCause::MaxErrors {
                        errors: machine.errors(),
                        detail: s.detail.clone(),
                    });
                }
            });
            let snapshot = self.snapshot.load_full();
            let record = self.state_sink.is_some().then(|| {
                let state = MonitorState {
                    cert_warned: run.cert_warned,
                    ..run.machine.state(run.outage_start, snapshot.last_seen)
                };
                let due = !transition.events.is_empty() || changed(&run.recorded, &state);
                if due {
                    run.recorded = state.clone();
                }
                due.then_some(state)
            });
            (
                *transition,
                next,
                snapshot,
                outage_start,
                record.flatten(),
                answer,
                self.history_turn(note),
                cert_due,
            )
        };

        self.log(&transition, verdict, &snapshot);
        // Built only when there are events and someone takes them: a check that changes
        // nothing allocates nothing here.
        let events: Vec<Event> = if self.sink.is_some() || record.is_some() {
            let cert = cert_due.map(|cert| self.cert_event(&cert, &snapshot, wall));
            transition
                .events
                .iter()
                .map(|kind| self.event(kind, &transition, &snapshot, wall, outage_start))
                .chain(cert)
                .collect()
        } else {
            Vec::new()
        };
        // The state and its events are recorded before any of them is notified (SPEC §9.1).
        if let Some(state) = &record {
            self.record(state, &events);
        }
        self.report(report);
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
        if let Some((flight, result)) = answer {
            flight.answer(&result);
        }
        if let Some(at) = next {
            self.schedule_next(scheduler, generation, at);
        }
    }

    /// Completes a check of run `generation` whose result is local (it failed on our
    /// side): the state machine, the status, the persisted state and the last result
    /// shown stay as they were; nothing is sent; the result is counted
    /// ([`ResultCounts::local`](crate::ResultCounts::local)) and logged at most once per
    /// [`LOCAL_LOG_EVERY`]; `check_now` callers get it; the next check is due at the
    /// interval in force, as after any check.
    fn complete_local(
        self: &Arc<Self>,
        scheduler: &Scheduler<Shared>,
        generation: u64,
        began: Instant,
        ended: Instant,
        result: CheckResult,
    ) {
        let (next, flight, log) = {
            let mut run = self.lock_run();
            if !self.is_current(generation) {
                return;
            }
            let next = self.next_due(&mut run, began, ended);
            self.publish(|s| {
                s.results.count(Verdict::Local);
                s.next_check = Some(next);
            });
            (next, run.flight.take(), run.local_log.note(ended))
        };
        if let Some(unlogged) = log {
            tracing::warn!(
                monitor = %self.name,
                kind = %result.kind,
                detail = %result.detail,
                unlogged,
                "health check failed on our side; the result is not counted against the target"
            );
        }
        if let Some(flight) = flight {
            flight.answer(&result);
        }
        self.schedule_next(scheduler, generation, next);
    }

    /// When the check after one that began at `began` and ended at `ended` is due: one
    /// interval (the one in force now) after it began, the first time offset by the
    /// jitter, and not before it ended. Call with the run lock held.
    fn next_due(&self, run: &mut RunState, began: Instant, ended: Instant) -> Instant {
        let mut due = began + run.machine.next_interval(&self.config);
        if run.jitter_pending {
            run.jitter_pending = false;
            due += random_below(self.config.effective_jitter());
        }
        due.max(ended)
    }

    /// Schedules run `generation`'s next check at `at`; a scheduler that no longer takes
    /// it (the scope is closing) stops the run.
    fn schedule_next(
        self: &Arc<Self>,
        scheduler: &Scheduler<Shared>,
        generation: u64,
        at: Instant,
    ) {
        if scheduler
            .schedule(at, generation, Arc::downgrade(self))
            .is_err()
        {
            self.stop_by_scope(generation);
        }
    }

    /// The certificate a `cert_expiry` event is due for after a result that showed
    /// `cert` at `now`: one with less than `cert_expiry_warn` left that expires later
    /// than the last one warned of (SPEC §9.4). Marks it warned. Call with the run lock
    /// held.
    ///
    /// "Later than", not "other than": behind a load balancer whose nodes serve two
    /// certificates, or a node still serving the old one, checks alternate between
    /// them, and each may be warned of once, in order of expiry, never once per switch.
    fn cert_due(
        &self,
        run: &mut RunState,
        cert: Option<&CertInfo>,
        now: SystemTime,
    ) -> Option<CertInfo> {
        let cert = cert?;
        if run
            .cert_warned
            .is_some_and(|warned| cert.not_after <= warned)
            || cert.time_left(now) >= self.config.cert_expiry_warn
        {
            return None;
        }
        run.cert_warned = Some(cert.not_after);
        Some(cert.clone())
    }

    /// The `cert_expiry` event for `cert`: its detail names the certificate, when it
    /// expires and how many whole days are left (`certificate CN=api.test (serial 1f)
    /// expires 2026-12-10T00:00:00Z: 6 days left`, or `... expired ...` once past).
    fn cert_event(&self, cert: &CertInfo, snapshot: &Snapshot, time: SystemTime) -> Event {
        let expires = rfc3339(cert.not_after);
        let detail = if cert.expires() <= time {
            format!(
                "certificate {} (serial {}) expired {expires}",
                cert.subject, cert.serial
            )
        } else {
            let days = cert.days_left(time);
            format!(
                "certificate {} (serial {}) expires {expires}: {days} day{} left",
                cert.subject,
                cert.serial,
                if days == 1 { "" } else { "s" }
            )
        };
        tracing::warn!(monitor = %self.name, %detail, "certificate expires soon");
        Event {
            kind: EventKind::CertExpiry,
            service: self.name.clone(),
            url: redacted(&snapshot.url).into_owned(),
            detail,
            latency: snapshot.latency,
            last_seen: snapshot.last_seen,
            outage: None,
            outage_start: None,
            time,
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
            // Passwords never leave the process (SPEC §9.3).
            url: redacted(&snapshot.url).into_owned(),
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
                // Logged with its detail where it is made (`cert_event`); reminders and
                // flapping come from the alert policy, never from a transition.
                EventKind::CertExpiry | EventKind::Reminder | EventKind::Flapping => {}
            }
        }
    }
}

/// `not_after` (unix s) in RFC 3339, or `unix time <n>` outside 1970..=9999, where
/// humantime cannot (and a certificate or an agent may say anything).
fn rfc3339(not_after: i64) -> String {
    /// 10000-01-01T00:00:00Z.
    const YEAR_10000: i64 = 253_402_300_800;
    match u64::try_from(not_after) {
        Ok(secs) if not_after < YEAR_10000 => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs))
                .to_string()
        }
        _ => format!("unix time {not_after}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_outside_humantimes_range_are_unix_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800), "unix time 253402300800");
        assert_eq!(rfc3339(-1), "unix time -1");
    }

    #[test]
    fn local_results_are_logged_once_a_minute_with_the_count_between() {
        let t0 = Instant::now();
        let mut log = LocalLog::default();
        let mut noted = Vec::new();
        for secs in [0, 1, 30, 59, 60, 61, 200, 200] {
            noted.push(log.note(t0 + Duration::from_secs(secs)));
        }
        assert_eq!(
            noted,
            [Some(0), None, None, None, Some(3), None, Some(1), None]
        );
    }
}
