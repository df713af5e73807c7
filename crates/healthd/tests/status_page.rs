//! The status page (SPEC §9.2) served by a real healthd over loopback upstreams: one
//! monitor down, one that recovered, one that stopped itself, healthy ones in two groups
//! and one without a group, over 90 days of history seeded into the store.
//!
//! - a plain HTTP `GET /` (no browser) finds every §9.2 figure in the HTML;
//! - headless Chromium with JavaScript disabled finds them in the DOM;
//! - headless Chromium with JavaScript on: the script connects to `/api/v1/events`, and
//!   screenshots at desktop (1280×900) and phone (390×844) widths are written to
//!   `target/status-page/` (the README's copies are in `docs/`).
//!
//! The Chromium tests print `skipped:` and pass when no Chromium is installed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use health_monitor::{HealthMonitor, Snapshot};
use health_store::{Store, StoreOptions};
use health_types::{Clock, HistorySink, Observation, Status, StatusChange, SystemClock};
use healthd::{DaemonConfig, Running, start};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs headless Chromium on `url` with `args` and JavaScript on or off, in a fresh
/// profile, bounded by `timeout`(1); returns stdout.
///
/// JavaScript is turned off by the profile's content settings: the switch
/// `--blink-settings=scriptEnabled=false` also stops `--dump-dom` (which runs a script
/// of its own) from printing anything. No `--virtual-time-budget` either: the page
/// keeps an event stream open, so virtual time would never run out.
fn run_chromium(binary: &str, args: &[String], url: &str, javascript: bool) -> String {
    let profile = tempfile::tempdir().unwrap();
    if !javascript {
        let default = profile.path().join("Default");
        std::fs::create_dir_all(&default).unwrap();
        std::fs::write(
            default.join("Preferences"),
            r#"{"profile":{"default_content_setting_values":{"javascript":2}}}"#,
        )
        .unwrap();
    }
    let out = Command::new("timeout")
        .arg("90")
        .arg(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loopback proxy in front of `upstream` that records the request line of each
/// request (keep-alive connections carry several): what the browser asked for.
async fn recording_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
                // The browser sends no request bodies here: a read that starts with a
                // method starts a request.
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = from_client.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let chunk = String::from_utf8_lossy(&buf[..n]);
                    if chunk.starts_with("GET ") || chunk.starts_with("POST ") {
                        let line = chunk.lines().next().unwrap_or_default().to_owned();
                        log.lock().unwrap().push(line);
                    }
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

// ---------------------------------------------------------------------------------------
// Upstreams.

/// An HTTP/1.1 server on loopback: the `n`th request (from 0) gets `answer(n)` as its
/// status and body; every answer closes the connection.
async fn http_server(
    answer: impl Fn(usize) -> (u16, &'static str) + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (answer, served) = (answer.clone(), served.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = answer(served.fetch_add(1, Ordering::SeqCst));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// A TCP listener that accepts and closes.
async fn tcp_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    addr
}

/// A loopback port where nothing listens.
async fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// History seeded before healthd starts: the cache reads it at start.

const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

/// One monitor's made-up past: typical latency (ms), the day (ago) its history starts,
/// and outages as (seconds ago it began, length in seconds).
struct Past {
    name: &'static str,
    latency_ms: f64,
    since_days: u64,
    outages: &'static [(u64, u64)],
}

const PAST: [Past; 7] = [
    Past {
        name: "web",
        latency_ms: 14.0,
        since_days: 89,
        outages: &[(61 * DAY + 5 * HOUR, 300)],
    },
    Past {
        name: "checkout",
        latency_ms: 48.0,
        since_days: 89,
        outages: &[
            (40 * DAY + 2 * HOUR, 600),
            (17 * DAY + 9 * HOUR, 2 * HOUR),
            (DAY + 3 * HOUR, 25 * 60),
        ],
    },
    Past {
        name: "legacy-api",
        latency_ms: 130.0,
        since_days: 89,
        outages: &[
            (52 * DAY, 6 * HOUR),
            (30 * DAY + 4 * HOUR, 20 * 60),
            (9 * DAY + 2 * HOUR, 45 * 60),
            (3 * DAY + 6 * HOUR, 4 * HOUR),
            (3 * HOUR, 50 * 60),
        ],
    },
    Past {
        name: "database",
        latency_ms: 1.6,
        since_days: 89,
        outages: &[],
    },
    Past {
        name: "cache",
        latency_ms: 0.7,
        since_days: 89,
        outages: &[(75 * DAY, 90)],
    },
    Past {
        name: "billing-agent",
        latency_ms: 32.0,
        since_days: 89,
        outages: &[(12 * DAY + 7 * HOUR, 15 * 60)],
    },
    Past {
        name: "docs",
        latency_ms: 22.0,
        since_days: 58,
        outages: &[],
    },
];

/// Writes the made-up past of [`PAST`] into the store at `path`, ending at `now`: a
/// check every 30 minutes (every 10 in the last day), the outages as status changes and
/// failed checks, and a `stopped` at `now` (the process was not running).
fn seed(path: &Path, now: SystemTime) {
    let store = Store::open(path, StoreOptions::default()).unwrap();
    let ago = |secs: u64| now - Duration::from_secs(secs);
    let change = |secs: u64, from, to, detail: &str| StatusChange {
        time: ago(secs),
        from,
        to,
        detail: detail.to_owned(),
    };
    for past in &PAST {
        let name = past.name;
        let first = past.since_days * DAY;
        store.change(name, &change(first, Status::Unknown, Status::Starting, ""));
        store.change(
            name,
            &change(first - 1, Status::Starting, Status::Healthy, ""),
        );
        let mut secs = first - 60;
        let mut outages = past.outages.iter().peekable();
        let mut down_until = None;
        while secs > 30 {
            if let Some(&&(start, length)) = outages.peek()
                && secs <= start
            {
                outages.next();
                let detail = "HTTP 503 Service Unavailable";
                store.change(
                    name,
                    &change(start, Status::Healthy, Status::Unhealthy, detail),
                );
                down_until = Some(start - length);
            }
            if let Some(until) = down_until
                && secs <= until
            {
                store.change(name, &change(until, Status::Unhealthy, Status::Healthy, ""));
                down_until = None;
            }
            // A daily rhythm and some noise, so that the sparkline has a shape.
            let hour = (secs / HOUR) as f64;
            let noise = ((secs / 600).wrapping_mul(2_654_435_761) % 100) as f64 / 100.0;
            let wave = (hour / 24.0 * std::f64::consts::TAU).sin();
            let ms = past.latency_ms * (1.0 + 0.35 * wave + 0.3 * noise);
            store.observe(
                name,
                &Observation {
                    time: ago(secs),
                    latency: Duration::from_secs_f64(ms / 1e3),
                    failed: down_until.is_some(),
                },
            );
            secs = secs.saturating_sub(if secs > DAY { 1_800 } else { 600 });
        }
        store.change(name, &change(1, Status::Healthy, Status::Stopped, ""));
    }
    store.flush().unwrap();
    store.close().unwrap();
}

// ---------------------------------------------------------------------------------------
// The daemon.

/// A running healthd in the states the page is checked in, and its address.
struct Fixture {
    running: Running,
    addr: SocketAddr,
    /// Holds the store.
    _dir: TempDir,
}

/// Waits (20 s at most) until `monitor`'s snapshot satisfies `ok`.
async fn wait_for(running: &Running, name: &str, what: &str, ok: impl Fn(&Snapshot) -> bool) {
    let monitor = running.monitors.iter().find(|m| m.name() == name).unwrap();
    let mut rx = monitor.subscribe();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| ok(s)))
        .await
        .unwrap_or_else(|_| panic!("{name} never became {what}: {:?}", monitor.snapshot()))
        .unwrap();
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("healthd.db");
    let now = SystemClock.now();
    tokio::task::spawn_blocking({
        let db = db.clone();
        move || seed(&db, now)
    })
    .await
    .unwrap();

    let web = http_server(|_| (200, "ok")).await;
    // 503 twice, then 200: down, then recovered.
    let flaky = http_server(|n| if n < 2 { (503, "busy") } else { (200, "ok") }).await;
    let down = closed_port().await;
    let database = tcp_server().await;
    let cache = tcp_server().await;
    // An agent that answers nonsense: every check is an error, and after two in a row
    // the monitor stops itself.
    let agent = http_server(|_| (200, "not an agent")).await;
    let config = DaemonConfig::parse(&format!(
        r#"[server]
listen = "127.0.0.1:0"
[storage]
path = {db:?}
[defaults]
interval = "1s"
retries = -1

[[monitor]]
name = "web"
url = "http://admin:hunter2@{web}/health?full=1"
group = "Web"

[[monitor]]
name = "checkout"
url = "http://{flaky}/ready"
group = "Web"

[[monitor]]
name = "legacy-api"
url = "http://{down}/v1/health"
group = "Web"

[[monitor]]
name = "database"
url = "tcp://{database}"
group = "Storage"

[[monitor]]
name = "cache"
url = "tcp://{cache}"
group = "Storage"

[[monitor]]
name = "billing-agent"
url = "http://billing.internal:8080/healthz"
group = "Storage"
max_errors = 2
agent = {{ url = "http://{agent}" }}

[[monitor]]
name = "docs"
url = "http://{web}/docs/"
"#,
        db = db.display().to_string(),
    ))
    .unwrap();
    let running = start(&config, Vec::new()).await.unwrap();
    for name in ["web", "database", "cache", "docs"] {
        wait_for(&running, name, "healthy", |s| s.status == Status::Healthy).await;
    }
    wait_for(&running, "legacy-api", "down", |s| {
        matches!(s.status, Status::Unhealthy | Status::Error)
    })
    .await;
    wait_for(&running, "checkout", "healthy after an outage", |s| {
        s.status == Status::Healthy && s.results.unhealthy > 0
    })
    .await;
    wait_for(&running, "billing-agent", "stopped", |s| {
        !s.running && s.results.error >= 2
    })
    .await;
    let addr = running.addr;
    Fixture {
        addr,
        running,
        _dir: dir,
    }
}

/// One HTTP/1.1 `GET` on loopback; returns the status line and the body (de-chunked).
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (status, body)
}

// ---------------------------------------------------------------------------------------
// What the page must show (SPEC §9.2), in served HTML or in a browser's DOM.

/// The markup of the card of `name`.
fn card<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!("<article class=\"card\" data-name=\"{name}\""))
        .unwrap_or_else(|| panic!("no card for {name}:\n{html}"));
    let end = start + html[start..].find("</article>").unwrap();
    &html[start..end]
}

fn position(html: &str, name: &str) -> usize {
    html.find(&format!("data-name=\"{name}\"")).unwrap()
}

/// The text of the `<dd data-f="{field}">` of `card`.
fn figure<'a>(card: &'a str, field: &str) -> &'a str {
    let start = card
        .find(&format!("<dd data-f=\"{field}\">"))
        .unwrap_or_else(|| panic!("no {field} in\n{card}"))
        + field.len()
        + 15;
    &card[start..start + card[start..].find("</dd>").unwrap()]
}

fn is_percent(text: &str) -> bool {
    text.strip_suffix('%')
        .is_some_and(|n| n.parse::<f64>().is_ok_and(|n| (0.0..=100.0).contains(&n)))
}

/// Asserts every §9.2 figure is in `html` (served HTML or a DOM dump).
fn assert_figures(html: &str) {
    // Down monitors first, then the groups in config order, then the ungrouped.
    let order = [
        "legacy-api",
        "billing-agent",
        "web",
        "checkout",
        "database",
        "cache",
        "docs",
    ];
    let positions: Vec<usize> = order.iter().map(|n| position(html, n)).collect();
    assert!(positions.is_sorted(), "card order {order:?}: {positions:?}");
    for heading in ["<h2>Down ", "<h2>Web ", "<h2>Storage ", "<h2>Ungrouped "] {
        assert!(html.contains(heading), "{heading:?} in\n{html}");
    }
    assert!(html.contains("5 up · 2 down"), "the summary line:\n{html}");

    // Each card: status, full URL (password hidden), last check, latency, uptimes, 90
    // day cells with tooltips, the sparkline.
    for name in order {
        let card = card(html, name);
        assert!(
            card.contains("<span class=\"badge\" data-f=\"status\">"),
            "{card}"
        );
        let last = figure(card, "lastCheck");
        assert!(
            last.contains("<time datetime=\"20"),
            "{name}: last check {last}"
        );
        let latency = figure(card, "latency");
        assert!(latency.ends_with(" ms"), "{name}: latency {latency}");
        for field in ["uptime24h", "uptime30d"] {
            let uptime = figure(card, field);
            assert!(is_percent(uptime), "{name}: {field} {uptime}");
        }
        assert_eq!(
            card.matches("<i class=\"c ").count(),
            90,
            "{name}: 90 day cells"
        );
        assert!(card.contains(" checks · "), "{name}: day tooltips");
        assert!(card.contains("<svg "), "{name}: sparkline");
    }
    let web = card(html, "web");
    assert!(web.contains("data-status=\"healthy\""));
    let url = format!("http://admin:***@{}/health?full=1", web_host(web));
    assert!(web.contains(&url), "{url} in\n{web}");
    assert!(!html.contains("hunter2"), "the password never shows");
    // Down: its status, since when, and why.
    let down = card(html, "legacy-api");
    assert!(
        down.contains("data-status=\"unhealthy\"") || down.contains("data-status=\"error\""),
        "{down}"
    );
    let since = figure(down, "downSince");
    assert!(since.contains("<time datetime=\"20"), "down since: {since}");
    assert!(down.contains("/v1/health"), "the URL keeps its path");
    assert!(down.contains("connection refused"), "{down}");
    // Recovered: healthy now, its past outages in the bar.
    let recovered = card(html, "checkout");
    assert!(recovered.contains("data-status=\"healthy\""), "{recovered}");
    assert!(!recovered.contains("Down since"), "{recovered}");
    assert!(
        recovered.contains("class=\"c l\""),
        "a day with an outage: {recovered}"
    );
    assert_ne!(figure(recovered, "uptime30d"), "100%", "{recovered}");
    // Stopped itself: says so and why.
    let stopped = card(html, "billing-agent");
    assert!(
        stopped.contains(
            "<p class=\"stopped\">stopped itself after 2 errors in a row: agent: bad answer"
        ),
        "{stopped}"
    );
    // Days before a monitor existed have no data.
    assert!(
        card(html, "docs").contains(": no data\""),
        "docs is younger than 90 days"
    );
}

/// The `host:port` the `web` card's URL names (the upstream's loopback address).
fn web_host(card: &str) -> &str {
    let start = card.find("@").unwrap() + 1;
    &card[start..start + card[start..].find('/').unwrap()]
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_get_finds_every_figure_in_the_html() {
    let fixture = fixture().await;
    let (status, html) = get(fixture.addr, "/").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert_figures(&html);
    // Readable without a browser: no card waits for a script.
    assert!(!html.contains("loading…"));
    fixture.running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_javascript_off_chromium_shows_every_figure() {
    let Some(binary) = chromium() else {
        println!("skipped: no chromium");
        return;
    };
    let fixture = fixture().await;
    let (proxy, seen) = recording_proxy(fixture.addr).await;
    let url = format!("http://{proxy}/");
    let dom = tokio::task::spawn_blocking(move || {
        run_chromium(binary, &["--dump-dom".into()], &url, false)
    })
    .await
    .unwrap();
    assert_figures(&dom);
    // The script did not run: no `js` class, the live marker stays hidden, only the
    // page was asked for, and the noscript note shows.
    assert!(dom.contains("<html lang=\"en\">"), "{dom}");
    assert!(
        dom.contains("<span id=\"live\" class=\"live\" hidden=\"\">"),
        "{dom}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|l| !l.contains("/api/")),
        "the browser asked for {seen:?}"
    );
    assert!(dom.contains("JavaScript is off"), "the noscript note shows");
    fixture.running.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_javascript_the_page_goes_live_and_screenshots_are_taken() {
    let Some(binary) = chromium() else {
        println!("skipped: no chromium");
        return;
    };
    let fixture = fixture().await;
    // `target/status-page/`, next to the target's `tmp/`.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("status-page");
    std::fs::create_dir_all(&dir).unwrap();
    let desktop = dir.join("status-page-desktop.png");
    let phone = dir.join("status-page-phone.png");
    let _ = std::fs::remove_file(&desktop);
    let _ = std::fs::remove_file(&phone);

    // Through a proxy that records what the browser asks for.
    let (proxy, seen) = recording_proxy(fixture.addr).await;
    let url = format!("http://{proxy}/");
    let (dom, shots) = tokio::task::spawn_blocking({
        let (desktop, phone) = (desktop.clone(), phone.clone());
        move || {
            let dom = run_chromium(binary, &["--dump-dom".into()], &url, true);
            for (shot, size) in [(&desktop, "1280,900"), (&phone, "390,844")] {
                let args = [
                    format!("--screenshot={}", shot.display()),
                    format!("--window-size={size}"),
                ];
                run_chromium(binary, &args, &url, true);
            }
            (dom, [desktop, phone])
        }
    })
    .await
    .unwrap();

    // The script ran and subscribed to the events (instead of polling).
    assert!(dom.contains("<html lang=\"en\" class=\"js\">"), "{dom}");
    let seen = seen.lock().unwrap().clone();
    println!("the browser asked for {seen:?}");
    assert!(
        seen.iter().any(|l| l.starts_with("GET /api/v1/events ")),
        "the browser asked for {seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.starts_with("GET /api/v1/monitors")),
        "no polling: {seen:?}"
    );
    assert_figures(&dom);
    for shot in shots {
        let bytes = std::fs::read(&shot).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
            "{}",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
    }
    fixture.running.shutdown(Duration::from_secs(1)).await;
}
