//! The health status of a monitored target.

use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// The health status of a monitored target.
///
/// Serialises as its lowercase name (`"healthy"`); parsing accepts the names in any case
/// and rejects everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Status {
    /// No monitor, or nothing ever reported.
    #[default]
    Unknown,
    /// The monitor was created and its first result is not in yet.
    Starting,
    /// The target answered as healthy.
    Healthy,
    /// The target answered and it is not healthy (debounced by the fall threshold).
    Unhealthy,
    /// The check itself could not be carried out.
    Error,
    /// The target is idle-sleeping (for idle-watcher integrations).
    Napping,
    /// The monitor was stopped or cancelled.
    Stopped,
}

impl Status {
    /// Every status, in declaration order.
    pub const ALL: [Status; 7] = [
        Status::Unknown,
        Status::Starting,
        Status::Healthy,
        Status::Unhealthy,
        Status::Error,
        Status::Napping,
        Status::Stopped,
    ];

    /// Whether a load balancer may route to a target with this status.
    ///
    /// `starting`, `healthy` and `napping` are good; everything else is not.
    pub const fn is_good(self) -> bool {
        matches!(self, Status::Starting | Status::Healthy | Status::Napping)
    }

    /// Whether a target with this status is down: it answered badly (`unhealthy`) or
    /// could not be checked (`error`). What uptime counts against, and what `downSince`
    /// and the status page's Down section show.
    pub const fn is_down(self) -> bool {
        matches!(self, Status::Unhealthy | Status::Error)
    }
}

crate::util::wire_names! {
    /// The lowercase name, as used on the wire.
    Status {
        Unknown => "unknown",
        Starting => "starting",
        Healthy => "healthy",
        Unhealthy => "unhealthy",
        Error => "error",
        Napping => "napping",
        Stopped => "stopped",
    }
}

/// The error returned when a string names no [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown status {0:?}: expected one of unknown, starting, healthy, unhealthy, error, napping, stopped"
)]
pub struct ParseStatusError(pub String);

impl FromStr for Status {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::from_wire_name(s).ok_or_else(|| ParseStatusError(s.to_owned()))
    }
}

crate::util::serialize_as_str!(Status);

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_parse_case_insensitively() {
        for status in Status::ALL {
            assert_eq!(status.to_string().parse::<Status>(), Ok(status));
            assert_eq!(status.as_str().to_uppercase().parse::<Status>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
        }
    }

    #[test]
    fn unknown_names_are_rejected_with_the_choices() {
        let err = "sick".parse::<Status>().unwrap_err();
        assert!(err.to_string().contains("\"sick\""), "{err}");
        assert!(err.to_string().contains("healthy"), "{err}");
        assert!(serde_json::from_str::<Status>("\"up\"").is_err());
    }

    #[test]
    fn good_statuses_are_the_routable_ones() {
        let good: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_good()).collect();
        assert_eq!(good, [Status::Starting, Status::Healthy, Status::Napping]);
    }
}
