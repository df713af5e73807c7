//! Monitor events (`down`, `up`, `stopped`) and the [`EventSink`] that receives them.

use std::{
    fmt::Debug,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

/// What happened to a monitored service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The fall threshold was reached: the service is down (once per outage).
    Down,
    /// The service is healthy again after a `down` was sent.
    Up,
    /// The monitor stopped itself after too many consecutive errors.
    Stopped,
    /// The peer's certificate has less than `cert_expiry_warn` left (SPEC §9.4): once
    /// per certificate, with the certificate and its expiry in the detail.
    CertExpiry,
    /// A reminder while a `down` stands (SPEC §9.5 `remind_every`): the service is still
    /// down. Made by the alert policy, never by the state machine.
    Reminder,
    /// The service changed status more than `flap_threshold` times within `flap_window`
    /// (SPEC §9.5): its `down` and `up` are held until it settles. Made by the alert
    /// policy, never by the state machine.
    Flapping,
}

crate::util::wire_names! {
    /// The lowercase name, as used on the wire.
    EventKind {
        Down => "down",
        Up => "up",
        Stopped => "stopped",
        CertExpiry => "cert_expiry",
        Reminder => "reminder",
        Flapping => "flapping",
    }
}

/// One event with everything a notification needs.
///
/// Serializable, so that an outbox can keep it until it is delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The service (monitor) name.
    pub service: Arc<str>,
    /// The URL being checked, as displayed.
    pub url: String,
    /// The detail of the result that caused the event.
    pub detail: String,
    /// The latency of that result.
    pub latency: Duration,
    /// Wall-clock time of the last healthy result, if any.
    pub last_seen: Option<SystemTime>,
    /// For `up`: how long the outage lasted (first failure to recovery).
    pub outage: Option<Duration>,
    /// For `down` and `up`: when the outage began (wall clock). With the service name it
    /// names the outage, so a `down` and its `up` can be told apart from another
    /// outage's (an `up` waits for its own `down`; PagerDuty's dedup key).
    pub outage_start: Option<SystemTime>,
    /// Wall-clock time of the event.
    pub time: SystemTime,
}

/// Receives monitor events. Implemented by `health-notify`'s dispatcher.
///
/// `notify` is called from a monitor's check path and must never block: queue the
/// event and return.
pub trait EventSink: Send + Sync + Debug {
    /// Takes one event.
    fn notify(&self, event: Event);
}

/// A channel is a sink: handy for tests and for proxies that consume events themselves.
impl EventSink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn notify(&self, event: Event) {
        // A closed receiver means nobody listens any more; dropping the event is right.
        let _ = self.send(event);
    }
}
