//! The demo's own upstreams on loopback: a steady HTTP server, one that flaps on a
//! timer, a TCP listener, an h2c server and a port where nothing listens.

use std::{convert::Infallible, io, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{net::TcpListener, time::Instant};
use tokio_util::sync::CancellationToken;

/// How long the flaky upstream stays up, then down, in turn: fast enough that the
/// status page's bar and sparkline have outages and failed checks to show within the
/// first minute of the demo.
pub(crate) const FLAP_UP: Duration = Duration::from_secs(15);
/// See [`FLAP_UP`].
pub(crate) const FLAP_DOWN: Duration = Duration::from_secs(10);
/// The flaky upstream's slowest answer: while up, it answers after a delay that grows
/// from 5 ms to this over each up phase, so its response time has a shape to draw.
pub(crate) const FLAP_SLOWEST: Duration = Duration::from_millis(80);

/// The demo's upstreams on loopback, by address.
#[derive(Clone, Copy, Debug)]
pub struct Upstreams {
    /// Always answers 200.
    pub steady: SocketAddr,
    /// Answers 200 (in 5 to 80 ms) for [`FLAP_UP`], then 503 for [`FLAP_DOWN`], and so on.
    pub flaky: SocketAddr,
    /// A TCP listener that accepts and closes.
    pub tcp: SocketAddr,
    /// HTTP/2 with prior knowledge (and HTTP/1.1), always 200.
    pub h2c: SocketAddr,
    /// A port where nothing listens.
    pub down: SocketAddr,
}

/// What an HTTP upstream answers.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Steady,
    Flaky(Instant),
}

impl Behaviour {
    /// The answer's status, and how long to wait before it.
    fn answer(self) -> (StatusCode, Duration) {
        match self {
            Behaviour::Steady => (StatusCode::OK, Duration::ZERO),
            Behaviour::Flaky(since) => flaky_answer(since.elapsed()),
        }
    }
}

/// The flaky upstream's answer `elapsed` after it started.
fn flaky_answer(elapsed: Duration) -> (StatusCode, Duration) {
    let period = (FLAP_UP + FLAP_DOWN).as_millis();
    let phase = elapsed.as_millis() % period;
    if phase < FLAP_UP.as_millis() {
        let fastest = Duration::from_millis(5);
        let share = phase as f64 / FLAP_UP.as_millis() as f64;
        (
            StatusCode::OK,
            fastest + (FLAP_SLOWEST - fastest).mul_f64(share),
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)
    }
}

async fn serve_http(listener: TcpListener, behaviour: Behaviour, stop: CancellationToken) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<Incoming>| async move {
                let (status, delay) = behaviour.answer();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let body = Full::new(Bytes::from(format!(
                    "{}\n",
                    status.canonical_reason().unwrap_or("")
                )));
                let mut response = Response::new(body);
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => drop(accepted),
        }
    }
}

impl Upstreams {
    /// Starts the upstreams on 127.0.0.1; they stop when `stop` is cancelled.
    pub async fn start(stop: &CancellationToken) -> io::Result<Upstreams> {
        let bind = || TcpListener::bind("127.0.0.1:0");
        let steady = bind().await?;
        let flaky = bind().await?;
        let tcp = bind().await?;
        let h2c = bind().await?;
        // Reserve a port, then free it: nothing listens there afterwards.
        let down = bind().await?.local_addr()?;
        let upstreams = Upstreams {
            steady: steady.local_addr()?,
            flaky: flaky.local_addr()?,
            tcp: tcp.local_addr()?,
            h2c: h2c.local_addr()?,
            down,
        };
        tokio::spawn(serve_http(steady, Behaviour::Steady, stop.clone()));
        tokio::spawn(serve_http(
            flaky,
            Behaviour::Flaky(Instant::now()),
            stop.clone(),
        ));
        tokio::spawn(serve_http(h2c, Behaviour::Steady, stop.clone()));
        tokio::spawn(serve_tcp(tcp, stop.clone()));
        Ok(upstreams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flaky_upstream_flaps_and_slows_down_while_up() {
        let at = |ms| flaky_answer(Duration::from_millis(ms));
        assert_eq!(at(0), (StatusCode::OK, Duration::from_millis(5)));
        let (status, slower) = at(FLAP_UP.as_millis() as u64 - 1);
        assert_eq!(status, StatusCode::OK);
        assert!(
            slower > Duration::from_millis(75) && slower <= FLAP_SLOWEST,
            "{slower:?}"
        );
        let down = FLAP_UP.as_millis() as u64;
        assert_eq!(at(down), (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO));
        let period = (FLAP_UP + FLAP_DOWN).as_millis() as u64;
        assert_eq!(at(period - 1).0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(at(period), (StatusCode::OK, Duration::from_millis(5)));
        // Within the demo's first minute it goes down twice.
        let up: Vec<bool> = (0..60_000)
            .step_by(500)
            .map(|ms| at(ms).0 == StatusCode::OK)
            .collect();
        let downs = up.windows(2).filter(|w| w[0] && !w[1]).count();
        assert_eq!(downs, 2);
    }
}
