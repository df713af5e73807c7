//! The proxy: the rotation its watcher tasks keep, the request path (round-robin, the
//! connect retry, passive signals) and the hyper server.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::pin,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use health_monitor::{CancellationToken, HealthMonitor, Snapshot};
use health_types::ErrorChain;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    HeaderMap, Method, Request, Response, StatusCode, Uri,
    body::{Bytes, Incoming},
    header::{self, HeaderName, HeaderValue},
    http::uri::{self, PathAndQuery},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, Error as ClientError, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use tokio::{
    net::{TcpListener, TcpStream},
    runtime::Handle,
    sync::watch,
};
use tracing::{debug, info, warn};

use crate::{
    body::ForwardBody,
    error::ProxyError,
    upstream::{Member, Upstream},
};

/// The body of the proxy's answers: an upstream's streamed body or the proxy's own text.
type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How long a connection may go on answering after [`Proxy::shutdown`].
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The proxy's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Consecutive failed exchanges with one upstream (`5xx` answers, connect and
    /// transport errors) after which its monitor checks it at once; 0 turns passive
    /// signals off.
    pub passive_threshold: u32,
    /// How long connecting to an upstream may take before it counts as a connect failure
    /// (and the request is retried on another upstream).
    pub connect_timeout: Duration,
}

impl Default for ProxyConfig {
    /// `passive_threshold` 3, `connect_timeout` 2 s.
    fn default() -> Self {
        ProxyConfig {
            passive_threshold: 3,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// A reverse proxy that balances round-robin over the upstreams in rotation: those whose
/// monitor's status [is good](health_types::Status::is_good).
///
/// Cheap to clone (all clones are the same proxy). See the [crate docs](crate) for the
/// passive signals and the retry rule.
#[derive(Clone, Debug)]
pub struct Proxy {
    inner: Arc<Inner>,
}

/// What the request path, the watcher tasks and the connections share.
#[derive(Debug)]
struct Inner {
    members: Box<[Member]>,
    /// Indices into `members` of the upstreams in rotation, in order.
    rotation: ArcSwap<Vec<usize>>,
    /// Serialises rebuilds of `rotation`, so the last one sees every watcher's flag.
    rebuild: Mutex<()>,
    /// The round-robin cursor.
    next: AtomicUsize,
    client: Client<HttpConnector, ForwardBody>,
    config: ProxyConfig,
    /// Passive checks asked for since the proxy was built.
    passive_checks: Arc<AtomicU64>,
    /// Cancelled by [`Proxy::shutdown`] or when the last handle is gone.
    token: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Proxy {
    /// A proxy over `upstreams`, whose monitors the caller starts and stops; spawns one
    /// task per upstream that follows its monitor's snapshots. Until a monitor is
    /// started its status (`unknown`) keeps the upstream out of rotation.
    ///
    /// # Errors
    ///
    /// [`ProxyError::NoUpstreams`] for an empty list, [`ProxyError::NoRuntime`] outside
    /// a tokio runtime.
    pub fn try_new(upstreams: Vec<Upstream>, config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let runtime = Handle::try_current().map_err(|_| ProxyError::NoRuntime)?;
        if upstreams.is_empty() {
            return Err(ProxyError::NoUpstreams);
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        let inner = Arc::new(Inner {
            members: upstreams.into_iter().map(Member::new).collect(),
            rotation: ArcSwap::from_pointee(Vec::new()),
            rebuild: Mutex::new(()),
            next: AtomicUsize::new(0),
            client,
            config,
            passive_checks: Arc::new(AtomicU64::new(0)),
            token: CancellationToken::new(),
        });
        inner.rebuild_rotation();
        for (index, member) in inner.members.iter().enumerate() {
            runtime.spawn(follow_monitor(
                Arc::downgrade(&inner),
                index,
                member.upstream.monitor().subscribe(),
                inner.token.clone(),
            ));
        }
        Ok(Proxy { inner })
    }

    /// Serves HTTP/1.1 on `listener` until [`shutdown`](Self::shutdown); then lets each
    /// open connection finish its answer (for up to 5 s) and closes it.
    pub async fn serve(&self, listener: TcpListener) {
        let token = self.inner.token.clone();
        loop {
            let (stream, peer) = tokio::select! {
                () = token.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        warn!(error = %err, "cannot accept a connection");
                        // Out of file descriptors, say: let connections close rather
                        // than spin on the error.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            tokio::spawn(serve_connection(Arc::clone(&self.inner), stream, peer));
        }
    }

    /// Stops [`serve`](Self::serve) and the watcher tasks; the monitors go on.
    pub fn shutdown(&self) {
        self.inner.token.cancel();
    }

    /// The names of the upstreams in rotation, in order.
    pub fn in_rotation(&self) -> Vec<&str> {
        self.inner
            .rotation
            .load()
            .iter()
            .map(|&index| self.inner.members[index].upstream.name())
            .collect()
    }

    /// The upstreams, in rotation or not.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.inner.members.iter().map(|member| &member.upstream)
    }

    /// How many passive checks the proxy has asked for since it was built.
    pub fn passive_checks(&self) -> u64 {
        self.inner.passive_checks.load(Ordering::Relaxed)
    }
}

/// One upstream's watcher: puts it in or out of rotation as its monitor's snapshots
/// say, until the proxy is shut down or gone, or the monitor is dropped.
async fn follow_monitor(
    inner: Weak<Inner>,
    index: usize,
    mut updates: watch::Receiver<Arc<Snapshot>>,
    token: CancellationToken,
) {
    loop {
        // A clone, so the watch's lock is not held while the rotation is rebuilt.
        let snapshot = Arc::clone(&updates.borrow_and_update());
        match inner.upgrade() {
            Some(inner) => inner.follow(index, &snapshot),
            None => return,
        }
        tokio::select! {
            () = token.cancelled() => return,
            changed = updates.changed() => if changed.is_err() {
                return;
            },
        }
    }
}

impl Inner {
    /// Takes in a snapshot of member `index`'s monitor.
    fn follow(&self, index: usize, snapshot: &Snapshot) {
        let good = snapshot.status.is_good();
        let member = &self.members[index];
        if member.good.swap(good, Ordering::AcqRel) == good {
            return;
        }
        info!(
            upstream = member.upstream.name(),
            status = %snapshot.status,
            detail = %snapshot.detail,
            in_rotation = good,
            "rotation changed"
        );
        self.rebuild_rotation();
    }

    /// Publishes the members whose flag is set as the rotation.
    fn rebuild_rotation(&self) {
        let _writer = self.rebuild.lock().unwrap_or_else(PoisonError::into_inner);
        let rotation = (0..self.members.len())
            .filter(|&index| self.members[index].good.load(Ordering::Acquire))
            .collect();
        self.rotation.store(Arc::new(rotation));
    }

    /// The next upstream in rotation, round-robin, other than `except`.
    fn pick(&self, except: Option<usize>) -> Option<usize> {
        let rotation = self.rotation.load();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..rotation.len())
            .map(|k| rotation[start.wrapping_add(k) % rotation.len()])
            .find(|&index| Some(index) != except)
    }

    /// Answers one client request.
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let Some(first) = self.pick(None) else {
            return Ok(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no upstream in rotation: no upstream's health monitor reports it good\n",
            ));
        };
        let (parts, body) = request.into_parts();
        let head = Head::new(parts, peer);
        let (body, unsent) = ForwardBody::new(body);
        let err = match self.send(first, &head, body).await {
            Ok(response) => return Ok(response),
            Err(err) => err,
        };
        // Only a connect failure is retried, and only with the body unread: nothing
        // reached the upstream, so the request cannot have had an effect there.
        if err.is_connect()
            && let Some(second) = self.pick(Some(first))
            && let Some(body) = unsent.take()
        {
            debug!(
                upstream = self.members[first].upstream.name(),
                retry = self.members[second].upstream.name(),
                error = %ErrorChain(&err),
                "cannot connect; retrying once"
            );
            let (body, _) = ForwardBody::new(body);
            return Ok(match self.send(second, &head, body).await {
                Ok(response) => response,
                Err(err) => self.bad_gateway(second, &err),
            });
        }
        Ok(self.bad_gateway(first, &err))
    }

    /// Forwards `head` and `body` to member `index`, noting the outcome as a passive
    /// signal.
    async fn send(
        &self,
        index: usize,
        head: &Head,
        body: ForwardBody,
    ) -> Result<Response<ProxyBody>, ClientError> {
        let member = &self.members[index];
        let threshold = self.config.passive_threshold;
        match self
            .client
            .request(head.to(member.upstream.origin(), body))
            .await
        {
            Ok(response) => {
                if response.status().is_server_error() {
                    member.failed(threshold, &self.passive_checks);
                } else {
                    member.passed();
                }
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, body.boxed()))
            }
            Err(err) => {
                member.failed(threshold, &self.passive_checks);
                Err(err)
            }
        }
    }

    /// The `502` for a request member `index` did not answer; the cause is logged, not
    /// shown to the client.
    fn bad_gateway(&self, index: usize, err: &ClientError) -> Response<ProxyBody> {
        let name = self.members[index].upstream.name();
        warn!(upstream = name, error = %ErrorChain(err), "upstream did not answer");
        text(
            StatusCode::BAD_GATEWAY,
            format!("upstream {name} did not answer\n"),
        )
    }
}

/// A client request's head as it is forwarded: hop-by-hop headers dropped, the client's
/// address appended to `x-forwarded-for`. Kept apart from the body so a connect retry
/// can send it again.
#[derive(Debug)]
struct Head {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
}

impl Head {
    fn new(parts: hyper::http::request::Parts, peer: SocketAddr) -> Head {
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        if let Ok(ip) = HeaderValue::try_from(peer.ip().to_string()) {
            headers.append(HeaderName::from_static("x-forwarded-for"), ip);
        }
        Head {
            method: parts.method,
            path: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            headers,
        }
    }

    /// The request to `origin` (HTTP/1.1).
    fn to(&self, origin: &Uri, body: ForwardBody) -> Request<ForwardBody> {
        let mut parts = uri::Parts::default();
        parts.scheme = origin.scheme().cloned();
        parts.authority = origin.authority().cloned();
        parts.path_and_query = Some(self.path.clone());
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() =
            Uri::from_parts(parts).expect("an origin's scheme and authority and a path make a URI");
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Drops the headers that concern one connection only (RFC 9110 §7.6.1): `Connection`,
/// those it names, and the classic list.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// A plain-text answer of the proxy's own.
fn text(status: StatusCode, reason: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(reason.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves one client connection until it closes or the proxy shuts down.
async fn serve_connection(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr) {
    if let Err(err) = stream.set_nodelay(true) {
        debug!(%peer, error = %err, "cannot set TCP_NODELAY");
    }
    let token = inner.token.clone();
    let service = service_fn(move |request| Arc::clone(&inner).handle(request, peer));
    let mut connection = pin!(
        http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service)
    );
    tokio::select! {
        served = connection.as_mut() => if let Err(err) = served {
            debug!(%peer, error = %ErrorChain(&err), "client connection ended");
        },
        () = token.cancelled() => {
            connection.as_mut().graceful_shutdown();
            if tokio::time::timeout(SHUTDOWN_GRACE, connection).await.is_err() {
                debug!(%peer, "client connection cut at shutdown");
            }
        }
    }
}
