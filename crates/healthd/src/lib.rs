//! The health daemon's wiring: the config file, the CLI commands, the HTTP API with
//! metrics and the status page, the demo and the agent server. `main.rs` only calls in.
//!
//! Imports between the modules run one way: `commands` (the CLI) sits on top; `demo`
//! uses `daemon`, which uses the checked `config` and the `api` (with `metrics`); the
//! `agent` server and `healthd check` share `probe`; the API's `/probe` is `probe_api`; the API and the agent are served by
//! one loop, `server` (timeouts, connection cap). `config` knows nothing of the daemon:
//! it parses, checks and builds probes.

mod agent;
mod api;
mod cli;
mod commands;
mod config;
mod console;
mod daemon;
mod demo;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
mod history;
mod metrics;
mod page;
mod probe;
mod probe_api;
mod server;
mod storage;
#[cfg(test)]
mod test_support;
mod upstreams;
mod view;

pub use self::{
    agent::{AgentPolicy, AllowEntry, AllowEntryError, serve_agent},
    cli::{Cli, Command},
    commands::dispatch,
    config::{ConfigFileError, ConfigProblem, DEFAULT_LISTEN, DaemonConfig},
    daemon::{DaemonError, Running, start},
    storage::StorageError,
    upstreams::Upstreams,
};
