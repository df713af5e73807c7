//! The flapping upstreams: a few hundred loopback HTTP/1.1 listeners that serve every
//! target, each target on its own path (`/t/<i>`, with or without a trailing slash) and
//! with its own [`Schedule`]: `200 up` while it is up, `503 down` while it is down.
//!
//! Any listener answers for any target (the config spreads the targets over them), so
//! 10 000 targets cost a few hundred listening sockets plus healthd's pooled keep-alive
//! connections, well inside the machine's open-files limit. Every request is recorded
//! in its target's [`RequestLog`], and the schedules with the moments flapping began and
//! the drain began are the ground truth ([`Upstreams::ground_truth`]).

use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinSet};

use super::{
    Stopwatch,
    schedule::{Outage, Schedule},
    verdict::RequestLog,
};

/// Not yet (flapping not begun, drain not begun).
const NEVER: i64 = i64::MAX;

/// What the listeners share.
#[derive(Debug)]
struct Shared {
    clock: Stopwatch,
    schedules: Vec<Schedule>,
    /// When flapping began (before it, every target is up).
    from: AtomicI64,
    /// When the drain began (from then on, every target is up).
    drain: AtomicI64,
    logs: Vec<Mutex<RequestLog>>,
    /// Silences at least this long are kept in the logs.
    record_gap: i64,
}

impl Shared {
    /// The answer to a request for `path` at `now`, recorded in the target's log.
    fn answer(&self, path: &str, now: i64) -> StatusCode {
        let Some(index) = target_of(path).filter(|&i| i < self.schedules.len()) else {
            return StatusCode::NOT_FOUND;
        };
        self.logs[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(now, self.record_gap);
        let from = self.from.load(Ordering::Acquire);
        let drain = self.drain.load(Ordering::Acquire);
        if self.schedules[index].is_down(now, from, drain) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }
}

/// The index in `/t/<i>` or `/t/<i>/` (healthd joins the URL's path with `path = "/"`).
fn target_of(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("/t/")?;
    let digits = rest.strip_suffix('/').unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The running upstreams. Dropping them stops the listeners.
#[derive(Debug)]
pub(crate) struct Upstreams {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    _listeners: JoinSet<()>,
}

impl Upstreams {
    /// Starts `listeners` listeners on `127.0.0.1` serving one target per schedule, all
    /// up until [`Upstreams::start_flapping`].
    pub(crate) async fn start(
        clock: Stopwatch,
        schedules: Vec<Schedule>,
        listeners: usize,
        record_gap: i64,
    ) -> Result<Self> {
        let logs = schedules.iter().map(|_| Mutex::default()).collect();
        let shared = Arc::new(Shared {
            clock,
            schedules,
            from: AtomicI64::new(NEVER),
            drain: AtomicI64::new(NEVER),
            logs,
            record_gap,
        });
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::with_capacity(listeners);
        for _ in 0..listeners.max(1) {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .context("cannot open an upstream listener")?;
            addrs.push(listener.local_addr()?);
            tasks.spawn(serve(listener, shared.clone()));
        }
        Ok(Upstreams {
            shared,
            addrs,
            _listeners: tasks,
        })
    }

    /// Target `index`'s URL: its listener (targets spread round-robin) and its path.
    pub(crate) fn url(&self, index: usize) -> String {
        let addr = self.addrs[index % self.addrs.len()];
        format!("http://{addr}/t/{index}")
    }

    /// The listeners' addresses.
    #[cfg(test)]
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Begins every target's schedule at `at` (on the stopwatch).
    pub(crate) fn start_flapping(&self, at: i64) {
        self.shared.from.store(at, Ordering::Release);
    }

    /// Ends the flapping at `at`: every target is up from then on.
    pub(crate) fn drain(&self, at: i64) {
        self.shared.drain.store(at, Ordering::Release);
    }

    /// Each target's outages so far: from its schedule, the moment flapping began and the
    /// moment the drain began (or `now`, for a run still flapping).
    pub(crate) fn ground_truth(&self, now: i64) -> Vec<Vec<Outage>> {
        let from = self.shared.from.load(Ordering::Acquire);
        if from == NEVER {
            return vec![Vec::new(); self.shared.schedules.len()];
        }
        let until = self.shared.drain.load(Ordering::Acquire).min(now);
        self.shared
            .schedules
            .iter()
            .map(|s| s.outages(from, until))
            .collect()
    }

    /// A copy of every target's request log.
    pub(crate) fn request_logs(&self) -> Vec<RequestLog> {
        self.shared
            .logs
            .iter()
            .map(|log| log.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }

    /// How many targets are down at `now`.
    pub(crate) fn down_now(&self, now: i64) -> usize {
        let from = self.shared.from.load(Ordering::Acquire);
        let drain = self.shared.drain.load(Ordering::Acquire);
        self.shared
            .schedules
            .iter()
            .filter(|s| s.is_down(now, from, drain))
            .count()
    }

    /// The moment on the stopwatch.
    #[cfg(test)]
    pub(crate) fn now(&self) -> i64 {
        self.shared.clock.ms()
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, most likely: let some close.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let status = shared.answer(request.uri().path(), shared.clock.ms());
                let body = match status {
                    StatusCode::OK => "up",
                    StatusCode::SERVICE_UNAVAILABLE => "down",
                    _ => "no such target",
                };
                let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = status;
                async move { Ok::<_, Infallible>(response) }
            });
            // Keep-alive is hyper's default: healthd's pooled connections stay open.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_targets() {
        let cases = [
            ("/t/0", Some(0)),
            ("/t/42/", Some(42)),
            ("/t/9999", Some(9_999)),
            ("/t/", None),
            ("/t//", None),
            ("/t/+1", None),
            ("/t/1/x", None),
            ("/x/1", None),
            ("/", None),
        ];
        for (path, index) in cases {
            assert_eq!(target_of(path), index, "{path}");
        }
    }

    async fn get(client: &reqwest::Client, url: &str) -> u16 {
        client
            .get(url)
            .send()
            .await
            .expect("the upstream answers")
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn targets_answer_by_their_schedule_and_requests_are_logged() {
        let clock = Stopwatch::start();
        let always_down = Schedule::from_outages(vec![Outage {
            start: 0,
            end: 3_600_000,
        }]);
        let never_down = Schedule::from_outages(Vec::new());
        let upstreams = Upstreams::start(clock, vec![always_down, never_down], 2, 2_000)
            .await
            .expect("listeners");
        assert_eq!(upstreams.addrs().len(), 2);
        assert_ne!(
            upstreams.url(0),
            upstreams.url(1),
            "targets spread over listeners"
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");

        // Before flapping begins, everyone is up.
        assert_eq!(get(&client, &upstreams.url(0)).await, 200);
        assert_eq!(upstreams.ground_truth(upstreams.now())[0], vec![]);

        // Flapping began a second ago: the first outage has begun, the drain is later.
        upstreams.start_flapping(upstreams.now() - 1_000);
        assert_eq!(get(&client, &upstreams.url(0)).await, 503);
        assert_eq!(get(&client, &format!("{}/", upstreams.url(0))).await, 503);
        assert_eq!(get(&client, &upstreams.url(1)).await, 200);
        assert_eq!(upstreams.down_now(upstreams.now()), 1);
        // Any listener serves any target; unknown targets are 404.
        let other = format!("http://{}/t/0", upstreams.addrs()[1]);
        assert_eq!(get(&client, &other).await, 503);
        let unknown = format!("http://{}/t/2", upstreams.addrs()[0]);
        assert_eq!(get(&client, &unknown).await, 404);

        let drained_at = upstreams.now();
        upstreams.drain(drained_at);
        assert_eq!(get(&client, &upstreams.url(0)).await, 200);
        assert_eq!(upstreams.down_now(upstreams.now()), 0);

        let truth = upstreams.ground_truth(upstreams.now());
        assert_eq!(truth[0].len(), 1);
        assert_eq!(truth[0][0].end, drained_at);
        assert!(truth[1].is_empty());

        let logs = upstreams.request_logs();
        assert_eq!((logs[0].count, logs[1].count), (5, 1));
        assert!(logs[0].first <= logs[0].last);
    }
}
