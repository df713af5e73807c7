//! cargo-fuzz target `config`: healthd's config checker, as `healthd validate` runs it
//! (`healthd::fuzz::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| healthd::fuzz::config(data));
