//! The file-server probe: `file:///path` exists (SPEC §5).

use std::{io, path::PathBuf, time::Duration};

use async_trait::async_trait;
use health_types::{CheckKind, CheckResult, ConfigError, HealthCheckConfig, Probe, ProbeError};
use tokio::time::Instant;
use url::Url;

use crate::failure::{Failure, bad_url, local_failure};

/// Checks that the path of a `file://` URL exists, as a file server's root must.
///
/// The path exists: healthy. It does not (`ENOENT` only): unhealthy, kind `not_found`.
/// Any other failure (permission denied, `ENOTDIR`, an I/O error) says nothing about the
/// target and is an error of kind `io`; our own shortage (out of descriptors or memory)
/// is an error of kind `local`. The lookup is bounded by `timeout` (a hung
/// network file system is unhealthy, kind `timeout`).
#[derive(Clone, Debug)]
pub struct FileProbe {
    timeout: Duration,
}

impl FileProbe {
    /// A probe with `config`'s timeout.
    ///
    /// Fails when `config` is invalid.
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(FileProbe {
            timeout: config.timeout,
        })
    }
}

/// The local path a `file://` URL names.
pub(crate) fn file_path(url: &Url) -> Result<PathBuf, ConfigError> {
    if url.scheme() != "file" {
        return Err(health_types::unsupported_scheme(
            url,
            &[health_types::Scheme::File],
        ));
    }
    url.to_file_path()
        .map_err(|()| ConfigError::url(url, "not a local absolute path (file:///path)"))
}

#[async_trait]
impl Probe for FileProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let path = file_path(url).map_err(|err| bad_url(&err))?;
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, tokio::fs::metadata(&path)).await;
        let latency = start.elapsed();
        let failure = match outcome {
            Ok(Ok(_)) => return Ok(CheckResult::healthy("exists", latency)),
            Ok(Err(err)) if err.kind() == io::ErrorKind::NotFound => Failure::target(
                CheckKind::NotFound,
                format!("{}: no such file or directory", path.display()),
            ),
            Ok(Err(err)) => local_failure(&err).unwrap_or_else(|| {
                Failure::checker(CheckKind::Io, format!("{}: {err}", path.display()))
            }),
            Err(_) => Failure::timed_out(self.timeout),
        };
        failure.into_outcome(latency)
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        file_path(url).map(drop)
    }
}
