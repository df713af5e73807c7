//! The parent cancellation scope that monitors run under, and its shared scheduler.
//!
//! # Design
//!
//! A scope owns one *driver* task and a semaphore of check slots. The driver keeps a
//! binary heap of `(due time, monitor)` entries and one timer armed for the earliest
//! entry; when an entry comes due it spawns a short-lived task for that one check
//! (bounded by [`SchedulerOptions::max_in_flight`]). The check task runs the probe under
//! the monitor's timeout, feeds the state machine, publishes a snapshot, emits events and
//! hands the next due time back to the driver over a channel.
//!
//! An idle monitor is therefore a heap entry (40 bytes) plus its own state, not a parked
//! task with a timer each: 100k monitors cost 100k heap entries and one timer. The slot
//! limit keeps a scope that starts 100k monitors at once from opening 100k sockets at the
//! same instant (the process would run out of file descriptors); checks beyond it wait for
//! a free slot in due order.
//!
//! The heap holds weak references: dropping every handle to a monitor ends it at its next
//! due time. Stale entries (a monitor stopped or restarted since) are recognised by a
//! generation number and skipped.

use std::{
    cmp::Ordering,
    collections::{BinaryHeap, VecDeque},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering as AtomicOrdering},
    },
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::monitor::Shared;

/// Default limit on checks in flight at once in one scope.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

/// Options of a [`Scope`]'s scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// Checks that may run at the same time (each may hold a socket); at least 1.
    /// Default [`DEFAULT_MAX_IN_FLIGHT`] (4096), well under a 20k open-files limit.
    pub max_in_flight: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// A parent cancellation scope: monitors started under it stop when it is cancelled.
///
/// Cloning is cheap and shares the scope. The scheduler task is spawned on the tokio
/// runtime that is current when the first monitor starts.
///
/// ```no_run
/// # async fn demo(monitor: health_monitor::Monitor) {
/// use health_monitor::{HealthMonitor, Scope};
///
/// let scope = Scope::new();
/// monitor.start(&scope).unwrap();
/// // ... later: stop every monitor of the scope and wait until no task is left.
/// scope.shutdown().await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Scope {
    inner: Arc<ScopeInner>,
}

#[derive(Debug)]
struct ScopeInner {
    token: CancellationToken,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Job>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    seq: AtomicU64,
}

/// One scheduled check: which monitor, which run of it, when.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
    pub(crate) generation: u64,
    pub(crate) monitor: Weak<Shared>,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Job {}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Job {
    /// Reversed, so that `BinaryHeap` pops the earliest due time first (FIFO on ties).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new()
    }
}

impl Scope {
    /// A new scope with default [`SchedulerOptions`].
    pub fn new() -> Self {
        Scope::with_token(CancellationToken::new(), SchedulerOptions::default())
    }

    /// A new scope with the given options.
    pub fn with_options(options: SchedulerOptions) -> Self {
        Scope::with_token(CancellationToken::new(), options)
    }

    /// A scope that is cancelled when `token` is (pass a child of your own token to tie
    /// monitors to an existing shutdown tree).
    pub fn with_token(token: CancellationToken, options: SchedulerOptions) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Scope {
            inner: Arc::new(ScopeInner {
                token,
                tracker: TaskTracker::new(),
                permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
                tx,
                rx: Mutex::new(Some(rx)),
                seq: AtomicU64::new(0),
            }),
        }
    }

    /// The scope's cancellation token.
    pub fn token(&self) -> &CancellationToken {
        &self.inner.token
    }

    /// Cancels the scope: every monitor in it stops promptly, mid-check or not.
    pub fn cancel(&self) {
        self.inner.token.cancel();
    }

    /// Whether the scope was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Cancels the scope and waits until its scheduler and every check task have ended.
    pub async fn shutdown(&self) {
        self.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Tasks of this scope still alive (the scheduler and checks in flight).
    pub fn task_count(&self) -> usize {
        self.inner.tracker.len()
    }

    /// Hands a check to the scheduler, spawning it on first use. Gives the job back when
    /// the scope no longer schedules (cancelled, or no runtime to run on).
    pub(crate) fn schedule(&self, mut job: Job) -> Result<(), Job> {
        if self.is_cancelled() {
            return Err(job);
        }
        job.seq = self.inner.seq.fetch_add(1, AtomicOrdering::Relaxed);
        self.ensure_driver();
        self.inner.tx.send(job).map_err(|e| e.0)
    }

    fn ensure_driver(&self) {
        let mut rx = match self.inner.rx.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if rx.is_none() {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime: leave the receiver for a later call made inside one.
            return;
        }
        if let Some(rx) = rx.take() {
            let scope = self.clone();
            self.inner.tracker.spawn(drive(scope, rx));
        }
    }

    /// Runs one check in a tracked task, holding `permit` for its duration.
    fn spawn_check(&self, job: Job, permit: OwnedSemaphorePermit) {
        let scope = self.clone();
        self.inner
            .tracker
            .spawn(crate::monitor::run_check(scope, job, permit));
    }
}

/// The scheduler loop of one scope.
async fn drive(scope: Scope, mut rx: mpsc::UnboundedReceiver<Job>) {
    let token = scope.inner.token.clone();
    let permits = scope.inner.permits.clone();
    let mut heap: BinaryHeap<Job> = BinaryHeap::new();
    let mut ready: VecDeque<Job> = VecDeque::new();
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;

    loop {
        // Move everything due to the ready queue, then start what the slots allow.
        let now = Instant::now();
        while heap.peek().is_some_and(|job| job.at <= now) {
            if let Some(job) = heap.pop() {
                ready.push_back(job);
            }
        }
        while let Some(job) = ready.pop_front() {
            match permits.clone().try_acquire_owned() {
                Ok(permit) => scope.spawn_check(job, permit),
                Err(_) => {
                    ready.push_front(job);
                    break;
                }
            }
        }
        let next = heap.peek().map(|job| job.at);
        if next != armed {
            if let Some(at) = next {
                timer.as_mut().reset(at);
            }
            armed = next;
        }

        tokio::select! {
            biased;
            () = token.cancelled() => break,
            job = rx.recv() => {
                let Some(job) = job else { break };
                heap.push(job);
                // Take whatever else is queued in one go.
                while let Ok(job) = rx.try_recv() {
                    heap.push(job);
                }
            }
            () = &mut timer, if armed.is_some() => armed = None,
            permit = permits.clone().acquire_owned(), if !ready.is_empty() => {
                if let (Ok(permit), Some(job)) = (permit, ready.pop_front()) {
                    scope.spawn_check(job, permit);
                }
            }
        }
    }

    // Cancelled: every monitor that is waiting (in the heap, the ready queue or the
    // channel) is marked stopped here; checks in flight stop themselves.
    rx.close();
    while let Ok(job) = rx.try_recv() {
        heap.push(job);
    }
    for job in heap.into_iter().chain(ready) {
        if let Some(shared) = job.monitor.upgrade() {
            shared.stop_by_scope(job.generation);
        }
    }
}
