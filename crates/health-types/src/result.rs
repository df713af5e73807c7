//! The outcome of one probe: a [`CheckResult`] when the target was checked, a
//! [`ProbeError`] when the check itself could not be carried out.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

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
    /// The body failed `body_match` or `body_not_match`, or a TCP reply failed `expect`
    /// (SPEC §9.4).
    Body,
    /// A response header failed `header_match`.
    Header,
    /// The body is not JSON, or a `json` condition failed.
    Json,
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
        Body => "body",
        Header => "header",
        Json => "json",
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
    /// How long each phase of the check took, where the probe has phases (SPEC §9.4).
    #[serde(default, skip_serializing_if = "Phases::is_empty")]
    pub phases: Phases,
    /// The peer's leaf certificate, for checks that did a TLS handshake (shared: one
    /// certificate serves every check on a pooled connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<Arc<CertInfo>>,
    /// The HTTP status code of the (last) answer, for HTTP checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// The phases of one check, each on the monotonic clock; a phase the check did not go
/// through (no lookup for an IP literal, a pooled connection, no TLS) is `None`.
///
/// JSON: an object of integer nanoseconds with only the phases that happened, e.g.
/// `{"dns":41000,"connect":98000,"tls":2100000,"first_byte":3400000}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Phases {
    /// The name lookup.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_nanos")]
    pub dns: Option<Duration>,
    /// The TCP connect (or, for ICMP and UDP, the socket setup).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_nanos")]
    pub connect: Option<Duration>,
    /// The TLS handshake.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_nanos")]
    pub tls: Option<Duration>,
    /// From the request sent to the first byte of the answer's head.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_nanos")]
    pub first_byte: Option<Duration>,
}

impl Phases {
    /// The phase names, in order, as used on the wire and in metric labels.
    pub const NAMES: [&'static str; 4] = ["dns", "connect", "tls", "first_byte"];

    /// Whether no phase was measured.
    pub fn is_empty(&self) -> bool {
        *self == Phases::default()
    }

    /// Each measured phase with its name, in [`NAMES`](Self::NAMES) order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Duration)> {
        Phases::NAMES
            .into_iter()
            .zip([self.dns, self.connect, self.tls, self.first_byte])
            .filter_map(|(name, value)| value.map(|value| (name, value)))
    }
}

/// What a check saw of the peer's leaf certificate.
///
/// JSON: `{"not_after": <unix s>, "subject": "CN=api.example", "serial": "<hex>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CertInfo {
    /// The end of the certificate's validity, unix seconds.
    pub not_after: i64,
    /// The subject, as an RFC 4514 string (or the first DNS name when the subject is
    /// empty).
    pub subject: String,
    /// The serial number in lowercase hex: with `not_after` it tells one certificate
    /// from its renewal.
    pub serial: String,
}

impl CertInfo {
    /// The expiry as a wall-clock time (held at the platform's limits for an absurd
    /// `not_after`, which an agent's answer could carry).
    pub fn expires(&self) -> SystemTime {
        let secs = Duration::from_secs(self.not_after.unsigned_abs());
        let far = Duration::from_secs(1 << 40);
        if self.not_after >= 0 {
            UNIX_EPOCH
                .checked_add(secs)
                .or_else(|| UNIX_EPOCH.checked_add(far))
                .unwrap_or(UNIX_EPOCH)
        } else {
            UNIX_EPOCH
                .checked_sub(secs)
                .or_else(|| UNIX_EPOCH.checked_sub(far))
                .unwrap_or(UNIX_EPOCH)
        }
    }

    /// Time left until expiry at `now`; zero once expired.
    pub fn time_left(&self, now: SystemTime) -> Duration {
        self.expires().duration_since(now).unwrap_or_default()
    }

    /// Whole days left at `now` (0 once expired or on the last day).
    pub fn days_left(&self, now: SystemTime) -> u64 {
        self.time_left(now).as_secs() / 86_400
    }
}

impl CheckResult {
    /// A healthy result with the given detail and latency.
    pub fn healthy(detail: impl Into<String>, latency: Duration) -> Self {
        CheckResult {
            healthy: true,
            kind: CheckKind::Ok,
            detail: detail.into(),
            latency,
            phases: Phases::default(),
            cert: None,
            status_code: None,
        }
    }

    /// An unhealthy result of the given kind.
    pub fn unhealthy(kind: CheckKind, detail: impl Into<String>, latency: Duration) -> Self {
        CheckResult {
            healthy: false,
            kind,
            detail: detail.into(),
            latency,
            phases: Phases::default(),
            cert: None,
            status_code: None,
        }
    }

    /// This result with `phases`.
    #[must_use]
    pub fn with_phases(mut self, phases: Phases) -> Self {
        self.phases = phases;
        self
    }

    /// This result with the peer's certificate.
    #[must_use]
    pub fn with_cert(mut self, cert: Option<Arc<CertInfo>>) -> Self {
        self.cert = cert;
        self
    }

    /// This result with an HTTP status code.
    #[must_use]
    pub fn with_status_code(mut self, code: u16) -> Self {
        self.status_code = Some(code);
        self
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

mod opt_nanos {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option, reason = "serde's `with` passes a reference")]
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&crate::duration_nanos(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_nanos))
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
    fn phases_certificates_and_status_codes_appear_only_when_known() {
        let phases = Phases {
            dns: None,
            connect: Some(Duration::from_micros(98)),
            tls: Some(Duration::from_micros(2100)),
            first_byte: Some(Duration::from_micros(3400)),
        };
        let cert = CertInfo {
            not_after: 1_800_000_000,
            subject: "CN=api.test".into(),
            serial: "0a1b".into(),
        };
        let result = CheckResult::healthy("HTTP 200 OK", Duration::from_millis(4))
            .with_phases(phases)
            .with_cert(Some(Arc::new(cert.clone())))
            .with_status_code(200);
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json["phases"],
            serde_json::json!({"connect": 98_000, "tls": 2_100_000, "first_byte": 3_400_000})
        );
        assert_eq!(json["cert"]["not_after"], 1_800_000_000);
        assert_eq!(json["status_code"], 200);
        assert_eq!(serde_json::from_value::<CheckResult>(json).unwrap(), result);
        let names: Vec<_> = phases.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["connect", "tls", "first_byte"]);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 3 * 86_400 - 5);
        assert_eq!(cert.days_left(now), 3);
        assert_eq!(cert.days_left(cert.expires() + Duration::from_secs(1)), 0);
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
