//! The `gotify` provider: `POST <url>/message` with an application token.

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError, Secret,
    providers::{HttpProvider, base_url, join, or_title, post_json, token_header},
};

/// Gotify priority for down and stopped.
const URGENT_PRIORITY: u8 = 8;
/// Gotify priority for everything else.
const NORMAL_PRIORITY: u8 = 4;

/// `gotify` keys: `url` (the server), `token` (an application token).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GotifyConfig {
    /// The server, e.g. `https://gotify.example.com`.
    pub url: String,
    /// The application token, sent as `X-Gotify-Key`.
    pub token: Secret,
}

#[derive(Serialize)]
struct Body<'a> {
    title: &'a str,
    message: String,
    priority: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    extras: Option<Extras>,
}

#[derive(Serialize)]
struct Extras {
    #[serde(rename = "client::display")]
    display: Display,
}

#[derive(Serialize)]
struct Display {
    #[serde(rename = "contentType")]
    content_type: &'static str,
}

/// Gotify: `{"title","message","priority"}` to `<url>/message` with
/// `X-Gotify-Key: <token>`.
///
/// Priority is 8 for warnings and errors (down, stopped, reminder, flapping,
/// cert_expiry), 4 otherwise. With the markdown format the body also carries
/// `"extras":{"client::display":{"contentType":"text/markdown"}}`, which the web UI and
/// the Android app render; other clients (the CLI, third-party apps, some
/// notifications) show it raw. So the markdown is [`Message::render_fields_light`]:
/// backslashes only where a character would otherwise render, and hard line breaks, for
/// CommonMark renderers join soft-broken lines into one paragraph. The plain format sends
/// `Name: value` lines and no extras.
pub(crate) struct GotifyProvider {
    /// `<url>/message`.
    endpoint: Url,
    format: Format,
    /// The `X-Gotify-Key` value, built once from the checked token.
    key: HeaderValue,
}

impl HttpProvider for GotifyProvider {
    type Config = GotifyConfig;

    fn try_new(config: &GotifyConfig, format: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        let key = token_header("", &config.token)?;
        Ok(GotifyProvider {
            endpoint: join(&base, "/message")?,
            format,
            key,
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let priority = if message.level.is_urgent() {
            URGENT_PRIORITY
        } else {
            NORMAL_PRIORITY
        };
        let extras = (self.format == Format::Markdown).then_some(Extras {
            display: Display {
                content_type: "text/markdown",
            },
        });
        let body = Body {
            title: &message.title,
            // Gotify rejects an empty message.
            message: or_title(
                match self.format {
                    Format::Markdown => message.render_fields_light(),
                    Format::Plain => message.render_fields(Format::Plain),
                },
                message,
            ),
            priority,
            extras,
        };
        post_json(&self.endpoint, &body)
            .with_headers([(HeaderName::from_static("x-gotify-key"), self.key.clone())])
    }

    fn url(&self) -> &Url {
        &self.endpoint
    }
}
