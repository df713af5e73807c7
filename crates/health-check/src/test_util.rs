//! Test helpers for the crates that build on health-check (feature `test-util`).
