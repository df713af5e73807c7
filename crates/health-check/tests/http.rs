//! HttpProbe and H2cProbe against scripted loopback servers: statuses, requests sent,
//! hostile upstreams, TLS, HTTP/2 and connection reuse.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).
#![cfg(feature = "http")]

mod support;

use std::{sync::Arc, time::Duration};

use health_check::{H2cProbe, HttpClient, HttpClientConfig, HttpProbe, USER_AGENT_VALUE};
use health_types::{
    CheckKind, CheckResult, ExpectedStatus, HealthCheckConfig, Method, Probe, StatusRange,
};
use http::Version;
use support::{
    Handler, black_hole, canned, closed_port, config, http_server, ok_handler, raw_server,
    read_head, respond, trickle, write,
};
use tokio::{io::AsyncWriteExt, sync::mpsc, time::Instant};
use url::Url;

/// A handler answering the status named by the first path segment (`/503/` → 503).
fn status_by_path() -> Handler {
    Arc::new(|request| {
        let code = request
            .uri()
            .path()
            .trim_matches('/')
            .parse()
            .unwrap_or(200);
        let mut response = respond(code, "body");
        if code == 301 {
            response
                .headers_mut()
                .insert("location", http::HeaderValue::from_static("/elsewhere"));
        }
        response
    })
}

async fn check(probe: &dyn Probe, url: &Url) -> CheckResult {
    probe.check(url).await.expect("the target could be checked")
}

/// Every request `server` saw was HTTP/2, on one connection.
#[track_caller]
fn assert_one_http2_connection(server: &support::Server) {
    let seen = server.seen();
    assert!(
        seen.iter().all(|s| s.version == Version::HTTP_2),
        "{seen:?}"
    );
    assert_eq!(server.connections(), 1);
}

/// `result` is unhealthy with `kind`.
#[track_caller]
fn assert_unhealthy(result: &CheckResult, kind: CheckKind) {
    assert!(!result.healthy, "{result:?}");
    assert_eq!(result.kind, kind, "{result:?}");
}

/// The result of `probe` against a server that answers `response` to any request.
async fn check_canned(probe: &dyn Probe, scheme: &str, response: &'static [u8]) -> CheckResult {
    let server = canned("127.0.0.1:0", response).await;
    check(probe, &server.url(scheme)).await
}

#[tokio::test]
async fn success_and_client_errors_are_healthy_server_errors_unhealthy_with_the_status() {
    let server = http_server("127.0.0.1:0", None, status_by_path()).await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    for (code, healthy, kind, detail) in [
        (200, true, CheckKind::Ok, "HTTP 200 OK"),
        (204, true, CheckKind::Ok, "HTTP 204 No Content"),
        (301, true, CheckKind::Ok, "HTTP 301 Moved Permanently"),
        (404, true, CheckKind::Ok, "HTTP 404 Not Found"),
        (
            500,
            false,
            CheckKind::Status,
            "HTTP 500 Internal Server Error",
        ),
        (502, false, CheckKind::Status, "HTTP 502 Bad Gateway"),
        (
            503,
            false,
            CheckKind::Status,
            "HTTP 503 Service Unavailable",
        ),
        (504, false, CheckKind::Status, "HTTP 504 Gateway Timeout"),
    ] {
        let result = check(&probe, &server.url_with("http", &format!("/{code}"))).await;
        assert_eq!(result.healthy, healthy, "{code}: {result:?}");
        assert_eq!((result.kind, result.detail.as_str()), (kind, detail));
        if healthy {
            assert!(result.latency > Duration::ZERO);
        }
    }
    // The redirect was not followed: one request per check.
    assert_eq!(server.seen().len(), 8);
}

#[tokio::test]
async fn expected_status_ranges_decide() {
    let server = http_server("127.0.0.1:0", None, status_by_path()).await;
    let probe = HttpProbe::try_new(&HealthCheckConfig {
        expected_status: Some(ExpectedStatus(vec![
            StatusRange {
                low: 200,
                high: 299,
            },
            StatusRange {
                low: 404,
                high: 404,
            },
        ])),
        ..config(2000)
    })
    .unwrap();
    for (code, healthy) in [
        (200, true),
        (204, true),
        (404, true),
        (301, false),
        (500, false),
    ] {
        let result = check(&probe, &server.url_with("http", &format!("/{code}"))).await;
        assert_eq!(result.healthy, healthy, "{code}: {result:?}");
    }
    let only_5xx = HttpProbe::try_new(&HealthCheckConfig {
        expected_status: Some(ExpectedStatus(vec![StatusRange {
            low: 500,
            high: 599,
        }])),
        ..config(2000)
    })
    .unwrap();
    assert!(
        check(&only_5xx, &server.url_with("http", "/503"))
            .await
            .healthy
    );
    assert!(
        !check(&only_5xx, &server.url_with("http", "/200"))
            .await
            .healthy
    );
}

#[tokio::test]
async fn head_and_get_are_sent_as_configured() {
    let server = http_server("127.0.0.1:0", None, ok_handler()).await;
    for method in [Method::Head, Method::Get] {
        let probe = HttpProbe::try_new(&HealthCheckConfig {
            method,
            ..config(2000)
        })
        .unwrap();
        assert!(check(&probe, &server.url("http")).await.healthy);
    }
    let methods: Vec<String> = server.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

#[tokio::test]
async fn the_path_is_joined_onto_the_base_path_with_its_query() {
    let server = http_server("127.0.0.1:0", None, ok_handler()).await;
    let cases = [
        ("/api", "/health?full=1", "/api/health?full=1"),
        ("/api/", "/health", "/api/health"),
        ("", "/", "/"),
        ("/", "/status?a=1&b=2", "/status?a=1&b=2"),
        ("/base?token=x", "/health", "/base/health?token=x"),
    ];
    for (base, path, _) in cases {
        let probe = HttpProbe::try_new(&HealthCheckConfig {
            path: path.to_owned(),
            ..config(2000)
        })
        .unwrap();
        assert!(check(&probe, &server.url_with("http", base)).await.healthy);
    }
    let uris: Vec<String> = server.seen().into_iter().map(|s| s.uri).collect();
    let want: Vec<&str> = cases.iter().map(|(_, _, want)| *want).collect();
    assert_eq!(uris, want);
}

#[tokio::test]
async fn exactly_the_spec_headers_and_the_configured_ones_are_sent() {
    let server = http_server("127.0.0.1:0", None, ok_handler()).await;
    let probe = HttpProbe::try_new(&HealthCheckConfig {
        headers: [("X-Probe".to_owned(), "yes".to_owned())].into(),
        ..config(2000)
    })
    .unwrap();
    assert!(check(&probe, &server.url("http")).await.healthy);
    let mut headers = server.seen()[0].headers.clone();
    headers.sort();
    let host = server.addr.to_string();
    let mut want = vec![
        ("accept", "text/plain,text/html,*/*;q=0.8"),
        ("accept-encoding", "identity"),
        ("cache-control", "no-cache"),
        ("host", host.as_str()),
        ("user-agent", USER_AGENT_VALUE),
        ("x-probe", "yes"),
    ];
    want.sort();
    let want: Vec<(String, String)> = want
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(headers, want);
    assert_eq!(
        USER_AGENT_VALUE,
        concat!("healthd/", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn a_refused_connection_is_unhealthy() {
    let addr = closed_port("127.0.0.1:0").await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &Url::parse(&format!("http://{addr}/")).unwrap()).await;
    assert!(!result.healthy);
    assert_eq!(
        (result.kind, result.detail.as_str()),
        (CheckKind::Refused, "connection refused")
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_unhealthy_dns() {
    let probe = HttpProbe::try_new(&config(3000)).unwrap();
    let result = check(&probe, &Url::parse("http://no-such-host.invalid/").unwrap()).await;
    assert!(!result.healthy);
    assert_eq!(
        (result.kind, result.detail.as_str()),
        (CheckKind::Dns, "dns: no such host")
    );
}

/// Asserts that `result` is the probe's own timeout, reached on time.
fn assert_cut_at(result: &CheckResult, started: Instant, timeout_ms: u64) {
    let elapsed = started.elapsed();
    assert_unhealthy(result, CheckKind::Timeout);
    assert_eq!(result.detail, format!("timed out after {timeout_ms}ms"));
    assert!(elapsed >= Duration::from_millis(timeout_ms), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(timeout_ms + 1000),
        "the check overran its timeout: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_black_hole_is_cut_at_the_timeout() {
    // Accepts, never reads, never answers.
    let server = black_hole("127.0.0.1:0").await;
    let probe = HttpProbe::try_new(&config(300)).unwrap();
    let started = Instant::now();
    let result = check(&probe, &server.url("http")).await;
    assert_cut_at(&result, started, 300);
}

#[tokio::test]
async fn slow_headers_are_cut_at_the_timeout() {
    // One header line every 50 ms, for at most 10 s.
    let server = trickle("127.0.0.1:0", b"HTTP/1.1 200 OK\r\n", |i| {
        format!("X-Slow-{i}: x\r\n").into_bytes()
    })
    .await;
    let probe = HttpProbe::try_new(&config(300)).unwrap();
    let started = Instant::now();
    let result = check(&probe, &server.url("http")).await;
    assert_cut_at(&result, started, 300);
}

#[tokio::test]
async fn an_endless_body_is_drained_to_64_kib_then_dropped() {
    let (done, mut written) = mpsc::unbounded_channel();
    let server = raw_server("127.0.0.1:0", move |mut stream| {
        let done = done.clone();
        async move {
            read_head(&mut stream).await;
            write(
                &mut stream,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await;
            let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
            let mut total = 0usize;
            // Bounded: 1 GiB, far more than any socket buffer holds.
            while total < (1 << 30) {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                total += 0x4000;
            }
            let _ = done.send(total);
        }
    })
    .await;
    let probe = HttpProbe::try_new(&config(3000)).unwrap();
    let started = Instant::now();
    let result = check(&probe, &server.url("http")).await;
    assert!(result.healthy, "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The probe dropped the connection: the server's writes failed soon after.
    let total = tokio::time::timeout(Duration::from_secs(2), written.recv())
        .await
        .expect("the server noticed the closed connection")
        .expect("the server reports");
    assert!(total < 64 << 20, "the server wrote {total} bytes");
}

#[tokio::test]
async fn a_trickling_body_is_cut_at_the_timeout() {
    let server = trickle(
        "127.0.0.1:0",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        |_| b"1\r\nx\r\n".to_vec(),
    )
    .await;
    let probe = HttpProbe::try_new(&config(300)).unwrap();
    let started = Instant::now();
    let result = check(&probe, &server.url("http")).await;
    assert_cut_at(&result, started, 300);
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_protocol_failure() {
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    let result = check_canned(
        &probe,
        "http",
        b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02garbage\r\n\r\n",
    )
    .await;
    assert!(!result.healthy);
    assert_eq!(result.kind, CheckKind::Protocol, "{result:?}");
    assert!(result.detail.starts_with("protocol: "), "{result:?}");
}

/// A server that answers `partial` to each request, then resets the connection.
async fn resetting(partial: &'static [u8]) -> support::Server {
    raw_server("127.0.0.1:0", move |mut stream| async move {
        read_head(&mut stream).await;
        write(&mut stream, partial).await;
        // SO_LINGER 0: closing sends RST instead of FIN.
        let _ = stream.set_zero_linger();
        drop(stream);
    })
    .await
}

#[tokio::test]
async fn a_reset_mid_head_is_unhealthy() {
    let server = resetting(b"HTTP/1.1 200 OK\r\nContent-Le").await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &server.url("http")).await;
    assert_unhealthy(&result, CheckKind::Reset);
}

#[tokio::test]
async fn a_body_cut_short_keeps_its_status() {
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    // Closed before Content-Length bytes, or before the last chunk: judged by the
    // status, the detail says the body was cut short.
    for (answer, healthy, detail) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"[..],
            true,
            "HTTP 200 OK (body cut short: connection closed)",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            true,
            "HTTP 200 OK (body cut short: connection closed)",
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\nabc",
            false,
            "HTTP 503 Service Unavailable (body cut short: connection closed)",
        ),
    ] {
        let server = canned("127.0.0.1:0", answer).await;
        for _ in 0..2 {
            let result = check(&probe, &server.url("http")).await;
            let kind = if healthy {
                CheckKind::Ok
            } else {
                CheckKind::Status
            };
            assert_eq!(
                (result.healthy, result.kind, result.detail.as_str()),
                (healthy, kind, detail)
            );
        }
        // Such a connection is never reused.
        assert_eq!(server.connections(), 2);
    }
    let server = resetting(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial body").await;
    let result = check(&probe, &server.url("http")).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(
        result.detail,
        "HTTP 200 OK (body cut short: connection reset)"
    );
}

async fn twenty_checks_use_one_connection() {
    let server = http_server("127.0.0.1:0", None, ok_handler()).await;
    let probe = HttpProbe::try_new(&config(2000)).expect("a valid config");
    for _ in 0..20 {
        assert!(check(&probe, &server.url("http")).await.healthy);
    }
    assert_eq!(server.seen().len(), 20);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn twenty_checks_of_a_keep_alive_server_use_one_connection() {
    twenty_checks_use_one_connection().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_checks_use_one_connection_on_a_multi_threaded_runtime_too() {
    twenty_checks_use_one_connection().await;
}

#[tokio::test]
async fn a_server_closing_each_connection_gets_a_new_one_per_check() {
    let handler: Handler = Arc::new(|_| {
        let mut response = respond(200, "bye");
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        response
    });
    let server = http_server("127.0.0.1:0", None, handler).await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        let result = check(&probe, &server.url("http")).await;
        assert!(result.healthy, "{result:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn a_pooled_connection_the_server_dropped_is_replaced() {
    // Keep-alive by the headers, but the server hangs up right after each answer: the
    // pooled connection is dead by the next check, which must not count that against
    // the target.
    let server = canned(
        "127.0.0.1:0",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    for _ in 0..5 {
        let result = check(&probe, &server.url("http")).await;
        assert!(result.healthy, "{result:?}");
    }
    assert_eq!(server.connections(), 5);
}

/// A raw server that answers every request of a connection with `answer`.
async fn answering_server(answer: &'static [u8]) -> support::Server {
    raw_server("127.0.0.1:0", move |mut stream| async move {
        // Bounded: a test sends a handful of requests.
        for _ in 0..100 {
            if read_head(&mut stream).await.is_empty() {
                return;
            }
            write(&mut stream, answer).await;
        }
    })
    .await
}

#[tokio::test]
async fn interim_answers_chunked_bodies_and_trailers_keep_the_connection() {
    let server = answering_server(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
          HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;x=y\r\ndown\r\n0\r\nX-Trailer: 1\r\n\r\n",
    )
    .await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    for _ in 0..3 {
        let result = check(&probe, &server.url("http")).await;
        assert_eq!(result.kind, CheckKind::Status, "{result:?}");
        assert_eq!(result.detail, "HTTP 503 Service Unavailable");
    }
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_head_answer_has_no_body_whatever_its_content_length() {
    let server = answering_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
    let probe = HttpProbe::try_new(&HealthCheckConfig {
        method: Method::Head,
        ..config(2000)
    })
    .unwrap();
    for _ in 0..3 {
        assert!(check(&probe, &server.url("http")).await.healthy);
    }
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn http_1_0_answers_and_bodies_to_the_close_are_not_reused() {
    for answer in [
        &b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ] {
        let server = answering_server(answer).await;
        let probe = HttpProbe::try_new(&config(2000)).unwrap();
        for _ in 0..3 {
            let result = check(&probe, &server.url("http")).await;
            assert!(result.healthy, "{result:?}");
        }
        assert_eq!(
            server.connections(),
            3,
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
    // No framing: the body runs to the close, which the probe waits for.
    let server = canned("127.0.0.1:0", b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    for _ in 0..2 {
        assert!(check(&probe, &server.url("http")).await.healthy);
    }
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_response_head_over_64_kib_is_a_protocol_failure() {
    let server = raw_server("127.0.0.1:0", |mut stream| async move {
        read_head(&mut stream).await;
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..50 {
            head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(2000)).as_bytes());
        }
        write(&mut stream, &head).await;
    })
    .await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &server.url("http")).await;
    assert_eq!(result.kind, CheckKind::Protocol, "{result:?}");
    assert_eq!(result.detail, "protocol: response head larger than 64 KiB");
}

#[tokio::test]
async fn framing_edge_cases_decide_reuse() {
    // (answer, healthy, connections after three checks)
    let cases: [(&'static [u8], bool, usize); 5] = [
        // A list of identical lengths is one length.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", true, 1),
        // More bytes than announced: the extra could be read as the next answer.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", true, 3),
        // Longer than the drain bound: not read, the connection is dropped.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", true, 3),
        // HTTP/1.0 has no transfer codings: badly framed, never reused.
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            true,
            3,
        ),
        // Interim answers without end.
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            false,
            3,
        ),
    ];
    for (answer, healthy, connections) in cases {
        let server = answering_server(answer).await;
        let probe = HttpProbe::try_new(&config(2000)).unwrap();
        let started = Instant::now();
        for _ in 0..3 {
            let result = check(&probe, &server.url("http")).await;
            assert_eq!(result.healthy, healthy, "{result:?}");
            if !healthy {
                assert_eq!(result.detail, "protocol: too many interim (1xx) answers");
            }
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        let text = String::from_utf8_lossy(answer);
        assert_eq!(server.connections(), connections, "{text}");
    }
}

#[tokio::test]
async fn chunk_framing_without_end_is_bounded() {
    // Endless leading zeros of a chunk size: a protocol failure, not a timeout.
    let zeros = raw_server("127.0.0.1:0", |mut stream| async move {
        read_head(&mut stream).await;
        write(
            &mut stream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await;
        for _ in 0..10_000 {
            if stream.write_all(&[b'0'; 1024]).await.is_err() {
                return;
            }
        }
    })
    .await;
    // One-byte chunks under 4 KiB extensions: the framing bound stops the reading, the
    // status counts, the connection is dropped.
    let extensions = raw_server("127.0.0.1:0", |mut stream| async move {
        read_head(&mut stream).await;
        write(
            &mut stream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await;
        let chunk = format!("1;{}\r\nx\r\n", "e".repeat(4000));
        for _ in 0..10_000 {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let probe = HttpProbe::try_new(&config(3000)).unwrap();
    let started = Instant::now();
    let result = check(&probe, &zeros.url("http")).await;
    assert_eq!(result.kind, CheckKind::Protocol, "{result:?}");
    assert!(
        result.detail.contains("chunk size line too long"),
        "{result:?}"
    );
    let result = check(&probe, &extensions.url("http")).await;
    assert!(result.healthy, "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(check(&probe, &extensions.url("http")).await.healthy);
    assert_eq!(extensions.connections(), 2);
}

#[tokio::test]
async fn a_new_connection_closed_before_any_answer_is_not_retried() {
    let server = raw_server("127.0.0.1:0", |mut stream| async move {
        read_head(&mut stream).await;
    })
    .await;
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &server.url("http")).await;
    assert_eq!(result.kind, CheckKind::Reset, "{result:?}");
    assert_eq!(
        result.detail,
        "connection closed before the response was complete"
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn probes_sharing_a_client_share_its_connections() {
    let server = http_server("127.0.0.1:0", None, ok_handler()).await;
    let config = config(2000);
    let client = HttpClient::try_new(&config, &HttpClientConfig::default()).unwrap();
    let get = HttpProbe::try_with_client(&config, client.clone()).unwrap();
    let head = HttpProbe::try_with_client(
        &HealthCheckConfig {
            method: Method::Head,
            ..config.clone()
        },
        client,
    )
    .unwrap();
    for _ in 0..5 {
        assert!(check(&get, &server.url("http")).await.healthy);
        assert!(check(&head, &server.url("http")).await.healthy);
    }
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn ipv6_literal_targets_are_checked() {
    let server = http_server("[::1]:0", None, ok_handler()).await;
    let url = server.url("http");
    assert!(url.as_str().starts_with("http://[::1]:"), "{url}");
    let probe = HttpProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &url).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(
        server.seen()[0]
            .headers
            .iter()
            .find(|(k, _)| k == "host")
            .unwrap()
            .1,
        server.addr.to_string()
    );
    let h2c = H2cProbe::try_new(&config(2000)).unwrap();
    assert!(check(&h2c, &server.url("h2c")).await.healthy);
}

#[tokio::test]
async fn h2c_speaks_http2_with_prior_knowledge() {
    let server = http_server("127.0.0.1:0", None, status_by_path()).await;
    let probe = H2cProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &server.url_with("h2c", "/204")).await;
    assert!(result.healthy, "{result:?}");
    let result = check(&probe, &server.url_with("h2c", "/503")).await;
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Status, "HTTP 503 Service Unavailable")
    );
    assert_one_http2_connection(&server);
}

#[tokio::test]
async fn an_h2c_stream_reset_is_unhealthy() {
    let server = raw_server("127.0.0.1:0", |stream| async move {
        let Ok(mut connection) = h2::server::handshake(stream).await else {
            return;
        };
        while let Some(Ok((_request, mut respond))) = connection.accept().await {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    })
    .await;
    let probe = H2cProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &server.url("h2c")).await;
    assert_unhealthy(&result, CheckKind::Reset);
    assert_eq!(result.detail, "http2 stream reset: INTERNAL_ERROR");
}

#[tokio::test]
async fn an_h2c_stream_reset_after_the_headers_keeps_the_status() {
    let server = raw_server("127.0.0.1:0", |stream| async move {
        let Ok(mut connection) = h2::server::handshake(stream).await else {
            return;
        };
        let Some(mut ping_pong) = connection.ping_pong() else {
            return;
        };
        let Some(Ok((_request, mut respond))) = connection.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let response = http::Response::builder().status(200).body(()).unwrap();
            let Ok(mut body) = respond.send_response(response, false) else {
                return;
            };
            // The answer to a ping sent after the headers: the connection has written
            // them, so the reset follows them on the wire.
            if ping_pong.ping(h2::Ping::opaque()).await.is_ok() {
                body.send_reset(h2::Reason::INTERNAL_ERROR);
            }
        });
        // Drives the connection (the ping, the reset) until the client goes.
        while let Some(Ok(_)) = connection.accept().await {}
    })
    .await;
    let probe = H2cProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &server.url("h2c")).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(
        result.detail,
        "HTTP 200 OK (body cut short: http2 stream reset: INTERNAL_ERROR)"
    );
}

#[tokio::test]
async fn h2c_against_an_http1_only_server_is_a_protocol_failure() {
    let probe = H2cProbe::try_new(&config(2000)).unwrap();
    let result = check_canned(
        &probe,
        "h2c",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_unhealthy(&result, CheckKind::Protocol);
    assert_eq!(
        result.detail,
        "protocol: the server does not speak HTTP/2 (it answered in HTTP/1)"
    );
    // hyper's HTTP/1-only server (axum's too) closes the connection at the preface.
    let server = raw_server("127.0.0.1:0", |stream| async move {
        let service = hyper::service::service_fn(|_request| async {
            Ok::<_, std::convert::Infallible>(respond(200, "ok"))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    })
    .await;
    let result = check(&probe, &server.url("h2c")).await;
    assert_unhealthy(&result, CheckKind::Protocol);
    assert_eq!(
        result.detail,
        "protocol: the server does not speak HTTP/2 (it closed the connection at the HTTP/2 preface)"
    );
}

/// The `authorization` header of each request `server` saw.
fn authorizations(server: &support::Server) -> Vec<Option<String>> {
    server
        .seen()
        .iter()
        .map(|seen| {
            seen.headers
                .iter()
                .find(|(name, _)| name == "authorization")
                .map(|(_, value)| value.clone())
        })
        .collect()
}

#[tokio::test]
async fn user_info_is_sent_as_basic_auth_and_nowhere_else() {
    let server = http_server("127.0.0.1:0", None, ok_handler()).await;
    let port = server.addr.port();
    let url = |scheme: &str, userinfo: &str| {
        Url::parse(&format!("{scheme}://{userinfo}@127.0.0.1:{port}/status")).unwrap()
    };
    let http = HttpProbe::try_new(&config(2000)).unwrap();
    let h2c = H2cProbe::try_new(&config(2000)).unwrap();
    assert!(check(&http, &url("http", "admin:s3cret")).await.healthy);
    // Percent-encoded user and password are decoded; a user alone has an empty password.
    assert!(
        check(&http, &url("http", "us%40er:p%3As%20s"))
            .await
            .healthy
    );
    assert!(check(&http, &url("http", "admin")).await.healthy);
    assert!(check(&h2c, &url("h2c", "admin:s3cret")).await.healthy);
    // A configured Authorization wins.
    let bearer = HttpProbe::try_new(&HealthCheckConfig {
        headers: [("Authorization".to_owned(), "Bearer t0ken".to_owned())].into(),
        ..config(2000)
    })
    .unwrap();
    assert!(check(&bearer, &url("http", "admin:s3cret")).await.healthy);
    // admin:s3cret, us@er:p:s s, admin:
    let basic = |credentials: &str| {
        use base64::Engine as _;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ))
    };
    assert_eq!(
        authorizations(&server),
        [
            basic("admin:s3cret"),
            basic("us@er:p:s s"),
            basic("admin:"),
            basic("admin:s3cret"),
            Some("Bearer t0ken".to_owned()),
        ]
    );
    assert_eq!(basic("admin:s3cret").unwrap(), "Basic YWRtaW46czNjcmV0");
    for seen in server.seen() {
        let host = seen.headers.iter().find(|(name, _)| name == "host");
        let shown = format!("{} {host:?}", seen.uri);
        assert!(
            !shown.contains("admin") && !shown.contains("s3cret"),
            "{shown}"
        );
        let h2_uri = format!("http://127.0.0.1:{port}/status/");
        assert!(seen.uri == "/status/" || seen.uri == h2_uri, "{}", seen.uri);
    }
}

#[cfg(feature = "tls")]
mod tls {
    use health_check::HttpClientConfig;

    use super::*;
    use crate::support::{TestCa, self_signed, write_file};

    #[tokio::test]
    async fn a_self_signed_certificate_passes_without_verification() {
        let identity = self_signed();
        let tls = identity.server_config(&[b"http/1.1"], None);
        let server = http_server("127.0.0.1:0", Some(tls), ok_handler()).await;
        let probe = HttpProbe::try_new(&config(2000)).unwrap();
        let result = check(&probe, &server.url("https")).await;
        assert!(result.healthy, "{result:?}");
        assert_eq!(server.seen()[0].version, Version::HTTP_11);
    }

    #[tokio::test]
    async fn a_self_signed_certificate_fails_verification_as_unhealthy_tls() {
        let identity = self_signed();
        let tls = identity.server_config(&[b"http/1.1"], None);
        let server = http_server("127.0.0.1:0", Some(tls), ok_handler()).await;
        let probe = HttpProbe::try_new(&HealthCheckConfig {
            tls_verify: true,
            ..config(2000)
        })
        .unwrap();
        let result = check(&probe, &server.url("https")).await;
        assert_unhealthy(&result, CheckKind::Tls);
        assert!(result.detail.starts_with("tls: "), "{result:?}");
        assert!(server.seen().is_empty());
    }

    #[tokio::test]
    async fn a_configured_ca_makes_verification_pass() {
        let ca = TestCa::new();
        let tls = ca.server().server_config(&[b"http/1.1"], None);
        let server = http_server("127.0.0.1:0", Some(tls), ok_handler()).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write_file(dir.path(), "ca.pem", &ca.pem());
        let config = HealthCheckConfig {
            tls_verify: true,
            ..config(2000)
        };
        let client = HttpClient::try_new(
            &config,
            &HttpClientConfig {
                ca_file: Some(ca_file),
            },
        )
        .unwrap();
        let probe = HttpProbe::try_with_client(&config, client).unwrap();
        let result = check(&probe, &server.url("https")).await;
        assert!(result.healthy, "{result:?}");
        // The certificate names `localhost` too; verification checks the name.
        let other = Url::parse(&format!("https://localhost:{}/", server.addr.port())).unwrap();
        assert!(check(&probe, &other).await.healthy);
    }

    #[tokio::test]
    async fn alpn_negotiates_http2() {
        let identity = self_signed();
        let tls = identity.server_config(&[b"h2", b"http/1.1"], None);
        let server = http_server("127.0.0.1:0", Some(tls), ok_handler()).await;
        let probe = HttpProbe::try_new(&config(2000)).unwrap();
        for _ in 0..3 {
            let result = check(&probe, &server.url("https")).await;
            assert!(result.healthy, "{result:?}");
        }
        assert_one_http2_connection(&server);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_tls_failure() {
        let server = http_server("127.0.0.1:0", None, ok_handler()).await;
        let probe = HttpProbe::try_new(&config(2000)).unwrap();
        let result = check(&probe, &server.url("https")).await;
        assert_unhealthy(&result, CheckKind::Tls);
    }

    #[tokio::test]
    async fn a_shared_client_must_match_the_tls_setting() {
        let client = HttpClient::try_new(&config(2000), &HttpClientConfig::default()).unwrap();
        let err = HttpProbe::try_with_client(
            &HealthCheckConfig {
                tls_verify: true,
                ..config(2000)
            },
            client,
        )
        .unwrap_err();
        assert!(err.to_string().contains("tls_verify"), "{err}");
    }
}
