//! The orchestrator (`health-bench run`): starts the upstream, runs each scenario in a
//! child process of its own (so CPU and memory are that implementation's alone; HAProxy
//! runs as its own child, see the `haproxy` module), then the detection scenario, and
//! hands the results to the report.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use tokio::{process::Command, time::Instant};

use crate::{
    chart, haproxy,
    page::{PageMeasured, PageSpec},
    report::{Machine, Report, Row},
    server::Upstream,
    spec::{DetectSpec, Detection, Impl, Measured, Proto, Spec, Targets},
};

/// HTTP and TCP listeners of the shared upstream.
const UPSTREAM_LISTENERS: usize = 256;
/// Requests in flight in the raw loops.
const RAW_IN_FLIGHT: usize = 64;
/// Monitor counts of the scaling scenarios (1 s interval).
const SCALES: [usize; 2] = [1_000, 10_000];
/// Monitors of the memory scenario (30 s interval, TCP).
const BIG: usize = 100_000;
/// The scenario that measures the state store's cost: HTTP, 10k monitors at 1 s, a
/// share of them flapping, run with the store off and then on.
pub(crate) const STORE_SCENARIO: &str = "http-10k-1s-flap";
/// Monitors of [`STORE_SCENARIO`].
const STORE_MONITORS: usize = 10_000;
/// The share of [`STORE_SCENARIO`]'s monitors whose target flaps, in percent.
const FLAPPING_PERCENT: usize = 2;

/// Monitors on the status page of the page scenario.
const PAGE_MONITORS: usize = 1_000;

/// Options of a run.
#[derive(Clone, Debug)]
pub(crate) struct RunOptions {
    /// The short run (about 2½ minutes): shorter windows, the detection scaled down.
    pub(crate) quick: bool,
    /// Where `report.json` and `chart.png` go.
    pub(crate) out: PathBuf,
}

/// Durations of one kind of run, in milliseconds.
#[derive(Debug)]
struct Timing {
    raw_warmup: u64,
    raw_window: u64,
    warmup: u64,
    window: u64,
    big_warmup: u64,
    detect: DetectSpec,
}

impl Timing {
    fn new(quick: bool) -> Self {
        // Detection at the parameters (interval 10 s, fast_interval 1 s, retries 3);
        // the quick run scales both intervals by 0.2.
        let scale = if quick { 0.2 } else { 1.0 };
        let interval_ms = (10_000.0 * scale) as u64;
        let detect = DetectSpec {
            interval_ms,
            fast_interval_ms: (1_000.0 * scale) as u64,
            retries: 3,
            monitors: 100,
            // By then every monitor has had its jittered second check: phases are set.
            stop_after_ms: 2 * interval_ms + 500,
            scale,
        };
        if quick {
            Timing {
                raw_warmup: 500,
                raw_window: 2_000,
                warmup: 2_500,
                window: 3_000,
                big_warmup: 4_000,
                detect,
            }
        } else {
            Timing {
                raw_warmup: 1_000,
                // Short: a tight connect loop fills the connection-tracking table fast.
                raw_window: 3_000,
                // Past the first burst and the jittered second check (interval + jitter).
                warmup: 4_000,
                // Whole intervals, so that Pingora's once-a-round bursts are counted whole.
                window: 10_000,
                big_warmup: 10_000,
                detect,
            }
        }
    }
}

/// Why Pingora's rows are skipped in a build without its feature.
const NO_PINGORA: &str =
    "built without the `pingora` feature (its build needs cmake: apt-get install cmake)";

/// The implementations compared with ours (Pingora's rows are skipped, with the reason,
/// in a build without its feature).
fn baselines() -> [Impl; 3] {
    [Impl::Ours, Impl::Naive, Impl::Pingora]
}

fn plan(timing: &Timing, targets: &Targets) -> Vec<Spec> {
    let spec = |name: String, imp, proto, monitors, interval_ms, warmup_ms, window_ms| Spec {
        store: false,
        flapping_percent: 0,
        name,
        imp,
        proto,
        monitors,
        interval_ms,
        warmup_ms,
        window_ms,
        // Pingora checks a round's backends one after the other by default; at 1 s with
        // thousands of backends that cannot keep up, so the 1 s scenarios use its
        // `parallel_health_check`. At 100k, parallel would open 100k sockets at once.
        parallel: monitors < BIG,
        targets: match proto {
            Proto::Http => targets.http.clone(),
            Proto::Tcp => targets.tcp.clone(),
        },
        control: targets.control,
    };
    let mut specs = Vec::new();
    for proto in [Proto::Http, Proto::Tcp] {
        specs.push(spec(
            format!("{}-raw-{RAW_IN_FLIGHT}-in-flight", proto.name()),
            Impl::Raw,
            proto,
            RAW_IN_FLIGHT,
            0,
            timing.raw_warmup,
            timing.raw_window,
        ));
    }
    for proto in [Proto::Http, Proto::Tcp] {
        for monitors in SCALES {
            // HAProxy joins the 1 s scenarios only: at 100k servers its file-descriptor
            // table (one per checked server) would pass the open-files limit.
            for imp in baselines().into_iter().chain([Impl::Haproxy]) {
                specs.push(spec(
                    format!("{}-{}k-1s", proto.name(), monitors / 1000),
                    imp,
                    proto,
                    monitors,
                    1_000,
                    timing.warmup,
                    timing.window,
                ));
            }
        }
    }
    // The store's cost: the same monitors with the store off, then on, against the same
    // upstream with the same targets flapping. A steady monitor writes to the store once
    // a minute; the flapping ones make it commit real changes and events.
    for store in [false, true] {
        specs.push(Spec {
            store,
            flapping_percent: FLAPPING_PERCENT,
            ..spec(
                STORE_SCENARIO.to_owned(),
                Impl::Ours,
                Proto::Http,
                STORE_MONITORS,
                1_000,
                timing.warmup,
                timing.window,
            )
        });
    }
    for imp in baselines() {
        specs.push(spec(
            format!("tcp-{}k-30s", BIG / 1000),
            imp,
            Proto::Tcp,
            BIG,
            30_000,
            timing.big_warmup,
            0,
        ));
    }
    specs
}

/// Runs the bench and writes the report.
pub(crate) fn run(options: &RunOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the orchestrator's runtime")?;
    runtime.block_on(orchestrate(options))
}

async fn orchestrate(options: &RunOptions) -> Result<()> {
    let started = Instant::now();
    let machine = Machine::read();
    let timing = Timing::new(options.quick);
    eprintln!(
        "health-bench: {} run on {machine}",
        if options.quick { "quick" } else { "full" }
    );
    if !cfg!(feature = "pingora") {
        eprintln!("health-bench: no Pingora rows: {NO_PINGORA}");
    }
    let haproxy = haproxy::version();
    match &haproxy {
        Ok(version) => eprintln!("health-bench: {version}"),
        Err(why) => eprintln!("health-bench: no HAProxy rows: {why}"),
    }

    let upstream = Upstream::spawn(UPSTREAM_LISTENERS, UPSTREAM_LISTENERS).await?;
    let specs = plan(&timing, &upstream.targets);
    let mut rows = Vec::with_capacity(specs.len());
    for spec in specs {
        let limit =
            Duration::from_millis(spec.warmup_ms + spec.window_ms) + Duration::from_secs(60);
        let json = serde_json::to_string(&spec)?;
        eprint!(
            "  {:<22} {:<10} {:>7} monitors ... ",
            spec.name,
            spec.label(),
            spec.monitors
        );
        let skipped = match spec.imp {
            Impl::Haproxy => haproxy.as_ref().err().cloned(),
            Impl::Pingora if !cfg!(feature = "pingora") => Some(NO_PINGORA.to_owned()),
            _ => None,
        };
        if let Some(why) = skipped {
            eprintln!("skipped: {why}");
            rows.push(Row {
                spec,
                measured: None,
                skipped: Some(why),
            });
            continue;
        }
        settle().await;
        let result: Result<Measured> = if spec.imp == Impl::Haproxy {
            match tokio::time::timeout(limit, haproxy::run(&spec)).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("no answer in {} s", limit.as_secs())),
            }
        } else {
            child(&["scenario", &json], limit).await
        };
        match &result {
            Ok(m) if m.checks > 0 => eprintln!(
                "{:.1} µs/check, {:.0} checks/s, {} failed, {}",
                m.cpu_s * 1e6 / m.checks as f64,
                m.checks as f64 / m.window_s,
                m.failures,
                m.connections.map_or_else(
                    || "new connections not counted".to_owned(),
                    |c| format!("{:.2} new connections/check", c as f64 / m.checks as f64)
                )
            ),
            Ok(m) => eprintln!(
                "{:.0} B/monitor",
                m.rss_after.saturating_sub(m.rss_base) as f64 / spec.monitors as f64
            ),
            Err(err) => eprintln!("failed: {err:#}"),
        }
        rows.push(Row {
            spec,
            measured: result.ok(),
            skipped: None,
        });
    }
    upstream.stop().await?;

    let detect = &timing.detect;
    eprint!(
        "  detection: interval {} ms, fast_interval {} ms, retries {} ... ",
        detect.interval_ms, detect.fast_interval_ms, detect.retries
    );
    let limit = Duration::from_millis(
        detect.stop_after_ms + detect.interval_ms * (detect.retries.unsigned_abs() + 2),
    ) + Duration::from_secs(30);
    let detection: Option<Detection> =
        match child::<Detection>(&["detect", &serde_json::to_string(detect)?], limit).await {
            Ok(d) => {
                eprintln!(
                    "{:.0} ms without, {:.0} ms with (means)",
                    d.without_fast_interval.mean_ms, d.with_fast_interval.mean_ms
                );
                Some(d)
            }
            Err(err) => {
                eprintln!("failed: {err:#}");
                None
            }
        };

    let page = PageSpec {
        monitors: PAGE_MONITORS,
        requests: if options.quick { 10 } else { 30 },
        chromium_loads: if options.quick { 1 } else { 3 },
    };
    eprint!(
        "  status page: {} monitors, 90 days of history ... ",
        page.monitors
    );
    let page: Option<PageMeasured> = match child::<PageMeasured>(
        &["page", &serde_json::to_string(&page)?],
        Duration::from_secs(300),
    )
    .await
    {
        Ok(p) => {
            eprintln!(
                "GET / {:.0} ms (median), {:.1} MB",
                p.serve_p50_ms,
                p.bytes as f64 / 1e6
            );
            Some(p)
        }
        Err(err) => {
            eprintln!("failed: {err:#}");
            None
        }
    };

    let report = Report {
        haproxy: haproxy.ok(),
        machine,
        quick: options.quick,
        rows,
        detection,
        page,
    };
    println!("{}", report.table());
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    let json_path = options.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report.json())?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let chart_path = options.out.join("chart.png");
    if let Err(err) = chart::draw(&report, &chart_path) {
        eprintln!("health-bench: no chart: {err:#}");
    }
    eprintln!(
        "health-bench: wrote {} and {} in {:.0} s",
        json_path.display(),
        chart_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads a number from a `/proc` file (`None` where there is no such file).
fn proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Sockets in TIME_WAIT, from `/proc/net/sockstat` (`TCP: inuse .. tw N ..`).
fn time_wait_sockets() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let tcp = stat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = tcp.split_whitespace();
    words.find(|w| *w == "tw")?;
    words.next()?.parse().ok()
}

/// Waits (30 s at most) until the connections of earlier scenarios have left the
/// kernel's tables: the connection-tracking table under half full (a scenario adds at
/// most about 100k entries: 10k connects/s, each kept 10 s after its reset) and few
/// sockets in TIME_WAIT. A full conntrack table drops SYNs, which would stall the next
/// scenario's connects for seconds (see the `server` module).
async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(30);
    let conntrack_max = proc_number("/proc/sys/net/netfilter/nf_conntrack_max");
    loop {
        let conntrack = proc_number("/proc/sys/net/netfilter/nf_conntrack_count");
        let busy = matches!((conntrack, conntrack_max), (Some(n), Some(max)) if n > max / 2)
            || time_wait_sockets().is_some_and(|tw| tw > 20_000);
        if !busy || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `health-bench ARGS` and reads the JSON line it prints last; kills it past `limit`.
async fn child<T: DeserializeOwned>(args: &[&str], limit: Duration) -> Result<T> {
    let exe = std::env::current_exe().context("cannot find the bench binary")?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a child process")?;
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(output) => output.context("cannot wait for a child process")?,
        Err(_) => bail!("no answer in {} s", limit.as_secs()),
    };
    if !output.status.success() {
        bail!("the child process failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the child process printed nothing")?;
    serde_json::from_str(line).context("cannot read the child's answer")
}
