//! [`build_probe`]: the one place that turns a config and a [`Target`] into a probe.

use std::sync::Arc;

use health_types::{ConfigError, HealthCheckConfig, Probe, Scheme, Target, Url};

use crate::{DnsProbe, FileProbe, IcmpProbe, StreamProbe};

/// A probe built for a target, and the URL its monitor shows and checks.
#[derive(Clone, Debug)]
pub struct BuiltProbe {
    /// The probe.
    pub probe: Arc<dyn Probe>,
    /// The URL a monitor of the target starts with: the target URL, the agent's target,
    /// or a Docker container's display URL `docker://<host>/containers/<id>`.
    pub url: Url,
}

/// Builds the probe for `target` under `config`, by SPEC §4's flow chart: agent, then
/// Docker, then the URL's [`Scheme`] (h2c → HTTP/HTTPS → file → stream, and the
/// §9.4 schemes: dns → [`DnsProbe`], icmp → [`IcmpProbe`], grpc/grpcs → `GrpcProbe`).
///
/// This is the only function that picks a probe: the monitor factories, the daemon's
/// config loader, `healthd check` and the agent server all call it, so a new scheme is
/// one [`Scheme`] variant and one arm here.
///
/// Nothing connects here. Fails when the config is invalid, when the URL is one the
/// probe can never check (an unsupported scheme, listing the supported ones; no host; a
/// stream or gRPC URL without a port; `expect_reply` on a `tcp` URL; a `dns://` URL
/// without a name or with a bad `type`, `expect` or `rcode`), when a TLS file cannot be
/// read, or when the probe needs a feature this build lacks (`http`, `tls`, `docker`,
/// `grpc`).
///
/// ```
/// use health_check::build_probe;
/// use health_types::{HealthCheckConfig, Target, Url};
///
/// let built = build_probe(
///     &HealthCheckConfig::default(),
///     &Target::Url(Url::parse("tcp://127.0.0.1:5432").unwrap()),
/// )
/// .unwrap();
/// assert_eq!(built.url.as_str(), "tcp://127.0.0.1:5432");
/// let err = build_probe(
///     &HealthCheckConfig::default(),
///     &Target::Url(Url::parse("tcp://db.internal").unwrap()),
/// )
/// .unwrap_err();
/// assert!(err.to_string().contains("port"));
/// ```
pub fn build_probe(config: &HealthCheckConfig, target: &Target) -> Result<BuiltProbe, ConfigError> {
    config.validate()?;
    match target {
        Target::Url(url) => {
            let probe = url_probe(config, url)?;
            Ok(BuiltProbe {
                probe,
                url: url.clone(),
            })
        }
        Target::Agent { spec, url } => agent(config, spec, url),
        Target::Docker { spec, fallback } => docker(config, spec, fallback.as_ref()),
    }
}

/// The probe for a URL by its scheme; the URL is validated against it.
fn url_probe(config: &HealthCheckConfig, url: &Url) -> Result<Arc<dyn Probe>, ConfigError> {
    let probe: Arc<dyn Probe> = match Scheme::of(url)? {
        #[cfg(feature = "http")]
        Scheme::Http | Scheme::Https => Arc::new(crate::HttpProbe::try_new(config)?),
        #[cfg(feature = "http")]
        Scheme::H2c => Arc::new(crate::H2cProbe::try_new(config)?),
        #[cfg(not(feature = "http"))]
        Scheme::Http | Scheme::Https | Scheme::H2c => return Err(missing(url, "http")),
        Scheme::File => Arc::new(FileProbe::try_new(config)?),
        Scheme::Dns => Arc::new(DnsProbe::try_new(config)?),
        Scheme::Icmp => Arc::new(IcmpProbe::try_new(config)?),
        #[cfg(feature = "grpc")]
        Scheme::Grpc | Scheme::Grpcs => Arc::new(crate::GrpcProbe::try_new(config)?),
        #[cfg(not(feature = "grpc"))]
        Scheme::Grpc | Scheme::Grpcs => return Err(missing(url, "grpc")),
        Scheme::Tcp | Scheme::Tcp4 | Scheme::Tcp6 | Scheme::Udp | Scheme::Udp4 | Scheme::Udp6 => {
            Arc::new(StreamProbe::try_new(config)?)
        }
    };
    probe.validate_url(url)?;
    Ok(probe)
}

#[cfg(feature = "http")]
fn agent(
    config: &HealthCheckConfig,
    spec: &health_types::AgentSpec,
    url: &Url,
) -> Result<BuiltProbe, ConfigError> {
    let probe = crate::AgentProbe::try_new(config, spec.clone())?;
    probe.validate_url(url)?;
    Ok(BuiltProbe {
        probe: Arc::new(probe),
        url: url.clone(),
    })
}

#[cfg(not(feature = "http"))]
fn agent(
    _config: &HealthCheckConfig,
    spec: &health_types::AgentSpec,
    _url: &Url,
) -> Result<BuiltProbe, ConfigError> {
    Err(missing(&spec.url, "http"))
}

#[cfg(feature = "docker")]
fn docker(
    config: &HealthCheckConfig,
    spec: &health_types::DockerSpec,
    fallback: Option<&Url>,
) -> Result<BuiltProbe, ConfigError> {
    let mut probe = crate::DockerProbe::try_new(config, spec.clone())?;
    if let Some(url) = fallback {
        probe = probe.try_with_fallback(url_probe(config, url)?, url.clone())?;
    }
    let url = probe.url().clone();
    Ok(BuiltProbe {
        probe: Arc::new(probe),
        url,
    })
}

#[cfg(not(feature = "docker"))]
fn docker(
    _config: &HealthCheckConfig,
    spec: &health_types::DockerSpec,
    _fallback: Option<&Url>,
) -> Result<BuiltProbe, ConfigError> {
    Err(ConfigError::Invalid {
        key: "docker",
        value: format!("{:?}", spec.container),
        reason: "Docker monitors need the `docker` feature of health-check".to_owned(),
    })
}

/// The error for a target whose probe is compiled out.
#[cfg(any(not(feature = "http"), not(feature = "grpc")))]
fn missing(url: &Url, feature: &str) -> ConfigError {
    ConfigError::url(
        health_types::redacted(url),
        format!("this build of health-check lacks the `{feature}` feature"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(url: &str) -> Result<BuiltProbe, String> {
        let url = Url::parse(url).expect("a valid URL");
        build_probe(&HealthCheckConfig::default(), &Target::Url(url)).map_err(|e| e.to_string())
    }

    #[test]
    fn every_scheme_gets_its_probe_and_others_list_the_supported_ones() {
        for url in [
            "http://127.0.0.1/",
            "https://127.0.0.1/",
            "h2c://127.0.0.1/",
            "tcp://127.0.0.1:1",
            "udp6://[::1]:53",
            "file:///srv",
            "dns://127.0.0.1:5353/example.com?type=TXT",
            "icmp://127.0.0.1",
            "grpc://127.0.0.1:50051",
            "grpcs://127.0.0.1:443/pkg.Service",
        ] {
            let built = build(url).expect(url);
            assert_eq!(built.url.as_str(), url);
        }
        let err = build("gopher://h/").unwrap_err();
        assert!(
            err.contains("\"gopher\"")
                && err.contains("supported schemes: http, https, h2c, tcp, tcp4, tcp6, udp")
                && err.contains("dns, icmp, grpc, grpcs"),
            "{err}"
        );
    }

    #[test]
    fn expect_reply_on_a_tcp_url_is_rejected_and_payload_is_not() {
        let payload = HealthCheckConfig {
            payload: Some("PING\r\n".to_owned()),
            expect: Some("^\\+PONG".to_owned()),
            ..Default::default()
        };
        let tcp = Target::Url(Url::parse("tcp://h:1").expect("valid"));
        assert!(build_probe(&payload, &tcp).is_ok());
        let strict = HealthCheckConfig {
            expect_reply: true,
            ..Default::default()
        };
        let err = build_probe(&strict, &tcp).unwrap_err().to_string();
        assert!(
            err.contains("`expect_reply` applies to udp targets only"),
            "{err}"
        );
        let udp = Target::Url(Url::parse("udp://h:1").expect("valid"));
        assert!(build_probe(&strict, &udp).is_ok());
    }

    #[test]
    fn bad_dns_urls_are_rejected_before_any_check() {
        for (url, needle) in [
            ("dns://127.0.0.1/", "no name"),
            ("dns://127.0.0.1/x.test?type=BOGUS", "`type`"),
            ("dns://127.0.0.1/x.test?expect=[", "`expect`"),
            ("icmp://127.0.0.1:7", "no ports"),
            ("grpc://127.0.0.1", "port"),
        ] {
            let err = build(url).unwrap_err();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
