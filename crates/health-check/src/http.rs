//! HTTP, HTTPS and H2C probes on a pooled keep-alive client (SPEC §5): HTTP/1.1 on our own
//! small exchange (see `h1`), HTTP/2 on hyper.
//!
//! One [`HttpClient`] holds two keep-alive pools: HTTP/1.1 with HTTP/2 by ALPN over TLS
//! (`http://`, `https://`), and HTTP/2 with prior knowledge over cleartext (`h2c://`).
//! Probes built with [`HttpProbe::try_with_client`] and [`H2cProbe::try_with_client`]
//! share them.
//!
//! # Credentials
//!
//! A URL's user information (`http://admin:s3cret@host/`) is sent as
//! `Authorization: Basic base64(user:password)` (both percent-decoded), unless the
//! config's `headers` carry an `Authorization` of their own; it never goes into the
//! request target or `Host`. Details and errors show such a URL with its password as
//! `***` ([`health_types::redacted`]).
//!
//! # A body cut short
//!
//! A response whose status arrived but whose body was cut short (the connection closed
//! or was reset before `Content-Length` bytes or the last chunk; an HTTP/2 stream reset
//! after the headers) is judged by its status, like any other: the server did answer.
//! The detail says so: `HTTP 200 OK (body cut short: connection closed)`. The connection
//! is not reused. A body that breaks the framing (a bad chunk) is a `protocol` failure,
//! and one that is still arriving at the deadline a `timeout`. Assertions on the body
//! judge what arrived.
//!
//! # Assertions (SPEC §9.4)
//!
//! `header_match`, `body_match`, `body_not_match` and `json` are compiled once, when the
//! probe is built (see `assert`), and judged only when the status passed. A plain check
//! keeps nothing of its answer: the body is kept (at most [`MAX_BODY_DRAIN`] bytes) only
//! when a body or JSON assertion needs it, and only the asserted headers are copied out
//! of the head.
//!
//! # Redirects
//!
//! With `follow_redirects`, a 3xx (but 304) with a `Location` that resolves to an `http`
//! or `https` URL (or `h2c` for an `h2c` check) is followed with the same method, at
//! most [`MAX_REDIRECTS`] times, every hop inside the check's one `timeout`; one more is
//! unhealthy `too many redirects (10)` (kind `status`). The location's path is sent as
//! it is (the configured `path` applies to the first request only). A 3xx without a
//! usable `Location` is judged by its status. The final answer's detail says how it was
//! reached: `HTTP 200 OK (after 2 redirects)`.
//!
//! What a hop gets depends on where it goes, compared with the configured URL:
//!
//! - Same origin (scheme, host and port, the scheme's default port if none): the URL's
//!   credentials (`user:pass@` as `Basic`), every configured header, and the pool.
//! - Another origin (another host, another port, or `https` to `http`): no credentials,
//!   and the configured `Authorization`, `Cookie`, `Proxy-Authorization` (any case) and
//!   `Host` are left out, the hop's own authority going as `Host` (`:authority` on
//!   HTTP/2), on HTTP/1 and HTTP/2 alike. Its connection is used once and closed, never
//!   pooled (an HTTP/2 one's driver task ends with it), so an upstream that redirects to
//!   a fresh authority on every check leaves nothing behind.
//! - Another host: `tls.server_name` and the client certificate (`tls.cert`, `tls.key`)
//!   do not apply either; the hop is verified against its own name, and no client
//!   certificate is offered.
//!
//! # Phases, status code and certificate
//!
//! A result carries its [`Phases`] on the monotonic clock: `dns` (none for an IP
//! literal), `connect` (the address that accepted, after any fallback), `tls` (the
//! handshake) and `first_byte` (request written to the first byte of the answer). A
//! pooled connection skips the first three. Redirects report the last hop's phases;
//! the latency runs from the start of the check. Every answer sets `status_code`. Over
//! TLS, the peer's leaf certificate ([`CertInfo`]: `not_after`, subject, serial) is
//! parsed once per connection, kept with it in the pool, and put in every result on
//! it, unhealthy ones included; a failed handshake has none.

use std::{error::Error as StdError, fmt::Write as _, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use health_types::{
    CertInfo, CheckKind, CheckResult, ConfigError, HealthCheckConfig, IpFamily, Method, Phases,
    Probe, ProbeError, Scheme, TlsOptions, redacted, unsupported_scheme,
};
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri,
    header::{
        ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CACHE_CONTROL, COOKIE, HOST, LOCATION,
        PROXY_AUTHORIZATION, USER_AGENT,
    },
    uri::PathAndQuery,
};
use http_body_util::BodyExt;
use http_body_util::Empty;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tokio::time::Instant;
use url::Url;

use self::{
    assert::Assertions,
    h1::{Capture, ExchangeError, Kept},
    pool::{Conn, Connector, H2, Pool, Sender},
};
use crate::{
    failure::{Failure, bad_url, classify_chain, classify_stream_io, error_chain},
    net::{self, USER_AGENT_VALUE, ip_literal, join_path},
};

mod assert;
pub(crate) mod h1;
mod pool;

/// The most redirects a check with `follow_redirects` follows; one more is unhealthy
/// (`too many redirects (10)`).
pub const MAX_REDIRECTS: usize = 10;

/// The `Accept` header of every HTTP check.
const ACCEPT_VALUE: &str = "text/plain,text/html,*/*;q=0.8";
/// How much of a response body is read before the connection is dropped.
pub const MAX_BODY_DRAIN: usize = 64 * 1024;

/// Options of an [`HttpClient`] beyond the [`HealthCheckConfig`] keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// A PEM file of CA certificates trusted in addition to the system and webpki roots
    /// when `tls_verify` is on and the config's `tls.ca` is not set (which replaces
    /// those roots). Default: none. Needs the `tls` feature.
    pub ca_file: Option<PathBuf>,
}

/// A pooled keep-alive HTTP client shared by the HTTP and H2C probes of one config.
///
/// Cheap to clone: clones share the pools. The connection settings (`tls_verify`, the
/// `tls` table, the extra CA, `ip_family`) are fixed when the client is built; a probe
/// of a config that asks for others cannot share it.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    tls_verify: bool,
    tls: TlsOptions,
    ip_family: IpFamily,
    /// HTTP/1.1, or HTTP/2 when TLS negotiates it by ALPN.
    auto: Pool,
    /// HTTP/2 with prior knowledge (h2c).
    h2c: Pool,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("tls_verify", &self.inner.tls_verify)
            .field("tls", &self.inner.tls)
            .field("ip_family", &self.inner.ip_family)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the pools and the connection setup for `config` (`tls_verify`, `tls`,
    /// `ip_family`) and `options`.
    ///
    /// Fails when a TLS file (CA, client certificate or key) cannot be read, naming it,
    /// or when one is named without the `tls` feature.
    pub fn try_new(
        config: &HealthCheckConfig,
        options: &HttpClientConfig,
    ) -> Result<Self, ConfigError> {
        let connector = Connector::try_new(config, options)?;
        Ok(HttpClient {
            inner: Arc::new(ClientInner {
                tls_verify: config.tls_verify,
                tls: config.tls.clone(),
                ip_family: config.ip_family,
                auto: Pool::new(connector.clone(), false),
                h2c: Pool::new(connector, true),
            }),
        })
    }

    /// Whether this client verifies server certificates.
    pub fn tls_verify(&self) -> bool {
        self.inner.tls_verify
    }

    /// A client whose `https` connections use `tls` (its trust, client certificate and
    /// ALPN), for a probe that asks another party (an agent).
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(tls: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        let connector = Connector::with_tls(tls);
        HttpClient {
            inner: Arc::new(ClientInner {
                tls_verify: true,
                tls: TlsOptions::default(),
                ip_family: IpFamily::Any,
                auto: Pool::new(connector.clone(), false),
                h2c: Pool::new(connector, true),
            }),
        }
    }
}

/// `GET`s of whole URLs on one client's keep-alive pool that keep the answer's body (at
/// most [`MAX_BODY_DRAIN`]): how the agent probe asks its agent, over the same
/// connector, pool and HTTP/1.1 exchange as an HTTP check.
#[derive(Clone, Debug)]
pub(crate) struct Fetcher {
    client: HttpClient,
    spec: RequestSpec,
}

impl Fetcher {
    /// Fetches with `client`, accepting `accept`.
    pub(crate) fn new(client: HttpClient, accept: &'static str) -> Self {
        Fetcher {
            client,
            spec: RequestSpec::fetch(accept),
        }
    }

    /// `GET url` (path and query as they are), its name looked up until `deadline`. A
    /// pooled connection the server closed while idle is replaced once, as for a check.
    pub(crate) async fn get(&self, url: &Url, deadline: Instant) -> Result<Answer, Failure> {
        let config = |err: ConfigError| Failure::checker(CheckKind::Config, err.to_string());
        let scheme = http_scheme(url).map_err(config)?;
        let target = self.spec.target(url, scheme).map_err(config)?;
        self.spec
            .exchange(&self.client.inner.auto, &target, Instant::now(), deadline)
            .await
    }
}

/// Defines an HTTP-speaking probe type: a request spec and a client, and the
/// constructors both probe types have.
macro_rules! http_probe {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            spec: RequestSpec,
            client: HttpClient,
        }

        impl $name {
            /// A probe with its own [`HttpClient`] (default [`HttpClientConfig`]).
            ///
            /// Fails when `config` is invalid.
            pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
                let client = HttpClient::try_new(config, &HttpClientConfig::default())?;
                Self::try_with_client(config, client)
            }

            /// A probe that shares `client`'s connection pools.
            ///
            /// Fails when `config` is invalid or asks for other TLS settings than the
            /// client's.
            pub fn try_with_client(
                config: &HealthCheckConfig,
                client: HttpClient,
            ) -> Result<Self, ConfigError> {
                Ok($name {
                    spec: RequestSpec::try_new(config, &client)?,
                    client,
                })
            }

            /// The client this probe sends its requests with.
            pub fn client(&self) -> &HttpClient {
                &self.client
            }
        }
    };
}

http_probe! {
    /// Checks `http://` and `https://` targets (SPEC §5).
    ///
    /// Sends `method` to the URL joined with `path`, with the §5 headers plus `headers`;
    /// healthy iff the status is in `expected_status` and the assertions (`header_match`,
    /// `body_match`, `body_not_match`, `json`) hold. Redirects are followed only with
    /// `follow_redirects` (at most [`MAX_REDIRECTS`]). The body is drained up to 64 KiB,
    /// then the connection is dropped. HTTPS offers HTTP/2 by ALPN. Latency is the time
    /// to the (final) response headers; the whole check, redirects included, is bounded
    /// by `timeout`. Results carry the phases, the status code and, over TLS, the peer's
    /// certificate.
    HttpProbe
}

http_probe! {
    /// Checks `h2c://` targets: HTTP/2 with prior knowledge over cleartext, with the same
    /// rules as [`HttpProbe`].
    H2cProbe
}

#[async_trait]
impl Probe for HttpProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let scheme = http_scheme(url).map_err(|err| bad_url(&err))?;
        self.spec.run(&self.client.inner, url, scheme, false).await
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        let scheme = http_scheme(url)?;
        self.spec.target(url, scheme).map(drop)
    }
}

/// The scheme of an [`HttpProbe`] URL, or why it is not one.
fn http_scheme(url: &Url) -> Result<&'static str, ConfigError> {
    match url.scheme() {
        "http" => Ok("http"),
        #[cfg(feature = "tls")]
        "https" => Ok("https"),
        _ => Err(unsupported_scheme(url, HTTP_SCHEMES)),
    }
}

/// The schemes [`HttpProbe`] checks.
#[cfg(feature = "tls")]
const HTTP_SCHEMES: &[Scheme] = &[Scheme::Http, Scheme::Https];
#[cfg(not(feature = "tls"))]
const HTTP_SCHEMES: &[Scheme] = &[Scheme::Http];

#[async_trait]
impl Probe for H2cProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        if url.scheme() != "h2c" {
            return Err(bad_url(&unsupported_scheme(url, &[Scheme::H2c])));
        }
        self.spec.run(&self.client.inner, url, "http", true).await
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        if url.scheme() != "h2c" {
            return Err(unsupported_scheme(url, &[Scheme::H2c]));
        }
        self.spec.target(url, "http").map(drop)
    }
}

/// What one probe sends and how it judges the answer.
#[derive(Clone, Debug)]
struct RequestSpec {
    config: HealthCheckConfig,
    method: http::Method,
    /// The headers of an HTTP/2 request (`Host` left out: `:authority` carries it).
    h2_headers: HeaderMap,
    /// The same headers as HTTP/1.1 header lines, `Host` left out unless configured.
    h1_headers: Vec<u8>,
    /// The headers of a request to another origin (a redirect hop): the configured
    /// `Authorization`, `Cookie`, `Proxy-Authorization` and `Host` left out.
    h2_cross: HeaderMap,
    /// The same as HTTP/1.1 header lines.
    h1_cross: Vec<u8>,
    /// A `Host` header is configured (it then replaces the URL's authority).
    host_configured: bool,
    /// An `Authorization` header is configured (it then wins over a URL's user info).
    authorization_configured: bool,
    /// A fetch ([`RequestSpec::fetch`]): the URL's path as it is, the body kept.
    fetch: bool,
    /// The assertions beyond the status, compiled.
    assertions: Assertions,
}

/// Where one check goes.
#[derive(Debug)]
struct Target<'u> {
    /// `scheme://authority`: the pool key.
    key: String,
    /// Where the authority (`host[:port]`, as in the URL) starts in `key`.
    authority_at: usize,
    /// The host to connect to: a name or an IP literal (IPv6 in brackets).
    host: &'u str,
    port: u16,
    https: bool,
    /// The request target: the URL's path joined with the configured path, and query.
    path: String,
    /// `Basic …` from the URL's user info, unless the config sets `Authorization`.
    authorization: Option<HeaderValue>,
    /// On the origin (scheme, host, port) of the configured URL: the configured
    /// credentials and headers go, and the connection is pooled. A redirect hop to
    /// another origin gets none of that (see the module docs).
    same_origin: bool,
    /// On the host of the configured URL: `tls.server_name` and the client certificate
    /// apply.
    own_host: bool,
}

impl Target<'_> {
    fn authority(&self) -> &str {
        &self.key[self.authority_at..]
    }

    /// Sets [`own_host`](Self::own_host) and [`same_origin`](Self::same_origin) of a
    /// redirect hop against the `first` target, the configured URL's: the same host (no
    /// case), and the same scheme and port (the scheme's default when none is written).
    fn compare_with(&mut self, first: &Target<'_>) {
        self.own_host = self.host.eq_ignore_ascii_case(first.host);
        self.same_origin = self.own_host && self.https == first.https && self.port == first.port;
    }
}

/// An answer: its status, the time to its head, and its body when the request keeps it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) latency: Duration,
    pub(crate) body: Kept,
    /// Why the body ended early (`connection reset`), when it did: a check's answer
    /// still counts by its status (see the module docs); a fetch fails instead.
    pub(crate) cut_short: Option<String>,
    /// The `Location` header, kept when the check follows redirects.
    location: Option<String>,
    /// The values of the asserted headers (see [`Assertions::header_names`]).
    headers: Vec<Option<String>>,
    /// How long the connection (when a new one was opened) and the answer took.
    phases: Phases,
    /// The peer's leaf certificate, over TLS.
    cert: Option<Arc<CertInfo>>,
}

/// The outcome of one attempt on one connection.
type Attempt = Result<Answer, ExchangeError>;

impl RequestSpec {
    fn try_new(config: &HealthCheckConfig, client: &HttpClient) -> Result<Self, ConfigError> {
        config.validate()?;
        if config.tls_verify != client.tls_verify() {
            return Err(ConfigError::Invalid {
                key: "tls_verify",
                value: config.tls_verify.to_string(),
                reason: "differs from the shared HTTP client's setting".to_owned(),
            });
        }
        if config.tls != client.inner.tls {
            return Err(ConfigError::Invalid {
                key: "tls",
                value: format!("{:?}", config.tls),
                reason: "differs from the shared HTTP client's setting".to_owned(),
            });
        }
        if config.ip_family != client.inner.ip_family {
            return Err(ConfigError::Invalid {
                key: "ip_family",
                value: format!("{:?}", config.ip_family.as_str()),
                reason: "differs from the shared HTTP client's setting".to_owned(),
            });
        }
        let assertions = Assertions::try_new(config)?;
        if PathAndQuery::try_from(join_path("/", None, &config.path)).is_err() {
            return Err(ConfigError::Invalid {
                key: "path",
                value: format!("{:?}", config.path),
                reason: "is not a valid request path".to_owned(),
            });
        }
        let mut h2_headers = request_headers(config)?;
        let h1_headers = header_lines(&h2_headers);
        let host_configured = h2_headers.remove(HOST).is_some();
        let authorization_configured = h2_headers.contains_key(AUTHORIZATION);
        let mut h2_cross = h2_headers.clone();
        for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
            h2_cross.remove(name);
        }
        let h1_cross = header_lines(&h2_cross);
        Ok(RequestSpec {
            config: config.clone(),
            method: match config.method {
                Method::Get => http::Method::GET,
                Method::Head => http::Method::HEAD,
            },
            h1_cross,
            h2_cross,
            h2_headers,
            h1_headers,
            host_configured,
            authorization_configured,
            fetch: false,
            assertions,
        })
    }

    /// A `GET` that sends the URL's own path and query (nothing joined), only the
    /// `User-Agent` and `accept` headers, and keeps the answer's body: how a probe asks
    /// another party (an agent) over the same transport as a check.
    fn fetch(accept: &'static str) -> Self {
        let mut h2_headers = HeaderMap::new();
        h2_headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        h2_headers.insert(ACCEPT, HeaderValue::from_static(accept));
        let h1_headers = header_lines(&h2_headers);
        RequestSpec {
            config: HealthCheckConfig::default(),
            method: http::Method::GET,
            h2_cross: h2_headers.clone(),
            h1_cross: h1_headers.clone(),
            h2_headers,
            h1_headers,
            host_configured: false,
            authorization_configured: false,
            fetch: true,
            assertions: Assertions::default(),
        }
    }

    /// Where an answer's body goes: kept for a fetch and for a check that asserts on
    /// it, thrown away (never allocated) otherwise.
    fn body(&self) -> Kept {
        Kept {
            keep: self.fetch || self.assertions.keeps_body(),
            ..Kept::default()
        }
    }

    /// Where a check of `url` goes, sent as `scheme` (`http` or `https`).
    fn target<'u>(&self, url: &'u Url, scheme: &'static str) -> Result<Target<'u>, ConfigError> {
        self.target_at(url, scheme, self.fetch)
    }

    /// Where a request to `url` goes; `as_is`: with the URL's own path and query (a
    /// fetch, a redirect's location), else with the configured `path` joined on.
    fn target_at<'u>(
        &self,
        url: &'u Url,
        scheme: &'static str,
        as_is: bool,
    ) -> Result<Target<'u>, ConfigError> {
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host,
            _ => return Err(ConfigError::url(redacted(url), "no host")),
        };
        if let Some(ip) = ip_literal(host) {
            net::check_family(url, ip, self.config.ip_family)?;
        }
        let https = scheme == "https";
        let mut key = String::with_capacity(scheme.len() + 3 + host.len() + 6);
        key.push_str(scheme);
        key.push_str("://");
        let authority_at = key.len();
        key.push_str(host);
        if let Some(port) = url.port() {
            // Writing to a String cannot fail.
            let _ = write!(key, ":{port}");
        }
        let path = if as_is {
            url[url::Position::BeforePath..url::Position::AfterQuery].to_owned()
        } else {
            join_path(url.path(), url.query(), &self.config.path)
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(ConfigError::url(
                redacted(url),
                "the request path has spaces or control characters",
            ));
        }
        Ok(Target {
            key,
            authority_at,
            host,
            port: url.port().unwrap_or(if https { 443 } else { 80 }),
            https,
            path,
            authorization: if self.authorization_configured {
                None
            } else {
                basic_authorization(url)
            },
            same_origin: true,
            own_host: true,
        })
    }

    async fn run(
        &self,
        client: &ClientInner,
        url: &Url,
        scheme: &'static str,
        h2c: bool,
    ) -> Result<CheckResult, ProbeError> {
        let start = Instant::now();
        let target = self.target(url, scheme).map_err(|err| bad_url(&err))?;
        let timeout = self.config.timeout;
        let deadline = start + timeout;
        let pool = if h2c { &client.h2c } else { &client.auto };
        let checked = async {
            let answer = self.exchange(pool, &target, start, deadline).await?;
            if self.config.follow_redirects {
                self.follow(client, url, &target, answer, h2c, start, deadline)
                    .await
            } else {
                Ok(self.verdict(&answer, 0))
            }
        };
        match tokio::time::timeout_at(deadline, checked).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(failure)) => failure.into_outcome(start.elapsed()),
            Err(_) => Failure::timed_out(timeout).into_outcome(start.elapsed()),
        }
    }

    /// Follows the redirects that start with `answer` (to `url`), at most
    /// [`MAX_REDIRECTS`], with the same method, inside the check's deadline, and judges
    /// the final answer. The URL's credentials and the sensitive configured headers go
    /// only to the URL's origin, TLS settings only to its host (see the module docs); an
    /// `h2c` check stays on h2c for `http` locations.
    #[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
    async fn follow(
        &self,
        client: &ClientInner,
        url: &Url,
        first: &Target<'_>,
        mut answer: Answer,
        h2c: bool,
        start: Instant,
        deadline: Instant,
    ) -> Result<CheckResult, Failure> {
        let mut hops = 0;
        let mut base: Option<Url> = None;
        loop {
            let Some(next) = redirect_to(&answer, base.as_ref().unwrap_or(url), h2c) else {
                return Ok(self.verdict(&answer, hops));
            };
            if hops == MAX_REDIRECTS {
                let code = answer.status.as_u16();
                return Ok(CheckResult::unhealthy(
                    CheckKind::Status,
                    format!("too many redirects ({MAX_REDIRECTS})"),
                    answer.latency,
                )
                .with_phases(answer.phases)
                .with_cert(answer.cert.clone())
                .with_status_code(code));
            }
            hops += 1;
            let (scheme, pool) = match next.scheme() {
                "https" => ("https", &client.auto),
                "h2c" => ("http", &client.h2c),
                _ if h2c => ("http", &client.h2c),
                _ => ("http", &client.auto),
            };
            answer = {
                let mut target = self.target_at(&next, scheme, true).map_err(|err| {
                    Failure::target(
                        CheckKind::Status,
                        format!("redirect to a bad location: {err}"),
                    )
                })?;
                target.compare_with(first);
                if target.authorization.is_none() && target.same_origin {
                    target.authorization = first.authorization.clone();
                }
                self.exchange(pool, &target, start, deadline).await?
            };
            base = Some(next);
        }
    }

    /// Sends the request on a pooled connection, or a new one (its name looked up until
    /// `deadline`); a pooled connection that fails before any answer (the server closed
    /// it while it was idle) is replaced by a new one once: checks are `GET` or `HEAD`,
    /// which are safe to repeat.
    async fn exchange(
        &self,
        pool: &Pool,
        target: &Target<'_>,
        start: Instant,
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        // A hop to another origin is not pooled: a redirect to a fresh authority on
        // every check must not leave a connection (or an HTTP/2 driver) behind.
        let mut pooled = target
            .same_origin
            .then(|| pool.checkout(&target.key))
            .flatten();
        loop {
            let reused = pooled.is_some();
            // A reused connection has only the answer's phase.
            let (sender, phases) = match pooled.take() {
                Some(sender) => (sender, Phases::default()),
                None => pool.connect(target, deadline).await?,
            };
            let attempt = match sender {
                Sender::H1(conn) => self.exchange_h1(pool, target, conn, start).await,
                Sender::H2(sender) => self.exchange_h2(target, sender, start).await,
            };
            match attempt {
                Err(err) if reused && err.before_answer => {
                    tracing::debug!(key = target.key, failure = %err.failure, "pooled connection failed; retrying on a new one");
                }
                Err(err) => return Err(err.failure),
                Ok(mut answer) => {
                    answer.phases.dns = phases.dns;
                    answer.phases.connect = phases.connect;
                    answer.phases.tls = phases.tls;
                    return Ok(answer);
                }
            }
        }
    }

    /// One HTTP/1.1 exchange, in this task; the connection goes back to the pool when
    /// its response ended cleanly.
    async fn exchange_h1(
        &self,
        pool: &Pool,
        target: &Target<'_>,
        mut conn: Conn,
        start: Instant,
    ) -> Attempt {
        let authority = target.authority();
        // One buffer for the request, then for the answer.
        let authorization = target.authorization.as_ref().map(HeaderValue::as_bytes);
        let (lines, host_configured) = if target.same_origin {
            (&self.h1_headers, self.host_configured)
        } else {
            (&self.h1_cross, false)
        };
        let length = self.method.as_str().len()
            + target.path.len()
            + authority.len()
            + lines.len()
            + authorization.map_or(0, |value| value.len() + 17)
            + 24;
        let mut request = Vec::with_capacity(length.max(h1::FIRST_READ));
        request.extend_from_slice(self.method.as_str().as_bytes());
        request.push(b' ');
        request.extend_from_slice(target.path.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\n");
        if !host_configured {
            request.extend_from_slice(b"host: ");
            request.extend_from_slice(authority.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        if let Some(value) = authorization {
            request.extend_from_slice(b"authorization: ");
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(lines);
        request.extend_from_slice(b"\r\n");

        let mut buf = request;
        let head_request = self.method == http::Method::HEAD;
        let capture = Capture {
            location: self.config.follow_redirects,
            headers: self.assertions.header_names(),
        };
        let head = h1::send_capturing(&mut conn, head_request, &mut buf, capture).await?;
        let latency = start.elapsed();
        let mut body = self.body();
        let cert = conn.cert().cloned();
        let drained = h1::drain(&mut conn, &head, &mut buf, &mut body).await;
        let cut_short = self.cut_short(drained.map(|clean| {
            if clean && target.same_origin {
                pool.checkin(&target.key, conn);
            }
        }))?;
        Ok(Answer {
            status: head.status,
            latency,
            body,
            cut_short,
            location: head.location,
            headers: head.headers,
            phases: Phases {
                first_byte: Some(head.first_byte),
                ..Phases::default()
            },
            cert,
        })
    }

    /// How the body of an answer ended: `None` when it ended well, why when the
    /// connection closed or was reset under it (a check still judges the status), or
    /// the failure (a broken framing; any failure of a fetch).
    fn cut_short(&self, drained: Result<(), Failure>) -> Result<Option<String>, Failure> {
        match drained {
            Ok(()) => Ok(None),
            Err(failure) if !self.fetch && failure.kind == CheckKind::Reset => {
                Ok(Some(failure.detail))
            }
            Err(failure) => Err(failure),
        }
    }

    /// One HTTP/2 exchange on a shared connection.
    async fn exchange_h2(&self, target: &Target<'_>, h2: H2, start: Instant) -> Attempt {
        let H2 {
            send: mut sender,
            peer,
            cert,
        } = h2;
        // An HTTP/1 server answers the HTTP/2 preface in HTTP/1, or closes: say that,
        // whatever error the HTTP/2 layer made of it.
        let classify = |err: &(dyn StdError + 'static)| match peer.not_http2() {
            Some(how) => Failure::target(
                CheckKind::Protocol,
                format!("protocol: the server does not speak HTTP/2 ({how})"),
            ),
            None => classify_http_error(err),
        };
        // A request that never left (the connection was closing) may be retried on a
        // new connection; a stream the server reset was an answer.
        let unsent = |failure: Failure| ExchangeError {
            before_answer: true,
            failure,
        };
        let request = self.h2_request(target)?;
        sender.ready().await.map_err(|err| unsent(classify(&err)))?;
        let sent = Instant::now();
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(err) => {
                let failure = classify(err.error());
                return Err(match err.message() {
                    Some(_) => unsent(failure),
                    None => failure.into(),
                });
            }
        };
        let latency = start.elapsed();
        let first_byte = sent.elapsed();
        let status = response.status();
        let location = match self.config.follow_redirects {
            true => response
                .headers()
                .get(LOCATION)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned()),
            false => None,
        };
        let headers = self
            .assertions
            .header_names()
            .iter()
            .map(|name| joined_values(response.headers(), name))
            .collect();
        let mut body = self.body();
        let drained = drain_h2(response.into_body(), &mut body).await;
        let cut_short = self.cut_short(drained.map_err(|err| classify_http_error(&err)))?;
        Ok(Answer {
            status,
            latency,
            body,
            cut_short,
            location,
            headers,
            phases: Phases {
                first_byte: Some(first_byte),
                ..Phases::default()
            },
            cert,
        })
    }

    /// The HTTP/2 request of a check: absolute URI (`:authority`), no `Host` header.
    fn h2_request(&self, target: &Target<'_>) -> Result<Request<Empty<Bytes>>, Failure> {
        let uri = Uri::builder()
            .scheme(if target.https { "https" } else { "http" })
            .authority(target.authority())
            .path_and_query(target.path.as_str())
            .build()
            .map_err(|err| Failure::checker(CheckKind::Config, format!("request URI: {err}")))?;
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .body(Empty::new())
            .map_err(|err| Failure::checker(CheckKind::Internal, format!("http request: {err}")))?;
        *request.headers_mut() = if target.same_origin {
            self.h2_headers.clone()
        } else {
            self.h2_cross.clone()
        };
        if let Some(value) = &target.authorization {
            request.headers_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }

    /// Healthy iff the status is expected, body cut short or not (see the module docs),
    /// and the assertions hold; `hops` redirects led to this answer.
    fn verdict(&self, answer: &Answer, hops: usize) -> CheckResult {
        let code = answer.status.as_u16();
        let result = if !self.config.is_expected_status(code) {
            CheckResult::unhealthy(CheckKind::Status, self.detail(answer, hops), answer.latency)
        } else if let Some((kind, detail)) =
            self.assertions.judge(&answer.headers, &answer.body.bytes)
        {
            CheckResult::unhealthy(kind, detail, answer.latency)
        } else {
            CheckResult::healthy(self.detail(answer, hops), answer.latency)
        };
        result
            .with_phases(answer.phases)
            .with_cert(answer.cert.clone())
            .with_status_code(code)
    }

    /// `HTTP 200 OK`, plus how the body was cut short and how many redirects led here.
    fn detail(&self, answer: &Answer, hops: usize) -> String {
        let mut detail = status_detail(answer.status);
        if let Some(why) = &answer.cut_short {
            detail.push_str(" (body cut short: ");
            detail.push_str(why);
            detail.push(')');
        }
        if hops > 0 {
            let plural = if hops == 1 { "" } else { "s" };
            // Writing to a String cannot fail.
            let _ = write!(detail, " (after {hops} redirect{plural})");
        }
        detail
    }
}

/// Where a redirect `answer` (a 3xx other than 304, with a `Location` that makes an
/// `http` or `https` URL against `base`, or an `h2c` one when the check is `h2c`)
/// points; `None` for any other answer, which is then judged by its status.
fn redirect_to(answer: &Answer, base: &Url, h2c: bool) -> Option<Url> {
    if !answer.status.is_redirection() || answer.status == StatusCode::NOT_MODIFIED {
        return None;
    }
    let next = base.join(answer.location.as_deref()?).ok()?;
    if !(h2c && next.scheme() == "h2c") {
        http_scheme(&next).ok()?;
    }
    Some(next)
}

/// The values of every `name` field of `headers`, joined with `, `; `None` when absent.
fn joined_values(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut joined: Option<String> = None;
    for value in headers.get_all(name) {
        let text = String::from_utf8_lossy(value.as_bytes());
        match &mut joined {
            Some(seen) => {
                seen.push_str(", ");
                seen.push_str(text.trim());
            }
            None => joined = Some(text.trim().to_owned()),
        }
    }
    joined
}

/// Reads up to [`MAX_BODY_DRAIN`] bytes of an HTTP/2 `body` into `kept` (when it keeps
/// bodies); a longer one is dropped unread, which resets its stream, so an endless body
/// costs at most 64 KiB.
async fn drain_h2(mut body: Incoming, kept: &mut Kept) -> Result<(), hyper::Error> {
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            seen = seen.saturating_add(data.len());
            kept.push(data);
            if seen > MAX_BODY_DRAIN {
                break;
            }
        }
    }
    Ok(())
}

/// `HTTP 503 Service Unavailable`.
fn status_detail(status: StatusCode) -> String {
    // Built by hand, not with format!: this runs on every check.
    let reason = status.canonical_reason().unwrap_or_default();
    let mut detail = String::with_capacity(9 + reason.len());
    detail.push_str("HTTP ");
    detail.push_str(status.as_str());
    if !reason.is_empty() {
        detail.push(' ');
        detail.push_str(reason);
    }
    detail
}

/// `Authorization: Basic base64(user:password)` for a URL with user info (both parts
/// percent-decoded), else `None`.
fn basic_authorization(url: &Url) -> Option<HeaderValue> {
    use base64::Engine as _;

    let password = url.password();
    if url.username().is_empty() && password.is_none() {
        return None;
    }
    let mut credentials: Vec<u8> = percent_decode_str(url.username()).collect();
    credentials.push(b':');
    credentials.extend(percent_decode_str(password.unwrap_or_default()));
    let mut value = String::from("Basic ");
    base64::engine::general_purpose::STANDARD.encode_string(&credentials, &mut value);
    // Base64 is always a valid header value; marked sensitive, HTTP/2 never indexes it.
    let mut value = HeaderValue::try_from(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `headers` as HTTP/1.1 header lines (`name: value\r\n` each).
fn header_lines(headers: &HeaderMap) -> Vec<u8> {
    let mut lines = Vec::new();
    for (name, value) in headers {
        lines.extend_from_slice(name.as_str().as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    lines
}

/// The §5 request headers, then the configured ones (which win over the defaults).
fn request_headers(config: &HealthCheckConfig) -> Result<HeaderMap, ConfigError> {
    let mut headers = HeaderMap::new();
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_VALUE));
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in &config.headers {
        let invalid = |reason: &str| ConfigError::Invalid {
            key: "headers",
            value: format!("{name} = {value:?}"),
            reason: reason.to_owned(),
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("is not a valid header name"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| invalid("is not a valid header value"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Classifies an error of the client or the body: connect failures come classified from
/// the connector, HTTP/2 errors by their reason, the rest as for any hyper exchange.
fn classify_http_error(err: &(dyn StdError + 'static)) -> Failure {
    let chain = error_chain(err);
    if let Some(failure) = chain.iter().find_map(|e| e.downcast_ref::<Failure>()) {
        return failure.clone();
    }
    if let Some(h2) = chain.iter().find_map(|e| e.downcast_ref::<h2::Error>()) {
        if let Some(io) = h2.get_io() {
            return classify_stream_io(io);
        }
        return match h2.reason() {
            // We closed the connection: the server broke the protocol.
            Some(reason) if h2.is_go_away() && h2.is_library() => Failure::target(
                CheckKind::Protocol,
                format!("http2 protocol error: {reason:?}"),
            ),
            Some(reason) if h2.is_reset() => {
                Failure::target(CheckKind::Reset, format!("http2 stream reset: {reason:?}"))
            }
            Some(reason) if h2.is_go_away() => Failure::target(
                CheckKind::Reset,
                format!("http2 connection closed: {reason:?}"),
            ),
            Some(reason) => {
                Failure::target(CheckKind::Protocol, format!("http2 error: {reason:?}"))
            }
            None => Failure::target(CheckKind::Protocol, format!("http2: {h2}")),
        };
    }
    classify_chain(err)
}

#[cfg(test)]
mod tests {
    use std::{fmt, io};

    use super::*;

    #[test]
    fn http2_requests_are_absolute_without_a_host_header() {
        let config = HealthCheckConfig {
            method: Method::Head,
            headers: [("Host".to_owned(), "example.test".to_owned())].into(),
            path: "/health?full=1".to_owned(),
            ..Default::default()
        };
        let client = HttpClient::try_new(&config, &HttpClientConfig::default()).unwrap();
        let spec = RequestSpec::try_new(&config, &client).unwrap();
        let url = Url::parse("h2c://[::1]:8080/api").unwrap();
        let h2 = spec
            .h2_request(&spec.target(&url, "http").unwrap())
            .unwrap();
        assert_eq!(h2.uri(), "http://[::1]:8080/api/health?full=1");
        assert_eq!(h2.method(), http::Method::HEAD);
        assert!(!h2.headers().contains_key(HOST));
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let spec = RequestSpec::fetch("*/*");
        let url = |text: &str| Url::parse(text).unwrap();
        let scheme = |url: &Url| {
            if url.scheme() == "https" {
                "https"
            } else {
                "http"
            }
        };
        let first_url = url("https://u:p@Api.test:8443/");
        let first = spec.target(&first_url, "https").unwrap();
        let cases = [
            ("https://api.test:8443/x", true, true),
            ("http://api.test:8443/", false, true),
            ("https://api.test:9443/", false, true),
            ("https://other.test:8443/", false, false),
        ];
        for (text, same_origin, own_host) in cases {
            let next = url(text);
            let mut hop = spec.target(&next, scheme(&next)).unwrap();
            hop.compare_with(&first);
            let seen = (hop.same_origin, hop.own_host);
            assert_eq!(seen, (same_origin, own_host), "{text}");
        }
        // A port left out is the scheme's default.
        let (default, written) = (url("https://api.test/"), url("https://api.test:443/"));
        let mut hop = spec.target(&written, "https").unwrap();
        hop.compare_with(&spec.target(&default, "https").unwrap());
        assert!(hop.same_origin);
    }

    #[test]
    fn only_h2c_checks_follow_h2c_locations() {
        let answer = Answer {
            status: StatusCode::FOUND,
            latency: Duration::ZERO,
            body: Kept::default(),
            cut_short: None,
            location: Some("h2c://127.0.0.1:8080/next".to_owned()),
            headers: Vec::new(),
            phases: Phases::default(),
            cert: None,
        };
        let http = Url::parse("http://127.0.0.1:8080/").unwrap();
        let h2c = Url::parse("h2c://127.0.0.1:8080/").unwrap();
        assert_eq!(redirect_to(&answer, &http, false), None);
        assert_eq!(redirect_to(&answer, &h2c, false), None);
        let next = redirect_to(&answer, &h2c, true).unwrap();
        assert_eq!(next.as_str(), "h2c://127.0.0.1:8080/next");
    }

    #[test]
    fn cross_origin_requests_leave_the_sensitive_headers_out() {
        let config = HealthCheckConfig {
            headers: [
                ("authorization", "Bearer t0ken"),
                ("COOKIE", "session=1"),
                ("Proxy-Authorization", "Basic eA=="),
                ("Host", "configured.test"),
                ("X-Probe", "yes"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .into(),
            ..Default::default()
        };
        let client = HttpClient::try_new(&config, &HttpClientConfig::default()).unwrap();
        let spec = RequestSpec::try_new(&config, &client).unwrap();
        let first_url = Url::parse("h2c://127.0.0.1:8080/").unwrap();
        let first = spec.target(&first_url, "http").unwrap();
        let next_url = Url::parse("h2c://127.0.0.1:8081/").unwrap();
        let mut hop = spec.target_at(&next_url, "http", true).unwrap();
        hop.compare_with(&first);
        let same = spec.h2_request(&first).unwrap();
        assert_eq!(same.headers()[AUTHORIZATION], "Bearer t0ken");
        let cross = spec.h2_request(&hop).unwrap();
        for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, HOST] {
            assert!(!cross.headers().contains_key(&name), "{name}");
        }
        assert_eq!(cross.headers()["x-probe"], "yes");
        assert_eq!(cross.uri().authority().unwrap(), "127.0.0.1:8081");
    }

    /// Serves HTTP/1.1 (`h2`: HTTP/2 with prior knowledge) on `listener` with
    /// `handler`; says on `closed` each time a connection ends.
    fn serve(
        listener: tokio::net::TcpListener,
        h2: bool,
        handler: Arc<dyn Fn() -> http::Response<http_body_util::Full<Bytes>> + Send + Sync>,
        closed: tokio::sync::mpsc::UnboundedSender<()>,
    ) {
        use hyper_util::rt::{TokioExecutor, TokioIo};

        tokio::spawn(async move {
            // Bounded: the test makes at most a few connections per server.
            for _ in 0..64 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let closed = closed.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let response = handler();
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let io = TokioIo::new(tcp);
                    let _ = if h2 {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    };
                    let _ = closed.send(());
                });
            }
        });
    }

    /// Fifty checks, each redirected to a fresh loopback port, leave only the
    /// configured origin's connection in the pool, and close every other connection
    /// (for HTTP/2, its driver task ended).
    async fn redirects_to_fresh_authorities_do_not_grow_the_pool(h2c: bool) {
        const CHECKS: usize = 50;
        let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
        let mut ports = Vec::with_capacity(CHECKS);
        for _ in 0..CHECKS {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push(listener.local_addr().unwrap().port());
            let ok = Arc::new(|| http::Response::new(http_body_util::Full::new(Bytes::new())));
            serve(listener, h2c, ok, closed_tx.clone());
        }
        let ports = Arc::new(std::sync::Mutex::new(ports));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let first = listener.local_addr().unwrap();
        let (first_closed, _) = tokio::sync::mpsc::unbounded_channel();
        serve(
            listener,
            h2c,
            Arc::new(move || {
                let port = ports.lock().unwrap().pop().unwrap_or(1);
                let scheme = if h2c { "h2c" } else { "http" };
                http::Response::builder()
                    .status(302)
                    .header(LOCATION, format!("{scheme}://127.0.0.1:{port}/"))
                    .body(http_body_util::Full::new(Bytes::new()))
                    .unwrap()
            }),
            first_closed,
        );
        let config = HealthCheckConfig {
            follow_redirects: true,
            timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let client = HttpClient::try_new(&config, &HttpClientConfig::default()).unwrap();
        let scheme = if h2c { "h2c" } else { "http" };
        let url = Url::parse(&format!("{scheme}://{first}/")).unwrap();
        for _ in 0..CHECKS {
            let result = if h2c {
                let probe = H2cProbe::try_with_client(&config, client.clone()).unwrap();
                probe.check(&url).await.unwrap()
            } else {
                let probe = HttpProbe::try_with_client(&config, client.clone()).unwrap();
                probe.check(&url).await.unwrap()
            };
            assert!(result.healthy, "{result:?}");
        }
        let pool = if h2c {
            &client.inner.h2c
        } else {
            &client.inner.auto
        };
        assert_eq!(pool.size(), (1, 1));
        let all_closed = async {
            for _ in 0..CHECKS {
                closed.recv().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all_closed)
            .await
            .expect("every redirect target's connection is closed");
    }

    #[tokio::test]
    async fn http1_redirects_to_fresh_authorities_do_not_grow_the_pool() {
        redirects_to_fresh_authorities_do_not_grow_the_pool(false).await;
    }

    #[tokio::test]
    async fn h2c_redirects_to_fresh_authorities_do_not_grow_the_pool() {
        redirects_to_fresh_authorities_do_not_grow_the_pool(true).await;
    }

    #[test]
    fn status_details_carry_code_and_reason() {
        assert_eq!(
            status_detail(StatusCode::SERVICE_UNAVAILABLE),
            "HTTP 503 Service Unavailable"
        );
        assert_eq!(
            status_detail(StatusCode::from_u16(599).unwrap()),
            "HTTP 599"
        );
    }

    #[test]
    fn configured_headers_follow_the_defaults() {
        let config = HealthCheckConfig {
            headers: [("X-Probe".to_owned(), "yes".to_owned())].into(),
            ..Default::default()
        };
        let headers = request_headers(&config).unwrap();
        assert_eq!(headers["user-agent"], USER_AGENT_VALUE);
        assert_eq!(headers["x-probe"], "yes");
        assert_eq!(headers.len(), 5);
    }

    #[test]
    fn parse_errors_are_protocol_failures_and_connect_failures_pass_through() {
        #[derive(Debug)]
        struct Wrapper(Failure);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("client error")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let failure = Failure::target(CheckKind::Refused, "connection refused");
        assert_eq!(classify_http_error(&Wrapper(failure.clone())), failure);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify_http_error(&reset).kind, CheckKind::Reset);
    }
}
