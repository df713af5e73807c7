//! The agent-proxied probe: asks a GoDoxy-compatible agent to check a target (SPEC §5),
//! over the HTTP probes' own transport (connector, TLS, keep-alive pool, exchange).

use std::time::Duration;

use async_trait::async_trait;
use health_types::{
    AgentSpec, CheckKind, CheckResult, ConfigError, HealthCheckConfig, Method, Probe, ProbeError,
    Scheme, redacted, truncate,
};
use http::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::{
    failure::{bad_url, margin},
    file::file_path,
    http::{Fetcher, HttpClient, HttpClientConfig},
    net::{self, join_path},
    stream::StreamTarget,
};

/// The path of the agent's health endpoint (GoDoxy's agent protocol).
pub const AGENT_HEALTH_PATH: &str = "/godoxy/agent/health";
/// How much of a non-200 answer goes into the detail.
const MAX_DETAIL_BODY: usize = 200;

/// Checks a target through an agent: `GET <agent>/godoxy/agent/health?scheme=…&host=…
/// &path=…&timeout=<ms>&method=…` (SPEC §5).
///
/// The agent is asked for `timeout` minus a margin of 10 % (at most 100 ms), and the
/// probe waits for it `timeout` minus half that margin, so that its answer, or the error
/// saying it did not come, arrives inside the monitor's deadline.
///
/// - 200 with `{"healthy", "detail", "latency" (ns)[, "kind"]}`: that result. An
///   unhealthy answer without a known `kind` (GoDoxy's agent sends none) gets `status`.
/// - Another status: unhealthy, kind `status`, detail `agent HTTP <code>: <body>`.
/// - Agent unreachable, TLS refused, no answer in time, or a bad answer (not JSON, over
///   64 KiB): an error.
///
/// The requests go through one keep-alive [`HttpClient`] per probe (HTTP/1.1; over TLS
/// with the agent's CA and client certificate), so back-to-back checks reuse one
/// connection to the agent; a dropped check leaves at most that idle connection.
#[derive(Clone, Debug)]
pub struct AgentProbe {
    timeout: Duration,
    method: Method,
    path: String,
    endpoint: Url,
    fetcher: Fetcher,
}

impl AgentProbe {
    /// A probe asking the agent of `spec` with `config`'s timeout, method and path.
    ///
    /// Fails when `config` is invalid, the agent URL is not `http`/`https` with a host,
    /// the TLS files cannot be read, or only one of `cert`/`key` is given; and when
    /// `config` sets a probe-depth key (SPEC §9.4: `body_match`, `body_not_match`,
    /// `json`, `header_match`, `follow_redirects`, an `ip_family` other than `any`, a
    /// `tls` table, `payload`, `expect`) that the agent protocol cannot carry: the
    /// error names the key, rather than the check silently skipping it.
    pub fn try_new(config: &HealthCheckConfig, spec: AgentSpec) -> Result<Self, ConfigError> {
        config.validate()?;
        if let Some((key, value)) = unsupported_key(config) {
            return Err(ConfigError::Invalid {
                key,
                value,
                reason: format!("`{key}` {NOT_THROUGH_AN_AGENT}"),
            });
        }
        let url = &spec.url;
        #[cfg(feature = "tls")]
        let schemes = [Scheme::Http, Scheme::Https];
        #[cfg(not(feature = "tls"))]
        let schemes = [Scheme::Http];
        let https = Scheme::of_among(url, &schemes)? == Scheme::Https;
        if net::url_host(url).is_none() {
            return Err(ConfigError::url(redacted(url), "no host"));
        }
        let mut endpoint = url.clone();
        endpoint.set_path(&join_path(url.path(), None, AGENT_HEALTH_PATH));
        endpoint.set_query(None);
        endpoint.set_fragment(None);
        let has_tls_files = spec.ca.is_some() || spec.cert.is_some() || spec.key.is_some();
        if !https && has_tls_files {
            return Err(ConfigError::url(
                redacted(url),
                "a CA, client certificate or key needs an https:// agent URL",
            ));
        }
        #[cfg(feature = "tls")]
        let client = if https {
            HttpClient::with_tls(std::sync::Arc::new(agent_tls(&spec)?))
        } else {
            plain_client()?
        };
        #[cfg(not(feature = "tls"))]
        let client = plain_client()?;
        Ok(AgentProbe {
            timeout: config.timeout,
            method: config.method,
            path: config.path.clone(),
            endpoint,
            fetcher: Fetcher::new(client, "application/json"),
        })
    }

    /// The timeout the agent is asked for: `timeout` minus `min(timeout / 10, 100ms)`.
    pub fn agent_timeout(&self) -> Duration {
        self.timeout - margin(self.timeout)
    }

    /// How long the probe waits for the agent: `timeout` minus half the margin.
    fn wait(&self) -> Duration {
        self.timeout - margin(self.timeout) / 2
    }

    /// The agent URL that checks `target`, query included.
    pub fn endpoint(&self, target: &Url) -> Result<Url, ConfigError> {
        let mut pairs: Vec<(&str, String)> = Vec::with_capacity(6);
        let scheme = Scheme::of(target)?;
        match scheme {
            Scheme::File => {
                let path = file_path(target)?;
                pairs.push(("scheme", "fileserver".to_owned()));
                pairs.push(("path", path.to_string_lossy().into_owned()));
            }
            Scheme::Http | Scheme::Https | Scheme::H2c => {
                pairs.push(("scheme", scheme.as_str().to_owned()));
                pairs.push(("host", authority(target)?));
                pairs.push(("path", join_path(target.path(), target.query(), &self.path)));
            }
            _ => {
                StreamTarget::parse(target)?;
                pairs.push(("scheme", scheme.as_str().to_owned()));
                pairs.push(("host", authority(target)?));
            }
        }
        let asked = u64::try_from(self.agent_timeout().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        pairs.push(("timeout", asked.to_string()));
        pairs.push(("method", self.method.as_str().to_owned()));
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().extend_pairs(pairs);
        Ok(url)
    }

    pub(crate) fn interpret(
        status: StatusCode,
        body: &[u8],
        truncated: bool,
        latency: Duration,
    ) -> Result<CheckResult, ProbeError> {
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(body);
            let detail = format!(
                "agent HTTP {}: {}",
                status.as_u16(),
                truncate(text.trim(), MAX_DETAIL_BODY)
            );
            return Ok(CheckResult::unhealthy(CheckKind::Status, detail, latency));
        }
        if truncated {
            return Err(ProbeError::new(
                CheckKind::Protocol,
                "agent: answer larger than 64 KiB",
            ));
        }
        let answer: AgentAnswer = serde_json::from_slice(body).map_err(|err| {
            ProbeError::new(CheckKind::Protocol, format!("agent: bad answer: {err}"))
        })?;
        Ok(answer.into_result())
    }
}

/// Why a probe-depth key is refused on an agent monitor.
const NOT_THROUGH_AN_AGENT: &str = "is not supported through an agent (the agent protocol carries scheme, host, path, timeout and method)";

/// The first probe-depth key (SPEC §9.4) `config` sets that the agent protocol cannot
/// carry, with its value as written: the agent would ignore it, so the monitor is
/// refused instead.
fn unsupported_key(config: &HealthCheckConfig) -> Option<(&'static str, String)> {
    let quoted = |value: &Option<String>| value.as_ref().map(|v| format!("{v:?}"));
    let map = |map: &std::collections::BTreeMap<String, String>| {
        (!map.is_empty()).then(|| format!("{map:?}"))
    };
    [
        ("body_match", quoted(&config.body_match)),
        ("body_not_match", quoted(&config.body_not_match)),
        (
            "json",
            (!config.json.is_empty()).then(|| format!("{} condition(s)", config.json.len())),
        ),
        ("header_match", map(&config.header_match)),
        (
            "follow_redirects",
            config.follow_redirects.then(|| "true".to_owned()),
        ),
        (
            "ip_family",
            (config.ip_family != health_types::IpFamily::Any)
                .then(|| format!("{:?}", config.ip_family.to_string())),
        ),
        (
            "tls",
            (!config.tls.is_empty()).then(|| "a table".to_owned()),
        ),
        ("payload", quoted(&config.payload)),
        ("expect", quoted(&config.expect)),
    ]
    .into_iter()
    .find_map(|(key, value)| Some((key, value?)))
}

/// The client of every `http://` agent (its TLS setup is never used): built once per
/// process, its pool keyed by agent, so monitors of one agent share its connections.
fn plain_client() -> Result<HttpClient, ConfigError> {
    static PLAIN: std::sync::OnceLock<HttpClient> = std::sync::OnceLock::new();
    if let Some(client) = PLAIN.get() {
        return Ok(client.clone());
    }
    let client = HttpClient::try_new(&HealthCheckConfig::default(), &HttpClientConfig::default())?;
    Ok(PLAIN.get_or_init(|| client).clone())
}

#[async_trait]
impl Probe for AgentProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let endpoint = self.endpoint(url).map_err(|err| bad_url(&err))?;
        let start = Instant::now();
        let wait = self.wait();
        let deadline = start + wait;
        match tokio::time::timeout_at(deadline, self.fetcher.get(&endpoint, deadline)).await {
            Ok(Ok(answer)) => Self::interpret(
                answer.status,
                &answer.body.bytes,
                answer.body.truncated,
                start.elapsed(),
            ),
            Ok(Err(failure)) => Err(failure.prefixed("agent: ").into_error()),
            Err(_) => Err(ProbeError::new(
                CheckKind::Timeout,
                format!(
                    "agent: no answer within {}",
                    humantime::format_duration(wait)
                ),
            )),
        }
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        self.endpoint(url).map(drop)
    }
}

/// `host[:port]` of a target, as GoDoxy's agent takes it (IPv6 in brackets).
fn authority(url: &Url) -> Result<String, ConfigError> {
    match (url.host_str(), url.port()) {
        (Some(""), _) => Err(ConfigError::url(redacted(url), "no host")),
        (Some(host), Some(port)) => Ok(format!("{host}:{port}")),
        (Some(host), None) => Ok(host.to_owned()),
        (None, _) => Err(ConfigError::url(redacted(url), "no host")),
    }
}

/// The agent's JSON answer (GoDoxy's `HealthCheckResult`, plus our `kind`).
#[derive(Debug, Deserialize)]
struct AgentAnswer {
    healthy: bool,
    #[serde(default)]
    detail: String,
    /// Nanoseconds.
    #[serde(default)]
    latency: u64,
    #[serde(default)]
    kind: Option<serde_json::Value>,
    /// Our agent's phase timings, certificate and status code (SPEC §9.4); absent from
    /// GoDoxy's, and ignored when they do not parse.
    #[serde(default)]
    phases: Option<serde_json::Value>,
    #[serde(default)]
    cert: Option<serde_json::Value>,
    #[serde(default)]
    status_code: Option<serde_json::Value>,
}

impl AgentAnswer {
    fn into_result(self) -> CheckResult {
        let latency = Duration::from_nanos(self.latency);
        let mut result = if self.healthy {
            CheckResult::healthy(self.detail, latency)
        } else {
            let kind = self
                .kind
                .and_then(|kind| serde_json::from_value::<CheckKind>(kind).ok())
                .filter(|kind| *kind != CheckKind::Ok)
                .unwrap_or(CheckKind::Status);
            CheckResult::unhealthy(kind, self.detail, latency)
        };
        if let Some(phases) = self.phases.and_then(|p| serde_json::from_value(p).ok()) {
            result.phases = phases;
        }
        result.cert = self.cert.and_then(|c| serde_json::from_value(c).ok());
        result.status_code = self
            .status_code
            .and_then(|c| serde_json::from_value(c).ok());
        result
    }
}

/// The TLS setup for an `https://` agent: its CA (or the system roots), and a client
/// certificate when one is configured; HTTP/1.1 only.
#[cfg(feature = "tls")]
fn agent_tls(spec: &AgentSpec) -> Result<tokio_rustls::rustls::ClientConfig, ConfigError> {
    use health_types::tls::{
        ClientAuth, TlsError, Trust, client_config, load_certificates, load_private_key, load_roots,
    };

    let invalid =
        |key: &'static str, path: &std::path::Path, reason: TlsError| ConfigError::Invalid {
            key,
            value: format!("{:?}", path.display().to_string()),
            reason: reason.to_string(),
        };
    let trust = match &spec.ca {
        Some(path) => Trust::Roots(std::sync::Arc::new(
            load_roots(path).map_err(|reason| invalid("ca", path, reason))?,
        )),
        None => Trust::SystemRoots,
    };
    let auth = match (&spec.cert, &spec.key) {
        (Some(cert), Some(key)) => Some(ClientAuth {
            chain: load_certificates(cert).map_err(|reason| invalid("cert", cert, reason))?,
            key: load_private_key(key).map_err(|reason| invalid("key", key, reason))?,
        }),
        (None, None) => None,
        (Some(path), None) | (None, Some(path)) => {
            return Err(invalid(
                "cert",
                path,
                TlsError::from("mutual TLS needs both a client certificate and its key"),
            ));
        }
    };
    client_config(&trust, &[b"http/1.1"], auth).map_err(|reason| ConfigError::Invalid {
        key: "cert",
        value: format!("{:?}", redacted(&spec.url)),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(timeout: Duration, path: &str) -> AgentProbe {
        let config = HealthCheckConfig {
            timeout,
            path: path.to_owned(),
            method: Method::Head,
            ..Default::default()
        };
        let agent = AgentSpec::new(Url::parse("http://agent.test:8890/base").unwrap());
        AgentProbe::try_new(&config, agent).unwrap()
    }

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn the_agent_gets_the_timeout_less_a_margin_of_at_most_100ms() {
        assert_eq!(
            probe(Duration::from_secs(10), "/").agent_timeout(),
            Duration::from_millis(9900)
        );
        assert_eq!(
            probe(Duration::from_millis(200), "/").agent_timeout(),
            Duration::from_millis(180)
        );
    }

    #[test]
    fn http_targets_carry_scheme_host_joined_path_timeout_and_method() {
        let probe = probe(Duration::from_secs(1), "/health?full=1");
        let url = probe
            .endpoint(&Url::parse("https://[::1]:8443/api").unwrap())
            .unwrap();
        assert_eq!(url.path(), "/base/godoxy/agent/health");
        assert_eq!(
            query(&url),
            [
                ("scheme", "https"),
                ("host", "[::1]:8443"),
                ("path", "/api/health?full=1"),
                ("timeout", "900"),
                ("method", "HEAD"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn file_targets_go_as_fileserver_with_their_path() {
        let probe = probe(Duration::from_secs(10), "/");
        let url = probe
            .endpoint(&Url::parse("file:///srv/www").unwrap())
            .unwrap();
        let pairs = query(&url);
        assert_eq!(pairs[0], ("scheme".to_owned(), "fileserver".to_owned()));
        assert_eq!(pairs[1], ("path".to_owned(), "/srv/www".to_owned()));
    }

    #[test]
    fn stream_targets_need_a_port_and_unknown_schemes_list_the_supported_ones() {
        let probe = probe(Duration::from_secs(10), "/");
        let url = probe
            .endpoint(&Url::parse("udp://dns.test:53").unwrap())
            .unwrap();
        assert_eq!(
            query(&url)[1],
            ("host".to_owned(), "dns.test:53".to_owned())
        );
        let err = probe
            .endpoint(&Url::parse("tcp://db.test").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        let err = probe
            .endpoint(&Url::parse("ftp://x.test").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("h2c"), "{err}");
    }

    #[test]
    fn answers_without_a_kind_get_one() {
        let answer: AgentAnswer =
            serde_json::from_str(r#"{"healthy":false,"detail":"HTTP 503","latency":1500}"#)
                .unwrap();
        let result = answer.into_result();
        assert_eq!(result.kind, CheckKind::Status);
        assert_eq!(result.latency, Duration::from_nanos(1500));
        let answer: AgentAnswer =
            serde_json::from_str(r#"{"healthy":false,"detail":"x","latency":1,"kind":"refused"}"#)
                .unwrap();
        assert_eq!(answer.into_result().kind, CheckKind::Refused);
    }

    #[test]
    fn our_agents_phases_certificate_and_status_code_come_through() {
        let answer: AgentAnswer = serde_json::from_str(
            r#"{"healthy":true,"kind":"ok","detail":"HTTP 200 OK","latency":2000,
                "phases":{"connect":500,"tls":900,"first_byte":1200},
                "cert":{"not_after":1800000000,"subject":"CN=a","serial":"1f"},
                "status_code":200}"#,
        )
        .unwrap();
        let result = answer.into_result();
        assert_eq!(result.phases.tls, Some(Duration::from_nanos(900)));
        assert_eq!(result.cert.map(|c| c.not_after), Some(1_800_000_000));
        assert_eq!(result.status_code, Some(200));
        // Garbage in those optional keys is ignored, not an error.
        let answer: AgentAnswer = serde_json::from_str(
            r#"{"healthy":true,"detail":"","latency":1,"phases":"soon","cert":3,"status_code":"x"}"#,
        )
        .unwrap();
        let result = answer.into_result();
        assert!(result.phases.is_empty() && result.cert.is_none() && result.status_code.is_none());
    }

    #[test]
    fn tls_files_need_an_https_agent() {
        let mut agent = AgentSpec::new(Url::parse("http://agent.test").unwrap());
        agent.ca = Some("/tmp/ca.pem".into());
        let err = AgentProbe::try_new(&HealthCheckConfig::default(), agent).unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }
}
