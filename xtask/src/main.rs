//! Repository tasks, run as `cargo xtask <task>`:
//!
//! - `test`: `cargo fmt --check`, clippy with `-D warnings`, every library crate's
//!   features off and then one at a time (clippy `--lib`, so that
//!   `cfg(not(feature = ...))` code is compiled and linted too), `cargo test
//!   --workspace`, then the conformance vectors. The bench package (`health-bench`) is
//!   left out of the workspace build (its Pingora baseline needs cmake) and
//!   clippy-checks alone without its `pingora` feature;
//! - `conformance [DIR...]`: runs the conformance vectors of SPEC §8 (default
//!   `tests/conformance`);
//! - `bench [--quick]`: builds the bench in release and runs it: a table on stdout,
//!   `target/bench/report.json` and `target/bench/chart.png` (full run under 10 minutes,
//!   `--quick` under 2; needs cmake for Pingora);
//! - `soak [--minutes N] [ARGS...]`: builds healthd in release and runs the bench's
//!   `soak` against it (default 10 minutes plus a drain of at most 3; needs no cmake):
//!   a table on stdout and `target/soak/report.json`, exit non-zero when the verdict
//!   fails. Further arguments go to `health-bench soak` as they are;
//! - `ci`: what `.ci/run` runs (the same as `test`).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, Result, bail};

const USAGE: &str =
    "usage: cargo xtask <test|conformance [DIR...]|bench [--quick]|soak [--minutes N]|ci>";

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
        Some("soak") => soak(&args[1..]),
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

    feature_matrix()?;

    let mut tests = cargo();
    tests.args(["test", "--workspace", "--exclude", BENCH]);
    run("cargo test --workspace --exclude health-bench", tests)?;

    let code = conformance(&[])?;
    if code != ExitCode::SUCCESS {
        bail!("conformance vectors failed");
    }
    Ok(ExitCode::SUCCESS)
}

/// Clippy on each library crate under `crates/` with its default features off, then
/// with each of its features alone: the feature list comes from `cargo metadata`, so a
/// new feature is covered without an edit here.
fn feature_matrix() -> Result<()> {
    let mut metadata = cargo();
    metadata.args(["metadata", "--format-version", "1", "--no-deps", "--locked"]);
    let out = metadata.output().context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed bad JSON")?;
    let crates_dir = root().join("crates");
    for package in meta["packages"].as_array().into_iter().flatten() {
        let in_crates = package["manifest_path"]
            .as_str()
            .is_some_and(|path| Path::new(path).starts_with(&crates_dir));
        let features: Vec<&str> = package["features"]
            .as_object()
            .into_iter()
            .flat_map(|features| features.keys())
            .map(String::as_str)
            .filter(|feature| *feature != "default")
            .collect();
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        if !in_crates || features.is_empty() {
            continue;
        }
        let sets = std::iter::once(None).chain(features.iter().map(Some));
        for feature in sets {
            let mut clippy = cargo();
            clippy.args([
                "clippy",
                "--package",
                name,
                "--lib",
                "--no-default-features",
            ]);
            if let Some(feature) = feature {
                clippy.args(["--features", feature]);
            }
            clippy.args(["--", "-D", "warnings"]);
            let step = match feature {
                Some(feature) => {
                    format!("cargo clippy -p {name} --no-default-features --features {feature}")
                }
                None => format!("cargo clippy -p {name} --no-default-features"),
            };
            run(&step, clippy)?;
        }
    }
    Ok(())
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

/// Cargo's target directory (`CARGO_TARGET_DIR` where set).
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Builds healthd in release, then runs the soak (bench without Pingora, which needs
/// cmake) against it; it writes `target/soak/`.
fn soak(args: &[String]) -> Result<ExitCode> {
    let mut minutes = "10".to_owned();
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--minutes" {
            minutes = args.next().context("--minutes needs a number")?.clone();
        } else {
            rest.push(arg.clone());
        }
    }
    let mut build = cargo();
    build.args(["build", "--release", "--package", "healthd"]);
    run("cargo build --release -p healthd", build)?;

    let target = target_dir();
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "--package",
        BENCH,
        "--no-default-features",
        "--",
        "soak",
        "--minutes",
        &minutes,
        "--out",
    ]);
    cmd.arg(target.join("soak"));
    cmd.arg("--healthd");
    cmd.arg(target.join("release").join("healthd"));
    cmd.args(&rest);
    run(
        "cargo run --release -p health-bench --no-default-features -- soak",
        cmd,
    )?;
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
