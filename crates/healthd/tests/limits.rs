//! The idle-connection flood of issue 13, end to end with the real binary (SPEC §9.3):
//! healthd under an open-files limit of 256 (soft) and 1 024 (hard), twenty monitors
//! checked every second and a webhook receiver; 2 048 idle TCP connections to its API
//! port, twice the hard limit. Within 15 s `/healthz` answers again, every monitor is
//! still running, healthy and checking, and no notification went out.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    task::JoinSet,
    time::Instant,
};

/// healthd's open-files limits: soft, hard.
const NOFILE: (u64, u64) = (256, 1024);
/// Idle connections opened: twice the hard limit.
const FLOOD: usize = 2048;
/// HTTP monitors, and as many TCP ones.
const EACH: usize = 10;
/// How long `/healthz` may take to answer again after the flood (the bound).
const RECOVERY: Duration = Duration::from_secs(15);

/// Whether `prlimit` (util-linux) can be run.
async fn have_prlimit() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// Accepts connections on `listener` and hands each to `serve`.
fn accept_each<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
}

/// Reads one request head and answers it with `answer`, then closes.
async fn answer_once(mut stream: TcpStream, answer: &'static [u8]) -> bool {
    let mut raw = Vec::new();
    let mut buf = [0u8; 2048];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(answer).await;
    true
}

/// An HTTP upstream answering 200 to every request.
async fn http_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    accept_each(listener, |stream| async move {
        answer_once(
            stream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
    });
    addr
}

/// A TCP upstream: accepts and closes.
async fn tcp_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    accept_each(listener, |stream| async move { drop(stream) });
    addr
}

/// A webhook receiver counting the requests it gets.
async fn receiver() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    accept_each(listener, move |stream| {
        let count = Arc::clone(&count);
        async move {
            if answer_once(stream, b"HTTP/1.1 204 No Content\r\n\r\n").await {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, seen)
}

fn config(http: &[SocketAddr], tcp: &[SocketAddr], hook: SocketAddr) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[defaults]\ninterval = \"1s\"\ntimeout = \"2s\"\n\n\
         [[notify]]\nname = \"hook\"\nprovider = \"webhook\"\nurl = \"http://{hook}/events\"\n"
    );
    for (i, addr) in http.iter().enumerate() {
        text.push_str(&format!(
            "\n[[monitor]]\nname = \"http{i}\"\nurl = \"http://{addr}/\"\n"
        ));
    }
    for (i, addr) in tcp.iter().enumerate() {
        text.push_str(&format!(
            "\n[[monitor]]\nname = \"tcp{i}\"\nurl = \"tcp://{addr}\"\n"
        ));
    }
    text
}

/// GETs `path` from `api`; the body when it answered 200 within a few seconds.
async fn get(api: SocketAddr, path: &str) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(api).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Each monitor's status, as the API shows it.
async fn statuses(api: SocketAddr) -> Option<HashMap<String, String>> {
    let list: Value = serde_json::from_str(&get(api, "/api/v1/monitors").await?).ok()?;
    list.as_array()?
        .iter()
        .map(|m| {
            Some((
                m["name"].as_str()?.to_owned(),
                m["status"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Each monitor's count of healthy checks, from `/metrics`.
async fn healthy_checks(api: SocketAddr) -> Option<HashMap<String, u64>> {
    let text = get(api, "/metrics").await?;
    Some(
        text.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("healthd_monitor_checks_total{monitor=\"")?;
                let (name, rest) = rest.split_once("\",result=\"healthy\"} ")?;
                Some((name.to_owned(), rest.parse().ok()?))
            })
            .collect(),
    )
}

/// Polls `probe` every 100 ms until it gives `Some` that `done` accepts, for at most
/// `within`; returns it.
async fn until<T, F, Fut>(
    what: &str,
    within: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await
            && done(&value)
        {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `healthd run` under the open-files limits; returns it and its API address.
async fn healthd(state: &std::path::Path, config: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={}:{}", NOFILE.0, NOFILE.1))
        .arg(env!("CARGO_BIN_EXE_healthd"))
        .args(["run", "--config"])
        .arg(config)
        .env("STATE_DIRECTORY", state)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("API and status page on http://") {
                return line;
            }
        }
        panic!("healthd ended without serving");
    })
    .await
    .expect("healthd serves within 20 s");
    // Keep reading: a closed stdout would fail healthd's next line.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_of_twice_the_fd_limit_leaves_healthd_serving_and_monitoring() {
    if !have_prlimit().await {
        println!("skipped: prlimit not found");
        return;
    }
    // This process holds the flood: it needs more descriptors than healthd may have.
    let own = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if own < (FLOOD + 512) as u64 {
        println!(
            "skipped: this test needs {} open files, its limit is {own}",
            FLOOD + 512
        );
        return;
    }
    let mut http = Vec::new();
    let mut tcp = Vec::new();
    for _ in 0..EACH {
        http.push(http_upstream().await);
        tcp.push(tcp_upstream().await);
    }
    let (hook, notified) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("healthd.toml");
    std::fs::write(&config_path, config(&http, &tcp, hook)).unwrap();
    let (mut daemon, api) = healthd(dir.path(), &config_path).await;

    let all_healthy = |s: &HashMap<String, String>| {
        s.len() == 2 * EACH && s.values().all(|status| status == "healthy")
    };
    until(
        "every monitor healthy",
        Duration::from_secs(20),
        || statuses(api),
        all_healthy,
    )
    .await;
    let before = healthy_checks(api).await.expect("metrics answer");

    // The flood: idle connections that never send a byte.
    let mut connecting = JoinSet::new();
    for _ in 0..FLOOD {
        connecting.spawn(tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(api),
        ));
    }
    let mut flood = Vec::with_capacity(FLOOD);
    while let Some(joined) = connecting.join_next().await {
        if let Ok(Ok(stream)) = joined.unwrap() {
            flood.push(stream);
        }
    }
    // Without the limits, healthd stops accepting (out of descriptors) and the kernel's
    // queue fills: the rest of the flood waits in vain, and so does `/healthz`.
    let flooded = Instant::now();
    println!("{} of {FLOOD} flood connections opened", flood.len());

    until(
        "/healthz after the flood",
        RECOVERY,
        || get(api, "/healthz"),
        |body| body == "ok",
    )
    .await;
    println!("/healthz answered {:?} after the flood", flooded.elapsed());

    // Every monitor goes on checking, healthy: two more healthy checks each.
    until(
        "two more healthy checks of every monitor",
        Duration::from_secs(20),
        || healthy_checks(api),
        |now: &HashMap<String, u64>| {
            before
                .iter()
                .all(|(name, was)| now.get(name).is_some_and(|n| *n >= was + 2))
        },
    )
    .await;
    let now = statuses(api).await.expect("the API answers");
    assert!(all_healthy(&now), "{now:?}");
    assert_eq!(
        notified.load(Ordering::SeqCst),
        0,
        "no notification is sent"
    );

    drop(flood);
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}
