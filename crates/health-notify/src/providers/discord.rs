//! The `discord` provider: one embed per message, posted to a Discord webhook URL.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    HttpSend, Message, Notifier, NotifyError,
    http::default_sender,
    providers::{http_url, post_json, to_json},
};

/// Discord's limit on an embed title, in characters.
pub const DISCORD_TITLE_LIMIT: usize = 256;
/// Discord's limit on a field name, in characters.
pub const DISCORD_FIELD_NAME_LIMIT: usize = 256;
/// Discord's limit on a field value, in characters.
pub const DISCORD_FIELD_VALUE_LIMIT: usize = 1024;
/// Discord's limit on the number of fields in an embed.
pub const DISCORD_FIELD_COUNT_LIMIT: usize = 25;

/// `discord` keys: `url` (the webhook URL).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The webhook URL (`https://discord.com/api/webhooks/<id>/<token>`).
    pub url: String,
}

impl DiscordConfig {
    /// Checks every key.
    pub fn validate(&self) -> Result<(), NotifyError> {
        http_url("url", &self.url).map(drop)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    embeds: [Embed<'a>; 1],
}

#[derive(Serialize)]
struct Embed<'a> {
    title: std::borrow::Cow<'a, str>,
    color: u32,
    fields: Vec<EmbedField<'a>>,
}

#[derive(Serialize)]
struct EmbedField<'a> {
    name: std::borrow::Cow<'a, str>,
    value: std::borrow::Cow<'a, str>,
    inline: bool,
}

/// Sends messages to a Discord webhook as
/// `{"embeds":[{"title","color":<int>,"fields":[{"name","value","inline":false}]}]}`.
///
/// Titles are cut to 256 characters, field values to 1024, with a `…` marker; an empty
/// value is sent as `-` because Discord rejects empty field values. At most 25 fields are
/// sent. Field values are sent as written (the `format` key does not apply).
#[derive(Clone)]
pub struct DiscordNotifier {
    name: String,
    url: Url,
    http: Arc<dyn HttpSend>,
}

impl DiscordNotifier {
    /// A Discord notifier named `name`; fails when the config breaks a rule.
    pub fn try_new(name: impl Into<String>, config: &DiscordConfig) -> Result<Self, NotifyError> {
        Ok(DiscordNotifier {
            name: name.into(),
            url: http_url("url", &config.url)?,
            http: default_sender(),
        })
    }

    /// Sends through `http` instead of the default hyper client.
    pub fn with_sender(mut self, http: Arc<dyn HttpSend>) -> Self {
        self.http = http;
        self
    }

    /// The exact JSON body sent for `message`.
    pub fn body(message: &Message) -> String {
        let fields = message
            .fields
            .iter()
            .take(DISCORD_FIELD_COUNT_LIMIT)
            .map(|field| EmbedField {
                name: non_empty(truncate(&field.name, DISCORD_FIELD_NAME_LIMIT)),
                value: non_empty(truncate(&field.value, DISCORD_FIELD_VALUE_LIMIT)),
                inline: false,
            })
            .collect();
        let body = Body {
            embeds: [Embed {
                title: truncate(&message.title, DISCORD_TITLE_LIMIT),
                color: message.color.rgb(),
                fields,
            }],
        };
        to_json(&body)
    }
}

fn non_empty(text: std::borrow::Cow<'_, str>) -> std::borrow::Cow<'_, str> {
    if text.trim().is_empty() {
        "-".into()
    } else {
        text
    }
}

impl fmt::Debug for DiscordNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL's path holds the webhook's token.
        f.debug_struct("DiscordNotifier")
            .field("name", &self.name)
            .field("url", &self.url.origin().ascii_serialization())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for DiscordNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &'static str {
        "discord"
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let request = post_json(self.url.clone(), Self::body(message));
        self.http.send(request).await?.into_result()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn long_text_is_cut_to_discord_limits() {
        let message = Message::custom("t".repeat(300), UNIX_EPOCH)
            .with_field("Detail", "d".repeat(2000))
            .with_field("Empty", "");
        let body: serde_json::Value =
            serde_json::from_str(&DiscordNotifier::body(&message)).unwrap();
        let embed = &body["embeds"][0];
        let title = embed["title"].as_str().unwrap();
        assert_eq!(title.chars().count(), 256);
        assert!(title.ends_with('…'));
        let value = embed["fields"][0]["value"].as_str().unwrap();
        assert_eq!(value.chars().count(), 1024);
        assert!(value.ends_with('…'));
        assert_eq!(embed["fields"][1]["value"], "-");
        assert_eq!(embed["color"], 0x808080);
    }
}
