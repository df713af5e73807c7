//! The serving loop over real loopback sockets, with small limits and real time: each
//! deadline closes what it should and nothing else, and the cap closes the connection
//! past it at once.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use bytes::Bytes;
use health_types::test_util::self_signed;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{Activity, Expiry, Limits, is_connection_error, serve};

/// How long any one wait of these tests may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(10);
/// A chunk of the slow answer, and the pause before each.
const SLOW_CHUNKS: usize = 3;
const SLOW_PAUSE: Duration = Duration::from_millis(250);

fn limits(header: u64, idle: u64, max_connections: usize) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(header),
        idle_timeout: Duration::from_millis(idle),
        max_connections,
        ..Limits::default()
    }
}

fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                let (sender, body) = http_body_util::channel::Channel::<Bytes>::new(1);
                tokio::spawn(async move {
                    let mut sender = sender;
                    for _ in 0..SLOW_CHUNKS {
                        tokio::time::sleep(SLOW_PAUSE).await;
                        if sender.send_data(Bytes::from_static(b"x")).await.is_err() {
                            return;
                        }
                    }
                });
                Body::new(body)
            }),
        )
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(limits: Limits, tls: Option<TlsAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, tls, app(), limits, stop.clone()));
    Server { addr, stop, task }
}

/// Sends a keep-alive GET of `path` and reads its answer whole; returns the status line
/// and the body (the body is either sized or chunked).
async fn exchange(stream: &mut TcpStream, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::timeout(HANG, read_answer(stream))
        .await
        .expect("an answer in time")
}

async fn read_answer(stream: &mut TcpStream) -> (String, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let status = head.lines().next().unwrap_or_default().to_owned();
        let lower = head.to_ascii_lowercase();
        if lower.contains("transfer-encoding: chunked") {
            if body.ends_with("0\r\n\r\n") {
                let payload = body
                    .split("\r\n")
                    .skip(1)
                    .step_by(2)
                    .collect::<Vec<_>>()
                    .concat();
                return (status, payload);
            }
            continue;
        }
        let length: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if body.len() >= length {
            return (status, body.to_owned());
        }
    }
}

/// Waits for the server to close `stream` (end of file or reset) and returns how long
/// that took; fails when it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after {within:?}");
    started.elapsed()
}

/// Whether `stream` stays open (no data, no end) for `for_at_least`.
async fn stays_open(stream: &mut TcpStream, for_at_least: Duration) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(for_at_least, stream.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = start(limits(300, 60_000, 8), None).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let took = closed_within(&mut silent, HANG).await;
    assert!(took >= Duration::from_millis(250), "closed early: {took:?}");
    // One byte of a request head is not a request either.
    let mut one_byte = TcpStream::connect(server.addr).await.unwrap();
    one_byte.write_all(b"G").await.unwrap();
    let took = closed_within(&mut one_byte, HANG).await;
    assert!(took >= Duration::from_millis(250), "closed early: {took:?}");
    server.stop.cancel();
}

#[tokio::test]
async fn a_later_request_head_sent_in_part_is_cut_after_the_header_timeout() {
    let server = start(limits(300, 60_000, 8), None).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (status, body) = exchange(&mut stream, "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "ok");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut stream, HANG).await;
    assert!(took >= Duration::from_millis(250), "closed early: {took:?}");
    server.stop.cancel();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lasts_the_idle_timeout_not_the_header_timeout() {
    let server = start(limits(200, 1_000, 8), None).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    exchange(&mut stream, "/healthz").await;
    // Well past the header timeout, the idle connection is still open and answers.
    assert!(stays_open(&mut stream, Duration::from_millis(500)).await);
    let (status, _) = exchange(&mut stream, "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let idle_from = Instant::now();
    closed_within(&mut stream, HANG).await;
    // Measured from the client's side, which reads the answer a little after the
    // server is done with it; either way far beyond the 200 ms header timeout.
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(600),
        "closed after {idle:?} idle"
    );
    server.stop.cancel();
}

#[tokio::test]
async fn an_answer_in_flight_is_not_cut_by_either_timeout() {
    // The slow answer takes 750 ms; both timeouts are shorter.
    let server = start(limits(200, 200, 8), None).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (status, body) = exchange(&mut stream, "/slow").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "x".repeat(SLOW_CHUNKS));
    // Then it is idle, and closed.
    closed_within(&mut stream, HANG).await;
    server.stop.cancel();
}

#[tokio::test]
async fn past_the_cap_a_connection_is_closed_at_once_and_the_server_serves_again_later() {
    let server = start(limits(30_000, 60_000, 2), None).await;
    // Two connections, each proven accepted by an answer, hold the two places.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        exchange(&mut stream, "/healthz").await;
        held.push(stream);
    }
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let took = closed_within(&mut third, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The held ones still work.
    for stream in &mut held {
        let (status, _) = exchange(stream, "/healthz").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    drop(held);
    // Once they are gone (the server notices their end), new ones are served.
    let deadline = Instant::now() + HANG;
    loop {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(HANG, stream.read_buf(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop.cancel();
}

#[tokio::test]
async fn a_tls_client_that_sends_nothing_is_closed_after_the_handshake_timeout() {
    let tls = TlsAcceptor::from(self_signed().server_config(&[], None));
    let mut limits = limits(60_000, 60_000, 8);
    limits.tls_handshake_timeout = Duration::from_millis(300);
    let server = start(limits, Some(tls)).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let took = closed_within(&mut silent, HANG).await;
    assert!(took >= Duration::from_millis(250), "closed early: {took:?}");
    server.stop.cancel();
}

#[tokio::test]
async fn each_request_carries_its_client_address() {
    let server = start(Limits::default(), None).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (_, body) = exchange(&mut stream, "/peer").await;
    assert_eq!(body, stream.local_addr().unwrap().to_string());
    server.stop.cancel();
}

#[tokio::test]
async fn stop_ends_the_loop_and_its_idle_connections() {
    let server = start(Limits::default(), None).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    exchange(&mut idle, "/healthz").await;
    server.stop.cancel();
    tokio::time::timeout(HANG, server.task)
        .await
        .expect("the loop ends")
        .unwrap();
    closed_within(&mut idle, HANG).await;
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[test]
fn the_deadline_follows_the_connection_s_state() {
    let limits = limits(10_000, 60_000, 1);
    let opened = Instant::now();
    let activity = Arc::new(Activity::new(opened));
    let header = Duration::from_secs(10);
    let idle = Duration::from_secs(60);
    // No request yet: the header timeout from the start, bytes or not.
    assert_eq!(
        activity.deadline(&limits),
        Some((opened + header, Expiry::Header))
    );
    activity.bytes_read(opened + Duration::from_secs(3));
    assert_eq!(
        activity.deadline(&limits),
        Some((opened + header, Expiry::Header))
    );
    // In flight: none.
    let first = activity.request_started(hyper::Version::HTTP_11);
    assert_eq!(activity.deadline(&limits), None);
    activity.bytes_read(Instant::now());
    assert_eq!(activity.deadline(&limits), None);
    drop(first);
    // Idle: the idle timeout from the end of the last request.
    let (at, expiry) = activity.deadline(&limits).unwrap();
    assert_eq!(expiry, Expiry::Idle);
    assert!(at >= opened + idle, "{at:?}");
    // A new head begun: the header timeout from its first byte.
    let first_byte = Instant::now() + Duration::from_secs(5);
    activity.bytes_read(first_byte);
    assert_eq!(
        activity.deadline(&limits),
        Some((first_byte + header, Expiry::Header))
    );
    // On HTTP/2, bytes between requests are frames, not heads.
    let h2 = Arc::new(Activity::new(opened));
    drop(h2.request_started(hyper::Version::HTTP_2));
    h2.bytes_read(Instant::now());
    assert_eq!(h2.deadline(&limits).map(|(_, e)| e), Some(Expiry::Idle));
}

#[cfg(target_os = "linux")]
#[test]
fn only_a_failure_of_the_one_connection_is_retried_at_once() {
    use std::io::{Error, ErrorKind};
    for kind in [
        ErrorKind::ConnectionAborted,
        ErrorKind::ConnectionReset,
        ErrorKind::ConnectionRefused,
        ErrorKind::Interrupted,
    ] {
        assert!(is_connection_error(&Error::from(kind)), "{kind:?}");
    }
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the process is short of something; back off.
    for errno in [24, 23, 105, 12] {
        assert!(
            !is_connection_error(&Error::from_raw_os_error(errno)),
            "{errno}"
        );
    }
}
