//! The `gotify` provider: `POST <url>/message` with an application token.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, HttpSend, Message, Notifier, NotifyError, Secret,
    http::default_sender,
    providers::{base_url, check_token, join, post_json, to_json, token_header},
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

impl GotifyConfig {
    /// Checks every key.
    pub fn validate(&self) -> Result<(), NotifyError> {
        self.endpoint().map(drop)
    }

    fn endpoint(&self) -> Result<Url, NotifyError> {
        let base = base_url("url", &self.url)?;
        check_token(&self.token)?;
        join(&base, "/message")
    }
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

/// Pushes messages to a Gotify server as `{"title","message","priority"}` with
/// `X-Gotify-Key: <token>`.
///
/// Priority is 8 for down and stopped, 4 otherwise. With the markdown format the body
/// also carries `"extras":{"client::display":{"contentType":"text/markdown"}}` so clients
/// render it.
#[derive(Clone)]
pub struct GotifyNotifier {
    name: String,
    format: Format,
    endpoint: Url,
    /// The `X-Gotify-Key` value, built once from the checked token.
    key: HeaderValue,
    http: Arc<dyn HttpSend>,
}

impl GotifyNotifier {
    /// A Gotify notifier named `name`; fails when the config breaks a rule.
    pub fn try_new(
        name: impl Into<String>,
        format: Format,
        config: &GotifyConfig,
    ) -> Result<Self, NotifyError> {
        Ok(GotifyNotifier {
            name: name.into(),
            format,
            endpoint: config.endpoint()?,
            key: token_header("", &config.token)?,
            http: default_sender(),
        })
    }

    /// Sends through `http` instead of the default hyper client.
    pub fn with_sender(mut self, http: Arc<dyn HttpSend>) -> Self {
        self.http = http;
        self
    }

    /// The exact JSON body sent for `message`.
    pub fn body(&self, message: &Message) -> String {
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
        to_json(&Body {
            title: &message.title,
            message: message.render_fields(self.format),
            priority,
            extras,
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let mut request = post_json(self.endpoint.clone(), self.body(message));
        request
            .headers
            .insert(HeaderName::from_static("x-gotify-key"), self.key.clone());
        request
    }
}

impl fmt::Debug for GotifyNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GotifyNotifier")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for GotifyNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &'static str {
        "gotify"
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let request = self.request(message);
        self.http.send(request).await?.into_result()
    }
}
