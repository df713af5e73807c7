//! The health daemon's wiring: the config file, the CLI commands, the HTTP API with
//! metrics and the status page, the demo and the agent server. `main.rs` only calls in.

pub mod agent;
pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod metrics;
pub mod upstreams;
