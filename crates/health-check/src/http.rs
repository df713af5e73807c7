//! HTTP, HTTPS and H2C probes on a pooled keep-alive hyper client (SPEC §5).
//!
//! One [`HttpClient`] holds two keep-alive pools: HTTP/1.1 with HTTP/2 by ALPN over TLS
//! (`http://`, `https://`), and HTTP/2 with prior knowledge over cleartext (`h2c://`).
//! Probes built with [`HttpProbe::try_with_client`] and [`H2cProbe::try_with_client`]
//! share them.

use std::{error::Error as StdError, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use health_types::{
    CheckKind, CheckResult, ConfigError, HealthCheckConfig, Method, Probe, ProbeError,
};
use http::{
    HeaderMap, HeaderName, HeaderValue, StatusCode, Uri,
    header::{ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, USER_AGENT},
    uri::PathAndQuery,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;
use url::Url;

use self::pool::{Connector, Outgoing, Pool};
use crate::{
    failure::{
        Failure, bad_url, classify_chain, classify_stream_io, error_chain, unsupported_scheme,
    },
    net::{USER_AGENT_VALUE, join_path},
};

mod pool;

/// The `Accept` header of every HTTP check.
const ACCEPT_VALUE: &str = "text/plain,text/html,*/*;q=0.8";
/// How much of a response body is read before the connection is dropped.
pub const MAX_BODY_DRAIN: usize = 64 * 1024;

/// Options of an [`HttpClient`] beyond the [`HealthCheckConfig`] keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// A PEM file of CA certificates trusted in addition to the system and webpki roots
    /// when `tls_verify` is on. Default: none. Needs the `tls` feature.
    pub ca_file: Option<PathBuf>,
}

/// A pooled keep-alive HTTP client shared by the HTTP and H2C probes of one config.
///
/// Cheap to clone: clones share the pools. The TLS settings (`tls_verify`, the extra CA)
/// are fixed when the client is built.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    tls_verify: bool,
    /// HTTP/1.1, or HTTP/2 when TLS negotiates it by ALPN.
    auto: Pool,
    /// HTTP/2 with prior knowledge (h2c).
    h2c: Pool,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("tls_verify", &self.inner.tls_verify)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the pools and the TLS setup for `config` (`tls_verify`) and `options`.
    ///
    /// Fails when a CA file cannot be read, or names one without the `tls` feature.
    pub fn try_new(
        config: &HealthCheckConfig,
        options: &HttpClientConfig,
    ) -> Result<Self, ConfigError> {
        let connector = Connector::try_new(config, options)?;
        Ok(HttpClient {
            inner: Arc::new(ClientInner {
                tls_verify: config.tls_verify,
                auto: Pool::new(connector.clone(), false),
                h2c: Pool::new(connector, true),
            }),
        })
    }

    /// Whether this client verifies server certificates.
    pub fn tls_verify(&self) -> bool {
        self.inner.tls_verify
    }
}

/// Checks `http://` and `https://` targets (SPEC §5).
///
/// Sends `method` to the URL joined with `path`, with the §5 headers plus `headers`;
/// healthy iff the status is in `expected_status`. Redirects are not followed. The body
/// is drained up to 64 KiB, then the connection is dropped. HTTPS offers HTTP/2 by ALPN.
/// Latency is the time to the response headers; the whole check is bounded by `timeout`.
#[derive(Clone, Debug)]
pub struct HttpProbe {
    spec: RequestSpec,
    client: HttpClient,
}

impl HttpProbe {
    /// A probe with its own [`HttpClient`] (default [`HttpClientConfig`]).
    ///
    /// Fails when `config` is invalid.
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        let client = HttpClient::try_new(config, &HttpClientConfig::default())?;
        Self::try_with_client(config, client)
    }

    /// A probe that shares `client`'s connection pools.
    ///
    /// Fails when `config` is invalid or asks for other TLS settings than the client's.
    pub fn try_with_client(
        config: &HealthCheckConfig,
        client: HttpClient,
    ) -> Result<Self, ConfigError> {
        Ok(HttpProbe {
            spec: RequestSpec::try_new(config, &client)?,
            client,
        })
    }

    /// The client this probe sends its requests with.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }
}

#[async_trait]
impl Probe for HttpProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        self.validate_url(url).map_err(|err| bad_url(&err))?;
        self.spec
            .run(&self.client.inner.auto, url, url.scheme())
            .await
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        if !HTTP_SCHEMES.contains(&url.scheme()) {
            return Err(unsupported_scheme(url, HTTP_SCHEMES));
        }
        self.spec.uri(url, url.scheme()).map(drop)
    }
}

/// The schemes [`HttpProbe`] checks.
#[cfg(feature = "tls")]
const HTTP_SCHEMES: &[&str] = &["http", "https"];
#[cfg(not(feature = "tls"))]
const HTTP_SCHEMES: &[&str] = &["http"];

/// Checks `h2c://` targets: HTTP/2 with prior knowledge over cleartext, with the same
/// rules as [`HttpProbe`].
#[derive(Clone, Debug)]
pub struct H2cProbe {
    spec: RequestSpec,
    client: HttpClient,
}

impl H2cProbe {
    /// A probe with its own [`HttpClient`].
    ///
    /// Fails when `config` is invalid.
    pub fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        let client = HttpClient::try_new(config, &HttpClientConfig::default())?;
        Self::try_with_client(config, client)
    }

    /// A probe that shares `client`'s connection pools.
    ///
    /// Fails when `config` is invalid or asks for other TLS settings than the client's.
    pub fn try_with_client(
        config: &HealthCheckConfig,
        client: HttpClient,
    ) -> Result<Self, ConfigError> {
        Ok(H2cProbe {
            spec: RequestSpec::try_new(config, &client)?,
            client,
        })
    }

    /// The client this probe sends its requests with.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }
}

#[async_trait]
impl Probe for H2cProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        self.validate_url(url).map_err(|err| bad_url(&err))?;
        self.spec.run(&self.client.inner.h2c, url, "http").await
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        if url.scheme() != "h2c" {
            return Err(unsupported_scheme(url, &["h2c"]));
        }
        self.spec.uri(url, "http").map(drop)
    }
}

/// What one probe sends and how it judges the answer.
#[derive(Clone, Debug)]
struct RequestSpec {
    config: HealthCheckConfig,
    method: http::Method,
    headers: HeaderMap,
}

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
        if PathAndQuery::try_from(join_path("/", None, &config.path)).is_err() {
            return Err(ConfigError::Invalid {
                key: "path",
                value: format!("{:?}", config.path),
                reason: "is not a valid request path".to_owned(),
            });
        }
        Ok(RequestSpec {
            config: config.clone(),
            method: match config.method {
                Method::Get => http::Method::GET,
                Method::Head => http::Method::HEAD,
            },
            headers: request_headers(config)?,
        })
    }

    /// The request URI: `url` with `scheme`, its path joined with the configured path.
    fn uri(&self, url: &Url, scheme: &str) -> Result<Uri, ConfigError> {
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host,
            _ => return Err(ConfigError::url(url, "no host")),
        };
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let path = join_path(url.path(), url.query(), &self.config.path);
        Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|err| ConfigError::url(url, err.to_string()))
    }

    async fn run(&self, pool: &Pool, url: &Url, scheme: &str) -> Result<CheckResult, ProbeError> {
        let start = Instant::now();
        let uri = self.uri(url, scheme).map_err(|err| bad_url(&err))?;
        let key = format!("{scheme}://{}", uri.authority().map_or("", |a| a.as_str()));
        let outgoing = Outgoing {
            method: &self.method,
            uri: &uri,
            headers: &self.headers,
        };
        let timeout = self.config.timeout;
        let deadline = start + timeout;
        let exchange = async {
            let (response, sender) = pool.send(&key, &outgoing).await?;
            let latency = start.elapsed();
            let status = response.status();
            let complete = drain(response.into_body())
                .await
                .map_err(|err| classify_http_error(&err))?;
            Ok::<_, Failure>((status, latency, complete.then_some(sender)))
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok((status, latency, sender))) => {
                if let Some(sender) = sender {
                    // Best effort, inside the check's deadline: past it, the connection
                    // is dropped instead of pooled and the answer still counts.
                    let _ = tokio::time::timeout_at(deadline, pool.checkin(&key, sender)).await;
                }
                Ok(self.verdict(status, latency))
            }
            Ok(Err(failure)) => failure.into_outcome(start.elapsed()),
            Err(_) => Failure::timed_out(timeout).into_outcome(start.elapsed()),
        }
    }

    fn verdict(&self, status: StatusCode, latency: Duration) -> CheckResult {
        let detail = status_detail(status);
        if self.config.is_expected_status(status.as_u16()) {
            CheckResult::healthy(detail, latency)
        } else {
            CheckResult::unhealthy(CheckKind::Status, detail, latency)
        }
    }
}

/// Reads and discards up to [`MAX_BODY_DRAIN`] bytes of `body`; `true` when it was read
/// to its end.
///
/// Only a body read to its end leaves the connection reusable. A longer one is dropped
/// unread, which closes an HTTP/1 connection (and resets an HTTP/2 stream), so an
/// endless body costs at most 64 KiB and never returns a dirty connection to the pool.
async fn drain(mut body: Incoming) -> Result<bool, hyper::Error> {
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            seen = seen.saturating_add(data.len());
            if seen > MAX_BODY_DRAIN {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// `HTTP 503 Service Unavailable`.
fn status_detail(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
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
