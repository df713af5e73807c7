//! The writer: one thread that owns the write connection and commits what
//! [`Store::record`](crate::Store) queued, one transaction per batch.
//!
//! A plain `std::thread` rather than a tokio task: SQLite calls block, the store is
//! used from synchronous code (the `Outbox` port, `Drop`), and a thread needs no
//! runtime to exist when the store is opened or dropped. Its whole cost is one parked
//! thread.
//!
//! Batching: `record` puts the state in a map (the last one of a monitor wins) and the
//! events in a list, and wakes the writer only when the batch was empty or carries
//! events. The writer then waits one [`tick`](crate::StoreOptions::tick) for more
//! states, unless events, a flush or shutdown are pending, and commits everything
//! pending in one transaction: states and the outbox rows of their events together
//! (SPEC §9.1). So 10 000 monitors cost about ten transactions a second, not 10 000.

use std::{
    collections::HashMap,
    mem,
    path::PathBuf,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use health_types::{Clock, Event, MonitorState, Status, StatusChange};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::{
    history::{HistoryBatch, HistoryPending},
    history_write::{HistoryWriter, PRUNE_CHUNK_ROWS, PrunePass, prune_chunk},
    time::{to_unix_ms, whole_ms},
};

/// Maps a monitor to the notifiers its events go to.
pub(crate) type Router = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// Called on the writer after each commit with the notifiers that got new entries.
pub(crate) type CommitHook = Arc<dyn Fn(&[String]) + Send + Sync>;

/// The longest the writer sleeps while idle before it checks whether pruning is due.
const IDLE_PRUNE_CHECK: Duration = Duration::from_secs(60 * 60);

/// The longest the writer sleeps while idle with open history minutes: it then closes
/// those the clock has left behind, so that they are written.
const IDLE_SWEEP: Duration = Duration::from_secs(60);

/// Locks `mutex`, taking over a poisoned one: every critical section here leaves the
/// data consistent (plain inserts and swaps), so a panic elsewhere poisons nothing real.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What `record` queued and the writer's progress, behind one mutex.
#[derive(Default)]
pub(crate) struct Pending {
    /// The newest state of each monitor recorded since the last batch was taken.
    pub(crate) states: HashMap<String, MonitorState>,
    /// The newest alert-policy state of each monitor that has one recorded since then
    /// (SPEC §9.5), as stored: JSON, or `None` for NULL (nothing to keep).
    pub(crate) alerts: HashMap<String, Option<String>>,
    /// The events recorded since then, in order, with the monitor that emitted them.
    pub(crate) events: Vec<(String, Event)>,
    /// A flush asked for the pending batch to be committed now.
    pub(crate) flush: bool,
    /// The store is being dropped: commit what is pending and stop.
    pub(crate) shutdown: bool,
    /// The number of batches taken by the writer so far (the newest one's number).
    pub(crate) taken: u64,
    /// The number of the newest batch the writer finished (committed or failed).
    pub(crate) finished: u64,
    /// The number of the newest batch whose commit failed, and why.
    pub(crate) failed: Option<(u64, Arc<rusqlite::Error>)>,
    /// Batches committed (for tests: one transaction per batch).
    pub(crate) commits: u64,
    /// The writer thread has ended: nothing more is committed.
    pub(crate) stopped: bool,
    /// Said once that records are dropped because the writer stopped.
    pub(crate) told_stopped: bool,
    /// Where events go; none set means to no notifier.
    pub(crate) router: Option<Router>,
    /// Told about notifiers with new entries after each commit.
    pub(crate) hook: Option<CommitHook>,
    /// History (SPEC §9.2) waiting in memory.
    pub(crate) history: HistoryPending,
    /// History pruning passes completed (for tests).
    pub(crate) history_prune_passes: u64,
    /// History pruning chunks (transactions) committed (for tests).
    pub(crate) history_prune_chunks: u64,
    /// Stop the writer now, committing nothing more (for tests: a killed process).
    pub(crate) killed: bool,
}

impl Pending {
    /// Nothing is waiting to be committed.
    pub(crate) fn is_empty(&self) -> bool {
        self.states.is_empty()
            && self.alerts.is_empty()
            && self.events.is_empty()
            && self.history.next.is_empty()
    }

    /// Whether what is reported now must be dropped because the writer has stopped;
    /// says so once.
    pub(crate) fn refuse(&mut self, path: &std::path::Path) -> bool {
        if self.stopped && !self.told_stopped {
            self.told_stopped = true;
            tracing::error!(
                path = %path.display(),
                "the store's writer has stopped: monitor states, events and history are no longer saved"
            );
        }
        self.stopped
    }

    /// What is pending must be committed without waiting for the tick.
    fn urgent(&self) -> bool {
        !self.events.is_empty() || self.flush || self.shutdown
    }
}

/// The state shared by the store and its writer.
#[derive(Default)]
pub(crate) struct Shared {
    /// The pending batch and the writer's progress.
    pub(crate) pending: Mutex<Pending>,
    /// Wakes the writer: something to commit, a flush, or shutdown.
    pub(crate) wake: Condvar,
    /// Wakes flushers: a batch was finished, or the writer stopped.
    pub(crate) finished: Condvar,
    /// Held by the writer while it commits and drops the committed history batch from
    /// memory, and by a history reader while it copies memory and begins its read
    /// snapshot: so a reader sees each batch either in memory or in the file, never in
    /// both or neither. Lock order: connection, then gate, then pending.
    pub(crate) gate: Mutex<()>,
}

/// What the writer needs besides the shared state.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<Mutex<Connection>>,
    pub(crate) path: PathBuf,
    pub(crate) tick: Duration,
    pub(crate) retention: Duration,
    pub(crate) history_retention: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) history: HistoryWriter,
}

/// Marks the writer stopped when its thread ends, by return or by panic, so that
/// flushers do not wait for it forever.
struct StoppedOnExit<'a>(&'a Shared);

impl Drop for StoppedOnExit<'_> {
    fn drop(&mut self) {
        lock(&self.0.pending).stopped = true;
        self.0.finished.notify_all();
    }
}

/// One outbox row to insert.
struct Row {
    notifier: String,
    service: Arc<str>,
    kind: &'static str,
    outage_start: Option<i64>,
    event: Arc<str>,
}

impl Writer {
    /// The writer thread's body: commits batches until shutdown, then commits what is
    /// left and returns. Between batches it prunes history one chunk at a time.
    pub(crate) fn run(mut self) {
        let shared = self.shared.clone();
        let _stopped = StoppedOnExit(&shared);
        let prune_every = self.retention.min(IDLE_PRUNE_CHECK);
        let mut next_prune = self.prune_if_due(self.clock.now(), prune_every);
        // The batch being committed; swapped with the pending one so that both keep
        // their capacity from tick to tick.
        let mut states = HashMap::new();
        let mut alerts = HashMap::new();
        let mut events = Vec::new();
        let mut closing = false;
        let mut pending = lock(&shared.pending);
        loop {
            while pending.is_empty() && !pending.shutdown {
                // A flush with nothing pending has nothing to wait for.
                pending.flush = false;
                if self.history.prune.is_some() {
                    // Nothing to commit: go on pruning, one short transaction at a time.
                    drop(pending);
                    self.prune_history_chunk();
                    pending = lock(&shared.pending);
                    continue;
                }
                let idle = if pending.history.open.is_empty() {
                    IDLE_PRUNE_CHECK
                } else {
                    IDLE_SWEEP
                };
                let (guard, waited) = shared
                    .wake
                    .wait_timeout(pending, idle)
                    .unwrap_or_else(PoisonError::into_inner);
                pending = guard;
                if waited.timed_out() {
                    drop(pending);
                    next_prune = self.prune_if_due(next_prune, prune_every);
                    pending = lock(&shared.pending);
                    let now = to_unix_ms(self.clock.now());
                    pending.history.sweep(now);
                }
            }
            if pending.killed {
                return;
            }
            if pending.shutdown && !closing {
                closing = true;
                self.end_runs(&mut pending);
            }
            if pending.is_empty() {
                // Shutdown with nothing left to commit.
                return;
            }
            if !pending.urgent() {
                // States only: gather more for one tick. An event, a flush or shutdown
                // wakes us early; so may a spurious wakeup, which only commits early.
                pending = self.wait_tick(pending);
                if pending.killed {
                    return;
                }
            }
            let now = self.clock.now();
            pending.history.sweep(to_unix_ms(now));
            mem::swap(&mut pending.states, &mut states);
            mem::swap(&mut pending.alerts, &mut alerts);
            mem::swap(&mut pending.events, &mut events);
            let history = pending.history.take();
            pending.flush = false;
            pending.taken += 1;
            let batch = pending.taken;
            let shutdown = pending.shutdown;
            let router = pending.router.clone();
            let hook = pending.hook.clone();
            drop(pending);

            let outcome = self.commit(&states, &alerts, &events, &history, router.as_ref(), now);
            // Pruning (when due) happens before the batch counts as finished, so that a
            // flush returns with the store as pruned as this commit's time says.
            if outcome.is_ok() {
                next_prune = self.prune_if_due(next_prune, prune_every);
            }

            pending = lock(&shared.pending);
            pending.finished = batch;
            let notifiers = match outcome {
                Ok(notifiers) => {
                    pending.commits += 1;
                    states.clear();
                    alerts.clear();
                    events.clear();
                    notifiers
                }
                Err(error) => {
                    tracing::error!(
                        path = %self.path.display(),
                        error = %error,
                        states = states.len(),
                        events = events.len(),
                        changes = history.changes.len(),
                        minutes = history.closed.len(),
                        "cannot commit to the store; keeping the batch to retry"
                    );
                    // Put the batch back under what was recorded since: a newer state
                    // of a monitor wins, and the events keep their order.
                    for (monitor, state) in states.drain() {
                        pending.states.entry(monitor).or_insert(state);
                    }
                    for (monitor, alert) in alerts.drain() {
                        pending.alerts.entry(monitor).or_insert(alert);
                    }
                    events.append(&mut pending.events);
                    mem::swap(&mut pending.events, &mut events);
                    pending.history.restore(history);
                    pending.failed = Some((batch, Arc::new(error)));
                    Vec::new()
                }
            };
            let failed_now = pending.failed.as_ref().is_some_and(|(b, _)| *b == batch);
            shared.finished.notify_all();
            if failed_now && shutdown {
                tracing::error!(
                    path = %self.path.display(),
                    states = pending.states.len(),
                    events = pending.events.len(),
                    "the store is closing and its last batch cannot be committed: it is lost"
                );
                return;
            }
            drop(pending);

            if let Some(hook) = hook.filter(|_| !notifiers.is_empty()) {
                hook(&notifiers);
            }
            if !shutdown && self.history.prune.is_some() {
                // Under steady load the queue is never empty: prune a chunk per batch.
                self.prune_history_chunk();
            }

            pending = lock(&shared.pending);
            if failed_now && !pending.shutdown {
                // Do not spin on a failing disk: wait a tick before the retry.
                pending = self.wait_tick(pending);
            }
        }
    }

    /// The store is closing: every run of this process ends now with a `stopped`
    /// change (unless its last change was one), and every open minute is written as
    /// far as it got.
    fn end_runs(&self, pending: &mut Pending) {
        let now = whole_ms(self.clock.now());
        let mut last = self.history.last_to.clone();
        for (monitor, change) in &pending.history.next.changes {
            last.insert(monitor.clone(), change.to);
        }
        let mut ended: Vec<_> = last
            .into_iter()
            .filter(|(_, to)| *to != Status::Stopped)
            .collect();
        ended.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (monitor, to) in ended {
            let stop = StatusChange {
                time: now,
                from: to,
                to: Status::Stopped,
                detail: String::new(),
            };
            pending.history.next.changes.push((monitor, stop));
        }
        pending.history.close_all();
    }

    /// Waits one tick on the pending batch, or less when the writer is woken.
    fn wait_tick<'a>(&self, pending: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
        self.shared
            .wake
            .wait_timeout(pending, self.tick)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Commits `states`, the outbox rows of `events` and `history` in one
    /// transaction; returns the notifiers that got new rows, sorted.
    fn commit(
        &mut self,
        states: &HashMap<String, MonitorState>,
        alerts: &HashMap<String, Option<String>>,
        events: &[(String, Event)],
        history: &HistoryBatch,
        router: Option<&Router>,
        now: SystemTime,
    ) -> rusqlite::Result<Vec<String>> {
        // Route and serialize before the transaction: no caller code and no JSON run
        // while the write lock is held.
        let mut routes: HashMap<&str, Vec<String>> = HashMap::new();
        let mut rows = Vec::new();
        for (monitor, event) in events {
            let notifiers = routes.entry(monitor.as_str()).or_insert_with(|| {
                let mut notifiers = router.map(|route| route(monitor)).unwrap_or_default();
                notifiers.sort_unstable();
                notifiers.dedup();
                notifiers
            });
            if notifiers.is_empty() {
                continue;
            }
            // The outage start names the outage (with the service): store it at the
            // precision a restored MonitorState has, so that a `down` from before a
            // restart and the `up` after it name the same outage.
            let mut event = event.clone();
            event.outage_start = event.outage_start.map(whole_ms);
            let json: Arc<str> = match serde_json::to_string(&event) {
                Ok(json) => json.into(),
                Err(error) => {
                    tracing::error!(
                        path = %self.path.display(),
                        monitor = %monitor,
                        error = %error,
                        "cannot serialize an event for the outbox; it is not notified"
                    );
                    continue;
                }
            };
            let outage_start = event.outage_start.map(to_unix_ms);
            for notifier in notifiers.iter() {
                rows.push(Row {
                    notifier: notifier.clone(),
                    service: event.service.clone(),
                    kind: event.kind.as_str(),
                    outage_start,
                    event: json.clone(),
                });
            }
        }
        if router.is_none() && !events.is_empty() {
            tracing::warn!(
                path = %self.path.display(),
                events = events.len(),
                "events committed before a router was set go to no notifier"
            );
        }

        let now = to_unix_ms(now);
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut put_state = tx.prepare_cached(
                "INSERT INTO monitor_state
                     (monitor, status, failures, passes, errors, down_sent, outage_start, last_seen,
                      cert_warned)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (monitor) DO UPDATE SET
                     status = excluded.status,
                     failures = excluded.failures,
                     passes = excluded.passes,
                     errors = excluded.errors,
                     down_sent = excluded.down_sent,
                     outage_start = excluded.outage_start,
                     last_seen = excluded.last_seen,
                     cert_warned = excluded.cert_warned",
            )?;
            for (monitor, state) in states {
                put_state.execute(params![
                    monitor,
                    state.status.as_str(),
                    state.failures,
                    state.passes,
                    state.errors,
                    state.down_sent,
                    state.outage_start.map(to_unix_ms),
                    state.last_seen.map(to_unix_ms),
                    state.cert_warned,
                ])?;
            }
            // A monitor's alert state is recorded with a state of it, so its row exists.
            let mut put_alert =
                tx.prepare_cached("UPDATE monitor_state SET alert = ?2 WHERE monitor = ?1")?;
            for (monitor, alert) in alerts {
                put_alert.execute(params![monitor, alert])?;
            }
            let mut put_row = tx.prepare_cached(
                "INSERT INTO outbox (notifier, service, kind, outage_start, event, created, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
            )?;
            for row in &rows {
                put_row.execute(params![
                    row.notifier,
                    &*row.service,
                    row.kind,
                    row.outage_start,
                    &*row.event,
                    now,
                ])?;
            }
        }
        let created = self.history.write(&tx, history)?;
        {
            // Readers see the history batch in memory until it is in the file.
            let _gate = lock(&self.shared.gate);
            tx.commit()?;
            lock(&self.shared.pending).history.inflight = None;
        }
        drop(conn);
        self.history.committed(history, created);
        let mut notifiers: Vec<String> = rows.into_iter().map(|row| row.notifier).collect();
        notifiers.sort_unstable();
        notifiers.dedup();
        Ok(notifiers)
    }

    /// Prunes finished outbox entries older than the retention, and starts a history
    /// pruning pass, when `due` has come; returns when the next pruning is due.
    fn prune_if_due(&mut self, due: SystemTime, every: Duration) -> SystemTime {
        let now = self.clock.now();
        if now < due {
            return due;
        }
        if self.history.prune.is_none() {
            self.history.prune = Some(PrunePass::new(now, self.history_retention));
        }
        match prune(&lock(&self.conn), now, self.retention) {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::debug!(path = %self.path.display(), pruned, "pruned finished notifications");
            }
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %error,
                    "cannot prune finished notifications; trying again later"
                );
            }
        }
        now + every
    }

    /// Runs one chunk of the history pruning pass under way.
    fn prune_history_chunk(&mut self) {
        let Some(mut pass) = self.history.prune else {
            return;
        };
        let outcome = prune_chunk(&mut lock(&self.conn), &mut pass, PRUNE_CHUNK_ROWS);
        match outcome {
            Ok(chunk) => {
                for name in &chunk.forgotten {
                    self.history.ids.remove(name.as_str());
                }
                self.history.prune = (!chunk.done).then_some(pass);
                if chunk.deleted > 0 {
                    tracing::debug!(
                        path = %self.path.display(),
                        deleted = chunk.deleted,
                        "pruned old history"
                    );
                }
                let mut pending = lock(&self.shared.pending);
                pending.history_prune_chunks += 1;
                if chunk.done {
                    pending.history_prune_passes += 1;
                    self.shared.finished.notify_all();
                }
            }
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %error,
                    "cannot prune old history; trying again later"
                );
                self.history.prune = None;
            }
        }
    }
}

/// Deletes outbox entries finished more than `retention` before `now`, but for a
/// given-up `down` whose outage is still the monitor's current one: the `up` that ends
/// it still needs to know.
pub(crate) fn prune(
    conn: &Connection,
    now: SystemTime,
    retention: Duration,
) -> rusqlite::Result<usize> {
    let cutoff = now.checked_sub(retention).map_or(i64::MIN, to_unix_ms);
    conn.prepare_cached(
        "DELETE FROM outbox
         WHERE state <> 'pending' AND done < ?1
           AND NOT (state = 'given_up' AND kind = 'down' AND EXISTS (
               SELECT 1 FROM monitor_state AS m
               WHERE m.monitor = outbox.service AND m.outage_start = outbox.outage_start))",
    )?
    .execute([cutoff])
}

/// The alert policy's state as stored: JSON, or NULL when there is nothing to keep (SPEC
/// §9.5; schema version 4).
pub(crate) fn alert_json(alert: &health_types::AlertState) -> Option<String> {
    if alert.is_empty() {
        return None;
    }
    match serde_json::to_string(alert) {
        Ok(json) => Some(json),
        Err(error) => {
            // Times and strings always serialize; were one not to, the policy would
            // start afresh for this monitor after a restart, which this says.
            tracing::error!(%error, "cannot store the alert policy's state");
            None
        }
    }
}
