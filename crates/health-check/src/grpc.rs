//! The gRPC health probe (`grpc://host:port[/service]`, `grpcs://…`, SPEC §9.4): the
//! standard `grpc.health.v1.Health/Check` call on a tonic client channel (feature
//! `grpc`).
//!
//! The channel's connections come from this crate's own connector: the shared resolver,
//! a TCP connect honouring `ip_family`, and for `grpcs` a rustls handshake on the ring
//! provider offering ALPN `h2`, trusting what `tls_verify` and the `tls` table say. So
//! tonic's own TLS features (and with them a second crypto provider) stay out of the
//! build, and `tls_verify = false` works as it does for HTTPS.

use std::{
    collections::HashMap,
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use health_types::{
    CertInfo, CheckKind, CheckResult, ConfigError, HealthCheckConfig, IpFamily, Probe, ProbeError,
    Scheme, redacted, tls::rustls::pki_types::ServerName,
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};
use tokio_rustls::rustls::ClientConfig;
use tonic::{
    Code, Status,
    transport::{Channel, Endpoint, Uri},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use url::Url;

use crate::{
    failure::{Failure, bad_url, classify_chain, error_chain},
    net::{self, Family},
};

/// Checks a gRPC server's health service (`grpc://`, `grpcs://`).
///
/// Asks `grpc.health.v1.Health/Check` for the service named by the URL's path without
/// its leading `/` (empty: the server as a whole), with the remaining time as the call's
/// `grpc-timeout`.
///
/// | answer | result | kind | detail |
/// |---|---|---|---|
/// | `SERVING` | healthy | `ok` | `SERVING` |
/// | `NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN` | unhealthy | `status` | the status name |
/// | status `NOT_FOUND` (the server does not know the service) | unhealthy | `status` | `grpc: service "<name>" unknown (NOT_FOUND)` |
/// | status `UNIMPLEMENTED` (no health service) | unhealthy | `protocol` | `grpc: the server has no health service (UNIMPLEMENTED)` |
/// | another status | unhealthy | `status` | `grpc: <CODE>: <message>` |
/// | refused, reset, TLS failure, not HTTP/2 | unhealthy | `refused`, `reset`, `tls`, `protocol` | as for HTTP |
/// | no answer within `timeout` | unhealthy | `timeout` | `timed out after 10s` |
///
/// `grpcs` verifies the server's certificate when `tls_verify` is true (against
/// `tls.ca` when given, else the system and webpki roots), sends `tls.cert`/`tls.key`
/// when the server asks, and names `tls.server_name` (default: the URL's host) by SNI.
/// `tls.min_version` is not applied to gRPC checks: rustls's default versions (1.2 and
/// 1.3) are offered.
///
/// A `grpcs` result carries the server's leaf certificate (as of the channel's latest
/// handshake).
///
/// One channel (one HTTP/2 connection, kept alive) per target is cached in the probe
/// and reused by its checks; a check that fails on the transport drops it, so the next
/// check connects afresh. Cancel safety: a dropped check leaves only the cached
/// channel (and the connection task tonic runs for it), as the HTTP probes leave their
/// pooled connections.
#[derive(Clone)]
pub struct GrpcProbe {
    timeout: Duration,
    ip_family: IpFamily,
    /// The TLS config of `grpcs` targets.
    tls: Arc<ClientConfig>,
    /// `tls.server_name`, instead of the URL's host.
    server_name: Option<ServerName<'static>>,
    /// Channels by target (`scheme://host:port`), each with the certificate its latest
    /// TLS handshake saw.
    channels: Arc<Mutex<HashMap<String, (Channel, PeerCert)>>>,
}

/// The peer certificate of a channel's latest handshake.
type PeerCert = Arc<Mutex<Option<Arc<CertInfo>>>>;

impl fmt::Debug for GrpcProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcProbe")
            .field("timeout", &self.timeout)
            .field("ip_family", &self.ip_family)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A `grpc://` or `grpcs://` URL taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GrpcTarget {
    tls: bool,
    host: String,
    port: u16,
    service: String,
}

impl GrpcTarget {
    fn key(&self) -> String {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

impl GrpcProbe {
    /// A probe with `config`'s `timeout`, `ip_family`, `tls_verify` and `tls` table.
    ///
    /// Fails when `config` is invalid or a `tls` file cannot be read.
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(GrpcProbe {
            timeout: config.timeout,
            ip_family: config.ip_family,
            tls: Arc::new(tls_config(config)?),
            server_name: match &config.tls.server_name {
                None => None,
                Some(name) => Some(health_types::tls::server_name(name).ok_or_else(|| {
                    ConfigError::Invalid {
                        key: "tls.server_name",
                        value: format!("{name:?}"),
                        reason: "is not a DNS name or an IP address".to_owned(),
                    }
                })?),
            },
            channels: Arc::default(),
        })
    }

    fn target(&self, url: &Url) -> Result<GrpcTarget, ConfigError> {
        let scheme = Scheme::of_among(url, &[Scheme::Grpc, Scheme::Grpcs])?;
        let invalid = |reason: &str| ConfigError::url(redacted(url), reason);
        let host =
            net::url_host(url).ok_or_else(|| invalid("no host (like grpc://127.0.0.1:50051)"))?;
        let port = match url.port() {
            Some(0) => return Err(invalid("port 0 cannot be checked")),
            Some(port) => port,
            None => {
                return Err(invalid(
                    "a gRPC target needs a port (like grpc://host:50051)",
                ));
            }
        };
        if url.query().is_some() {
            return Err(invalid(
                "a gRPC URL takes no query (the path names the service)",
            ));
        }
        if let Some(ip) = net::ip_literal(&host)
            && !self.ip_family.admits(&ip)
        {
            return Err(invalid(&format!(
                "{ip} is not an address of ip_family {}",
                self.ip_family
            )));
        }
        let service = url.path().trim_start_matches('/').to_owned();
        Ok(GrpcTarget {
            tls: scheme == Scheme::Grpcs,
            host,
            port,
            service,
        })
    }

    /// The cached channel of `target`, or a new lazy one (it connects on the first call).
    fn channel(&self, target: &GrpcTarget) -> Result<(Channel, PeerCert), Failure> {
        let key = target.key();
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = channels.get(&key) {
            return Ok(entry.clone());
        }
        // Always `http://`: the connector does TLS itself, and tonic refuses an `https`
        // URI without a TLS feature of its own.
        let host = match net::ip_literal(&target.host) {
            Some(ip) if ip.is_ipv6() => format!("[{ip}]"),
            _ => target.host.clone(),
        };
        let endpoint = Endpoint::from_shared(format!("http://{host}:{}", target.port))
            .map_err(|err| Failure::checker(CheckKind::Config, format!("grpc: {err}")))?
            .connect_timeout(self.timeout)
            .tcp_nodelay(true);
        let connector = Connector {
            host: target.host.clone(),
            port: target.port,
            family: match self.ip_family {
                IpFamily::Any => Family::Any,
                IpFamily::Ipv4 => Family::V4,
                IpFamily::Ipv6 => Family::V6,
            },
            timeout: self.timeout,
            tls: target
                .tls
                .then(|| (self.tls.clone(), self.server_name.clone())),
            cert: PeerCert::default(),
        };
        let cert = connector.cert.clone();
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move { connector.connect().await }
        }));
        channels.insert(key, (channel.clone(), cert.clone()));
        Ok((channel, cert))
    }

    fn forget(&self, target: &GrpcTarget) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&target.key());
    }

    async fn probe(&self, target: &GrpcTarget, start: Instant) -> Result<CheckResult, Failure> {
        let (channel, cert) = self.channel(target)?;
        let mut client = HealthClient::new(channel);
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: target.service.clone(),
        });
        request.set_timeout(self.timeout.saturating_sub(start.elapsed()));
        let response = match client.check(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(self.status_failure(target, &status)),
        };
        let latency = start.elapsed();
        let cert = cert.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match ServingStatus::try_from(response.status) {
            Ok(ServingStatus::Serving) => {
                Ok(CheckResult::healthy("SERVING", latency).with_cert(cert))
            }
            Ok(other) => {
                Ok(
                    CheckResult::unhealthy(CheckKind::Status, other.as_str_name(), latency)
                        .with_cert(cert),
                )
            }
            Err(_) => Err(Failure::target(
                CheckKind::Status,
                format!("grpc: unknown serving status {}", response.status),
            )),
        }
    }

    /// Classifies a failed call; a transport failure also drops the target's channel.
    fn status_failure(&self, target: &GrpcTarget, status: &Status) -> Failure {
        match status.code() {
            Code::NotFound => Failure::target(
                CheckKind::Status,
                format!("grpc: service {:?} unknown (NOT_FOUND)", target.service),
            ),
            Code::Unimplemented => Failure::target(
                CheckKind::Protocol,
                "grpc: the server has no health service (UNIMPLEMENTED)",
            ),
            Code::DeadlineExceeded => Failure::timed_out(self.timeout),
            code => {
                // A status made from a transport error carries it as its source.
                if let Some(source) = std::error::Error::source(status) {
                    self.forget(target);
                    let chain = error_chain(source);
                    if let Some(failure) = chain.iter().find_map(|e| e.downcast_ref::<Failure>()) {
                        return failure.clone();
                    }
                    // The channel enforces the call's `grpc-timeout` itself.
                    if chain.iter().any(|e| e.is::<tonic::TimeoutExpired>()) {
                        return Failure::timed_out(self.timeout);
                    }
                    return classify_chain(source).prefixed("grpc: ");
                }
                Failure::target(
                    CheckKind::Status,
                    format!("grpc: {}: {}", code_name(code), status.message()),
                )
            }
        }
    }
}

#[async_trait]
impl Probe for GrpcProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let target = self.target(url).map_err(|err| bad_url(&err))?;
        let start = Instant::now();
        match tokio::time::timeout_at(start + self.timeout, self.probe(&target, start)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(failure)) => {
                if failure.kind == CheckKind::Timeout {
                    self.forget(&target);
                }
                failure.into_outcome(start.elapsed())
            }
            Err(_) => {
                // A connection stuck in its HTTP/2 handshake would stall every later
                // call on this channel: the next check starts afresh.
                self.forget(&target);
                Failure::timed_out(self.timeout).into_outcome(start.elapsed())
            }
        }
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        self.target(url).map(drop)
    }
}

/// What the connector hands the channel: a TCP stream, TLS or not.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Makes the channel's connections: lookup, TCP connect, optional TLS handshake.
#[derive(Clone)]
struct Connector {
    host: String,
    port: u16,
    family: Family,
    timeout: Duration,
    /// The TLS config and the name to verify instead of the host, for `grpcs`.
    tls: Option<(Arc<ClientConfig>, Option<ServerName<'static>>)>,
    /// Where the latest handshake's peer certificate goes.
    cert: PeerCert,
}

impl Connector {
    async fn connect(self) -> Result<TokioIo<Pin<Box<dyn Io>>>, Failure> {
        let deadline = Instant::now() + self.timeout;
        let addrs = net::resolve(&self.host, self.port, self.family, deadline).await?;
        let tcp = net::connect_until(&addrs, deadline).await?;
        let _ = tcp.set_nodelay(true);
        let io: Pin<Box<dyn Io>> = match &self.tls {
            Some((config, name)) => {
                let tls = crate::tls::handshake_as(config.clone(), &self.host, name.as_ref(), tcp)
                    .await?;
                *self.cert.lock().unwrap_or_else(PoisonError::into_inner) =
                    crate::tls::peer_cert(&tls);
                Box::pin(tls)
            }
            None => Box::pin(tcp),
        };
        Ok(TokioIo::new(io))
    }
}

/// The TLS config of `grpcs` checks, from `tls_verify` and the `tls` table; ALPN `h2`.
fn tls_config(config: &HealthCheckConfig) -> Result<ClientConfig, ConfigError> {
    use health_types::tls::{ClientAuth, Trust, client_config, load_roots};

    let file_error = |err: health_types::tls::TlsError| ConfigError::Invalid {
        key: "tls",
        value: "(a grpcs client config)".to_owned(),
        reason: err.to_string(),
    };
    let trust = match (config.tls_verify, &config.tls.ca) {
        (false, _) => Trust::AnyCertificate,
        (true, None) => Trust::SystemRoots,
        (true, Some(ca)) => Trust::Roots(Arc::new(load_roots(ca).map_err(file_error)?)),
    };
    let auth = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(ClientAuth::load(cert, key).map_err(file_error)?),
        _ => None,
    };
    client_config(&trust, &[b"h2"], auth).map_err(file_error)
}

/// The canonical name of a gRPC status code (`NOT_FOUND`).
fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut name = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<GrpcTarget, String> {
        GrpcProbe::try_new(&HealthCheckConfig::default())
            .unwrap()
            .target(&Url::parse(url).unwrap())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn grpc_urls_need_a_port_and_name_a_service() {
        let t = target("grpc://127.0.0.1:50051").unwrap();
        assert_eq!((t.tls, t.port, t.service.as_str()), (false, 50051, ""));
        let t = target("grpcs://[::1]:443/pkg.Svc").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.service.as_str()),
            (true, "::1", "pkg.Svc")
        );
        assert!(target("grpc://h").unwrap_err().contains("port"));
        assert!(target("grpc://h:1/?x=1").unwrap_err().contains("no query"));
        assert!(
            Url::parse("grpc://:1").is_err(),
            "the URL parser rejects an empty host"
        );
        assert!(target("grpc:///svc").unwrap_err().contains("no host"));
    }

    #[test]
    fn codes_have_their_canonical_names() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
    }
}
