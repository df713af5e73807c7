//! What the daemon's end-to-end tests share: loopback upstreams the test switches, a
//! webhook receiver it can take away, and polling with a deadline.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
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
pub(crate) async fn read_request(stream: &mut TcpStream) -> (String, String) {
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
pub(crate) fn serve(
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
pub(crate) async fn switchable_upstream() -> (SocketAddr, Arc<AtomicU16>) {
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
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    pub(crate) async fn new() -> Receiver {
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
            seen.lock().unwrap().push(event);
            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
        }));
    }

    /// Closes the port: deliveries are refused.
    pub(crate) async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub(crate) async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.up_on(listener);
    }

    /// The `event` of each body received, in order.
    pub(crate) fn events(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|event| event["event"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// `<event> <service>` of each body received, in order.
    pub(crate) fn about(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|event| {
                let name = |key: &str| event[key].as_str().unwrap_or("?").to_owned();
                format!("{} {}", name("event"), name("service"))
            })
            .collect()
    }
}

/// A free loopback port for healthd's API (bound, then released).
pub(crate) fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// GET `path` from healthd; empty while it does not answer.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> String {
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

/// Polls `cond` every 50 ms for at most 20 s.
pub(crate) async fn eventually<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `healthd run --config CONFIG`, its store in `state` (the `STATE_DIRECTORY`), quiet;
/// killed when dropped.
pub(crate) fn healthd(state: &Path, config: &Path) -> Child {
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
