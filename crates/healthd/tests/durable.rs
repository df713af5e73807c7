//! Alerts that survive the daemon (SPEC §9.1), end to end with the real binary: a
//! `kill -9` while a `down` waits for a receiver that is away, and a restart in the
//! middle of an outage. Each case ends with exactly one `down` and one `up`, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    task::JoinHandle,
    time::Instant,
};

/// Reads one HTTP/1.1 request head and its Content-Length body; empty at the end.
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
            return (head, String::from_utf8_lossy(&raw[end + 4..]).into_owned());
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (String::new(), String::new()),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        assert!(raw.len() < 1 << 20, "request too large");
    }
}

/// Serves `listener`, answering each request with `reply(body)`.
fn serve(
    listener: TcpListener,
    reply: impl Fn(&str) -> String + Send + Sync + 'static,
) -> JoinHandle<()> {
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                loop {
                    let (head, body) = read_request(&mut stream).await;
                    if head.is_empty() || stream.write_all(reply(&body).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// An upstream the test switches between 200 and 503.
async fn switchable_upstream() -> (SocketAddr, Arc<AtomicU16>) {
    let status = Arc::new(AtomicU16::new(200));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = status.clone();
    serve(listener, move |_| {
        let code = answer.load(Ordering::SeqCst);
        format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n")
    });
    (addr, status)
}

/// A webhook receiver on a fixed port that the test takes away and brings back; it
/// records the `event` of every body it accepts.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    async fn new() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            seen: Arc::new(Mutex::new(Vec::new())),
            task: None,
        };
        receiver.up_on(listener);
        receiver
    }

    fn up_on(&mut self, listener: TcpListener) {
        let seen = self.seen.clone();
        self.task = Some(serve(listener, move |body| {
            let event: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            seen.lock()
                .unwrap()
                .push(event["event"].as_str().unwrap_or("?").to_owned());
            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
        }));
    }

    /// Closes the port: deliveries are refused.
    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.up_on(listener);
    }

    fn events(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// `healthd run` on a config for one monitor of `upstream` notifying `hook`, with its
/// store in `state` (the `STATE_DIRECTORY`); killed when dropped.
fn healthd(state: &Path, config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_healthd"))
        .args(["run", "--config"])
        .arg(config)
        .env("STATE_DIRECTORY", state)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn write_config(dir: &Path, api: SocketAddr, upstream: SocketAddr, hook: SocketAddr) -> PathBuf {
    let path = dir.join("healthd.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "{api}"

[delivery]
max_backoff = "1s"

[defaults]
interval = "100ms"
timeout = "1s"
jitter = "0s"
retries = 2

[[notify]]
name = "hook"
provider = "webhook"
url = "http://{hook}/events"

[[monitor]]
name = "api"
url = "http://{upstream}/"
"#
        ),
    )
    .unwrap();
    path
}

/// A free loopback port for healthd's API (bound, then released).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// GET `path` from healthd; empty while it does not answer.
async fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw).await;
    raw.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The monitor's status as the API shows it.
async fn status(addr: SocketAddr) -> String {
    let body = get(addr, "/api/v1/monitors/api").await;
    serde_json::from_str::<Value>(&body)
        .map(|m| m["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Polls `cond` every 50 ms for at most 20 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_queued_at_kill_9_is_delivered_after_restart_then_its_up() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, answer) = switchable_upstream().await;
    let mut hook = Receiver::new().await;
    let api = free_port();
    let config = write_config(dir.path(), api, upstream, hook.addr);

    let mut daemon = healthd(dir.path(), &config);
    eventually("healthy", || async { status(api).await == "healthy" }).await;
    hook.down().await;
    answer.store(503, Ordering::SeqCst);
    // The down is committed and waits for the receiver.
    let pending = "healthd_outbox_pending{notifier=\"hook\"} 1";
    eventually("a queued down", || async {
        get(api, "/metrics").await.lines().any(|l| l == pending)
    })
    .await;
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();

    // The outage ends while healthd is away; the receiver is back.
    answer.store(200, Ordering::SeqCst);
    hook.up().await;
    let mut daemon = healthd(dir.path(), &config);
    eventually("down then up", || async { hook.events().len() >= 2 }).await;
    assert_eq!(hook.events(), ["down", "up"]);
    // Nothing more comes: the outbox is empty and stays so.
    let empty = "healthd_outbox_pending{notifier=\"hook\"} 0";
    eventually("an empty outbox", || async {
        get(api, "/metrics").await.lines().any(|l| l == empty)
    })
    .await;
    assert_eq!(hook.events(), ["down", "up"]);
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_sends_no_second_down() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, answer) = switchable_upstream().await;
    let hook = Receiver::new().await;
    let api = free_port();
    let config = write_config(dir.path(), api, upstream, hook.addr);

    let mut daemon = healthd(dir.path(), &config);
    eventually("healthy", || async { status(api).await == "healthy" }).await;
    answer.store(503, Ordering::SeqCst);
    eventually("a down", || async { hook.events() == ["down"] }).await;
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();

    // The restarted daemon resumes the outage: unhealthy, and silent.
    let mut daemon = healthd(dir.path(), &config);
    eventually("resumed unhealthy", || async {
        status(api).await == "unhealthy"
    })
    .await;
    // Five failed checks of the resumed outage later, still only the first down.
    eventually("five failed checks after the restart", || async {
        get(api, "/metrics").await.lines().any(|l| {
            l.strip_prefix("healthd_monitor_checks_total{monitor=\"api\",result=\"unhealthy\"} ")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 5)
        })
    })
    .await;
    assert_eq!(hook.events(), ["down"], "no second down after the restart");
    answer.store(200, Ordering::SeqCst);
    eventually("the up", || async { hook.events().len() >= 2 }).await;
    assert_eq!(hook.events(), ["down", "up"]);
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}
