//! The [`Dispatcher`]: a non-blocking [`EventSink`] that queues messages per notifier and
//! delivers them in order, with timeouts, retries, counters and a draining shutdown.

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use health_types::{Clock, Event, EventSink, SystemClock};
use tokio::{sync::Notify, task::JoinHandle, time::Instant};
use tracing::{Instrument, debug, error, info_span, warn};

use crate::{Message, Notifier, NotifyError, RetryPolicy};

/// Default per-notifier queue capacity: 256 messages.
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Default per-request timeout: 10 s.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivery counters, per notifier or summed over all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Messages delivered.
    pub sent: u64,
    /// Messages given up on (permanent failure or attempts exhausted).
    pub failed: u64,
    /// Retries made (attempts after the first).
    pub retried: u64,
    /// Messages dropped: queue overflow, sent after shutdown, or abandoned at the
    /// shutdown deadline.
    pub dropped: u64,
}

impl std::ops::Add for Stats {
    type Output = Stats;

    fn add(self, other: Stats) -> Stats {
        Stats {
            sent: self.sent + other.sent,
            failed: self.failed + other.failed,
            retried: self.retried + other.retried,
            dropped: self.dropped + other.dropped,
        }
    }
}

/// One notifier's counters, for metrics labelled by notifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierStats {
    /// The notifier's name.
    pub name: String,
    /// Its provider key.
    pub provider: &'static str,
    /// Its counters.
    pub stats: Stats,
}

/// What [`Dispatcher::shutdown`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every queue was drained before the deadline.
    pub drained: bool,
    /// Messages still queued or in flight at the deadline (also counted as dropped).
    pub abandoned: u64,
}

/// Builds a [`Dispatcher`]; see [`Dispatcher::builder`].
#[derive(Debug)]
pub struct DispatcherBuilder {
    notifiers: Vec<Arc<dyn Notifier>>,
    queue_capacity: usize,
    retry: RetryPolicy,
    request_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl Default for DispatcherBuilder {
    /// No notifiers, queue capacity 256, the default [`RetryPolicy`] (5 attempts, 1 s
    /// ×2 ±10 %, cap 5 min), 10 s per request, the system clock.
    fn default() -> Self {
        DispatcherBuilder {
            notifiers: Vec::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            retry: RetryPolicy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }
}

impl DispatcherBuilder {
    /// Adds a notifier.
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Adds notifiers.
    pub fn notifiers(mut self, notifiers: impl IntoIterator<Item = Arc<dyn Notifier>>) -> Self {
        self.notifiers.extend(notifiers);
        self
    }

    /// How many messages each notifier's queue holds before the oldest is dropped (at
    /// least 1).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// The retry schedule.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The longest one delivery attempt may take.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The wall clock, used to turn a `Retry-After` date into a delay.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts one delivery task per notifier on the current tokio runtime.
    ///
    /// Fails when two notifiers share a name or the retry policy is invalid.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn start(self) -> Result<Dispatcher, NotifyError> {
        self.retry.validate()?;
        let mut names = HashSet::new();
        for notifier in &self.notifiers {
            if !names.insert(notifier.name().to_owned()) {
                return Err(NotifyError::DuplicateName(notifier.name().to_owned()));
            }
        }
        let delivery = Arc::new(Delivery {
            retry: self.retry,
            timeout: self.request_timeout,
            clock: self.clock,
        });
        let mut workers = Vec::with_capacity(self.notifiers.len());
        let mut tasks = Vec::with_capacity(self.notifiers.len());
        for notifier in self.notifiers {
            let worker = Arc::new(Worker {
                name: notifier.name().to_owned(),
                provider: notifier.provider(),
                queue: Queue::new(self.queue_capacity),
                counters: Counters::default(),
                in_flight: AtomicBool::new(false),
            });
            let span = info_span!("notifier", notifier = %worker.name, provider = worker.provider);
            let task = tokio::spawn(
                run(Arc::clone(&worker), notifier, Arc::clone(&delivery)).instrument(span),
            );
            workers.push(Arc::clone(&worker));
            tasks.push((worker, task));
        }
        Ok(Dispatcher {
            shared: Arc::new(Shared {
                workers,
                tasks: Mutex::new(tasks),
            }),
        })
    }
}

/// Queues messages for notifiers and delivers them; the [`EventSink`] monitors report to.
///
/// - [`notify`](EventSink::notify) and [`send`](Self::send) never block: each notifier
///   has a bounded queue, and when it is full the oldest message is dropped, counted and
///   logged.
/// - Each notifier has its own delivery task, so a slow receiver delays only its own
///   messages, and messages reach each notifier in the order they were sent: a `down`
///   that needs retries still arrives before the `up` queued after it.
/// - A message goes to the notifiers named in its `to` list, or to all when it is empty;
///   [`targeted`](Self::targeted) gives a monitor a sink with its own list.
/// - Each attempt has a timeout (10 s by default). Transport errors, timeouts, HTTP 408,
///   429 (honouring `Retry-After`) and 5xx are retried per the [`RetryPolicy`]; other
///   failures are given up at once. Every failure is logged with the notifier, the
///   provider and the reason.
/// - [`shutdown`](Self::shutdown) stops taking messages and drains the queues within a
///   deadline.
///
/// Cloning is cheap and clones share the queues. When the last clone is dropped without a
/// shutdown, the delivery tasks finish what is queued and end.
///
/// ```no_run
/// use std::{sync::Arc, time::Duration};
///
/// use health_notify::{Dispatcher, NotifierConfig};
///
/// # async fn example(configs: Vec<NotifierConfig>) -> Result<(), health_notify::NotifyError> {
/// let notifiers = configs.iter().map(|c| c.build()).collect::<Result<Vec<_>, _>>()?;
/// let dispatcher = Dispatcher::builder().notifiers(notifiers).start()?;
/// let for_api = dispatcher.targeted(["ops"])?; // an EventSink for one monitor
/// // ... hand `Arc::new(for_api)` to the monitor, run ...
/// dispatcher.shutdown(Duration::from_secs(5)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl Dispatcher {
    /// A builder with the defaults of [`DispatcherBuilder::default`].
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::default()
    }

    /// Queues `message` for the notifiers in its `to` list (all when empty) and returns
    /// at once.
    pub fn send(&self, message: Message) {
        let message = Arc::new(message);
        let mut matched = false;
        for worker in &self.shared.workers {
            if !message.to.is_empty() && !message.to.iter().any(|to| *to == worker.name) {
                continue;
            }
            matched = true;
            let (dropped, why) = match worker.queue.push(Arc::clone(&message)) {
                Push::Queued => continue,
                Push::DroppedOldest(oldest) => (
                    oldest,
                    "notification queue full; dropped the oldest message",
                ),
                Push::Closed => (
                    Arc::clone(&message),
                    "dispatcher is shut down; dropped the message",
                ),
            };
            worker.counters.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                notifier = %worker.name,
                provider = worker.provider,
                title = %dropped.title,
                "{why}"
            );
        }
        if !matched && !message.to.is_empty() {
            warn!(
                title = %message.title,
                to = ?message.to,
                "message is addressed to no configured notifier"
            );
        }
    }

    /// An [`EventSink`] whose events go to the named notifiers only (all when `names` is
    /// empty). Fails on a name that is not configured.
    pub fn targeted<I, S>(&self, names: I) -> Result<TargetedSink, NotifyError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let to: Vec<String> = names.into_iter().map(Into::into).collect();
        if let Some(unknown) = to
            .iter()
            .find(|name| !self.shared.workers.iter().any(|w| w.name == **name))
        {
            return Err(NotifyError::UnknownNotifier(unknown.clone()));
        }
        Ok(TargetedSink {
            dispatcher: self.clone(),
            to: to.into(),
        })
    }

    /// The names of the notifiers, in the order they were added.
    pub fn notifier_names(&self) -> impl Iterator<Item = &str> {
        self.shared.workers.iter().map(|w| w.name.as_str())
    }

    /// The counters summed over every notifier.
    pub fn stats(&self) -> Stats {
        self.shared
            .workers
            .iter()
            .fold(Stats::default(), |sum, w| sum + w.counters.snapshot())
    }

    /// Each notifier's counters, in the order the notifiers were added.
    pub fn notifier_stats(&self) -> Vec<NotifierStats> {
        self.shared
            .workers
            .iter()
            .map(|w| NotifierStats {
                name: w.name.clone(),
                provider: w.provider,
                stats: w.counters.snapshot(),
            })
            .collect()
    }

    /// Stops taking messages, then waits up to `within` for every queue to drain
    /// (retries included). What is left at the deadline is abandoned, counted as dropped
    /// and logged. Later calls return at once.
    pub async fn shutdown(&self, within: Duration) -> ShutdownReport {
        for worker in &self.shared.workers {
            worker.queue.close();
        }
        let tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        let deadline = Instant::now() + within;
        let mut report = ShutdownReport {
            drained: true,
            abandoned: 0,
        };
        for (worker, mut task) in tasks {
            let finished = tokio::time::timeout_at(deadline, &mut task).await;
            match finished {
                Ok(Ok(())) => continue,
                Ok(Err(err)) => {
                    error!(notifier = %worker.name, provider = worker.provider, error = %err, "delivery task failed");
                }
                Err(_elapsed) => {
                    task.abort();
                    // Wait for the abort to land so the count below is final.
                    let _ = task.await;
                }
            }
            let left =
                worker.queue.clear() + u64::from(worker.in_flight.swap(false, Ordering::AcqRel));
            if left > 0 {
                report.drained = false;
                report.abandoned += left;
                worker.counters.dropped.fetch_add(left, Ordering::Relaxed);
                warn!(
                    notifier = %worker.name,
                    provider = worker.provider,
                    abandoned = left,
                    "shutdown deadline reached; abandoned undelivered messages"
                );
            }
        }
        report
    }
}

impl EventSink for Dispatcher {
    /// Queues the §6 message for the event, for every notifier.
    fn notify(&self, event: Event) {
        self.send(Message::from_event(&event));
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("notifiers", &self.notifier_names().collect::<Vec<_>>())
            .field("stats", &self.stats())
            .finish()
    }
}

/// An [`EventSink`] that sends each event's message to a fixed list of notifiers; made
/// by [`Dispatcher::targeted`].
#[derive(Clone, Debug)]
pub struct TargetedSink {
    dispatcher: Dispatcher,
    to: Arc<[String]>,
}

impl TargetedSink {
    /// The notifier names events go to (empty = all).
    pub fn to(&self) -> &[String] {
        &self.to
    }
}

impl EventSink for TargetedSink {
    fn notify(&self, event: Event) {
        let mut message = Message::from_event(&event);
        message.to = self.to.to_vec();
        self.dispatcher.send(message);
    }
}

struct Shared {
    workers: Vec<Arc<Worker>>,
    tasks: Mutex<Vec<(Arc<Worker>, JoinHandle<()>)>>,
}

impl Drop for Shared {
    /// The last handle is gone: let the delivery tasks finish what is queued and end.
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.queue.close();
        }
    }
}

/// What every delivery task shares.
#[derive(Debug)]
struct Delivery {
    retry: RetryPolicy,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

struct Worker {
    name: String,
    provider: &'static str,
    queue: Queue,
    counters: Counters,
    in_flight: AtomicBool,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// One notifier's delivery loop: one message at a time, in queue order.
async fn run(worker: Arc<Worker>, notifier: Arc<dyn Notifier>, delivery: Arc<Delivery>) {
    while let Some(message) = worker.queue.pop().await {
        worker.in_flight.store(true, Ordering::Release);
        deliver(&worker, notifier.as_ref(), &delivery, &message).await;
        worker.in_flight.store(false, Ordering::Release);
    }
}

/// Tries one message until it is sent, fails for good, or runs out of attempts.
async fn deliver(worker: &Worker, notifier: &dyn Notifier, delivery: &Delivery, message: &Message) {
    let attempts = delivery.retry.attempts;
    let mut attempt = 1;
    loop {
        let outcome = match tokio::time::timeout(delivery.timeout, notifier.send(message)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(NotifyError::Timeout(delivery.timeout)),
        };
        let err = match outcome {
            Ok(()) => {
                worker.counters.sent.fetch_add(1, Ordering::Relaxed);
                debug!(title = %message.title, attempt, "notification sent");
                return;
            }
            Err(err) => err,
        };
        if !err.is_retryable() || attempt >= attempts {
            worker.counters.failed.fetch_add(1, Ordering::Relaxed);
            error!(
                notifier = %worker.name,
                provider = worker.provider,
                title = %message.title,
                attempt,
                retryable = err.is_retryable(),
                reason = %err.chain(),
                "notification failed; giving up"
            );
            return;
        }
        let delay = match err.retry_after() {
            Some(retry_after) => retry_after
                .delay_from(delivery.clock.now())
                .min(delivery.retry.max_delay),
            None => delivery.retry.delay(attempt),
        };
        warn!(
            notifier = %worker.name,
            provider = worker.provider,
            title = %message.title,
            attempt,
            retry_in = ?delay,
            reason = %err.chain(),
            "notification failed; will retry"
        );
        worker.counters.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// A bounded queue that drops its oldest item when full; one consumer.
struct Queue {
    state: Mutex<QueueState>,
    ready: Notify,
    capacity: usize,
}

struct QueueState {
    items: VecDeque<Arc<Message>>,
    closed: bool,
}

enum Push {
    Queued,
    DroppedOldest(Arc<Message>),
    Closed,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds valid data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::with_capacity(capacity.min(1024)),
                closed: false,
            }),
            ready: Notify::new(),
            capacity,
        }
    }

    fn push(&self, message: Arc<Message>) -> Push {
        let outcome = {
            let mut state = lock(&self.state);
            if state.closed {
                return Push::Closed;
            }
            let dropped = if state.items.len() >= self.capacity {
                state.items.pop_front()
            } else {
                None
            };
            state.items.push_back(message);
            dropped.map_or(Push::Queued, Push::DroppedOldest)
        };
        self.ready.notify_one();
        outcome
    }

    /// The next message, waiting for one; `None` once closed and empty.
    async fn pop(&self) -> Option<Arc<Message>> {
        loop {
            {
                let mut state = lock(&self.state);
                if let Some(message) = state.items.pop_front() {
                    return Some(message);
                }
                if state.closed {
                    return None;
                }
            }
            // `notify_one` leaves a permit when nobody waits, so a push between the check
            // above and this await is not missed.
            self.ready.notified().await;
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_one();
    }

    /// Empties the queue and returns how many messages it held.
    fn clear(&self) -> u64 {
        let mut state = lock(&self.state);
        let n = state.items.len() as u64;
        state.items.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn message(title: &str) -> Arc<Message> {
        Arc::new(Message::custom(title, UNIX_EPOCH))
    }

    #[tokio::test]
    async fn queue_drops_the_oldest_when_full() {
        let queue = Queue::new(2);
        assert!(matches!(queue.push(message("a")), Push::Queued));
        assert!(matches!(queue.push(message("b")), Push::Queued));
        match queue.push(message("c")) {
            Push::DroppedOldest(old) => assert_eq!(old.title, "a"),
            _ => panic!("expected a drop"),
        }
        queue.close();
        assert!(matches!(queue.push(message("d")), Push::Closed));
        assert_eq!(queue.pop().await.unwrap().title, "b");
        assert_eq!(queue.pop().await.unwrap().title, "c");
        assert!(queue.pop().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_pop_wakes_on_push() {
        let queue = Arc::new(Queue::new(4));
        let popper = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.pop().await.map(|m| m.title.clone()) }
        });
        tokio::task::yield_now().await;
        queue.push(message("x"));
        assert_eq!(popper.await.unwrap().as_deref(), Some("x"));
    }
}
