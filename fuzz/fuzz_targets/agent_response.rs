//! cargo-fuzz target `agent_response`: the agent probe's reading of an agent's JSON answer
//! (`health_check::fuzz::agent_response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| health_check::fuzz::agent_response(data));
