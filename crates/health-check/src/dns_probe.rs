//! The DNS probe (`dns://<resolver[:port]>/<name>?type=A&expect=<regex>&rcode=NOERROR`,
//! SPEC §9.4): one query to one resolver, judged by its response code and answers.
//!
//! The query is built and read with hickory-proto's message types and sent on a socket
//! of our own: one UDP datagram (recursion desired), and, when the answer comes back
//! truncated, the same question once more over TCP. No cache, no search list, no retry
//! to another server: the check is about that resolver, now.

use std::{
    hash::{BuildHasher, Hasher},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use health_types::{
    CheckKind, CheckResult, ConfigError, HealthCheckConfig, IpFamily, Phases, Probe, ProbeError,
    Scheme, redacted,
};
use hickory_resolver::proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
};
use regex::bytes::Regex;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::Instant,
};
use url::Url;

use crate::{
    failure::{Failure, bad_url, classify_io},
    net,
    target::{Attempt, compile_regex, first_reachable, url_host},
};

/// The port a resolver is asked on when the URL names none.
pub const DNS_PORT: u16 = 53;
/// The record types a `dns://` check may ask for (`type=`, case-insensitive).
pub const DNS_RECORD_TYPES: [&str; 10] = [
    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "PTR", "CAA",
];
/// The response codes `rcode=` accepts (case-insensitive), RFC 1035 and RFC 2136 names.
const RCODES: [(&str, ResponseCode); 11] = [
    ("NOERROR", ResponseCode::NoError),
    ("FORMERR", ResponseCode::FormErr),
    ("SERVFAIL", ResponseCode::ServFail),
    ("NXDOMAIN", ResponseCode::NXDomain),
    ("NOTIMP", ResponseCode::NotImp),
    ("REFUSED", ResponseCode::Refused),
    ("YXDOMAIN", ResponseCode::YXDomain),
    ("YXRRSET", ResponseCode::YXRRSet),
    ("NXRRSET", ResponseCode::NXRRSet),
    ("NOTAUTH", ResponseCode::NotAuth),
    ("NOTZONE", ResponseCode::NotZone),
];
/// The largest UDP answer read (EDNS is not offered, so 512 bytes is what servers send;
/// a bigger buffer costs nothing and tolerates servers that send more).
const UDP_ANSWER_BUFFER: usize = 4096;
/// How much of the answers a mismatch detail lists.
const ANSWERS_SHOWN: usize = 160;

/// Checks a DNS resolver by asking it one question (`dns://` URLs).
///
/// The URL names the resolver (an address, or a name looked up on the process's
/// resolver honouring [`ip_family`](HealthCheckConfig::ip_family); port 53 unless given)
/// and the name to ask about, its path without the leading `/`. Query keys:
///
/// - `type`: the record type, one of [`DNS_RECORD_TYPES`] (case-insensitive; default
///   `A`);
/// - `expect`: a regex that the text of at least one answer record's data must match
///   (an address for A/AAAA, `10 mail.example.` for MX, the joined strings for TXT);
///   defaults to the config's [`expect`](HealthCheckConfig::expect) key;
/// - `rcode`: the response code expected (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`,
///   ...; default `NOERROR`).
///
/// The query is split on `&` and `=` and percent-decoded, nothing more: a `+` stays a
/// `+` (`expect=^10\.\d+\.` is that regex), unlike form decoding; write a space `%20`.
///
/// Verdicts: the response code differs from `rcode` → unhealthy kind `dns`, `dns: rcode
/// NXDOMAIN, expected NOERROR`; `expect` set and no answer matches → unhealthy kind
/// `dns`, `dns: no answer matches "<re>" (got: <answers>)`; otherwise healthy, detail
/// `NOERROR: 1 answer` (or `NXDOMAIN: 0 answers` when that was expected). NOERROR with
/// no answers and no `expect` is healthy: the resolver answered, which is what was
/// asked. No answer by the timeout → unhealthy `timeout`; an ICMP port unreachable from
/// the resolver → unhealthy `refused`, `dns: connection refused (port unreachable)`; a
/// refused TCP retry (after a truncated answer) → `dns: tcp: connection refused`.
/// An answer counts only when its id and its question are ours (RFC 5452); others are
/// skipped. Latency is the whole check (the resolver's name lookup included); the
/// `first_byte` phase is the time from the query sent to the answer read (`dns` is set
/// when the resolver's own name was looked up). A resolver given by name is asked at
/// its first address; when the network cannot reach that one (no route, no local
/// address of its family) the next is tried.
///
/// [`validate_url`](Probe::validate_url) checks the whole URL (resolver, name, every
/// key) and opens no socket. The regex of a URL is compiled once: the probe keeps the
/// last URL it took apart.
#[derive(Clone, Debug)]
pub struct DnsProbe {
    timeout: Duration,
    /// The config's `expect`, compiled, used when the URL has none.
    expect: Option<Regex>,
    ip_family: IpFamily,
    /// The last URL taken apart, and what it gave.
    last: Arc<Mutex<Option<LastTarget>>>,
}

/// A URL and what it gave taken apart.
type LastTarget = (Url, Arc<DnsTarget>);

/// A `dns://` URL taken apart.
#[derive(Clone, Debug)]
struct DnsTarget {
    /// The resolver's address when the URL names one.
    ip: Option<IpAddr>,
    /// The resolver's name otherwise.
    host: String,
    port: u16,
    name: Name,
    record_type: RecordType,
    expect: Option<Regex>,
    rcode: ResponseCode,
}

impl DnsProbe {
    /// A probe with `config`'s `timeout`, `expect` and `ip_family`.
    ///
    /// Fails when `config` is invalid.
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(DnsProbe {
            timeout: config.timeout,
            expect: config
                .expect
                .as_deref()
                .map(|pattern| compile_regex("expect", pattern, None))
                .transpose()?,
            ip_family: config.ip_family,
            last: Arc::default(),
        })
    }

    /// The target of `url`, from the last one when it is the same URL.
    fn cached_target(&self, url: &Url) -> Result<Arc<DnsTarget>, ConfigError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, target)) = &*last
            && seen == url
        {
            return Ok(target.clone());
        }
        let target = Arc::new(self.target(url)?);
        *last = Some((url.clone(), target.clone()));
        Ok(target)
    }

    fn target(&self, url: &Url) -> Result<DnsTarget, ConfigError> {
        let invalid = |reason: String| ConfigError::url(redacted(url), reason);
        Scheme::of_among(url, &[Scheme::Dns])?;
        let (ip, host) = url_host(url)
            .ok_or_else(|| invalid("no resolver (like dns://192.0.2.53/example.com)".to_owned()))?
            .split();
        if let Some(ip) = ip {
            net::check_family(url, ip, self.ip_family)?;
        }
        let port = match url.port() {
            Some(0) => return Err(invalid("port 0 cannot be checked".to_owned())),
            Some(port) => port,
            None => DNS_PORT,
        };
        let path = url.path().trim_start_matches('/');
        let path = percent_decode(path).ok_or_else(|| {
            invalid(format!(
                "the name {path:?} is not valid percent-encoded UTF-8"
            ))
        })?;
        if path.is_empty() {
            return Err(invalid(
                "no name to ask about (like dns://192.0.2.53/example.com)".to_owned(),
            ));
        }
        let mut name = Name::from_utf8(&path)
            .map_err(|err| invalid(format!("{path:?} is not a DNS name: {err}")))?;
        // The name is asked as written: never completed from a search list.
        name.set_fqdn(true);
        let mut record_type = RecordType::A;
        let mut expect = None;
        let mut rcode = ResponseCode::NoError;
        for (key, value) in query_pairs(url.query().unwrap_or_default()) {
            let (Some(key), Some(value)) = (percent_decode(key), percent_decode(value)) else {
                return Err(invalid(format!(
                    "the query pair {key:?}={value:?} is not valid percent-encoded UTF-8"
                )));
            };
            match &*key {
                "type" => {
                    record_type = DNS_RECORD_TYPES
                        .iter()
                        .find(|t| t.eq_ignore_ascii_case(&value))
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(|| ConfigError::Invalid {
                            key: "type",
                            value: format!("{value:?} in {}", redacted(url)),
                            reason: format!(
                                "expected a record type: {}",
                                DNS_RECORD_TYPES.join(", ")
                            ),
                        })?;
                }
                "expect" => expect = Some(compile_regex("expect", &value, Some(url))?),
                "rcode" => {
                    rcode = RCODES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(&value))
                        .map(|(_, code)| *code)
                        .ok_or_else(|| ConfigError::Invalid {
                            key: "rcode",
                            value: format!("{value:?} in {}", redacted(url)),
                            reason: format!(
                                "expected a response code: {}",
                                RCODES.map(|(n, _)| n).join(", ")
                            ),
                        })?;
                }
                other => {
                    return Err(invalid(format!(
                        "unknown key {other:?} (dns:// URLs take type, expect and rcode)"
                    )));
                }
            }
        }
        Ok(DnsTarget {
            ip,
            host,
            port,
            name,
            record_type,
            expect: expect.or_else(|| self.expect.clone()),
            rcode,
        })
    }

    async fn probe(&self, target: &DnsTarget, start: Instant) -> Result<CheckResult, Failure> {
        let deadline = start + self.timeout;
        let mut phases = Phases::default();
        let resolved;
        let servers: &[SocketAddr] = match target.ip {
            Some(ip) => &[SocketAddr::new(ip, target.port)],
            None => {
                resolved = net::resolve(&target.host, target.port, self.ip_family.into(), deadline)
                    .await?;
                phases.dns = Some(start.elapsed());
                &resolved
            }
        };
        let id = query_id();
        let question = Query::query(target.name.clone(), target.record_type);
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(question.clone());
        let bytes = query.to_vec().map_err(|err| {
            Failure::checker(
                CheckKind::Internal,
                format!("dns: query not encoded: {err}"),
            )
        })?;
        let sent = Instant::now();
        let (socket, server) = first_reachable(servers, |server| udp_send(server, &bytes)).await?;
        let mut answer = udp_answer(&socket, id, &question).await?;
        if answer.metadata.truncation {
            answer = tcp_exchange(server, &bytes, id, &question).await?;
        }
        phases.first_byte = Some(sent.elapsed());
        let rcode = answer.metadata.response_code;
        if rcode != target.rcode {
            return Err(Failure::target(
                CheckKind::Dns,
                format!(
                    "dns: rcode {}, expected {}",
                    rcode_name(rcode),
                    rcode_name(target.rcode)
                ),
            ));
        }
        let texts: Vec<String> = answer
            .answers
            .iter()
            .map(|record| record.data.to_string())
            .collect();
        if let Some(expect) = &target.expect
            && !texts.iter().any(|text| expect.is_match(text.as_bytes()))
        {
            let mut got = texts.join(", ");
            if got.is_empty() {
                got.push_str("no answers");
            }
            let got = health_types::truncate(&got, ANSWERS_SHOWN);
            return Err(Failure::target(
                CheckKind::Dns,
                format!("dns: no answer matches {:?} (got: {got})", expect.as_str()),
            ));
        }
        let count = texts.len();
        let plural = if count == 1 { "" } else { "s" };
        Ok(CheckResult::healthy(
            format!("{}: {count} answer{plural}", rcode_name(rcode)),
            start.elapsed(),
        )
        .with_phases(phases))
    }
}

#[async_trait]
impl Probe for DnsProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let target = self.cached_target(url).map_err(|err| bad_url(&err))?;
        let start = Instant::now();
        crate::failure::within(self.timeout, start, self.probe(&target, start)).await
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        self.cached_target(url).map(drop)
    }
}

/// The RFC name of `code` (`NOERROR`, `NXDOMAIN`), or its number.
fn rcode_name(code: ResponseCode) -> String {
    RCODES.iter().find(|(_, c)| *c == code).map_or_else(
        || format!("RCODE{}", u16::from(code)),
        |(n, _)| (*n).to_owned(),
    )
}

/// A query id no one on the path can guess from the previous ones.
fn query_id() -> u16 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    // Truncation intended: 16 random bits of the 64.
    hasher.finish() as u16
}

/// Sends `query` to `server` on a connected UDP socket of its own; a failure the
/// network gives before anything is sent (no route, no local address) lets the caller
/// try the resolver's next address.
async fn udp_send(server: SocketAddr, query: &[u8]) -> Result<(UdpSocket, SocketAddr), Attempt> {
    let socket = crate::target::udp_connected(server, "dns: ", udp_failure).await?;
    socket
        .send(query)
        .await
        .map_err(|err| Attempt::io(&err, udp_failure))?;
    Ok((socket, server))
}

/// Reads answers on `socket` until one carries `id` and `question` (RFC 5452).
async fn udp_answer(socket: &UdpSocket, id: u16, question: &Query) -> Result<Message, Failure> {
    let mut buf = vec![0u8; UDP_ANSWER_BUFFER];
    // Bounded by the check's deadline: a datagram that is not our answer (a stale one,
    // a spoofed one, garbage) is skipped.
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|err| udp_failure(&err))?;
        if let Ok(answer) = Message::from_vec(&buf[..n])
            && is_our_answer(&answer, id, question)
        {
            return Ok(answer);
        }
    }
}

/// Whether `answer` answers our query: a response with its id and, as its only
/// question, ours (names compare case-insensitively).
fn is_our_answer(answer: &Message, id: u16, question: &Query) -> bool {
    answer.metadata.id == id
        && answer.metadata.message_type == MessageType::Response
        && answer.queries.len() == 1
        && answer.queries[0] == *question
}

/// Asks again over TCP (RFC 7766 framing: a two-byte length before each message).
async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> Result<Message, Failure> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|err| tcp_failure(&err))?;
    let len = u16::try_from(query.len())
        .map_err(|_| Failure::checker(CheckKind::Internal, "dns: query longer than 64 KiB"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .await
        .map_err(|err| tcp_failure(&err))?;
    let len = stream.read_u16().await.map_err(|err| tcp_failure(&err))?;
    let mut buf = vec![0u8; usize::from(len)];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|err| tcp_failure(&err))?;
    match Message::from_vec(&buf) {
        Ok(answer) if is_our_answer(&answer, id, question) => Ok(answer),
        Ok(_) => Err(Failure::target(
            CheckKind::Protocol,
            "dns: the answer over tcp is for another query",
        )),
        Err(err) => Err(Failure::target(
            CheckKind::Protocol,
            format!("dns: bad answer over tcp: {err}"),
        )),
    }
}

/// A UDP socket error talking to the resolver: ECONNREFUSED is an ICMP port
/// unreachable.
fn udp_failure(err: &std::io::Error) -> Failure {
    if err.kind() == std::io::ErrorKind::ConnectionRefused {
        return Failure::target(
            CheckKind::Refused,
            "dns: connection refused (port unreachable)",
        );
    }
    classify_io(err)
}

/// A TCP error talking to the resolver (the retry of a truncated answer): as for any
/// TCP connection, prefixed `dns: tcp: `.
fn tcp_failure(err: &std::io::Error) -> Failure {
    let mut failure = classify_io(err);
    if failure.kind != CheckKind::Local {
        failure.detail = format!("dns: tcp: {}", failure.detail);
    }
    failure
}

/// The `key=value` pairs of a query, split on `&` and the first `=`, not decoded (a
/// key without `=` has an empty value; empty pairs are skipped).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// `text` with its `%XX` escapes decoded, or `None` when that is not UTF-8 or an escape
/// is malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn target(url: &str) -> Result<DnsTarget, String> {
        let probe = DnsProbe::try_new(&HealthCheckConfig::default()).unwrap();
        probe
            .target(&Url::parse(url).unwrap())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn urls_name_resolver_name_and_keys() {
        let t = target("dns://127.0.0.1/example.com").unwrap();
        assert_eq!((t.ip, t.port), (Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), 53));
        assert_eq!(t.name.to_ascii(), "example.com.");
        assert_eq!(
            (t.record_type, t.rcode),
            (RecordType::A, ResponseCode::NoError)
        );
        let t = target("dns://[::1]:5353/example.com?type=txt&expect=^v%3Dspf1&rcode=nxdomain")
            .unwrap();
        assert_eq!(
            (t.ip, t.port),
            (Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), 5353)
        );
        assert_eq!(
            (t.record_type, t.rcode),
            (RecordType::TXT, ResponseCode::NXDomain)
        );
        assert_eq!(t.expect.unwrap().as_str(), "^v=spf1");
        let t = target("dns://ns.internal/x.test").unwrap();
        assert_eq!((t.ip, t.host.as_str()), (None, "ns.internal"));
    }

    #[test]
    fn bad_urls_name_what_is_wrong() {
        for (url, needle) in [
            ("dns://127.0.0.1/", "no name"),
            ("dns://127.0.0.1", "no name"),
            ("dns:///example.com", "no resolver"),
            ("dns://127.0.0.1/example.com?type=AXFR", "`type`"),
            ("dns://127.0.0.1/example.com?expect=(", "`expect`"),
            ("dns://127.0.0.1/example.com?rcode=OK", "`rcode`"),
            ("dns://127.0.0.1/example.com?tpye=A", "\"tpye\""),
            ("dns://127.0.0.1:0/example.com", "port 0"),
            ("dns://127.0.0.1/a..b", "not a DNS name"),
        ] {
            let err = target(url).unwrap_err();
            assert!(err.contains(needle), "{url}: {err}");
            assert!(
                err.contains("127.0.0.1") || url.contains(":///"),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn a_plus_in_the_query_stays_a_plus() {
        let t = target(r"dns://127.0.0.1/x.test?expect=^10\.\d+\.").unwrap();
        assert_eq!(t.expect.unwrap().as_str(), r"^10\.\d+\.");
        let t = target("dns://127.0.0.1/x.test?expect=a%20b%2Bc+d&type=TXT").unwrap();
        assert_eq!(t.expect.unwrap().as_str(), "a b+c+d");
        assert_eq!(t.record_type, RecordType::TXT);
        let pairs: Vec<_> = query_pairs("a=1&&b&c=x=y").collect();
        assert_eq!(pairs, [("a", "1"), ("b", ""), ("c", "x=y")]);
        let err = target("dns://127.0.0.1/x.test?expect=%ff").unwrap_err();
        assert!(err.contains("percent-encoded"), "{err}");
    }

    #[test]
    fn the_config_expect_is_the_default_and_compiled_once() {
        let probe = DnsProbe::try_new(&HealthCheckConfig {
            expect: Some("^192\\.".to_owned()),
            ..Default::default()
        })
        .unwrap();
        let url = Url::parse("dns://127.0.0.1/x.test").unwrap();
        let first = probe.cached_target(&url).unwrap();
        assert_eq!(first.expect.as_ref().unwrap().as_str(), "^192\\.");
        assert!(Arc::ptr_eq(&first, &probe.cached_target(&url).unwrap()));
        let other = Url::parse("dns://127.0.0.1/x.test?expect=y").unwrap();
        assert_eq!(
            probe
                .cached_target(&other)
                .unwrap()
                .expect
                .as_ref()
                .unwrap()
                .as_str(),
            "y"
        );
    }

    #[test]
    fn an_answer_counts_only_with_our_id_and_question() {
        let name = Name::from_ascii("web.test.").unwrap();
        let question = Query::query(name.clone(), RecordType::A);
        let answer = |id, q: Query| {
            let mut m = Message::new(id, MessageType::Response, OpCode::Query);
            m.add_query(q);
            m
        };
        assert!(is_our_answer(&answer(7, question.clone()), 7, &question));
        // Names compare case-insensitively (0x20 randomisation stays possible).
        let upper = Query::query(Name::from_ascii("WEB.test.").unwrap(), RecordType::A);
        assert!(is_our_answer(&answer(7, upper), 7, &question));
        assert!(!is_our_answer(&answer(8, question.clone()), 7, &question));
        let other = Query::query(Name::from_ascii("evil.test.").unwrap(), RecordType::A);
        assert!(!is_our_answer(&answer(7, other), 7, &question));
        let aaaa = Query::query(name, RecordType::AAAA);
        assert!(!is_our_answer(&answer(7, aaaa), 7, &question));
        let none = Message::new(7, MessageType::Response, OpCode::Query);
        assert!(!is_our_answer(&none, 7, &question));
        let query = Message::new(7, MessageType::Query, OpCode::Query);
        assert!(!is_our_answer(&query, 7, &question));
    }

    #[test]
    fn rcodes_have_their_rfc_names() {
        assert_eq!(rcode_name(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_name(ResponseCode::Unknown(23)), "RCODE23");
        assert_eq!(percent_decode("a%2Eb"), Some("a.b".to_owned()));
        assert_eq!(percent_decode("a%2"), None);
    }
}
