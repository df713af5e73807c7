//! The ICMP echo probe (`icmp://<host>`, SPEC §9.4) on an unprivileged ping socket.
//!
//! Linux lets a process whose group is in `net.ipv4.ping_group_range` open an ICMP
//! datagram socket (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`, and the ICMPv6 one for
//! IPv6) without `CAP_NET_RAW`: the kernel fills in the identifier (the socket's "port")
//! and the checksum, and hands the socket only the echo replies that carry that
//! identifier. So a reply is ours when its sequence number and payload are the ones we
//! sent. Where the sysctl excludes us the socket cannot be opened, and the check is an
//! error (the checker cannot do its job), kind `io`, whose detail names the sysctl.
//!
//! ICMP errors: the socket does not set `IP_RECVERR`/`IPV6_RECVERR` (nix's socket
//! options are not among this crate's features, and socket2 has none), and Linux
//! hands a ping socket without it only the "hard" ICMP errors; host and network
//! unreachable from a router are "soft", so they are dropped and the check ends as
//! a `timeout`. A route this host itself lacks (no route, an `unreachable` route, no
//! local address of the family) fails the send at once: unhealthy `refused`
//! (`network unreachable`, `host unreachable`), after the next address of the name
//! was tried.

use std::{
    hash::{BuildHasher, Hasher},
    io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use async_trait::async_trait;
use health_types::{
    CheckKind, CheckResult, ConfigError, HealthCheckConfig, IpFamily, Phases, Probe, ProbeError,
    Scheme, redacted,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::UdpSocket, time::Instant};
use url::Url;

use crate::{
    failure::{Failure, bad_url, classify_io, local_failure},
    net,
    target::{Attempt, first_reachable, url_host},
};

/// The detail of a check on a machine whose kernel refuses us ping sockets.
pub const PING_REFUSED: &str =
    "icmp: the kernel refuses unprivileged ping sockets (net.ipv4.ping_group_range)";

/// ICMPv4 echo request and reply types.
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
/// ICMPv6 echo request and reply types.
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// The payload length after the 8-byte header: a marker and 8 random bytes.
const MARKER: &[u8; 8] = b"healthd\0";

/// Pings a host: one ICMP echo request, healthy on its reply (`icmp://` URLs).
///
/// The host is an address or a name looked up on the process's resolver, keeping to
/// [`ip_family`](HealthCheckConfig::ip_family) (the first admitted address is pinged).
/// A reply with our sequence number and payload is healthy, detail `echo reply`,
/// latency the round trip (`first_byte` phase; `connect` is the socket setup, `dns` the
/// lookup). No reply within `timeout` is unhealthy `timeout`, and so is an ICMP host or
/// network unreachable from a router on the way (see the module docs); no route from
/// this host is unhealthy `refused` (`network unreachable`). With a name, when this
/// host cannot reach its first address (no route, no local address of the family), the
/// next is pinged. A kernel that refuses the socket is an error of kind `io`, detail
/// [`PING_REFUSED`].
///
/// The URL takes a host and nothing else: a port, a path or a query is a config error.
#[derive(Clone, Debug)]
pub struct IcmpProbe {
    timeout: Duration,
    ip_family: IpFamily,
}

/// An `icmp://` URL taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IcmpTarget {
    ip: Option<IpAddr>,
    host: String,
}

impl IcmpProbe {
    /// A probe with `config`'s `timeout` and `ip_family`.
    ///
    /// Fails when `config` is invalid.
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(IcmpProbe {
            timeout: config.timeout,
            ip_family: config.ip_family,
        })
    }

    fn target(&self, url: &Url) -> Result<IcmpTarget, ConfigError> {
        let invalid = |reason: String| ConfigError::url(redacted(url), reason);
        Scheme::of_among(url, &[Scheme::Icmp])?;
        let (ip, host) = url_host(url)
            .ok_or_else(|| invalid("no host (like icmp://192.0.2.1)".to_owned()))?
            .split();
        let target = IcmpTarget { ip, host };
        if url.port().is_some() {
            return Err(invalid("ICMP has no ports: write icmp://<host>".to_owned()));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(invalid(
                "an icmp:// URL is a host alone (no path, no query)".to_owned(),
            ));
        }
        if let Some(ip) = target.ip {
            net::check_family(url, ip, self.ip_family)?;
        }
        Ok(target)
    }

    async fn probe(&self, target: &IcmpTarget, start: Instant) -> Result<CheckResult, Failure> {
        let mut phases = Phases::default();
        let resolved;
        let addrs: &[SocketAddr] = match target.ip {
            Some(ip) => &[SocketAddr::new(ip, 0)],
            None => {
                resolved =
                    net::resolve(&target.host, 0, self.ip_family.into(), start + self.timeout)
                        .await?;
                phases.dns = Some(start.elapsed());
                &resolved
            }
        };
        let setup = Instant::now();
        let (sequence, nonce) = random_pair();
        let (socket, ip, sent) = first_reachable(addrs, |addr| async move {
            let ip = addr.ip();
            let socket = ping_socket(ip).map_err(Attempt::last)?;
            socket
                .connect(addr)
                .await
                .map_err(|err| Attempt::io(&err, classify_io))?;
            let request = echo_request(ip.is_ipv4(), sequence, nonce);
            let sent = Instant::now();
            socket
                .send(&request)
                .await
                .map_err(|err| Attempt::io(&err, classify_io))?;
            Ok((socket, ip, sent))
        })
        .await?;
        phases.connect = Some(sent.saturating_duration_since(setup));
        let mut buf = [0u8; 1024];
        // Bounded by the check's deadline: replies to other pings on this socket (none,
        // as it is ours alone) or stray datagrams are skipped.
        loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|err| classify_io(&err))?;
            if is_our_reply(ip.is_ipv4(), &buf[..n], sequence, nonce) {
                let rtt = sent.elapsed();
                phases.first_byte = Some(rtt);
                return Ok(CheckResult::healthy("echo reply", rtt).with_phases(phases));
            }
        }
    }
}

#[async_trait]
impl Probe for IcmpProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let target = self.target(url).map_err(|err| bad_url(&err))?;
        let start = Instant::now();
        crate::failure::within(self.timeout, start, self.probe(&target, start)).await
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        self.target(url).map(drop)
    }
}

/// An unprivileged ping socket for `ip`'s family, registered with tokio.
fn ping_socket(ip: IpAddr) -> Result<UdpSocket, Failure> {
    let (domain, protocol) = if ip.is_ipv4() {
        (Domain::IPV4, Protocol::ICMPV4)
    } else {
        (Domain::IPV6, Protocol::ICMPV6)
    };
    let socket =
        Socket::new(domain, Type::DGRAM, Some(protocol)).map_err(|err| socket_failure(&err))?;
    socket
        .set_nonblocking(true)
        .map_err(|err| socket_failure(&err))?;
    // A datagram socket of another protocol: std's UdpSocket only sends and receives
    // datagrams on it, which is all a ping needs.
    UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(|err| socket_failure(&err))
}

/// Why a ping socket could not be opened: the kernel's refusal (EACCES, EPERM: our group
/// is outside `net.ipv4.ping_group_range`) gets its own detail; our own shortage is
/// `local`; anything else (no IPv6 in this kernel) is an `io` error.
fn socket_failure(err: &io::Error) -> Failure {
    if let Some(failure) = local_failure(err) {
        return failure;
    }
    match err.kind() {
        io::ErrorKind::PermissionDenied => Failure::checker(CheckKind::Io, PING_REFUSED),
        _ => Failure::checker(CheckKind::Io, format!("icmp: no ping socket: {err}")),
    }
}

/// A random sequence number and payload nonce for one echo.
fn random_pair() -> (u16, [u8; 8]) {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let bits = hasher.finish();
    // Truncation intended: 16 of the 64 random bits for the sequence.
    (bits as u16, bits.to_le_bytes())
}

/// An echo request: type, code 0, checksum, identifier 0 (the kernel sets it), the
/// sequence, then the marker and nonce.
fn echo_request(v4: bool, sequence: u16, nonce: [u8; 8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(8 + MARKER.len() + nonce.len());
    packet.push(if v4 { ECHO_REQUEST_V4 } else { ECHO_REQUEST_V6 });
    packet.extend_from_slice(&[0, 0, 0, 0, 0]);
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(MARKER);
    packet.extend_from_slice(&nonce);
    if v4 {
        // The kernel computes ICMPv6 checksums (they cover a pseudo-header); an ICMPv4
        // one we fill in, though Linux rewrites it with the identifier anyway.
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// Whether `packet` (an ICMP message, without IP header) is the reply to our echo.
fn is_our_reply(v4: bool, packet: &[u8], sequence: u16, nonce: [u8; 8]) -> bool {
    let reply_type = if v4 { ECHO_REPLY_V4 } else { ECHO_REPLY_V6 };
    packet.len() >= 8 + MARKER.len() + nonce.len()
        && packet[0] == reply_type
        && packet[6..8] == sequence.to_be_bytes()
        && packet[8..16] == *MARKER
        && packet[16..24] == nonce
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Truncation intended: folded to 16 bits above.
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<IcmpTarget, String> {
        IcmpProbe::try_new(&HealthCheckConfig::default())
            .unwrap()
            .target(&Url::parse(url).unwrap())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn icmp_urls_are_a_host_alone() {
        assert_eq!(
            target("icmp://127.0.0.1").unwrap().ip,
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            target("icmp://[::1]").unwrap().ip,
            Some("::1".parse().unwrap())
        );
        assert_eq!(target("icmp://gw.internal").unwrap().host, "gw.internal");
        assert!(target("icmp://h:7").unwrap_err().contains("no ports"));
        assert!(target("icmp://h/x").unwrap_err().contains("no path"));
        assert!(target("icmp://").unwrap_err().contains("no host"));
        let v6only = IcmpProbe::try_new(&HealthCheckConfig {
            ip_family: IpFamily::Ipv6,
            ..Default::default()
        })
        .unwrap();
        let err = v6only
            .target(&Url::parse("icmp://127.0.0.1").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("ip_family ipv6"), "{err}");
    }

    #[test]
    fn a_refused_socket_names_the_sysctl() {
        for errno in [nix::errno::Errno::EACCES, nix::errno::Errno::EPERM] {
            let failure = socket_failure(&io::Error::from_raw_os_error(errno as i32));
            assert_eq!(
                (failure.side, failure.kind, failure.detail.as_str()),
                (crate::failure::Side::Checker, CheckKind::Io, PING_REFUSED),
                "{errno}"
            );
            let err = failure.into_outcome(Duration::ZERO).unwrap_err();
            assert_eq!(err.kind(), CheckKind::Io);
        }
        let emfile = socket_failure(&io::Error::from_raw_os_error(
            nix::errno::Errno::EMFILE as i32,
        ));
        assert_eq!(emfile.kind, CheckKind::Local);
        let other = socket_failure(&io::Error::from_raw_os_error(
            nix::errno::Errno::EAFNOSUPPORT as i32,
        ));
        assert!(
            other.detail.starts_with("icmp: no ping socket"),
            "{other:?}"
        );
    }

    #[test]
    fn replies_are_matched_by_sequence_and_payload() {
        let nonce = [1, 2, 3, 4, 5, 6, 7, 8];
        let request = echo_request(true, 0x1234, nonce);
        assert_eq!(checksum(&request), 0, "a checksummed packet sums to zero");
        let mut reply = request.clone();
        reply[0] = ECHO_REPLY_V4;
        // The kernel's identifier does not matter.
        reply[4..6].copy_from_slice(&[0xab, 0xcd]);
        assert!(is_our_reply(true, &reply, 0x1234, nonce));
        assert!(!is_our_reply(true, &reply, 0x1235, nonce));
        assert!(!is_our_reply(true, &reply, 0x1234, [0; 8]));
        assert!(!is_our_reply(true, &request, 0x1234, nonce), "not a reply");
        assert!(!is_our_reply(true, &reply[..10], 0x1234, nonce));
        let v6 = echo_request(false, 7, nonce);
        let mut v6_reply = v6.clone();
        v6_reply[0] = ECHO_REPLY_V6;
        assert!(is_our_reply(false, &v6_reply, 7, nonce));
    }
}
