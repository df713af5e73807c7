//! The keep-alive connection pool of the HTTP probes.
//!
//! HTTP/1.1 connections are bare sockets here: a check takes one out, runs its exchange
//! on it in its own task ([`super::h1`]) and puts it back only when the response ended
//! cleanly, so back-to-back checks of one target reuse one connection and an idle one
//! costs a socket, no task and no buffers. HTTP/2 connections (h2c, or `h2` by ALPN) are
//! hyper's, with a driver task each, and shared by every check of their target.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use health_types::{CertInfo, ConfigError, HealthCheckConfig, Phases};
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Instant,
};

use super::{HttpClientConfig, Target, classify_http_error};
use crate::{
    failure::Failure,
    net::{self, Family},
};

/// How long an idle connection is kept. Below the common 60 s server keep-alive
/// limits, so a check rarely picks a connection the server is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per target: one serves a monitor, a few cover a shared client.
const POOL_MAX_IDLE_PER_HOST: usize = 4;

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

    /// A pooled connection for `key`, if one is idle and still open. An HTTP/2 one stays
    /// pooled for other checks to share; an HTTP/1 one is the caller's until
    /// [`checkin`](Self::checkin).
    pub(super) fn checkout(&self, key: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        // Most recently used first: the likeliest to be still open.
        while let Some(mut entry) = list.pop() {
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
                h1 @ Sender::H1(_) => h1,
            });
        }
        None
    }

    /// Puts an HTTP/1 connection whose response ended cleanly back into the pool.
    pub(super) fn checkin(&self, key: &str, conn: Conn) {
        self.put(key, Sender::H1(conn));
    }

    fn put(&self, key: &str, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = match idle.get_mut(key) {
            Some(list) => list,
            None => idle.entry(key.to_owned()).or_default(),
        };
        if list.len() >= POOL_MAX_IDLE_PER_HOST {
            list.retain(|entry| match &entry.sender {
                Sender::H2(h2) => h2.send.is_ready() && !h2.send.is_closed(),
                Sender::H1(_) => entry.since.elapsed() < POOL_IDLE_TIMEOUT,
            });
        }
        if list.len() < POOL_MAX_IDLE_PER_HOST {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Opens a connection to `target` (its name looked up until `deadline`), with the
    /// phases it took (`dns`, `connect`, `tls`). An HTTP/2 one (h2c, or ALPN `h2`) gets
    /// its driver task and is pooled at once, for other checks to share; an HTTP/1 one
    /// is a bare connection, driven by the check that uses it.
    pub(super) async fn connect(
        &self,
        target: &Target<'_>,
        deadline: Instant,
    ) -> Result<(Sender, Phases), Failure> {
        let (io, alpn_h2, phases) = self.connector.connect(target, deadline).await?;
        if !(self.prior_knowledge || alpn_h2) {
            return Ok((Sender::H1(io), phases));
        }
        let cert = io.cert().cloned();
        let peer = Arc::new(Peer::default());
        let io = FirstBytes {
            io,
            prior_knowledge: self.prior_knowledge,
            head: [0; 5],
            seen: 0,
            peer: peer.clone(),
        };
        // Boxed, as the TLS handshake below: large futures that plain HTTP/1.1 checks
        // would otherwise carry.
        let handshake = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io));
        let (send, connection) = Box::pin(handshake)
            .await
            .map_err(|err| classify_http_error(&err))?;
        // The driver ends when the connection closes or every sender is dropped: an
        // unpooled one (a redirect hop to another origin) when its check is done.
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "http/2 connection ended");
            }
        });
        let h2 = H2 { send, peer, cert };
        if target.same_origin {
            self.put(&target.key, Sender::H2(h2.clone()));
        }
        Ok((Sender::H2(h2), phases))
    }

    /// How many targets have idle connections, and how many connections that is.
    #[cfg(test)]
    pub(super) fn size(&self) -> (usize, usize) {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        (idle.len(), idle.values().map(Vec::len).sum())
    }
}

/// A connection of the pool.
pub(super) enum Sender {
    /// An HTTP/1.1 connection, idle between checks (see [`super::h1`]).
    H1(Conn),
    /// A shared HTTP/2 connection.
    H2(H2),
}

impl Sender {
    fn is_usable(&mut self) -> bool {
        match self {
            Sender::H1(conn) => conn.is_open(),
            Sender::H2(h2) => h2.send.is_ready() && !h2.send.is_closed(),
        }
    }
}

/// A shared HTTP/2 connection: its request handle, what its first bytes said, and the
/// peer's certificate (over TLS).
#[derive(Clone)]
pub(super) struct H2 {
    pub(super) send: http2::SendRequest<Empty<Bytes>>,
    pub(super) peer: Arc<Peer>,
    pub(super) cert: Option<Arc<CertInfo>>,
}

/// What the server of an HTTP/2 connection showed of itself before its first frame.
#[derive(Debug, Default)]
pub(super) struct Peer {
    state: AtomicU8,
}

/// [`Peer`] states besides 0 (nothing unusual): an HTTP/1 answer, a close before any
/// byte.
const PEER_ANSWERED_HTTP1: u8 = 1;
const PEER_CLOSED_SILENTLY: u8 = 2;

impl Peer {
    /// How the server showed that it does not speak HTTP/2, if it did: it answered the
    /// HTTP/2 preface with an HTTP/1 status line (`HTTP/`), or (with prior knowledge)
    /// closed the connection before sending a byte, as HTTP/1-only servers such as
    /// hyper's do; an HTTP/2 server sends its SETTINGS first.
    pub(super) fn not_http2(&self) -> Option<&'static str> {
        match self.state.load(Ordering::Relaxed) {
            PEER_ANSWERED_HTTP1 => Some("it answered in HTTP/1"),
            PEER_CLOSED_SILENTLY => Some("it closed the connection at the HTTP/2 preface"),
            _ => None,
        }
    }
}

/// The I/O of an HTTP/2 connection, watching the first five bytes the server sends.
struct FirstBytes {
    io: Conn,
    /// The connection speaks HTTP/2 by prior knowledge (h2c), not by ALPN.
    prior_knowledge: bool,
    head: [u8; 5],
    seen: usize,
    peer: Arc<Peer>,
}

impl FirstBytes {
    /// Notes the connection closing, or failing, before the server sent a byte.
    fn closed(&self) {
        if self.seen == 0 && self.prior_knowledge {
            self.peer
                .state
                .store(PEER_CLOSED_SILENTLY, Ordering::Relaxed);
        }
    }

    /// Passes `poll` on, noting a failure before the server sent a byte.
    fn noting<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &poll {
            self.closed();
        }
        poll
    }
}

impl AsyncRead for FirstBytes {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.seen < this.head.len() {
            let new = &buf.filled()[before..];
            if new.is_empty() && poll.is_ready() {
                this.closed();
            }
            let take = new.len().min(this.head.len() - this.seen);
            this.head[this.seen..this.seen + take].copy_from_slice(&new[..take]);
            this.seen += take;
            if this.head == *b"HTTP/" {
                this.peer
                    .state
                    .store(PEER_ANSWERED_HTTP1, Ordering::Relaxed);
            }
        }
        poll
    }
}

impl AsyncWrite for FirstBytes {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.noting(poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.noting(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.noting(poll)
    }
}

/// Opens the connections of a pool: DNS (addresses of the configured `ip_family`), TCP
/// (falling back to the next address), and TLS for `https`, with every failure
/// classified as a [`Failure`].
#[derive(Clone)]
pub(super) struct Connector {
    family: Family,
    #[cfg(feature = "tls")]
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// The same without the client certificate (`tls.cert`, `tls.key`), for another
    /// host than the configured one (a redirect); `tls` itself when there is none.
    #[cfg(feature = "tls")]
    tls_foreign: Arc<tokio_rustls::rustls::ClientConfig>,
    /// `tls.server_name`: sent by SNI and verified instead of the URL's host, on the
    /// configured host only.
    #[cfg(feature = "tls")]
    server_name: Option<health_types::tls::rustls::pki_types::ServerName<'static>>,
}

impl Connector {
    /// The connector of `config`: its `ip_family`, and its TLS setup (`tls_verify`, the
    /// `tls` table, [`HttpClientConfig::ca_file`]). A file that cannot be read is a
    /// config error naming the key and the file.
    #[cfg(feature = "tls")]
    pub(super) fn try_new(
        config: &HealthCheckConfig,
        options: &HttpClientConfig,
    ) -> Result<Self, ConfigError> {
        let setup =
            crate::tls::client_setup(config, &[b"h2", b"http/1.1"], options.ca_file.as_deref())?;
        Ok(Connector {
            family: config.ip_family.into(),
            tls: setup.own,
            tls_foreign: setup.foreign,
            server_name: setup.server_name,
        })
    }

    /// A connector whose `https` connections use `tls` as it is, over any address family.
    #[cfg(feature = "tls")]
    pub(super) fn with_tls(tls: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        Connector {
            family: Family::Any,
            tls_foreign: tls.clone(),
            tls,
            server_name: None,
        }
    }

    #[cfg(not(feature = "tls"))]
    pub(super) fn try_new(
        config: &HealthCheckConfig,
        options: &HttpClientConfig,
    ) -> Result<Self, ConfigError> {
        let needs_tls = |key: &'static str, value: String| ConfigError::Invalid {
            key,
            value,
            reason: "needs the `tls` feature of health-check".to_owned(),
        };
        if let Some(path) = &options.ca_file {
            return Err(needs_tls(
                "ca_file",
                format!("{:?}", path.display().to_string()),
            ));
        }
        if !config.tls.is_empty() {
            return Err(needs_tls("tls", format!("{:?}", config.tls)));
        }
        Ok(Connector {
            family: config.ip_family.into(),
        })
    }

    /// Connects to `target`, its name looked up until `deadline`; `true` when TLS chose
    /// HTTP/2 by ALPN. The phases say how long the lookup (none for an IP literal), the
    /// connect and the handshake took.
    async fn connect(
        &self,
        target: &Target<'_>,
        deadline: Instant,
    ) -> Result<(Conn, bool, Phases), Failure> {
        let (tcp, dns, connect) =
            net::resolve_and_connect(target.host, target.port, self.family, deadline).await?;
        let mut phases = Phases {
            dns,
            connect: Some(connect),
            ..Phases::default()
        };
        if target.https {
            let handshaking = Instant::now();
            let (conn, h2) = Box::pin(self.secure(target, tcp)).await?;
            phases.tls = Some(handshaking.elapsed());
            return Ok((conn, h2, phases));
        }
        Ok((Conn::Plain(tcp), false, phases))
    }

    /// The TLS handshake of `target`: with `tls.server_name` and the client certificate
    /// on the configured host, with the target's own name and none on another one.
    #[cfg(feature = "tls")]
    async fn secure(&self, target: &Target<'_>, tcp: TcpStream) -> Result<(Conn, bool), Failure> {
        let (config, name) = if target.own_host {
            (self.tls.clone(), self.server_name.as_ref())
        } else {
            (self.tls_foreign.clone(), None)
        };
        let tls = crate::tls::handshake_as(config, target.host, name, tcp).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let cert = crate::tls::peer_cert(&tls);
        Ok((Conn::Tls(Box::new(tls), cert), h2))
    }

    #[cfg(not(feature = "tls"))]
    async fn secure(&self, _target: &Target<'_>, _tcp: TcpStream) -> Result<(Conn, bool), Failure> {
        Err(Failure::checker(
            health_types::CheckKind::Config,
            "https needs the `tls` feature of health-check",
        ))
    }
}

/// A connection: plain TCP or TLS.
pub(super) enum Conn {
    Plain(TcpStream),
    /// Boxed: a TLS stream is over a kilobyte, a TCP one a few words. With the peer's
    /// leaf certificate, parsed once per connection, for every check that uses it.
    #[cfg(feature = "tls")]
    Tls(
        Box<tokio_rustls::client::TlsStream<TcpStream>>,
        Option<Arc<CertInfo>>,
    ),
}

impl Conn {
    /// The peer's leaf certificate (TLS only).
    pub(super) fn cert(&self) -> Option<&Arc<CertInfo>> {
        match self {
            Conn::Plain(_) => None,
            #[cfg(feature = "tls")]
            Conn::Tls(_, cert) => cert.as_ref(),
        }
    }

    /// Whether an idle connection is still open: the server sent nothing since the last
    /// response (no close, no stray bytes). A non-blocking read; on a connection that is
    /// fine it also clears the readiness that the last read left, so it costs the next
    /// check no extra system call.
    fn is_open(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self {
            Conn::Plain(tcp) => {
                matches!(tcp.try_read(&mut byte), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
            }
            // Through the TLS stream, not its socket: rustls may hold decrypted bytes (or
            // a close_notify) that the socket no longer shows.
            #[cfg(feature = "tls")]
            Conn::Tls(tls, _) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut buf = ReadBuf::new(&mut byte);
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_flush(cx),
            #[cfg(feature = "tls")]
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            Conn::Tls(io, _) => io.is_write_vectored(),
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
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}
