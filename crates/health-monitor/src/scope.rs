//! The parent cancellation scope that monitors run under: the public face of a
//! [`Scheduler`] of monitors.
//!
//! Imports run one way: the handle (`monitor`) uses this module; this module uses the
//! monitor's state (`lifecycle`) only to name what its scheduler runs, and the
//! scheduler, which imports none of them.

use tokio_util::sync::CancellationToken;

use crate::{
    lifecycle::Shared,
    scheduler::{Scheduler, SchedulerOptions},
};

/// A parent cancellation scope: monitors started under it stop when it is cancelled.
///
/// Cloning is cheap and shares the scope. Its monitors share one scheduler: one timer and
/// one 32-byte heap entry per idle monitor, at most
/// [`max_in_flight`](SchedulerOptions::max_in_flight) checks at once and at most
/// [`max_starts_per_tick`](SchedulerOptions::max_starts_per_tick) started per
/// millisecond. The scheduler task is spawned on the tokio runtime that is current when
/// the first monitor starts.
///
/// ```no_run
/// # async fn demo(monitor: health_monitor::Monitor) {
/// use health_monitor::{HealthMonitor, Scope};
///
/// let scope = Scope::new();
/// monitor.start(&scope).unwrap();
/// // ... later: stop every monitor of the scope and wait until no task is left.
/// scope.shutdown().await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Scope {
    scheduler: Scheduler<Shared>,
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new()
    }
}

impl Scope {
    /// A new scope with default [`SchedulerOptions`].
    pub fn new() -> Self {
        Scope::with_token(CancellationToken::new(), SchedulerOptions::default())
    }

    /// A new scope with the given options.
    pub fn with_options(options: SchedulerOptions) -> Self {
        Scope::with_token(CancellationToken::new(), options)
    }

    /// A scope that is cancelled when `token` is (pass a child of your own token to tie
    /// monitors to an existing shutdown tree).
    pub fn with_token(token: CancellationToken, options: SchedulerOptions) -> Self {
        Scope {
            scheduler: Scheduler::new(token, options),
        }
    }

    /// The scope's cancellation token.
    pub fn token(&self) -> &CancellationToken {
        self.scheduler.token()
    }

    /// Cancels the scope: every monitor in it stops promptly, mid-check or not.
    pub fn cancel(&self) {
        self.token().cancel();
    }

    /// Whether the scope was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.scheduler.is_cancelled()
    }

    /// Cancels the scope and waits until its scheduler and every check task have ended.
    pub async fn shutdown(&self) {
        self.scheduler.shutdown().await;
    }

    /// Tasks of this scope still alive (the scheduler and checks in flight).
    pub fn task_count(&self) -> usize {
        self.scheduler.task_count()
    }

    /// The scheduler that monitors started under this scope are scheduled on.
    pub(crate) fn scheduler(&self) -> &Scheduler<Shared> {
        &self.scheduler
    }
}
