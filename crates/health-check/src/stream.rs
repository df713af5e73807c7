//! TCP and UDP probes: `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6` (SPEC §5).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use async_trait::async_trait;
use health_types::{
    CheckKind, CheckResult, ConfigError, HealthCheckConfig, Probe, ProbeError, Scheme, redacted,
    timed_out_after,
};
use tokio::{net::UdpSocket, time::Instant};
use url::{Host, Url};

use crate::{
    dns,
    failure::{Failure, bad_url, classify_io, local_failure},
    net::{self, Family},
};

/// The longest a UDP check waits for a reply.
pub const UDP_MAX_WAIT: Duration = Duration::from_secs(2);
/// The largest reply read; a longer datagram is cut, which is fine for a health check.
const UDP_REPLY_BUFFER: usize = 2048;

/// Checks stream targets: a TCP connect, or a UDP datagram and its answer.
///
/// - TCP: the connect succeeding is healthy; latency is the connect time.
/// - UDP: sends the config's [`payload`](HealthCheckConfig::payload) (default empty) on a
///   connected socket and waits `min(timeout / 2, 2s)` for a reply. A reply is healthy;
///   an ICMP port unreachable is unhealthy `port unreachable` (kind `refused`); silence
///   is healthy `no reply (udp)` unless
///   [`expect_reply`](HealthCheckConfig::expect_reply) is set.
///
/// `payload` and `expect_reply` apply to UDP only: with either set, a `tcp` URL is
/// rejected.
///
/// `tcp4`/`udp4` and `tcp6`/`udp6` use only addresses of that family.
#[derive(Clone, Debug)]
pub struct StreamProbe {
    timeout: Duration,
    /// The UDP datagram.
    payload: Vec<u8>,
    /// UDP silence is unhealthy.
    expect_reply: bool,
    /// `payload` or `expect_reply` was configured: only UDP URLs are accepted.
    udp_only: bool,
}

impl StreamProbe {
    /// A probe with `config`'s timeout, `payload` and `expect_reply`.
    ///
    /// Fails when `config` is invalid.
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(StreamProbe {
            timeout: config.timeout,
            payload: config.payload.clone().unwrap_or_default().into_bytes(),
            expect_reply: config.expect_reply,
            udp_only: config.payload.is_some() || config.expect_reply,
        })
    }

    /// The target of `url`, or why this probe cannot check it.
    fn target(&self, url: &Url) -> Result<StreamTarget, ConfigError> {
        let target = StreamTarget::parse(url)?;
        if self.udp_only && !target.udp {
            return Err(ConfigError::url(
                redacted(url),
                "`payload` and `expect_reply` apply to udp targets only",
            ));
        }
        Ok(target)
    }

    /// How long a UDP check waits for a reply: `min(timeout / 2, 2s)`.
    pub fn udp_wait(&self) -> Duration {
        (self.timeout / 2).min(UDP_MAX_WAIT)
    }

    async fn probe(&self, target: &StreamTarget, start: Instant) -> Result<CheckResult, Failure> {
        let resolved;
        let addrs: &[SocketAddr] = match target.ip {
            Some(ip) => &[SocketAddr::new(ip, target.port)],
            None => {
                let deadline = start + self.timeout;
                resolved = net::resolve(&target.host, target.port, target.family, deadline).await?;
                &resolved
            }
        };
        if !target.udp {
            let stream = net::connect(addrs).await?;
            drop(stream);
            return Ok(CheckResult::healthy("connected", start.elapsed()));
        }
        // A connected UDP socket talks to one address: the first of the family.
        let Some(&addr) = addrs.first() else {
            return Err(Failure::target(CheckKind::Dns, dns::NO_ANSWER));
        };
        self.udp(addr, start).await
    }

    async fn udp(&self, addr: SocketAddr, start: Instant) -> Result<CheckResult, Failure> {
        let local = if addr.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        let socket = UdpSocket::bind(local).await.map_err(|err| {
            local_failure(&err)
                .unwrap_or_else(|| Failure::checker(CheckKind::Io, format!("udp socket: {err}")))
        })?;
        // Connecting the socket is what makes the kernel report an ICMP port unreachable
        // as ECONNREFUSED on the next receive (or send).
        socket
            .connect(addr)
            .await
            .map_err(|err| udp_failure(&err))?;
        socket
            .send(&self.payload)
            .await
            .map_err(|err| udp_failure(&err))?;
        let wait = self.udp_wait();
        let mut reply = [0u8; UDP_REPLY_BUFFER];
        match tokio::time::timeout(wait, socket.recv(&mut reply)).await {
            Ok(Ok(_)) => Ok(CheckResult::healthy("reply (udp)", start.elapsed())),
            Ok(Err(err)) => Err(udp_failure(&err)),
            Err(_) if self.expect_reply => Err(Failure::target(
                CheckKind::Timeout,
                format!("no reply (udp): {}", timed_out_after(wait)),
            )),
            Err(_) => Ok(CheckResult::healthy("no reply (udp)", start.elapsed())),
        }
    }
}

#[async_trait]
impl Probe for StreamProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let target = self.target(url).map_err(|err| bad_url(&err))?;
        let start = Instant::now();
        match tokio::time::timeout_at(start + self.timeout, self.probe(&target, start)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(failure)) => failure.into_outcome(start.elapsed()),
            Err(_) => Failure::timed_out(self.timeout).into_outcome(start.elapsed()),
        }
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        self.target(url).map(drop)
    }
}

/// A UDP socket error: ECONNREFUSED here is an ICMP port unreachable.
fn udp_failure(err: &std::io::Error) -> Failure {
    if err.kind() == std::io::ErrorKind::ConnectionRefused {
        Failure::target(CheckKind::Refused, "port unreachable")
    } else {
        classify_io(err)
    }
}

/// A stream URL taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamTarget {
    udp: bool,
    family: Family,
    /// The address when the URL names one (no lookup, nothing allocated per check).
    ip: Option<IpAddr>,
    /// The name to look up otherwise (empty with `ip`).
    host: String,
    port: u16,
}

impl StreamTarget {
    pub(crate) fn parse(url: &Url) -> Result<StreamTarget, ConfigError> {
        let scheme = Scheme::of_among(url, Scheme::STREAM)?;
        let family = match scheme {
            Scheme::Tcp4 | Scheme::Udp4 => Family::V4,
            Scheme::Tcp6 | Scheme::Udp6 => Family::V6,
            _ => Family::Any,
        };
        let udp = scheme.is_udp();
        let (ip, host) = match url.host() {
            None | Some(Host::Domain("")) => {
                return Err(ConfigError::url(redacted(url), "no host"));
            }
            Some(Host::Ipv4(ip)) => (Some(IpAddr::V4(ip)), String::new()),
            Some(Host::Ipv6(ip)) => (Some(IpAddr::V6(ip)), String::new()),
            // Non-special schemes (`tcp://`) keep IPv4 literals as domains.
            Some(Host::Domain(name)) => match net::ip_literal(name) {
                Some(ip) => (Some(ip), String::new()),
                None => (None, name.to_owned()),
            },
        };
        let port = match url.port() {
            Some(0) => return Err(ConfigError::url(redacted(url), "port 0 cannot be checked")),
            Some(port) => port,
            None => {
                return Err(ConfigError::url(
                    redacted(url),
                    "a stream target needs a port (like tcp://host:5432)",
                ));
            }
        };
        if let Some(ip) = ip
            && !family.accepts(ip)
        {
            return Err(ConfigError::url(
                redacted(url),
                format!("{ip} is not an address of the {} family", url.scheme()),
            ));
        }
        Ok(StreamTarget {
            udp,
            family,
            ip,
            host,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StreamTarget, String> {
        StreamTarget::parse(&Url::parse(text).unwrap()).map_err(|err| err.to_string())
    }

    #[test]
    fn stream_urls_need_a_host_and_a_port() {
        let target = parse("udp6://[::1]:53").unwrap();
        assert_eq!((target.udp, target.family), (true, Family::V6));
        assert_eq!((target.ip, target.port), (Some("::1".parse().unwrap()), 53));
        let target = parse("tcp://127.0.0.2:80").unwrap();
        assert_eq!(target.ip, Some("127.0.0.2".parse().unwrap()));
        let target = parse("tcp://db.internal:5432").unwrap();
        assert_eq!((target.ip, target.host.as_str()), (None, "db.internal"));
        let err = parse("tcp://db.internal").unwrap_err();
        assert!(
            err.contains("tcp://db.internal") && err.contains("port"),
            "{err}"
        );
        let err = parse("tcp:db.internal").unwrap_err();
        assert!(err.contains("no host"), "{err}");
        let err = parse("tcp4://[::1]:80").unwrap_err();
        assert!(err.contains("tcp4"), "{err}");
    }

    #[test]
    fn other_schemes_are_rejected_with_the_supported_list() {
        let err = parse("sctp://host:9").unwrap_err();
        assert!(err.contains("\"sctp\""), "{err}");
        assert!(err.contains("tcp, tcp4, tcp6, udp, udp4, udp6"), "{err}");
    }

    #[test]
    fn udp_waits_half_the_timeout_at_most_two_seconds() {
        let probe = |timeout| {
            StreamProbe::try_new(&HealthCheckConfig {
                timeout,
                ..Default::default()
            })
            .unwrap()
        };
        assert_eq!(
            probe(Duration::from_millis(300)).udp_wait(),
            Duration::from_millis(150)
        );
        assert_eq!(probe(Duration::from_secs(10)).udp_wait(), UDP_MAX_WAIT);
    }
}
