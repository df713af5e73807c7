//! Monitor factories (the seed's `new.go`), behind the `probes` feature: build a monitor
//! with the probe its target needs.
//!
//! Every factory goes through [`health_check::build_probe`], the one place that picks a
//! probe: [`new_monitor`] follows the seed's flow chart for a plain URL (`h2c` → H2C,
//! `http`/`https` → HTTP, `file` → file server, `tcp`/`udp` and their `4`/`6` forms →
//! stream), [`new_target_monitor`] takes any [`Target`] (agent, Docker or URL), and the
//! named factories first check that the URL's scheme is theirs. To attach an event sink
//! or a clock, take the probe from `build_probe` and use [`Monitor::builder`].

use health_check::build_probe;
#[cfg(feature = "docker")]
use health_types::DockerSpec;
use health_types::{AgentSpec, HealthCheckConfig, Scheme, Target, Url};

use crate::{Monitor, MonitorError};

/// A monitor of `target`: the probe [`build_probe`] picks, showing the URL it gives.
pub fn new_target_monitor(
    name: &str,
    config: &HealthCheckConfig,
    target: &Target,
) -> Result<Monitor, MonitorError> {
    let built = build_probe(config, target)?;
    Monitor::builder(name, built.url, built.probe)
        .config(config.clone())
        .build()
}

/// A monitor of `url` when its scheme is one of `schemes`.
fn url_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
    schemes: &[Scheme],
) -> Result<Monitor, MonitorError> {
    Scheme::of_among(&url, schemes)?;
    new_target_monitor(name, config, &Target::Url(url))
}

/// The factories of one URL family: each checks the URL's scheme, then builds.
macro_rules! url_factories {
    ($($(#[$doc:meta])* $factory:ident => $schemes:expr;)*) => {$(
        $(#[$doc])*
        pub fn $factory(
            name: &str,
            config: &HealthCheckConfig,
            url: Url,
        ) -> Result<Monitor, MonitorError> {
            url_monitor(name, config, url, $schemes)
        }
    )*};
}

url_factories! {
    /// An HTTP/HTTPS monitor (HTTP/2 by ALPN over TLS).
    new_http_monitor => &[Scheme::Http, Scheme::Https];
    /// An H2C monitor: HTTP/2 with prior knowledge over cleartext (`h2c://`).
    new_h2c_monitor => &[Scheme::H2c];
    /// A file-server monitor: healthy while the `file://` path exists.
    new_file_server_monitor => &[Scheme::File];
    /// A stream monitor (`tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6`); the config's
    /// `payload` and `expect_reply` set the UDP datagram and whether a reply is
    /// required.
    new_stream_monitor => Scheme::STREAM;
}

/// A monitor whose checks a remote agent runs (GoDoxy's agent protocol); `url` is the
/// target as the agent sees it.
pub fn new_agent_proxied_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
    agent: AgentSpec,
) -> Result<Monitor, MonitorError> {
    new_target_monitor(name, config, &Target::Agent { spec: agent, url })
}

/// A monitor of a Docker container's state and healthcheck (SPEC §5; the seed's
/// `NewDockerHealthMonitor`), with an optional fallback target.
///
/// - `host`: the engine, `unix:///path/to/docker.sock` or `tcp://host:port`; `None` is
///   `DOCKER_HOST` when set, else `unix:///var/run/docker.sock`.
/// - `container`: the container's id or name.
/// - `fallback`: the container's own URL (for example `http://10.0.0.5:8080/`), checked
///   by the probe of its scheme when the container has no healthcheck or the Docker API
///   fails, unless `config.disable` is set. A valid Docker answer otherwise is final; an
///   API failure without a usable fallback is an error result.
///
/// The monitor's URL (its [`url`](crate::HealthMonitor::url) and JSON `url`) is the
/// display URL `docker://<host>/containers/<id>` (`localhost` for a unix socket).
/// [`update_url`](crate::HealthMonitor::update_url) with a plain URL, which the fallback
/// must accept, makes it the fallback's target from the next check on (the monitor then
/// shows that URL); another container's `docker://` URL is rejected, and so is any plain
/// URL without a fallback.
///
/// Nothing connects here: the Docker client is created on the first check. Fails when
/// `config` is invalid, `host` is not a `unix://` or `tcp://` URL, `container` is not a
/// Docker id or name, or the fallback's probe rejects its URL.
#[cfg(feature = "docker")]
pub fn new_docker_monitor(
    name: &str,
    config: &HealthCheckConfig,
    host: Option<&str>,
    container: &str,
    fallback: Option<Url>,
) -> Result<Monitor, MonitorError> {
    let spec = DockerSpec {
        container: container.to_owned(),
        host: host.map(str::to_owned),
    };
    new_target_monitor(name, config, &Target::Docker { spec, fallback })
}

/// A monitor for `url`, choosing the probe by scheme as the seed's flow chart does:
/// h2c → HTTP → file → stream. An unsupported scheme is an error listing the supported
/// ones.
pub fn new_monitor(
    name: &str,
    config: &HealthCheckConfig,
    url: Url,
) -> Result<Monitor, MonitorError> {
    new_target_monitor(name, config, &Target::Url(url))
}
