//! The [`Probe`] port: one check of one target.

use std::fmt::Debug;

use async_trait::async_trait;
use url::Url;

use crate::{CheckResult, ConfigError, ProbeError};

/// Checks one target once.
///
/// Implementations live in `health-check` (HTTP, H2C, TCP, UDP, file, Docker, agent);
/// a monitor can be built from any `Arc<dyn Probe>`.
///
/// # Cancel safety
///
/// The monitor drops the future returned by [`check`](Probe::check) when the check runs
/// past its timeout or the monitor stops. Dropping it must leave nothing running: no
/// spawned task, no half-open socket kept alive on its behalf.
#[async_trait]
pub trait Probe: Send + Sync + Debug {
    /// Checks the target at `url` (the monitor's current URL).
    ///
    /// Returns `Ok` with a healthy or unhealthy result when the target could be checked,
    /// and `Err` only when the check itself could not be carried out.
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError>;

    /// Rejects a URL this probe can never check (wrong scheme, no host, no port).
    ///
    /// Called when a monitor is built and on every `update_url`. The default accepts all.
    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        let _ = url;
        Ok(())
    }
}
