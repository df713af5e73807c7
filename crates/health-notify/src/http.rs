//! The narrow HTTP port under the HTTP providers ([`HttpSend`]) and its hyper + rustls
//! implementation ([`HyperSend`]).
//!
//! HTTP providers build an [`HttpRequest`]; the generic notifier hands it to an
//! `Arc<dyn HttpSend>` and turns the [`HttpResponse`] into a result. Tests put a fake
//! sender in its place (`NotifierConfig::build_with`) to drive retries under tokio's
//! paused clock.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use url::Url;

use health_types::{
    tls::{Trust, client_config},
    truncate,
};

use crate::{NotifyError, RetryAfter, message::clean_bytes};

/// The `User-Agent` sent unless a provider sets one.
const USER_AGENT: &str = concat!("health-notify/", env!("CARGO_PKG_VERSION"));
/// How much of an answer's body is read: enough for an error message, never an endless
/// stream.
const MAX_BODY: usize = 16 * 1024;
/// How much of a failed answer's body goes into the error.
const MAX_ERROR_BODY_CHARS: usize = 200;

/// One HTTP request a provider wants sent.
#[derive(Clone)]
pub struct HttpRequest {
    /// The method (POST or PUT).
    pub method: Method,
    /// The full URL.
    pub url: Url,
    /// The request headers (`Content-Type`, `Authorization`, provider headers).
    pub headers: HeaderMap,
    /// The exact body.
    pub body: Bytes,
}

impl HttpRequest {
    /// A request with no headers and an empty body.
    pub(crate) fn new(method: Method, url: Url) -> Self {
        HttpRequest {
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Sets the body and its `Content-Type`.
    pub(crate) fn with_body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.body = body.into();
        self
    }

    /// Sets each of `headers`, replacing a value already set (an `Option` sets one or
    /// none).
    pub(crate) fn with_headers(
        mut self,
        headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
    ) -> Self {
        for (name, value) in headers {
            self.headers.insert(name, value);
        }
        self
    }
}

impl fmt::Debug for HttpRequest {
    /// Shows the method, the URL's origin (paths can carry tokens), the header names and
    /// the body length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("origin", &self.url.origin().ascii_serialization())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The answer to an [`HttpRequest`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The start of the body (at most 16 KiB are read).
    pub body: Bytes,
}

impl HttpResponse {
    /// An answer with no headers and an empty body.
    pub fn new(status: StatusCode) -> Self {
        HttpResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// `Ok` for 2xx; otherwise a [`NotifyError::Status`] with the `Retry-After` and the
    /// start of the body.
    pub(crate) fn into_result(self) -> Result<(), NotifyError> {
        if self.status.is_success() {
            return Ok(());
        }
        let retry_after = self
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(RetryAfter::parse);
        let body = clean_bytes(&self.body);
        Err(NotifyError::Status {
            status: self.status.as_u16(),
            retry_after,
            body: truncate(body.trim(), MAX_ERROR_BODY_CHARS).into_owned(),
        })
    }
}

/// Sends one HTTP request: the port every HTTP provider sends through.
///
/// # Cancel safety
///
/// The dispatcher drops the future when a request runs past its timeout or at shutdown.
/// Dropping it must abandon the request and leave nothing running on its behalf.
#[async_trait]
pub trait HttpSend: Send + Sync + fmt::Debug {
    /// Sends `request` and returns the answer, whatever its status; `Err` only when no
    /// answer could be had (connect, TLS, reset, invalid request).
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, NotifyError>;
}

/// [`HttpSend`] over hyper's pooled client, HTTP/1.1, with rustls (ring provider, Mozilla
/// roots) for `https` URLs. Requests without a `User-Agent` get `health-notify/<version>`.
#[derive(Clone)]
pub(crate) struct HyperSend {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HyperSend {
    /// A client that verifies certificates against the Mozilla roots (webpki-roots).
    pub(crate) fn new() -> Self {
        // The toolkit's one TLS setup: an explicit ring provider, never a process-wide
        // default (which panics when two providers are compiled in).
        let tls = client_config(&Trust::WebpkiRoots, &[], None)
            .expect("the webpki roots and the ring provider's default versions make a config");
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        HyperSend {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl fmt::Debug for HyperSend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperSend").finish_non_exhaustive()
    }
}

#[async_trait]
impl HttpSend for HyperSend {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, NotifyError> {
        let uri: http::Uri =
            request.url.as_str().parse().map_err(|err| {
                NotifyError::config("url", format!("not a valid request URI: {err}"))
            })?;
        let mut builder = http::Request::builder().method(request.method).uri(uri);
        if let Some(headers) = builder.headers_mut() {
            *headers = request.headers;
            // Some receivers (behind CDNs) turn away requests without one.
            headers
                .entry(header::USER_AGENT)
                .or_insert(HeaderValue::from_static(USER_AGENT));
        }
        let hyper_request = builder
            .body(Full::new(request.body))
            .map_err(NotifyError::transport)?;
        let response = self
            .client
            .request(hyper_request)
            .await
            .map_err(NotifyError::transport)?;
        let (parts, mut body) = response.into_parts();
        let mut collected = BytesMut::new();
        while collected.len() < MAX_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        collected.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => return Err(NotifyError::transport(err)),
                None => break,
            }
        }
        collected.truncate(MAX_BODY);
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body: collected.freeze(),
        })
    }
}

/// The sender of an HTTP notifier built without one.
pub(crate) fn default_sender() -> Arc<dyn HttpSend> {
    Arc::new(HyperSend::new())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn non_2xx_answers_become_status_errors() {
        let mut response = HttpResponse::new(StatusCode::TOO_MANY_REQUESTS);
        response
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        response.body = Bytes::from_static(b"  slow down\x1b  ");
        let err = response.into_result().unwrap_err();
        assert_eq!(err.status(), Some(429));
        assert_eq!(
            err.retry_after(),
            Some(RetryAfter::Delay(Duration::from_secs(7)))
        );
        assert_eq!(
            err.to_string(),
            "receiver answered HTTP 429: slow down\u{fffd}"
        );
        assert!(
            HttpResponse::new(StatusCode::NO_CONTENT)
                .into_result()
                .is_ok()
        );
    }

    #[test]
    fn debug_hides_paths_and_tokens() {
        let url = Url::parse("https://api.telegram.org/bot123:secret/sendMessage").unwrap();
        let bearer = crate::providers::bearer(Some(&"hunter2".into())).unwrap();
        let request = HttpRequest::new(Method::POST, url).with_headers(bearer);
        let debug = format!("{request:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("api.telegram.org"), "{debug}");
    }
}
