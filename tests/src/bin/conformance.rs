//! `conformance [DIR...]`: runs the conformance vectors of SPEC §8 (default
//! `tests/conformance`) and prints `PASS`/`FAIL` lines and `<P> passed, <F> failed`.

use std::{path::PathBuf, process::ExitCode};

use health_tests::conformance;

fn main() -> ExitCode {
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance"));
    }
    // The scripted `panic` check panics on purpose; its report would only be noise here.
    std::panic::set_hook(Box::new(|_| {}));
    let outcomes = match conformance::run_dirs(&dirs) {
        Ok(outcomes) => outcomes,
        Err(message) => {
            eprintln!("conformance: {message}");
            return ExitCode::from(2);
        }
    };
    let passed = outcomes.iter().filter(|o| o.result.is_ok()).count();
    for outcome in &outcomes {
        println!("{outcome}");
    }
    println!("{passed} passed, {} failed", outcomes.len() - passed);
    if passed == outcomes.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
