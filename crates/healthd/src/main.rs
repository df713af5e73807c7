//! The `healthd` binary: parses the command line and hands over to the library.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use healthd::{Cli, dispatch};
use tracing_subscriber::EnvFilter;

/// jemalloc, not glibc's malloc: glibc keeps what a burst frees (a `/metrics` scrape of
/// 10 000 monitors is 8 MB of text; an outbox backlog), in per-thread arenas and above a
/// threshold it raises as it goes, so a long-running healthd's resident memory creeps up
/// by steps; jemalloc returns it to the system after a few seconds.
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
