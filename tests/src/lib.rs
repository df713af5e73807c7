//! Cross-crate test support for the health workspace: the conformance-vector runner
//! (SPEC §8) used by `cargo xtask conformance` and by this package's tests, and the
//! alert-policy vectors (SPEC §9.5) it runs too.

pub mod conformance;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
pub mod policy;
