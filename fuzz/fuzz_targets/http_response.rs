//! cargo-fuzz target `http_response`: the HTTP/1.1 response head parser and body framing, chunked decoding included
//! (`health_check::fuzz::http_response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| health_check::fuzz::http_response(data));
