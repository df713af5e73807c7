//! Repository tasks, run as `cargo xtask <task>`:
//!
//! - `test`: `cargo fmt --check`, clippy with `-D warnings`, `cargo test --workspace`,
//!   then the conformance vectors. The bench package (`health-bench`) is left out of
//!   the workspace build (its Pingora baseline needs cmake) and clippy-checks alone
//!   without its `pingora` feature;
//! - `conformance [DIR...]`: runs the conformance vectors of SPEC §8 (default
//!   `tests/conformance`);
//! - `bench [--quick]`: builds the bench in release and runs it: a table on stdout,
//!   `target/bench/report.json` and `target/bench/chart.png` (full run under 10 minutes,
//!   `--quick` under 2; needs cmake for Pingora);
//! - `ci`: what `.ci/run` runs (the same as `test`).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <test|conformance [DIR...]|bench [--quick]|ci>";

/// The bench package: `test` only clippy-checks it, without Pingora (which needs cmake);
/// `bench` builds and runs it.
const BENCH: &str = "health-bench";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test" | "ci") if args.len() == 1 => test(),
        Some("conformance") => conformance(&args[1..]),
        Some("bench") if args.len() == 1 => bench(false),
        Some("bench") if args.len() == 2 && args[1] == "--quick" => bench(true),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd`, printing it first; fails when it exits non-zero.
fn run(step: &str, mut cmd: Command) -> Result<()> {
    eprintln!("xtask: {step}");
    let status = cmd.status().with_context(|| format!("cannot run {step}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn test() -> Result<ExitCode> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run("cargo fmt --check", fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        BENCH,
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", clippy)?;

    // The bench's own code, without the Pingora baseline (whose build needs cmake).
    let mut bench_clippy = cargo();
    bench_clippy.args([
        "clippy",
        "--package",
        BENCH,
        "--no-default-features",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(
        "cargo clippy -p health-bench --no-default-features",
        bench_clippy,
    )?;

    let mut tests = cargo();
    tests.args(["test", "--workspace", "--exclude", BENCH]);
    run("cargo test --workspace --exclude health-bench", tests)?;

    let code = conformance(&[])?;
    if code != ExitCode::SUCCESS {
        bail!("conformance vectors failed");
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds and runs the bench in release; it writes `target/bench/`.
fn bench(quick: bool) -> Result<ExitCode> {
    let out = root().join("target").join("bench");
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--package", BENCH, "--", "run", "--out"]);
    cmd.arg(&out);
    if quick {
        cmd.arg("--quick");
    }
    run("cargo run --release -p health-bench", cmd)?;
    Ok(ExitCode::SUCCESS)
}

fn conformance(dirs: &[String]) -> Result<ExitCode> {
    let dirs: Vec<PathBuf> = if dirs.is_empty() {
        vec![root().join("tests/conformance")]
    } else {
        // Relative to where the user stands, not to the workspace root.
        let cwd = env::current_dir().context("cannot read the current directory")?;
        dirs.iter().map(|d| cwd.join(d)).collect()
    };
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--package",
        "health-tests",
        "--bin",
        "conformance",
        "--",
    ]);
    cmd.args(&dirs);
    let status = cmd.status().context("cannot run the conformance runner")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
