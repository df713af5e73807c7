//! The `healthd` binary: parses the command line and hands over to the library.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use healthd::{Cli, dispatch};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let default_level = cli.command.log_level();
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
    let code = runtime.block_on(dispatch(cli.command));
    // Leave no lingering task holding the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(ExitCode::from(code))
}
