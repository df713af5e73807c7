//! The check run: one check under the monitor's timeout with panics caught
//! ([`check_once`]), and the task body that runs a scheduled check of a monitor and
//! completes it (the monitor's [`Runner`] implementation).
//!
//! Imports run one way: `monitor` (the handle) uses this module; it uses `lifecycle`
//! and the scheduler, and neither of them uses it.

use std::{any::Any, future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt;
use health_types::{CheckKind, CheckResult, Probe, ProbeError, Url, timed_out_after};
use tokio::{sync::OwnedSemaphorePermit, time::Instant};

use crate::{
    lifecycle::Shared,
    scheduler::{Runner, Scheduler},
};

impl Runner for Shared {
    fn run(
        self: Arc<Self>,
        scheduler: Scheduler<Self>,
        generation: u64,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        run_check(self, scheduler, generation, permit)
    }

    fn cancel(&self, generation: u64) {
        self.stop_by_scope(generation);
    }
}

/// Runs one scheduled check of run `generation` (the body of a check task).
async fn run_check(
    shared: Arc<Shared>,
    scheduler: Scheduler<Shared>,
    generation: u64,
    permit: OwnedSemaphorePermit,
) {
    // Register for the stop signal before reading the generation, so that a finish()
    // in between is never missed.
    let signal = shared.stop_signal(&scheduler);
    let stopped = signal.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    // From here until it completes, this is the monitor's one check in flight: a
    // `check_now` joins it rather than starting another.
    if !shared.begin_check(generation) {
        return;
    }
    let began = Instant::now();
    let url = shared.url();
    let check = check_once(&*shared.probe, &url, shared.config.timeout);
    tokio::pin!(check);
    let outcome = loop {
        tokio::select! {
            biased;
            () = &mut stopped => {
                // The signal is shared with other monitors: this one stopped only if its
                // run is over (nothing else makes it stale while a check is in flight).
                // If not, wait again, looking once more after registering so that a
                // stop in between is not missed.
                if !shared.is_current(generation) {
                    return;
                }
                stopped.set(signal.notified());
                stopped.as_mut().enable();
                if !shared.is_current(generation) {
                    return;
                }
            }
            () = scheduler.token().cancelled() => {
                shared.stop_by_scope(generation);
                return;
            }
            outcome = &mut check => break outcome,
        }
    };
    drop(permit);
    shared.complete(&scheduler, generation, began, outcome);
}

/// One check with `probe` exactly as a monitor runs it, without a monitor: under
/// `timeout`, with panics caught. A late check is dropped and becomes an unhealthy
/// `timeout` result (`timed out after <timeout>`); a panic becomes an error whose detail
/// starts with `check panicked`. For one-off checks (a CLI, an agent endpoint).
pub async fn check_once(
    probe: &dyn Probe,
    url: &Url,
    timeout: Duration,
) -> Result<CheckResult, ProbeError> {
    let check = AssertUnwindSafe(async { probe.check(url).await }).catch_unwind();
    match tokio::time::timeout(timeout, check).await {
        Err(_) => Ok(CheckResult::unhealthy(
            CheckKind::Timeout,
            timed_out_after(timeout),
            timeout,
        )),
        Ok(Err(panic)) => Err(ProbeError::new(
            CheckKind::Internal,
            format!("check panicked: {}", panic_message(&*panic)),
        )),
        Ok(Ok(outcome)) => outcome,
    }
}

/// The message a panic was raised with, when it is a string.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}
