//! What the non-HTTP probes (stream, DNS, ICMP) share about their targets: the host of
//! a URL (an address or a name), the `expect` regex, and trying the next address when
//! the network cannot reach the first (`ip_family = "any"`, SPEC §9.4).

use std::{
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use health_types::{CheckKind, ConfigError, redacted};
use regex::bytes::Regex;
use url::{Host, Url};

use crate::{dns, failure::Failure, net};

/// The host of `url`: its address when it is a literal (brackets or not; non-special
/// schemes keep IPv4 literals as domains), else its name. `None` when it has no host.
pub(crate) fn url_host(url: &Url) -> Option<UrlHost> {
    match url.host()? {
        Host::Domain("") => None,
        Host::Ipv4(ip) => Some(UrlHost::Ip(IpAddr::V4(ip))),
        Host::Ipv6(ip) => Some(UrlHost::Ip(IpAddr::V6(ip))),
        Host::Domain(name) => Some(match net::ip_literal(name) {
            Some(ip) => UrlHost::Ip(ip),
            None => UrlHost::Name(name.to_owned()),
        }),
    }
}

/// The host of a URL: an address, or a name to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UrlHost {
    /// A literal address: no lookup.
    Ip(IpAddr),
    /// A name.
    Name(String),
}

impl UrlHost {
    /// `(address, "")` or `(None, name)`, as the targets keep them.
    pub(crate) fn split(self) -> (Option<IpAddr>, String) {
        match self {
            UrlHost::Ip(ip) => (Some(ip), String::new()),
            UrlHost::Name(name) => (None, name),
        }
    }
}

/// `pattern` compiled as the probes match it (on bytes), or a config error naming
/// `key` and `pattern` (and `url`, when the pattern came from one).
pub(crate) fn compile_regex(
    key: &'static str,
    pattern: &str,
    url: Option<&Url>,
) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|err| ConfigError::Invalid {
        key,
        value: match url {
            Some(url) => format!("{pattern:?} in {}", redacted(url)),
            None => format!("{pattern:?}"),
        },
        reason: format!("is not a valid regex: {err}"),
    })
}

/// A UDP socket of `addr`'s family connected to it (so that an ICMP port unreachable
/// comes back as `ECONNREFUSED`). A socket that cannot be made is an error
/// `<what>: udp socket: <err>` (or `local`); `connect_failure` classifies a failed
/// connect, which may let the caller try the next address.
pub(crate) async fn udp_connected(
    addr: SocketAddr,
    what: &str,
    connect_failure: fn(&io::Error) -> Failure,
) -> Result<tokio::net::UdpSocket, Attempt> {
    let local = if addr.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = tokio::net::UdpSocket::bind(local).await.map_err(|err| {
        Attempt::io(&err, |err| {
            crate::failure::local_failure(err).unwrap_or_else(|| {
                Failure::checker(CheckKind::Io, format!("{what}udp socket: {err}"))
            })
        })
    })?;
    socket
        .connect(addr)
        .await
        .map_err(|err| Attempt::io(&err, connect_failure))?;
    Ok(socket)
}

/// Whether `err` says the network cannot carry packets to that address at all
/// (`ENETUNREACH`, `EHOSTUNREACH`, `EADDRNOTAVAIL`: no route, no local address of the
/// family), as opposed to an answer from the target: then another address of the name
/// may do.
pub(crate) fn network_unreachable(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use nix::errno::Errno;
        matches!(
            err.raw_os_error().map(Errno::from_raw),
            Some(Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EADDRNOTAVAIL)
        )
    }
    #[cfg(not(unix))]
    {
        matches!(
            err.kind(),
            io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::AddrNotAvailable
        )
    }
}

/// One address's attempt failed: why, and whether the next address is worth a try
/// ([`network_unreachable`]).
#[derive(Debug)]
pub(crate) struct Attempt {
    /// What the check reports when no address is left.
    pub(crate) failure: Failure,
    /// The network could not reach this address: try the next one.
    pub(crate) try_next: bool,
}

impl Attempt {
    /// The attempt that failed with `err`, classified by `classify`.
    pub(crate) fn io(err: &io::Error, classify: impl FnOnce(&io::Error) -> Failure) -> Self {
        Attempt {
            failure: classify(err),
            try_next: network_unreachable(err),
        }
    }

    /// A failure that ends the check, whatever addresses are left.
    pub(crate) fn last(failure: Failure) -> Self {
        Attempt {
            failure,
            try_next: false,
        }
    }
}

/// Runs `attempt` on each of `addrs` in order until one succeeds or fails for a reason
/// other than an unreachable network; the failure reported is the first final one, or
/// the last address's when every address was unreachable. Bounded by `addrs`.
pub(crate) async fn first_reachable<T, F, Fut>(
    addrs: &[SocketAddr],
    mut attempt: F,
) -> Result<T, Failure>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut last = None;
    for &addr in addrs {
        match attempt(addr).await {
            Ok(value) => return Ok(value),
            Err(Attempt {
                failure,
                try_next: true,
            }) => {
                tracing::debug!(%addr, %failure, "address unreachable; trying the next");
                last = Some(failure);
            }
            Err(Attempt { failure, .. }) => return Err(failure),
        }
    }
    Err(last.unwrap_or_else(|| Failure::target(CheckKind::Dns, dns::NO_ANSWER)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    fn errno(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e as i32)
    }

    #[test]
    fn hosts_are_addresses_or_names() {
        let host = |text: &str| url_host(&Url::parse(text).unwrap());
        assert_eq!(
            host("tcp://127.0.0.1:1"),
            Some(UrlHost::Ip("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            host("icmp://[::1]"),
            Some(UrlHost::Ip("::1".parse().unwrap()))
        );
        assert_eq!(
            host("dns://ns.test/x"),
            Some(UrlHost::Name("ns.test".to_owned()))
        );
        assert_eq!(host("tcp:x"), None);
    }

    #[test]
    fn only_network_level_errors_move_on() {
        for e in [
            Errno::ENETUNREACH,
            Errno::EHOSTUNREACH,
            Errno::EADDRNOTAVAIL,
        ] {
            assert!(network_unreachable(&errno(e)), "{e}");
        }
        for e in [Errno::ECONNREFUSED, Errno::EACCES, Errno::EMFILE] {
            assert!(!network_unreachable(&errno(e)), "{e}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_address_falls_back_to_the_next() {
        let v6: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        let v4: SocketAddr = "192.0.2.1:53".parse().unwrap();
        let classify = crate::failure::classify_io;
        // The first is unreachable, the second answers.
        let mut tried = Vec::new();
        let got = first_reachable(&[v6, v4], |addr| {
            tried.push(addr);
            async move {
                if addr.is_ipv6() {
                    Err(Attempt::io(&errno(Errno::ENETUNREACH), classify))
                } else {
                    Ok(addr)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!((got, tried), (v4, vec![v6, v4]));

        // A refusal is the target's answer: no second try.
        let mut tried = 0;
        let err = first_reachable(&[v6, v4], |_| {
            tried += 1;
            async { Err::<(), _>(Attempt::io(&errno(Errno::ECONNREFUSED), classify)) }
        })
        .await
        .unwrap_err();
        assert_eq!((tried, err.kind), (1, CheckKind::Refused));

        // All unreachable: the last one's failure.
        let err = first_reachable(&[v6, v4], |addr| async move {
            let e = if addr.is_ipv6() {
                Errno::EADDRNOTAVAIL
            } else {
                Errno::EHOSTUNREACH
            };
            Err::<(), _>(Attempt::io(&errno(e), classify))
        })
        .await
        .unwrap_err();
        assert_eq!(err.detail, "host unreachable");
        let none = first_reachable(&[], |_| async { Ok::<(), Attempt>(()) }).await;
        assert_eq!(none.unwrap_err().kind, CheckKind::Dns);
    }
}
