//! `healthd agent`: serves GoDoxy's agent protocol (SPEC §5, "Agent server"), so that a
//! healthd elsewhere can check targets only this host can reach.
//!
//! `GET /godoxy/agent/health?scheme=&host=&path=&timeout=<ms>&method=` runs one probe and
//! answers `200 application/json {"healthy","detail","latency"(ns),"kind"}`; a check that
//! could not be carried out answers `502` with the error as plain text; a bad request
//! answers `400` with the reason as plain text. With `--cert`/`--key` it serves HTTPS;
//! with `--client-ca` it also requires and verifies client certificates.
//!
//! What a client may make the agent check is its [`AgentPolicy`] (SPEC §9.3): a target
//! outside every `--allow` entry, or a file outside `--file-root` (any file without it),
//! is refused with `403` and the reason as plain text; no check runs longer than 60 s.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    path::{Component, Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use health_check::AGENT_HEALTH_PATH;
use health_types::{
    ErrorChain, HealthCheckConfig, Scheme, Url,
    tls::{TlsError, rustls::ServerConfig, server_config},
    unsupported_reason,
};
use ipnet::IpNet;
use tokio::{net::TcpListener, time::Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{
    daemon::shutdown_signal,
    probe::check_url,
    server::{self, Limits},
};

/// Timeout used when the request gives none (or zero, or garbage).
const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest check a request may ask for (SPEC §9.3): a larger `timeout` is clamped to
/// it, so that no request holds a connection and a probe for longer.
const MAX_AGENT_TIMEOUT: Duration = Duration::from_secs(60);
/// GoDoxy's name for a file check, besides our `file`.
const FILESERVER: &str = "fileserver";
/// The schemes the agent checks: every one of [`Scheme::ALL`] but `dns`, whose question
/// (a name, `type`, `expect`, `rcode`) the agent protocol has no parameters for; in
/// `ALL`'s order, which error messages list.
const AGENT_SCHEMES: [Scheme; 13] = [
    Scheme::Http,
    Scheme::Https,
    Scheme::H2c,
    Scheme::Tcp,
    Scheme::Tcp4,
    Scheme::Tcp6,
    Scheme::Udp,
    Scheme::Udp4,
    Scheme::Udp6,
    Scheme::File,
    Scheme::Icmp,
    Scheme::Grpc,
    Scheme::Grpcs,
];
/// The start of the line printed when the agent listens on a non-loopback address
/// without client certificates (SPEC §9.3).
const NO_CLIENT_CA_WARNING: &str = "warning: agent without client certificates";

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The TLS files could not be used.
    #[error("tls")]
    Tls(#[from] TlsError),
    /// `--file-root` is not an existing directory.
    #[error("cannot use --file-root {}", path.display())]
    FileRoot {
        /// The directory as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One `--allow` entry (SPEC §9.3): a network, one address, or one host name.
///
/// Parsed from `10.0.0.0/8`, `fd00::/8` (CIDR), `192.0.2.7` or `::1` (one address, its own
/// /32 or /128) or `nas.lan` (a host name, compared case-insensitively with the `host` of
/// a request as written, without resolving it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowEntry(Allowed);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Allowed {
    /// Targets whose addresses all lie in this network.
    Net(IpNet),
    /// Targets named exactly this (ASCII lower-case) host name.
    Host(String),
}

/// An `--allow` value that is neither a network, an address nor a host name.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a network (10.0.0.0/8, fd00::/8), an address or a host name")]
pub struct AllowEntryError {
    value: String,
    #[source]
    source: Option<ipnet::AddrParseError>,
}

impl FromStr for AllowEntry {
    type Err = AllowEntryError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |source| AllowEntryError {
            value: value.to_owned(),
            source,
        };
        if value.contains('/') {
            return value
                .parse::<IpNet>()
                .map(|net| AllowEntry(Allowed::Net(net)))
                .map_err(|e| error(Some(e)));
        }
        if let Some(ip) = ip_literal(value) {
            return Ok(AllowEntry(Allowed::Net(IpNet::from(ip))));
        }
        if is_host_name(value) {
            return Ok(AllowEntry(Allowed::Host(value.to_ascii_lowercase())));
        }
        Err(error(None))
    }
}

/// The address `host` stands for when it is an IP literal (IPv6 with or without brackets).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// A DNS host name: dot-separated labels of 1–63 letters, digits, `-` or `_`, at most 253
/// characters, the last label not all digits (so `10.0.0.256` is a typo, not a name).
fn is_host_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    name.len() <= 253
        && name.split('.').all(label_ok)
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

/// What a client of the agent may make it check (SPEC §9.3).
///
/// The default admits every network target and refuses every file check.
///
/// Network targets: with allow entries, a target is admitted when its host name equals a
/// host entry (case-insensitively, not resolved), or when every address it stands for
/// lies in a network entry. A name is resolved by the agent for that; `tcp`, `udp` (and
/// their `4`/`6` forms) and `http` checks then connect to the first address checked (an
/// `http` request keeps the name in its `Host` header), so a name that answers
/// differently the second time (DNS rebinding) cannot lead the agent elsewhere. `https`
/// and `h2c` need the name itself (TLS server name, HTTP/2 authority), so their probe
/// resolves it again.
///
/// File checks: admitted only under the file root, after resolving `..` and symbolic
/// links as the kernel does (the longest existing part of the path is canonicalized, so
/// a missing file under the root is still answered as not found).
#[derive(Clone, Debug, Default)]
pub struct AgentPolicy {
    /// Empty: every network target.
    allow: Vec<AllowEntry>,
    /// Canonical; `None`: no file check.
    file_root: Option<PathBuf>,
}

impl AgentPolicy {
    /// This policy admitting only network targets covered by `allow` (every one when it
    /// is empty).
    pub fn with_allow(mut self, allow: Vec<AllowEntry>) -> Self {
        self.allow = allow;
        self
    }

    /// This policy admitting file checks under `root`, which is canonicalized here.
    ///
    /// Fails when `root` does not exist or is not a directory.
    pub fn with_file_root(mut self, root: &Path) -> io::Result<Self> {
        let root = std::fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        self.file_root = Some(root);
        Ok(self)
    }

    /// Admits `check` or says why not (the body of a 403). A network target admitted by
    /// the addresses of its name may be pinned to the address checked (see the type's
    /// docs); the time spent resolving is taken from the check's timeout.
    async fn admit(&self, check: &mut AgentCheck) -> Result<(), String> {
        if check.scheme == Scheme::File {
            return self.admit_file(&check.url, check.config.timeout).await;
        }
        if self.allow.is_empty() {
            return Ok(());
        }
        let Some(host) = check.url.host_str().map(str::to_owned) else {
            return Err("the target has no host".to_owned());
        };
        if self.allows_name(&host) {
            return Ok(());
        }
        if let Some(ip) = ip_literal(&host) {
            return if self.allows_ip(ip) {
                Ok(())
            } else {
                Err(format!("target {host} is outside every --allow entry"))
            };
        }
        if !self.allow.iter().any(|e| matches!(e.0, Allowed::Net(_))) {
            return Err(format!("target {host} is outside every --allow entry"));
        }
        let start = Instant::now();
        let addr = self.resolve_allowed(check, &host).await?;
        check.config.timeout = check
            .config
            .timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        check.pin(&host, addr)
    }

    fn allows_name(&self, host: &str) -> bool {
        self.allow
            .iter()
            .any(|e| matches!(&e.0, Allowed::Host(name) if name.eq_ignore_ascii_case(host)))
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address reaches the IPv4 address: it is checked as that.
        let ip = ip.to_canonical();
        self.allow
            .iter()
            .any(|e| matches!(&e.0, Allowed::Net(net) if net.contains(&ip)))
    }

    /// Resolves `host` (bounded by the check's timeout) to the addresses of the check's
    /// family; every one must be allowed. Returns the first.
    async fn resolve_allowed(&self, check: &AgentCheck, host: &str) -> Result<SocketAddr, String> {
        let port = check.url.port_or_known_default().unwrap_or(0);
        let lookup = tokio::net::lookup_host((host, port));
        let found = match tokio::time::timeout(check.config.timeout, lookup).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                return Err(format!(
                    "target {host} cannot be checked against --allow: it does not resolve ({e})"
                ));
            }
            Err(_) => {
                return Err(format!(
                    "target {host} cannot be checked against --allow: its lookup timed out"
                ));
            }
        };
        let family: fn(&SocketAddr) -> bool = match check.scheme {
            Scheme::Tcp4 | Scheme::Udp4 => SocketAddr::is_ipv4,
            Scheme::Tcp6 | Scheme::Udp6 => SocketAddr::is_ipv6,
            _ => |_| true,
        };
        let addrs: Vec<SocketAddr> = found.filter(family).collect();
        if let Some(denied) = addrs.iter().find(|a| !self.allows_ip(a.ip())) {
            return Err(format!(
                "target {host} resolves to {}, which is outside every --allow entry",
                denied.ip()
            ));
        }
        addrs.first().copied().ok_or_else(|| {
            format!("target {host} cannot be checked against --allow: it resolves to no address of its family")
        })
    }

    /// Admits a file check when the file root holds the path the probe will look up.
    async fn admit_file(&self, url: &Url, timeout: Duration) -> Result<(), String> {
        let Some(root) = self.file_root.clone() else {
            return Err("file checks are refused: the agent runs without --file-root".to_owned());
        };
        let path = url
            .to_file_path()
            .map_err(|()| "`path` is not a local absolute path".to_owned())?;
        let shown = path.display().to_string();
        let resolve = tokio::task::spawn_blocking(move || real_path(&path));
        match tokio::time::timeout(timeout, resolve).await {
            Ok(Ok(Some(real))) if real.starts_with(&root) => Ok(()),
            Err(_) => Err(format!(
                "`path` = {shown:?} cannot be checked against --file-root: it timed out"
            )),
            _ => Err(format!("`path` = {shown:?} is outside --file-root")),
        }
    }
}

/// `path` with `..` and symbolic links resolved as the kernel would: its longest existing
/// ancestor canonicalized, then the rest of it. `None` when that rest is not plain names
/// (a `..` after a missing directory is left to no one).
fn real_path(path: &Path) -> Option<PathBuf> {
    let (ancestor, real) = path
        .ancestors()
        .find_map(|a| std::fs::canonicalize(a).ok().map(|real| (a, real)))?;
    let rest = path.strip_prefix(ancestor).ok()?;
    rest.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| real.join(rest))
}

fn bad_request(reason: impl Into<String>) -> Response {
    plain(StatusCode::BAD_REQUEST, reason.into())
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The check one agent request asks for.
#[derive(Debug)]
struct AgentCheck {
    /// `File` for `file` and `fileserver`.
    scheme: Scheme,
    url: Url,
    config: HealthCheckConfig,
}

impl AgentCheck {
    /// The check of a request's parameters, or the reason for a 400.
    fn parse(params: &HashMap<String, String>) -> Result<Self, String> {
        let scheme = params
            .get("scheme")
            .filter(|s| !s.is_empty())
            .ok_or("missing `scheme`")?
            .as_str();
        let timeout = params
            .get("timeout")
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map_or(DEFAULT_AGENT_TIMEOUT, |ms| {
                Duration::from_millis(ms).min(MAX_AGENT_TIMEOUT)
            });
        let mut config = HealthCheckConfig {
            timeout,
            ..Default::default()
        };
        if let Some(method) = params.get("method").filter(|m| !m.is_empty()) {
            config.method = method.parse().map_err(|e| ErrorChain(&e).to_string())?;
        }
        if scheme == FILESERVER || scheme == Scheme::File.as_str() {
            let path = params
                .get("path")
                .filter(|p| !p.is_empty())
                .ok_or("missing `path`")?;
            let url = Url::from_file_path(path)
                .map_err(|()| format!("invalid `path` = {path:?}: must be absolute"))?;
            return Ok(AgentCheck {
                scheme: Scheme::File,
                url,
                config,
            });
        }
        let Some(scheme) = scheme
            .parse::<Scheme>()
            .ok()
            .filter(|s| AGENT_SCHEMES.contains(s))
        else {
            // Every scheme the agent checks, and GoDoxy's `fileserver`.
            return Err(format!(
                "{}, {FILESERVER}",
                unsupported_reason(scheme, &AGENT_SCHEMES)
            ));
        };
        let host = params
            .get("host")
            .filter(|h| !h.is_empty())
            .ok_or("missing `host`")?;
        // Only `host[:port]`: anything that would make the URL built around it carry a
        // path, query, fragment or user of the client's choosing is refused.
        if host.contains(|c: char| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        }) {
            return Err(format!(
                "invalid `host` = {host:?}: expected host[:port] (IPv6 in brackets)"
            ));
        }
        let base = if scheme.is_http() { "/" } else { "" };
        let mut url = Url::parse(&format!("{scheme}://{host}{base}"))
            .map_err(|e| format!("invalid `host` = {host:?}: {e}"))?;
        if let Some(path) = params.get("path").filter(|p| !p.is_empty()) {
            let path = if path.starts_with('/') {
                path.clone()
            } else {
                format!("/{path}")
            };
            // A gRPC check's path is its service name, which its probe reads from the
            // URL; everywhere else it is the config's `path`.
            if scheme.is_grpc() {
                url.set_path(&path);
            } else {
                config.path = path;
            }
        }
        Ok(AgentCheck {
            scheme,
            url,
            config,
        })
    }

    /// Points the check at `addr`, the address its host name `host` was checked at, where
    /// the protocol allows it: the stream schemes connect to it; `http` connects to it
    /// and sends the name as `Host`; `https`, `h2c` and `grpcs` keep the name (see
    /// [`AgentPolicy`]).
    fn pin(&mut self, host: &str, addr: SocketAddr) -> Result<(), String> {
        if matches!(self.scheme, Scheme::Https | Scheme::H2c | Scheme::Grpcs) {
            return Ok(());
        }
        if self.scheme == Scheme::Http {
            let authority = match self.url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            self.config
                .headers
                .insert(header::HOST.as_str().to_owned(), authority);
        }
        self.url
            .set_ip_host(addr.ip())
            .map_err(|()| format!("target {host} cannot be pinned to {}", addr.ip()))
    }
}

async fn health(
    State(policy): State<Arc<AgentPolicy>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut check = match AgentCheck::parse(&params) {
        Ok(check) => check,
        Err(reason) => return bad_request(reason),
    };
    if let Err(reason) = policy.admit(&mut check).await {
        return plain(StatusCode::FORBIDDEN, reason);
    }
    match check_url(&check.config, &check.url).await {
        Err(e) => bad_request(ErrorChain(&e).to_string()),
        Ok(Ok(result)) => axum::Json(result).into_response(),
        Ok(Err(e)) => plain(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// The agent's router, checking what `policy` admits.
fn router(policy: Arc<AgentPolicy>) -> Router {
    Router::new()
        .route(AGENT_HEALTH_PATH, get(health))
        .with_state(policy)
}

/// Serves the agent protocol on `listener` until `stop` is cancelled, over TLS when
/// `tls` is set (`health_types::tls::server_config` builds one from PEM files), checking
/// what `policy` admits, under the limits of every healthd server (SPEC §9.3: header and
/// idle timeouts, at most 512 connections).
pub async fn serve_agent(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    policy: AgentPolicy,
    stop: CancellationToken,
) -> io::Result<()> {
    server::serve(
        listener,
        tls.map(TlsAcceptor::from),
        router(Arc::new(policy)),
        Limits::default(),
        stop,
    )
    .await;
    Ok(())
}

/// `healthd agent`: serves until SIGINT or SIGTERM.
pub(crate) async fn serve_until_signal(
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    allow: Vec<AllowEntry>,
    file_root: Option<PathBuf>,
) -> Result<(), AgentError> {
    let mut policy = AgentPolicy::default().with_allow(allow);
    if let Some(root) = file_root {
        policy = policy
            .with_file_root(&root)
            .map_err(|source| AgentError::FileRoot { path: root, source })?;
    }
    let tls = match (&cert, &key) {
        (Some(cert), Some(key)) => Some(Arc::new(server_config(cert, key, client_ca.as_deref())?)),
        _ => None,
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(listen);
    println!(
        "healthd agent: {}://{addr}{AGENT_HEALTH_PATH}{}",
        if tls.is_some() { "https" } else { "http" },
        if client_ca.is_some() {
            " (client certificates required)"
        } else {
            ""
        }
    );
    if client_ca.is_none() && !addr.ip().to_canonical().is_loopback() {
        println!("{}", no_client_ca_warning(addr, &policy));
    }
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve_agent(listener, tls, policy, stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    Ok(())
}

/// The warning line of an agent on `addr` without client certificates.
fn no_client_ca_warning(addr: SocketAddr, policy: &AgentPolicy) -> String {
    let targets = if policy.allow.is_empty() {
        "any target (no --allow)"
    } else {
        "the targets --allow admits"
    };
    format!(
        "{NO_CLIENT_CA_WARNING}: any client that reaches {addr} can make this host check \
         {targets}; require certificates with --cert, --key and --client-ca"
    )
}

#[cfg(test)]
mod tests;
