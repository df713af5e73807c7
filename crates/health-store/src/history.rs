//! History (SPEC §9.2) in memory: what [`HistorySink`] queues for the writer.
//!
//! A check's [`Observation`] is added to its monitor's open minute (a mutex and a
//! hash-map update, no SQL). A minute closes when an observation of a later minute
//! arrives, or when the writer sweeps the minutes that the clock has left behind; a
//! closed minute waits in the next batch ([`HistoryPending::next`]) for the writer,
//! which writes its minute row and adds it into its hour and day rows. A
//! [`StatusChange`] waits there too and is committed with that batch, like a monitor
//! state.
//!
//! Readers merge this memory with the file: the open minutes, the closed minutes and
//! changes not yet taken, and the batch being committed ([`HistoryPending::inflight`]),
//! which leaves memory only when its commit is visible (see `Shared::gate`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use health_types::{HistorySink, LatencyBucket, Observation, StatusChange};

use crate::{
    Store,
    time::{from_unix_ms, to_unix_ms, whole_ms},
    writer::lock,
};

/// A minute in milliseconds.
pub(crate) const MINUTE_MS: i64 = 60_000;
/// An hour in milliseconds.
pub(crate) const HOUR_MS: i64 = 60 * MINUTE_MS;
/// A day in milliseconds.
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

/// `ms` rounded down to a whole `step` (also before the epoch).
pub(crate) fn floor_to(ms: i64, step: i64) -> i64 {
    ms.div_euclid(step) * step
}

/// The checks of one bucket, latencies in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Agg {
    /// Checks.
    pub(crate) count: u64,
    /// Their latencies, summed (saturating).
    pub(crate) total: u64,
    /// The shortest latency.
    pub(crate) shortest: u64,
    /// The longest latency.
    pub(crate) longest: u64,
    /// Checks that failed.
    pub(crate) failures: u64,
}

/// The longest latency history keeps for one check.
const MAX_LATENCY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

impl Agg {
    /// One check.
    pub(crate) fn of(observation: &Observation) -> Agg {
        // No check takes a day; a latency beyond that (a hostile agent's answer) is
        // kept as a day, so sums stay far from overflowing in memory and in SQL.
        let nanos =
            u64::try_from(observation.latency.min(MAX_LATENCY).as_nanos()).unwrap_or(u64::MAX);
        Agg {
            count: 1,
            total: nanos,
            shortest: nanos,
            longest: nanos,
            failures: u64::from(observation.failed),
        }
    }

    /// Adds the checks of `other`.
    pub(crate) fn add(&mut self, other: &Agg) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.count = self.count.saturating_add(other.count);
        self.total = self.total.saturating_add(other.total);
        self.shortest = self.shortest.min(other.shortest);
        self.longest = self.longest.max(other.longest);
        self.failures = self.failures.saturating_add(other.failures);
    }

    /// The bucket of these checks, starting at `start` (unix ms), `step` ms long;
    /// `None` for no checks or a start out of range.
    pub(crate) fn bucket(&self, start: i64, step: i64) -> Option<LatencyBucket> {
        if self.count == 0 {
            return None;
        }
        Some(LatencyBucket {
            time: from_unix_ms(start)?,
            step: Duration::from_millis(step.unsigned_abs()),
            count: self.count,
            sum: Duration::from_nanos(self.total),
            min: Duration::from_nanos(self.shortest),
            max: Duration::from_nanos(self.longest),
            failures: self.failures,
        })
    }
}

/// A monitor's minute (or part of one): still taking checks while open, then queued
/// to be written.
#[derive(Clone, Debug)]
pub(crate) struct Minute {
    /// The monitor (kept here too: a hash map lends its keys immutably only).
    pub(crate) monitor: Arc<str>,
    /// The minute's start, unix ms.
    pub(crate) start: i64,
    /// Its checks (so far).
    pub(crate) agg: Agg,
}

/// What one writer batch commits of history.
#[derive(Clone, Debug, Default)]
pub(crate) struct HistoryBatch {
    /// Closed minutes (a minute may appear more than once: its rows are upserted).
    pub(crate) closed: Vec<Minute>,
    /// Status changes in the order they came, times in whole milliseconds.
    pub(crate) changes: Vec<(Arc<str>, StatusChange)>,
}

impl HistoryBatch {
    /// Nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.changes.is_empty()
    }
}

/// History waiting in memory, behind the store's pending mutex.
#[derive(Debug, Default)]
pub(crate) struct HistoryPending {
    /// Each monitor's open minute.
    pub(crate) open: HashMap<Arc<str>, Minute>,
    /// What the writer's next batch takes.
    pub(crate) next: HistoryBatch,
    /// The batch the writer is committing; dropped once its commit is visible.
    pub(crate) inflight: Option<Arc<HistoryBatch>>,
    /// The minute (unix ms) up to whose start open minutes were last swept.
    swept: i64,
}

impl HistoryPending {
    /// Adds a check of `monitor` to its minute; a check of a later minute closes the
    /// open one, a late check of an earlier minute is queued as a minute of its own.
    /// Whatever the times, a monitor has one open minute, and at most one row a minute
    /// is written for it in the common case (a late check adds into a written row).
    pub(crate) fn observe(&mut self, monitor: &str, observation: &Observation) {
        let start = floor_to(to_unix_ms(observation.time), MINUTE_MS);
        let agg = Agg::of(observation);
        match self.open.get_mut(monitor) {
            Some(open) if open.start == start => open.agg.add(&agg),
            Some(open) if open.start < start => {
                let done = std::mem::replace(&mut open.agg, agg);
                self.next.closed.push(Minute {
                    agg: done,
                    ..open.clone()
                });
                open.start = start;
            }
            Some(open) => self.next.closed.push(Minute {
                monitor: open.monitor.clone(),
                start,
                agg,
            }),
            None => {
                let monitor: Arc<str> = monitor.into();
                self.open.insert(
                    monitor.clone(),
                    Minute {
                        monitor,
                        start,
                        agg,
                    },
                );
            }
        }
    }

    /// Queues a status change of `monitor`.
    pub(crate) fn change(&mut self, monitor: &str, change: &StatusChange) {
        let mut change = change.clone();
        change.time = whole_ms(change.time);
        self.next.changes.push((monitor.into(), change));
    }

    /// Closes the open minutes that ended by `now_ms`; looks only once per minute.
    pub(crate) fn sweep(&mut self, now_ms: i64) {
        let minute = floor_to(now_ms, MINUTE_MS);
        if minute <= self.swept {
            return;
        }
        self.swept = minute;
        let closed = &mut self.next.closed;
        self.open.retain(|_, open| {
            let ended = open.start.saturating_add(MINUTE_MS) <= now_ms;
            if ended {
                closed.push(open.clone());
            }
            !ended
        });
    }

    /// Closes every open minute, ended or not (the store is closing).
    pub(crate) fn close_all(&mut self) {
        self.next
            .closed
            .extend(self.open.drain().map(|(_, open)| open));
    }

    /// Takes the next batch for the writer, keeping it visible to readers as in flight.
    pub(crate) fn take(&mut self) -> Arc<HistoryBatch> {
        let batch = Arc::new(std::mem::take(&mut self.next));
        self.inflight = Some(batch.clone());
        batch
    }

    /// Puts back a batch whose commit failed, under what was queued since.
    pub(crate) fn restore(&mut self, batch: Arc<HistoryBatch>) {
        self.inflight = None;
        let batch = Arc::unwrap_or_clone(batch);
        let newer = std::mem::replace(&mut self.next, batch);
        self.next.closed.extend(newer.closed);
        self.next.changes.extend(newer.changes);
    }

    /// A copy of what memory holds for `monitor` (every monitor when `None`): the
    /// open minutes, the closed ones and the changes not yet committed.
    pub(crate) fn snapshot(&self, monitor: Option<&str>) -> Memory {
        let wanted = |name: &str| monitor.is_none_or(|m| m == name);
        let mut memory = Memory::default();
        let open: Box<dyn Iterator<Item = &Minute>> = match monitor {
            Some(name) => Box::new(self.open.get(name).into_iter()),
            None => Box::new(self.open.values()),
        };
        memory.minutes.extend(open.cloned());
        // The batch in flight is older than the next one: its changes come first.
        for batch in self.inflight.as_deref().into_iter().chain([&self.next]) {
            memory.minutes.extend(
                batch
                    .closed
                    .iter()
                    .filter(|closed| wanted(&closed.monitor))
                    .cloned(),
            );
            memory.changes.extend(
                batch
                    .changes
                    .iter()
                    .filter(|(name, _)| wanted(name))
                    .cloned(),
            );
        }
        memory
    }
}

/// History in memory that the file does not hold yet, as a reader copies it.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Minutes (open or closed, a minute possibly more than once) not yet written.
    pub(crate) minutes: Vec<Minute>,
    /// Changes not yet committed, oldest first.
    pub(crate) changes: Vec<(Arc<str>, StatusChange)>,
}

impl Store {
    /// Applies `update` to the pending history (unless the writer has stopped), and
    /// wakes the writer when that made an empty batch non-empty.
    fn queue_history(&self, update: impl FnOnce(&mut HistoryPending)) {
        let mut pending = lock(&self.shared().pending);
        if pending.refuse(self.path()) {
            return;
        }
        let was_empty = pending.is_empty();
        update(&mut pending.history);
        let wake = was_empty && !pending.is_empty();
        drop(pending);
        if wake {
            self.shared().wake.notify_one();
        }
    }
}

impl HistorySink for Store {
    /// Adds the check to its monitor's open minute and returns: a mutex and a hash-map
    /// update, no SQL. Wakes the writer when this closed a minute into an empty batch.
    fn observe(&self, monitor: &str, observation: &Observation) {
        self.queue_history(|history| history.observe(monitor, observation));
    }

    /// Queues the change for the writer's next batch (committed with it, within a
    /// tick) and returns.
    fn change(&self, monitor: &str, change: &StatusChange) {
        self.queue_history(|history| history.change(monitor, change));
    }
}
