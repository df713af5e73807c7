//! One check of a URL without a monitor: `healthd check` and each request to the agent
//! server. The probe comes from `health_check::build_probe`, as every monitor's does.

use health_check::build_probe;
use health_monitor::check_once;
use health_types::{CheckResult, ConfigError, HealthCheckConfig, ProbeError, Target, Url};

/// One check of `url` under `config`, as a monitor would run it (bounded by the
/// timeout). The outer error is a config or URL no probe accepts; the inner result is
/// the check's own outcome.
pub(crate) async fn check_url(
    config: &HealthCheckConfig,
    url: &Url,
) -> Result<Result<CheckResult, ProbeError>, ConfigError> {
    let built = build_probe(config, &Target::Url(url.clone()))?;
    Ok(check_once(&*built.probe, &built.url, config.timeout).await)
}
