//! Test servers (scripted HTTP, raw TCP, TLS) and generated certificates shared by the
//! integration tests. Every server binds to loopback on port 0 and lives as long as its
//! handle.
#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    reason = "each test binary uses a subset"
)]

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use health_types::HealthCheckConfig;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};
use url::Url;

/// A config with a short timeout and defaults for the rest.
pub fn config(timeout_ms: u64) -> HealthCheckConfig {
    HealthCheckConfig {
        timeout: Duration::from_millis(timeout_ms),
        ..Default::default()
    }
}

/// What a scripted HTTP server saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: Version,
    pub headers: Vec<(String, String)>,
}

/// Answers a request.
pub type Handler = Arc<dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync>;

/// A response with `status` and a short body.
pub fn respond(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(status).expect("a valid status code");
    response
}

/// A handler answering 200 `ok`.
pub fn ok_handler() -> Handler {
    Arc::new(|_| respond(200, "ok"))
}

/// A server task that counts the connections it accepts and aborts on drop.
pub struct Server {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// `scheme://addr/`.
    pub fn url(&self, scheme: &str) -> Url {
        self.url_with(scheme, "/")
    }

    /// `scheme://addr<path>`.
    pub fn url_with(&self, scheme: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://{}{path}", self.addr)).expect("a valid test URL")
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests seen so far (scripted HTTP servers only).
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("no test thread panicked").clone()
    }
}

/// An HTTP/1.1 and HTTP/2 (prior knowledge, or ALPN with `tls`) server on `bind`.
pub async fn http_server(bind: &str, tls: Option<Arc<ServerConfig>>, handler: Handler) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    raw_server_with(bind, seen, move |stream| {
        let handler = handler.clone();
        let recorder = recorder.clone();
        let tls = tls.clone();
        async move {
            let service = service_fn(move |request: Request<Incoming>| {
                recorder
                    .lock()
                    .expect("no test thread panicked")
                    .push(Seen {
                        method: request.method().to_string(),
                        uri: request.uri().to_string(),
                        version: request.version(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.to_string(), v.to_str().unwrap_or("<binary>").to_owned())
                            })
                            .collect(),
                    });
                let response = handler(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(config) => {
                    if let Ok(stream) = TlsAcceptor::from(config).accept(stream).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        }
    })
    .await
}

/// A TCP server on `bind` that hands every connection to `handle`.
pub async fn raw_server<F, Fut>(bind: &str, handle: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    raw_server_with(bind, Arc::new(Mutex::new(Vec::new())), handle).await
}

async fn raw_server_with<F, Fut>(bind: &str, seen: Arc<Mutex<Vec<Seen>>>, handle: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(bind).await.expect("loopback is bindable");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(stream));
        }
    });
    Server {
        addr,
        connections,
        seen,
        task,
    }
}

/// A TCP server on `bind` that reads each request head, answers `response` as it is and
/// closes the connection.
pub async fn canned(bind: &str, response: &'static [u8]) -> Server {
    raw_server(bind, move |mut stream| async move {
        read_head(&mut stream).await;
        write(&mut stream, response).await;
    })
    .await
}

/// A TCP server on `bind` that reads each request head, answers `head`, then writes
/// `piece(i)` every 50 ms (at most 200 times: 10 s) while the client stays.
pub async fn trickle(bind: &str, head: &'static [u8], piece: fn(usize) -> Vec<u8>) -> Server {
    raw_server(bind, move |mut stream| async move {
        read_head(&mut stream).await;
        write(&mut stream, head).await;
        for i in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stream.try_write(&piece(i)).is_err() {
                return;
            }
        }
    })
    .await
}

/// A TCP server on `bind` that accepts each connection and holds it without reading or
/// answering (a black hole), until the test's runtime ends.
pub async fn black_hole(bind: &str) -> Server {
    raw_server(bind, |stream| async move {
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await
}

/// Reads one request head (up to the blank line, at most 64 KiB).
pub async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// Writes `bytes`, ignoring a peer that went away.
pub async fn write(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
}

/// A loopback port with nothing listening (bound, then released).
pub async fn closed_port(bind: &str) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.expect("loopback is bindable");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

pub use health_types::test_util::{TestCa, self_signed, write_file};
