//! Name resolution, TCP connects and URL helpers shared by the probes, with their
//! failures classified.

use std::net::{IpAddr, SocketAddr};

use health_types::{CheckKind, ConfigError, IpFamily, redacted};
use tokio::{net::TcpStream, time::Instant};
#[cfg(any(feature = "http", feature = "docker"))]
use url::Host;
use url::Url;

use crate::{
    dns,
    failure::{Failure, Side, classify_io},
};

/// The `User-Agent` of every HTTP check and agent request: `healthd/<version>`.
pub const USER_AGENT_VALUE: &str = concat!("healthd/", env!("CARGO_PKG_VERSION"));

/// Which address family a target may use (`tcp4`, `udp6`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// IPv4 or IPv6.
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    pub(crate) fn accepts(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Any => "IP",
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The family's `ip_family` word, as the `dns: no ipv6 address` detail says it.
    fn word(self) -> &'static str {
        match self {
            Family::Any => "ip",
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

impl From<health_types::IpFamily> for Family {
    fn from(family: health_types::IpFamily) -> Self {
        match family {
            health_types::IpFamily::Any => Family::Any,
            health_types::IpFamily::Ipv4 => Family::V4,
            health_types::IpFamily::Ipv6 => Family::V6,
        }
    }
}

/// Checks that the literal address `ip` (the host of `url`) is admitted by the
/// configured `ip_family`: the one check of every probe, with one wording
/// (`<ip> is not an address of ip_family <family>`, a URL error naming `url`, its
/// password masked).
pub(crate) fn check_family(url: &Url, ip: IpAddr, family: IpFamily) -> Result<(), ConfigError> {
    if family.admits(&ip) {
        Ok(())
    } else {
        Err(ConfigError::url(
            redacted(url),
            format!("{ip} is not an address of ip_family {family}"),
        ))
    }
}

#[cfg(any(feature = "http", feature = "docker"))]
/// The host of `url` without IPv6 brackets, or `None` when it has none.
///
/// URLs of non-special schemes (`tcp://`, `h2c://`) keep IPv4 literals as domains; they
/// are recognised as addresses by [`resolve`].
pub(crate) fn url_host(url: &Url) -> Option<String> {
    match url.host()? {
        Host::Domain("") => None,
        Host::Domain(domain) => Some(domain.to_owned()),
        Host::Ipv4(addr) => Some(addr.to_string()),
        Host::Ipv6(addr) => Some(addr.to_string()),
    }
}

/// The literal address `host` stands for, if it is one (brackets allowed).
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Resolves `host` (a name or a literal address) to socket addresses of `family`; a
/// name is looked up on the shared resolver ([`dns`]) until `deadline`.
///
/// A name that does not resolve, or resolves to no address of the family, is a target
/// failure of kind `dns`.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    family: Family,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Failure> {
    if let Some(ip) = ip_literal(host) {
        return if family.accepts(ip) {
            Ok(vec![SocketAddr::new(ip, port)])
        } else {
            Err(Failure::checker(
                CheckKind::Config,
                format!("{host} is not an {} address", family.name()),
            ))
        };
    }
    let found = dns::lookup(dns::shared()?, host, deadline).await?;
    let addrs: Vec<SocketAddr> = found
        .into_iter()
        .filter(|ip| family.accepts(*ip))
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    if addrs.is_empty() {
        return Err(Failure::target(
            CheckKind::Dns,
            format!("dns: no {} address", family.word()),
        ));
    }
    Ok(addrs)
}

/// The longest a connect attempt that is not the last may take ([`connect_until`]).
const MAX_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a connect attempt may take with `left` until the deadline and `left_addrs`
/// addresses still to try (this one included): `min(left / left_addrs, 2 s)`, or `None`
/// (not cut here) for the last one.
fn attempt_limit(left: std::time::Duration, left_addrs: usize) -> Option<std::time::Duration> {
    (left_addrs > 1)
        .then(|| (left / u32::try_from(left_addrs).unwrap_or(u32::MAX)).min(MAX_ATTEMPT))
}

/// Connects to the first of `addrs` that accepts before `deadline`, falling back to the
/// next address when one fails (`ip_family = "any"`, SPEC §9.4).
///
/// Each attempt but the last gets an equal share of the time left, at most
/// [`MAX_ATTEMPT`] (`min(left / addresses left, 2 s)`, like Happy Eyeballs' fixed
/// fallback delay), so an address that black-holes its SYNs does not eat the deadline
/// while another would answer, nor delay a long-timeout check by more than 2 s per dead
/// address; the last address is not cut here: the caller's deadline ends it, as it ends
/// the check (`timed out after …`). When none accepts, the failure
/// reported is the last target-side one (refused beats a local error on another address
/// family), else the last one; an attempt cut by its share is `connection timed out`
/// (kind `timeout`).
#[cfg(any(test, feature = "http"))]
pub(crate) async fn connect_until(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<TcpStream, Failure> {
    connect_until_with(addrs, deadline, Handshake::Full).await
}

/// How a connect ends its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// The usual three-way handshake: the peer's application can accept the connection.
    Full,
    /// For a connect-only check, as HAProxy's checks do: on Linux the final ACK is held
    /// back (`TCP_QUICKACK` off before the connect), so a close with a reset right after
    /// the SYN-ACK never completes the peer's handshake. The peer's kernel answered, so
    /// the port is open; its application never sees (or logs) the check, and neither
    /// side sets up and tears down an accepted connection. Elsewhere it is [`Full`].
    HalfOpen,
}

/// [`connect_until`] with the handshake `handshake`.
pub(crate) async fn connect_until_with(
    addrs: &[SocketAddr],
    deadline: Instant,
    handshake: Handshake,
) -> Result<TcpStream, Failure> {
    let mut failure: Option<Failure> = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left_addrs = addrs.len() - i;
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = match attempt_limit(left, left_addrs) {
            None => Ok(connect_one(*addr, handshake).await),
            Some(share) => tokio::time::timeout(share, connect_one(*addr, handshake)).await,
        };
        let next = match attempt {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => classify_io(&err),
            Err(_) => Failure::target(CheckKind::Timeout, "connection timed out"),
        };
        tracing::debug!(%addr, failure = %next, "connect failed; trying the next address");
        let keep_previous = matches!(&failure, Some(prev) if prev.side == Side::Target)
            && next.side == Side::Checker;
        if !keep_previous {
            failure = Some(next);
        }
    }
    Err(failure.unwrap_or_else(|| Failure::target(CheckKind::Dns, dns::NO_ANSWER)))
}

/// One connect to `addr` with `handshake`.
async fn connect_one(addr: SocketAddr, handshake: Handshake) -> std::io::Result<TcpStream> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if handshake == Handshake::HalfOpen {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // Not fatal: without it the handshake completes, as with `Full`.
        let _ = socket2::SockRef::from(&socket).set_tcp_quickack(false);
        return socket.connect(addr).await;
    }
    let _ = handshake;
    TcpStream::connect(addr).await
}

#[cfg(feature = "http")]
/// Resolves `host` to addresses of `family` (until `deadline`) and connects to one of
/// them ([`connect_until`]); also says how long the lookup took (`None` for an IP
/// literal) and the connect.
pub(crate) async fn resolve_and_connect(
    host: &str,
    port: u16,
    family: Family,
    deadline: Instant,
) -> Result<(TcpStream, Option<std::time::Duration>, std::time::Duration), Failure> {
    let start = Instant::now();
    let addrs = resolve(host, port, family, deadline).await?;
    let dns = ip_literal(host).is_none().then(|| start.elapsed());
    let connecting = Instant::now();
    let stream = connect_until(&addrs, deadline).await?;
    let connect = connecting.elapsed();
    // Probes send one small request; Nagle's delay would only add latency.
    let _ = stream.set_nodelay(true);
    Ok((stream, dns, connect))
}

#[cfg(feature = "http")]
/// Joins the configured `path` (which may carry a query) onto a URL's path and query.
///
/// The base path is kept, the join never produces `//`, and `/` onto an empty path is
/// just `/`. Queries of both sides are kept, the URL's first.
pub(crate) fn join_path(base: &str, base_query: Option<&str>, path: &str) -> String {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    // Built by hand, not with format!: this runs on every HTTP check.
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    let queries = [base_query, query]
        .into_iter()
        .flatten()
        .filter(|q| !q.is_empty());
    let mut joined = String::with_capacity(
        base.len() + 1 + path.len() + queries.clone().map(|q| q.len() + 1).sum::<usize>(),
    );
    joined.push_str(base);
    joined.push('/');
    joined.push_str(path);
    for (i, q) in queries.enumerate() {
        joined.push(if i == 0 { '?' } else { '&' });
        joined.push_str(q);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "http")]
    #[test]
    fn paths_join_without_double_slashes() {
        let cases = [
            ("", None, "/", "/"),
            ("/", None, "/", "/"),
            ("/", None, "/health", "/health"),
            ("/api", None, "/health", "/api/health"),
            ("/api/", None, "/health", "/api/health"),
            ("/api/", None, "//health", "/api/health"),
            ("/api", None, "/", "/api/"),
            ("/api", None, "/health?full=1", "/api/health?full=1"),
            ("/api", Some("a=1"), "/health?b=2", "/api/health?a=1&b=2"),
            ("/api", Some("a=1"), "/", "/api/?a=1"),
            ("/", Some(""), "/x?", "/x"),
        ];
        for (base, query, path, want) in cases {
            assert_eq!(
                join_path(base, query, path),
                want,
                "{base} {query:?} {path}"
            );
        }
    }

    #[cfg(any(feature = "http", feature = "docker"))]
    #[test]
    fn hosts_lose_their_brackets() {
        let url = Url::parse("tcp://[::1]:80").unwrap();
        assert_eq!(url_host(&url).as_deref(), Some("::1"));
        let url = Url::parse("tcp://127.0.0.1:80").unwrap();
        assert_eq!(url_host(&url).as_deref(), Some("127.0.0.1"));
        assert_eq!(ip_literal("[::1]"), Some("::1".parse().unwrap()));
        let url = Url::parse("tcp://:80").ok();
        assert!(url.as_ref().and_then(url_host).is_none());
    }

    #[test]
    fn attempts_get_a_share_of_the_time_left_at_most_2s() {
        use std::time::Duration;

        let secs = Duration::from_secs;
        assert_eq!(attempt_limit(secs(3), 2), Some(Duration::from_millis(1500)));
        assert_eq!(attempt_limit(secs(10), 2), Some(secs(2)));
        assert_eq!(attempt_limit(secs(30), 3), Some(secs(2)));
        assert_eq!(attempt_limit(secs(30), 1), None);
        assert_eq!(attempt_limit(Duration::ZERO, 4), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_failed_address_falls_back_to_the_next() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Nothing listens on 127.0.0.3: that address refuses at once.
        let dead: SocketAddr = ([127, 0, 0, 3], port).into();
        let live: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        let stream = connect_until(&[dead, live], deadline).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), live);
        let err = connect_until(&[dead], deadline).await.unwrap_err();
        assert_eq!(
            (err.kind, err.detail.as_str()),
            (CheckKind::Refused, "connection refused")
        );
    }

    #[test]
    fn literals_are_checked_against_ip_family() {
        let url = Url::parse("http://u:pw@[::1]:80/").unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(check_family(&url, v6, IpFamily::Any).is_ok());
        assert!(check_family(&url, v6, IpFamily::Ipv6).is_ok());
        let err = check_family(&url, v6, IpFamily::Ipv4)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("::1 is not an address of ip_family ipv4"),
            "{err}"
        );
        assert!(!err.contains("pw"), "{err}");
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(check_family(&url, v4, IpFamily::Ipv6).is_err());
    }

    #[tokio::test]
    async fn a_literal_of_the_wrong_family_is_a_config_failure() {
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        let err = resolve("::1", 80, Family::V4, deadline).await.unwrap_err();
        assert_eq!((err.side, err.kind), (Side::Checker, CheckKind::Config));
        let ok = resolve("127.0.0.1", 80, Family::V4, deadline)
            .await
            .unwrap();
        assert_eq!(ok, vec!["127.0.0.1:80".parse().unwrap()]);
    }
}
