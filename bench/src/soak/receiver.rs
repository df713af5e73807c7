//! The webhook receiver: a loopback HTTP server that takes healthd's notifications.
//!
//! While up it answers a small, seeded share of requests with `500` or `429`
//! (`Retry-After: 1`), half each, and `200` to the rest; it logs every notification it
//! accepted (service, event, time field, arrival). While down its listener is closed and
//! its connections shut, so a delivery attempt is refused; it comes back on the same
//! port. A body that is not the webhook's JSON gets `400` and is counted, never logged.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Request, Response, StatusCode, body::Incoming, header::RETRY_AFTER, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
    task::JoinSet,
};

use super::{Stopwatch, verdict::Accepted};

/// The largest body read; healthd's are well under a kilobyte.
const MAX_BODY: usize = 64 * 1024;

/// What the receiver answers to one well-formed notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `200`: accepted and logged.
    Accept,
    /// `500`: to be retried.
    ServerError,
    /// `429` with `Retry-After: 1`: to be retried after a second.
    TooManyRequests,
}

impl Answer {
    /// Draws an answer: an error with probability `error_rate` (500 or 429, even odds),
    /// else `Accept`.
    pub(crate) fn pick(rng: &mut fastrand::Rng, error_rate: f64) -> Self {
        if rng.f64() >= error_rate {
            Answer::Accept
        } else if rng.bool() {
            Answer::ServerError
        } else {
            Answer::TooManyRequests
        }
    }

    /// The response.
    fn response(self) -> Response<Full<Bytes>> {
        let (status, body) = match self {
            Answer::Accept => (StatusCode::OK, "ok"),
            Answer::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "try again"),
            Answer::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "slow down"),
        };
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        if self == Answer::TooManyRequests {
            response
                .headers_mut()
                .insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// The fields of the webhook's default JSON body that the soak reads.
#[derive(Debug, Deserialize)]
struct Body {
    event: String,
    service: String,
    time: String,
}

/// Counts of the receiver's answers.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    server_errors: AtomicU64,
    too_many: AtomicU64,
    malformed: AtomicU64,
}

/// A copy of the receiver's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ReceiverCounts {
    /// Answered 200 (logged).
    pub(crate) accepted: u64,
    /// Answered 500.
    pub(crate) server_errors: u64,
    /// Answered 429.
    pub(crate) too_many: u64,
    /// Answered 400: not the webhook's JSON.
    pub(crate) malformed: u64,
}

#[derive(Debug)]
struct Shared {
    clock: Stopwatch,
    error_rate: f64,
    rng: Mutex<fastrand::Rng>,
    log: Mutex<Vec<Accepted>>,
    counters: Counters,
    /// When the last notification was accepted (`i64::MIN`: none yet).
    last_accepted: AtomicI64,
    /// Why the listener could not be opened again, if it could not.
    bind_error: Mutex<Option<String>>,
}

impl Shared {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return self.malformed(),
        };
        let Ok(body) = serde_json::from_slice::<Body>(&body) else {
            return self.malformed();
        };
        let answer = Answer::pick(
            &mut self.rng.lock().unwrap_or_else(PoisonError::into_inner),
            self.error_rate,
        );
        let counter = match answer {
            Answer::Accept => {
                let arrived = self.clock.ms();
                let at = humantime::parse_rfc3339(&body.time)
                    .ok()
                    .map(|time| self.clock.wall_ms(time));
                self.log
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Accepted {
                        service: body.service,
                        event: body.event,
                        time: body.time,
                        at,
                        arrived,
                    });
                self.last_accepted.fetch_max(arrived, Ordering::AcqRel);
                &self.counters.accepted
            }
            Answer::ServerError => &self.counters.server_errors,
            Answer::TooManyRequests => &self.counters.too_many,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer.response()
    }

    fn malformed(&self) -> Response<Full<Bytes>> {
        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
        let mut response = Response::new(Full::new(Bytes::from_static(b"not a notification")));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response
    }
}

/// The running receiver. Dropping it closes everything.
#[derive(Debug)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Whether it should be up.
    want: watch::Sender<bool>,
    /// Whether its listener is open.
    listening: watch::Receiver<bool>,
    _task: JoinSet<()>,
}

impl Receiver {
    /// Starts the receiver on `addr` (a fixed port, so that it can come back on it),
    /// answering errors at `error_rate` drawn from `seed`.
    pub(crate) async fn start(
        clock: Stopwatch,
        addr: SocketAddr,
        error_rate: f64,
        seed: u64,
    ) -> Result<Self> {
        let listener = bind(addr)?;
        let shared = Arc::new(Shared {
            clock,
            error_rate,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            log: Mutex::default(),
            counters: Counters::default(),
            last_accepted: AtomicI64::new(i64::MIN),
            bind_error: Mutex::default(),
        });
        let (want, want_rx) = watch::channel(true);
        let (listening_tx, listening) = watch::channel(true);
        let mut task = JoinSet::new();
        task.spawn(accept_loop(
            addr,
            listener,
            shared.clone(),
            want_rx,
            listening_tx,
        ));
        Ok(Receiver {
            addr,
            shared,
            want,
            listening,
            _task: task,
        })
    }

    /// Where it listens (while up).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Brings it up (listening again) or down (listener closed, connections shut), and
    /// waits (10 s at most) until it is so.
    pub(crate) async fn set_up(&self, up: bool) -> Result<()> {
        self.want.send_replace(up);
        let mut listening = self.listening.clone();
        let reached =
            tokio::time::timeout(Duration::from_secs(10), listening.wait_for(|l| *l == up)).await;
        if let Some(err) = self
            .shared
            .bind_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            bail!("the receiver cannot listen on {} again: {err}", self.addr);
        }
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("the receiver's task ended"),
            Err(_) => bail!(
                "the receiver did not go {} in 10 s",
                if up { "up" } else { "down" }
            ),
        }
    }

    /// A copy of every accepted notification, in arrival order.
    pub(crate) fn accepted(&self) -> Vec<Accepted> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When the last notification was accepted, if any was.
    pub(crate) fn last_accepted(&self) -> Option<i64> {
        let at = self.shared.last_accepted.load(Ordering::Acquire);
        (at != i64::MIN).then_some(at)
    }

    /// The answers so far.
    pub(crate) fn counts(&self) -> ReceiverCounts {
        let c = &self.shared.counters;
        ReceiverCounts {
            accepted: c.accepted.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
            too_many: c.too_many.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }
}

/// A listener on `addr` with `SO_REUSEADDR`, so that it can be opened again at once
/// while the connections of its last life wait in TIME_WAIT.
fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4().context("cannot create a socket")?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot bind {addr}"))?;
    socket
        .listen(1024)
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves while wanted up; closes the listener when wanted down and opens it again
/// (retrying for 10 s) when wanted up.
async fn accept_loop(
    addr: SocketAddr,
    first: TcpListener,
    shared: Arc<Shared>,
    mut want: watch::Receiver<bool>,
    listening: watch::Sender<bool>,
) {
    let mut listener = Some(first);
    loop {
        let Some(open) = listener.take() else {
            if want.wait_for(|up| *up).await.is_err() {
                return;
            }
            match rebind(addr).await {
                Ok(open) => listener = Some(open),
                Err(err) => {
                    *shared
                        .bind_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(format!("{err:#}"));
                    return;
                }
            }
            continue;
        };
        listening.send_replace(true);
        loop {
            tokio::select! {
                accepted = open.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(connection(stream, shared.clone(), want.clone()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                changed = want.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*want.borrow_and_update() {
                        break;
                    }
                }
            }
        }
        drop(open);
        listening.send_replace(false);
    }
}

async fn rebind(addr: SocketAddr) -> Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Serves one connection until it ends or the receiver goes down; then a request in
/// flight is answered (so that an accepted message is never retried because its answer
/// was cut off) and the connection closed.
async fn connection(stream: TcpStream, shared: Arc<Shared>, mut want: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(shared.handle(request).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = want.wait_for(|up| !*up) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::soak::daemon::free_port;

    #[test]
    fn no_error_rate_always_accepts_and_full_rate_never_does() {
        let mut rng = fastrand::Rng::with_seed(1);
        assert!((0..1_000).all(|_| Answer::pick(&mut rng, 0.0) == Answer::Accept));
        let errors: Vec<Answer> = (0..1_000).map(|_| Answer::pick(&mut rng, 1.0)).collect();
        assert!(!errors.contains(&Answer::Accept));
        let server = errors.iter().filter(|a| **a == Answer::ServerError).count();
        assert!((400..=600).contains(&server), "{server} of 1000 were 500s");
    }

    #[test]
    fn the_error_share_follows_the_rate() {
        let mut rng = fastrand::Rng::with_seed(2);
        let errors = (0..100_000)
            .filter(|_| Answer::pick(&mut rng, 0.05) != Answer::Accept)
            .count();
        assert!(
            (4_500..=5_500).contains(&errors),
            "{errors} errors in 100 000"
        );
    }

    #[test]
    fn answers_have_their_status_and_429_says_when_to_retry() {
        assert_eq!(Answer::Accept.response().status(), StatusCode::OK);
        let server = Answer::ServerError.response();
        assert_eq!(server.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(server.headers().get(RETRY_AFTER).is_none());
        let busy = Answer::TooManyRequests.response();
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            busy.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }

    fn body(service: &str, event: &str, time: &str) -> String {
        // The webhook's default body, every key present.
        serde_json::json!({
            "event": event, "title": "t", "message": "m", "fields": [],
            "service": service, "url": "http://127.0.0.1:1/t/0", "detail": "HTTP 503",
            "level": "warn", "color": "#ff0000", "time": time,
        })
        .to_string()
    }

    async fn post(
        client: &reqwest::Client,
        addr: SocketAddr,
        body: String,
    ) -> reqwest::Result<u16> {
        let response = client
            .post(format!("http://{addr}/notify"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    #[tokio::test]
    async fn it_logs_what_it_accepts_and_refuses_connections_while_down() {
        let clock = Stopwatch::start();
        let addr = free_port().expect("a free port");
        let receiver = Receiver::start(clock, addr, 0.0, 1)
            .await
            .expect("receiver");
        // A new connection for every request: each one meets the listener as it is.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");

        let time = humantime::format_rfc3339_seconds(clock.wall(clock.ms())).to_string();
        let status = post(&client, receiver.addr(), body("t3", "down", &time)).await;
        assert_eq!(status.expect("answered"), 200);
        let status = post(&client, receiver.addr(), "{\"event\":1}".to_owned()).await;
        assert_eq!(status.expect("answered"), 400);

        // A kept-alive connection, served once.
        let mut kept = TcpStream::connect(addr).await.expect("connects");
        kept.write_all(b"GET / HTTP/1.1\r\nhost: r\r\n\r\n")
            .await
            .expect("sends");
        let mut answer = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut answer)).await;
        assert!(read.expect("answered in time").expect("reads") > 0);

        receiver.set_up(false).await.expect("down");
        // Its connections are shut and its listener closed: refused.
        let closed = async { while kept.read(&mut answer).await.is_ok_and(|n| n > 0) {} };
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("the kept-alive connection is closed");
        let refused = post(&client, receiver.addr(), body("t3", "up", &time)).await;
        assert!(
            refused.is_err_and(|e| e.is_connect()),
            "delivered while down"
        );

        receiver.set_up(true).await.expect("up again");
        let status = post(&client, receiver.addr(), body("t3", "up", &time)).await;
        assert_eq!(status.expect("answered"), 200);

        let log = receiver.accepted();
        assert_eq!(log.len(), 2);
        assert_eq!(
            (log[0].service.as_str(), log[0].event.as_str()),
            ("t3", "down")
        );
        assert_eq!(log[1].event, "up");
        // The time field, whole seconds cut down, reads back on the stopwatch's scale.
        let at = log[0].at.expect("a readable time");
        assert!(
            at <= log[0].arrived && log[0].arrived - at < 2_000,
            "{log:?}"
        );
        assert_eq!(receiver.last_accepted(), Some(log[1].arrived));
        assert_eq!(
            receiver.counts(),
            ReceiverCounts {
                accepted: 2,
                malformed: 2,
                ..ReceiverCounts::default()
            }
        );
    }

    #[tokio::test]
    async fn errors_are_answered_and_not_logged() {
        let clock = Stopwatch::start();
        let addr = free_port().expect("a free port");
        let receiver = Receiver::start(clock, addr, 1.0, 3)
            .await
            .expect("receiver");
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let status = post(&client, addr, body("t0", "down", "2026-01-01T00:00:00Z")).await;
            statuses.push(status.expect("answered"));
        }
        assert!(
            statuses.iter().all(|s| *s == 500 || *s == 429),
            "{statuses:?}"
        );
        assert!(receiver.accepted().is_empty());
        let counts = receiver.counts();
        assert_eq!(counts.server_errors + counts.too_many, 20);
    }
}
