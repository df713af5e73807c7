//! DnsProbe (`dns://`) against a scripted DNS server on loopback (UDP, and TCP for the
//! answers too big for a datagram), written with hickory-proto's message types.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use health_check::{DnsProbe, build_probe};
use health_types::{CheckKind, CheckResult, HealthCheckConfig, Probe, Target};
use hickory_resolver::proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, MX, TXT},
    },
};
use support::config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    time::Instant,
};
use url::Url;

/// How the server answers one (name, type).
#[derive(Clone, Debug)]
enum Answer {
    /// NOERROR with these records.
    Records(Vec<RData>),
    /// This response code, no records.
    Code(ResponseCode),
    /// Over UDP: NOERROR, no records, the truncation bit set; over TCP: these records.
    Truncated(Vec<RData>),
}

type Script = Arc<HashMap<(String, RecordType), Answer>>;

/// A DNS server on loopback, UDP and TCP on one port; a question not in the script
/// gets NXDOMAIN.
struct Server {
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn reply(query: &Message, script: &Script, tcp: bool) -> Message {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let question = query.queries[0].clone();
    reply.add_query(question.clone());
    let key = (
        question.name().to_ascii().trim_end_matches('.').to_owned(),
        question.query_type(),
    );
    let records = match script.get(&key) {
        None => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            return reply;
        }
        Some(Answer::Code(code)) => {
            reply.metadata.response_code = *code;
            return reply;
        }
        Some(Answer::Truncated(_)) if !tcp => {
            reply.metadata.truncation = true;
            return reply;
        }
        Some(Answer::Records(records) | Answer::Truncated(records)) => records,
    };
    for data in records {
        reply.add_answer(Record::from_rdata(
            question.name().clone(),
            60,
            data.clone(),
        ));
    }
    reply
}

async fn dns_server(script: Vec<(&str, RecordType, Answer)>) -> Server {
    let script: Script = Arc::new(
        script
            .into_iter()
            .map(|(name, kind, answer)| ((name.to_owned(), kind), answer))
            .collect(),
    );
    // TCP on the UDP socket's port; another process may hold it, so a few tries.
    let (udp, tcp) = 'bind: {
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break 'bind (udp, tcp);
            }
        }
        panic!("no loopback port free for both UDP and TCP");
    };
    let addr = udp.local_addr().unwrap();
    let udp_script = script.clone();
    let udp_task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let bytes = reply(&query, &udp_script, false).to_vec().unwrap();
            let _ = udp.send_to(&bytes, peer).await;
        }
    });
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let len = stream.read_u16().await.unwrap();
                let mut buf = vec![0u8; usize::from(len)];
                stream.read_exact(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf).unwrap();
                let bytes = reply(&query, &script, true).to_vec().unwrap();
                let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                stream.write_all(&framed).await.unwrap();
            });
        }
    });
    Server {
        addr,
        tasks: vec![udp_task, tcp_task],
    }
}

fn txt(text: &str) -> RData {
    RData::TXT(TXT::new(vec![text.to_owned()]))
}

async fn scripted() -> Server {
    dns_server(vec![
        (
            "web.test",
            RecordType::A,
            Answer::Records(vec![
                RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
                RData::A(A(Ipv4Addr::new(192, 0, 2, 8))),
            ]),
        ),
        (
            "web.test",
            RecordType::AAAA,
            Answer::Records(vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))]),
        ),
        (
            "web.test",
            RecordType::TXT,
            Answer::Records(vec![txt("v=spf1 -all"), txt("owner=ops")]),
        ),
        (
            "web.test",
            RecordType::MX,
            Answer::Records(vec![RData::MX(MX::new(
                10,
                Name::from_str("mail.web.test.").unwrap(),
            ))]),
        ),
        ("empty.test", RecordType::A, Answer::Records(vec![])),
        (
            "broken.test",
            RecordType::A,
            Answer::Code(ResponseCode::ServFail),
        ),
        (
            "big.test",
            RecordType::TXT,
            Answer::Truncated(vec![txt(&"x".repeat(200)), txt("big=yes")]),
        ),
    ])
    .await
}

fn probe(timeout_ms: u64) -> DnsProbe {
    DnsProbe::try_new(&config(timeout_ms)).unwrap()
}

async fn check(server: &Server, rest: &str) -> CheckResult {
    let url = Url::parse(&format!("dns://{}/{rest}", server.addr)).unwrap();
    probe(2000).validate_url(&url).unwrap();
    probe(2000)
        .check(&url)
        .await
        .expect("the resolver could be asked")
}

fn verdict(result: &CheckResult) -> (bool, CheckKind, &str) {
    (result.healthy, result.kind, result.detail.as_str())
}

#[tokio::test]
async fn an_a_record_that_matches_is_healthy() {
    let server = scripted().await;
    let result = check(&server, "web.test").await;
    assert_eq!(
        verdict(&result),
        (true, CheckKind::Ok, "NOERROR: 2 answers")
    );
    let result = check(&server, "web.test?type=a&expect=^192\\.0\\.2\\.8$").await;
    assert_eq!(
        verdict(&result),
        (true, CheckKind::Ok, "NOERROR: 2 answers")
    );
    assert!(result.phases.first_byte.is_some() && result.phases.connect.is_none());
    let result = check(&server, "web.test?expect=^10\\.").await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Dns,
            "dns: no answer matches \"^10\\\\.\" (got: 192.0.2.7, 192.0.2.8)"
        )
    );
}

#[tokio::test]
async fn aaaa_and_mx_records_are_asked_by_type() {
    let server = scripted().await;
    let result = check(&server, "web.test?type=AAAA&expect=^::1$").await;
    assert_eq!(verdict(&result), (true, CheckKind::Ok, "NOERROR: 1 answer"));
    let result = check(&server, "web.test?type=mx&expect=^10 mail\\.web\\.test\\.$").await;
    assert!(result.healthy, "{result:?}");
}

#[tokio::test]
async fn txt_records_match_or_not() {
    let server = scripted().await;
    let result = check(&server, "web.test?type=TXT&expect=^v%3Dspf1").await;
    assert!(result.healthy, "{result:?}");
    let result = check(&server, "web.test?type=TXT&expect=owner=dev").await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Dns,
            "dns: no answer matches \"owner=dev\" (got: v=spf1 -all, owner=ops)"
        )
    );
}

#[tokio::test]
async fn response_codes_are_judged_against_the_expected_one() {
    let server = scripted().await;
    let result = check(&server, "missing.test").await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Dns,
            "dns: rcode NXDOMAIN, expected NOERROR"
        )
    );
    let result = check(&server, "missing.test?rcode=NXDOMAIN").await;
    assert_eq!(
        verdict(&result),
        (true, CheckKind::Ok, "NXDOMAIN: 0 answers")
    );
    let result = check(&server, "web.test?rcode=nxdomain").await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Dns,
            "dns: rcode NOERROR, expected NXDOMAIN"
        )
    );
    let result = check(&server, "broken.test").await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Dns,
            "dns: rcode SERVFAIL, expected NOERROR"
        )
    );
}

#[tokio::test]
async fn noerror_without_answers_is_healthy_unless_something_is_expected() {
    let server = scripted().await;
    let result = check(&server, "empty.test").await;
    assert_eq!(
        verdict(&result),
        (true, CheckKind::Ok, "NOERROR: 0 answers")
    );
    let result = check(&server, "empty.test?expect=.").await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Dns,
            "dns: no answer matches \".\" (got: no answers)"
        )
    );
}

#[tokio::test]
async fn a_truncated_answer_is_asked_again_over_tcp() {
    let server = scripted().await;
    let result = check(&server, "big.test?type=TXT&expect=^big=yes$").await;
    assert_eq!(
        verdict(&result),
        (true, CheckKind::Ok, "NOERROR: 2 answers")
    );
}

#[tokio::test]
async fn a_silent_resolver_times_out_and_a_closed_port_is_refused() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("dns://{}/web.test", silent.local_addr().unwrap())).unwrap();
    let started = Instant::now();
    let result = probe(300).check(&url).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        verdict(&result),
        (false, CheckKind::Timeout, "timed out after 300ms")
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(800),
        "{elapsed:?}"
    );
    // Nothing listens on 127.0.0.3 at a port this test holds on 127.0.0.1 (without
    // SO_REUSEADDR no one can bind it on the wildcard meanwhile): the ICMP port
    // unreachable comes back at once.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let url = Url::parse(&format!("dns://127.0.0.3:{port}/web.test")).unwrap();
    let result = probe(1000).check(&url).await.unwrap();
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Refused,
            "dns: connection refused (port unreachable)"
        )
    );
    drop(held);
}

#[tokio::test]
async fn a_refused_tcp_retry_is_not_called_a_port_unreachable() {
    // UDP answers truncated; the same TCP port is bound, never listening: refused.
    let script: Script = Arc::new(HashMap::from([(
        ("big.test".to_owned(), RecordType::TXT),
        Answer::Truncated(vec![txt("big=yes")]),
    )]));
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    if let Err(err) = tcp.bind(addr) {
        println!("skipped: tcp port {addr} taken by another process: {err}");
        return;
    }
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let query = Message::from_vec(&buf[..n]).unwrap();
            let bytes = reply(&query, &script, false).to_vec().unwrap();
            let _ = udp.send_to(&bytes, peer).await;
        }
    });
    let url = Url::parse(&format!("dns://{addr}/big.test?type=TXT")).unwrap();
    let result = probe(1000).check(&url).await.unwrap();
    task.abort();
    assert_eq!(
        verdict(&result),
        (false, CheckKind::Refused, "dns: tcp: connection refused")
    );
    drop(tcp);
}

#[tokio::test]
async fn a_plus_in_expect_is_a_regex_plus() {
    let server = scripted().await;
    // `+` decoded as a space would make this `^192\.0\.2\.\d $`: no match.
    let result = check(&server, "web.test?expect=^192\\.0\\.2\\.\\d+$").await;
    assert_eq!(
        verdict(&result),
        (true, CheckKind::Ok, "NOERROR: 2 answers")
    );
}

#[test]
fn bad_urls_are_config_errors_naming_the_url_or_key() {
    let probe = probe(1000);
    for (url, needles) in [
        (
            "dns://127.0.0.1:53/",
            &["dns://127.0.0.1:53/", "no name"][..],
        ),
        (
            "dns://127.0.0.1/example.com?type=ANY",
            &["`type`", "\"ANY\"", "A, AAAA, CNAME"],
        ),
        (
            "dns://127.0.0.1/example.com?expect=(x",
            &["`expect`", "regex"],
        ),
        (
            "dns://127.0.0.1/example.com?rcode=FINE",
            &["`rcode`", "NXDOMAIN"],
        ),
        ("dns://127.0.0.1/example.com?class=IN", &["\"class\""]),
        ("dns:///example.com", &["no resolver"]),
    ] {
        let err = probe
            .validate_url(&Url::parse(url).unwrap())
            .unwrap_err()
            .to_string();
        for needle in needles {
            assert!(err.contains(needle), "{url}: {err}");
        }
        // The same through the one way in.
        let built = build_probe(
            &HealthCheckConfig::default(),
            &Target::Url(Url::parse(url).unwrap()),
        );
        assert!(built.is_err(), "{url}");
    }
}

#[tokio::test]
async fn a_bad_url_given_to_check_is_a_config_error() {
    let err = probe(1000)
        .check(&Url::parse("dns://127.0.0.1/").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), CheckKind::Config, "{err}");
}
