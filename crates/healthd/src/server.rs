//! The one serving loop of healthd's HTTP servers, the API and the agent, plain and TLS
//! (SPEC §9.3): each connection has a header-read deadline, an idle keep-alive deadline
//! and a place under a connection cap, and the loop outlives running out of file
//! descriptors.
//!
//! A connection is closed (the rules are [`Activity::deadline`]'s):
//! - when its first request has not arrived [`Limits::header_timeout`] after it was
//!   accepted (after the TLS handshake, which has its own bound): a client that connects
//!   and sends nothing, or sends its first request head byte by byte;
//! - on HTTP/1, when a later request head has not been read whole
//!   [`Limits::header_timeout`] after its first byte;
//! - when no request has been in flight for [`Limits::idle_timeout`] (keep-alive).
//!
//! A request is in flight from its head until its answer's body is sent or dropped, so a
//! long answer (a large scrape, a stream of events) is never cut by these deadlines.
//! hyper's own HTTP/1 `header_read_timeout` is not used: its timer also runs while an
//! HTTP/1 connection waits between requests, which would make the idle limit the
//! header limit, and it does not cover the bytes hyper-util's `auto` builder reads to
//! tell HTTP/1 from HTTP/2. On HTTP/2 a head is one frame, so only the first-request and
//! idle deadlines apply; frames between requests (pings, window updates) do not hold a
//! connection open.
//!
//! Past [`Limits::max_connections`] a new connection is accepted and closed at once, so
//! a flood of idle connections can neither hold more descriptors than the cap nor stall
//! the accept loop; a failing `accept` (EMFILE, ENFILE, ENOBUFS, ENOMEM) is logged and
//! retried after [`ACCEPT_BACKOFF`] instead of spinning.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo};
use http_body_util::BodyExt;
use hyper::{Request, Response, Version, body::Incoming, service::Service};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How long a client has to send a whole request head (SPEC §9.3: 10 s).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay open with no request in flight (SPEC §9.3: 60 s).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default connection cap (`[server] max_connections`, SPEC §9.3: 512).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// How long a TLS handshake may take.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may go on once the server is told to stop.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(1);
/// The pause after a failed `accept` (out of descriptors, buffers or memory): short,
/// since connections finishing free what it lacked, and long enough not to spin.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits of one server. The default is SPEC §9.3's; tests use small values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Default [`HEADER_TIMEOUT`].
    pub(crate) header_timeout: Duration,
    /// Default [`IDLE_TIMEOUT`].
    pub(crate) idle_timeout: Duration,
    /// Default [`DEFAULT_MAX_CONNECTIONS`]; at least 1.
    pub(crate) max_connections: usize,
    /// Default [`TLS_HANDSHAKE_TIMEOUT`].
    pub(crate) tls_handshake_timeout: Duration,
    /// Default [`STOP_GRACE`].
    pub(crate) stop_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            stop_grace: STOP_GRACE,
        }
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` is cancelled,
/// then lets requests in flight finish for [`Limits::stop_grace`] and returns once every
/// connection is closed. Each request carries the client's address as axum's
/// [`ConnectInfo<SocketAddr>`].
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    // Connections closed at the cap since the last one let in, and whether `accept` has
    // been failing: each streak is logged once at its start and once at its end.
    let mut refused: u64 = 0;
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // The client went away before it was accepted: nothing is short.
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                if failing {
                    tracing::debug!(error = %err, "accept failed again");
                } else {
                    tracing::warn!(error = %err, backoff = ?ACCEPT_BACKOFF, "accept failed; retrying");
                    failing = true;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!("accepting connections again");
        }
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Past the cap: dropping the stream closes it at once.
            if refused == 0 {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection cap reached: new connections are closed at once"
                );
            }
            refused += 1;
            drop(stream);
            continue;
        };
        if refused > 0 {
            tracing::info!(refused, "below the connection cap again");
            refused = 0;
        }
        connections.spawn(connection(
            stream,
            peer,
            tls.clone(),
            app.clone(),
            limits,
            stop.clone(),
            permit,
        ));
    }
    connections.close();
    connections.wait().await;
}

/// Whether a failed `accept` concerns only the connection being accepted.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// One accepted connection: the TLS handshake (bounded), then HTTP under the deadlines.
/// Its place under the cap (`_permit`) is held until it ends.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let Some(acceptor) = tls else {
        return http(stream, peer, app, limits, stop).await;
    };
    let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        () = stop.cancelled() => return,
        handshake = handshake => match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::info!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    http(stream, peer, app, limits, stop).await;
}

/// Serves HTTP/1 or HTTP/2 on one connection until it ends, a deadline passes, or `stop`
/// is cancelled (then requests in flight get [`Limits::stop_grace`]).
async fn http<I>(io: I, peer: SocketAddr, app: Router, limits: Limits, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Watched {
        io,
        activity: Arc::clone(&activity),
    });
    let service = Tracked {
        inner: TowerToHyperService::new(app),
        peer,
        activity: Arc::clone(&activity),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The deadlines are `activity`'s (see the module docs).
    builder.http1().header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => {
            if let Err(err) = ended {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            return;
        }
        expiry = activity.expired(limits) => {
            tracing::debug!(%peer, reason = expiry.reason(), "closing the connection");
            return;
        }
        () = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.stop_grace, conn).await;
}

/// Which deadline closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// A request head was not read whole in time (the first request included).
    Header,
    /// No request was in flight for the idle timeout.
    Idle,
}

impl Expiry {
    fn reason(self) -> &'static str {
        match self {
            Expiry::Header => "request head not received within the header timeout",
            Expiry::Idle => "idle for the keep-alive timeout",
        }
    }
}

/// What a connection is doing, as far as its deadlines are concerned.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<ActivityState>,
    /// Woken whenever the deadline may have moved.
    changed: Notify,
}

#[derive(Debug)]
struct ActivityState {
    /// When the connection was accepted (after its TLS handshake).
    opened: Instant,
    /// Requests whose answers are not yet sent whole.
    in_flight: usize,
    /// Requests seen so far.
    requests: u64,
    /// Whether the requests are HTTP/2, where heads are frames (see the module docs).
    http2: bool,
    /// When the last request in flight ended.
    idle_since: Instant,
    /// When the first byte of the next HTTP/1 request head arrived, while it is unread.
    head_started: Option<Instant>,
}

impl Activity {
    /// A connection accepted at `opened`.
    pub(crate) fn new(opened: Instant) -> Self {
        Activity {
            state: Mutex::new(ActivityState {
                opened,
                in_flight: 0,
                requests: 0,
                http2: false,
                idle_since: opened,
                head_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state stays consistent whatever panicked while it was held: each change is
        // one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is to be closed and why; `None` while a request is in flight.
    ///
    /// | state | deadline |
    /// |---|---|
    /// | a request in flight | none |
    /// | no request yet | accepted + header timeout |
    /// | HTTP/1, a head begun | its first byte + header timeout |
    /// | otherwise | last request's end + idle timeout |
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_started {
            _ if state.requests == 0 => (state.opened + limits.header_timeout, Expiry::Header),
            Some(first_byte) => (first_byte + limits.header_timeout, Expiry::Header),
            None => (state.idle_since + limits.idle_timeout, Expiry::Idle),
        })
    }

    /// Bytes were read from the client at `now`.
    pub(crate) fn bytes_read(&self, now: Instant) {
        let mut state = self.state();
        if state.in_flight == 0
            && state.requests > 0
            && !state.http2
            && state.head_started.is_none()
        {
            state.head_started = Some(now);
            drop(state);
            self.changed.notify_one();
        }
    }

    /// A request (of `version`) reached the service: it is in flight until the returned
    /// guard is dropped.
    pub(crate) fn request_started(self: &Arc<Self>, version: Version) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.requests += 1;
        state.http2 = version == Version::HTTP_2;
        state.head_started = None;
        drop(state);
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }

    /// Resolves when the connection's deadline passes.
    async fn expired(&self, limits: Limits) -> Expiry {
        loop {
            // `notify_one` keeps a wake-up for a waiter that is not there yet, so a
            // change between reading the deadline and waiting is not missed.
            let changed = self.changed.notified();
            let Some((at, _)) = self.deadline(&limits) else {
                changed.await;
                continue;
            };
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(at) => {
                    // Read again: the state may have changed since the wake-up was sent.
                    if let Some((at, expiry)) = self.deadline(&limits)
                        && at <= Instant::now()
                    {
                        return expiry;
                    }
                }
            }
        }
    }
}

/// A request in flight; it ends when this is dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

/// The connection's IO, telling its [`Activity`] when bytes arrive.
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read(Instant::now());
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The app as a hyper service that hands it the client's address and keeps each request
/// in flight until its answer's body is done.
struct Tracked {
    inner: TowerToHyperService<Router>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl Service<Request<Incoming>> for Tracked {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started(request.version());
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // The guard lives in the body, so the request stays in flight until the
            // body is sent whole or dropped.
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &in_flight;
                    frame
                }))
            }))
        })
    }
}

/// Raises the soft open-files limit to the hard limit (SPEC §9.3): every connection and
/// every probe takes a descriptor, and the usual soft limit of 1 024 is what a flood of
/// idle connections used to exhaust.
pub(crate) fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-files limit raised to the hard limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-files limit"),
    }
}

#[cfg(test)]
mod tests;
