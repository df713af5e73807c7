//! The upstream: a loopback server in a process of its own (`health-bench serve`), so
//! that its CPU and memory never count against the implementation measured.
//!
//! It listens on many `127.0.0.x` addresses, each with its own port: HTTP/1.1 keep-alive
//! listeners that answer `200 ok` to any request (but `503` to a flapping monitor's
//! path in the down part of its cycle: see [`flap_down`]), and TCP listeners that accept
//! and close. Spreading the targets keeps connect-and-close checks clear of ephemeral-port
//! and TIME_WAIT exhaustion. It prints its addresses as one JSON line, then serves until
//! its standard input closes (its parent ended) or it is killed.
//!
//! It counts the connections it accepts and the requests it answers; a control listener
//! on `127.0.0.1` answers each connection with those counters as one JSON line
//! ([`counters`]), so that a scenario can tell how many new connections its checks
//! opened in its window (a pooled HTTP check opens none, HAProxy's one per check).
//!
//! # Why the server resets
//!
//! Connect-and-close checks at 10k/s would leave 600k sockets in TIME_WAIT (60 s), far
//! past the kernel's table (`tcp_max_tw_buckets`, 131072 here). Past it, a closed client
//! socket is freed at once, its port is reused while the server's side of the old
//! connection still waits in LAST_ACK, and the new SYN stalls for a 1 s retransmit:
//! a kernel artifact that would swamp what is measured. Connection tracking, where the
//! machine has it, is the tighter limit still: its table (`nf_conntrack_max`, 262144
//! here) keeps a closed connection 120 s in TIME_WAIT but 10 s after a reset, and drops
//! every new SYN while full. So the server closes each connection with a reset
//! (`SO_LINGER` 0, no FIN first) once the client has closed its side (HTTP: at the end
//! of a keep-alive connection; TCP: after the client's FIN). Neither side keeps any
//! state, and no check sees the reset: its client has already closed.

use std::{
    convert::Infallible,
    io,
    net::{Ipv4Addr, SocketAddr},
    pin::Pin,
    process::Stdio,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    time::Instant,
};

use crate::spec::{Targets, UpstreamCounters, flap_down};

/// Listeners per address.
const PORTS_PER_ADDRESS: usize = 4;

/// Connections the HTTP listeners accepted (the process serves one upstream).
static HTTP_CONNECTIONS: AtomicU64 = AtomicU64::new(0);
/// Requests the HTTP listeners answered.
static HTTP_REQUESTS: AtomicU64 = AtomicU64::new(0);
/// Connections the TCP listeners accepted.
static TCP_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

fn counted() -> UpstreamCounters {
    UpstreamCounters {
        http_connections: HTTP_CONNECTIONS.load(Ordering::Relaxed),
        http_requests: HTTP_REQUESTS.load(Ordering::Relaxed),
        tcp_connections: TCP_CONNECTIONS.load(Ordering::Relaxed),
    }
}

/// Runs the server: `http` HTTP listeners and `tcp` accept-and-close listeners.
pub(crate) fn serve(http: usize, tcp: usize) -> Result<()> {
    crate::runtime()?.block_on(async move {
        // HTTP on 127.0.0.2.., TCP on 127.0.1.2.. (127.0.0.1 is left to everything else).
        let http_listeners = bind(0, http).await?;
        let tcp_listeners = bind(1, tcp).await?;
        let control = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("cannot listen for the counters")?;
        let targets = Targets {
            http: addresses(&http_listeners)?,
            tcp: addresses(&tcp_listeners)?,
            control: Some(
                control
                    .local_addr()
                    .context("listener without an address")?,
            ),
        };
        tokio::spawn(serve_counters(control));
        // The flap cycles count from here.
        let started = Instant::now();
        for listener in http_listeners {
            tokio::spawn(serve_http(listener, started));
        }
        for listener in tcp_listeners {
            tokio::spawn(accept_and_close(listener));
        }
        println!("{}", serde_json::to_string(&targets)?);
        // Serve until the parent goes away.
        let mut stdin = tokio::io::stdin();
        let mut sink = [0u8; 64];
        while stdin.read(&mut sink).await.unwrap_or(0) > 0 {}
        Ok(())
    })
}

async fn bind(third_octet: u8, count: usize) -> Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    for i in 0..count {
        let host = u8::try_from(2 + i / PORTS_PER_ADDRESS)
            .ok()
            .filter(|h| *h < 255)
            .context("too many listeners for one /24")?;
        let addr = SocketAddr::from((Ipv4Addr::new(127, 0, third_octet, host), 0));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn addresses(listeners: &[TcpListener]) -> Result<Vec<SocketAddr>> {
    listeners
        .iter()
        .map(|l| l.local_addr().context("listener without an address"))
        .collect()
}

/// Waits a little after an accept error (out of file descriptors, most likely) so that
/// the loop does not spin.
async fn accept_backoff() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// Answers each connection with the counters as one JSON line, then closes it.
async fn serve_counters(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let mut line = serde_json::to_string(&counted()).unwrap_or_default();
                line.push('\n');
                tokio::spawn(async move {
                    let _ = stream.write_all(line.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            Err(_) => accept_backoff().await,
        }
    }
}

/// Reads the counters of the upstream whose control listener is `control`.
pub(crate) async fn counters(control: SocketAddr) -> Result<UpstreamCounters> {
    let read = async {
        let mut stream = TcpStream::connect(control).await?;
        let mut line = String::new();
        stream.read_to_string(&mut line).await?;
        Ok::<_, io::Error>(line)
    };
    let line = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .context("the upstream's counters did not come in 5 s")?
        .context("cannot read the upstream's counters")?;
    serde_json::from_str(line.trim()).context("cannot parse the upstream's counters")
}

async fn serve_http(listener: TcpListener, started: Instant) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                HTTP_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                stream
            }
            Err(_) => {
                accept_backoff().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_zero_linger();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let down = flap_down(request.uri().path(), elapsed_ms);
                HTTP_REQUESTS.fetch_add(1, Ordering::Relaxed);
                async move {
                    let (status, body): (_, &'static [u8]) = if down {
                        (StatusCode::SERVICE_UNAVAILABLE, b"flapping")
                    } else {
                        (StatusCode::OK, b"ok")
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(body)));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            // Keep-alive is hyper's default; a connection ends when the client closes it.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(ResetOnClose(stream)), service)
                .await;
        });
    }
}

/// A connection whose orderly shutdown does nothing: hyper shuts its side down (a FIN)
/// before dropping a connection the client closed, which would leave the client in
/// TIME_WAIT; without it the drop resets (`SO_LINGER` 0).
#[derive(Debug)]
struct ResetOnClose(TcpStream);

impl AsyncRead for ResetOnClose {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnClose {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Accepts connections and closes each once its client has.
async fn accept_and_close(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                TCP_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_zero_linger();
                tokio::spawn(async move {
                    let mut sink = [0u8; 64];
                    let until_eof =
                        async { while stream.read(&mut sink).await.unwrap_or(0) > 0 {} };
                    let _ = tokio::time::timeout(Duration::from_secs(30), until_eof).await;
                });
            }
            Err(_) => accept_backoff().await,
        }
    }
}

/// A running upstream process.
#[derive(Debug)]
pub(crate) struct Upstream {
    child: Child,
    /// Where it listens.
    pub(crate) targets: Targets,
}

impl Upstream {
    /// Starts `exe serve` with `http` and `tcp` listeners and reads its addresses.
    pub(crate) async fn spawn(http: usize, tcp: usize) -> Result<Upstream> {
        let exe = std::env::current_exe().context("cannot find the bench binary")?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--http",
                &http.to_string(),
                "--tcp",
                &tcp.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the upstream server")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the upstream server did not start in 10 s")??;
        let Some(line) = line else {
            bail!("the upstream server exited before listening");
        };
        let targets: Targets =
            serde_json::from_str(&line).context("cannot read the upstream's addresses")?;
        Ok(Upstream { child, targets })
    }

    /// Kills the upstream and waits until it is gone (its sockets closed).
    pub(crate) async fn stop(mut self) -> Result<()> {
        self.child
            .kill()
            .await
            .context("cannot stop the upstream server")
    }
}
