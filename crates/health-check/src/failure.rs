//! How a failed check is classified: a target-side [`Failure`] becomes an unhealthy
//! result, a checker-side one becomes a [`ProbeError`] (SPEC §3).

use std::{fmt, future::Future, io, time::Duration};

use health_types::{CheckKind, CheckResult, ConfigError, ProbeError, timed_out_after};

/// Runs a check's `probe`, begun at `start`, until `start + timeout`: its result, its
/// failure as the outcome, or `timed out after <timeout>`, with the time taken as the
/// latency of either failure.
pub(crate) async fn within(
    timeout: Duration,
    start: tokio::time::Instant,
    probe: impl Future<Output = Result<CheckResult, Failure>>,
) -> Result<CheckResult, ProbeError> {
    match tokio::time::timeout_at(start + timeout, probe).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(failure)) => failure.into_outcome(start.elapsed()),
        Err(_) => Failure::timed_out(timeout).into_outcome(start.elapsed()),
    }
}

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

    /// The same failure with `prefix` put before its detail; a `local` failure keeps
    /// its own (`local: too many open files` is about this process, not the party
    /// asked).
    #[cfg(any(feature = "http", feature = "docker"))]
    #[must_use]
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        if self.kind != CheckKind::Local {
            self.detail = format!("{prefix}{}", self.detail);
        }
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
/// Errors the target or its network causes (refused, reset, closed, unreachable, an
/// ICMP error, timed out) are target failures; our own shortage (out of descriptors,
/// buffers or memory; no local address) is a [`local`] failure; anything else
/// (permission denied) is the checker's.
pub(crate) fn classify_io(err: &io::Error) -> Failure {
    use io::ErrorKind as K;
    if let Some(failure) = errno_failure(err) {
        return failure;
    }
    match err.kind() {
        K::ConnectionRefused => Failure::target(CheckKind::Refused, "connection refused"),
        K::HostUnreachable => Failure::target(CheckKind::Refused, "host unreachable"),
        K::NetworkUnreachable => Failure::target(CheckKind::Refused, "network unreachable"),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected => {
            Failure::target(CheckKind::Reset, "connection reset")
        }
        K::UnexpectedEof => Failure::target(CheckKind::Reset, "connection closed"),
        K::TimedOut => Failure::target(CheckKind::Timeout, "connection timed out"),
        K::OutOfMemory => local("out of memory"),
        K::AddrNotAvailable => local("no local address"),
        _ => Failure::checker(CheckKind::Io, err.to_string()),
    }
}

/// An our-side failure (SPEC §9.3): kind `local`, detail `local: <what>`. It says
/// nothing about the target; the monitor counts it nowhere.
pub(crate) fn local(what: &str) -> Failure {
    Failure::checker(CheckKind::Local, format!("local: {what}"))
}

/// The our-side failure `err` is, if it is one (by its errno, else its kind): for the
/// probes that classify other I/O errors their own way (the file probe, a UDP socket).
pub(crate) fn local_failure(err: &io::Error) -> Option<Failure> {
    match classify_io(err) {
        failure if failure.kind == CheckKind::Local => Some(failure),
        _ => None,
    }
}

/// The failure an errno stands for, where std's [`io::ErrorKind`] does not name it.
///
/// Linux reports ICMP destination-unreachable codes on a socket as errnos
/// (`icmp_err_convert`): protocol unreachable → `ENOPROTOOPT`, fragmentation needed →
/// `EMSGSIZE`, source route failed → `EOPNOTSUPP`, host unknown → `EHOSTDOWN`, host
/// isolated → `ENONET`; net/host unknown, prohibited and filtered (admin-prohibited)
/// → `ENETUNREACH`/`EHOSTUNREACH` (std's kinds); ICMPv6 administratively prohibited,
/// policy failure and reject route → `EACCES`. Each is the target's network answering:
/// unhealthy, kind `refused`.
#[cfg(unix)]
fn errno_failure(err: &io::Error) -> Option<Failure> {
    let errno = nix::errno::Errno::from_raw(err.raw_os_error()?);
    let ours = match errno {
        nix::errno::Errno::EMFILE => "too many open files",
        nix::errno::Errno::ENFILE => "too many open files in the system",
        nix::errno::Errno::ENOBUFS => "no buffer space",
        nix::errno::Errno::ENOMEM => "out of memory",
        nix::errno::Errno::EADDRNOTAVAIL => "no local address",
        _ => return icmp_failure(errno),
    };
    Some(local(ours))
}

/// The ICMP error an errno stands for (Linux's mapping, see [`errno_failure`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn icmp_failure(errno: nix::errno::Errno) -> Option<Failure> {
    use nix::errno::Errno as E;

    let detail = match errno {
        E::ENOPROTOOPT => "protocol unreachable",
        E::EMSGSIZE => "fragmentation needed",
        E::EOPNOTSUPP => "source route failed",
        E::EHOSTDOWN => "host unknown",
        E::ENONET => "host isolated",
        E::EACCES => "administratively prohibited",
        _ => return None,
    };
    Some(Failure::target(CheckKind::Refused, detail))
}

#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
fn icmp_failure(_errno: nix::errno::Errno) -> Option<Failure> {
    None
}

#[cfg(not(unix))]
fn errno_failure(_err: &io::Error) -> Option<Failure> {
    None
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

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn icmp_errnos_are_target_failures_and_shortages_local() {
        use nix::errno::Errno as E;

        let classify = |errno: E| classify_io(&io::Error::from_raw_os_error(errno as i32));
        for (errno, detail) in [
            (E::ENOPROTOOPT, "protocol unreachable"),
            (E::EHOSTDOWN, "host unknown"),
            (E::ENONET, "host isolated"),
            (E::EOPNOTSUPP, "source route failed"),
            (E::EMSGSIZE, "fragmentation needed"),
            (E::EACCES, "administratively prohibited"),
            (E::EHOSTUNREACH, "host unreachable"),
            (E::ENETUNREACH, "network unreachable"),
            (E::ECONNREFUSED, "connection refused"),
        ] {
            let failure = classify(errno);
            assert_eq!(
                (failure.side, failure.kind, failure.detail.as_str()),
                (Side::Target, CheckKind::Refused, detail),
                "{errno}"
            );
        }
        for (errno, detail) in [
            (E::EMFILE, "local: too many open files"),
            (E::ENFILE, "local: too many open files in the system"),
            (E::ENOBUFS, "local: no buffer space"),
            (E::ENOMEM, "local: out of memory"),
            (E::EADDRNOTAVAIL, "local: no local address"),
        ] {
            let failure = classify(errno);
            assert_eq!(
                (failure.side, failure.kind, failure.detail.as_str()),
                (Side::Checker, CheckKind::Local, detail),
                "{errno}"
            );
            let error = failure.into_outcome(Duration::ZERO).unwrap_err();
            assert_eq!(error.kind(), CheckKind::Local);
        }
        // A kind without an errno (from a library) classifies the same way.
        let oom = classify_io(&io::Error::from(io::ErrorKind::OutOfMemory));
        assert_eq!(oom.kind, CheckKind::Local);
        let other = classify(E::EPERM);
        assert_eq!((other.side, other.kind), (Side::Checker, CheckKind::Io));
    }

    #[cfg(any(feature = "http", feature = "docker"))]
    #[test]
    fn local_failures_keep_their_detail_under_a_prefix() {
        let failure = local("too many open files").prefixed("agent: ");
        assert_eq!(failure.detail, "local: too many open files");
        let failure = Failure::target(CheckKind::Refused, "connection refused").prefixed("agent: ");
        assert_eq!(failure.detail, "agent: connection refused");
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
