//! [`MemoryOutbox`]: the [`Outbox`] a dispatcher delivers from when it was given no
//! durable one. Bounded per notifier, and lost when the process ends.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::SystemTime,
};

use health_types::{Event, EventKind, Outbox, OutboxEntry, OutboxError};
use tracing::warn;

use crate::{Message, MessageEvent};

/// Default per-notifier capacity of a [`MemoryOutbox`]: 256 waiting entries.
pub(crate) const DEFAULT_CAPACITY: usize = 256;

/// What one entry asks a notifier to deliver.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    /// A monitor event, rendered as its §6 message when it is delivered.
    Event(Event),
    /// A ready message ([`Dispatcher::send`](crate::Dispatcher::send)); only the
    /// dispatcher's own memory outbox holds these.
    Message(Arc<Message>),
}

impl Payload {
    /// The service it is about (empty for a message without one), for logs.
    pub(crate) fn service(&self) -> &str {
        match self {
            Payload::Event(event) => &event.service,
            Payload::Message(message) => &message.service,
        }
    }

    /// What it is about, for logs.
    pub(crate) fn event(&self) -> MessageEvent {
        match self {
            Payload::Event(event) => MessageEvent::from(event.kind),
            Payload::Message(message) => message.event,
        }
    }
}

/// One entry of a [`MemoryOutbox`], with either kind of payload.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// Increasing in push order, over all notifiers.
    pub(crate) id: u64,
    /// When it was pushed (wall clock).
    pub(crate) created: SystemTime,
    /// What to deliver.
    pub(crate) payload: Payload,
    /// A dispatcher took it for delivery ([`MemoryOutbox::start`]): it is not dropped.
    started: bool,
}

/// What [`MemoryOutbox::push_open`] did.
#[derive(Debug)]
pub(crate) enum Push {
    /// Queued.
    Queued,
    /// Queued, and this older entry was dropped to make room.
    DroppedOldest(Item),
    /// The outbox is closed: nothing was queued.
    Closed,
}

/// An [`Outbox`] in memory, bounded per notifier: what a
/// [`Dispatcher`](crate::Dispatcher) delivers from when it was given no durable one.
///
/// Each notifier's entries are kept in id order. Entries in delivery are never dropped:
/// the oldest one, at the head, and, in a dispatcher's own outbox, every entry the
/// dispatcher has started (a notifier has several in delivery at once, one per service).
/// Besides them at most `capacity` entries wait, and a push to a full notifier drops the
/// oldest waiting one (logged; the dispatcher also counts it in
/// [`Stats::dropped`](crate::Stats::dropped)). A dropped `down` counts as given up, so
/// the `up` of its outage carries the `Note` field.
///
/// Nothing survives the process: for delivery across restarts, give the dispatcher a
/// durable [`Outbox`] (`health-store`'s).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// use health_notify::MemoryOutbox;
/// use health_types::{Event, EventKind, Outbox};
///
/// let outbox = MemoryOutbox::new(16);
/// let event = Event {
///     kind: EventKind::Down,
///     service: "api".into(),
///     url: "http://api.test/health".into(),
///     detail: "HTTP 503".into(),
///     latency: Duration::from_millis(12),
///     last_seen: None,
///     outage: None,
///     outage_start: Some(UNIX_EPOCH),
///     time: UNIX_EPOCH,
/// };
/// let id = outbox.push("ops", event, UNIX_EPOCH);
/// assert_eq!(outbox.pending("ops", 0, 10)?.len(), 1);
/// outbox.delivered(id)?;
/// assert_eq!(outbox.backlog("ops")?, (0, None));
/// # Ok::<(), health_types::OutboxError>(())
/// ```
pub struct MemoryOutbox {
    state: Mutex<State>,
    capacity: usize,
}

/// Names one outage as seen by one notifier: (notifier, service, outage start).
type OutageKey = (String, Arc<str>, SystemTime);

#[derive(Default)]
struct State {
    next_id: u64,
    /// Each notifier's entries, in id order.
    queues: HashMap<String, VecDeque<Item>>,
    /// Which notifier each entry belongs to, for the calls that name only an id.
    owners: HashMap<u64, String>,
    /// Outages whose `down` was given up (or dropped), until their `up` is done.
    given_up: HashSet<OutageKey>,
    closed: bool,
}

/// Locks `mutex`, taking it back when poisoned.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding this lock; a poisoned one still holds valid data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The outage an event belongs to, for `down` and `up` events that name one.
fn outage_key(notifier: &str, payload: &Payload) -> Option<(EventKind, OutageKey)> {
    match payload {
        Payload::Event(event) => event.outage_start.map(|start| {
            (
                event.kind,
                (notifier.to_owned(), Arc::clone(&event.service), start),
            )
        }),
        Payload::Message(_) => None,
    }
}

impl State {
    fn insert(
        &mut self,
        notifier: &str,
        payload: Payload,
        created: SystemTime,
        capacity: usize,
    ) -> (u64, Option<Item>) {
        self.next_id += 1;
        let id = self.next_id;
        let queue = self.queues.entry(notifier.to_owned()).or_default();
        // Entries in delivery neither count nor are dropped: the head (a reader through
        // `Outbox` does not say which entries it took) and those a dispatcher started.
        let mut waiting = queue
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, item)| !item.started);
        let oldest = waiting.next().map(|(at, _)| at);
        let dropped = match oldest {
            Some(at) if 1 + waiting.count() >= capacity => queue.remove(at),
            _ => None,
        };
        queue.push_back(Item {
            id,
            created,
            payload,
            started: false,
        });
        self.owners.insert(id, notifier.to_owned());
        if let Some(old) = &dropped {
            self.owners.remove(&old.id);
            self.settle(notifier, &old.payload, true);
        }
        (id, dropped)
    }

    /// Removes entry `id`; `None` when it is not here (done, dropped or unknown).
    fn remove(&mut self, id: u64) -> Option<(String, Item)> {
        let notifier = self.owners.remove(&id)?;
        let queue = self.queues.get_mut(&notifier)?;
        let at = queue.binary_search_by_key(&id, |item| item.id).ok()?;
        let item = queue.remove(at)?;
        Some((notifier, item))
    }

    /// Keeps the record of given-up `down`s: a `down` that was not delivered marks its
    /// outage; an `up` that is done, either way, ends it.
    fn settle(&mut self, notifier: &str, payload: &Payload, given_up: bool) {
        match outage_key(notifier, payload) {
            Some((EventKind::Down, key)) if given_up => {
                self.given_up.insert(key);
            }
            Some((EventKind::Up, key)) => {
                self.given_up.remove(&key);
            }
            _ => {}
        }
    }
}

impl MemoryOutbox {
    /// An empty outbox that keeps, per notifier, the entries in delivery and at most
    /// `capacity` (at least 1) waiting besides them.
    pub fn new(capacity: usize) -> Self {
        MemoryOutbox {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
        }
    }

    /// Adds `event` for `notifier`, committed at `created`, and returns its id (ids
    /// increase with each push). When `notifier` already has `capacity` entries waiting,
    /// the oldest waiting one is dropped and logged.
    ///
    /// A dispatcher does not watch this outbox: call
    /// [`Dispatcher::wake`](crate::Dispatcher::wake) after pushing.
    pub fn push(&self, notifier: &str, event: Event, created: SystemTime) -> u64 {
        let (id, dropped) =
            lock(&self.state).insert(notifier, Payload::Event(event), created, self.capacity);
        if let Some(old) = dropped {
            warn!(
                notifier,
                id = old.id,
                "outbox full; dropped the oldest waiting entry"
            );
        }
        id
    }

    /// Adds `payload` for `notifier` unless the outbox is closed.
    pub(crate) fn push_open(&self, notifier: &str, payload: Payload, created: SystemTime) -> Push {
        let mut state = lock(&self.state);
        if state.closed {
            return Push::Closed;
        }
        match state.insert(notifier, payload, created, self.capacity) {
            (_, Some(old)) => Push::DroppedOldest(old),
            (_, None) => Push::Queued,
        }
    }

    /// `notifier`'s first entry with an id above `after`, whatever its payload.
    pub(crate) fn next(&self, notifier: &str, after: u64) -> Option<Item> {
        let state = lock(&self.state);
        let queue = state.queues.get(notifier)?;
        // Queues are in id order.
        queue
            .get(queue.partition_point(|item| item.id <= after))
            .cloned()
    }

    /// Marks entry `id` as in delivery, so that it is no longer dropped to make room;
    /// `false` when it is not here (dropped meanwhile).
    pub(crate) fn start(&self, id: u64) -> bool {
        let mut state = lock(&self.state);
        let Some(notifier) = state.owners.get(&id).cloned() else {
            return false;
        };
        let Some(queue) = state.queues.get_mut(&notifier) else {
            return false;
        };
        match queue.binary_search_by_key(&id, |item| item.id) {
            Ok(at) => {
                queue[at].started = true;
                true
            }
            Err(_) => false,
        }
    }

    /// Refuses later [`push_open`](Self::push_open)s.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
    }

    /// Empties `notifier`'s entries and returns how many there were.
    pub(crate) fn clear(&self, notifier: &str) -> u64 {
        let mut state = lock(&self.state);
        let items = state.queues.remove(notifier).unwrap_or_default();
        for item in &items {
            state.owners.remove(&item.id);
        }
        items.len() as u64
    }
}

impl Default for MemoryOutbox {
    /// Room for 256 waiting entries per notifier.
    fn default() -> Self {
        MemoryOutbox::new(DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for MemoryOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        let pending: HashMap<&str, usize> = state
            .queues
            .iter()
            .map(|(name, queue)| (name.as_str(), queue.len()))
            .collect();
        f.debug_struct("MemoryOutbox")
            .field("capacity", &self.capacity)
            .field("pending", &pending)
            .finish()
    }
}

impl Outbox for MemoryOutbox {
    /// Only event entries: ready messages of a dispatcher's own outbox are not listed.
    fn pending(
        &self,
        notifier: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, OutboxError> {
        let state = lock(&self.state);
        let Some(queue) = state.queues.get(notifier) else {
            return Ok(Vec::new());
        };
        let entries = queue
            .iter()
            .filter(|item| item.id > after)
            .filter_map(|item| match &item.payload {
                Payload::Event(event) => Some(OutboxEntry {
                    id: item.id,
                    notifier: notifier.to_owned(),
                    event: event.clone(),
                    created: item.created,
                }),
                Payload::Message(_) => None,
            })
            .take(limit)
            .collect();
        Ok(entries)
    }

    /// Removes the entry; an id that is not here (dropped meanwhile) is not an error.
    fn delivered(&self, id: u64) -> Result<(), OutboxError> {
        let mut state = lock(&self.state);
        if let Some((notifier, item)) = state.remove(id) {
            state.settle(&notifier, &item.payload, false);
        }
        Ok(())
    }

    /// Removes the entry and, for a `down`, remembers its outage until the `up` is done.
    fn gave_up(&self, id: u64, _reason: &str) -> Result<(), OutboxError> {
        let mut state = lock(&self.state);
        if let Some((notifier, item)) = state.remove(id) {
            state.settle(&notifier, &item.payload, true);
        }
        Ok(())
    }

    fn down_given_up(
        &self,
        notifier: &str,
        service: &str,
        outage_start: SystemTime,
    ) -> Result<bool, OutboxError> {
        let key = (notifier.to_owned(), Arc::from(service), outage_start);
        Ok(lock(&self.state).given_up.contains(&key))
    }

    /// Counts every entry, ready messages included.
    fn backlog(&self, notifier: &str) -> Result<(u64, Option<SystemTime>), OutboxError> {
        let state = lock(&self.state);
        let Some(queue) = state.queues.get(notifier) else {
            return Ok((0, None));
        };
        let oldest = queue.iter().map(|item| item.created).min();
        Ok((queue.len() as u64, oldest))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn event(kind: EventKind, service: &str, outage_start: u64) -> Event {
        Event {
            kind,
            service: service.into(),
            url: String::new(),
            detail: String::new(),
            latency: Duration::ZERO,
            last_seen: None,
            outage: None,
            outage_start: Some(at(outage_start)),
            time: at(outage_start),
        }
    }

    fn ids(outbox: &MemoryOutbox, notifier: &str) -> Vec<u64> {
        let entries = outbox.pending(notifier, 0, 100).unwrap();
        entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn entries_come_back_per_notifier_in_id_order_after_a_cursor() {
        let outbox = MemoryOutbox::new(8);
        let a1 = outbox.push("a", event(EventKind::Down, "x", 1), at(1));
        let b1 = outbox.push("b", event(EventKind::Down, "x", 1), at(2));
        let a2 = outbox.push("a", event(EventKind::Up, "x", 1), at(3));
        assert!(a1 < b1 && b1 < a2);
        assert_eq!(ids(&outbox, "a"), [a1, a2]);
        assert_eq!(ids(&outbox, "b"), [b1]);
        let after = outbox.pending("a", a1, 100).unwrap();
        assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), [a2]);
        assert_eq!(after[0].notifier, "a");
        assert_eq!(after[0].created, at(3));
        assert_eq!(outbox.pending("a", 0, 1).unwrap().len(), 1);
        assert_eq!(outbox.backlog("a").unwrap(), (2, Some(at(1))));
        assert_eq!(outbox.backlog("nobody").unwrap(), (0, None));
        outbox.delivered(a1).unwrap();
        outbox.delivered(a1).unwrap();
        assert_eq!(ids(&outbox, "a"), [a2]);
    }

    #[test]
    fn a_full_notifier_drops_its_oldest_waiting_entry_never_the_head() {
        let outbox = MemoryOutbox::new(2);
        let pushed: Vec<u64> = (0..5)
            .map(|i| outbox.push("a", event(EventKind::Stopped, "x", i), at(i)))
            .collect();
        outbox.push("b", event(EventKind::Stopped, "y", 0), at(0));
        assert_eq!(ids(&outbox, "a"), [pushed[0], pushed[3], pushed[4]]);
        assert_eq!(
            outbox.backlog("b").unwrap().0,
            1,
            "other notifiers keep theirs"
        );
        // A dropped entry that is marked later is simply gone.
        outbox.delivered(pushed[1]).unwrap();
        assert_eq!(outbox.clear("a"), 3);
        assert_eq!(outbox.backlog("a").unwrap(), (0, None));
    }

    #[test]
    fn a_given_up_or_dropped_down_marks_its_outage_until_the_up_is_done() {
        let outbox = MemoryOutbox::new(1);
        let down = outbox.push("a", event(EventKind::Down, "x", 10), at(10));
        assert!(!outbox.down_given_up("a", "x", at(10)).unwrap());
        outbox.gave_up(down, "receiver answered HTTP 400").unwrap();
        assert!(outbox.down_given_up("a", "x", at(10)).unwrap());
        assert!(
            !outbox.down_given_up("b", "x", at(10)).unwrap(),
            "per notifier"
        );
        assert!(
            !outbox.down_given_up("a", "x", at(11)).unwrap(),
            "per outage"
        );
        let up = outbox.push("a", event(EventKind::Up, "x", 10), at(20));
        outbox.delivered(up).unwrap();
        assert!(!outbox.down_given_up("a", "x", at(10)).unwrap());

        // Capacity 1: the head stays, the down waiting behind it is dropped.
        outbox.push("a", event(EventKind::Stopped, "z", 0), at(30));
        outbox.push("a", event(EventKind::Down, "x", 40), at(40));
        outbox.push("a", event(EventKind::Up, "x", 40), at(50));
        assert!(outbox.down_given_up("a", "x", at(40)).unwrap());
    }

    #[test]
    fn entries_a_dispatcher_started_are_never_dropped_nor_counted_as_waiting() {
        let outbox = MemoryOutbox::new(2);
        let push = |i| outbox.push("a", event(EventKind::Stopped, "x", i), at(i));
        let started: Vec<u64> = (0..3).map(push).collect();
        // Two in delivery behind the head: two more may wait besides them.
        assert!(outbox.start(started[1]) && outbox.start(started[2]));
        let waiting: Vec<u64> = (3..6).map(push).collect();
        assert_eq!(
            ids(&outbox, "a"),
            [started[0], started[1], started[2], waiting[1], waiting[2]]
        );
        assert!(!outbox.start(waiting[0]), "dropped");
        assert!(!outbox.start(999), "unknown");
        assert!(outbox.start(waiting[1]));
        push(6);
        assert_eq!(
            ids(&outbox, "a")[3..],
            [waiting[1], waiting[2], 7],
            "nothing dropped: one waits besides the four in delivery"
        );
    }

    #[test]
    fn a_closed_outbox_takes_no_more_and_messages_stay_out_of_pending() {
        let outbox = MemoryOutbox::new(4);
        let message = Arc::new(Message::custom("hello", at(0)));
        assert!(matches!(
            outbox.push_open("a", Payload::Message(message), at(0)),
            Push::Queued
        ));
        assert!(outbox.pending("a", 0, 10).unwrap().is_empty());
        assert_eq!(outbox.backlog("a").unwrap(), (1, Some(at(0))));
        let item = outbox.next("a", 0).unwrap();
        assert!(matches!(item.payload, Payload::Message(ref m) if m.title == "hello"));
        assert!(outbox.next("a", item.id).is_none());
        outbox.close();
        let late = Payload::Event(event(EventKind::Down, "x", 0));
        assert!(matches!(outbox.push_open("a", late, at(1)), Push::Closed));
    }
}
