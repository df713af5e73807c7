//! What survives a restart (SPEC §9.1): a monitor's [`MonitorState`], the [`StateSink`]
//! a monitor hands its state and events to, and the [`Outbox`] notifications wait in
//! until a notifier delivered them or gave up.
//!
//! `health-store` implements both ports on one embedded file; `health-notify`'s
//! dispatcher delivers from an [`Outbox`]; `health-monitor` restores a monitor from a
//! [`MonitorState`] and reports to a [`StateSink`]; only `healthd` wires them together.

use std::{fmt::Debug, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::{Event, Status};

/// The part of a monitor's state that survives a restart.
///
/// The counters are kept only as far as they matter: `failures` up to the fall
/// threshold F, `passes` up to the rise threshold R, `errors` up to `max_errors`, so a
/// monitor in a steady state has nothing new to persist after each check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorState {
    /// The status (`starting` before the first result).
    pub status: Status,
    /// Consecutive unhealthy-or-error results.
    pub failures: u32,
    /// Consecutive healthy results.
    pub passes: u32,
    /// Consecutive error results.
    pub errors: u32,
    /// A `down` was sent for the current outage: after a restart it is not sent again.
    pub down_sent: bool,
    /// When the current outage began (wall clock), while one is going on; an `up` after
    /// a restart reports the whole outage from here.
    pub outage_start: Option<SystemTime>,
    /// Wall-clock time of the last healthy result.
    pub last_seen: Option<SystemTime>,
    /// The expiry (`not_after`, unix seconds) of the last certificate a `cert_expiry`
    /// event went out for (SPEC §9.4): that certificate is not warned of again; its
    /// renewal, which expires later, is.
    #[serde(default)]
    pub cert_warned: Option<i64>,
}

/// What the alert policy (SPEC §9.5: reminders, dependencies, flapping, maintenance)
/// keeps of one monitor, so that a restart neither repeats nor loses a held
/// notification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// The monitor's last `down` or `up` event, as the state machine made it: the status
    /// the policy works from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Event>,
    /// The `down` receivers were told of, while they believe the service is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told_down: Option<Event>,
    /// The `up` that ended the outage receivers were told of, while it is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_up: Option<Event>,
    /// When the recent `down` and `up` events came (within `flap_window`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<SystemTime>,
    /// The monitor is flapping: its `down` and `up` are held until it settles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flapping: bool,
    /// When receivers were last told the service is down (its `down` or a reminder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminded: Option<SystemTime>,
    /// The monitor stopped itself since its last `down` or `up`: its status is unknown,
    /// so it sends no reminders and holds none of its dependents.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl AlertState {
    /// Whether there is nothing to keep (a monitor the policy never held anything for).
    pub fn is_empty(&self) -> bool {
        *self == AlertState::default()
    }
}

impl Default for MonitorState {
    /// `starting`, no counts, no outage, never seen.
    fn default() -> Self {
        MonitorState {
            status: Status::Starting,
            failures: 0,
            passes: 0,
            errors: 0,
            down_sent: false,
            outage_start: None,
            last_seen: None,
            cert_warned: None,
        }
    }
}

/// Receives a monitor's state after each check that changed it, with the events that
/// check emitted, in one call: a store commits both in one transaction before any of
/// those events is delivered (SPEC §9.1).
///
/// Called from the check's task: it must not block (queue, then commit elsewhere).
pub trait StateSink: Send + Sync + Debug {
    /// Takes `monitor`'s new `state` and the `events` (in emission order) of the check
    /// that produced it.
    fn record(&self, monitor: &str, state: &MonitorState, events: &[Event]);

    /// [`record`](Self::record), with the alert policy's state of the monitor (SPEC
    /// §9.5), which a store commits in the same transaction: the policy between a
    /// monitor and its sink calls this one. A sink that keeps no alert state ignores
    /// `alert` (the default does).
    fn record_with_alert(
        &self,
        monitor: &str,
        state: &MonitorState,
        alert: &AlertState,
        events: &[Event],
    ) {
        let _ = alert;
        self.record(monitor, state, events);
    }
}

/// One notification waiting for one notifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Increasing in commit order: a notifier delivers its entries by id.
    pub id: u64,
    /// The notifier (its `[[notify]]` name).
    pub notifier: String,
    /// The event to notify.
    pub event: Event,
    /// When the entry was committed (wall clock): `max_age` counts from here.
    pub created: SystemTime,
}

/// The outbox could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("outbox: {0}")]
pub struct OutboxError(pub String);

/// Where notifications wait until their notifier delivered them or gave up (SPEC §9.1).
///
/// Entries are committed before their first delivery attempt; a notifier takes its
/// pending entries in id order and marks each one delivered (after a 2xx) or given up
/// (a permanent failure, or older than `max_age`), after which it is never sent again.
/// Implementations are synchronous and quick (an embedded database, or memory); the
/// dispatcher calls them from its tasks.
pub trait Outbox: Send + Sync + Debug {
    /// `notifier`'s undelivered entries with an id above `after`, oldest first, at most
    /// `limit`.
    fn pending(
        &self,
        notifier: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, OutboxError>;

    /// Entry `id` was delivered: it is done.
    fn delivered(&self, id: u64) -> Result<(), OutboxError>;

    /// Entry `id` was given up for `reason`: it is done, and an `up` of the same outage
    /// to the same notifier carries the `Note` field.
    fn gave_up(&self, id: u64, reason: &str) -> Result<(), OutboxError>;

    /// Whether `notifier` gave up the `down` of `service`'s outage that began at
    /// `outage_start`.
    fn down_given_up(
        &self,
        notifier: &str,
        service: &str,
        outage_start: SystemTime,
    ) -> Result<bool, OutboxError>;

    /// `notifier`'s undelivered entries: how many, and when the oldest was committed.
    fn backlog(&self, notifier: &str) -> Result<(u64, Option<SystemTime>), OutboxError>;
}
