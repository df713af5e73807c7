//! The fuzz targets of the health toolkit and the stable mutation harness's mutator.
//!
//! Each target feeds arbitrary bytes to the real parsing code through an entry point
//! that the parsing crate keeps in its `fuzz` module (feature `fuzzing`): the cargo-fuzz
//! targets in `fuzz_targets/` (nightly, libFuzzer, coverage-guided) and the `stable`
//! binary (any toolchain, a seeded mutator over the committed corpus, no coverage) call
//! the same functions. An entry point panics on a bug: a panic in the code under test,
//! or an answer that breaks that code's own rules (see each one's docs).

/// A fuzz target: its name (that of its cargo-fuzz binary and of its corpus directory
/// `fuzz/corpus/<name>`) and its entry point.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [Target; 6] = [
    Target {
        name: "config",
        run: healthd::fuzz::config,
    },
    Target {
        name: "http_response",
        run: health_check::fuzz::http_response,
    },
    Target {
        name: "agent_response",
        run: health_check::fuzz::agent_response,
    },
    Target {
        name: "docker_inspect",
        run: health_check::fuzz::docker_inspect,
    },
    Target {
        name: "webhook_template",
        run: health_notify::fuzz::webhook_template,
    },
    Target {
        name: "conformance_vector",
        run: health_tests::fuzz::conformance_vector,
    },
];

/// The longest input either harness makes (`-max_len` for libFuzzer).
pub const MAX_LEN: usize = 64 * 1024;

/// Bytes that mean something to one of the parsers (TOML, JSON, HTTP, templates), tried
/// more often than chance would.
const INTERESTING: &[u8] = b"\0\t\n\r \"#$',-.0123456789:;=[\\]{}\x7f\x80\xc3\xff";

/// A seeded mutator over a corpus: each input is a corpus entry changed by a few random
/// edits (bit flips, interesting bytes, inserts, deletions, copies within the input and
/// pieces of other entries, number swaps).
#[derive(Debug)]
pub struct Mutator {
    rng: fastrand::Rng,
    corpus: Vec<Vec<u8>>,
}

impl Mutator {
    /// A mutator over `corpus` (an empty corpus starts from an empty input), seeded with
    /// `seed`: the same seed and corpus give the same inputs.
    pub fn new(corpus: Vec<Vec<u8>>, seed: u64) -> Self {
        let corpus = if corpus.is_empty() {
            vec![Vec::new()]
        } else {
            corpus
        };
        Mutator {
            rng: fastrand::Rng::with_seed(seed),
            corpus,
        }
    }

    /// The next input, at most [`MAX_LEN`] bytes.
    pub fn next_input(&mut self) -> Vec<u8> {
        let mut input = self.corpus[self.rng.usize(..self.corpus.len())].clone();
        // Now and then a seed as it is, so a run always covers the valid inputs too.
        if self.rng.u8(..) == 0 {
            return input;
        }
        for _ in 0..=self.rng.usize(..8) {
            self.mutate(&mut input);
        }
        input.truncate(MAX_LEN);
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        let len = input.len();
        let at = self.rng.usize(..=len);
        match self.rng.u8(..9) {
            0 if len > 0 => input[at % len] ^= 1 << self.rng.u8(..8),
            1 if len > 0 => input[at % len] = self.interesting(),
            2 => {
                let bytes: Vec<u8> = (0..self.rng.usize(1..16))
                    .map(|_| match self.rng.bool() {
                        true => self.interesting(),
                        false => self.rng.u8(..),
                    })
                    .collect();
                input.splice(at..at, bytes);
            }
            3 => {
                let end = (at + self.rng.usize(..=64)).min(len);
                input.drain(at..end);
            }
            4 if len > 0 => {
                let (from, to) = self.range(len);
                let piece = input[from..to].to_vec();
                let at = self.rng.usize(..=len);
                input.splice(at..at, piece);
            }
            5 => {
                let other = self.rng.usize(..self.corpus.len());
                let other_len = self.corpus[other].len();
                if other_len > 0 {
                    let (from, to) = self.range(other_len);
                    let piece = self.corpus[other][from..to].to_vec();
                    let end = (at + self.rng.usize(..=piece.len())).min(len);
                    input.splice(at..end, piece);
                }
            }
            6 => input.truncate(at),
            7 => self.swap_number(input),
            _ => {
                // A run of one byte: long lines, deep nesting, many headers.
                let byte = match input.get(at) {
                    Some(&byte) => byte,
                    None => self.interesting(),
                };
                let run = vec![byte; self.rng.usize(1..4096)];
                input.splice(at..at, run);
            }
        }
    }

    fn interesting(&mut self) -> u8 {
        INTERESTING[self.rng.usize(..INTERESTING.len())]
    }

    /// A non-empty range within `len` bytes (`len` > 0), at most 256 long.
    fn range(&mut self, len: usize) -> (usize, usize) {
        let from = self.rng.usize(..len);
        let to = (from + self.rng.usize(1..=256)).min(len);
        (from, to)
    }

    /// Replaces a run of ASCII digits with an edge value.
    fn swap_number(&mut self, input: &mut Vec<u8>) {
        const EDGES: [&[u8]; 8] = [
            b"0",
            b"-1",
            b"255",
            b"65536",
            b"4294967296",
            b"18446744073709551615",
            b"99999999999999999999999",
            b"1e309",
        ];
        let Some(start) = (0..input.len())
            .map(|i| (i + self.rng.usize(..input.len())) % input.len())
            .find(|&i| input[i].is_ascii_digit())
        else {
            return;
        };
        let start = input[..start]
            .iter()
            .rposition(|b| !b.is_ascii_digit())
            .map_or(0, |i| i + 1);
        let end = input[start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(input.len(), |i| start + i);
        let edge = EDGES[self.rng.usize(..EDGES.len())];
        input.splice(start..end, edge.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let corpus = vec![
            b"[server]\nlisten = \"127.0.0.1:1\"\n".to_vec(),
            b"{}".to_vec(),
        ];
        let mut a = Mutator::new(corpus.clone(), 7);
        let mut b = Mutator::new(corpus.clone(), 7);
        let inputs: Vec<Vec<u8>> = (0..500).map(|_| a.next_input()).collect();
        assert_eq!(inputs, (0..500).map(|_| b.next_input()).collect::<Vec<_>>());
        assert!(inputs.iter().all(|input| input.len() <= MAX_LEN));
        // Mutations happen: most inputs differ from both seeds.
        let changed = inputs.iter().filter(|i| !corpus.contains(i)).count();
        assert!(changed > 250, "{changed}");
    }

    #[test]
    fn numbers_are_swapped_whole() {
        let mut mutator = Mutator::new(Vec::new(), 1);
        let mut input = b"a = 123, b".to_vec();
        mutator.swap_number(&mut input);
        let text = String::from_utf8(input).unwrap();
        assert!(text.starts_with("a = ") && text.ends_with(", b"), "{text}");
        assert!(!text.contains("123"), "{text}");
    }
}
