//! Helpers of the unit tests: one HTTP/1.1 exchange with a loopback server, loopback
//! HTTP upstreams to check, and a loopback port that refuses connections.
//!
//! (`tests/prometheus.rs`, an integration test, cannot reach this crate-private module
//! and keeps its own upstreams.)

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::mpsc,
};

/// The most of a request head an upstream reads.
const MAX_HEAD: usize = 16 * 1024;

/// An HTTP/1.1 server on loopback answering every request with `status` (body `ok`)
/// and closing the connection.
pub(crate) async fn http_upstream(status: u16) -> SocketAddr {
    recording_upstream(status).await.0
}

/// [`http_upstream`] that also hands over each request head it reads (request line
/// and headers, as sent; at most 16 KiB), in order of arrival.
pub(crate) async fn recording_upstream(
    status: u16,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0_u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                let answer = format!(
                    "HTTP/1.1 {status} Status\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, received)
}

/// A loopback address that refuses connections for as long as the returned socket
/// lives: the socket is bound and never listens, so a connect gets a reset, and no
/// other socket can take the port meanwhile (as one could after a bind-then-drop).
pub(crate) fn refused_port() -> (TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// One HTTP/1.1 request; returns the status code, the headers and the body.
pub(crate) async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    request_with(addr, method, path, &[]).await
}

/// [`request`] with more headers (`Host` is `test` unless given).
pub(crate) async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = String::new();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str("Host: test\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let req =
        format!("{method} {path} HTTP/1.1\r\n{head}Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    // Bodies may be chunked: keep only the payload lines.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

/// [`request`], answered with 200 and a JSON body; returns the body.
pub(crate) async fn json(addr: SocketAddr, method: &str, path: &str) -> serde_json::Value {
    let (status, _, body) = request(addr, method, path).await;
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The `Content-Type` of a response head, lower-cased (empty when there is none).
pub(crate) fn content_type(head: &str) -> String {
    head.lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
