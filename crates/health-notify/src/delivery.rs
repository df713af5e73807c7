//! One notifier's delivery loop. It reads the notifier's entries from the outbox in id
//! order and starts them in that order, with up to [`MAX_IN_FLIGHT`] requests in flight
//! at once, while the entries of one service (monitor) go out strictly one after the
//! other: an entry waits until the previous entry of its service was delivered or given
//! up. Each entry is retried per the [`RetryPolicy`] on its own, so a message that its
//! receiver refuses holds back its own service only. An outbox that fails is waited out,
//! never fatal.
//!
//! All of it runs inside the notifier's one task: the deliveries are futures in a
//! [`FuturesUnordered`], not tasks, so aborting the task at the shutdown deadline stops
//! every one of them.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use futures_util::{StreamExt, stream::FuturesUnordered};
use health_types::{Clock, Event, EventKind, Outbox, OutboxEntry, OutboxError};
use tokio::{
    sync::{Notify, Semaphore},
    time::Instant,
};
use tracing::{debug, warn};

use crate::{
    MemoryOutbox, Message, Notifier, NotifyError, RetryPolicy,
    message::{DOWN_NOT_DELIVERED, format_downtime},
    outbox::Payload,
};

/// How many delivery attempts of one notifier may be in flight at once. An entry that
/// backs off between attempts holds no slot.
pub(crate) const MAX_IN_FLIGHT: usize = 16;

/// How many entries one notifier's task holds at once: those in delivery (in an attempt,
/// waiting for a slot, or backing off) and those waiting behind an earlier entry of
/// their service. At this many, reading pauses until one of them is done.
pub(crate) const MAX_READ_AHEAD: usize = 1024;

/// How many entries one read of a durable outbox asks for.
const BATCH: usize = 64;

/// Delivery counters, per notifier or summed over all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Messages delivered.
    pub sent: u64,
    /// Messages given up: a permanent failure, or still failing at `max_age`.
    pub failed: u64,
    /// Retries made (attempts after the first).
    pub retried: u64,
    /// Messages of the in-memory outbox dropped: overflow, sent after shutdown, or
    /// abandoned at the shutdown deadline. (A durable outbox keeps what is left.)
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

/// One notifier's counters, updated by its task and by the dispatcher.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// What the dispatcher and one notifier's task share.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) name: String,
    pub(crate) provider: &'static str,
    pub(crate) counters: Counters,
    wake: Notify,
    closing: AtomicBool,
}

impl Worker {
    pub(crate) fn new(name: String, provider: &'static str) -> Self {
        Worker {
            name,
            provider,
            counters: Counters::default(),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// Makes the task look at the outbox now.
    pub(crate) fn wake(&self) {
        // `notify_one` leaves a permit when the task is not waiting, so a wake between
        // its last look and its wait is not missed; and a `Notified` dropped after it
        // was woken (another branch of the task's `select!` won) passes the permit on.
        self.wake.notify_one();
    }

    /// Lets the task end once the outbox has nothing more for it.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// What every notifier's task shares: the policy, the clock and the outboxes.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    /// The dispatcher's own outbox: events without a durable outbox, and ready messages.
    pub(crate) memory: Arc<MemoryOutbox>,
    /// The durable outbox the store fills, when there is one.
    pub(crate) external: Option<Arc<dyn Outbox>>,
}

/// One entry taken for delivery, with the outbox to report its fate to.
struct Job {
    outbox: Arc<dyn Outbox>,
    /// Whether it came from the durable outbox rather than the memory one.
    external: bool,
    id: u64,
    created: SystemTime,
    payload: Payload,
    /// The service whose entries go out one after the other; custom messages without
    /// one share the empty key.
    key: Arc<str>,
}

impl Job {
    fn new(
        outbox: Arc<dyn Outbox>,
        external: bool,
        id: u64,
        created: SystemTime,
        payload: Payload,
    ) -> Self {
        let key = match &payload {
            Payload::Event(event) => Arc::clone(&event.service),
            Payload::Message(message) => Arc::from(message.service.as_str()),
        };
        Job {
            outbox,
            external,
            id,
            created,
            payload,
            key,
        }
    }

    /// Marks the job as in delivery, so that an overflowing memory outbox no longer
    /// drops it; `false` when the memory outbox dropped it meanwhile (it was counted and
    /// logged then, and is not delivered).
    fn claim(&self, memory: &MemoryOutbox) -> bool {
        self.external || memory.start(self.id)
    }
}

/// How an entry ended.
enum Fate {
    Delivered,
    GaveUp(String),
}

/// One notifier's delivery loop, until the dispatcher closes and nothing is left.
///
/// Entries are read in id order and start in that order, unless an earlier entry of
/// the same service is still held ([`Lanes`]); at most [`MAX_IN_FLIGHT`] attempts run
/// at once and at most [`MAX_READ_AHEAD`] entries are held.
///
/// With a durable outbox the task takes entries from both outboxes, the older first
/// (ready messages from [`Dispatcher::send`](crate::Dispatcher::send) wait in the memory
/// one); each outbox's entries keep their id order.
pub(crate) async fn run(worker: Arc<Worker>, notifier: Arc<dyn Notifier>, delivery: Arc<Delivery>) {
    let permits = Semaphore::new(MAX_IN_FLIGHT);
    let start = |job: Job| deliver(&worker, notifier.as_ref(), &delivery, &permits, job);
    let mut in_delivery = FuturesUnordered::new();
    let mut lanes = Lanes::default();
    let mut reader = Reader::default();
    // Whether the outboxes may hold entries not read yet: at start (entries left from
    // before a restart) and after each wake.
    let mut look = true;
    loop {
        // Read after seeing the dispatcher close, and end only when that read found
        // nothing: what was queued before the close is delivered.
        let closing = worker.closing.load(Ordering::Acquire);
        look |= closing;
        if look && reader.retry_at.is_none() {
            while lanes.held < MAX_READ_AHEAD {
                let Some(job) = reader.next(&worker, &delivery) else {
                    // Nothing more, unless reading failed and is to be tried again.
                    look = reader.retry_at.is_some();
                    break;
                };
                if let Some(job) = lanes.admit(job, &delivery.memory) {
                    in_delivery.push(start(job));
                }
            }
        }
        if closing && !look && lanes.held == 0 {
            break;
        }
        let retry_at = reader.retry_at;
        tokio::select! {
            // Finished deliveries first: they cannot keep a wake waiting for long, as
            // there are at most `MAX_READ_AHEAD` of them, while wakes come from outside
            // and could keep coming.
            biased;
            Some(key) = in_delivery.next(), if !in_delivery.is_empty() => {
                if let Some(job) = lanes.finish(&key, &delivery.memory) {
                    in_delivery.push(start(job));
                }
            }
            () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)),
                if retry_at.is_some() => reader.retry_at = None,
            () = worker.wake.notified() => look = true,
        }
    }
    debug!(notifier = %worker.name, "delivery task finished");
}

/// Where a task is in each outbox. Entries count as read once taken, whether or not
/// they are done: a task never reads an entry twice.
#[derive(Default)]
struct Reader {
    /// The last entry of the memory outbox taken.
    memory_after: u64,
    /// The last entry of the durable outbox taken.
    external_after: u64,
    /// Entries read from the durable outbox, not yet taken.
    buffer: VecDeque<OutboxEntry>,
    /// Failed reads of the durable outbox in a row.
    failures: u32,
    /// After a failed read: when to read again.
    retry_at: Option<Instant>,
}

impl Reader {
    /// Takes the next entry, without waiting. `None` when there is nothing more for now,
    /// or when the durable outbox failed: that is logged, and [`retry_at`](Self::retry_at)
    /// says when to read again.
    fn next(&mut self, worker: &Worker, delivery: &Delivery) -> Option<Job> {
        if self.buffer.is_empty()
            && let Some(external) = &delivery.external
        {
            match external.pending(&worker.name, self.external_after, BATCH) {
                Ok(read) => {
                    self.failures = 0;
                    self.buffer.extend(read);
                }
                Err(err) => {
                    self.failures = self.failures.saturating_add(1);
                    let delay =
                        outbox_failed(worker, delivery, "read the outbox", self.failures, &err);
                    self.retry_at = Some(Instant::now() + delay);
                    return None;
                }
            }
        }
        let memory = delivery.memory.next(&worker.name, self.memory_after);
        // The older first; on a tie the durable outbox's entry.
        if let Some(item) = memory
            && self
                .buffer
                .front()
                .is_none_or(|entry| item.created < entry.created)
        {
            self.memory_after = item.id;
            let outbox = Arc::clone(&delivery.memory) as Arc<dyn Outbox>;
            return Some(Job::new(outbox, false, item.id, item.created, item.payload));
        }
        // The buffer holds entries of the durable outbox only.
        if let (Some(external), Some(entry)) = (&delivery.external, self.buffer.pop_front()) {
            self.external_after = entry.id;
            let payload = Payload::Event(entry.event);
            let outbox = Arc::clone(external);
            return Some(Job::new(outbox, true, entry.id, entry.created, payload));
        }
        None
    }
}

/// The entries a task holds, per service: at most one per service is in delivery, and
/// the later ones of that service wait behind it in id order.
#[derive(Default)]
struct Lanes {
    /// For each service with an entry in delivery, the entries waiting behind it.
    waiting: HashMap<Arc<str>, VecDeque<Job>>,
    /// Entries held: in delivery or waiting.
    held: usize,
}

impl Lanes {
    /// Takes in an entry just read: returns it when it may start now (no earlier entry
    /// of its service is held); otherwise it waits.
    fn admit(&mut self, job: Job, memory: &MemoryOutbox) -> Option<Job> {
        if let Some(queue) = self.waiting.get_mut(&job.key) {
            queue.push_back(job);
            self.held += 1;
            return None;
        }
        if !job.claim(memory) {
            return None;
        }
        self.waiting.insert(Arc::clone(&job.key), VecDeque::new());
        self.held += 1;
        Some(job)
    }

    /// The entry in delivery for service `key` is done: returns the next entry of that
    /// service to start, if one waits.
    fn finish(&mut self, key: &Arc<str>, memory: &MemoryOutbox) -> Option<Job> {
        self.held -= 1;
        if let Some(queue) = self.waiting.get_mut(key) {
            while let Some(job) = queue.pop_front() {
                if job.claim(memory) {
                    return Some(job);
                }
                self.held -= 1;
            }
        }
        self.waiting.remove(key);
        None
    }
}

/// Logs a failed outbox call and returns how long to wait before the next try.
fn outbox_failed(
    worker: &Worker,
    delivery: &Delivery,
    what: &str,
    failures: u32,
    err: &OutboxError,
) -> Duration {
    let delay = delivery.retry.delay(failures);
    warn!(
        notifier = %worker.name,
        failures,
        retry_in = ?delay,
        error = %err,
        "could not {what}; will try again"
    );
    delay
}

/// Calls the outbox until it answers: each failure is logged and waited out with the
/// retry policy's backoff. The entry at hand stays where it is meanwhile; the task is
/// only ever ended by the dispatcher (abort at the shutdown deadline).
async fn outbox_call<T>(
    worker: &Worker,
    delivery: &Delivery,
    what: &str,
    mut call: impl FnMut() -> Result<T, OutboxError>,
) -> T {
    let mut failures = 0u32;
    loop {
        match call() {
            Ok(value) => return value,
            Err(err) => {
                failures = failures.saturating_add(1);
                let delay = outbox_failed(worker, delivery, what, failures, &err);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The message for a job: ready, or the §6 message of its event, with the `Note` on an
/// `up` whose `down` this notifier gave up.
async fn message_for(worker: &Worker, delivery: &Delivery, job: &Job) -> Arc<Message> {
    let event: &Event = match &job.payload {
        Payload::Message(message) => return Arc::clone(message),
        Payload::Event(event) => event,
    };
    let mut message = Message::from_event(event);
    if event.kind == EventKind::Up
        && let Some(start) = event.outage_start
    {
        // The `down` has a lower id and the same service, so this entry started only
        // after the `down` was delivered or given up, and recorded as such.
        let given_up = outbox_call(worker, delivery, "look up the outage's down", || {
            job.outbox
                .down_given_up(&worker.name, &event.service, start)
        })
        .await;
        if given_up {
            message = message.with_field("Note", DOWN_NOT_DELIVERED);
        }
    }
    Arc::new(message)
}

/// One attempt, once one of the notifier's [`MAX_IN_FLIGHT`] slots is free, within the
/// request timeout.
async fn attempt(
    notifier: &dyn Notifier,
    delivery: &Delivery,
    permits: &Semaphore,
    message: &Message,
) -> Result<(), NotifyError> {
    // The slot is held for the attempt only, never for a backoff. The semaphore is fair,
    // so entries get their first attempt in the order they were started.
    let _slot = permits
        .acquire()
        .await
        .expect("the in-flight semaphore is never closed");
    match tokio::time::timeout(delivery.timeout, notifier.send(message)).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => Err(NotifyError::Timeout(delivery.timeout)),
    }
}

/// Tries one entry until it is delivered or given up, then records that in its outbox;
/// returns its service, whose next entry may start now.
async fn deliver(
    worker: &Worker,
    notifier: &dyn Notifier,
    delivery: &Delivery,
    permits: &Semaphore,
    job: Job,
) -> Arc<str> {
    let message = message_for(worker, delivery, &job).await;
    // `None`: an age limit past the end of time, so no limit.
    let deadline = job.created.checked_add(delivery.retry.max_age);
    let mut retry = 0u32;
    let fate = loop {
        let err = match attempt(notifier, delivery, permits, &message).await {
            Ok(()) => break Fate::Delivered,
            Err(err) => err,
        };
        if !err.is_retryable() {
            break Fate::GaveUp(err.chain().to_string());
        }
        let now = delivery.clock.now();
        let left = deadline.map(|deadline| deadline.duration_since(now).unwrap_or_default());
        if left == Some(Duration::ZERO) {
            let age = now.duration_since(job.created).unwrap_or_default();
            break Fate::GaveUp(format!(
                "gave up after {}: {}",
                format_downtime(age),
                err.chain()
            ));
        }
        retry = retry.saturating_add(1);
        let backoff = delivery.retry.delay(retry);
        // At least what the receiver asked for, never past the age limit.
        let delay = err
            .retry_after()
            .map_or(backoff, |after| after.delay_from(now).max(backoff));
        let delay = left.map_or(delay, |left| delay.min(left));
        warn!(
            notifier = %worker.name,
            provider = worker.provider,
            service = %message.service,
            event = %message.event,
            id = job.id,
            retry,
            retry_in = ?delay,
            reason = %err.chain(),
            "notification failed; will retry"
        );
        worker.counters.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
    };
    match &fate {
        Fate::Delivered => {
            worker.counters.sent.fetch_add(1, Ordering::Relaxed);
            debug!(
                notifier = %worker.name,
                title = %message.title,
                id = job.id,
                retries = retry,
                "notification sent"
            );
        }
        Fate::GaveUp(reason) => {
            worker.counters.failed.fetch_add(1, Ordering::Relaxed);
            warn!(
                notifier = %worker.name,
                provider = worker.provider,
                service = %message.service,
                event = %message.event,
                id = job.id,
                reason = %reason,
                "notification given up"
            );
        }
    }
    outbox_call(
        worker,
        delivery,
        "record the delivery in the outbox",
        || match &fate {
            Fate::Delivered => job.outbox.delivered(job.id),
            Fate::GaveUp(reason) => job.outbox.gave_up(job.id, reason),
        },
    )
    .await;
    job.key
}
