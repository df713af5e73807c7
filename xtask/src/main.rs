//! Repository tasks, run as `cargo xtask <task>`:
//!
//! - `test`: `cargo fmt --check`, clippy with `-D warnings`, every library crate's
//!   features off and then one at a time (clippy `--lib`, so that
//!   `cfg(not(feature = ...))` code is compiled and linted too), `cargo test
//!   --workspace`, then the conformance vectors (`tests/conformance`) and the
//!   alert-policy vectors (`tests/policy`, SPEC §9.5). The bench package (`health-bench`) is
//!   left out of the workspace build (its Pingora baseline needs cmake) and
//!   clippy-checks alone without its `pingora` feature;
//! - `conformance [DIR...]`: runs the conformance vectors of SPEC §8 (default
//!   `tests/conformance`); a directory may hold alert-policy vectors too (a `[policy]`
//!   table, SPEC §9.5: `cargo xtask conformance tests/policy`);
//! - `bench [--quick]`: builds the bench in release and runs it: a table on stdout,
//!   `target/bench/report.json` and `target/bench/chart.png` (full run under 10 minutes,
//!   `--quick` under 4). Pingora's baseline needs cmake to build: where `cmake --version`
//!   does not answer, it says how to install it and builds the bench without its
//!   `pingora` feature, whose rows the table then shows as skipped. HAProxy's rows need
//!   `haproxy` on `PATH` (`apt-get install haproxy`) and are skipped without it;
//! - `soak [--minutes N] [ARGS...]`: builds healthd in release and runs the bench's
//!   `soak` against it (default 10 minutes plus a drain of at most 3; needs no cmake):
//!   a table on stdout and `target/soak/report.json`, exit non-zero when the verdict
//!   fails. Further arguments go to `health-bench soak` as they are;
//! - `fuzz [--seconds N] [--stable] [TARGET...]`: runs each fuzz target (default: all
//!   of `fuzz/fuzz_targets/`) for N seconds (default 60) from the committed corpus
//!   `fuzz/corpus/<target>`, with `cargo +nightly fuzz` (libFuzzer) where nightly and
//!   cargo-fuzz are installed, else (or with `--stable`) with the stable mutation
//!   harness of the `fuzz` package; one line per target, exit non-zero on a crash. What
//!   libFuzzer adds to the corpus goes to `target/fuzz/corpus/<target>`, its logs to
//!   `target/fuzz/logs/`, crash inputs to `fuzz/artifacts/<target>/`;
//! - `ci`: what `.ci/run` runs (the same as `test`).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <test|conformance [DIR...]|bench [--quick]|soak [--minutes N]|fuzz [--seconds N] [--stable] [TARGET...]|ci>";

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
        Some("fuzz") => fuzz(&args[1..]),
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

    // The state-machine vectors (SPEC §8) and the alert-policy vectors (SPEC §9.5).
    let dirs =
        ["tests/conformance", "tests/policy"].map(|dir| root().join(dir).display().to_string());
    let code = conformance(&dirs)?;
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

/// Builds and runs the bench in release; it writes `target/bench/`. Without cmake it
/// builds the bench without Pingora (whose build script would panic) rather than stop:
/// every other row is still worth having, and the table marks Pingora's as skipped.
fn bench(quick: bool) -> Result<ExitCode> {
    let out = root().join("target").join("bench");
    let pingora = cmake_found();
    if !pingora {
        eprintln!(
            "xtask: cmake not found: Pingora's baseline needs it; install it with `apt-get install cmake`, \
             or run without Pingora: `cargo run --release -p {BENCH} --no-default-features -- run`. \
             Running without Pingora now: its rows are skipped."
        );
    }
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--package", BENCH]);
    if !pingora {
        cmd.arg("--no-default-features");
    }
    cmd.args(["--", "run", "--out"]);
    cmd.arg(&out);
    if quick {
        cmd.arg("--quick");
    }
    let step = if pingora {
        "cargo run --release -p health-bench"
    } else {
        "cargo run --release -p health-bench --no-default-features"
    };
    run(step, cmd)?;
    Ok(ExitCode::SUCCESS)
}

/// Whether `cmake --version` answers (Pingora's build, through libz-ng-sys, runs it).
fn cmake_found() -> bool {
    Command::new("cmake")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
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

/// libFuzzer's limits on each run: the longest input, resident memory, and the time one
/// input may take before it counts as a hang.
const LIBFUZZER_LIMITS: [&str; 3] = ["-max_len=65536", "-rss_limit_mb=2048", "-timeout=10"];

/// Runs the fuzz targets: with cargo-fuzz on nightly when both are installed, else with
/// the stable mutation harness.
fn fuzz(args: &[String]) -> Result<ExitCode> {
    let mut seconds = "60".to_owned();
    let mut stable = false;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().context("--seconds needs a number")?.clone(),
            "--stable" => stable = true,
            _ => targets.push(arg.clone()),
        }
    }
    seconds
        .parse::<u64>()
        .with_context(|| format!("--seconds {seconds:?} is not a number"))?;
    let known = fuzz_targets()?;
    if let Some(unknown) = targets.iter().find(|t| !known.contains(t)) {
        bail!(
            "no fuzz target {unknown:?}; the targets: {}",
            known.join(", ")
        );
    }
    if targets.is_empty() {
        targets = known;
    }
    let why_not = if stable {
        Some("--stable".to_owned())
    } else {
        cargo_fuzz_missing()
    };
    if let Some(why) = why_not {
        eprintln!("xtask: fuzzing with the stable mutation harness ({why})");
        let mut cmd = cargo();
        cmd.args([
            "run",
            "--release",
            "--quiet",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--no-default-features",
            "--features",
            "stable",
            "--bin",
            "stable",
            "--",
            "--seconds",
            &seconds,
        ]);
        cmd.args(&targets);
        let status = cmd.status().context("cannot run the stable harness")?;
        return Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    let mut build = nightly_cargo();
    build.args(["fuzz", "build"]);
    run("cargo +nightly fuzz build", build)?;
    let out = target_dir().join("fuzz");
    let mut crashed = false;
    for target in &targets {
        let corpus = out.join("corpus").join(target);
        let logs = out.join("logs");
        for dir in [&corpus, &logs] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let log_path = logs.join(format!("{target}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        eprintln!(
            "xtask: fuzz {target} for {seconds} s (log: {})",
            log_path.display()
        );
        // New inputs go to the first corpus directory: the committed seeds stay as they are.
        let mut cmd = nightly_cargo();
        cmd.args(["fuzz", "run", target]);
        cmd.arg(&corpus);
        cmd.arg(Path::new("fuzz/corpus").join(target));
        cmd.arg("--");
        cmd.arg(format!("-max_total_time={seconds}"));
        cmd.args(LIBFUZZER_LIMITS);
        cmd.stdout(log.try_clone().context("cannot share the log file")?);
        cmd.stderr(log);
        let status = cmd
            .status()
            .with_context(|| format!("cannot run cargo fuzz run {target}"))?;
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if status.success() {
            // libFuzzer's last line: `Done 123456 runs in 61 second(s)`.
            let runs = text
                .lines()
                .find_map(|line| line.strip_prefix("Done ")?.split_once(" runs in "))
                .map_or("? (see the log)", |(runs, _)| runs);
            println!("fuzz {target}: {runs} runs, no crash (cargo-fuzz, libFuzzer)");
        } else {
            crashed = true;
            let artifact = text
                .lines()
                .find_map(|line| line.split_once("Test unit written to "));
            match artifact {
                Some((_, file)) => println!("fuzz {target}: crash: {}", file.trim()),
                None => println!(
                    "fuzz {target}: failed ({status}), see {}",
                    log_path.display()
                ),
            }
        }
    }
    Ok(if crashed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The fuzz targets: the files of `fuzz/fuzz_targets/`, sorted.
fn fuzz_targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz").join("fuzz_targets");
    let mut targets = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem()
        {
            targets.push(stem.to_string_lossy().into_owned());
        }
    }
    targets.sort();
    Ok(targets)
}

/// `cargo +nightly` through rustup's proxy (`CARGO` names the pinned toolchain's own
/// cargo, which takes no `+toolchain`).
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly");
    cmd.env_remove("RUSTUP_TOOLCHAIN");
    cmd.current_dir(root());
    cmd
}

/// Why cargo-fuzz cannot run here, or `None` when `cargo +nightly fuzz` answers.
fn cargo_fuzz_missing() -> Option<String> {
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "--version"]);
    match cmd.output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`cargo +nightly fuzz` failed: {}; install nightly with `rustup toolchain install nightly` and cargo-fuzz with `cargo install cargo-fuzz`",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Some(format!("cannot run cargo: {err}")),
    }
}
