//! What a monitor checks ([`Target`]): a URL, a Docker container, or a URL through a
//! remote agent.

use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

/// What a monitor checks. `health-check`'s `build_probe` turns a config and a target
/// into the probe and the URL the monitor shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A URL, checked by the probe of its [`Scheme`](crate::Scheme).
    Url(Url),
    /// A Docker container's own state and healthcheck.
    Docker {
        /// Which container, on which engine.
        spec: DockerSpec,
        /// The container's own URL, checked while it has no healthcheck or the engine
        /// cannot be asked (unless `disable` is set); `None` for no fallback.
        fallback: Option<Url>,
    },
    /// A URL checked by a remote agent (GoDoxy's agent protocol).
    Agent {
        /// Where the agent is and how to reach it.
        spec: AgentSpec,
        /// The target, as the agent sees it.
        url: Url,
    },
}

impl Target {
    /// The URL a monitor of this target starts with: the URL itself, the agent's target,
    /// or the Docker fallback (`None` for a Docker target without one; the probe then
    /// supplies a `docker://` display URL).
    pub fn url(&self) -> Option<&Url> {
        match self {
            Target::Url(url) | Target::Agent { url, .. } => Some(url),
            Target::Docker { fallback, .. } => fallback.as_ref(),
        }
    }
}

/// A Docker container (the `docker = { container, host }` table of a monitor).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSpec {
    /// Container id or name.
    pub container: String,
    /// Engine host, `unix:///path` or `tcp://host:port`; `None` means `DOCKER_HOST`,
    /// else the local socket.
    #[serde(default)]
    pub host: Option<String>,
}

impl DockerSpec {
    /// `container` on the default engine (`DOCKER_HOST`, else the local socket).
    pub fn new(container: impl Into<String>) -> Self {
        DockerSpec {
            container: container.into(),
            host: None,
        }
    }
}

/// A remote agent (the `agent = { url, ca, cert, key }` table of a monitor).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The agent's base URL, `http://` or `https://`.
    pub url: Url,
    /// A PEM file of the CA that signed the agent's certificate; `None` trusts the
    /// system and webpki roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// A PEM file with the client certificate chain, for mutual TLS.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// A PEM file with the client certificate's key, for mutual TLS.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl AgentSpec {
    /// The agent at `url`, without mutual TLS or a custom CA.
    pub fn new(url: Url) -> Self {
        AgentSpec {
            url,
            ca: None,
            cert: None,
            key: None,
        }
    }
}
