//! cargo-fuzz target `conformance_vector`: the conformance-vector file parser
//! (`health_tests::fuzz::conformance_vector`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| health_tests::fuzz::conformance_vector(data));
