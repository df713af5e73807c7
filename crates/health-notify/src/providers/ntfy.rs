//! The `ntfy` provider: `POST <url>/<topic>` with the rendered fields as the body and the
//! title, priority and markdown flag in headers.

use health_types::{TRUNCATION_MARKER, truncate};
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError, Secret,
    providers::{HttpProvider, base_url, bearer, join, or_title, text_header},
};

/// The longest title sent, in characters.
const TITLE_LIMIT: usize = 250;
/// The longest body sent, in bytes: ntfy's default `message-size-limit`.
const BODY_LIMIT: usize = 4096;

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
/// Headers: `Title`, `Priority` (`high` for warnings and errors: down, stopped,
/// reminder, flapping, cert_expiry; `default` otherwise), `Markdown: yes` for the markdown
/// format, and `Authorization: Bearer <token>` when a token is set. The title is flattened
/// to one line and cut to 250 characters (ntfy documents no limit, phones show one line);
/// a title that is not plain ASCII is sent RFC 2047-encoded, which ntfy decodes.
///
/// The body is the fields. Only ntfy's web app renders markdown (and only with
/// `Markdown: yes`); its phone apps show the body as it is. So the markdown format sends
/// [`Message::render_fields_light`]: `**Name:** value` lines with backslashes only where
/// a character would otherwise render, and hard line breaks; the plain format sends
/// `Name: value` lines. The body is cut to 4096 bytes, ntfy's default message size limit
/// (a longer one becomes an attachment or is refused).
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
        let fields = match self.format {
            Format::Markdown => message.render_fields_light(),
            Format::Plain => message.render_fields(Format::Plain),
        };
        let body = cut_bytes(or_title(fields, message), BODY_LIMIT);
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
                    text_header(&truncate(&message.title, TITLE_LIMIT)),
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

/// `text` cut to at most `limit` bytes on a character boundary, ending in
/// [`TRUNCATION_MARKER`] when something was cut.
fn cut_bytes(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit.saturating_sub(TRUNCATION_MARKER.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push(TRUNCATION_MARKER);
    text
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn request(format: Format, message: &Message) -> HttpRequest {
        let config = NtfyConfig {
            url: "https://ntfy.test".into(),
            topic: "alerts".into(),
            token: None,
        };
        NtfyProvider::try_new(&config, format)
            .unwrap()
            .request(message)
    }

    #[test]
    fn markdown_has_few_backslashes_and_a_break_per_line() {
        let message = Message::custom("t", UNIX_EPOCH)
            .with_field("URL", "http://api.test/my_api")
            .with_field("Detail", "HTTP 503 <html> *oops*");
        let request = request(Format::Markdown, &message);
        assert_eq!(
            String::from_utf8_lossy(&request.body),
            "**URL:** http://api.test/my_api  \n**Detail:** HTTP 503 \\<html> \\*oops\\*"
        );
        let plain = request_plain(&message);
        assert_eq!(
            plain,
            "URL: http://api.test/my_api\nDetail: HTTP 503 <html> *oops*"
        );
    }

    fn request_plain(message: &Message) -> String {
        String::from_utf8_lossy(&request(Format::Plain, message).body).into_owned()
    }

    #[test]
    fn the_title_and_body_are_bounded() {
        let message = Message::custom(format!("Service down: {}", "x".repeat(400)), UNIX_EPOCH)
            .with_field("Detail", "é".repeat(5000));
        let request = request(Format::Plain, &message);
        let title = request.headers.get("title").unwrap().to_str().unwrap();
        assert!(
            title.starts_with("=?UTF-8?B?"),
            "the marker is not ASCII: {title}"
        );
        assert!(title.len() < 400, "{}", title.len());
        assert!(request.body.len() <= BODY_LIMIT);
        assert!(
            String::from_utf8(request.body.to_vec())
                .unwrap()
                .ends_with("é…")
        );
        assert_eq!(cut_bytes("abc".into(), 3), "abc");
        assert_eq!(cut_bytes("abcdef".into(), 5), "ab…");
    }

    #[test]
    fn reminders_and_flapping_are_high_priority() {
        for kind in [
            health_types::EventKind::Reminder,
            health_types::EventKind::Flapping,
        ] {
            let event = health_types::Event {
                kind,
                service: "api".into(),
                url: "http://api.test/".into(),
                detail: "d".into(),
                latency: std::time::Duration::ZERO,
                last_seen: None,
                outage: None,
                outage_start: None,
                time: UNIX_EPOCH,
            };
            let request = request(Format::Plain, &Message::from_event(&event));
            assert_eq!(request.headers.get("priority").unwrap(), "high", "{kind:?}");
        }
    }
}
