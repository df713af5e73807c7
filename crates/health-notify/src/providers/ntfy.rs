//! The `ntfy` provider: `POST <url>/<topic>` with the rendered fields as the body and the
//! title, priority and markdown flag in headers.

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError, Secret,
    providers::{HttpProvider, base_url, bearer, join, or_title, text_header},
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

/// ntfy: publishes to a topic.
///
/// The body is the fields rendered in the notifier's format; headers: `Title`,
/// `Priority` (`high` for down and stopped, `default` otherwise), `Markdown: yes` for the
/// markdown format, and `Authorization: Bearer <token>` when a token is set. A title that
/// is not plain ASCII is sent RFC 2047-encoded, which ntfy decodes.
pub(crate) struct NtfyProvider {
    /// `<url>/<topic>`.
    endpoint: Url,
    format: Format,
    /// `Authorization: Bearer <token>`, built once from the checked token.
    bearer: Option<(HeaderName, HeaderValue)>,
}

impl HttpProvider for NtfyProvider {
    type Config = NtfyConfig;

    fn try_new(config: &NtfyConfig, format: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        let topic = &config.topic;
        let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if topic.is_empty() || topic.len() > 64 || !topic.bytes().all(valid) {
            return Err(NotifyError::config(
                "topic",
                format!("{topic:?} must be 1 to 64 letters, digits, `_` or `-`"),
            ));
        }
        let bearer = bearer(config.token.as_ref())?;
        Ok(NtfyProvider {
            endpoint: join(&base, &format!("/{topic}"))?,
            format,
            bearer,
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let body = or_title(message.render_fields(self.format), message);
        let priority = if message.level.is_urgent() {
            "high"
        } else {
            "default"
        };
        let markdown = (self.format == Format::Markdown).then(|| {
            (
                HeaderName::from_static("markdown"),
                HeaderValue::from_static("yes"),
            )
        });
        HttpRequest::new(Method::POST, self.endpoint.clone())
            .with_body("text/plain; charset=utf-8", body)
            .with_headers([
                (
                    HeaderName::from_static("title"),
                    text_header(&message.title),
                ),
                (
                    HeaderName::from_static("priority"),
                    HeaderValue::from_static(priority),
                ),
            ])
            .with_headers(markdown)
            .with_headers(self.bearer.clone())
    }

    fn url(&self) -> &Url {
        &self.endpoint
    }
}
