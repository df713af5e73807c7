//! The alert policy (SPEC §9.5): reminders, dependencies, flap damping and maintenance
//! windows, between a monitor's events and the outbox. The state machine stays as it is:
//! it still makes one `down` and one `up` per outage; the policy decides when receivers
//! hear of them.
//!
//! [`AlertPolicy`] is pure: every call takes the wall-clock time and returns the events
//! to deliver, so it is tested step by step (the vectors in `tests/policy/`), and
//! [`AlertGate`] drives it: a [`StateSink`](health_types::StateSink) that monitors report
//! to, with a timer for reminders, the end of flapping and window boundaries, committing
//! each monitor's [`AlertState`] with its state and the events let out, so a restart
//! neither loses nor repeats a held notification.
//!
//! # The rules
//!
//! The policy tracks, per monitor, its status as the state machine reports it (its last
//! `down` or `up`) and what receivers were told (the `down` they believe stands, if
//! any). A monitor is *muted* while a maintenance window covers it, while it is
//! flapping, or while one of its `depends_on` monitors is down. While it is not muted,
//! receivers are kept in step with the status: a `down` they have not heard of goes out,
//! and the `up` of a `down` they heard of goes out. While it is muted, nothing about its
//! status goes out; when it stops being muted, it is brought in step at once:
//!
//! - `depends_on`: a `down` while a dependency is down is held. If the monitor comes
//!   back before the dependency, its `down` and `up` are both dropped (receivers heard of
//!   neither); if it is still down when the dependency comes back, its `down` goes out
//!   then. An `up` whose `down` went out before the dependency failed is held until the
//!   dependency is back, then goes out.
//! - `flap_threshold`/`flap_window`: each `down` and `up` is a status change. When a
//!   change makes more than `flap_threshold` changes within `flap_window`, one
//!   `flapping` event (`Monitor flapping: <name>`) goes out instead of it, and no `down`
//!   or `up` goes out until the monitor has held one status for `flap_window` (no change
//!   for that long); then receivers are brought in step (a `down` if it is down and they
//!   were told it was up, an `up` if the opposite, nothing if they agree).
//! - `remind_every`: while receivers were told of a `down` and the monitor is still
//!   down and not muted, a `reminder` (`Still down: <name>`) goes out when `remind_every`
//!   has passed since the `down` or the last reminder went out.
//! - `[[maintenance]]`: no notification at all (down, up, stopped, cert_expiry,
//!   reminder, flapping) goes out for a monitor while a window covers it. When the
//!   window closes, receivers are brought in step: a service that went down during the
//!   window and is still down gets its `down` then; one that went down and came back
//!   within it gets nothing.
//!
//! `stopped` and `cert_expiry` go out as they come, but inside a window (which drops
//! them). A monitor that stopped itself has no known status: it sends no reminders and
//! holds none of the monitors that depend on it, until its next `down` or `up`.
//!
//! After a restart the policy resumes from each monitor's saved [`AlertState`], and its
//! first tick brings every monitor in step: a window that closed or a dependency that
//! came back while the daemon was away releases what it held then. A monitor whose rules
//! were removed while something of it was held stays tracked, with no rules, so what it
//! held goes out and its `up` never goes out without its `down`.
//!
//! Every `down` and `up` that goes out is the state machine's own event, unchanged (its
//! time is when it happened, its outage start names the outage), so an `up` never goes
//! out without its `down`, and a `down` that went out always gets its `up`.

mod gate;
#[cfg(test)]
mod tests;
mod window;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use health_types::{AlertState, Event, EventKind, MonitorState};

pub use self::{
    gate::AlertGate,
    window::{MaintenanceWindow, Schedule, WindowError},
};

/// The default `flap_window`: 10 minutes.
pub const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(600);

/// A monitor's alert rules (SPEC §9.5 monitor keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRules {
    /// `remind_every`: a reminder at most this often while down; `None` = no reminders.
    pub remind_every: Option<Duration>,
    /// `depends_on`: the monitors whose outage holds this one's `down` and `up`.
    pub depends_on: Vec<String>,
    /// `flap_threshold`: more status changes than this within `flap_window` is flapping;
    /// 0 = no flap damping.
    pub flap_threshold: u32,
    /// `flap_window` (default 10m).
    pub flap_window: Duration,
}

impl Default for AlertRules {
    /// No reminders, no dependencies, no flap damping, a 10-minute flap window.
    fn default() -> Self {
        AlertRules {
            remind_every: None,
            depends_on: Vec::new(),
            flap_threshold: 0,
            flap_window: DEFAULT_FLAP_WINDOW,
        }
    }
}

impl AlertRules {
    /// Whether no rule applies (the policy then lets the monitor's events through).
    fn is_inert(&self) -> bool {
        self.remind_every.is_none() && self.depends_on.is_empty() && self.flap_threshold == 0
    }
}

/// The rules do not make sense together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `depends_on` names a monitor that does not exist.
    #[error("monitor {monitor:?}: `depends_on` names {name:?}, but no monitor has that name")]
    UnknownDependency {
        /// The monitor.
        monitor: String,
        /// The name.
        name: String,
    },
    /// `depends_on` goes round in a circle (a monitor that depends on itself, too): its
    /// monitors could hold each other's notifications forever.
    #[error("`depends_on` goes round in a circle: {0}")]
    Cycle(String),
    /// A `[[maintenance]]` window names a monitor that does not exist.
    #[error("[[maintenance]] {index}: `monitors` names {name:?}, but no monitor has that name")]
    UnknownMaintained {
        /// The window's position (1-based).
        index: usize,
        /// The name.
        name: String,
    },
    /// `remind_every` or `flap_window` is zero.
    #[error("monitor {monitor:?}: `{key}` must be more than 0s")]
    Zero {
        /// The monitor.
        monitor: String,
        /// The key.
        key: &'static str,
    },
}

/// Checks monitors' rules and maintenance windows together: every name exists, no
/// dependency cycle, no zero durations. `monitors` lists every monitor's name with its
/// rules.
pub fn validate(
    monitors: &[(String, AlertRules)],
    windows: &[MaintenanceWindow],
) -> Result<(), PolicyError> {
    let names: HashSet<&str> = monitors.iter().map(|(name, _)| name.as_str()).collect();
    for (monitor, rules) in monitors {
        if rules.remind_every.is_some_and(|every| every.is_zero()) {
            return Err(PolicyError::Zero {
                monitor: monitor.clone(),
                key: "remind_every",
            });
        }
        if rules.flap_window.is_zero() {
            return Err(PolicyError::Zero {
                monitor: monitor.clone(),
                key: "flap_window",
            });
        }
        if let Some(name) = rules
            .depends_on
            .iter()
            .find(|n| !names.contains(n.as_str()))
        {
            return Err(PolicyError::UnknownDependency {
                monitor: monitor.clone(),
                name: name.clone(),
            });
        }
    }
    for (index, window) in windows.iter().enumerate() {
        if let Some(name) = window
            .monitors()
            .iter()
            .find(|n| !names.contains(n.as_str()))
        {
            return Err(PolicyError::UnknownMaintained {
                index: index + 1,
                name: name.clone(),
            });
        }
    }
    // A depth-first walk; `path` is the chain being walked.
    let deps: HashMap<&str, &[String]> = monitors
        .iter()
        .map(|(name, rules)| (name.as_str(), rules.depends_on.as_slice()))
        .collect();
    let mut done: HashSet<&str> = HashSet::new();
    for (start, _) in monitors {
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        while let Some((node, next)) = path.last().copied() {
            if done.contains(node) {
                path.pop();
                continue;
            }
            let children = deps.get(node).copied().unwrap_or_default();
            if let Some(child) = children.get(next) {
                if let Some(last) = path.last_mut() {
                    last.1 += 1;
                }
                if let Some(at) = path.iter().position(|(n, _)| *n == child.as_str()) {
                    let mut circle: Vec<&str> = path[at..].iter().map(|(n, _)| *n).collect();
                    circle.push(child);
                    return Err(PolicyError::Cycle(circle.join(" -> ")));
                }
                path.push((child.as_str(), 0));
            } else {
                done.insert(node);
                path.pop();
            }
        }
    }
    Ok(())
}

/// The policy's per-monitor part: the rules, the windows that cover it and the state.
#[derive(Clone, Debug, Default)]
struct Tracked {
    rules: AlertRules,
    /// The indices of the windows that cover it.
    windows: Vec<usize>,
    state: AlertState,
}

/// The alert policy over a set of monitors (see the module docs for the rules).
///
/// Pure: no clock, no tasks. [`on_events`](Self::on_events) takes a monitor's events
/// and returns what goes out now (for it and for monitors it released);
/// [`tick`](Self::tick) does what time does (reminders, the end of flapping, window
/// boundaries) and [`next_deadline`](Self::next_deadline) says when it is next due.
/// A monitor no rule and no window concerns is not tracked: its events pass unchanged.
#[derive(Debug)]
pub struct AlertPolicy {
    tracked: HashMap<Arc<str>, Tracked>,
    dependents: HashMap<Arc<str>, Vec<Arc<str>>>,
    windows: Vec<MaintenanceWindow>,
    /// Which windows are open, as of `checked`; valid until `boundary`.
    open: Vec<bool>,
    checked: Option<SystemTime>,
    boundary: Option<SystemTime>,
    /// A window opened or closed (or the policy just started) and the monitors have not
    /// been brought in step since: the next [`tick`](Self::tick) or
    /// [`on_events`](Self::on_events) does it.
    catch_up: bool,
    /// Monitors whose state changed since [`take_dirty`](Self::take_dirty).
    dirty: Vec<Arc<str>>,
}

/// Whether `a` and `b` belong to the same outage.
fn same_outage(a: &Event, b: &Event) -> bool {
    a.outage_start == b.outage_start
}

impl AlertPolicy {
    /// A policy for `monitors` (every monitor's name with its rules) and `windows`;
    /// fails as [`validate`] does.
    pub fn new(
        monitors: Vec<(String, AlertRules)>,
        windows: Vec<MaintenanceWindow>,
    ) -> Result<Self, PolicyError> {
        validate(&monitors, &windows)?;
        let mut dependents: HashMap<Arc<str>, Vec<Arc<str>>> = HashMap::new();
        for (name, rules) in &monitors {
            for dependency in &rules.depends_on {
                dependents
                    .entry(Arc::from(dependency.as_str()))
                    .or_default()
                    .push(Arc::from(name.as_str()));
            }
        }
        let tracked = monitors
            .into_iter()
            .filter(|(name, rules)| {
                !rules.is_inert()
                    || dependents.contains_key(name.as_str())
                    || windows.iter().any(|w| w.covers(name))
            })
            .map(|(name, rules)| {
                let tracked = Tracked {
                    windows: covering(&windows, &name),
                    rules,
                    state: AlertState::default(),
                };
                (Arc::from(name), tracked)
            })
            .collect();
        Ok(AlertPolicy {
            tracked,
            dependents,
            open: vec![false; windows.len()],
            windows,
            checked: None,
            boundary: None,
            // Restored states may have become due while the daemon was away (a window
            // closed, a dependency came back, rules changed): the first tick sees to it.
            catch_up: true,
            dirty: Vec::new(),
        })
    }

    /// Whether the policy tracks `monitor` (else its events pass unchanged and it has no
    /// [`AlertState`]).
    pub fn tracks(&self, monitor: &str) -> bool {
        self.tracked.contains_key(monitor)
    }

    /// The names of the monitors the policy tracks.
    pub fn tracked(&self) -> impl Iterator<Item = &Arc<str>> {
        self.tracked.keys()
    }

    /// `monitor`'s state, if it is tracked.
    pub fn state(&self, monitor: &str) -> Option<&AlertState> {
        self.tracked.get(monitor).map(|t| &t.state)
    }

    /// Restores `monitor`'s state after a restart from what was saved (`alert`) and the
    /// monitor's own saved state. With nothing saved for the policy (the first start
    /// with rules, or an older store), a `down` the monitor had sent counts as told.
    ///
    /// A monitor that no rule concerns any more but has a saved state (its rules were
    /// removed while something was held) stays tracked, with no rules: the first
    /// [`tick`](Self::tick) lets out what it held, and its later events go through as
    /// they come, so no `up` goes out without its `down`.
    pub fn restore(
        &mut self,
        monitor: &str,
        state: &MonitorState,
        alert: AlertState,
        now: SystemTime,
    ) {
        if !self.tracked.contains_key(monitor) {
            if alert.is_empty() {
                return;
            }
            let tracked = Tracked {
                windows: covering(&self.windows, monitor),
                ..Tracked::default()
            };
            self.tracked.insert(Arc::from(monitor), tracked);
        }
        let Some(tracked) = self.tracked.get_mut(monitor) else {
            return;
        };
        tracked.state = alert;
        if tracked.state.is_empty() && state.down_sent {
            let down = Event {
                kind: EventKind::Down,
                service: Arc::from(monitor),
                url: String::new(),
                detail: String::new(),
                latency: Duration::ZERO,
                last_seen: state.last_seen,
                outage: None,
                outage_start: state.outage_start,
                time: state.outage_start.unwrap_or(now),
            };
            tracked.state.last = Some(down.clone());
            tracked.state.told_down = Some(down);
            tracked.state.reminded = Some(now);
        }
    }

    /// Whether a maintenance window covers `monitor` at `now`. Reads only: what opens
    /// or closes a window is left to [`tick`](Self::tick).
    pub fn in_maintenance(&self, monitor: &str, now: SystemTime) -> bool {
        let fresh = self.checked.is_some_and(|checked| checked <= now)
            && self.boundary.is_none_or(|boundary| now < boundary);
        let open = |i: usize| {
            if fresh {
                self.open[i]
            } else {
                self.windows[i].is_open(now)
            }
        };
        match self.tracked.get(monitor) {
            Some(tracked) => tracked.windows.iter().any(|&i| open(i)),
            None => (0..self.windows.len()).any(|i| self.windows[i].covers(monitor) && open(i)),
        }
    }

    /// The monitors whose `depends_on` names `monitor`.
    pub fn dependents_of(&self, monitor: &str) -> &[Arc<str>] {
        self.dependents.get(monitor).map_or(&[], Vec::as_slice)
    }

    /// When `monitor` next needs a [`tick`](Self::tick) of its own (a reminder, the end
    /// of its flapping), if ever: a driver that sleeps until later wakes for it.
    pub fn deadline_of(&self, monitor: &str) -> Option<SystemTime> {
        let tracked = self.tracked.get(monitor)?;
        let flapping = tracked
            .state
            .flapping
            .then(|| {
                tracked
                    .state
                    .changes
                    .last()
                    .map(|last| *last + tracked.rules.flap_window)
            })
            .flatten();
        match (flapping, self.reminder_due(monitor)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the names of the monitors whose [`AlertState`] changed since the last call
    /// (each once), so a driver can save them.
    pub fn take_dirty(&mut self) -> Vec<Arc<str>> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        dirty
    }

    /// Takes `monitor`'s `events` (in emission order) at `now`; returns what goes out
    /// now, in order, with the monitor each is about.
    pub fn on_events(
        &mut self,
        now: SystemTime,
        monitor: &str,
        events: &[Event],
    ) -> Vec<(Arc<str>, Event)> {
        let mut out = Vec::new();
        self.refresh_windows(now);
        if std::mem::take(&mut self.catch_up) {
            self.reconcile_all(now, &mut out);
        }
        let Some((name, _)) = self.tracked.get_key_value(monitor) else {
            let name: Arc<str> = Arc::from(monitor);
            out.extend(events.iter().map(|e| (Arc::clone(&name), e.clone())));
            return out;
        };
        let name = Arc::clone(name);
        for event in events {
            match event.kind {
                EventKind::Down | EventKind::Up => self.change(now, &name, event, &mut out),
                EventKind::Stopped => self.stopped(now, &name, event, &mut out),
                _ => {
                    if !self.maintained(&name) {
                        out.push((Arc::clone(&name), event.clone()));
                    }
                }
            }
        }
        out
    }

    /// Does what is due at `now`: window boundaries, the end of flapping, reminders.
    /// Returns what goes out, in order, with the monitor each is about.
    pub fn tick(&mut self, now: SystemTime) -> Vec<(Arc<str>, Event)> {
        let mut out = Vec::new();
        self.refresh_windows(now);
        if std::mem::take(&mut self.catch_up) {
            self.reconcile_all(now, &mut out);
        }
        let mut names: Vec<Arc<str>> = self.tracked.keys().cloned().collect();
        names.sort_unstable();
        for name in &names {
            let Some(tracked) = self.tracked.get_mut(name) else {
                continue;
            };
            // The wall clock went back: what was stamped after `now` counts from `now`,
            // so a reminder or the end of flapping is not put off by the jump.
            let state = &mut tracked.state;
            if state.reminded.is_some_and(|at| at > now) {
                state.reminded = Some(now);
            }
            for at in state.changes.iter_mut().filter(|at| **at > now) {
                *at = now;
            }
            let window = tracked.rules.flap_window;
            let settled = tracked.state.flapping
                && tracked
                    .state
                    .changes
                    .last()
                    .is_none_or(|last| *last + window <= now);
            if settled {
                tracked.state.flapping = false;
                tracked.state.changes.clear();
                self.dirty.push(Arc::clone(name));
                self.reconcile(now, name, &mut out);
            }
            if self.reminder_due(name).is_some_and(|due| due <= now) {
                let Some(tracked) = self.tracked.get_mut(name) else {
                    continue;
                };
                if let Some(down) = &tracked.state.last {
                    let reminder = Event {
                        kind: EventKind::Reminder,
                        outage: down
                            .outage_start
                            .and_then(|start| now.duration_since(start).ok()),
                        time: now,
                        ..down.clone()
                    };
                    tracked.state.reminded = Some(now);
                    self.dirty.push(Arc::clone(name));
                    out.push((Arc::clone(name), reminder));
                }
            }
        }
        out
    }

    /// When [`tick`](Self::tick) is next due after `now`, if ever: the soonest
    /// reminder, end of flapping or window boundary.
    pub fn next_deadline(&mut self, now: SystemTime) -> Option<SystemTime> {
        self.refresh_windows(now);
        if self.catch_up {
            return Some(now);
        }
        let mut soonest = self.boundary;
        for name in self.tracked.keys() {
            if let Some(due) = self.deadline_of(name) {
                soonest = Some(soonest.map_or(due, |s| s.min(due)));
            }
        }
        soonest
    }

    /// When `name`'s next reminder is due, if one would go out now: it has
    /// `remind_every`, receivers were told of a `down` of the outage it is in, and it is
    /// not muted.
    fn reminder_due(&self, name: &str) -> Option<SystemTime> {
        let tracked = self.tracked.get(name)?;
        let every = tracked.rules.remind_every?;
        let state = &tracked.state;
        let last = state.last.as_ref().filter(|e| e.kind == EventKind::Down)?;
        let told = state.told_down.as_ref()?;
        if state.stopped {
            return None;
        }
        if !same_outage(last, told) || self.muted(name) {
            return None;
        }
        Some(state.reminded? + every)
    }

    /// `name` stopped itself (SPEC §3: too many errors in a row): the event goes out
    /// unless a window covers it. Its status is unknown from now on: it sends no
    /// reminders, and the monitors that depend on it are not held by it. What it held
    /// itself still goes out when it is no longer muted (a `down` from inside a window,
    /// say), and a `down` receivers were told of stands until its `up` or a new outage.
    fn stopped(
        &mut self,
        now: SystemTime,
        name: &Arc<str>,
        event: &Event,
        out: &mut Vec<(Arc<str>, Event)>,
    ) {
        if !self.maintained(name) {
            out.push((Arc::clone(name), event.clone()));
        }
        let Some(tracked) = self.tracked.get_mut(name) else {
            return;
        };
        tracked.state.stopped = true;
        self.dirty.push(Arc::clone(name));
        let dependents = self.dependents.get(name).cloned().unwrap_or_default();
        for dependent in &dependents {
            self.reconcile(now, dependent, out);
        }
    }

    /// A `down` or `up` of `name`.
    fn change(
        &mut self,
        now: SystemTime,
        name: &Arc<str>,
        event: &Event,
        out: &mut Vec<(Arc<str>, Event)>,
    ) {
        let maintained = self.maintained(name);
        let Some(tracked) = self.tracked.get_mut(name) else {
            return;
        };
        let state = &mut tracked.state;
        if event.kind == EventKind::Up
            && state
                .told_down
                .as_ref()
                .is_some_and(|told| same_outage(told, event))
        {
            state.held_up = Some(event.clone());
        }
        state.last = Some(event.clone());
        state.stopped = false;
        let rules = &tracked.rules;
        if rules.flap_threshold > 0 {
            let window = rules.flap_window;
            state.changes.push(now);
            state.changes.retain(|at| *at + window > now);
            let changes = state.changes.len();
            if !state.flapping && changes > rules.flap_threshold as usize {
                state.flapping = true;
                if !maintained {
                    let flapping = Event {
                        kind: EventKind::Flapping,
                        detail: format!(
                            "{changes} status changes within {}; down and up are held until it holds one status for {}",
                            humantime::format_duration(window),
                            humantime::format_duration(window),
                        ),
                        outage: None,
                        outage_start: None,
                        time: now,
                        ..event.clone()
                    };
                    out.push((Arc::clone(name), flapping));
                }
            }
        }
        self.dirty.push(Arc::clone(name));
        self.reconcile(now, name, out);
        if event.kind == EventKind::Up {
            let dependents = self.dependents.get(name).cloned().unwrap_or_default();
            for dependent in &dependents {
                self.reconcile(now, dependent, out);
            }
        }
    }

    /// Brings receivers in step with `name`'s status, unless it is muted.
    fn reconcile(&mut self, now: SystemTime, name: &Arc<str>, out: &mut Vec<(Arc<str>, Event)>) {
        if self.muted(name) {
            return;
        }
        let Some(tracked) = self.tracked.get_mut(name) else {
            return;
        };
        let state = &mut tracked.state;
        let Some(last) = state.last.clone() else {
            return;
        };
        let before = out.len();
        match (last.kind, state.told_down.take()) {
            (EventKind::Down, None) => {
                out.push((Arc::clone(name), last.clone()));
                state.told_down = Some(last);
                state.held_up = None;
                state.reminded = Some(now);
            }
            (EventKind::Down, Some(told)) if same_outage(&told, &last) => {
                state.told_down = Some(told);
            }
            (EventKind::Down, Some(_)) => {
                // Receivers still believe an earlier outage stands. Its `up`, when one
                // came, goes out first; without one (the monitor was restarted in the
                // outage), the new `down` alone replaces it, as it would unheld: the
                // service is down, so no `up` is made up.
                if let Some(up) = state.held_up.take() {
                    out.push((Arc::clone(name), up));
                }
                out.push((Arc::clone(name), last.clone()));
                state.told_down = Some(last);
                state.reminded = Some(now);
            }
            (EventKind::Up, Some(told)) => {
                let up = if same_outage(&told, &last) {
                    last
                } else {
                    state.held_up.take().unwrap_or_else(|| made_up(&told, now))
                };
                out.push((Arc::clone(name), up));
                state.held_up = None;
                state.reminded = None;
            }
            (_, told) => state.told_down = told,
        }
        if out.len() > before {
            self.dirty.push(Arc::clone(name));
        }
    }

    fn reconcile_all(&mut self, now: SystemTime, out: &mut Vec<(Arc<str>, Event)>) {
        let mut names: Vec<Arc<str>> = self.tracked.keys().cloned().collect();
        names.sort_unstable();
        for name in &names {
            self.reconcile(now, name, out);
        }
    }

    /// Whether `name`'s status is held: a window covers it, it is flapping, or a
    /// dependency is down.
    fn muted(&self, name: &str) -> bool {
        let Some(tracked) = self.tracked.get(name) else {
            return false;
        };
        self.maintained(name)
            || tracked.state.flapping
            || tracked.rules.depends_on.iter().any(|dependency| {
                self.tracked.get(dependency.as_str()).is_some_and(|d| {
                    !d.state.stopped
                        && d.state
                            .last
                            .as_ref()
                            .is_some_and(|e| e.kind == EventKind::Down)
                })
            })
    }

    /// Whether an open window covers `name` (as of the last refresh).
    fn maintained(&self, name: &str) -> bool {
        self.tracked
            .get(name)
            .is_some_and(|tracked| tracked.windows.iter().any(|&i| self.open[i]))
    }

    /// Re-reads which windows are open when `now` reached the last computed boundary
    /// (or went back in time); when one opened or closed, the monitors are to be brought
    /// in step (`catch_up`).
    fn refresh_windows(&mut self, now: SystemTime) {
        if self.windows.is_empty() {
            return;
        }
        let fresh = self.checked.is_some_and(|checked| checked <= now)
            && self.boundary.is_none_or(|boundary| now < boundary);
        if fresh {
            return;
        }
        let open: Vec<bool> = self.windows.iter().map(|w| w.is_open(now)).collect();
        if open != self.open {
            self.catch_up = true;
        }
        self.open = open;
        self.checked = Some(now);
        self.boundary = self.windows.iter().filter_map(|w| w.next_change(now)).min();
    }
}

/// The indices of the windows that cover `monitor`.
fn covering(windows: &[MaintenanceWindow], monitor: &str) -> Vec<usize> {
    windows
        .iter()
        .enumerate()
        .filter(|(_, w)| w.covers(monitor))
        .map(|(i, _)| i)
        .collect()
}

/// An `up` for an outage receivers were told of whose own `up` was never seen, now that
/// the service is up (a monitor restarted in that outage, which came back later).
fn made_up(told: &Event, now: SystemTime) -> Event {
    Event {
        kind: EventKind::Up,
        detail: String::new(),
        latency: Duration::ZERO,
        outage: told
            .outage_start
            .and_then(|start| now.duration_since(start).ok()),
        time: now,
        ..told.clone()
    }
}
