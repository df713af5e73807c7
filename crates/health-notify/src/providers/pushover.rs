//! The `pushover` provider: a form posted to `<url>/1/messages.json`.

use health_types::truncate;
use http::Method;
use serde::Deserialize;
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError, Secret,
    providers::{HttpProvider, base_url, join, or_title, required},
};

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

/// Pushover's address when `url` is not set.
fn default_url() -> String {
    "https://api.pushover.net".to_owned()
}

/// Pushover: a form with `token`, `user`, `title`, `message` and `priority`.
///
/// The message is the plain rendering of the fields (Pushover does not render markdown,
/// so `format` does not apply); priority is `1` for down and stopped, `0` otherwise.
/// Titles are cut to 250 characters and messages to 1024.
pub(crate) struct PushoverProvider {
    /// `<url>/1/messages.json`.
    endpoint: Url,
    token: Secret,
    user: Secret,
}

impl HttpProvider for PushoverProvider {
    type Config = PushoverConfig;

    fn try_new(config: &PushoverConfig, _: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        for (key, value) in [("token", &config.token), ("user", &config.user)] {
            required(key, value.expose())?;
        }
        Ok(PushoverProvider {
            endpoint: join(&base, "/1/messages.json")?,
            token: config.token.clone(),
            user: config.user.clone(),
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        // Pushover rejects an empty message.
        let text = or_title(message.render_fields(Format::Plain), message);
        let priority = if message.level.is_urgent() { "1" } else { "0" };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", self.token.expose())
            .append_pair("user", self.user.expose())
            .append_pair("title", &truncate(&message.title, TITLE_LIMIT))
            .append_pair("message", &truncate(&text, MESSAGE_LIMIT))
            .append_pair("priority", priority)
            .finish();
        HttpRequest::new(Method::POST, self.endpoint.clone())
            .with_body("application/x-www-form-urlencoded", form)
    }

    fn url(&self) -> &Url {
        &self.endpoint
    }
}
