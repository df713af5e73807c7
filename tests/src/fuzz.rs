//! Fuzzing entry point for the conformance-vector parser (`cargo xtask conformance`),
//! shared by the cargo-fuzz target `conformance_vector` and the stable mutation harness
//! in `fuzz/`.
//!
//! Built with the `fuzzing` feature (and in this package's tests); not part of the API.

use std::path::Path;

use crate::conformance::{Failure, parse};

/// Parses `data` as a vector file (invalid UTF-8 replaced); the vector is not run.
///
/// # Panics
///
/// When parsing panics, or a rejected vector is not reported as malformed, for this
/// file, with a reason.
pub fn conformance_vector(data: &[u8]) {
    let path = Path::new("fuzz.toml");
    let text = String::from_utf8_lossy(data);
    match parse(path, "fuzz", &text) {
        Ok(_) => {}
        Err(Failure::Malformed {
            path: reported,
            reason,
            ..
        }) => {
            assert_eq!(reported, path);
            assert!(
                !reason.trim().is_empty(),
                "a malformed vector without a reason"
            );
        }
        Err(other) => panic!("parsing reported {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_corpus_parses_without_a_panic() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/conformance_vector"
        );
        let seeds = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
        assert!(
            seeds
                .map(|seed| conformance_vector(&std::fs::read(seed).unwrap()))
                .count()
                >= 3
        );
    }
}
