//! How a failed check is classified: a target-side [`Failure`] becomes an unhealthy
//! result, a checker-side one becomes a [`ProbeError`] (SPEC §3).

use std::{fmt, io, time::Duration};

use health_types::{CheckKind, CheckResult, ConfigError, ProbeError, timed_out_after};

/// Which side of the check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The target answered badly or not at all: an unhealthy result.
    Target,
    /// The checker could not do its job: an error.
    Checker,
}

/// A classified failure, on its way to becoming an unhealthy result or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) side: Side,
    pub(crate) kind: CheckKind,
    pub(crate) detail: String,
}

impl Failure {
    /// A failure of the target (an unhealthy result).
    pub(crate) fn target(kind: CheckKind, detail: impl Into<String>) -> Self {
        Failure {
            side: Side::Target,
            kind,
            detail: detail.into(),
        }
    }

    /// A failure of the checker (an error).
    pub(crate) fn checker(kind: CheckKind, detail: impl Into<String>) -> Self {
        Failure {
            side: Side::Checker,
            kind,
            detail: detail.into(),
        }
    }

    /// The target did not answer within `timeout`.
    pub(crate) fn timed_out(timeout: Duration) -> Self {
        Failure::target(CheckKind::Timeout, timed_out_after(timeout))
    }

    /// The same failure with `prefix` put before its detail.
    #[cfg(any(feature = "http", feature = "docker"))]
    #[must_use]
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        self.detail = format!("{prefix}{}", self.detail);
        self
    }

    /// An unhealthy result (target side) or an error (checker side).
    pub(crate) fn into_outcome(self, latency: Duration) -> Result<CheckResult, ProbeError> {
        match self.side {
            Side::Target => Ok(CheckResult::unhealthy(self.kind, self.detail, latency)),
            Side::Checker => Err(ProbeError::new(self.kind, self.detail)),
        }
    }

    #[cfg(any(feature = "http", feature = "docker"))]
    /// This failure as an error, whichever side it came from (the agent probe reports
    /// every failure to reach the agent as an error).
    pub(crate) fn into_error(self) -> ProbeError {
        ProbeError::new(self.kind, self.detail)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Failure {}

#[cfg(any(feature = "http", feature = "docker"))]
/// What a probe that asks another party (an agent, the Docker engine) keeps back from
/// its `timeout`, so that the other side's answer, or its timeout, arrives inside it:
/// `min(timeout / 10, 100ms)`.
pub(crate) fn margin(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_millis(100))
}

/// Classifies a socket error.
///
/// Errors the target causes (refused, reset, closed, unreachable, timed out) are target
/// failures; anything else (permission denied, no local address, out of descriptors) is
/// the checker's.
pub(crate) fn classify_io(err: &io::Error) -> Failure {
    use io::ErrorKind as K;
    match err.kind() {
        K::ConnectionRefused => Failure::target(CheckKind::Refused, "connection refused"),
        K::HostUnreachable => Failure::target(CheckKind::Refused, "host unreachable"),
        K::NetworkUnreachable => Failure::target(CheckKind::Refused, "network unreachable"),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected => {
            Failure::target(CheckKind::Reset, "connection reset")
        }
        K::UnexpectedEof => Failure::target(CheckKind::Reset, "connection closed"),
        K::TimedOut => Failure::target(CheckKind::Timeout, "connection timed out"),
        _ => Failure::checker(CheckKind::Io, err.to_string()),
    }
}

#[cfg(any(feature = "http", feature = "docker"))]
/// Classifies an error of a hyper exchange by the most specific cause in its chain: a
/// [`Failure`] (from a connector), a socket or TLS error, then hyper's own kinds.
pub(crate) fn classify_chain(err: &(dyn std::error::Error + 'static)) -> Failure {
    let chain = error_chain(err);
    if let Some(failure) = chain.iter().find_map(|e| e.downcast_ref::<Failure>()) {
        return failure.clone();
    }
    if let Some(io) = chain.iter().find_map(|e| e.downcast_ref::<io::Error>()) {
        return classify_stream_io(io);
    }
    if let Some(hyper) = chain.iter().find_map(|e| e.downcast_ref::<hyper::Error>()) {
        if hyper.is_parse() || hyper.is_parse_status() {
            return Failure::target(CheckKind::Protocol, format!("protocol: {hyper}"));
        }
        if hyper.is_incomplete_message() {
            return Failure::target(
                CheckKind::Reset,
                "connection closed before the response was complete",
            );
        }
        if hyper.is_timeout() {
            return Failure::target(CheckKind::Timeout, "timed out");
        }
        if hyper.is_canceled() || hyper.is_closed() {
            return Failure::target(CheckKind::Reset, "connection closed");
        }
        if hyper.is_user() {
            return Failure::checker(CheckKind::Internal, format!("http client: {hyper}"));
        }
    }
    let cause = chain.last().map_or_else(String::new, |e| e.to_string());
    Failure::target(CheckKind::Protocol, format!("http: {cause}"))
}

#[cfg(any(feature = "http", feature = "docker"))]
/// `err` and its sources, outermost first.
pub(crate) fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = vec![err];
    let mut next = err.source();
    while let Some(cause) = next {
        chain.push(cause);
        next = cause.source();
    }
    chain
}

#[cfg(any(feature = "http", feature = "docker"))]
/// Classifies an I/O error on an established (maybe TLS) connection.
pub(crate) fn classify_stream_io(err: &io::Error) -> Failure {
    #[cfg(feature = "tls")]
    {
        classify_tls(err)
    }
    #[cfg(not(feature = "tls"))]
    {
        classify_io(err)
    }
}

/// Classifies an I/O error from a TLS stream: rustls errors (bad certificate, protocol
/// mismatch) are kind `tls`; socket errors keep their own kind.
#[cfg(feature = "tls")]
pub(crate) fn classify_tls(err: &io::Error) -> Failure {
    use tokio_rustls::rustls;

    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Failure::target(CheckKind::Tls, format!("tls: {tls}"));
    }
    classify_io(err)
}

/// A URL that a probe rejects, as an error of kind `config` from `check`.
pub(crate) fn bad_url(err: &ConfigError) -> ProbeError {
    ProbeError::new(CheckKind::Config, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_errors_split_into_target_and_checker_failures() {
        let refused = classify_io(&io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            (refused.side, refused.kind),
            (Side::Target, CheckKind::Refused)
        );
        assert_eq!(refused.detail, "connection refused");
        let reset = classify_io(&io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!((reset.side, reset.kind), (Side::Target, CheckKind::Reset));
        let denied = classify_io(&io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!((denied.side, denied.kind), (Side::Checker, CheckKind::Io));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn rustls_errors_are_tls_failures() {
        use tokio_rustls::rustls;

        let err = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let failure = classify_tls(&err);
        assert_eq!(failure.kind, CheckKind::Tls);
        assert!(failure.detail.starts_with("tls: "), "{}", failure.detail);
    }
}
