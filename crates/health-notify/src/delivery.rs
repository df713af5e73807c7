//! One notifier's delivery loop: it takes the notifier's entries from the outbox in id
//! order and delivers each one before the next, retrying per the [`RetryPolicy`] until
//! the entry is delivered or given up. An outbox that fails is waited out, never fatal.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use health_types::{Clock, Event, EventKind, Outbox, OutboxEntry, OutboxError};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::{
    MemoryOutbox, Message, Notifier, NotifyError, RetryPolicy,
    message::{DOWN_NOT_DELIVERED, format_downtime},
    outbox::{Item, Payload},
};

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
        // its last look and its wait is not missed.
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
    /// Which of the two outboxes `outbox` is, for the read cursors.
    external: bool,
    id: u64,
    created: SystemTime,
    payload: Payload,
}

/// How an entry ended.
enum Fate {
    Delivered,
    GaveUp(String),
}

/// One notifier's delivery loop: one entry at a time, in id order, until the dispatcher
/// closes and nothing is left.
///
/// With a durable outbox the task takes entries from both outboxes, the older first
/// (ready messages from [`Dispatcher::send`](crate::Dispatcher::send) wait in the memory
/// one); each outbox's entries keep their id order.
pub(crate) async fn run(worker: Arc<Worker>, notifier: Arc<dyn Notifier>, delivery: Arc<Delivery>) {
    let mut reader = Reader::default();
    while let Some(job) = reader.next(&worker, &delivery).await {
        deliver(&worker, notifier.as_ref(), &delivery, &job).await;
        if job.external {
            reader.external_after = job.id;
        } else {
            reader.memory_after = job.id;
        }
    }
    debug!(notifier = %worker.name, "delivery task finished");
}

/// Where a task is in each outbox.
#[derive(Default)]
struct Reader {
    /// The last entry of the memory outbox that is done.
    memory_after: u64,
    /// The last entry of the durable outbox that is done.
    external_after: u64,
    /// Entries read from the durable outbox, not yet delivered.
    buffer: VecDeque<OutboxEntry>,
}

impl Reader {
    /// The next entry to deliver, waiting for one; `None` once closed and empty.
    async fn next(&mut self, worker: &Worker, delivery: &Delivery) -> Option<Job> {
        loop {
            if self.buffer.is_empty()
                && let Some(external) = &delivery.external
            {
                let after = self.external_after;
                let read = outbox_call(worker, delivery, "read the outbox", || {
                    external.pending(&worker.name, after, BATCH)
                })
                .await;
                self.buffer.extend(read);
            }
            let memory = delivery.memory.next(&worker.name, self.memory_after);
            // The older first; on a tie the durable outbox's entry.
            let take_memory = match (&memory, self.buffer.front()) {
                (Some(item), Some(entry)) => item.created < entry.created,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => {
                    if worker.closing.load(Ordering::Acquire) {
                        return None;
                    }
                    worker.wake.notified().await;
                    continue;
                }
            };
            if take_memory
                && let Some(Item {
                    id,
                    created,
                    payload,
                }) = memory
            {
                return Some(Job {
                    outbox: Arc::clone(&delivery.memory) as Arc<dyn Outbox>,
                    external: false,
                    id,
                    created,
                    payload,
                });
            }
            if let (Some(entry), Some(external)) = (self.buffer.pop_front(), &delivery.external) {
                return Some(Job {
                    outbox: Arc::clone(external),
                    external: true,
                    id: entry.id,
                    created: entry.created,
                    payload: Payload::Event(entry.event),
                });
            }
        }
    }
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
                let delay = delivery.retry.delay(failures);
                warn!(
                    notifier = %worker.name,
                    failures,
                    retry_in = ?delay,
                    error = %err,
                    "could not {what}; will try again"
                );
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
        // The `down` has a lower id, so its fate is settled by now.
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

/// Tries one entry until it is delivered or given up, then records that in its outbox.
async fn deliver(worker: &Worker, notifier: &dyn Notifier, delivery: &Delivery, job: &Job) {
    let message = message_for(worker, delivery, job).await;
    // `None`: an age limit past the end of time, so no limit.
    let deadline = job.created.checked_add(delivery.retry.max_age);
    let mut retry = 0u32;
    let fate = loop {
        let outcome = match tokio::time::timeout(delivery.timeout, notifier.send(&message)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(NotifyError::Timeout(delivery.timeout)),
        };
        let err = match outcome {
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
}
