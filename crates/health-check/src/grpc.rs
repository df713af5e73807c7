//! The gRPC health probe (`grpc://host:port[/service]`, `grpcs://…`, SPEC §9.4): the
//! standard `grpc.health.v1.Health/Check` call on a tonic client channel (feature
//! `grpc`).
//!
//! The channel's connections come from this crate's own connector: the shared resolver,
//! a TCP connect honouring `ip_family`, and for `grpcs` a rustls handshake on the ring
//! provider offering ALPN `h2`, with the HTTP probes' TLS setup ([`crate::tls`]:
//! `tls_verify`, the `tls` table, `tls.min_version`). So tonic's own TLS features (and
//! with them a second crypto provider) stay out of the build, and `tls_verify = false`
//! works as it does for HTTPS.
//!
//! Channels: one per target (`scheme://host:port`), cached in the probe. A channel is
//! connected eagerly, inside the check's deadline (`connect_with_connector`, never the
//! lazy variant), and cached only once connected. A transport error or a timeout
//! forgets it, and so does being unused for [`IDLE_EXPIRY`] (swept at the start of the
//! next check): the next check connects afresh.
//!
//! Cancel safety: a check dropped while connecting drops the connect with it (the DNS
//! lookup, the TCP connect and the TLS and HTTP/2 handshakes all run in the check's own
//! future; nothing is spawned before the connection is up). What outlives a dropped
//! check is only a connected, cached channel: tonic's buffer worker and hyper's HTTP/2
//! connection task, idle; they end when the channel is forgotten (a failed or timed-out
//! check of the target, or the sweep of a later check after [`IDLE_EXPIRY`]) or the
//! probe is dropped. A call in flight when its check is dropped is reset by hyper
//! (the stream's handle is dropped), not left running. One thing runs in a task of
//! tonic's rather than the check's: when a cached channel's connection has died, tonic
//! reconnects inside its buffer worker on the next call; that reconnect uses this
//! crate's connector, bounded by its own `timeout` deadline, so a check dropped during
//! it leaves it running for at most `timeout`.

use std::{
    collections::HashMap,
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use health_types::{
    CertInfo, CheckKind, CheckResult, ConfigError, HealthCheckConfig, IpFamily, Phases, Probe,
    ProbeError, Scheme, redacted, tls::rustls::pki_types::ServerName,
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

/// A cached channel unused this long is dropped by the next check (which connects
/// afresh), so no connection idles forever and a stale one is not trusted.
const IDLE_EXPIRY: Duration = Duration::from_secs(60);
/// The largest health response message decoded: a `HealthCheckResponse` is a few bytes,
/// so a hostile server cannot make the check buffer more.
const MAX_RESPONSE: usize = 4 * 1024;
/// The largest header list (status, `grpc-message`) accepted from the server.
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// How much of a server's status message goes into a detail.
const MESSAGE_SHOWN: usize = 200;

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
/// | status `DEADLINE_EXCEEDED` from the server | unhealthy | `timeout` | `grpc: the server says the deadline was exceeded (DEADLINE_EXCEEDED): <message>` |
/// | another status | unhealthy | `status` | `grpc: <CODE>: <message>` (the message cut at 200 characters) |
/// | refused, reset, TLS failure, not HTTP/2 | unhealthy | `refused`, `reset`, `tls`, `protocol` | as for HTTP |
/// | no answer within `timeout` | unhealthy | `timeout` | `timed out after 10s` |
///
/// `grpcs` verifies the server's certificate when `tls_verify` is true (against
/// `tls.ca` when given, else the system and webpki roots), sends `tls.cert`/`tls.key`
/// when the server asks, names `tls.server_name` (default: the URL's host) by SNI and
/// accepts `tls.min_version` and later. `tls.ca` is read even without `tls_verify`: a
/// wrong path is a config error naming `tls.ca` and the file.
///
/// Every `grpcs` result that got an answer from the server (healthy, or unhealthy by
/// its status) carries the server's leaf certificate (as of the channel's handshake),
/// so a certificate's expiry is seen while the service is down. Phases: `dns`,
/// `connect` and `tls` when the check opened the channel's connection, `first_byte`
/// the call.
///
/// The response message is bounded (4 KiB) and so is the server's header list (16 KiB);
/// see the module docs for the channel cache and cancel safety.
#[derive(Clone)]
pub struct GrpcProbe {
    timeout: Duration,
    ip_family: IpFamily,
    /// The TLS config of `grpcs` targets.
    tls: Arc<ClientConfig>,
    /// `tls.server_name`, instead of the URL's host.
    server_name: Option<ServerName<'static>>,
    /// Connected channels by target (`scheme://host:port`).
    channels: Arc<Mutex<HashMap<String, Cached>>>,
}

/// A connected channel, what its connections saw, and when a check last used it.
#[derive(Clone)]
struct Cached {
    channel: Channel,
    seen: Seen,
    used: Instant,
}

/// What the connector saw of a channel's connections: the certificate of the latest
/// handshake, and the phases of a connection not yet reported by a check.
type Seen = Arc<Mutex<ConnSeen>>;

#[derive(Default)]
struct ConnSeen {
    cert: Option<Arc<CertInfo>>,
    phases: Option<Phases>,
}

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
    /// Fails when `config` is invalid or a `tls` file cannot be read (the error names
    /// the key and the file).
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let setup = crate::tls::client_setup(config, &[b"h2"], None)?;
        Ok(GrpcProbe {
            timeout: config.timeout,
            ip_family: config.ip_family,
            tls: setup.own,
            server_name: setup.server_name,
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
        if let Some(ip) = net::ip_literal(&host) {
            net::check_family(url, ip, self.ip_family)?;
        }
        let service = url.path().trim_start_matches('/').to_owned();
        Ok(GrpcTarget {
            tls: scheme == Scheme::Grpcs,
            host,
            port,
            service,
        })
    }

    /// The cached channel of `target` (marked used now), after dropping every channel
    /// idle for [`IDLE_EXPIRY`].
    fn cached(&self, target: &GrpcTarget, now: Instant) -> Option<(Channel, Seen)> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.retain(|_, cached| now.saturating_duration_since(cached.used) < IDLE_EXPIRY);
        let cached = channels.get_mut(&target.key())?;
        cached.used = now;
        Some((cached.channel.clone(), cached.seen.clone()))
    }

    /// A new channel to `target`, connected (inside the caller's deadline) and cached.
    async fn connect(&self, target: &GrpcTarget) -> Result<(Channel, Seen), Failure> {
        // Always `http://`: the connector does TLS itself, and tonic refuses an `https`
        // URI without a TLS feature of its own.
        let host = match net::ip_literal(&target.host) {
            Some(ip) if ip.is_ipv6() => format!("[{ip}]"),
            _ => target.host.clone(),
        };
        let endpoint = Endpoint::from_shared(format!("http://{host}:{}", target.port))
            .map_err(|err| Failure::checker(CheckKind::Config, format!("grpc: {err}")))?
            .tcp_nodelay(true)
            .http2_max_header_list_size(MAX_HEADER_LIST);
        let connector = Connector {
            host: target.host.clone(),
            port: target.port,
            family: self.ip_family.into(),
            timeout: self.timeout,
            tls: target
                .tls
                .then(|| (self.tls.clone(), self.server_name.clone())),
            seen: Seen::default(),
        };
        let seen = connector.seen.clone();
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let connector = connector.clone();
                async move { connector.connect().await }
            }))
            .await
            .map_err(|err| transport_failure(&err, self.timeout))?;
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                target.key(),
                Cached {
                    channel: channel.clone(),
                    seen: seen.clone(),
                    used: Instant::now(),
                },
            );
        Ok((channel, seen))
    }

    fn forget(&self, target: &GrpcTarget) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&target.key());
    }

    async fn probe(&self, target: &GrpcTarget, start: Instant) -> Result<CheckResult, Failure> {
        let (channel, seen) = match self.cached(target, start) {
            Some(cached) => cached,
            None => self.connect(target).await?,
        };
        let mut client = HealthClient::new(channel).max_decoding_message_size(MAX_RESPONSE);
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: target.service.clone(),
        });
        request.set_timeout(self.timeout.saturating_sub(start.elapsed()));
        let calling = Instant::now();
        let answer = client.check(request).await;
        let first_byte = calling.elapsed();
        let (cert, phases) = {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            (seen.cert.clone(), seen.phases.take().unwrap_or_default())
        };
        let phases = Phases {
            first_byte: Some(first_byte),
            ..phases
        };
        let latency = start.elapsed();
        let response = match answer {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let (kind, detail) = self.status_verdict(target, &status)?;
                return Ok(CheckResult::unhealthy(kind, detail, latency)
                    .with_cert(cert)
                    .with_phases(phases));
            }
        };
        let result = match ServingStatus::try_from(response.status) {
            Ok(ServingStatus::Serving) => CheckResult::healthy("SERVING", latency),
            Ok(other) => CheckResult::unhealthy(CheckKind::Status, other.as_str_name(), latency),
            Err(_) => CheckResult::unhealthy(
                CheckKind::Status,
                format!("grpc: unknown serving status {}", response.status),
                latency,
            ),
        };
        Ok(result.with_cert(cert).with_phases(phases))
    }

    /// The verdict on a status the server answered (kind and detail), or the failure of
    /// a call that did not get that far: a transport failure, which also drops the
    /// target's channel.
    fn status_verdict(
        &self,
        target: &GrpcTarget,
        status: &Status,
    ) -> Result<(CheckKind, String), Failure> {
        // A status made from a transport error (or tonic's own timeout) carries it as
        // its source; a status the server sent has none.
        if let Some(source) = std::error::Error::source(status) {
            self.forget(target);
            return Err(source_failure(source, self.timeout));
        }
        let message = health_types::truncate(status.message(), MESSAGE_SHOWN);
        Ok(match status.code() {
            Code::NotFound => (
                CheckKind::Status,
                format!("grpc: service {:?} unknown (NOT_FOUND)", target.service),
            ),
            Code::Unimplemented => (
                CheckKind::Protocol,
                "grpc: the server has no health service (UNIMPLEMENTED)".to_owned(),
            ),
            Code::DeadlineExceeded => (
                CheckKind::Timeout,
                format!(
                    "grpc: the server says the deadline was exceeded (DEADLINE_EXCEEDED): {message}"
                ),
            ),
            code => (
                CheckKind::Status,
                format!("grpc: {}: {message}", code_name(code)),
            ),
        })
    }
}

/// The failure a transport error (from connecting, or under a call) stands for.
fn source_failure(source: &(dyn std::error::Error + 'static), timeout: Duration) -> Failure {
    let chain = error_chain(source);
    if let Some(failure) = chain.iter().find_map(|e| e.downcast_ref::<Failure>()) {
        return failure.clone();
    }
    // The channel enforces the call's `grpc-timeout` itself.
    if chain.iter().any(|e| e.is::<tonic::TimeoutExpired>()) {
        return Failure::timed_out(timeout);
    }
    let mut failure = classify_chain(source);
    if failure.kind != CheckKind::Local {
        failure.detail = format!("grpc: {}", failure.detail);
    }
    failure
}

/// The failure of a channel that could not be connected.
fn transport_failure(err: &tonic::transport::Error, timeout: Duration) -> Failure {
    source_failure(err, timeout)
}

#[async_trait]
impl Probe for GrpcProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let target = self.target(url).map_err(|err| bad_url(&err))?;
        let start = Instant::now();
        match tokio::time::timeout_at(start + self.timeout, self.probe(&target, start)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(failure)) => {
                self.forget(&target);
                failure.into_outcome(start.elapsed())
            }
            Err(_) => {
                // A connection stuck in its HTTP/2 handshake or call would stall every
                // later call on this channel: the next check starts afresh.
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
    /// Where the latest handshake's peer certificate and the phases go.
    seen: Seen,
}

impl Connector {
    async fn connect(self) -> Result<TokioIo<Pin<Box<dyn Io>>>, Failure> {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut phases = Phases::default();
        let addrs = net::resolve(&self.host, self.port, self.family, deadline).await?;
        if net::ip_literal(&self.host).is_none() {
            phases.dns = Some(start.elapsed());
        }
        let connecting = Instant::now();
        let tcp = net::connect_until(&addrs, deadline).await?;
        phases.connect = Some(connecting.elapsed());
        let _ = tcp.set_nodelay(true);
        let (io, cert): (Pin<Box<dyn Io>>, _) = match &self.tls {
            Some((config, name)) => {
                let handshaking = Instant::now();
                let tls = crate::tls::handshake_as(config.clone(), &self.host, name.as_ref(), tcp)
                    .await?;
                phases.tls = Some(handshaking.elapsed());
                let cert = crate::tls::peer_cert(&tls);
                (Box::pin(tls), cert)
            }
            None => (Box::pin(tcp), None),
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.cert = cert;
        seen.phases = Some(phases);
        Ok(TokioIo::new(io))
    }
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

    #[tokio::test]
    async fn a_channel_unused_for_a_minute_is_dropped_by_the_next_check() {
        let probe = GrpcProbe::try_new(&HealthCheckConfig::default()).unwrap();
        let target = target("grpc://127.0.0.1:50051/x").unwrap();
        let channel = Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
        let used = Instant::now();
        probe.channels.lock().unwrap().insert(
            target.key(),
            Cached {
                channel,
                seen: Seen::default(),
                used,
            },
        );
        // Used within the minute: kept, and marked used again.
        let later = used + IDLE_EXPIRY - Duration::from_secs(1);
        assert!(probe.cached(&target, later).is_some());
        assert!(probe.cached(&target, later + IDLE_EXPIRY / 2).is_some());
        // A minute after its last use: gone, so the check connects afresh.
        assert!(probe.cached(&target, later + IDLE_EXPIRY * 2).is_none());
        assert!(probe.channels.lock().unwrap().is_empty());
    }

    #[test]
    fn codes_have_their_canonical_names() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
    }
}
