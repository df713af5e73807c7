//! TCP and UDP probes: `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6` (SPEC §5, §9.4).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use async_trait::async_trait;
use health_types::{
    CheckKind, CheckResult, ConfigError, HealthCheckConfig, IpFamily, Phases, Probe, ProbeError,
    Scheme, redacted, timed_out_after,
};
use regex::bytes::Regex;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::Instant,
};
use url::Url;

use crate::{
    failure::{Failure, bad_url, classify_io},
    net::{self, Family},
    target::{Attempt, compile_regex, first_reachable, url_host},
};

/// The longest a UDP check waits for a reply.
pub const UDP_MAX_WAIT: Duration = Duration::from_secs(2);
/// The largest reply read when nothing is matched against it; a longer datagram is
/// cut, which is fine for a health check.
const UDP_REPLY_BUFFER: usize = 2048;
/// The most of a reply (a TCP stream, or one UDP datagram) that `expect` is matched
/// against.
pub const MAX_REPLY: usize = 64 * 1024;
/// The most of a reply a mismatch detail shows, escaped.
const EXCERPT: usize = 80;
/// How long a TCP peer may pause before what it sent so far is matched, even though
/// the reply has not doubled since the last match ([`Scans`]).
const IDLE_SCAN: Duration = Duration::from_millis(50);

/// Checks stream targets: a TCP connect (and an optional exchange), or a UDP datagram and
/// its answer.
///
/// - TCP: the connect succeeding is healthy; latency is the connect time. As HAProxy's
///   checks do, the handshake is left half-open (on Linux the final ACK is held back)
///   and the connection is closed at once with a reset (`SO_LINGER` 0): the peer's
///   kernel answering proves the port open, its application never accepts (or logs)
///   the check, and no `TIME_WAIT` socket stays behind. With
///   [`payload`](HealthCheckConfig::payload), the payload is sent once connected;
///   with [`expect`](HealthCheckConfig::expect), the reply (or, without a payload,
///   the server's greeting: an SMTP or SSH banner) is read until the regex matches,
///   the peer closes, [`MAX_REPLY`] bytes came or the timeout passes. A match is
///   healthy `reply matches "<re>"`; anything else that came is unhealthy kind `body`
///   `reply does not match "<re>" (got: "<escaped excerpt>")`; nothing at all by the
///   timeout is kind `timeout`. A payload without `expect` is healthy once written.
/// - UDP: sends the config's [`payload`](HealthCheckConfig::payload) (default empty) on a
///   connected socket and waits `min(timeout / 2, 2s)` for a reply. A reply is healthy;
///   an ICMP port unreachable is unhealthy `port unreachable` (kind `refused`); silence
///   is healthy `no reply (udp)` unless
///   [`expect_reply`](HealthCheckConfig::expect_reply) or `expect` is set. With
///   `expect`, the reply datagram (its first [`MAX_REPLY`] bytes) must match, else kind
///   `body`.
///
/// `expect_reply` applies to UDP only: with it set, a `tcp` URL is rejected.
///
/// `tcp4`/`udp4` and `tcp6`/`udp6` use only addresses of that family; with `tcp`/`udp`,
/// [`ip_family`](HealthCheckConfig::ip_family) narrows the addresses used.
#[derive(Clone, Debug)]
pub struct StreamProbe {
    timeout: Duration,
    /// The UDP datagram, or the bytes sent on a TCP connection (`None`: nothing sent on
    /// TCP, an empty datagram on UDP).
    payload: Option<Vec<u8>>,
    /// What the reply must match.
    expect: Option<Regex>,
    /// UDP silence is unhealthy.
    expect_reply: bool,
    /// The configured address family.
    ip_family: IpFamily,
}

impl StreamProbe {
    /// A probe with `config`'s timeout, `payload`, `expect`, `expect_reply` and
    /// `ip_family`.
    ///
    /// Fails when `config` is invalid (a bad `expect` regex among others).
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let expect = config
            .expect
            .as_deref()
            .map(|pattern| compile_regex("expect", pattern, None))
            .transpose()?;
        Ok(StreamProbe {
            timeout: config.timeout,
            payload: config.payload.clone().map(String::into_bytes),
            expect,
            expect_reply: config.expect_reply,
            ip_family: config.ip_family,
        })
    }

    /// The target of `url`, or why this probe cannot check it.
    fn target(&self, url: &Url) -> Result<StreamTarget, ConfigError> {
        let mut target = StreamTarget::parse(url)?;
        if self.expect_reply && !target.udp {
            return Err(ConfigError::url(
                redacted(url),
                "`expect_reply` applies to udp targets only (a tcp check with `expect` reads the reply)",
            ));
        }
        if target.family == Family::Any {
            target.family = self.ip_family.into();
            if let Some(ip) = target.ip {
                net::check_family(url, ip, self.ip_family)?;
            }
        }
        Ok(target)
    }

    /// How long a UDP check waits for a reply: `min(timeout / 2, 2s)`.
    pub fn udp_wait(&self) -> Duration {
        (self.timeout / 2).min(UDP_MAX_WAIT)
    }

    async fn probe(&self, target: &StreamTarget, start: Instant) -> Result<CheckResult, Failure> {
        let deadline = start + self.timeout;
        let mut phases = Phases::default();
        let resolved;
        let addrs: &[SocketAddr] = match target.ip {
            Some(ip) => &[SocketAddr::new(ip, target.port)],
            None => {
                resolved = net::resolve(&target.host, target.port, target.family, deadline).await?;
                phases.dns = Some(start.elapsed());
                &resolved
            }
        };
        if !target.udp {
            let connecting = Instant::now();
            let connect_only = self.payload.is_none() && self.expect.is_none();
            let handshake = if connect_only {
                net::Handshake::HalfOpen
            } else {
                net::Handshake::Full
            };
            let stream = net::connect_until_with(addrs, deadline, handshake).await?;
            phases.connect = Some(connecting.elapsed());
            if connect_only {
                // Closed with a reset (SO_LINGER 0), as HAProxy closes its checks: the
                // half-open handshake never completes on the peer's side, no FIN is
                // exchanged, and no TIME_WAIT socket stays on this side for 60 s (100k
                // monitors at 10 s would otherwise keep 600k of them and the ephemeral
                // ports they hold). A failure to set it only means a normal close.
                let _ = stream.set_zero_linger();
                drop(stream);
                return Ok(CheckResult::healthy("connected", start.elapsed()).with_phases(phases));
            }
            return self.exchange(stream, start, deadline, phases).await;
        }
        // A connected UDP socket talks to one address: the first of the family that the
        // network can reach.
        let setup = Instant::now();
        let (socket, sent) = first_reachable(addrs, |addr| self.udp_send(addr)).await?;
        phases.connect = Some(sent.saturating_duration_since(setup));
        self.udp_reply(&socket, sent, start, phases).await
    }

    /// The TCP exchange: sends the payload, then reads until `expect` matches.
    async fn exchange(
        &self,
        mut stream: TcpStream,
        start: Instant,
        deadline: Instant,
        mut phases: Phases,
    ) -> Result<CheckResult, Failure> {
        let _ = stream.set_nodelay(true);
        let sent = Instant::now();
        if let Some(payload) = &self.payload {
            stream
                .write_all(payload)
                .await
                .map_err(|err| classify_io(&err))?;
        }
        let Some(expect) = &self.expect else {
            return Ok(
                CheckResult::healthy("connected (payload sent)", start.elapsed())
                    .with_phases(phases),
            );
        };
        let mut scans = Scans::default();
        match read_reply(&mut stream, expect, sent, deadline, &mut phases, &mut scans).await? {
            None => Ok(self.reply_matches(expect, start, phases)),
            Some(reply) if reply.is_empty() => Err(Failure::timed_out(self.timeout)),
            Some(reply) => Err(mismatch(expect, &reply)),
        }
    }

    /// The healthy result of a reply that matched.
    fn reply_matches(&self, expect: &Regex, start: Instant, phases: Phases) -> CheckResult {
        CheckResult::healthy(
            format!("reply matches {:?}", expect.as_str()),
            start.elapsed(),
        )
        .with_phases(phases)
    }

    /// A UDP socket connected to `addr` with the payload sent, and when it was sent; a
    /// failure the network gives before anything leaves (no route, no local address of
    /// the family) lets the caller try the next address.
    async fn udp_send(&self, addr: SocketAddr) -> Result<(UdpSocket, Instant), Attempt> {
        let socket = crate::target::udp_connected(addr, "", udp_failure).await?;
        let sent = Instant::now();
        socket
            .send(self.payload.as_deref().unwrap_or_default())
            .await
            .map_err(|err| Attempt::io(&err, udp_failure))?;
        Ok((socket, sent))
    }

    /// Waits for the reply to a datagram sent at `sent`.
    async fn udp_reply(
        &self,
        socket: &UdpSocket,
        sent: Instant,
        start: Instant,
        mut phases: Phases,
    ) -> Result<CheckResult, Failure> {
        let wait = self.udp_wait();
        // Without `expect` a small buffer on the stack does: the reply is not looked at.
        let mut small = [0u8; UDP_REPLY_BUFFER];
        let mut large;
        let reply: &mut [u8] = if self.expect.is_some() {
            large = vec![0u8; MAX_REPLY];
            &mut large
        } else {
            &mut small
        };
        match tokio::time::timeout(wait, socket.recv(reply)).await {
            Ok(Ok(n)) => {
                phases.first_byte = Some(sent.elapsed());
                match &self.expect {
                    Some(expect) if !expect.is_match(&reply[..n]) => {
                        Err(mismatch(expect, &reply[..n]))
                    }
                    Some(expect) => Ok(self.reply_matches(expect, start, phases)),
                    None => Ok(
                        CheckResult::healthy("reply (udp)", start.elapsed()).with_phases(phases)
                    ),
                }
            }
            Ok(Err(err)) => Err(udp_failure(&err)),
            Err(_) if self.expect_reply || self.expect.is_some() => Err(Failure::target(
                CheckKind::Timeout,
                format!("no reply (udp): {}", timed_out_after(wait)),
            )),
            Err(_) => {
                Ok(CheckResult::healthy("no reply (udp)", start.elapsed()).with_phases(phases))
            }
        }
    }
}

/// Reads a TCP reply until `expect` matches (`None`), or the peer closes or resets,
/// [`MAX_REPLY`] bytes came or `deadline` passes: then the reply that did not match
/// (empty when nothing came by the deadline). An error before any byte is a failure.
async fn read_reply<R: AsyncRead + Unpin>(
    stream: &mut R,
    expect: &Regex,
    sent: Instant,
    deadline: Instant,
    phases: &mut Phases,
    scans: &mut Scans,
) -> Result<Option<Vec<u8>>, Failure> {
    let mut reply = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let matched = |scans: &mut Scans, reply: &[u8]| {
        scans.record(reply.len());
        expect.is_match(reply)
    };
    // Bounded: every round reads at least one byte (at most MAX_REPLY are kept), or
    // ends an idle pause with a scan (which leaves nothing pending), or ends the loop.
    let ended = loop {
        let room = (MAX_REPLY - reply.len()).min(chunk.len());
        if room == 0 {
            break "64 KiB read";
        }
        // What came and was not matched yet is matched when the peer pauses.
        let pending = reply.len() > scans.last;
        let until = if pending {
            (Instant::now() + IDLE_SCAN).min(deadline)
        } else {
            deadline
        };
        match tokio::time::timeout_at(until, stream.read(&mut chunk[..room])).await {
            Err(_) if until < deadline => {
                if matched(scans, &reply) {
                    return Ok(None);
                }
            }
            Err(_) => break "timed out",
            Ok(Ok(0)) => break "closed",
            Ok(Ok(n)) => {
                if reply.is_empty() {
                    phases.first_byte = Some(sent.elapsed());
                }
                reply.extend_from_slice(&chunk[..n]);
                if scans.due(reply.len()) && matched(scans, &reply) {
                    return Ok(None);
                }
            }
            Ok(Err(err)) if reply.is_empty() => return Err(classify_io(&err)),
            Ok(Err(_)) => break "reset",
        }
    };
    // Once more on all that came: the last bytes may not have been matched yet.
    if reply.len() > scans.last && matched(scans, &reply) {
        return Ok(None);
    }
    tracing::debug!(
        ended,
        bytes = reply.len(),
        scans = scans.count,
        "tcp reply did not match"
    );
    Ok(Some(reply))
}

/// When a TCP reply is matched again as it grows: each time it has at least doubled
/// since the last match, so a reply of `n` bytes is scanned about `log2(n)` times (not
/// once per read, which a peer trickling bytes would make quadratic); plus once after
/// each pause of the peer ([`IDLE_SCAN`]) and once at the end.
#[derive(Debug, Default)]
struct Scans {
    /// The reply's length at the last scan.
    last: usize,
    /// How many scans ran.
    count: usize,
}

impl Scans {
    /// Whether a reply grown to `len` is due a scan.
    fn due(&self, len: usize) -> bool {
        len > self.last && len >= self.last.saturating_mul(2)
    }

    fn record(&mut self, len: usize) {
        self.last = len;
        self.count += 1;
    }
}

/// The failure of a reply that does not match `expect`: kind `body`, with a short
/// escaped excerpt of what came.
fn mismatch(expect: &Regex, reply: &[u8]) -> Failure {
    Failure::target(
        CheckKind::Body,
        format!(
            "reply does not match {:?} (got: \"{}\")",
            expect.as_str(),
            excerpt(reply)
        ),
    )
}

/// The first [`EXCERPT`] bytes of `reply`, escaped (`\r\n`, `\x00`), `…` when cut.
pub(crate) fn excerpt(reply: &[u8]) -> String {
    let mut text = reply[..reply.len().min(EXCERPT)].escape_ascii().to_string();
    if reply.len() > EXCERPT {
        text.push('…');
    }
    text
}

#[async_trait]
impl Probe for StreamProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let target = self.target(url).map_err(|err| bad_url(&err))?;
        let start = Instant::now();
        crate::failure::within(self.timeout, start, self.probe(&target, start)).await
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
        let (ip, host) = url_host(url)
            .ok_or_else(|| ConfigError::url(redacted(url), "no host"))?
            .split();
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
    fn a_trickled_reply_is_scanned_a_logarithmic_number_of_times() {
        let mut scans = Scans::default();
        // 64 KiB arriving one byte per read.
        for len in 1..=MAX_REPLY {
            if scans.due(len) {
                scans.record(len);
            }
        }
        assert_eq!(scans.count, 17, "1, 2, 4, ... 65536");
        assert!(!scans.due(MAX_REPLY));
        assert!(scans.due(2 * MAX_REPLY));
    }

    /// A peer that hands over its bytes one per read, then closes.
    struct Trickle(std::collections::VecDeque<u8>);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(byte) = self.0.pop_front() {
                buf.put_slice(&[byte]);
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_reply_read_a_byte_at_a_time_is_scanned_log_n_times() {
        let expect = Regex::new("[A-Z]{3}$").unwrap();
        let run = |bytes: Vec<u8>| {
            let expect = expect.clone();
            async move {
                let mut scans = Scans::default();
                let mut phases = Phases::default();
                let now = Instant::now();
                let got = read_reply(
                    &mut Trickle(bytes.into()),
                    &expect,
                    now,
                    now + Duration::from_secs(30),
                    &mut phases,
                    &mut scans,
                )
                .await
                .unwrap();
                (got, scans.count)
            }
        };
        let mut bytes = vec![b'x'; 60 * 1024];
        bytes.extend_from_slice(b"END");
        let (got, count) = run(bytes).await;
        // 1, 2, 4, ... 32768 as it grows, then the last bytes at the close.
        assert_eq!((got, count), (None, 17));
        // 64 KiB and more: cut, never matched, scanned 17 times.
        let (got, count) = run(vec![b'x'; 100 * 1024]).await;
        assert_eq!((got.map(|reply| reply.len()), count), (Some(MAX_REPLY), 17));
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
