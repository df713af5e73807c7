//! The `healthd` binary: parses the command line and hands over to the library.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use healthd::{cli::Cli, commands};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // The demo prints its own lines; logs would only repeat them.
    let default_level = match cli.command {
        healthd::cli::Command::Run { .. } | healthd::cli::Command::Agent { .. } => "info",
        healthd::cli::Command::Demo { .. } => "error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(commands::dispatch(cli.command));
    // Leave no lingering task holding the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(ExitCode::from(code))
}
