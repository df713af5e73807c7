//! The `discord` provider: one embed per message, posted to a Discord webhook URL.

use std::borrow::Cow;

use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError,
    providers::{HttpProvider, http_url, post_json},
};

/// Discord's limit on an embed title, in characters.
const TITLE_LIMIT: usize = 256;
/// Discord's limit on a field name, in characters.
const FIELD_NAME_LIMIT: usize = 256;
/// Discord's limit on a field value, in characters.
const FIELD_VALUE_LIMIT: usize = 1024;
/// Discord's limit on the number of fields in an embed.
const FIELD_COUNT_LIMIT: usize = 25;

/// `discord` keys: `url` (the webhook URL).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The webhook URL (`https://discord.com/api/webhooks/<id>/<token>`).
    pub url: String,
}

#[derive(Serialize)]
struct Body<'a> {
    embeds: [Embed<'a>; 1],
}

#[derive(Serialize)]
struct Embed<'a> {
    title: Cow<'a, str>,
    color: u32,
    fields: Vec<EmbedField<'a>>,
}

#[derive(Serialize)]
struct EmbedField<'a> {
    name: Cow<'a, str>,
    value: Cow<'a, str>,
    inline: bool,
}

/// Discord: `{"embeds":[{"title","color":<int>,"fields":[{"name","value","inline":false}]}]}`.
///
/// Titles are cut to 256 characters, field values to 1024, with a `…` marker; an empty
/// value is sent as `-` because Discord rejects empty field values. At most 25 fields are
/// sent. Field values are sent as written (the `format` key does not apply).
pub(crate) struct DiscordProvider {
    /// The webhook URL; its path holds the webhook's token.
    url: Url,
}

impl HttpProvider for DiscordProvider {
    type Config = DiscordConfig;

    fn try_new(config: &DiscordConfig, _: Format) -> Result<Self, NotifyError> {
        let url = http_url("url", &config.url)?;
        Ok(DiscordProvider { url })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let fields = message
            .fields
            .iter()
            .take(FIELD_COUNT_LIMIT)
            .map(|field| EmbedField {
                name: non_empty(truncate(&field.name, FIELD_NAME_LIMIT)),
                value: non_empty(truncate(&field.value, FIELD_VALUE_LIMIT)),
                inline: false,
            })
            .collect();
        let embed = Embed {
            title: truncate(&message.title, TITLE_LIMIT),
            color: message.color.rgb(),
            fields,
        };
        post_json(&self.url, &Body { embeds: [embed] })
    }

    fn url(&self) -> &Url {
        &self.url
    }
}

fn non_empty(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.trim().is_empty() {
        "-".into()
    } else {
        text
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
        let config = DiscordConfig {
            url: "https://discord.test/api/webhooks/1/x".into(),
        };
        let request = DiscordProvider::try_new(&config, Format::Plain)
            .unwrap()
            .request(&message);
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
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
