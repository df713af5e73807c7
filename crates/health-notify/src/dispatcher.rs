//! The [`Dispatcher`]: delivers notifications from an outbox (a durable one, or its own
//! in memory) with one task per notifier, each monitor's messages in order, and is the
//! [`EventSink`] monitors report to when there is no store.

use std::{
    collections::HashSet,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use health_types::{Clock, Event, EventSink, Outbox, OutboxError, SystemClock};
use tokio::{task::JoinHandle, time::Instant};
use tracing::{Instrument, debug, error, info_span, warn};

use crate::{
    MemoryOutbox, Message, Notifier, NotifyError, RetryPolicy, Stats,
    delivery::{Delivery, Worker, run},
    outbox::{DEFAULT_CAPACITY, Payload, Push, lock},
};

/// Default per-request timeout: 10 s.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// One notifier's undelivered entries, for `healthd_outbox_pending{notifier}` and
/// `healthd_outbox_oldest_seconds{notifier}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierBacklog {
    /// The notifier's name.
    pub name: String,
    /// How many entries wait for it (those in delivery included).
    pub pending: u64,
    /// When the oldest of them entered the outbox (wall clock); `None` when none wait.
    pub oldest: Option<SystemTime>,
}

impl NotifierBacklog {
    /// How long the oldest entry has waited at `now`: zero when none waits.
    pub fn oldest_age(&self, now: SystemTime) -> Duration {
        self.oldest
            .and_then(|oldest| now.duration_since(oldest).ok())
            .unwrap_or_default()
    }
}

/// What [`Dispatcher::shutdown`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every notifier's entries were delivered or given up before the deadline.
    pub drained: bool,
    /// Entries of the in-memory outbox still undelivered at the deadline: lost (also
    /// counted as dropped).
    pub abandoned: u64,
    /// Entries of the durable outbox still undelivered at the deadline: they stay in it
    /// and are delivered after the next start.
    pub kept: u64,
}

/// Builds a [`Dispatcher`]; see [`Dispatcher::builder`].
#[derive(Debug)]
pub struct DispatcherBuilder {
    notifiers: Vec<Arc<dyn Notifier>>,
    outbox: Option<Arc<dyn Outbox>>,
    queue_capacity: usize,
    retry: RetryPolicy,
    request_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl Default for DispatcherBuilder {
    /// No notifiers, no durable outbox (an in-memory one with room for 256 waiting
    /// messages per notifier), the default [`RetryPolicy`] (1 s ×2 ±10 %, cap 5 min,
    /// for 24 h), 10 s per request, the system clock.
    fn default() -> Self {
        DispatcherBuilder {
            notifiers: Vec::new(),
            outbox: None,
            queue_capacity: DEFAULT_CAPACITY,
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

    /// Delivers from `outbox`, a durable one that a store fills (SPEC §9.1), instead of
    /// an in-memory one. Events then reach it through the store (`StateSink`), not
    /// through [`notify`](EventSink::notify): see [`Dispatcher`].
    pub fn outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// How many messages wait per notifier in the in-memory outbox, besides those in
    /// delivery, before the oldest waiting one is dropped (at least 1).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// The retry schedule and age limit.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The longest one delivery attempt may take.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The wall clock: it stamps in-memory entries, measures an entry's age against
    /// `max_age`, and turns a `Retry-After` date into a delay.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts one delivery task per notifier on the current tokio runtime. Each task
    /// looks at the outbox at once, so entries left from before a restart start now, in
    /// id order (each service's in order, see [`Dispatcher`]).
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
            memory: Arc::new(MemoryOutbox::new(self.queue_capacity)),
            external: self.outbox,
        });
        let mut workers = Vec::with_capacity(self.notifiers.len());
        let mut tasks = Vec::with_capacity(self.notifiers.len());
        for notifier in self.notifiers {
            let worker = Arc::new(Worker::new(notifier.name().to_owned(), notifier.provider()));
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
                delivery,
                warned_ignored: AtomicBool::new(false),
            }),
        })
    }
}

/// Delivers notifications from an outbox, one task per notifier, each monitor's
/// messages strictly in order.
///
/// - **Where entries come from.** Without a durable outbox, the dispatcher keeps its
///   own in memory and is the [`EventSink`] monitors report to:
///   [`notify`](EventSink::notify) and [`send`](Self::send) never block; each notifier
///   has room for a bounded number of waiting messages, and when it is full the oldest
///   waiting one is dropped, counted and logged. With a durable outbox
///   ([`DispatcherBuilder::outbox`]), the store commits each event's entries with the
///   monitor's state (`StateSink`, SPEC §9.1) and calls [`wake`](Self::wake) after the
///   commit; `notify` is then **ignored** (logged once): the store already holds the
///   event, and queuing it here as well would deliver it twice, out of order with the
///   store's entries. Ready messages ([`send`](Self::send)) always wait in memory.
/// - **Order.** Each notifier's task starts its entries in id (commit) order, with up to
///   16 delivery attempts in flight at once, and delivers the entries of one service
///   (monitor) strictly in order: an entry starts only once the previous entry of its
///   service was delivered or given up, so an `up` never overtakes the `down` of its
///   outage, and when that `down` was given up, the `up` carries the field `Note` =
///   `down notification was not delivered`. Entries of different services do not wait
///   for each other: a failing entry backs off on its own and holds no attempt slot
///   while it waits. Ready messages ([`send`](Self::send)) are ordered by their
///   `service` the same way, all those without one as one service. A task holds at most
///   1024 entries (in delivery, or waiting behind an earlier entry of their service);
///   at that many it reads no further until one is done. A slow or unreachable receiver
///   delays only its own notifier.
///
///   This is how SPEC §9.1's "in order per notifier" is kept: started in commit order,
///   one monitor's messages delivered strictly in order. Strict order across every
///   monitor would let one message that the receiver refuses (a random 500, a 429) hold
///   back every other monitor's alerts for at least its backoff of a second or more: a
///   receiver that fails 5 % of requests at random would hold a notifier under 20
///   messages a second, and a flapping fleet's backlog would grow without end.
/// - **Retries.** Each attempt has a timeout (10 s by default). Transport errors,
///   timeouts, HTTP 408, 429 and 5xx are retried per the [`RetryPolicy`] (at least as
///   long as a `Retry-After` asks) until the entry is `max_age` old; other failures are
///   given up at once. Every retry and every give-up is logged with the notifier, the
///   service, the event and the reason, and counted in [`Stats`].
/// - **Outbox failures** are logged and retried with backoff; the entry at hand is
///   neither lost nor sent twice because of them.
/// - [`shutdown`](Self::shutdown) delivers what it can within a deadline; what is left
///   stays in a durable outbox for the next start.
///
/// Delivery is at least once: an entry delivered but not yet marked when the process
/// dies is sent again after the restart.
///
/// Cloning is cheap and clones share everything. When the last clone is dropped
/// without a shutdown, the tasks deliver what is pending and end.
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
///
/// With a durable outbox that a store fills:
///
/// ```no_run
/// use std::{sync::Arc, time::Duration};
///
/// use health_notify::{Dispatcher, Notifier};
/// use health_types::Outbox;
///
/// # async fn example(
/// #     notifiers: Vec<Arc<dyn Notifier>>,
/// #     store: Arc<dyn Outbox>,
/// # ) -> Result<(), health_notify::NotifyError> {
/// let dispatcher = Dispatcher::builder()
///     .notifiers(notifiers)
///     .outbox(store)
///     .start()?;
/// // The store's commit hook: `dispatcher.wake(&names_of_the_committed_entries)`.
/// dispatcher.wake(["ops"]);
/// for backlog in dispatcher.backlog().unwrap_or_default() {
///     println!("{}: {} pending", backlog.name, backlog.pending);
/// }
/// let report = dispatcher.shutdown(Duration::from_secs(5)).await;
/// println!("{} left for the next start", report.kept);
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

    /// Queues `message` in memory for the notifiers in its `to` list (all when empty)
    /// and returns at once. Ready messages are never durable, with or without a durable
    /// outbox.
    pub fn send(&self, message: Message) {
        let to = message.to.clone();
        self.enqueue(&Payload::Message(Arc::new(message)), &to);
    }

    /// Queues `event`'s §6 message in memory for the notifiers in `to` (all when empty),
    /// unless a durable outbox is in use (then the store holds it already).
    fn notify_to(&self, event: Event, to: &[String]) {
        if self.shared.delivery.external.is_some() {
            let first = !self.shared.warned_ignored.swap(true, Ordering::Relaxed);
            if first {
                warn!(
                    service = %event.service,
                    event = %event.kind,
                    "notify() ignored: this dispatcher delivers from a durable outbox, \
                     which the store fills; monitors report to the store"
                );
            } else {
                debug!(service = %event.service, event = %event.kind, "notify() ignored");
            }
            return;
        }
        self.enqueue(&Payload::Event(event), to);
    }

    /// Pushes `payload` to the memory outbox of each notifier in `to` (all when empty).
    fn enqueue(&self, payload: &Payload, to: &[String]) {
        let delivery = &self.shared.delivery;
        let created = delivery.clock.now();
        let mut matched = false;
        for worker in &self.shared.workers {
            if !to.is_empty() && !to.iter().any(|name| *name == worker.name) {
                continue;
            }
            matched = true;
            let pushed = delivery
                .memory
                .push_open(&worker.name, payload.clone(), created);
            let (dropped, why) = match pushed {
                Push::Queued => {
                    worker.wake();
                    continue;
                }
                Push::DroppedOldest(oldest) => {
                    worker.wake();
                    let why = "notification queue full; dropped the oldest message";
                    (oldest.payload, why)
                }
                Push::Closed => (
                    payload.clone(),
                    "dispatcher is shut down; dropped the message",
                ),
            };
            worker.counters.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                notifier = %worker.name,
                provider = worker.provider,
                service = %dropped.service(),
                event = %dropped.event(),
                "{why}"
            );
        }
        if !matched && !to.is_empty() {
            warn!(
                service = %payload.service(),
                event = %payload.event(),
                ?to,
                "message is addressed to no configured notifier"
            );
        }
    }

    /// Makes the named notifiers' tasks look at the outbox now: a store calls this
    /// after committing entries for them. Names that are not configured are ignored.
    pub fn wake<I>(&self, notifiers: I)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for name in notifiers {
            let name = name.as_ref();
            if let Some(worker) = self.shared.workers.iter().find(|w| w.name == name) {
                worker.wake();
            }
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

    /// Each configured notifier's undelivered entries (durable and in memory), in the
    /// order the notifiers were added: one row per notifier, zero when none wait.
    /// Fails when the durable outbox cannot be read.
    pub fn backlog(&self) -> Result<Vec<NotifierBacklog>, OutboxError> {
        let delivery = &self.shared.delivery;
        self.shared
            .workers
            .iter()
            .map(|worker| {
                let (mut pending, mut oldest) = delivery.memory.backlog(&worker.name)?;
                if let Some(external) = &delivery.external {
                    let (durable, durable_oldest) = external.backlog(&worker.name)?;
                    pending += durable;
                    oldest = match (oldest, durable_oldest) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Ok(NotifierBacklog {
                    name: worker.name.clone(),
                    pending,
                    oldest,
                })
            })
            .collect()
    }

    /// Stops taking messages, then gives the tasks up to `within` to deliver what is
    /// pending (retries included). At the deadline the tasks are stopped: what is left
    /// in memory is abandoned, counted as dropped and logged; what is left in a durable
    /// outbox stays there for the next start, and is reported as kept. Later calls
    /// return at once.
    pub async fn shutdown(&self, within: Duration) -> ShutdownReport {
        let delivery = &self.shared.delivery;
        delivery.memory.close();
        for worker in &self.shared.workers {
            worker.close();
        }
        let tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        let deadline = Instant::now() + within;
        let mut report = ShutdownReport {
            drained: true,
            abandoned: 0,
            kept: 0,
        };
        for (worker, mut task) in tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    error!(notifier = %worker.name, provider = worker.provider, error = %err, "delivery task failed");
                }
                Err(_elapsed) => {
                    task.abort();
                    // Wait for the abort to land so the counts below are final.
                    let _ = task.await;
                }
            }
            let abandoned = delivery.memory.clear(&worker.name);
            let kept = match &delivery.external {
                Some(external) => match external.backlog(&worker.name) {
                    Ok((kept, _)) => kept,
                    Err(err) => {
                        warn!(notifier = %worker.name, error = %err, "could not count what is left in the outbox");
                        0
                    }
                },
                None => 0,
            };
            if abandoned > 0 {
                worker
                    .counters
                    .dropped
                    .fetch_add(abandoned, Ordering::Relaxed);
                warn!(
                    notifier = %worker.name,
                    provider = worker.provider,
                    abandoned,
                    "shutdown deadline reached; abandoned undelivered messages"
                );
            }
            if kept > 0 {
                warn!(
                    notifier = %worker.name,
                    provider = worker.provider,
                    kept,
                    "shutdown deadline reached; undelivered messages stay in the outbox"
                );
            }
            report.drained &= abandoned == 0 && kept == 0;
            report.abandoned += abandoned;
            report.kept += kept;
        }
        report
    }
}

impl EventSink for Dispatcher {
    /// Queues the §6 message for the event, for every notifier; ignored (and logged)
    /// when a durable outbox is in use, since the store holds the event already.
    fn notify(&self, event: Event) {
        self.notify_to(event, &[]);
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("notifiers", &self.notifier_names().collect::<Vec<_>>())
            .field("durable", &self.shared.delivery.external.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

/// An [`EventSink`] that sends each event's message to a fixed list of notifiers; made
/// by [`Dispatcher::targeted`]. Like the dispatcher's own `notify`, it is ignored when a
/// durable outbox is in use.
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
        self.dispatcher.notify_to(event, &self.to);
    }
}

struct Shared {
    workers: Vec<Arc<Worker>>,
    tasks: Mutex<Vec<(Arc<Worker>, JoinHandle<()>)>>,
    delivery: Arc<Delivery>,
    /// `notify` on a durable dispatcher was logged once already.
    warned_ignored: AtomicBool,
}

impl Drop for Shared {
    /// The last handle is gone: let the tasks deliver what is pending and end.
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.close();
        }
    }
}
