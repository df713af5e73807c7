//! The `pushover` provider: a form posted to `<url>/1/messages.json`.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use health_types::truncate;
use http::Method;
use serde::Deserialize;
use url::Url;

use crate::{
    Format, HttpRequest, HttpSend, Message, Notifier, NotifyError, Secret,
    http::default_sender,
    providers::{base_url, join, or_title, required},
};

/// Pushover's default address.
pub const PUSHOVER_DEFAULT_URL: &str = "https://api.pushover.net";
/// Pushover's limit on a title, in characters.
const TITLE_LIMIT: usize = 250;
/// Pushover's limit on a message, in characters.
const MESSAGE_LIMIT: usize = 1024;

/// `pushover` keys: `token` (the application token), `user` (the user or group key),
/// `url` (`https://api.pushover.net`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushoverConfig {
    /// The application's API token.
    pub token: Secret,
    /// The user (or group) key.
    pub user: Secret,
    /// Pushover's address (default `https://api.pushover.net`).
    #[serde(default = "default_url")]
    pub url: String,
}

fn default_url() -> String {
    PUSHOVER_DEFAULT_URL.to_owned()
}

impl PushoverConfig {
    /// Checks every key.
    pub fn validate(&self) -> Result<(), NotifyError> {
        self.endpoint().map(drop)
    }

    fn endpoint(&self) -> Result<Url, NotifyError> {
        let base = base_url("url", &self.url)?;
        for (key, value) in [("token", &self.token), ("user", &self.user)] {
            required(key, value.expose())?;
        }
        join(&base, "/1/messages.json")
    }
}

/// Sends messages to Pushover as a form: `token`, `user`, `title`, `message`,
/// `priority`.
///
/// The message is the plain rendering of the fields (Pushover does not render markdown,
/// so `format` does not apply); priority is `1` for down and stopped, `0` otherwise.
/// Titles are cut to 250 characters and messages to 1024.
#[derive(Clone)]
pub struct PushoverNotifier {
    name: String,
    endpoint: Url,
    token: Secret,
    user: Secret,
    http: Arc<dyn HttpSend>,
}

impl PushoverNotifier {
    /// A Pushover notifier named `name`; fails when the config breaks a rule.
    pub fn try_new(name: impl Into<String>, config: &PushoverConfig) -> Result<Self, NotifyError> {
        Ok(PushoverNotifier {
            name: name.into(),
            endpoint: config.endpoint()?,
            token: config.token.clone(),
            user: config.user.clone(),
            http: default_sender(),
        })
    }

    /// Sends through `http` instead of the default hyper client.
    pub fn with_sender(mut self, http: Arc<dyn HttpSend>) -> Self {
        self.http = http;
        self
    }

    /// The exact form body sent for `message`.
    pub fn body(&self, message: &Message) -> String {
        // Pushover rejects an empty message.
        let text = or_title(message.render_fields(Format::Plain), message);
        let priority = if message.level.is_urgent() { "1" } else { "0" };
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", self.token.expose())
            .append_pair("user", self.user.expose())
            .append_pair("title", &truncate(&message.title, TITLE_LIMIT))
            .append_pair("message", &truncate(&text, MESSAGE_LIMIT))
            .append_pair("priority", priority)
            .finish()
    }
}

impl fmt::Debug for PushoverNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushoverNotifier")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for PushoverNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &'static str {
        "pushover"
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let request = HttpRequest::new(Method::POST, self.endpoint.clone())
            .with_body("application/x-www-form-urlencoded", self.body(message));
        self.http.send(request).await?.into_result()
    }
}
