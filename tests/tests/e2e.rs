//! End to end: `healthd run`'s wiring against loopback upstreams that the test turns bad
//! and good again, with a webhook receiver: `down` after F failures, `up` after
//! recovery, never an `up` without a `down`, and the API and `/metrics` agree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use health_monitor::HealthMonitor;
use healthd::{DaemonConfig, start};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

/// Reads one HTTP/1.1 request (head and Content-Length body).
async fn read_request(stream: &mut TcpStream) -> (String, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            while raw.len() < end + 4 + length {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
            let body = String::from_utf8_lossy(&raw[end + 4..]).into_owned();
            return (head, body);
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (String::new(), String::new()),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        assert!(raw.len() < 1 << 20, "request too large");
    }
}

/// An upstream whose answer the test switches between 200 and 503.
async fn switchable_upstream() -> (SocketAddr, Arc<AtomicU16>) {
    let status = Arc::new(AtomicU16::new(200));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = status.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                while !read_request(&mut stream).await.0.is_empty() {
                    let code = answer.load(Ordering::SeqCst);
                    let reason = if code == 200 {
                        "OK"
                    } else {
                        "Service Unavailable"
                    };
                    let reply = format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n");
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, status)
}

/// A webhook receiver that records every JSON body it gets.
async fn webhook_receiver() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                loop {
                    let (head, body) = read_request(&mut stream).await;
                    if head.is_empty() {
                        return;
                    }
                    record
                        .lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                    if stream
                        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn http(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Polls `cond` every 20 ms for at most 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn events(seen: &Mutex<Vec<Value>>, service: &str) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|m| m["service"] == service)
        .map(|m| m["event"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_after_f_failures_up_after_recovery_and_the_api_agrees() {
    let (upstream, status) = switchable_upstream().await;
    let (hook, seen) = webhook_receiver().await;
    let config = DaemonConfig::parse(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = ":memory:"

[defaults]
interval = "100ms"
timeout = "1s"
jitter = "0s"

[[notify]]
name = "hook"
provider = "webhook"
url = "http://{hook}/events"

[[monitor]]
name = "api"
url = "http://{upstream}/"
retries = 3
notify = ["hook"]

[[monitor]]
name = "patient"
url = "http://{upstream}/"
retries = 1000
"#
    ))
    .unwrap();
    let running = start(&config, Vec::new()).await.unwrap();
    let api = running.monitors[0].clone();
    let addr = running.addr;

    eventually("api healthy", || {
        api.snapshot().status == health_types::Status::Healthy
    })
    .await;
    status.store(503, Ordering::SeqCst);
    eventually("a down", || events(&seen, "api") == ["down"]).await;
    let failures_at_down = api.snapshot().failures;
    assert!(
        failures_at_down >= 3,
        "down only after F = 3 failures (had {failures_at_down})"
    );
    {
        let seen = seen.lock().unwrap();
        let down = seen.iter().find(|m| m["service"] == "api").unwrap();
        assert_eq!(down["title"], "Service down: api");
        assert_eq!(down["detail"], "HTTP 503 Service Unavailable");
        assert_eq!(down["color"], "#ff0000");
    }
    status.store(200, Ordering::SeqCst);
    eventually("an up", || events(&seen, "api") == ["down", "up"]).await;

    // The patient monitor (F = 1000) saw the same failures and recovery: not a word.
    assert!(
        events(&seen, "patient").is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );

    let monitor: Value = serde_json::from_str(&http(addr, "/api/v1/monitors/api").await).unwrap();
    assert_eq!(monitor["status"], "healthy");
    assert_eq!(monitor["failures"], 0);
    // The receiver records a body before the dispatcher reads its answer: the `sent`
    // counter may trail the receiver by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sent = "healthd_notifications_total{provider=\"hook\",outcome=\"sent\"} 2";
    let mut metrics = http(addr, "/metrics").await;
    while !metrics.lines().any(|l| l == sent) {
        assert!(Instant::now() < deadline, "no {sent:?} in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        metrics = http(addr, "/metrics").await;
    }
    for line in [
        "healthd_monitor_up{monitor=\"api\"} 1",
        // starting → healthy → unhealthy → healthy
        "healthd_monitor_transitions_total{monitor=\"api\"} 3",
        "healthd_monitor_consecutive_failures{monitor=\"api\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    let health: Value = serde_json::from_str(&http(addr, "/api/v1/health").await).unwrap();
    assert_eq!(health["api"]["status"], "healthy");
    assert_eq!(health["patient"]["status"], "healthy");
    running.shutdown(Duration::from_secs(2)).await;
}

/// A TLS (HTTP/1.1) upstream with a self-signed certificate, answering 200.
async fn https_upstream() -> SocketAddr {
    use tokio_rustls::{
        TlsAcceptor,
        rustls::{
            ServerConfig,
            crypto::ring::default_provider,
            pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
        },
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// A UDP responder that echoes every datagram.
async fn udp_echo() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_monitor_runs_from_one_config() {
    let stop = tokio_util::sync::CancellationToken::new();
    let upstreams = healthd::Upstreams::start(&stop).await.unwrap();
    let https = https_upstream().await;
    let udp = udp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent_listener, agent_addr) = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    };
    tokio::spawn(healthd::serve_agent(
        agent_listener,
        None,
        healthd::AgentPolicy::default(),
        stop.clone(),
    ));
    let config = DaemonConfig::parse(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = ":memory:"
[defaults]
interval = "1s"
timeout = "2s"
[[monitor]]
name = "http"
url = "http://{http}/"
[[monitor]]
name = "https"
url = "https://{https}/"
[[monitor]]
name = "h2c"
url = "h2c://{h2c}/"
[[monitor]]
name = "tcp"
url = "tcp://{tcp}"
[[monitor]]
name = "udp"
url = "udp://{udp}"
payload = "ping"
expect_reply = true
[[monitor]]
name = "file"
url = "file://{dir}"
[[monitor]]
name = "agent"
url = "http://{http}/"
agent = {{ url = "http://{agent_addr}" }}
# No engine answers there: the Docker API fails and the fallback (the url) is checked.
[[monitor]]
name = "docker"
url = "http://{http}/"
docker = {{ container = "web", host = "unix://{dir}/no-docker.sock" }}
"#,
        http = upstreams.steady,
        h2c = upstreams.h2c,
        tcp = upstreams.tcp,
        dir = dir.path().display(),
    ))
    .unwrap();
    let running = start(&config, Vec::new()).await.unwrap();
    for monitor in &running.monitors {
        let mut rx = monitor.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.checks() >= 1))
            .await
            .unwrap()
            .unwrap();
        let s = monitor.snapshot();
        assert_eq!(
            s.status,
            health_types::Status::Healthy,
            "{}: {} ({:?})",
            s.name,
            s.detail,
            s.kind
        );
    }
    let names: Vec<&str> = running.monitors.iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "http", "https", "h2c", "tcp", "udp", "file", "agent", "docker"
        ]
    );
    assert_eq!(running.monitors[4].detail(), "reply (udp)");
    assert_eq!(
        running.monitors[7].url().as_str(),
        "docker://localhost/containers/web"
    );
    assert_eq!(running.monitors[7].detail(), "HTTP 200 OK");
    running.shutdown(Duration::from_secs(1)).await;
    stop.cancel();
}
