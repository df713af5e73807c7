//! cargo-fuzz target `docker_inspect`: the Docker probe's reading of a container inspect answer
//! (`health_check::fuzz::docker_inspect`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| health_check::fuzz::docker_inspect(data));
