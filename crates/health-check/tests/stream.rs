//! StreamProbe (TCP and UDP) and FileProbe against loopback sockets and temp files.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{net::SocketAddr, time::Duration};

use health_check::{FileProbe, StreamProbe};
use health_types::{CheckKind, CheckResult, Probe};
use support::{closed_port, config};
use tokio::{
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
