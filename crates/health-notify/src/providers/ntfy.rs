//! The `ntfy` provider: `POST <url>/<topic>` with the rendered fields as the body and the
//! title, priority and markdown flag in headers.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Method, header::AUTHORIZATION};
use serde::Deserialize;
use url::Url;

use crate::{
    Format, HttpRequest, HttpSend, Message, Notifier, NotifyError, Secret,
    http::default_sender,
    providers::{base_url, check_token, join, or_title, text_header, token_header},
};

/// `ntfy` keys: `url` (the server), `topic`, `token` (optional access token).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfyConfig {
    /// The server, e.g. `https://ntfy.sh`.
    pub url: String,
    /// The topic: 1 to 64 of `A-Z a-z 0-9 _ -`.
    pub topic: String,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<Secret>,
}

impl NtfyConfig {
    /// Checks every key.
    pub fn validate(&self) -> Result<(), NotifyError> {
        self.endpoint().map(drop)
    }

    fn endpoint(&self) -> Result<Url, NotifyError> {
        let base = base_url("url", &self.url)?;
        let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if self.topic.is_empty() || self.topic.len() > 64 || !self.topic.bytes().all(valid) {
            return Err(NotifyError::config(
                "topic",
                format!(
                    "{:?} must be 1 to 64 letters, digits, `_` or `-`",
                    self.topic
                ),
            ));
        }
        if let Some(token) = &self.token {
            check_token(token)?;
        }
        join(&base, &format!("/{}", self.topic))
    }
}

/// Publishes messages to an ntfy topic.
///
/// The body is the fields rendered in the notifier's format; headers: `Title`,
/// `Priority` (`high` for down and stopped, `default` otherwise), `Markdown: yes` for the
/// markdown format, and `Authorization: Bearer <token>` when a token is set. A title that
/// is not plain ASCII is sent RFC 2047-encoded, which ntfy decodes.
#[derive(Clone)]
pub struct NtfyNotifier {
    name: String,
    format: Format,
    endpoint: Url,
    /// `Authorization: Bearer <token>`, built once from the checked token.
    bearer: Option<HeaderValue>,
    http: Arc<dyn HttpSend>,
}

impl NtfyNotifier {
    /// An ntfy notifier named `name`; fails when the config breaks a rule.
    pub fn try_new(
        name: impl Into<String>,
        format: Format,
        config: &NtfyConfig,
    ) -> Result<Self, NotifyError> {
        Ok(NtfyNotifier {
            name: name.into(),
            format,
            endpoint: config.endpoint()?,
            bearer: config
                .token
                .as_ref()
                .map(|token| token_header("Bearer ", token))
                .transpose()?,
            http: default_sender(),
        })
    }

    /// Sends through `http` instead of the default hyper client.
    pub fn with_sender(mut self, http: Arc<dyn HttpSend>) -> Self {
        self.http = http;
        self
    }

    /// The request sent for `message`.
    pub fn request(&self, message: &Message) -> Result<HttpRequest, NotifyError> {
        let body = or_title(message.render_fields(self.format), message);
        let mut request = HttpRequest::new(Method::POST, self.endpoint.clone())
            .with_body("text/plain; charset=utf-8", body);
        let priority = if message.level.is_urgent() {
            "high"
        } else {
            "default"
        };
        let headers = &mut request.headers;
        headers.insert(
            HeaderName::from_static("title"),
            text_header(&message.title),
        );
        headers.insert(
            HeaderName::from_static("priority"),
            HeaderValue::from_static(priority),
        );
        if self.format == Format::Markdown {
            headers.insert(
                HeaderName::from_static("markdown"),
                HeaderValue::from_static("yes"),
            );
        }
        if let Some(bearer) = &self.bearer {
            headers.insert(AUTHORIZATION, bearer.clone());
        }
        Ok(request)
    }
}

impl fmt::Debug for NtfyNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtfyNotifier")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for NtfyNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &'static str {
        "ntfy"
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let request = self.request(message)?;
        self.http.send(request).await?.into_result()
    }
}
