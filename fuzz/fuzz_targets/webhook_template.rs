//! cargo-fuzz target `webhook_template`: the webhook's `payload` template check and rendering
//! (`health_notify::fuzz::webhook_template`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| health_notify::fuzz::webhook_template(data));
