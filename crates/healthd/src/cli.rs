//! The command line (SPEC §7): `demo`, `run`, `check`, `validate` and `agent`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

use health_types::ErrorChain;

use crate::{agent::AllowEntry, config::DEFAULT_LISTEN};

/// Exit code: healthy / success.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code of `check`: the target is unhealthy.
pub(crate) const EXIT_UNHEALTHY: u8 = 1;
/// Exit code: the check itself failed, bad usage or a bad config.
pub(crate) const EXIT_ERROR: u8 = 2;

/// healthd: watches upstream services and says when they go down and come back.
#[derive(Debug, Parser)]
#[command(name = "healthd", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a self-contained demo: local upstreams, monitors, API and status page.
    Demo {
        /// Address for the API and status page.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
    /// Runs the monitors of a config file and serves the API.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Checks one URL once and exits 0 (healthy), 1 (unhealthy) or 2 (error).
    Check {
        /// The target: http(s)://, h2c://, tcp://, udp://, file://.
        url: String,
        /// Path joined onto the URL (HTTP).
        #[arg(long)]
        path: Option<String>,
        /// GET or HEAD (HTTP).
        #[arg(long)]
        method: Option<String>,
        /// How long the check may take, like "5s".
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Prints one JSON object {"healthy","kind","detail","latency"} (latency in ns).
        #[arg(long)]
        json: bool,
    },
    /// Checks a config file: exit 0 and a summary, or exit 2 and every problem.
    Validate {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serves GoDoxy's agent protocol so that another healthd can check through it.
    Agent {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Server certificate (PEM); with --key, serves HTTPS.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Server key (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// CA (PEM) whose client certificates are required (mutual TLS). Without it, any
        /// client that reaches the address can use the agent: on a non-loopback address
        /// the agent prints a warning.
        #[arg(long, requires = "cert")]
        client_ca: Option<PathBuf>,
        /// Admits targets in this network (CIDR such as 10.0.0.0/8 or fd00::/8, or one
        /// address) or with exactly this host name (case-insensitive); repeatable. Other
        /// targets are refused with 403; a host name is resolved and every address it has
        /// must be admitted. Without --allow every network target is admitted.
        #[arg(long, value_name = "CIDR|HOST", value_parser = parse_allow)]
        allow: Vec<AllowEntry>,
        /// Directory whose files file checks (scheme=file or fileserver) may look at,
        /// after resolving `..` and symbolic links; others are refused with 403. Without
        /// it every file check is refused.
        #[arg(long, value_name = "DIR")]
        file_root: Option<PathBuf>,
    },
}

impl Command {
    /// The log level when `RUST_LOG` is unset: `info` for the servers (`run`, `agent`),
    /// `error` for the demo (it prints its own lines; logs would only repeat them) and
    /// `warn` for the one-shot commands.
    pub fn log_level(&self) -> &'static str {
        match self {
            Command::Run { .. } | Command::Agent { .. } => "info",
            Command::Demo { .. } => "error",
            Command::Check { .. } | Command::Validate { .. } => "warn",
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected a duration like \"5s\" or \"500ms\""))?;
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    Ok(d)
}

fn parse_allow(text: &str) -> Result<AllowEntry, String> {
    text.parse().map_err(|e| ErrorChain(&e).to_string())
}
