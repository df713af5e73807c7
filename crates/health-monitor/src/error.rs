//! The errors of monitor construction and lifecycle calls.

use health_types::ConfigError;

/// A monitor could not be built, started or changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    /// The config or URL was rejected.
    #[error("invalid monitor config")]
    Config(#[from] ConfigError),
    /// `start` on a monitor that is already running.
    #[error("monitor {0:?} is already running")]
    AlreadyRunning(String),
    /// `restart` on a monitor that was never started.
    #[error("monitor {0:?} was never started")]
    NotStarted(String),
    /// The scope was cancelled; nothing can start under it.
    #[error("monitor {0:?} cannot start: its scope was cancelled")]
    ScopeClosed(String),
    /// [`check_now`](crate::Monitor::check_now) on a monitor that is not running (never
    /// started, stopped, stopped itself after `max_errors`, or its scope cancelled), or
    /// that stopped before the check ended.
    #[error("monitor {0:?} is not running")]
    NotRunning(String),
    /// `start` outside a tokio runtime.
    #[error("monitor {0:?} cannot start outside a tokio runtime")]
    NoRuntime(String),
}
