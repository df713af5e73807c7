//! The stable mutation harness: runs the fuzz targets' entry points on inputs mutated
//! from the committed corpus, on any toolchain (no libFuzzer, no coverage guidance).
//! `cargo xtask fuzz` runs it where nightly or cargo-fuzz is missing.
//!
//! `stable [--seconds N] [--seed S] [TARGET...]`: each target (default: all) for N
//! seconds (default 60); one line per target; exit status 1 when one crashed or hung,
//! its input written to `target/fuzz/stable/<target>/`.

use std::{
    collections::hash_map::DefaultHasher,
    env,
    hash::{Hash, Hasher},
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use health_fuzz::{Mutator, TARGETS, Target};

/// An input still running after this long counts as a hang (libFuzzer's `-timeout`).
const HANG: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("stable: {message}");
            eprintln!("usage: stable [--seconds N] [--seed S] [TARGET...]");
            return ExitCode::from(2);
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failed = false;
    for target in &options.targets {
        let corpus = match read_corpus(&root.join("corpus").join(target.name)) {
            Ok(corpus) => corpus,
            Err(err) => {
                eprintln!("stable: corpus of {}: {err}", target.name);
                return ExitCode::FAILURE;
            }
        };
        let out = root.join("../target/fuzz/stable").join(target.name);
        match run(*target, corpus, &options, &out) {
            Ok(runs) => println!(
                "fuzz {}: {runs} runs, no crash (stable mutation harness, seed {})",
                target.name, options.seed
            ),
            Err(file) => {
                println!("fuzz {}: crash: {}", target.name, file.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Debug)]
struct Options {
    seconds: u64,
    seed: u64,
    targets: Vec<Target>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            seconds: 60,
            seed: 1,
            targets: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u64, String> {
                let value = args.next().ok_or(format!("{name} needs a number"))?;
                value
                    .parse()
                    .map_err(|_| format!("{name} {value:?} is not a number"))
            };
            match arg.as_str() {
                "--seconds" => options.seconds = number("--seconds")?,
                "--seed" => options.seed = number("--seed")?,
                name => {
                    let target = TARGETS
                        .iter()
                        .find(|target| target.name == name)
                        .ok_or_else(|| format!("unknown target {name:?}"))?;
                    options.targets.push(*target);
                }
            }
        }
        if options.targets.is_empty() {
            options.targets = TARGETS.to_vec();
        }
        Ok(options)
    }
}

/// The files of `dir`, sorted by name.
fn read_corpus(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    paths.iter().map(std::fs::read).collect()
}

/// Runs `target` on mutated inputs for `options.seconds`: the number of runs, or the
/// file that holds the input that panicked or hung.
#[allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "the harness's time budget and hang watchdog are real wall-clock time"
)]
fn run(
    target: Target,
    corpus: Vec<Vec<u8>>,
    options: &Options,
    out: &Path,
) -> Result<u64, PathBuf> {
    use std::time::Instant;

    let mut mutator = Mutator::new(corpus, options.seed);
    let current = Arc::new(Mutex::new(Vec::new()));
    let runs = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    // The watchdog: an input that holds the loop for `HANG` is written out, and the
    // process ends (a stuck call cannot be stopped from outside).
    let watchdog = {
        let (current, runs, out) = (current.clone(), runs.clone(), out.to_owned());
        thread::spawn(move || {
            let mut seen = u64::MAX;
            let mut since = Instant::now();
            loop {
                thread::sleep(Duration::from_millis(250));
                let now = runs.load(Ordering::Relaxed);
                if now == u64::MAX {
                    return;
                }
                if now != seen {
                    (seen, since) = (now, Instant::now());
                } else if since.elapsed() >= HANG {
                    let input = current.lock().unwrap_or_else(PoisonError::into_inner);
                    let file = save(&out, "timeout", &input);
                    println!(
                        "fuzz {}: hang over {HANG:?}: {}",
                        target.name,
                        file.display()
                    );
                    std::process::exit(1);
                }
            }
        })
    };
    let outcome = loop {
        let count = runs.load(Ordering::Relaxed);
        if count.is_multiple_of(64) && Instant::now() >= deadline {
            break Ok(count);
        }
        let input = mutator.next_input();
        current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone_from(&input);
        if panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input))).is_err() {
            break Err(save(out, "crash", &input));
        }
        runs.store(count + 1, Ordering::Relaxed);
    };
    runs.store(u64::MAX, Ordering::Relaxed);
    // The watchdog wakes every 250 ms and sees the stop.
    let _ = watchdog.join();
    outcome
}

/// Writes `input` to `<out>/<kind>-<hash>` and returns that path (or where it should
/// have gone, when it cannot be written: the error is printed).
fn save(out: &Path, kind: &str, input: &[u8]) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    input.hash(&mut hasher);
    let file = out.join(format!("{kind}-{:016x}", hasher.finish()));
    if let Err(err) = std::fs::create_dir_all(out).and_then(|()| std::fs::write(&file, input)) {
        eprintln!("stable: cannot write {}: {err}", file.display());
    }
    file
}
