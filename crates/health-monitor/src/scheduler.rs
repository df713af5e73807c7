//! The shared scheduler of a scope: one timer and one heap of due checks for any number
//! of monitors.
//!
//! It imports nothing of the monitor: it schedules any [`Runner`], and the monitor's
//! state implements that trait, so imports run one way (monitor → scheduler, never
//! back). Its public face is [`Scope`](crate::Scope), a scheduler of monitors.
//!
//! # Design
//!
//! A scheduler owns one *driver* task, a binary heap of `(due time, monitor)` entries and a
//! semaphore of check slots. The driver keeps one timer armed for the earliest entry;
//! when entries come due (to the nearest millisecond tick: a check starts within half
//! a tick of its due time, not up to a whole tick late as a plain tokio timer would
//! have it) it spawns a short-lived task for each check (bounded by
//! [`SchedulerOptions::max_in_flight`], and by
//! [`SchedulerOptions::max_starts_per_tick`] per millisecond). The check task runs the
//! probe under the monitor's timeout, feeds the state machine, publishes a snapshot,
//! emits events and puts the monitor's next entry into the scope's inbox.
//!
//! An idle monitor is therefore a heap entry (32 bytes) plus its own state, not a parked
//! task with a timer each: 100k monitors cost 100k heap entries and one timer. A check
//! that ends wakes the driver only when its next entry is due before the timer the driver
//! armed (almost never: the next check is an interval away); otherwise the driver finds
//! the entry in the inbox when its timer fires. So a check costs the scheduler one heap
//! push and one pop, and the driver wakes once per tick with due checks, not once per
//! check.
//!
//! Two limits keep a scope that starts 100k monitors at once from opening 100k sockets
//! at the same instant (the process would run out of file descriptors, and every
//! in-flight check holds buffers): at most `max_in_flight` checks run at once, and at
//! most `max_starts_per_tick` start in one millisecond; the rest wait in due order.
//!
//! The heap holds weak references: dropping every handle to a monitor ends it at its next
//! due time. Stale entries (a monitor stopped or restarted since) are recognised by a
//! generation number and skipped.

use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering},
    },
    time::Duration,
};

use health_types::duration_nanos;
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Default limit on checks in flight at once in one scope (see
/// [`SchedulerOptions::max_in_flight`]).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Default limit on checks started in one millisecond tick in one scope.
pub const DEFAULT_MAX_STARTS_PER_TICK: usize = 256;

/// The stop signals a scheduler's runners share (see [`Scheduler::stop_signal`]): 64.
pub(crate) const STOP_SIGNALS: usize = 1 << STOP_BITS;
const STOP_BITS: u32 = 6;

/// Entries an empty inbox keeps room for (32 KiB).
const INBOX_KEEP: usize = 1024;

/// The scheduler's tick: tokio's timer resolution.
const TICK: Duration = Duration::from_millis(1);
/// How early a check may start: half a tick. tokio fires a timer in the first tick at
/// or after its deadline, so a timer armed for the due time is late by up to a whole
/// tick (half a tick on average). Armed half a tick early instead, with checks due
/// within half a tick started on wake, a check starts within half a tick of its due
/// time, before or after (plus the time to reach a worker). Due times on whole
/// milliseconds, as under a paused clock in tests, start exactly on time.
const EARLY: Duration = Duration::from_micros(500);
/// How far ahead of a due time the timer is first armed: a whole tick. On top of the
/// tick rounding, the worker's sleep (`epoll_wait`, millisecond timeouts) ends up to
/// another millisecond late, so a timer armed half a tick early still wakes the driver
/// 0.7 ms after the due time at the median. Armed a tick early, it wakes close to the
/// due time; if that is still more than half a tick early, the driver re-arms for half
/// a tick before it (which a paused clock reaches exactly, so tests still see exact
/// times). Measured with 10k monitors at 1 s and an instant probe: checks start at a
/// median 0.39 ms from their due time instead of 0.73 ms.
const LEAD: Duration = TICK;

/// Options of a [`Scope`](crate::Scope)'s scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// Checks that may run at the same time; at least 1. Default
    /// [`DEFAULT_MAX_IN_FLIGHT`] (1024).
    ///
    /// Each check in flight holds a socket and 2–4 KiB (its task, its futures, a read
    /// buffer), and a process keeps the peak of its heap: with 4096 slots, 10k HTTP
    /// monitors started together cost 2.5 KiB each for good, with 1024 1.4 KiB (`cargo
    /// xtask bench`). Checks that answer fast free their slot in well under a
    /// millisecond; slow ones hold it up to their `timeout`, so 1024 slots with a 10 s
    /// timeout still pass about 100 black-holed checks a second while the rest run.
    /// Raise it for more targets that time out at once; keep it well under the
    /// open-files limit.
    pub max_in_flight: usize,
    /// Checks started in one millisecond at most; at least 1. Default
    /// [`DEFAULT_MAX_STARTS_PER_TICK`] (256, so 256 000 checks a second): far above any
    /// steady load, it spreads the first checks of monitors started together (100k
    /// start within 0.4 s) so that their connections are not all open at once.
    pub max_starts_per_tick: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_starts_per_tick: DEFAULT_MAX_STARTS_PER_TICK,
        }
    }
}

/// What the scheduler runs: a monitor, as far as the scheduler is concerned.
///
/// The heap holds a `Weak` reference to each runner, so that dropping every handle to a
/// monitor ends it at its next due time.
pub(crate) trait Runner: Sized + Send + Sync + 'static {
    /// Runs the check of run `generation` that came due, holding `permit` (one of the
    /// scheduler's check slots) until the check ends. The returned future is spawned on
    /// the scheduler's task tracker; it schedules the runner's next check itself.
    fn run(
        self: Arc<Self>,
        scheduler: Scheduler<Self>,
        generation: u64,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// Stops run `generation`: the scheduler was cancelled while a check of that run was
    /// waiting in it.
    fn cancel(&self, generation: u64);
}

/// A scheduler of `T`s with its cancellation token. Cloning is cheap and shares it.
#[derive(Debug)]
pub(crate) struct Scheduler<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Scheduler<T> {
    fn clone(&self) -> Self {
        Scheduler {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner<T> {
    token: CancellationToken,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    max_starts_per_tick: usize,
    /// Due times are kept as nanoseconds since this instant.
    epoch: Instant,
    inbox: Mutex<Inbox<T>>,
    /// Wakes the driver for an inbox entry due before its timer.
    wake: Notify,
    /// The stop signals of runners' checks in flight (see [`Scheduler::stop_signal`]).
    stops: [Notify; STOP_SIGNALS],
    /// The driver was spawned.
    driving: AtomicBool,
    seq: AtomicU64,
}

/// Entries handed to the driver, and what the driver is waiting for.
#[derive(Debug)]
struct Inbox<T> {
    jobs: Vec<Job<T>>,
    /// The due time (scheduler nanoseconds) the driver's timer is armed for; `None` while
    /// it is not sleeping on one (it will look at the inbox before it sleeps again).
    armed: Option<u64>,
    /// The driver is asleep with no timer (its heap is empty).
    idle: bool,
    /// The driver has ended: nothing is scheduled any more.
    closed: bool,
}

/// One scheduled check: which runner, which run of it, when. 32 bytes: the due time is
/// kept as nanoseconds since the scheduler was created, and the runner is a thin `Weak`
/// (a `Weak<dyn Runner>` would make it 40).
#[derive(Debug)]
struct Job<T> {
    /// Due time, in nanoseconds since the scheduler's epoch.
    at: u64,
    /// Order of scheduling, so that checks due at the same instant start in that order.
    seq: u64,
    generation: u64,
    runner: Weak<T>,
}

impl<T> PartialEq for Job<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T> Eq for Job<T> {}

impl<T> PartialOrd for Job<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Job<T> {
    /// Reversed, so that `BinaryHeap` pops the earliest due time first (FIFO on ties).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<T: Runner> Scheduler<T> {
    /// A scheduler that is cancelled when `token` is; `options` are clamped to at least 1.
    pub(crate) fn new(token: CancellationToken, options: SchedulerOptions) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                token,
                tracker: TaskTracker::new(),
                permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
                max_starts_per_tick: options.max_starts_per_tick.max(1),
                epoch: Instant::now(),
                inbox: Mutex::new(Inbox {
                    jobs: Vec::new(),
                    armed: None,
                    idle: false,
                    closed: false,
                }),
                wake: Notify::new(),
                stops: std::array::from_fn(|_| Notify::new()),
                driving: AtomicBool::new(false),
                seq: AtomicU64::new(0),
            }),
        }
    }

    /// The cancellation token.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.inner.token
    }

    /// Whether the token was cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Cancels the token and waits until the driver and every check task have ended.
    pub(crate) async fn shutdown(&self) {
        self.inner.token.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// The signal that a runner whose key is `key` notifies when it stops, and that its
    /// check in flight waits on.
    ///
    /// Runners share a few signals rather than carry one each (a `Notify` is 32 bytes,
    /// and 100k idle runners would each hold one for the one check they may have in
    /// flight): a stop wakes the checks in flight of its signal, and a check woken by
    /// another runner's stop waits again. With [`STOP_SIGNALS`] signals, a stop wakes
    /// about `1/64` of the checks in flight, and only stops (rare) pay for it.
    pub(crate) fn stop_signal(&self, key: usize) -> &Notify {
        // Fibonacci hashing, whose top bits mix all of the key's: keys that are
        // addresses differ in their middle bits.
        let hash = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.inner.stops[(hash >> (u64::BITS - STOP_BITS)) as usize]
    }

    /// Tasks still alive (the driver and checks in flight).
    pub(crate) fn task_count(&self) -> usize {
        self.inner.tracker.len()
    }

    /// Schedules a check of `runner`'s run `generation` at `at`, spawning the driver on
    /// first use. Fails when the scheduler no longer schedules (cancelled, or its driver
    /// ended).
    pub(crate) fn schedule(&self, at: Instant, generation: u64, runner: Weak<T>) -> Result<(), ()> {
        if self.is_cancelled() {
            return Err(());
        }
        let job = Job {
            at: self.nanos(at),
            seq: self.inner.seq.fetch_add(1, AtomicOrdering::Relaxed),
            generation,
            runner,
        };
        let wake = {
            let mut inbox = self.inbox();
            if inbox.closed {
                return Err(());
            }
            // The driver looks at the inbox before it sleeps and when its timer fires:
            // only an entry due before that timer needs it now.
            let wake = inbox.idle || inbox.armed.is_some_and(|armed| job.at < armed);
            inbox.jobs.push(job);
            if wake {
                inbox.idle = false;
                inbox.armed = None;
            }
            wake
        };
        if wake {
            self.inner.wake.notify_one();
        }
        self.ensure_driver();
        Ok(())
    }

    /// `at` in nanoseconds since the epoch (0 before it).
    fn nanos(&self, at: Instant) -> u64 {
        duration_nanos(at.saturating_duration_since(self.inner.epoch))
    }

    /// The instant `nanos` stands for.
    fn instant(&self, nanos: u64) -> Instant {
        self.inner.epoch + Duration::from_nanos(nanos)
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox<T>> {
        // Nothing panics under this lock; a poisoned one still holds consistent state.
        self.inner
            .inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ensure_driver(&self) {
        if self.inner.driving.load(AtomicOrdering::Acquire) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime: the job waits in the inbox for a later call made inside one.
            return;
        }
        if !self.inner.driving.swap(true, AtomicOrdering::AcqRel) {
            self.inner.tracker.spawn(self.clone().drive());
        }
    }

    /// Spawns the check `job` stands for, holding `permit`. A runner dropped since it was
    /// scheduled has nothing to run; its slot is freed at once.
    fn start(&self, job: Job<T>, permit: OwnedSemaphorePermit) {
        if let Some(runner) = job.runner.upgrade() {
            self.inner
                .tracker
                .spawn(runner.run(self.clone(), job.generation, permit));
        }
    }

    /// The driver: the scheduler loop.
    async fn drive(self) {
        let inner = &self.inner;
        let mut heap: BinaryHeap<Job<T>> = BinaryHeap::new();
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut timer_at: Option<Instant> = None;
        // The current tick, and the checks started in it (over every pass of the loop).
        let mut tick = Instant::now();
        let mut started = 0;

        while !inner.token.is_cancelled() {
            // Take the inbox, then start what is due, as far as the limits allow.
            {
                let mut inbox = self.inbox();
                heap.extend(inbox.jobs.drain(..));
                // Monitors started together (100k at once) grow the inbox far beyond
                // what checks coming back one by one need; a drained inbox keeps only
                // room for those, not the burst's (up to 32 bytes a monitor, for good).
                inbox.jobs.shrink_to(INBOX_KEEP);
            }
            let now = Instant::now();
            if now >= tick + TICK {
                tick = now;
                started = 0;
            }
            let horizon = self.nanos(now + EARLY);
            let mut need_permit = false;
            while heap.peek().is_some_and(|job| job.at <= horizon) {
                if started >= inner.max_starts_per_tick {
                    break;
                }
                let Ok(permit) = inner.permits.clone().try_acquire_owned() else {
                    need_permit = true;
                    break;
                };
                if let Some(job) = heap.pop() {
                    started += 1;
                    self.start(job, permit);
                }
            }
            // Due checks left by the per-tick limit go in the next tick; ones waiting for
            // a slot go when one frees up.
            let (wake_at, timer_due) = match heap.peek() {
                Some(job) if job.at <= horizon && !need_permit => {
                    (Some(self.nanos(tick + TICK + EARLY)), Some(tick + TICK))
                }
                Some(_) if need_permit => (None, None),
                // The timer runs ahead of the due time (see EARLY and LEAD).
                Some(job) => {
                    let at = self.instant(job.at);
                    let timer = match at.checked_sub(LEAD) {
                        Some(lead) if lead > now => lead,
                        _ => at.checked_sub(EARLY).unwrap_or(at),
                    };
                    (Some(job.at), Some(timer))
                }
                None => (None, None),
            };
            let arrived = {
                let mut inbox = self.inbox();
                let arrived = !inbox.jobs.is_empty();
                if !arrived {
                    inbox.armed = wake_at;
                    inbox.idle = wake_at.is_none() && !need_permit;
                }
                arrived
            };
            if arrived {
                // Arrived meanwhile: look again before sleeping (yielding if this task
                // has run long, so that a stream of arrivals cannot hog its worker).
                tokio::task::consume_budget().await;
                continue;
            }
            if let Some(at) = timer_due
                && timer_at != Some(at)
            {
                timer.as_mut().reset(at);
                timer_at = Some(at);
            }

            tokio::select! {
                biased;
                () = inner.token.cancelled() => break,
                () = inner.wake.notified() => {}
                () = &mut timer, if wake_at.is_some() => timer_at = None,
                permit = inner.permits.clone().acquire_owned(), if need_permit => {
                    // A slot freed up: start the earliest due check with it.
                    if let (Ok(permit), Some(job)) = (permit, heap.pop()) {
                        started += 1;
                        self.start(job, permit);
                    }
                }
            }
            // Awake: entries pushed from now on must wake the driver only when due before
            // the timer it arms next; until then it looks at the inbox anyway.
            let mut inbox = self.inbox();
            inbox.armed = None;
            inbox.idle = false;
        }

        // Cancelled: every runner that is waiting (in the heap or the inbox) is marked
        // stopped here; checks in flight stop themselves.
        let waiting = {
            let mut inbox = self.inbox();
            inbox.closed = true;
            std::mem::take(&mut inbox.jobs)
        };
        for job in heap.into_iter().chain(waiting) {
            if let Some(runner) = job.runner.upgrade() {
                runner.cancel(job.generation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heap_entry_is_32_bytes_whatever_it_runs() {
        // 100k idle monitors are 100k entries: keep them at four words.
        assert_eq!(std::mem::size_of::<Job<()>>(), 32);
        assert_eq!(std::mem::size_of::<Job<[u8; 4096]>>(), 32);
    }
}
