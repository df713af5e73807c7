//! StreamProbe (TCP and UDP) and FileProbe against loopback sockets and temp files.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{net::SocketAddr, time::Duration};

use health_check::{FileProbe, StreamProbe};
use health_types::{CheckKind, CheckResult, Probe};
use support::{closed_port, config, raw_server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    sync::mpsc,
    time::Instant,
};
use url::Url;

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

/// A stream probe with a `timeout_ms` timeout; `udp` sets the datagram and whether a
/// reply is required.
fn stream_probe(timeout_ms: u64, udp: Option<(&str, bool)>) -> StreamProbe {
    let mut config = config(timeout_ms);
    if let Some((payload, expect_reply)) = udp {
        config.payload = Some(payload.to_owned());
        config.expect_reply = expect_reply;
    }
    StreamProbe::try_new(&config).unwrap()
}

async fn check(probe: &dyn Probe, url: &Url) -> CheckResult {
    probe.check(url).await.expect("the target could be checked")
}

#[tokio::test]
async fn tcp_connect_is_healthy_and_a_closed_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let probe = stream_probe(1000, None);
    for scheme in ["tcp", "tcp4"] {
        let result = check(&probe, &url(&format!("{scheme}://{open}"))).await;
        assert!(result.healthy, "{scheme}: {result:?}");
        assert_eq!(
            (result.kind, result.detail.as_str()),
            (CheckKind::Ok, "connected")
        );
    }
    let closed = closed_port("127.0.0.1:0").await;
    let result = check(&probe, &url(&format!("tcp://{closed}"))).await;
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Refused, "connection refused")
    );
}

/// A plain connect check leaves the handshake half-open and resets it (as HAProxy's
/// checks do): the port answered, so it is healthy, but the server's application never
/// accepts it. The next ordinary connection is the first one `accept` returns.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_connect_check_never_reaches_the_servers_accept() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let probe = stream_probe(1000, None);
    for _ in 0..3 {
        let result = check(&probe, &url(&format!("tcp://{open}"))).await;
        assert!(result.healthy, "{result:?}");
    }
    let ordinary = tokio::net::TcpStream::connect(open).await.unwrap();
    let (_accepted, peer) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the ordinary connection is accepted")
        .unwrap();
    assert_eq!(
        peer,
        ordinary.local_addr().unwrap(),
        "no check was queued before it"
    );
}

/// A connect check with a payload completes the handshake: the server accepts it and
/// reads what was sent.
#[tokio::test]
async fn a_connect_check_with_a_payload_is_accepted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let mut config = config(1000);
    config.payload = Some("PING\r\n".to_owned());
    let probe = StreamProbe::try_new(&config).unwrap();
    let server = tokio::spawn(async move {
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 6];
        accepted.read_exact(&mut buf).await.unwrap();
        buf
    });
    let result = check(&probe, &url(&format!("tcp://{open}"))).await;
    assert!(result.healthy, "{result:?}");
    let got = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"PING\r\n");
}

#[tokio::test]
async fn tcp6_and_ipv6_literals_are_checked() {
    let listener = TcpListener::bind("[::1]:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let probe = stream_probe(1000, None);
    for scheme in ["tcp", "tcp6"] {
        let result = check(&probe, &url(&format!("{scheme}://{open}"))).await;
        assert!(result.healthy, "{scheme}: {result:?}");
    }
    // `localhost` resolves to both families; tcp4 only tries 127.0.0.1, where nothing
    // listens on this port.
    let result = check(&probe, &url(&format!("tcp4://localhost:{}", open.port()))).await;
    assert_eq!(result.kind, CheckKind::Refused, "{result:?}");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_unhealthy_dns() {
    let probe = stream_probe(3000, None);
    let result = check(&probe, &url("tcp://no-such-host.invalid:5432")).await;
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Dns, "dns: no such host")
    );
}

/// A UDP socket that answers every datagram with `pong` and reports what it received.
async fn udp_responder(bind: &str) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let responder = UdpSocket::bind(bind).await.unwrap();
    let addr = responder.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        // Bounded: a test sends a handful of datagrams.
        for _ in 0..16 {
            let Ok((n, peer)) = responder.recv_from(&mut buf).await else {
                return;
            };
            let _ = tx.send(buf[..n].to_vec());
            let _ = responder.send_to(b"pong", peer).await;
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn udp_with_a_responder_is_healthy_and_gets_the_payload() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let (target, mut received) = udp_responder(bind).await;
        let scheme = if target.is_ipv4() { "udp4" } else { "udp6" };
        let probe = stream_probe(1000, Some(("ping", true)));
        let result = check(&probe, &url(&format!("{scheme}://{target}"))).await;
        assert!(result.healthy, "{bind}: {result:?}");
        assert_eq!(result.detail, "reply (udp)");
        assert_eq!(received.recv().await.unwrap(), b"ping");
    }
}

#[tokio::test]
async fn udp_to_a_closed_port_is_port_unreachable() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let closed = socket.local_addr().unwrap();
    drop(socket);
    let probe = stream_probe(1000, None);
    let started = Instant::now();
    let result = check(&probe, &url(&format!("udp://{closed}"))).await;
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Refused, "port unreachable")
    );
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn udp_silence_is_healthy_unless_a_reply_is_expected() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = url(&format!("udp://{}", silent.local_addr().unwrap()));
    // timeout 400 ms: the probe waits min(400 ms / 2, 2 s) = 200 ms.
    let probe = stream_probe(400, None);
    assert_eq!(probe.udp_wait(), Duration::from_millis(200));
    let started = Instant::now();
    let result = check(&probe, &target).await;
    let elapsed = started.elapsed();
    assert!(result.healthy, "{result:?}");
    assert_eq!(result.detail, "no reply (udp)");
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(400),
        "{elapsed:?}"
    );
    let strict = stream_probe(400, Some(("", true)));
    let result = check(&strict, &target).await;
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::Timeout),
        "{result:?}"
    );
    assert!(result.detail.starts_with("no reply (udp)"), "{result:?}");
    drop(silent);
}

/// A TCP probe with `payload` and `expect` and a `timeout_ms` timeout.
fn exchange_probe(timeout_ms: u64, payload: Option<&str>, expect: &str) -> StreamProbe {
    let mut config = config(timeout_ms);
    config.payload = payload.map(str::to_owned);
    config.expect = Some(expect.to_owned());
    StreamProbe::try_new(&config).unwrap()
}

/// A TCP server that reads up to one line and answers `+PONG` to `PING`, `-ERR` to
/// anything else.
async fn pong_server() -> support::Server {
    raw_server("127.0.0.1:0", |mut stream| async move {
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        let reply: &[u8] = if buf[..n].starts_with(b"PING") {
            b"+PONG\r\n"
        } else {
            b"-ERR unknown command\r\n"
        };
        let _ = stream.write_all(reply).await;
    })
    .await
}

#[tokio::test]
async fn tcp_payload_and_expect_match_the_reply() {
    let server = pong_server().await;
    let target = server.url("tcp");
    let probe = exchange_probe(1000, Some("PING\r\n"), r"^\+PONG");
    let result = check(&probe, &target).await;
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (true, CheckKind::Ok, r#"reply matches "^\\+PONG""#)
    );
    assert!(result.phases.connect.is_some() && result.phases.first_byte.is_some());

    let wrong = exchange_probe(1000, Some("HELLO\r\n"), r"^\+PONG");
    let result = check(&wrong, &target).await;
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::Body),
        "{result:?}"
    );
    assert_eq!(
        result.detail,
        r#"reply does not match "^\\+PONG" (got: "-ERR unknown command\r\n")"#
    );
}

#[tokio::test]
async fn a_banner_is_matched_without_a_payload() {
    let server = raw_server("127.0.0.1:0", |mut stream| async move {
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        // Keeps the connection open (as a real server waits for the client's banner).
        let mut buf = [0u8; 16];
        let _ = stream.read(&mut buf).await;
    })
    .await;
    let target = server.url("tcp");
    let result = check(&exchange_probe(1000, None, "^SSH-2\\.0-"), &target).await;
    assert!(result.healthy, "{result:?}");
    let started = Instant::now();
    let result = check(&exchange_probe(500, None, "^220 "), &target).await;
    assert_eq!((result.healthy, result.kind), (false, CheckKind::Body));
    assert!(
        result
            .detail
            .contains(r#"(got: "SSH-2.0-OpenSSH_9.6\r\n")"#),
        "{result:?}"
    );
    // Read until the timeout (the server keeps the line open), and not past it.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = raw_server("127.0.0.1:0", |mut stream| async move {
        let mut buf = [0u8; 64];
        // Reads, never answers, until the client goes.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
    let started = Instant::now();
    let result = check(
        &exchange_probe(300, Some("PING\r\n"), "PONG"),
        &server.url("tcp"),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Timeout, "timed out after 300ms")
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(700),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_long_reply_is_cut_at_64_kib_and_escaped() {
    // The server writes without end (up to 16 MiB, the test's budget) and never closes
    // by itself: only the 64 KiB cut can end the check before its timeout.
    let server = raw_server("127.0.0.1:0", |mut stream| async move {
        let junk = vec![0u8; 4096];
        for _ in 0..4096 {
            if stream.write_all(&junk).await.is_err() {
                return;
            }
        }
        let _ = stream.read(&mut [0u8; 1]).await;
    })
    .await;
    let started = Instant::now();
    let result = check(&exchange_probe(10_000, None, "never"), &server.url("tcp")).await;
    let elapsed = started.elapsed();
    assert_eq!((result.healthy, result.kind), (false, CheckKind::Body));
    assert!(
        result.detail.contains(r#"(got: "\x00\x00"#) && result.detail.ends_with("…\")"),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "not cut: {elapsed:?}");
}

#[tokio::test]
async fn a_trickled_reply_matches_as_soon_as_the_peer_pauses() {
    // 60 KiB one byte per write, then the match, then the peer waits.
    let server = raw_server("127.0.0.1:0", |mut stream| async move {
        let _ = stream.set_nodelay(true);
        for _ in 0..60 * 1024 {
            if stream.write_all(b"x").await.is_err() {
                return;
            }
        }
        if stream.write_all(b"END").await.is_ok() {
            let _ = stream.read(&mut [0u8; 1]).await;
        }
    })
    .await;
    // A class, not a literal: no prefilter makes a full scan cheap.
    let probe = exchange_probe(20_000, None, "[A-Z]{3}$");
    let started = Instant::now();
    let result = check(&probe, &server.url("tcp")).await;
    let elapsed = started.elapsed();
    assert_eq!(
        (result.healthy, result.detail.as_str()),
        (true, r#"reply matches "[A-Z]{3}$""#),
        "{result:?}"
    );
    // Generous: the trickle itself takes well under a second; the peer then waits, so
    // only the scan after its pause (not the timeout, not the close) can end the check.
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
}

#[tokio::test]
async fn udp_expect_applies_to_the_reply_and_needs_one() {
    let (target, _received) = udp_responder("127.0.0.1:0").await;
    let target = url(&format!("udp://{target}"));
    let udp = |expect: &str| {
        let mut config = config(1000);
        config.payload = Some("ping".to_owned());
        config.expect = Some(expect.to_owned());
        StreamProbe::try_new(&config).unwrap()
    };
    let result = check(&udp("^pong$"), &target).await;
    assert_eq!(
        (result.healthy, result.detail.as_str()),
        (true, r#"reply matches "^pong$""#)
    );
    let result = check(&udp("^PONG"), &target).await;
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (
            false,
            CheckKind::Body,
            r#"reply does not match "^PONG" (got: "pong")"#
        )
    );
    // Silence with `expect` is a timeout even without `expect_reply`.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let result = check(
        &udp("pong"),
        &url(&format!("udp://{}", silent.local_addr().unwrap())),
    )
    .await;
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::Timeout),
        "{result:?}"
    );
}

#[tokio::test]
async fn expect_reply_on_tcp_is_a_config_error_and_payload_is_not() {
    let strict = stream_probe(1000, Some(("", true)));
    let err = strict.validate_url(&url("tcp://127.0.0.1:1")).unwrap_err();
    assert!(err.to_string().contains("udp targets only"), "{err}");
    let mut config = config(1000);
    config.payload = Some("x".to_owned());
    let probe = StreamProbe::try_new(&config).unwrap();
    assert!(probe.validate_url(&url("tcp://127.0.0.1:1")).is_ok());
    config.expect = Some("(".to_owned());
    let err = StreamProbe::try_new(&config).unwrap_err().to_string();
    assert!(err.contains("expect"), "{err}");
}

#[tokio::test]
async fn a_present_path_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let file = support::write_file(dir.path(), "index.html", "hi");
    let probe = FileProbe::try_new(&config(1000)).unwrap();
    for path in [dir.path(), file.as_path()] {
        let target = Url::from_file_path(path).unwrap();
        let result = check(&probe, &target).await;
        assert!(result.healthy, "{path:?}: {result:?}");
    }
}

#[tokio::test]
async fn a_missing_path_is_unhealthy_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let target = Url::from_file_path(dir.path().join("missing")).unwrap();
    let probe = FileProbe::try_new(&config(1000)).unwrap();
    let result = check(&probe, &target).await;
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::NotFound),
        "{result:?}"
    );
    assert!(result.detail.contains("missing"), "{result:?}");
}

#[tokio::test]
async fn an_io_error_is_an_error_not_an_unhealthy_result() {
    // A path through a regular file fails with ENOTDIR, even for root.
    let dir = tempfile::tempdir().unwrap();
    let file = support::write_file(dir.path(), "plain", "x");
    let target = Url::from_file_path(file.join("below")).unwrap();
    let probe = FileProbe::try_new(&config(1000)).unwrap();
    let err = probe.check(&target).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Io, "{err}");
    assert!(err.detail().contains("below"), "{err}");
}
