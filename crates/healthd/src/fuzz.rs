//! Fuzzing entry point for the config checker (`healthd validate`), shared by the
//! cargo-fuzz target `config` and the stable mutation harness in `fuzz/`.
//!
//! Built with the `fuzzing` feature (and in this crate's tests); not part of the API.

use std::path::PathBuf;

use crate::config::{ConfigFileError, DaemonConfig};

/// Checks `data` as a config file, as `healthd validate` does: the text (invalid UTF-8
/// replaced, as no editor would write it) is either a config or a list of problems.
///
/// # Panics
///
/// When the checker panics, or when its answer breaks what the CLI relies on: at least
/// one problem, each on a line and column of the text with a message, in file order,
/// the same on a second run.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Err(problems) = DaemonConfig::parse(&text) else {
        return;
    };
    assert!(!problems.is_empty(), "a rejected config names no problem");
    let lines: Vec<&str> = text.split('\n').collect();
    for problem in &problems {
        assert!(
            (1..=lines.len()).contains(&problem.line),
            "{problem:?} is not on one of the {} lines",
            lines.len()
        );
        let columns = lines[problem.line - 1].chars().count() + 1;
        assert!(
            (1..=columns).contains(&problem.column),
            "{problem:?} is not in its line of {columns} columns"
        );
        assert!(
            !problem.message.trim().is_empty(),
            "{problem:?} says nothing"
        );
    }
    assert!(
        problems.is_sorted_by_key(|p| (p.line, p.column)),
        "problems out of file order: {problems:?}"
    );
    assert_eq!(
        DaemonConfig::parse(&text).err().as_ref(),
        Some(&problems),
        "a second check of the same text differs"
    );
    // What `healthd validate` prints.
    let shown = ConfigFileError {
        path: PathBuf::from("fuzz.toml"),
        problems,
    }
    .to_string();
    assert!(shown.starts_with("fuzz.toml:"), "{shown}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_corpus_checks_without_a_panic() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/config");
        let seeds = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
        assert!(
            seeds
                .map(|seed| config(&std::fs::read(seed).unwrap()))
                .count()
                >= 3
        );
    }

    #[test]
    fn broken_files_are_problems() {
        for text in [
            &b"[server"[..],
            b"\xff\xfe[[monitor]]\nname = 1",
            b"[[monitor]]\nname = \"a\"\nurl = \"tcp://\"\n",
            b"monitor = 5\n\n\n",
        ] {
            config(text);
            assert!(DaemonConfig::parse(&String::from_utf8_lossy(text)).is_err());
        }
    }
}
