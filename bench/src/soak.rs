//! `health-bench soak`: healthd under churn for minutes, killed with SIGKILL halfway and
//! started again on the same store, its notifications checked against the ground truth.
//!
//! ```text
//! health-bench soak [--minutes N] [--out DIR] [--healthd PATH] [--seed N] [--error-rate P]
//!                   [--without-storage]
//! ```
//!
//! One process holds the upstreams ([`upstream`]: 10 000 targets on a few hundred
//! loopback listeners, each flapping on its own seeded [`schedule`]) and the webhook
//! receiver ([`receiver`]: down for two windows, a few error answers otherwise); healthd
//! runs as a child ([`daemon`]) on a generated config. The run, with R the run time
//! counted from the moment healthd first answers `/healthz`:
//!
//! | at | what |
//! |---|---|
//! | 0 | the targets begin to flap |
//! | 0.20 R | healthd's resident memory is read (`rss_warm`); the receiver goes down |
//! | 0.30 R | the receiver comes back |
//! | 0.45 R | the receiver goes down again |
//! | 0.50 R | `kill -9` healthd; 3 s later it starts again on the same config and store |
//! | 0.55 R | the receiver comes back |
//! | R | the drain: every target up, until the outbox is empty and every `down` has its `up` (3 min at most) |
//!
//! Through the run, healthd's `/metrics` is scraped every 15 s, as a Prometheus would
//! (its buffers are part of healthd's resident memory, so both readings include them).
//! The kill lands while the receiver is down, so the outbox holds a backlog that only
//! the store can carry over, and no delivery is in flight: a duplicate then is the
//! daemon's doing, not a reply lost with the process. Then [`verdict`] counts, and the
//! run fails on any lost, duplicated or orphan notification, a stuck target, no outage
//! at all, or memory grown by more than 5 %.

mod daemon;
mod receiver;
mod schedule;
mod upstream;
mod verdict;

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, bail};
use health_types::{Clock as _, SystemClock};
use serde::Serialize;
use tokio::{sync::watch, time::Instant};

use self::{
    daemon::{Api, Healthd, HealthdConfig, free_port, outbox_pending, rss_bytes, validate},
    receiver::{Receiver, ReceiverCounts},
    schedule::{Phases, Schedule},
    upstream::Upstreams,
    verdict::{Evidence, Rules, Verdict, Window, open_downs},
};

/// The usage line of `soak`.
pub(crate) const USAGE: &str = "health-bench soak [--minutes N] [--out DIR] [--healthd PATH] [--seed N] [--error-rate P] [--without-storage]";

/// Targets per upstream listener (at most [`MAX_LISTENERS`] listeners).
const TARGETS_PER_LISTENER: usize = 50;
/// The most upstream listeners: a few hundred sockets, whatever the monitor count.
const MAX_LISTENERS: usize = 200;
/// How long healthd stays dead between the kill and the new start.
const RESTART_PAUSE: Duration = Duration::from_secs(3);
/// After healthd answers `/healthz` (first start and restart), silences are not counted
/// toward `stuck` for this long: every monitor's first checks are still being spread.
const SETTLE: i64 = 5_000;
/// How long healthd may take to answer `/healthz` after it starts.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// Without the outbox metric, the outbox counts as empty after this long with no new
/// notification.
const QUIET: i64 = 30_000;
/// healthd's `/metrics` is scraped this often through the run, as a Prometheus would:
/// a scrape of 10 000 monitors is about 8 MB of text whose buffers stay in healthd's
/// resident memory, so `rss_warm` must include them as `rss_end` does.
const SCRAPE_EVERY: i64 = 15_000;
/// The drain looks at the outbox and the receiver this often, the first time once a
/// check that began before the drain has had its timeout to end (a `down` it causes is
/// committed by then).
const DRAIN_POLL: Duration = Duration::from_secs(5);

/// Milliseconds since the harness started, on the monotonic clock, with the wall-clock
/// time of that start to place notifications' `time` fields on the same scale.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stopwatch {
    start: Instant,
    wall: SystemTime,
}

impl Stopwatch {
    /// Starts now.
    pub(crate) fn start() -> Self {
        Stopwatch {
            start: Instant::now(),
            wall: SystemClock.now(),
        }
    }

    /// Milliseconds since the start.
    pub(crate) fn ms(&self) -> i64 {
        self.start.elapsed().as_millis() as i64
    }

    /// The instant `ms` after the start (never before it).
    fn instant(&self, ms: i64) -> Instant {
        self.start + Duration::from_millis(ms.max(0) as u64)
    }

    /// A wall-clock time on this scale (negative before the start).
    pub(crate) fn wall_ms(&self, time: SystemTime) -> i64 {
        match time.duration_since(self.wall) {
            Ok(after) => after.as_millis() as i64,
            Err(before) => -(before.duration().as_millis() as i64),
        }
    }

    /// The wall-clock time of `ms` on this scale.
    #[cfg(test)]
    pub(crate) fn wall(&self, ms: i64) -> SystemTime {
        if ms >= 0 {
            self.wall + Duration::from_millis(ms as u64)
        } else {
            self.wall - Duration::from_millis(ms.unsigned_abs())
        }
    }
}

/// Options of `health-bench soak`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SoakOptions {
    /// The run time R before the drain, in minutes (default 10).
    pub(crate) minutes: f64,
    /// Where the report, the config, the logs and healthd's output go (default
    /// `target/soak`).
    pub(crate) out: PathBuf,
    /// The healthd binary (default `target/release/healthd`).
    pub(crate) healthd: PathBuf,
    /// Monitors, one per target (default 10 000; hidden option `--monitors`).
    pub(crate) monitors: usize,
    /// Seeds the schedules and the receiver's answers (default 1).
    pub(crate) seed: u64,
    /// The share of notifications the receiver answers 500 or 429 while up (default 0.05).
    pub(crate) error_rate: f64,
    /// Writes `[storage]` and `[delivery]` into the config (default; `--without-storage`
    /// leaves them out, for a healthd that does not know them).
    pub(crate) storage: bool,
    /// The drain's deadline in seconds (default 180; hidden option `--drain-secs`).
    pub(crate) drain_secs: u64,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            minutes: 10.0,
            out: PathBuf::from("target/soak"),
            healthd: PathBuf::from("target/release/healthd"),
            monitors: 10_000,
            seed: 1,
            error_rate: 0.05,
            storage: true,
            drain_secs: 180,
        }
    }
}

impl SoakOptions {
    /// Parses the arguments after `soak`.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        fn value<'a, T: std::str::FromStr>(
            flag: &str,
            args: &mut impl Iterator<Item = &'a String>,
        ) -> Result<T> {
            args.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{flag} needs a value\nusage: {USAGE}"))
        }
        let mut options = SoakOptions::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--minutes" => options.minutes = value(arg, &mut args)?,
                "--out" => options.out = value(arg, &mut args)?,
                "--healthd" => options.healthd = value(arg, &mut args)?,
                "--monitors" => options.monitors = value(arg, &mut args)?,
                "--seed" => options.seed = value(arg, &mut args)?,
                "--error-rate" => options.error_rate = value(arg, &mut args)?,
                "--without-storage" => options.storage = false,
                "--drain-secs" => options.drain_secs = value(arg, &mut args)?,
                other => bail!("unknown argument {other:?}\nusage: {USAGE}"),
            }
        }
        if !(options.minutes > 0.0 && options.minutes <= 24.0 * 60.0) {
            bail!("--minutes must be above 0 and at most a day");
        }
        if options.monitors == 0 || options.monitors > 100_000 {
            bail!("--monitors must be 1 to 100 000");
        }
        if !(0.0..=1.0).contains(&options.error_rate) {
            bail!("--error-rate must be between 0 and 1");
        }
        Ok(options)
    }

    /// The run time R in milliseconds.
    fn run_ms(&self) -> i64 {
        (self.minutes * 60_000.0).round() as i64
    }
}

/// One step of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Read `rss_warm`.
    RssWarm,
    /// Close the receiver.
    ReceiverDown,
    /// Open the receiver again.
    ReceiverUp,
    /// `kill -9` healthd and start it again.
    Restart,
    /// Stop the flapping and wait for the outbox to empty.
    Drain,
}

/// The steps of a run of `run_ms`, at times counted from the moment flapping began.
fn plan(run_ms: i64) -> Vec<(i64, Step)> {
    let at = |share: f64| (run_ms as f64 * share).round() as i64;
    vec![
        (at(0.20), Step::RssWarm),
        (at(0.20), Step::ReceiverDown),
        (at(0.30), Step::ReceiverUp),
        (at(0.45), Step::ReceiverDown),
        (at(0.50), Step::Restart),
        (at(0.55), Step::ReceiverUp),
        (run_ms, Step::Drain),
    ]
}

/// `m:ss` for a time in milliseconds.
fn clock_time(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Runs the soak; fails (after writing the report) when the verdict does.
pub(crate) fn run(options: &SoakOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(soak(options))
}

/// What the waits watch besides time: Ctrl-C and an unexpected healthd exit.
#[derive(Debug)]
struct Watch {
    interrupted: watch::Receiver<bool>,
}

impl Watch {
    fn new() -> Self {
        let (tx, interrupted) = watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tx.send_replace(true);
            }
        });
        Watch { interrupted }
    }

    /// Waits until `until`; fails on Ctrl-C or when `healthd` (if given) exits.
    async fn until(&mut self, until: Instant, healthd: Option<&mut Healthd>) -> Result<()> {
        let exited = async {
            match healthd {
                Some(healthd) => {
                    let status = healthd.exited().await;
                    (status, healthd.stderr_tail())
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(until) => Ok(()),
            (status, tail) = exited => {
                bail!("healthd exited during the run ({}):\n{tail}", status?)
            }
            _ = self.interrupted.wait_for(|i| *i) => bail!("interrupted"),
        }
    }
}

/// Starts healthd and waits until it answers `/healthz`; returns it with that moment.
async fn start_healthd(
    options: &SoakOptions,
    files: &Files,
    generation: u32,
    api: &Api,
    clock: Stopwatch,
    watch: &mut Watch,
) -> Result<(Healthd, i64)> {
    let mut healthd = Healthd::spawn(
        &options.healthd,
        &files.config,
        &files.state,
        &options.out,
        generation,
    )?;
    let deadline = Instant::now() + START_DEADLINE;
    while !api.healthy().await {
        if Instant::now() >= deadline {
            bail!(
                "healthd did not answer /healthz within {} s:\n{}",
                START_DEADLINE.as_secs(),
                healthd.stderr_tail()
            );
        }
        let next = Instant::now() + Duration::from_millis(200);
        watch.until(next, Some(&mut healthd)).await?;
    }
    Ok((healthd, clock.ms()))
}

/// The run's files.
#[derive(Debug)]
struct Files {
    config: PathBuf,
    state: PathBuf,
}

/// What the run measured besides the verdict.
#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    verdict: Verdict,
    passed: bool,
    failures: Vec<String>,
    monitors: usize,
    listeners: usize,
    minutes: f64,
    seed: u64,
    error_rate: f64,
    /// `[storage]` and `[delivery]` were in the config.
    storage: bool,
    /// From the kill to `/healthz` answering again, in ms.
    restart_ms: i64,
    /// How long the drain took, in ms.
    drain_ms: i64,
    /// The drain ended with an empty outbox and every `down` answered by an `up`.
    drained: bool,
    /// healthd exposed `healthd_outbox_pending`.
    outbox_metric: bool,
    /// healthd exited 0 within 10 s of SIGTERM at the end.
    clean_exit: bool,
    receiver: ReceiverCounts,
}

impl Report {
    fn table(&self) -> String {
        let v = &self.verdict;
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let growth = if v.rss_warm > 0 {
            format!(
                "{:+.1} %",
                (v.rss_end as f64 / v.rss_warm as f64 - 1.0) * 100.0
            )
        } else {
            "n/a".to_owned()
        };
        let rows = [
            (
                "outages",
                v.outages.to_string(),
                format!("{} needed a down", v.needed_downs),
            ),
            ("downs", v.downs.to_string(), String::new()),
            ("ups", v.ups.to_string(), String::new()),
            (
                "lost",
                v.lost.to_string(),
                format!("{} downs, {} ups", v.lost_downs, v.lost_ups),
            ),
            (
                "duplicated",
                v.duplicated.to_string(),
                format!(
                    "{} repeated deliveries, {} second downs",
                    v.duplicate_deliveries, v.second_downs
                ),
            ),
            ("orphan", v.orphan.to_string(), String::new()),
            (
                "stuck",
                v.stuck.to_string(),
                format!(
                    "longest silence {} ms, {} checks",
                    v.max_silence_ms, v.checks
                ),
            ),
            (
                "rss_warm",
                format!("{:.1} MiB", mib(v.rss_warm)),
                String::new(),
            ),
            ("rss_end", format!("{:.1} MiB", mib(v.rss_end)), growth),
            (
                "spurious",
                v.spurious.to_string(),
                "false alarms; reported, not judged".to_owned(),
            ),
            (
                "other",
                (v.other_events + v.unreadable).to_string(),
                format!(
                    "{} other events, {} unreadable",
                    v.other_events, v.unreadable
                ),
            ),
        ];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "soak: {} monitors, {} min, seed {}, {} % receiver errors, storage {}",
            self.monitors,
            self.minutes,
            self.seed,
            self.error_rate * 100.0,
            if self.storage { "on" } else { "left out" }
        );
        let _ = writeln!(
            out,
            "  restart {:.1} s, drain {:.1} s ({}), outbox metric {}, clean exit {}",
            self.restart_ms as f64 / 1e3,
            self.drain_ms as f64 / 1e3,
            if self.drained {
                "complete"
            } else {
                "hit its deadline"
            },
            if self.outbox_metric { "seen" } else { "absent" },
            if self.clean_exit { "yes" } else { "no" }
        );
        let r = &self.receiver;
        let _ = writeln!(
            out,
            "  receiver: {} accepted, {} answered 500, {} answered 429, {} malformed",
            r.accepted, r.server_errors, r.too_many, r.malformed
        );
        for (name, value, note) in rows {
            let _ = writeln!(out, "  {name:<11} {value:>12}  {note}");
        }
        if self.failures.is_empty() {
            let _ = write!(out, "PASS");
        } else {
            let _ = write!(out, "FAIL: {}", self.failures.join("; "));
        }
        out
    }
}

async fn soak(options: &SoakOptions) -> Result<()> {
    let clock = Stopwatch::start();
    let mut watch = Watch::new();
    let rules = Rules::soak();
    let run_ms = options.run_ms();
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    anyhow::ensure!(
        options.healthd.is_file(),
        "no healthd at {} (build it: cargo build --release -p healthd)",
        options.healthd.display()
    );

    let phases = Phases::default();
    let schedules: Vec<Schedule> = (0..options.monitors)
        .map(|i| Schedule::generate(options.seed, i, &phases, run_ms))
        .collect();
    let planned: usize = schedules.iter().map(|s| s.outages(0, run_ms).len()).sum();
    let listeners = options
        .monitors
        .div_ceil(TARGETS_PER_LISTENER)
        .clamp(1, MAX_LISTENERS);
    // Silences of two intervals or more are kept: `stuck` needs three, and the report's
    // longest silence is exact from two on.
    let upstreams = Upstreams::start(clock, schedules, listeners, 2 * rules.interval).await?;
    let receiver = Receiver::start(clock, free_port()?, options.error_rate, options.seed).await?;
    let api_addr = free_port()?;
    let api = Api::new(api_addr)?;

    let state = tempfile::Builder::new()
        .prefix("state-")
        .tempdir_in(&options.out)
        .context("cannot create the state directory")?;
    let config = HealthdConfig {
        listen: api_addr,
        receiver: receiver.addr(),
        store: options.storage.then(|| state.path().join("healthd.db")),
        max_backoff: Duration::from_secs(10),
        rules,
        targets: (0..options.monitors).map(|i| upstreams.url(i)).collect(),
    };
    let files = Files {
        config: options.out.join("healthd.toml"),
        state: state.path().to_path_buf(),
    };
    std::fs::write(&files.config, config.render()?)
        .with_context(|| format!("cannot write {}", files.config.display()))?;
    validate(&options.healthd, &files.config).await?;

    let steps = plan(run_ms);
    eprintln!(
        "soak: {} monitors on {listeners} listeners, run {} + drain (at most {} s), seed {}, \
         {} outages planned (about {:.0} notifications/s), receiver errors {} %",
        options.monitors,
        clock_time(run_ms),
        options.drain_secs,
        options.seed,
        planned,
        2.0 * planned as f64 / (run_ms as f64 / 1e3),
        options.error_rate * 100.0,
    );
    eprintln!(
        "soak: receiver down {}-{} and {}-{}, kill -9 at {}; output in {}",
        clock_time(steps[1].0),
        clock_time(steps[2].0),
        clock_time(steps[3].0),
        clock_time(steps[5].0),
        clock_time(steps[4].0),
        options.out.display()
    );

    let (mut healthd, ready) = start_healthd(options, &files, 1, &api, clock, &mut watch).await?;
    upstreams.start_flapping(ready);
    eprintln!(
        "[{}] healthd {} answers after {:.1} s; flapping begins",
        clock_time(0),
        healthd.pid(),
        ready as f64 / 1e3
    );
    let progress_every = (run_ms / 10).clamp(10_000, 60_000);
    let mut next_progress = ready + progress_every;
    let mut next_scrape = ready + SCRAPE_EVERY;
    let mut rss_warm = 0;
    let (mut killed_at, mut restarted_at) = (i64::MAX, i64::MAX);
    let progress = |now: i64, healthd: &Healthd, pending: Option<u64>| {
        let counts = receiver.counts();
        eprintln!(
            "[{}] {} targets down, {} notifications accepted ({} answered 500, {} 429), \
             outbox {}, healthd rss {:.1} MiB",
            clock_time(now - ready),
            upstreams.down_now(now),
            counts.accepted,
            counts.server_errors,
            counts.too_many,
            pending.map_or_else(|| "?".to_owned(), |n| format!("{n} pending")),
            rss_bytes(healthd.pid()).unwrap_or(0) as f64 / (1024.0 * 1024.0)
        );
    };
    for (at, step) in steps {
        let at = ready + at;
        while next_scrape <= at {
            watch
                .until(clock.instant(next_scrape), Some(&mut healthd))
                .await?;
            let pending = api.metrics().await.as_deref().and_then(outbox_pending);
            if next_scrape >= next_progress {
                progress(clock.ms(), &healthd, pending);
                next_progress += progress_every;
            }
            next_scrape += SCRAPE_EVERY;
        }
        watch.until(clock.instant(at), Some(&mut healthd)).await?;
        let now = clock.ms();
        let stamp = clock_time(now - ready);
        match step {
            Step::RssWarm => {
                rss_warm = rss_bytes(healthd.pid()).unwrap_or(0);
                eprintln!(
                    "[{stamp}] rss_warm {:.1} MiB",
                    rss_warm as f64 / (1024.0 * 1024.0)
                );
            }
            Step::ReceiverDown => {
                receiver.set_up(false).await?;
                eprintln!("[{stamp}] receiver down");
            }
            Step::ReceiverUp => {
                receiver.set_up(true).await?;
                eprintln!("[{stamp}] receiver up");
            }
            Step::Restart => {
                killed_at = clock.ms();
                let pid = healthd.pid();
                let status = healthd.kill9().await?;
                eprintln!("[{stamp}] kill -9 healthd {pid} ({status})");
                watch.until(Instant::now() + RESTART_PAUSE, None).await?;
                let (again, ready_again) =
                    start_healthd(options, &files, 2, &api, clock, &mut watch).await?;
                healthd = again;
                restarted_at = ready_again;
                eprintln!(
                    "[{}] healthd {} answers again, {:.1} s after the kill",
                    clock_time(ready_again - ready),
                    healthd.pid(),
                    (ready_again - killed_at) as f64 / 1e3
                );
            }
            Step::Drain => {}
        }
    }

    // The drain.
    let drain_at = clock.ms();
    upstreams.drain(drain_at);
    receiver.set_up(true).await?;
    eprintln!(
        "[{}] drain: every target up; waiting for the outbox and the last ups",
        clock_time(drain_at - ready)
    );
    let deadline = drain_at + options.drain_secs as i64 * 1_000;
    let mut outbox_metric = false;
    let mut next_note = drain_at + 10_000;
    let first_look = Duration::from_millis((rules.timeout + 1_000) as u64);
    watch
        .until(Instant::now() + first_look, Some(&mut healthd))
        .await?;
    let drained = loop {
        let pending = api.metrics().await.as_deref().and_then(outbox_pending);
        outbox_metric |= pending.is_some();
        let now = clock.ms();
        let open = open_downs(&receiver.accepted());
        let quiet = receiver.last_accepted().is_none_or(|t| now - t >= QUIET);
        let empty = match pending {
            Some(pending) => pending == 0,
            // Once seen, the metric decides; a failed scrape is not an empty outbox.
            None => !outbox_metric && quiet,
        };
        if empty && open == 0 {
            break true;
        }
        if now >= deadline {
            eprintln!(
                "[{}] drain deadline: outbox {}, {open} downs without their up",
                clock_time(now - ready),
                match pending {
                    Some(n) => format!("{n} pending"),
                    None if quiet => "quiet (no metric)".to_owned(),
                    None => "still delivering (no metric)".to_owned(),
                }
            );
            break false;
        }
        if now >= next_note {
            eprintln!(
                "[{}] draining: outbox {}, {open} downs without their up",
                clock_time(now - ready),
                pending.map_or_else(|| "metric absent".to_owned(), |n| format!("{n} pending"))
            );
            next_note += 10_000;
        }
        watch
            .until(Instant::now() + DRAIN_POLL, Some(&mut healthd))
            .await?;
    };

    let end = clock.ms();
    let rss_end = rss_bytes(healthd.pid()).unwrap_or(0);
    let outages = upstreams.ground_truth(end);
    let requests = upstreams.request_logs();
    let accepted = receiver.accepted();
    let clean_exit = healthd.terminate(Duration::from_secs(10)).await?;
    let monitored = [
        Window {
            start: ready,
            end: killed_at,
        },
        Window {
            start: restarted_at,
            end,
        },
    ];
    let observed = monitored.map(|w| Window {
        start: w.start + SETTLE,
        end: w.end,
    });
    let verdict = Verdict::judge(&Evidence {
        rules,
        outages: &outages,
        requests: &requests,
        accepted: &accepted,
        monitored: &monitored,
        observed: &observed,
        rss_warm,
        rss_end,
    });
    let failures = verdict.failures();
    let report = Report {
        verdict,
        passed: failures.is_empty(),
        failures,
        monitors: options.monitors,
        listeners,
        minutes: options.minutes,
        seed: options.seed,
        error_rate: options.error_rate,
        storage: options.storage,
        restart_ms: restarted_at.saturating_sub(killed_at),
        drain_ms: end - drain_at,
        drained,
        outbox_metric,
        clean_exit,
        receiver: receiver.counts(),
    };
    write_outputs(&options.out, &report, &accepted)?;
    println!("{}", report.table());
    if report.passed {
        Ok(())
    } else {
        let kept = state.keep();
        eprintln!("soak: healthd's store is kept in {}", kept.display());
        bail!("soak failed: {}", report.failures.join("; "))
    }
}

/// Writes `report.json` and `accepted.jsonl` (every accepted notification, one a line).
fn write_outputs(out: &Path, report: &Report, accepted: &[verdict::Accepted]) -> Result<()> {
    let path = out.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let path = out.join("accepted.jsonl");
    let file =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut file = std::io::BufWriter::new(file);
    for line in accepted {
        serde_json::to_writer(&mut file, line)?;
        file.write_all(b"\n")?;
    }
    file.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "soak: wrote {} and {}",
        out.join("report.json").display(),
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_default_to_the_full_soak() {
        let options = SoakOptions::parse(&[]).expect("no arguments");
        assert_eq!(options, SoakOptions::default());
        assert_eq!(options.run_ms(), 600_000);
        assert_eq!(options.monitors, 10_000);
        assert!(options.storage);
    }

    #[test]
    fn options_parse_and_bad_ones_are_refused() {
        let options = SoakOptions::parse(&args(
            "--minutes 1.5 --out x --healthd y --monitors 200 --seed 9 --error-rate 0 \
             --without-storage --drain-secs 60",
        ))
        .expect("valid");
        assert_eq!(options.run_ms(), 90_000);
        assert_eq!(
            (options.out.as_path(), options.healthd.as_path()),
            (Path::new("x"), Path::new("y"))
        );
        assert_eq!(
            (options.monitors, options.seed, options.drain_secs),
            (200, 9, 60)
        );
        assert_eq!(options.error_rate, 0.0);
        assert!(!options.storage);
        for bad in [
            "--minutes",
            "--minutes 0",
            "--minutes x",
            "--monitors 0",
            "--error-rate 1.5",
            "--quick",
        ] {
            assert!(SoakOptions::parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plan_keeps_the_receiver_down_a_fifth_of_the_run_and_kills_inside_a_window() {
        let run = 600_000;
        let steps = plan(run);
        assert!(steps.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
        assert_eq!(steps.last(), Some(&(run, Step::Drain)));
        let mut down_since = None;
        let mut down_total = 0;
        let mut kill_while_down = false;
        for &(at, step) in &steps {
            match step {
                Step::ReceiverDown => down_since = Some(at),
                Step::ReceiverUp => {
                    down_total += at - down_since.take().expect("down before up");
                }
                Step::Restart => kill_while_down = down_since.is_some(),
                Step::RssWarm => assert_eq!(at, run / 5),
                Step::Drain => assert!(down_since.is_none(), "the receiver is up to drain"),
            }
        }
        assert_eq!(down_total, run / 5);
        assert!(kill_while_down);
    }

    #[test]
    fn the_stopwatch_places_wall_clock_times_on_its_scale() {
        let clock = Stopwatch::start();
        for ms in [-5_000, 0, 1_234, 3_600_000] {
            assert_eq!(clock.wall_ms(clock.wall(ms)), ms);
        }
    }

    #[test]
    fn clock_times_are_minutes_and_seconds() {
        assert_eq!(clock_time(0), "0:00");
        assert_eq!(clock_time(61_999), "1:01");
        assert_eq!(clock_time(600_000), "10:00");
    }

    fn report(verdict: Verdict) -> Report {
        let failures = verdict.failures();
        Report {
            verdict,
            passed: failures.is_empty(),
            failures,
            monitors: 10_000,
            listeners: 200,
            minutes: 10.0,
            seed: 1,
            error_rate: 0.05,
            storage: true,
            restart_ms: 3_500,
            drain_ms: 20_000,
            drained: true,
            outbox_metric: true,
            clean_exit: true,
            receiver: ReceiverCounts::default(),
        }
    }

    #[test]
    fn the_report_has_the_contract_keys_as_top_level_integers() {
        let verdict = Verdict {
            outages: 7,
            downs: 7,
            ups: 7,
            lost: 1,
            lost_ups: 1,
            rss_warm: 100,
            rss_end: 100,
            ..Verdict::default()
        };
        let json = serde_json::to_value(report(verdict)).expect("serializes");
        for key in [
            "outages",
            "downs",
            "ups",
            "lost",
            "duplicated",
            "orphan",
            "stuck",
            "rss_warm",
            "rss_end",
        ] {
            assert!(json[key].is_u64(), "{key}: {}", json[key]);
        }
        assert_eq!(json["lost"], 1);
        assert_eq!(json["passed"], false);
        assert_eq!(json["failures"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn the_table_names_each_key_and_ends_with_the_verdict() {
        let passing = Verdict {
            outages: 3,
            rss_warm: 100,
            rss_end: 101,
            ..Verdict::default()
        };
        let table = report(passing.clone()).table();
        for key in [
            "outages",
            "lost",
            "duplicated",
            "orphan",
            "stuck",
            "rss_end",
        ] {
            assert!(table.contains(key), "{key} missing from\n{table}");
        }
        assert!(table.ends_with("PASS"), "{table}");
        let failing = Verdict {
            orphan: 2,
            ..passing
        };
        let table = report(failing).table();
        assert!(
            table.ends_with("FAIL: 2 ups without a down before them"),
            "{table}"
        );
    }
}
