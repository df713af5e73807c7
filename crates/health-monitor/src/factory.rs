//! Monitor factories (the seed's `new.go`), behind the `probes` feature: build a monitor
//! with the probe its target needs.
//!
//! [`new_monitor`] follows the seed's flow chart for a plain URL: `h2c` → H2C, `http` /
//! `https` → HTTP, `file` → file server, anything else → stream (`tcp`, `udp` and their
//! `4`/`6` forms). Agent-proxied targets use [`new_agent_proxied_monitor`], Docker
//! containers `new_docker_monitor` (feature `docker`). To attach an event sink or a clock,
//! take the probe from [`probe_for`] and use [`Monitor::builder`].

use std::sync::Arc;

use health_check::{
    AgentProbe, AgentProbeConfig, FileProbe, H2cProbe, HttpProbe, StreamProbe, StreamProbeConfig,
};
#[cfg(feature = "docker")]
use health_check::{DockerProbe, DockerProbeConfig};
use health_types::{ConfigError, HealthCheckConfig, Probe, Url};

use crate::{Monitor, MonitorError};

/// Every scheme a monitor can check.
pub const SUPPORTED_SCHEMES: [&str; 10] = [
    "http", "https", "h2c", "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "file",
];

fn unsupported(url: &Url) -> ConfigError {
    ConfigError::url(
        url,
        format!(
            "unsupported scheme `{}`: supported schemes are {}",
            url.scheme(),
            SUPPORTED_SCHEMES.join(", ")
        ),
    )
}

/// The probe for `url` by its scheme, with default stream options.
pub fn probe_for(config: &HealthCheckConfig, url: &Url) -> Result<Arc<dyn Probe>, MonitorError> {
    let probe: Arc<dyn Probe> = match url.scheme() {
        "h2c" => Arc::new(H2cProbe::try_new(config)?),
        "http" | "https" => Arc::new(HttpProbe::try_new(config)?),
        "file" => Arc::new(FileProbe::try_new(config)?),
        scheme if SUPPORTED_SCHEMES.contains(&scheme) => {
            Arc::new(StreamProbe::try_new(config, StreamProbeConfig::default())?)
        }
        _ => return Err(unsupported(url).into()),
    };
    Ok(probe)
}

fn build(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
    probe: Arc<dyn Probe>,
) -> Result<Monitor, MonitorError> {
    Monitor::builder(name, url, probe)
        .config(config.clone())
        .build()
}

fn expect_scheme(url: &Url, schemes: &[&str]) -> Result<(), MonitorError> {
    if schemes.contains(&url.scheme()) {
        Ok(())
    } else {
        Err(ConfigError::url(
            url,
            format!(
                "unsupported scheme `{}` for this monitor: expected {}",
                url.scheme(),
                schemes.join(" or ")
            ),
        )
        .into())
    }
}

/// An HTTP/HTTPS monitor (HTTP/2 by ALPN over TLS).
pub fn new_http_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
) -> Result<Monitor, MonitorError> {
    expect_scheme(&url, &["http", "https"])?;
    build(name, config, url, Arc::new(HttpProbe::try_new(config)?))
}

/// An H2C monitor: HTTP/2 with prior knowledge over cleartext (`h2c://`).
pub fn new_h2c_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
) -> Result<Monitor, MonitorError> {
    expect_scheme(&url, &["h2c"])?;
    build(name, config, url, Arc::new(H2cProbe::try_new(config)?))
}

/// A file-server monitor: healthy while the `file://` path exists.
pub fn new_file_server_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
) -> Result<Monitor, MonitorError> {
    expect_scheme(&url, &["file"])?;
    build(name, config, url, Arc::new(FileProbe::try_new(config)?))
}

/// A stream monitor (`tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6`); `options` sets the UDP
/// payload and whether a reply is required.
pub fn new_stream_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
    options: StreamProbeConfig,
) -> Result<Monitor, MonitorError> {
    build(
        name,
        config,
        url,
        Arc::new(StreamProbe::try_new(config, options)?),
    )
}

/// A monitor whose checks a remote agent runs (GoDoxy's agent protocol); `url` is the
/// target as the agent sees it.
pub fn new_agent_proxied_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
    agent: AgentProbeConfig,
) -> Result<Monitor, MonitorError> {
    build(
        name,
        config,
        url,
        Arc::new(AgentProbe::try_new(config, agent)?),
    )
}

/// A monitor of a Docker container's state and healthcheck (SPEC §5; the seed's
/// `NewDockerHealthMonitor`), with an optional fallback probe.
///
/// - `url`: the target's own URL, which `fallback` checks (for example
///   `http://10.0.0.5:8080/`; the fallback is typically [`probe_for`]`(config, &url)`).
///   Not checked without a fallback.
/// - `host`: the engine, `unix:///path/to/docker.sock` or `tcp://host:port`; `None` is
///   `DOCKER_HOST` when set, else `unix:///var/run/docker.sock`.
/// - `container`: the container's id or name.
/// - `fallback`: asked when the container has no healthcheck or the Docker API fails,
///   unless `config.disable` is set. A valid Docker answer otherwise is final; an API
///   failure without a usable fallback is an error result.
///
/// The monitor's URL (its [`url`](crate::HealthMonitor::url) and JSON `url`) is the
/// display URL `docker://<host>/containers/<id>` (`localhost` for a unix socket), and
/// the probe keeps `url` as the fallback's target. [`update_url`](crate::HealthMonitor::update_url)
/// with a plain URL, which the fallback must accept, makes it the fallback's target from
/// the next check on (the monitor then shows that URL); another container's `docker://`
/// URL is rejected, and so is any plain URL without a fallback.
///
/// Nothing connects here: the Docker client is created on the first check. Fails when
/// `config` is invalid, `host` is not a `unix://` or `tcp://` URL, `container` is not a
/// Docker id or name, or `fallback` rejects `url`.
#[cfg(feature = "docker")]
pub fn new_docker_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
    host: Option<&str>,
    container: &str,
    fallback: Option<Arc<dyn Probe>>,
) -> Result<Monitor, MonitorError> {
    let options = DockerProbeConfig {
        container: container.to_owned(),
        host: host.map(str::to_owned),
    };
    let mut probe = DockerProbe::try_new(config, options)?;
    if let Some(fallback) = fallback {
        probe = probe.try_with_fallback(fallback, url)?;
    }
    let display = probe.url().clone();
    build(name, config, display, Arc::new(probe))
}

/// A monitor for `url`, choosing the probe by scheme as the seed's flow chart does:
/// h2c → HTTP → file → stream. An unsupported scheme is an error listing the supported
/// ones.
pub fn new_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
) -> Result<Monitor, MonitorError> {
    let probe = probe_for(config, &url)?;
    build(name, config, url, probe)
}
