//! [`AlertGate`]: the [`AlertPolicy`] between monitors and their state sink, with the
//! timer that does what time does (reminders, the end of flapping, window boundaries).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use health_types::{AlertState, Clock, Event, MonitorState, StateSink};
use tokio::sync::Notify;

use super::AlertPolicy;

/// The longest the timer sleeps before it looks again (a wall clock that jumps is
/// noticed within this).
const MAX_NAP: Duration = Duration::from_secs(60);

/// The policy and the last state each tracked monitor recorded.
#[derive(Debug)]
struct Inner {
    policy: AlertPolicy,
    /// Each tracked monitor's last recorded state: what a record the policy makes on its
    /// own (a reminder, a released `down`) is committed with.
    states: HashMap<Arc<str>, MonitorState>,
    /// When the timer means to wake next (`None`: it is awake, or has not slept yet).
    planned: Option<SystemTime>,
}

/// The alert policy as a [`StateSink`]: monitors report to it, it reports to `inner` (the
/// store) what the policy lets out, with each tracked monitor's [`AlertState`] in the
/// same record ([`StateSink::record_with_alert`]), so the store commits them together.
///
/// Monitors the policy does not track go straight through: one mutex and a hash lookup
/// per record. [`run`](Self::run) is the timer; spawn it once and abort it at shutdown.
pub struct AlertGate {
    inner: Arc<dyn StateSink>,
    clock: Arc<dyn Clock>,
    shared: Mutex<Inner>,
    wake: Notify,
}

impl fmt::Debug for AlertGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertGate")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl AlertGate {
    /// A gate that applies `policy` and records into `inner`, reading the time from
    /// `clock`.
    pub fn new(policy: AlertPolicy, inner: Arc<dyn StateSink>, clock: Arc<dyn Clock>) -> Self {
        AlertGate {
            inner,
            clock,
            shared: Mutex::new(Inner {
                policy,
                states: HashMap::new(),
                planned: None,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Restores a monitor's saved state and alert state (before monitors start). What
    /// the restored state makes due (a held `down` whose dependency is back) goes out at
    /// the timer's first tick.
    pub fn restore(&self, monitor: &str, state: &MonitorState, alert: AlertState) {
        let now = self.clock.now();
        let mut inner = self.lock();
        // A monitor no rule concerns any more is tracked on when something of it was
        // saved (see `AlertPolicy::restore`).
        inner.policy.restore(monitor, state, alert, now);
        if inner.policy.tracks(monitor) {
            inner.states.insert(Arc::from(monitor), state.clone());
        }
    }

    /// Whether a maintenance window covers `monitor` now.
    pub fn in_maintenance(&self, monitor: &str) -> bool {
        let now = self.clock.now();
        self.lock().policy.in_maintenance(monitor, now)
    }

    /// The timer: ticks the policy when it is due and records what goes out; runs until
    /// aborted. It ticks once at once, for what restored states made due.
    pub async fn run(&self) {
        loop {
            let now = self.clock.now();
            let nap = {
                let mut inner = self.lock();
                let out = inner.policy.tick(now);
                self.commit(&mut inner, None, out);
                let nap = inner
                    .policy
                    .next_deadline(now)
                    .map_or(MAX_NAP, |at| at.duration_since(now).unwrap_or_default())
                    .min(MAX_NAP);
                inner.planned = Some(now + nap);
                nap
            };
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Records what the policy let out and every alert state it changed. `own` is the
    /// monitor whose record this is, with the events of its own that must be recorded
    /// even when none goes out (its state changed).
    fn commit(&self, inner: &mut Inner, own: Option<&Arc<str>>, out: Vec<(Arc<str>, Event)>) {
        let mut order: Vec<Arc<str>> = Vec::new();
        let mut by_monitor: HashMap<Arc<str>, Vec<Event>> = HashMap::new();
        if let Some(own) = own {
            order.push(Arc::clone(own));
            by_monitor.insert(Arc::clone(own), Vec::new());
        }
        for (monitor, event) in out {
            by_monitor
                .entry(Arc::clone(&monitor))
                .or_insert_with(|| {
                    order.push(Arc::clone(&monitor));
                    Vec::new()
                })
                .push(event);
        }
        for monitor in inner.policy.take_dirty() {
            by_monitor.entry(Arc::clone(&monitor)).or_insert_with(|| {
                order.push(monitor);
                Vec::new()
            });
        }
        for monitor in order {
            let events = by_monitor.remove(&monitor).unwrap_or_default();
            let state = inner.states.get(&monitor).cloned().unwrap_or_default();
            match inner.policy.state(&monitor) {
                Some(alert) => self
                    .inner
                    .record_with_alert(&monitor, &state, alert, &events),
                None => self.inner.record(&monitor, &state, &events),
            }
        }
    }
}

impl StateSink for AlertGate {
    /// Applies the policy to `events` and records `state` with what goes out (and, for
    /// monitors it released, their own records).
    fn record(&self, monitor: &str, state: &MonitorState, events: &[Event]) {
        let mut inner = self.lock();
        if !inner.policy.tracks(monitor) {
            // Recorded under the lock too, so the order of records stays the order of
            // the policy's decisions.
            self.inner.record(monitor, state, events);
            return;
        }
        let now: SystemTime = self.clock.now();
        let name: Arc<str> = match inner.states.get_key_value(monitor) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(monitor),
        };
        inner.states.insert(Arc::clone(&name), state.clone());
        let out = inner.policy.on_events(now, monitor, events);
        // The timer wakes early only when this made a deadline sooner than its own (a
        // reminder of a `down` that went out, flapping that began; a change may do either
        // for a dependent): one lookup per monitor concerned, not a pass over all.
        let sooner = |at: SystemTime| inner.planned.is_none_or(|planned| at < planned);
        let policy = &inner.policy;
        let wake = std::iter::once(monitor)
            .chain(out.iter().map(|(m, _)| &**m))
            .chain(policy.dependents_of(monitor).iter().map(|m| &**m))
            .any(|m| policy.deadline_of(m).is_some_and(sooner));
        self.commit(&mut inner, Some(&name), out);
        if wake {
            inner.planned = None;
        }
        drop(inner);
        if wake {
            self.wake.notify_one();
        }
    }
}
