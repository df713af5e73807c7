//! `health-bench`: our monitors measured side by side with the raw limit (a pooled
//! hyper-util client in a tight loop), a naive task-per-target reqwest loop and Pingora's
//! health checks, and with HAProxy's where `haproxy` is installed, against one loopback
//! upstream. Run it as `cargo xtask bench [--quick]`.
//!
//! ```text
//! health-bench [run] [--quick] [--out DIR]   the whole bench; writes DIR/report.json and DIR/chart.png
//! health-bench serve --http N --tcp N        the upstream (started by `run`)
//! health-bench scenario SPEC-JSON            one measurement in a process of its own (started by `run`)
//! health-bench detect SPEC-JSON              the detection-latency measurement (started by `run`)
//! health-bench page SPEC-JSON                the status page at 1 000 monitors (started by `run`)
//! health-bench soak [--minutes N] ...         healthd under churn, kill -9 and a flaky receiver (`soak` module)
//! ```
//!
//! Every measured implementation runs in a child process of its own, so that its CPU
//! time (user + system, from `getrusage`) and its resident memory are its alone; the
//! upstream runs in another. See the README's Performance section for what each figure
//! means.

mod chart;
mod detect;
mod haproxy;
mod naive;
mod ours;
mod page;
#[cfg(feature = "pingora")]
mod pingora;
mod raw;
mod report;
mod run;
mod server;
mod soak;
mod spec;
mod stats;

use std::{io::Write as _, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, Result, bail};

use crate::{
    run::RunOptions,
    spec::{DetectSpec, Impl, Spec},
    stats::Stats,
};

const USAGE: &str = "usage: health-bench [run] [--quick] [--out DIR] | serve --http N --tcp N | scenario JSON | detect JSON | page JSON | soak [--minutes N] [--out DIR] [--healthd PATH] [--seed N] [--error-rate P] [--without-storage]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => run::run(&default_options()),
        Some("run") => run_options(&args[1..]).and_then(|o| run::run(&o)),
        Some(flag) if flag.starts_with("--") => run_options(&args).and_then(|o| run::run(&o)),
        Some("serve") => serve_args(&args[1..]).and_then(|(http, tcp)| server::serve(http, tcp)),
        Some("scenario") if args.len() == 2 => scenario(&args[1]),
        Some("detect") if args.len() == 2 => detect(&args[1]),
        Some("page") if args.len() == 2 => page(&args[1]),
        Some("soak") => soak::SoakOptions::parse(&args[1..]).and_then(|o| soak::run(&o)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("health-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_options() -> RunOptions {
    RunOptions {
        quick: false,
        out: PathBuf::from("target/bench"),
    }
}

fn run_options(args: &[String]) -> Result<RunOptions> {
    let mut options = default_options();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--out" => options.out = PathBuf::from(args.next().context("--out needs a path")?),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(options)
}

fn serve_args(args: &[String]) -> Result<(usize, usize)> {
    let (mut http, mut tcp) = (0, 0);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a count"))?
            .parse::<usize>()
            .with_context(|| format!("{arg} needs a count"))?;
        match arg.as_str() {
            "--http" => http = value,
            "--tcp" => tcp = value,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok((http, tcp))
}

/// A runtime like a small proxy's: two worker threads (the machine has two cores).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Prints `value` as the one JSON line the orchestrator reads, then ends the process at
/// once: tearing down 100k monitors or tasks in order would only cost time.
fn answer(value: &impl serde::Serialize) -> Result<()> {
    let line = serde_json::to_string(value)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    std::process::exit(0)
}

fn scenario(json: &str) -> Result<()> {
    let spec: Spec = serde_json::from_str(json).context("bad scenario")?;
    anyhow::ensure!(!spec.targets.is_empty(), "a scenario needs targets");
    // Allocated before any baseline is read, so it never counts as monitor memory.
    let stats = Arc::new(Stats::new());
    let measured = runtime()?.block_on(async {
        match spec.imp {
            Impl::Ours => ours::run(&spec, stats).await,
            Impl::Naive => naive::run(&spec, stats).await,
            Impl::Raw => raw::run(&spec, stats).await,
            #[cfg(feature = "pingora")]
            Impl::Pingora => pingora::run(&spec, stats).await,
            #[cfg(not(feature = "pingora"))]
            Impl::Pingora => bail!("built without the `pingora` feature"),
            // HAProxy is its own process: the orchestrator runs and measures it.
            Impl::Haproxy => bail!("HAProxy is run by the orchestrator, not as a scenario"),
        }
    })?;
    answer(&measured)
}

fn detect(json: &str) -> Result<()> {
    let spec: DetectSpec = serde_json::from_str(json).context("bad detection scenario")?;
    let detection = runtime()?.block_on(detect::run(&spec))?;
    answer(&detection)
}

fn page(json: &str) -> Result<()> {
    let spec: page::PageSpec = serde_json::from_str(json).context("bad page scenario")?;
    let measured = runtime()?.block_on(page::run(&spec))?;
    answer(&measured)
}
