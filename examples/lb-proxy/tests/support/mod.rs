//! Test helpers: loopback upstreams that can be killed and restarted on their port, a
//! client, and polls with deadlines.

#![allow(dead_code, unreachable_pub)]

use std::{convert::Infallible, future::Future, net::SocketAddr, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::HeaderValue,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{
    net::{TcpListener, TcpSocket},
    task::{JoinHandle, JoinSet},
    time::Instant,
};

/// A loopback HTTP/1.1 upstream. It answers `500` on paths under `/fail`, else `200`
/// echoing the request body, with its name in `x-upstream`.
#[derive(Debug)]
pub struct FakeUpstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

/// A listener on `addr` that can take the port again at once after a kill.
fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("the port is free");
    socket.listen(1024).expect("listen")
}

impl FakeUpstream {
    /// A new upstream on a free loopback port.
    pub fn start(name: &'static str) -> FakeUpstream {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().expect("a local address");
        FakeUpstream {
            name,
            addr,
            server: Some(serve(name, listener)),
        }
    }

    /// `http://127.0.0.1:port/`.
    pub fn url(&self) -> health_types::Url {
        health_types::Url::parse(&format!("http://{}/", self.addr)).expect("a loopback URL")
    }

    /// Kills it: the listener and every open connection are dropped.
    pub async fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            // Cancelled: the listener and the connections' set are dropped.
            let _ = server.await;
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "{} is running", self.name);
        self.server = Some(serve(self.name, bind(self.addr)));
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The accept loop; it owns every connection, so aborting it closes them all.
fn serve(name: &'static str, listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            while connections.try_join_next().is_some() {}
            let service = service_fn(move |request: Request<Incoming>| answer(name, request));
            connections.spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn answer(
    name: &'static str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let fail = request.uri().path().starts_with("/fail");
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut response = Response::new(Full::new(body));
    if fail {
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    response
        .headers_mut()
        .insert("x-upstream", HeaderValue::from_static(name));
    Ok(response)
}

/// A plain HTTP client for talking to the proxy.
pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What the proxy answered: status, `x-upstream` (empty for the proxy's own answers) and
/// body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub upstream: String,
    pub body: String,
}

/// Sends `method path` with `body` through the proxy at `proxy`, within 5 s.
pub async fn send(
    client: &TestClient,
    proxy: SocketAddr,
    method: &str,
    path: &str,
    body: &'static str,
) -> Result<Answer, String> {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .map_err(|err| err.to_string())?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|err| format!("{err:?}"))?;
        let status = response.status();
        let upstream = response
            .headers()
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| format!("{err:?}"))?
            .to_bytes();
        Ok(Answer {
            status,
            upstream,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5s".to_owned())?
}

/// Polls `done` every millisecond until it holds, failing the test after `within`;
/// returns when it first held.
pub async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Polls the async `done` every millisecond, as [`wait_until`].
pub async fn wait_for<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut done: impl FnMut() -> F,
) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if done().await {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
