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
        Arc, Mutex, MutexGuard,
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
    sync::{Notify, oneshot, watch},
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
///
/// Kept small, for 100 000 idle monitors each hold one (232 bytes; with its snapshot,
/// URL and name, an idle monitor is under 1 KiB, `examples/idle_cost.rs`): what few
/// monitors use is boxed apart and allocated only for those that do ([`Hooks`] when
/// built with a sink or a clock, [`Cold`] on first need, the state last recorded only
/// with a state sink), the URL and the outage's start are read from the snapshot rather
/// than kept twice, and the signal that stops a check in flight is the scheduler's.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) config: Arc<HealthCheckConfig>,
    pub(crate) probe: Arc<dyn Probe>,
    /// `None` when the builder set no sink and no clock.
    hooks: Option<Box<Hooks>>,
    last_seen: Arc<LastSeenRegistry>,
    /// This monitor's slot in `last_seen`: a healthy result is one atomic store.
    seen: Arc<Slot>,
    /// The current view; also the one place the URL and the outage's start are kept.
    pub(crate) snapshot: ArcSwap<Snapshot>,
    /// The latencies of its results, beside the snapshot rather than in it.
    pub(crate) latencies: LatencyCounter,
    /// Bumped on every start and stop, and when [`check_now`](Self::check_now) puts a
    /// check due now in place of the one the scheduler holds; a scheduled check of an
    /// older value is skipped, and a check in flight woken by its scheduler's stop
    /// signal stops when its value is no longer the current one.
    generation: AtomicU64,
    /// Written only by the one check in flight and by lifecycle calls; never held
    /// across an await.
    run: Mutex<RunState>,
}

/// What the builder may add to a monitor and most monitors go without: the sinks, and a
/// clock other than the system's.
#[derive(Debug)]
struct Hooks {
    sink: Option<Arc<dyn EventSink>>,
    state_sink: Option<Arc<dyn StateSink>>,
    history: Option<Arc<dyn HistorySink>>,
    /// Held from the moment a report to `history` is decided (under the run lock) until
    /// it is made (outside it), so that reports reach the sink in order.
    history_turn: Mutex<()>,
    /// `None`: [`SystemClock`].
    clock: Option<Arc<dyn Clock>>,
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
    /// `None`: [`SystemClock`].
    pub(crate) clock: Option<Arc<dyn Clock>>,
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
            clock: None,
            last_seen: None,
        }
    }
}

/// How often, at most, a `last_seen` that changed alone is recorded (see the module docs).
const LAST_SEEN_EVERY: Duration = Duration::from_secs(60);

/// How often, at most, one monitor logs a local result: a storm of them (the process out
/// of file descriptors) logs one line per monitor per minute, with the count in between.
const LOCAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// The `check_now` callers waiting for the result of the check in flight.
#[derive(Debug)]
struct Flight {
    waiters: Vec<oneshot::Sender<CheckResult>>,
}

impl Flight {
    /// Hands `result` to every caller waiting.
    fn answer(self, result: &CheckResult) {
        for waiter in self.waiters {
            // A caller that went away (its future dropped) needs nothing.
            let _ = waiter.send(result.clone());
        }
    }
}

/// A run that [`Shared::stop_run`] stopped: the scheduler it ran on, whose stop signal
/// wakes its check in flight.
struct Stopped {
    scheduler: Option<Scheduler<Shared>>,
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
    /// The scheduler of the last start, for `restart` (and its stop signal).
    scheduler: Option<Scheduler<Shared>>,
    /// The state last handed to the state sink, or restored: what a change is measured
    /// against. `None` without a state sink, which is the only reader.
    recorded: Option<Box<MonitorState>>,
    /// `None` until first needed.
    cold: Option<Box<Cold>>,
    /// A check of the current run is in flight or asked for by `check_now` (then a
    /// `check_now` joins it, waiting in [`Cold::waiters`]); `false` between checks.
    in_flight: bool,
    jitter_pending: bool,
    /// The machine was restored and not started yet: the first start keeps its state.
    restored: bool,
    /// The status last reported to the history sink (or, before any report, the one
    /// shown): where the next change reported starts from.
    reported: Status,
}

/// The part of a monitor's run state that few monitors need, boxed apart and allocated
/// the first time one does: a `check_now` caller, a local result, a certificate near its
/// expiry, or a subscriber.
#[derive(Debug, Default)]
struct Cold {
    /// The `check_now` callers waiting for the check in flight.
    waiters: Vec<oneshot::Sender<CheckResult>>,
    /// The rate limit of local results' log lines (kept across restarts).
    local_log: LocalLog,
    /// The `not_after` of the last certificate warned of (persisted, SPEC §9.4).
    cert_warned: Option<i64>,
    /// The sender of [`subscribe`](Shared::subscribe)'s receivers, while any is alive: a
    /// tokio watch channel is a few hundred bytes, so the last receiver dropped takes it
    /// with it at the next publish.
    watch: Option<watch::Sender<Arc<Snapshot>>>,
}

impl RunState {
    /// The cold part, allocated on first use.
    fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    /// The `not_after` of the last certificate warned of.
    fn cert_warned(&self) -> Option<i64> {
        self.cold.as_ref().and_then(|cold| cold.cert_warned)
    }

    /// Ends the check in flight: the callers waiting for its result, if any.
    fn land(&mut self) -> Option<Flight> {
        self.in_flight = false;
        let waiters = std::mem::take(&mut self.cold.as_mut()?.waiters);
        (!waiters.is_empty()).then_some(Flight { waiters })
    }
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
        let hooks =
            (sink.is_some() || state_sink.is_some() || history.is_some() || clock.is_some()).then(
                || {
                    Box::new(Hooks {
                        sink,
                        state_sink,
                        history,
                        history_turn: Mutex::new(()),
                        clock,
                    })
                },
            );
        let with_state_sink = hooks.as_ref().is_some_and(|h| h.state_sink.is_some());
        let mut run = RunState {
            machine: StateMachine::new(&config),
            scheduler: None,
            recorded: with_state_sink.then(Box::default),
            cold: None,
            in_flight: false,
            jitter_pending: false,
            restored: false,
            reported: Status::Unknown,
        };
        let mut outage_start = None;
        if let Some(state) = restore {
            let wall = hooks_clock(hooks.as_deref()).now();
            run.machine = StateMachine::restore(&config, &state, Instant::now(), wall);
            run.restored = true;
            // The store closed the previous process's run with `stopped` (on close, or at
            // its next open after a kill): the chain goes on from there.
            run.reported = Status::Stopped;
            if state.cert_warned.is_some() {
                run.cold().cert_warned = state.cert_warned;
            }
            // The registry learns the restored time unless it knows a later one.
            if let Some(at) = state.last_seen
                && last_seen.get(&name) < Some(at)
            {
                last_seen.record_in(&seen, &name, at);
            }
            outage_start = state.outage_start.filter(|_| run.machine.in_outage());
            if let Some(recorded) = &mut run.recorded {
                **recorded = state;
            }
        }
        let mut snapshot = Snapshot::fresh(name.clone(), url, last_seen.get(&name));
        if run.restored {
            // Not started yet, but no longer unknown: the state it resumes from.
            show_machine(&mut snapshot, &run.machine);
            snapshot.outage_start = outage_start;
        }
        Shared {
            run: Mutex::new(run),
            seen,
            name,
            config,
            probe,
            hooks,
            last_seen,
            snapshot: ArcSwap::from_pointee(snapshot),
            latencies: LatencyCounter::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The event sink, if any.
    fn sink(&self) -> Option<&dyn EventSink> {
        self.hooks.as_ref()?.sink.as_deref()
    }

    /// The state sink, if any.
    fn state_sink(&self) -> Option<&dyn StateSink> {
        self.hooks.as_ref()?.state_sink.as_deref()
    }

    /// The history sink, if any.
    fn history(&self) -> Option<&dyn HistorySink> {
        self.hooks.as_ref()?.history.as_deref()
    }

    /// The wall clock.
    fn clock(&self) -> &dyn Clock {
        hooks_clock(self.hooks.as_deref())
    }

    /// The URL being checked.
    pub(crate) fn url(&self) -> Arc<Url> {
        self.snapshot.load().url.clone()
    }

    /// Which of its scheduler's stop signals this monitor's checks wait on: its address,
    /// which never changes while it lives.
    fn stop_key(&self) -> usize {
        std::ptr::from_ref(self).addr()
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
        if self.history().is_none() || run.reported == to {
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
        let hooks = self.hooks.as_ref()?;
        if hooks.history.is_none() || (note.observation.is_none() && note.changes.is_empty()) {
            return None;
        }
        // A sink that panicked poisoned nothing that matters: the lock guards no data.
        let turn = hooks
            .history_turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some((turn, note))
    }

    /// Hands a report to the history sink. Call without the run lock.
    fn report(&self, report: HistoryReport<'_>) {
        let (Some((_turn, note)), Some(sink)) = (report, self.history()) else {
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

    /// Publishes a new snapshot made from the current one. Call with the run lock held
    /// (`cold` is its run state's), so that snapshots are published in the order the
    /// changes happened.
    fn publish(&self, cold: Option<&mut Cold>, change: impl FnOnce(&mut Snapshot)) {
        let mut next = Snapshot::clone(&self.snapshot.load());
        change(&mut next);
        self.store(cold, next);
    }

    /// As [`publish`](Self::publish), with a new detail moved in rather than the current
    /// one copied and then overwritten (a check's result: one allocation less).
    fn publish_result(
        &self,
        cold: Option<&mut Cold>,
        detail: String,
        change: impl FnOnce(&mut Snapshot),
    ) {
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
        self.store(cold, next);
    }

    fn store(&self, cold: Option<&mut Cold>, next: Snapshot) {
        let next = Arc::new(next);
        self.snapshot.store(next.clone());
        if let Some(watch) = cold.map(|cold| &mut cold.watch)
            && let Some(tx) = watch
        {
            if tx.receiver_count() == 0 {
                // Nobody watches; `subscribe` makes a new channel when someone does.
                *watch = None;
            } else {
                tx.send_replace(next);
            }
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
            let wall = self.clock().now();
            let last_seen = self.last_seen.get(&self.name);
            let current = self.snapshot.load();
            let mut next = Snapshot {
                started: Some(wall),
                started_at: Some(now),
                running: true,
                next_check: Some(now),
                // Kept by restarts.
                outage_start: current.outage_start,
                // Like `last_seen`, a time stamp of what happened before: kept.
                last_check: current.last_check,
                ..Snapshot::fresh(
                    current.name.clone(),
                    current.url.clone(),
                    last_seen.or(current.last_seen),
                )
            };
            show_machine(&mut next, &run.machine);
            self.store(run.cold.as_deref_mut(), next);
            let mut note = HistoryNote::default();
            self.change_to(&mut run, &mut note, Status::Starting, wall, String::new);
            (generation, self.history_turn(note))
        };
        self.report(report);
        tracing::debug!(monitor = %self.name, url = %redacted(&self.url()), "monitor started");
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
        if let Some(stopped) = self.stop_run(None, waiters, StopCause::Finished(reason.to_owned()))
        {
            // A monitor that ran has a scheduler: the one of the run just stopped, read
            // under the same lock as the stop (a `start` on another scope may follow at
            // once). Its check in flight, if any, waits on this signal, and ends when it
            // sees the run is no longer its own.
            if let Some(scheduler) = stopped.scheduler {
                scheduler.stop_signal(self.stop_key()).notify_waiters();
            }
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
                // No first check will answer them: they fail.
                drop(run.land());
            }
        }
        started
    }

    /// Replaces the URL (the next check uses it) once the probe accepts it.
    pub(crate) fn update_url(&self, url: Url) -> Result<(), MonitorError> {
        self.probe.validate_url(&url)?;
        let url = Arc::new(url);
        let mut run = self.lock_run();
        self.publish(run.cold.as_deref_mut(), |s| s.url = url);
        Ok(())
    }

    /// A receiver of every snapshot published from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        // Under the run lock, as snapshots are published: none is missed in between.
        let mut run = self.lock_run();
        run.cold()
            .watch
            .get_or_insert_with(|| watch::Sender::new(self.snapshot.load_full()))
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
        run.in_flight = true;
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
            if run.in_flight {
                run.cold().waiters.push(tx);
                None
            } else {
                let scheduler = run.scheduler.clone().ok_or_else(not_running)?;
                // The check the scheduler holds belongs to the old value: it is skipped
                // when it comes due, and this one takes its place.
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                run.in_flight = true;
                run.cold().waiters.push(tx);
                self.publish(run.cold.as_deref_mut(), |s| s.next_check = Some(now));
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

    /// The signal of `scheduler` that is notified when this monitor is finished or
    /// restarted (and when other monitors that share it are): a check in flight waits
    /// on it, and ends when it is no longer [current](Self::is_current). Enable a wait
    /// before [`begin_check`](Self::begin_check), so that a finish in between is never
    /// missed.
    pub(crate) fn stop_signal<'a>(&self, scheduler: &'a Scheduler<Shared>) -> &'a Notify {
        scheduler.stop_signal(self.stop_key())
    }

    /// Whether `generation` is the current run (not stopped, restarted, or its scheduled
    /// check replaced by `check_now`'s since). While a check of it is in flight, only a
    /// stop makes it stale.
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) == generation
    }

    /// Marks run `generation` stopped because its scope was cancelled or closed.
    pub(crate) fn stop_by_scope(&self, generation: u64) {
        if self
            .stop_run(Some(generation), Waiters::Fail, StopCause::Scope)
            .is_some()
        {
            tracing::debug!(monitor = %self.name, "monitor stopped: scope cancelled");
        }
    }

    /// Stops the current run (only if it is `generation`, when given): status Stopped,
    /// scheduled checks invalidated, `check_now` callers failed or kept for the next run
    /// as `waiters` says, a `last_seen` newer than the recorded one recorded, `cause`
    /// shown. Returns, when a running monitor was stopped, the scheduler of that run.
    fn stop_run(
        &self,
        generation: Option<u64>,
        waiters: Waiters,
        cause: StopCause,
    ) -> Option<Stopped> {
        let (flush, report, stopped) = {
            let mut run = self.lock_run();
            let current = self.generation.load(Ordering::SeqCst);
            let snapshot = self.snapshot.load();
            if generation.is_some_and(|g| g != current) || !snapshot.running {
                return None;
            }
            let stopped = Stopped {
                scheduler: run.scheduler.clone(),
            };
            self.generation.fetch_add(1, Ordering::SeqCst);
            run.machine.stop();
            // The check in flight (if any) is dropped. Its `check_now` callers learn it
            // from their channels, or, kept, are answered by the next run's first check.
            match waiters {
                Waiters::Fail => drop(run.land()),
                Waiters::Keep => {
                    run.in_flight = run.cold.as_ref().is_some_and(|c| !c.waiters.is_empty());
                }
            }
            // The status recorded stays the last check's (see the module docs).
            let flush = match run.recorded.as_deref_mut() {
                Some(recorded) if snapshot.last_seen != recorded.last_seen => {
                    recorded.last_seen = snapshot.last_seen;
                    Some(recorded.clone())
                }
                _ => None,
            };
            self.publish(run.cold.as_deref_mut(), |s| {
                s.status = Status::Stopped;
                s.running = false;
                s.next_check = None;
                s.stop_cause = Some(cause);
            });
            let mut note = HistoryNote::default();
            if self.history().is_some() {
                let wall = self.clock().now();
                self.change_to(&mut run, &mut note, Status::Stopped, wall, String::new);
            }
            (flush, self.history_turn(note), stopped)
        };
        if let Some(state) = flush {
            self.record(&state, &[]);
        }
        self.report(report);
        Some(stopped)
    }

    /// Hands `state` and `events` to the state sink, if any. Call without the run lock.
    fn record(&self, state: &MonitorState, events: &[Event]) {
        if let Some(sink) = self.state_sink() {
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
        let wall = self.clock().now();

        let (transition, next, snapshot, outage_start, record, answer, report, cert_due) = {
            let mut run = self.lock_run();
            if !self.is_current(generation) {
                return;
            }
            // `check_now` callers get the result as the monitor took it in.
            let answer = run.land().map(|flight| (flight, result.clone()));
            self.latencies.observe(result.latency);
            // The snapshot is where the outage's start is kept (and, under the run lock,
            // the current one).
            let before = self.snapshot.load().outage_start;
            let transition = run.machine.observe(verdict, ended);
            let cert_due = self.cert_due(&mut run, result.cert.as_deref(), wall);
            let outage = if run.machine.in_outage() {
                before.or(Some(wall))
            } else {
                None
            };
            // The outage a `down` or an `up` of this check belongs to (an `up` ends it).
            let outage_start = before.or(outage);
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
            if self.history().is_some() {
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
            let RunState { machine, cold, .. } = &mut *run;
            let machine = &*machine;
            let transition = &transition;
            self.publish_result(cold.as_deref_mut(), result.detail, |s| {
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
            let cert_warned = run.cert_warned();
            let RunState {
                machine, recorded, ..
            } = &mut *run;
            let record = recorded.as_deref_mut().and_then(|recorded| {
                let state = MonitorState {
                    cert_warned,
                    ..machine.state(outage, snapshot.last_seen)
                };
                let due = !transition.events.is_empty() || changed(recorded, &state);
                if due {
                    *recorded = state.clone();
                }
                due.then_some(state)
            });
            (
                *transition,
                next,
                snapshot,
                outage_start,
                record,
                answer,
                self.history_turn(note),
                cert_due,
            )
        };

        self.log(&transition, verdict, &snapshot);
        // Built only when there are events and someone takes them: a check that changes
        // nothing allocates nothing here.
        let events: Vec<Event> = if self.sink().is_some() || record.is_some() {
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
        if let Some(sink) = self.sink() {
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
            self.publish(run.cold.as_deref_mut(), |s| {
                s.results.count(Verdict::Local);
                s.next_check = Some(next);
            });
            (next, run.land(), run.cold().local_log.note(ended))
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
            .cert_warned()
            .is_some_and(|warned| cert.not_after <= warned)
            || cert.time_left(now) >= self.config.cert_expiry_warn
        {
            return None;
        }
        run.cold().cert_warned = Some(cert.not_after);
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

/// The clock of `hooks`: the system's unless the builder set one.
fn hooks_clock(hooks: Option<&Hooks>) -> &dyn Clock {
    hooks
        .and_then(|h| h.clock.as_deref())
        .unwrap_or(&SystemClock)
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
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;

    use super::*;
    use crate::Scope;

    /// A probe whose checks never end; counts the checks begun and dropped.
    #[derive(Debug, Default)]
    struct Hanging {
        begun: AtomicUsize,
        dropped: Arc<AtomicUsize>,
    }

    /// Counts a check future dropped.
    struct Dropped(Arc<AtomicUsize>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Probe for Hanging {
        async fn check(&self, _url: &Url) -> Result<CheckResult, ProbeError> {
            let _dropped = Dropped(self.dropped.clone());
            self.begun.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
    }

    fn shared(name: &str, probe: Arc<dyn Probe>) -> Arc<Shared> {
        let url = Url::parse("tcp://127.0.0.1:1").expect("a valid URL");
        let mut parts = Parts::new(name.into(), url, probe);
        parts.last_seen = Some(Arc::new(LastSeenRegistry::new()));
        Arc::new(Shared::new(parts))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_only_its_own_check_among_those_sharing_its_signal() {
        let probe = Arc::new(Hanging::default());
        let scope = Scope::new();
        let scheduler = scope.scheduler();
        // More monitors than signals: two of them share one.
        let monitors: Vec<Arc<Shared>> = (0..=crate::scheduler::STOP_SIGNALS)
            .map(|i| shared(&format!("m{i}"), probe.clone()))
            .collect();
        let (a, b) = monitors
            .iter()
            .enumerate()
            .find_map(|(i, a)| {
                monitors[i + 1..].iter().find_map(|b| {
                    std::ptr::eq(a.stop_signal(scheduler), b.stop_signal(scheduler))
                        .then_some((a, b))
                })
            })
            .expect("two monitors share a signal");
        for m in &monitors {
            m.start(scheduler).expect("started");
        }
        while probe.begun.load(Ordering::SeqCst) < monitors.len() {
            tokio::task::yield_now().await;
        }
        a.finish("test");
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(probe.dropped.load(Ordering::SeqCst), 1, "a's check only");
        assert!(b.snapshot.load().running && b.lock_run().in_flight);
        b.finish("test");
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(probe.dropped.load(Ordering::SeqCst), 2);
        scope.shutdown().await;
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_monitors_state_stays_within_its_budget() {
        // 100k idle monitors under 1 KiB each (`examples/idle_cost.rs`): with its
        // snapshot (280 bytes), URL and name, the shared state is what is left.
        assert!(std::mem::size_of::<Shared>() <= 232);
        assert!(std::mem::size_of::<RunState>() <= 88);
    }

    #[test]
    fn a_watch_nobody_holds_is_dropped_and_made_again_on_subscribe() {
        let m = shared("api", Arc::new(Hanging::default()));
        let url = |port: u16| Url::parse(&format!("tcp://127.0.0.1:{port}")).expect("valid");
        let first = m.subscribe();
        m.update_url(url(2)).expect("accepted");
        assert!(first.has_changed().expect("the sender lives"));
        drop(first);
        m.update_url(url(3)).expect("accepted");
        let watch = |m: &Shared| m.lock_run().cold.as_ref().and_then(|c| c.watch.clone());
        assert!(watch(&m).is_none(), "no receiver: no channel");
        let mut second = m.subscribe();
        assert_eq!(second.borrow_and_update().url.port(), Some(3));
        m.update_url(url(4)).expect("accepted");
        assert!(second.has_changed().expect("the sender lives"));
        assert_eq!(second.borrow_and_update().url.port(), Some(4));
        assert!(watch(&m).is_some());
    }

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
