//! The keep-alive connection pool of the HTTP probes, on hyper's connection API.
//!
//! hyper-util's legacy client hands an HTTP/1 connection back to its pool from a task of
//! its own after the body ends, and races a new connect against that hand-back; on a
//! multi-threaded runtime a probe's next check then sometimes opens a second connection.
//! This pool is small and deterministic instead: a check that read its response to the
//! end waits (within its deadline) until the connection is ready again and puts it back
//! itself, so back-to-back checks of one target reuse one connection.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use health_types::{CheckKind, ConfigError, HealthCheckConfig};
use http::{HeaderMap, Request, Response, Uri, header::HOST};
use http_body_util::Empty;
use hyper::{
    body::Incoming,
    client::conn::{TrySendError, http1, http2},
    rt::{Read, ReadBufCursor, Write},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{net::TcpStream, time::Instant};

use super::{HttpClientConfig, classify_http_error};
use crate::{failure::Failure, net};

/// How long an idle connection is kept. Below the common 60 s server keep-alive
/// limits, so a check rarely picks a connection the server is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per target: one serves a monitor, a few cover a shared client.
const POOL_MAX_IDLE_PER_HOST: usize = 4;

/// The request of one check, built anew for each connection it is tried on.
#[derive(Debug)]
pub(super) struct Outgoing<'a> {
    pub(super) method: &'a http::Method,
    /// Absolute: scheme, authority, path and query.
    pub(super) uri: &'a Uri,
    pub(super) headers: &'a HeaderMap,
}

impl Outgoing<'_> {
    /// The request in the form the connection's protocol wants: origin-form with a
    /// `Host` header for HTTP/1, absolute (`:authority`) for HTTP/2.
    fn build(&self, h2: bool) -> Result<Request<Empty<Bytes>>, Failure> {
        let internal = |err: http::Error| {
            Failure::checker(CheckKind::Internal, format!("http request: {err}"))
        };
        let mut request = Request::builder()
            .method(self.method.clone())
            .body(Empty::new())
            .map_err(internal)?;
        *request.headers_mut() = self.headers.clone();
        if h2 {
            *request.uri_mut() = self.uri.clone();
        } else {
            let origin = self
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse::<Uri>()
                .map_err(|err| internal(err.into()))?;
            *request.uri_mut() = origin;
            if let Some(authority) = self.uri.authority()
                && !request.headers().contains_key(HOST)
            {
                let host = authority
                    .as_str()
                    .parse()
                    .map_err(|err: http::header::InvalidHeaderValue| internal(err.into()))?;
                request.headers_mut().insert(HOST, host);
            }
        }
        Ok(request)
    }
}

/// A keep-alive pool of HTTP/1 and HTTP/2 connections, keyed by scheme and authority.
pub(super) struct Pool {
    connector: Connector,
    /// Every connection speaks HTTP/2 from the start (h2c).
    prior_knowledge: bool,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Pool {
    pub(super) fn new(connector: Connector, prior_knowledge: bool) -> Self {
        Pool {
            connector,
            prior_knowledge,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `outgoing` on a pooled connection, or a new one; returns the response and
    /// the connection's sender for [`checkin`](Self::checkin).
    ///
    /// A pooled connection that fails before answering (the server closed it while it
    /// was idle) is replaced by a new one once: checks are `GET` or `HEAD`, which are
    /// safe to repeat.
    pub(super) async fn send(
        &self,
        key: &str,
        outgoing: &Outgoing<'_>,
    ) -> Result<(Response<Incoming>, Sender), Failure> {
        if let Some(mut sender) = self.checkout(key) {
            match sender.try_send(outgoing.build(sender.is_h2())?).await {
                Ok(response) => return Ok((response, sender)),
                Err(err) => {
                    let failure = classify_http_error(err.error());
                    if failure.kind != CheckKind::Reset {
                        return Err(failure);
                    }
                    tracing::debug!(key, %failure, "pooled connection failed; retrying on a new one");
                }
            }
        }
        let mut sender = self.connect(key, outgoing.uri).await?;
        sender
            .ready()
            .await
            .map_err(|err| classify_http_error(&err))?;
        match sender.try_send(outgoing.build(sender.is_h2())?).await {
            Ok(response) => Ok((response, sender)),
            Err(err) => Err(classify_http_error(err.error())),
        }
    }

    /// Puts an HTTP/1 connection whose response was read to the end back into the pool,
    /// once it is ready for the next request. HTTP/2 connections stay pooled while in use.
    pub(super) async fn checkin(&self, key: &str, sender: Sender) {
        if let Sender::H1(mut sender) = sender
            && sender.ready().await.is_ok()
        {
            self.put(key, Sender::H1(sender));
        }
    }

    fn checkout(&self, key: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        // Most recently used first: the likeliest to be still open.
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() >= POOL_IDLE_TIMEOUT || !entry.sender.is_usable() {
                continue;
            }
            return Some(match entry.sender {
                Sender::H2(shared) => {
                    let mine = shared.clone();
                    list.push(Idle {
                        sender: Sender::H2(shared),
                        since: Instant::now(),
                    });
                    Sender::H2(mine)
                }
                h1 => h1,
            });
        }
        None
    }

    fn put(&self, key: &str, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(key.to_owned()).or_default();
        list.retain(|entry| entry.sender.is_usable());
        if list.len() < POOL_MAX_IDLE_PER_HOST {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Opens a connection and starts its HTTP/1 or HTTP/2 driver task; an HTTP/2 one is
    /// pooled at once, for other checks to share.
    async fn connect(&self, key: &str, uri: &Uri) -> Result<Sender, Failure> {
        let (io, alpn_h2) = self.connector.connect(uri).await?;
        if self.prior_knowledge || alpn_h2 {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|err| classify_http_error(&err))?;
            // The driver ends when the connection closes or every sender is dropped.
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "http/2 connection ended");
                }
            });
            self.put(key, Sender::H2(sender.clone()));
            Ok(Sender::H2(sender))
        } else {
            let (sender, connection) = http1::handshake(io)
                .await
                .map_err(|err| classify_http_error(&err))?;
            // The driver ends when the connection closes or its sender is dropped
            // (including mid-request, when a check is cancelled).
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "http/1 connection ended");
                }
            });
            Ok(Sender::H1(sender))
        }
    }
}

/// The sending half of a pooled connection.
pub(super) enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    fn is_usable(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_ready() && !s.is_closed(),
            Sender::H2(s) => s.is_ready() && !s.is_closed(),
        }
    }

    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    async fn try_send(
        &mut self,
        request: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Empty<Bytes>>>> {
        match self {
            Sender::H1(s) => s.try_send_request(request).await,
            Sender::H2(s) => s.try_send_request(request).await,
        }
    }
}

/// Opens the connections of a pool: DNS, TCP, and TLS for `https`, with every failure
/// classified as a [`Failure`].
#[derive(Clone)]
pub(super) struct Connector {
    #[cfg(feature = "tls")]
    tls: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
}

impl Connector {
    #[cfg(feature = "tls")]
    pub(super) fn try_new(
        config: &HealthCheckConfig,
        options: &HttpClientConfig,
    ) -> Result<Self, ConfigError> {
        use crate::tls::{Trust, client_config, load_roots, system_roots};

        let trust = match (&options.ca_file, config.tls_verify) {
            (_, false) => Trust::AnyCertificate,
            (None, true) => Trust::SystemRoots,
            (Some(path), true) => {
                let mut roots = (*system_roots()).clone();
                let extra = load_roots(path).map_err(|reason| ConfigError::Invalid {
                    key: "ca_file",
                    value: format!("{:?}", path.display().to_string()),
                    reason,
                })?;
                roots.roots.extend(extra.roots);
                Trust::Roots(std::sync::Arc::new(roots))
            }
        };
        let tls = client_config(&trust, &[b"h2", b"http/1.1"], None).map_err(|reason| {
            ConfigError::Invalid {
                key: "tls_verify",
                value: config.tls_verify.to_string(),
                reason,
            }
        })?;
        Ok(Connector {
            tls: std::sync::Arc::new(tls),
        })
    }

    #[cfg(not(feature = "tls"))]
    pub(super) fn try_new(
        _config: &HealthCheckConfig,
        options: &HttpClientConfig,
    ) -> Result<Self, ConfigError> {
        match &options.ca_file {
            Some(path) => Err(ConfigError::Invalid {
                key: "ca_file",
                value: format!("{:?}", path.display().to_string()),
                reason: "needs the `tls` feature of health-check".to_owned(),
            }),
            None => Ok(Connector {}),
        }
    }

    /// Connects to the authority of `uri`; `true` when TLS chose HTTP/2 by ALPN.
    async fn connect(&self, uri: &Uri) -> Result<(Conn, bool), Failure> {
        let host = uri
            .host()
            .ok_or_else(|| Failure::checker(CheckKind::Config, "request URI has no host"))?;
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = net::resolve_and_connect(host, port).await?;
        if https {
            return self.secure(host, tcp).await;
        }
        Ok((Conn::Plain(TokioIo::new(tcp)), false))
    }

    #[cfg(feature = "tls")]
    async fn secure(&self, host: &str, tcp: TcpStream) -> Result<(Conn, bool), Failure> {
        let tls = crate::tls::handshake(self.tls.clone(), host, tcp).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        Ok((Conn::Tls(Box::new(TokioIo::new(tls))), h2))
    }

    #[cfg(not(feature = "tls"))]
    async fn secure(&self, _host: &str, _tcp: TcpStream) -> Result<(Conn, bool), Failure> {
        Err(Failure::checker(
            CheckKind::Config,
            "https needs the `tls` feature of health-check",
        ))
    }
}

/// A connection: plain TCP or TLS.
enum Conn {
    Plain(TokioIo<TcpStream>),
    /// Boxed: a TLS stream is over a kilobyte, a TCP one a few words.
    #[cfg(feature = "tls")]
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_flush(cx),
            #[cfg(feature = "tls")]
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            Conn::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_requests_are_origin_form_with_a_host_and_http2_ones_absolute() {
        let uri: Uri = "http://[::1]:8080/api/health?full=1".parse().unwrap();
        let headers = HeaderMap::new();
        let outgoing = Outgoing {
            method: &http::Method::HEAD,
            uri: &uri,
            headers: &headers,
        };
        let h1 = outgoing.build(false).unwrap();
        assert_eq!(h1.uri(), "/api/health?full=1");
        assert_eq!(h1.headers()[HOST], "[::1]:8080");
        assert_eq!(h1.method(), http::Method::HEAD);
        let h2 = outgoing.build(true).unwrap();
        assert_eq!(h2.uri(), &uri);
        assert!(!h2.headers().contains_key(HOST));
    }
}
