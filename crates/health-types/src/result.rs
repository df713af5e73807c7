//! The outcome of one probe: a [`CheckResult`] when the target was checked, a
//! [`ProbeError`] when the check itself could not be carried out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a check found, as a machine-readable kind; the human text is in the detail.
///
/// Code matches on kinds, never on detail text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The target answered as healthy.
    Ok,
    /// The target answered with an unexpected status code.
    Status,
    /// No answer within the timeout.
    Timeout,
    /// The connection was refused (or the port is unreachable).
    Refused,
    /// The connection was reset or closed early.
    Reset,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake or certificate verification failed.
    Tls,
    /// The target answered with something that is not the protocol spoken.
    Protocol,
    /// A local I/O failure.
    Io,
    /// The target (file, container) does not exist.
    NotFound,
    /// A container's own state or health says it is not healthy.
    Container,
    /// The check is misconfigured.
    Config,
    /// A bug or unexpected failure inside the checker.
    Internal,
    /// A failure on our side that says nothing about the target (out of file
    /// descriptors, buffers or memory; no local address): it changes no counter, sends
    /// nothing and never stops a monitor (SPEC §9.3).
    Local,
}

crate::util::wire_names! {
    /// The snake_case name, as used on the wire.
    CheckKind {
        Ok => "ok",
        Status => "status",
        Timeout => "timeout",
        Refused => "refused",
        Reset => "reset",
        Dns => "dns",
        Tls => "tls",
        Protocol => "protocol",
        Io => "io",
        NotFound => "not_found",
        Container => "container",
        Config => "config",
        Internal => "internal",
        Local => "local",
    }
}

/// What one check of a target found.
///
/// A failing target is data, not an error: `healthy = false` with a [`CheckKind`] and a
/// short, specific detail (`HTTP 503 Service Unavailable`, `connection refused`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Whether the target is healthy.
    pub healthy: bool,
    /// What was found.
    pub kind: CheckKind,
    /// Human-readable detail; empty or a short summary when healthy.
    pub detail: String,
    /// Time to the answer, on the monotonic clock. Serialised as integer nanoseconds.
    #[serde(with = "nanos")]
    pub latency: Duration,
}

impl CheckResult {
    /// A healthy result with the given detail and latency.
    pub fn healthy(detail: impl Into<String>, latency: Duration) -> Self {
        CheckResult {
            healthy: true,
            kind: CheckKind::Ok,
            detail: detail.into(),
            latency,
        }
    }

    /// An unhealthy result of the given kind.
    pub fn unhealthy(kind: CheckKind, detail: impl Into<String>, latency: Duration) -> Self {
        CheckResult {
            healthy: false,
            kind,
            detail: detail.into(),
            latency,
        }
    }

    /// The [`Verdict`] this result stands for: `Healthy` or `Unhealthy`, or `Local` for
    /// an unhealthy record of kind [`CheckKind::Local`] (an agent's own our-side failure).
    pub const fn verdict(&self) -> Verdict {
        if self.healthy {
            Verdict::Healthy
        } else if matches!(self.kind, CheckKind::Local) {
            Verdict::Local
        } else {
            Verdict::Unhealthy
        }
    }
}

/// The check itself could not be carried out (Docker API unreachable, agent answering
/// garbage, permission denied, an internal bug).
///
/// This is distinct from an unhealthy [`CheckResult`]: it says nothing about the target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ProbeError {
    kind: CheckKind,
    detail: String,
}

impl ProbeError {
    /// An error of the given kind with a human-readable detail.
    pub fn new(kind: CheckKind, detail: impl Into<String>) -> Self {
        ProbeError {
            kind,
            detail: detail.into(),
        }
    }

    /// What kind of failure this was.
    pub const fn kind(&self) -> CheckKind {
        self.kind
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// This error as a result record (`healthy = false`), for display and JSON output.
    pub fn to_result(&self, latency: Duration) -> CheckResult {
        CheckResult::unhealthy(self.kind, self.detail.clone(), latency)
    }
}

/// The three-way classification of one check that the state machine consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The target answered as healthy.
    Healthy,
    /// The target answered badly, refused, reset, timed out, failed TLS or did not resolve.
    Unhealthy,
    /// The checker could not do its job.
    Error,
    /// The check failed on our side (kind [`CheckKind::Local`]: out of file descriptors,
    /// buffers or memory, no local address): it says nothing about the target, so it
    /// changes no counter, sends nothing and never stops a monitor (SPEC §9.3).
    Local,
}

impl Verdict {
    /// The verdict of a probe outcome: an error of kind [`CheckKind::Local`] is `Local`,
    /// any other error is `Error`.
    pub const fn of(outcome: &Result<CheckResult, ProbeError>) -> Verdict {
        match outcome {
            Ok(result) => result.verdict(),
            Err(err) if matches!(err.kind, CheckKind::Local) => Verdict::Local,
            Err(_) => Verdict::Error,
        }
    }
}

mod nanos {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(crate::duration_nanos(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_nanos(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_has_latency_in_nanoseconds() {
        let result = CheckResult::unhealthy(
            CheckKind::NotFound,
            "no such file",
            Duration::from_micros(1500),
        );
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"healthy": false, "kind": "not_found", "detail": "no such file", "latency": 1_500_000})
        );
        assert_eq!(serde_json::from_value::<CheckResult>(json).unwrap(), result);
    }

    #[test]
    fn verdicts_follow_the_outcome() {
        let ok = Ok(CheckResult::healthy("", Duration::ZERO));
        let bad = Ok(CheckResult::unhealthy(
            CheckKind::Refused,
            "connection refused",
            Duration::ZERO,
        ));
        let err = Err(ProbeError::new(CheckKind::Io, "permission denied"));
        assert_eq!(Verdict::of(&ok), Verdict::Healthy);
        assert_eq!(Verdict::of(&bad), Verdict::Unhealthy);
        assert_eq!(Verdict::of(&err), Verdict::Error);
    }

    #[test]
    fn our_side_failures_are_local_verdicts_whichever_way_they_come() {
        let err = ProbeError::new(CheckKind::Local, "too many open files");
        assert_eq!(Verdict::of(&Err(err.clone())), Verdict::Local);
        // An agent's own local failure comes back as a result record of that kind.
        let record = err.to_result(Duration::ZERO);
        assert_eq!(record.verdict(), Verdict::Local);
        assert_eq!(Verdict::of(&Ok(record)), Verdict::Local);
        assert_eq!(CheckKind::Local.as_str(), "local");
    }
}
