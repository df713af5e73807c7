//! The status page at scale (`health-bench page SPEC-JSON`, started by `run`): a
//! healthd (the library, in this process) with [`PageSpec::monitors`] monitors and 90
//! days of history seeded into its store, then the time to serve `GET /` with the
//! whole body, and, when a Chromium is installed, the time it takes to load the page.
//!
//! The history is written through the store's [`HistorySink`] before healthd starts:
//! every monitor healthy for 90 days with a check every 6 hours and every hour of the
//! last day, and one monitor in ten with a 10-minute outage every few days, so that each
//! card has a full bar (90 cells with tooltips) and a full sparkline: the page is as
//! big as it gets.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, bail, ensure};
use health_monitor::HealthMonitor as _;
use health_store::{Store, StoreOptions};
use health_types::{Clock as _, HistorySink as _, Observation, Status, StatusChange, SystemClock};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, time::Instant};

/// What the page scenario runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PageSpec {
    /// Monitors (TCP, 30 s interval, against one loopback listener).
    pub(crate) monitors: usize,
    /// Timed `GET /` requests, one after the other.
    pub(crate) requests: usize,
    /// Loads of the page in headless Chromium, when one is installed (0: none).
    pub(crate) chromium_loads: usize,
}

/// What the page scenario measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PageMeasured {
    /// Monitors on the page.
    pub(crate) monitors: usize,
    /// The page's size in bytes.
    pub(crate) bytes: usize,
    /// Seconds spent seeding the history.
    pub(crate) seed_s: f64,
    /// `GET /` with the whole body: fastest, median and slowest, in milliseconds.
    pub(crate) serve_min_ms: f64,
    /// See [`PageMeasured::serve_min_ms`].
    pub(crate) serve_p50_ms: f64,
    /// See [`PageMeasured::serve_min_ms`].
    pub(crate) serve_max_ms: f64,
    /// Headless Chromium loading the page to its first screenshot, less loading
    /// `about:blank`, in milliseconds (the best of the runs); `None` without Chromium.
    pub(crate) chromium_ms: Option<f64>,
}

/// Days of seeded history.
const DAYS: u64 = 90;
const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

/// Runs the scenario.
pub(crate) async fn run(spec: &PageSpec) -> Result<PageMeasured> {
    ensure!(
        spec.monitors > 0 && spec.requests > 0,
        "a page scenario needs monitors and requests"
    );
    let dir = tempfile::tempdir().context("cannot create the store's directory")?;
    let store = dir.path().join("healthd.db");
    let names: Vec<String> = (0..spec.monitors)
        .map(|i| format!("service-{i:04}"))
        .collect();

    let started = Instant::now();
    let now = SystemClock.now();
    tokio::task::spawn_blocking({
        let (store, names) = (store.clone(), names.clone());
        move || seed(&store, &names, now)
    })
    .await
    .context("the seeding thread panicked")??;
    let seed_s = started.elapsed().as_secs_f64();

    let upstream = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the upstream")?;
    let target = upstream.local_addr()?;
    tokio::spawn(async move { while upstream.accept().await.is_ok() {} });

    let config = healthd::DaemonConfig::parse(&config(&store, &names, target))
        .map_err(|problems| anyhow::anyhow!("the page scenario's config: {problems:?}"))?;
    let running = healthd::start(&config, Vec::new())
        .await
        .context("cannot start healthd")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for monitor in &running.monitors {
        let mut rx = monitor.subscribe();
        tokio::time::timeout_at(deadline, rx.wait_for(|s| s.checks() >= 1))
            .await
            .context("the monitors' first checks took over 60 s")?
            .context("a monitor ended")?;
    }
    let url = format!("http://{}/", running.addr);
    let client = reqwest::Client::new();
    // The history cache fills in the background: wait until the page shows it.
    let mut body = get(&client, &url).await?;
    while !body.contains("class=\"c g\"") {
        if Instant::now() >= deadline {
            bail!("the page showed no history within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        body = get(&client, &url).await?;
    }
    let articles = body.matches("<article").count();
    ensure!(
        articles == spec.monitors,
        "the page has {articles} cards, not {}",
        spec.monitors
    );

    let mut times = Vec::with_capacity(spec.requests);
    for _ in 0..spec.requests {
        let start = Instant::now();
        let page = get(&client, &url).await?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        ensure!(
            page.len() > body.len() / 2,
            "a short page: {} bytes",
            page.len()
        );
    }
    times.sort_by(f64::total_cmp);

    let chromium_ms = if spec.chromium_loads > 0 {
        let url = url.clone();
        let loads = spec.chromium_loads;
        tokio::task::spawn_blocking(move || chromium_load(&url, loads))
            .await
            .context("the Chromium thread panicked")?
    } else {
        None
    };
    running.shutdown(Duration::from_secs(1)).await;
    Ok(PageMeasured {
        monitors: spec.monitors,
        bytes: body.len(),
        seed_s,
        serve_min_ms: times[0],
        serve_p50_ms: times[times.len() / 2],
        serve_max_ms: times[times.len() - 1],
        chromium_ms,
    })
}

async fn get(client: &reqwest::Client, url: &str) -> Result<String> {
    let response = client.get(url).send().await.context("GET / failed")?;
    ensure!(
        response.status().is_success(),
        "GET / answered {}",
        response.status()
    );
    response.text().await.context("cannot read the page")
}

/// healthd's config: the store, and every monitor in one of ten groups.
fn config(store: &Path, names: &[String], target: SocketAddr) -> String {
    let mut config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = {:?}\n[defaults]\ninterval = \"30s\"\n",
        store.display().to_string()
    );
    for (i, name) in names.iter().enumerate() {
        let _ = write!(
            config,
            "[[monitor]]\nname = \"{name}\"\nurl = \"tcp://{target}\"\ngroup = \"group {}\"\n",
            i % 10
        );
    }
    config
}

/// Writes 90 days of history for `names` into the store at `path`, ending at `now`.
fn seed(path: &Path, names: &[String], now: SystemTime) -> Result<()> {
    let store = Store::open(path, StoreOptions::default())
        .with_context(|| format!("cannot open the store {}", path.display()))?;
    let start = now - DAY * DAYS as u32;
    let change = |time, from, to, detail: &str| StatusChange {
        time,
        from,
        to,
        detail: detail.to_owned(),
    };
    for (i, name) in names.iter().enumerate() {
        store.change(name, &change(start, Status::Unknown, Status::Starting, ""));
        store.change(name, &change(start, Status::Starting, Status::Healthy, ""));
        let mut outage = None;
        let mut time = start + HOUR;
        let recent = now - DAY;
        while time < now {
            // One monitor in ten: a 10-minute outage every few days.
            let day =
                (time.duration_since(start).unwrap_or_default().as_secs() / DAY.as_secs()) as usize;
            let failed = i.is_multiple_of(10)
                && day.is_multiple_of(3 + i % 4)
                && outage.is_none_or(|d| d != day);
            if failed {
                outage = Some(day);
                store.change(
                    name,
                    &change(time, Status::Healthy, Status::Unhealthy, "HTTP 503"),
                );
            }
            let latency = Duration::from_micros(800 + ((i * 37 + day * 11) % 40) as u64 * 100);
            store.observe(
                name,
                &Observation {
                    time,
                    latency,
                    failed,
                },
            );
            if failed {
                store.change(
                    name,
                    &change(
                        time + Duration::from_secs(600),
                        Status::Unhealthy,
                        Status::Healthy,
                        "",
                    ),
                );
            }
            time += if time < recent { HOUR * 6 } else { HOUR };
        }
        store.change(name, &change(now, Status::Healthy, Status::Stopped, ""));
    }
    store.flush().context("cannot commit the seeded history")?;
    store.close().context("cannot close the store")?;
    Ok(())
}

/// The best time of `loads` loads of `url` in headless Chromium, to the first
/// screenshot of a 1280×900 window (the page parsed, laid out and painted), less the
/// best of as many loads of `about:blank` (the browser's own start), in milliseconds.
/// Each load has a fresh profile. Not `--dump-dom`: serialising a 10 MB DOM back
/// would be most of what it measured.
fn chromium_load(url: &str, loads: usize) -> Option<f64> {
    let binary = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
    let best = |page: &str| -> Option<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..loads {
            let profile = tempfile::tempdir().ok()?;
            let shot = profile.path().join("page.png");
            let start = Instant::now();
            let out = Command::new("timeout")
                .args(["60", binary, "--headless", "--no-sandbox", "--disable-gpu"])
                .args([
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--hide-scrollbars",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg(format!("--screenshot={}", shot.display()))
                .args(["--window-size=1280,900", page])
                .output()
                .ok()?;
            if !out.status.success() || !shot.exists() {
                return None;
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
        }
        Some(best)
    };
    let blank = best("about:blank")?;
    Some((best(url)? - blank).max(0.0))
}
