//! Monitor factories (the seed's `new.go`), behind the `probes` feature: build a monitor
//! with the probe its target needs.
//!
//! [`new_monitor`] follows the seed's flow chart for a plain URL: `h2c` → H2C, `http` /
//! `https` → HTTP, `file` → file server, anything else → stream (`tcp`, `udp` and their
//! `4`/`6` forms). Agent-proxied targets use [`new_agent_proxied_monitor`]. To attach an
//! event sink or a clock, take the probe from [`probe_for`] and use [`Monitor::builder`].

use std::sync::Arc;

use health_check::{
    AgentProbe, AgentProbeConfig, FileProbe, H2cProbe, HttpProbe, StreamProbe, StreamProbeConfig,
};
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
