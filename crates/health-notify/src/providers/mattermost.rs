//! The `mattermost` provider: a Mattermost incoming webhook, one message attachment per
//! message.
//!
//! Why an attachment and no `text`: Mattermost shows an attachment as a card with a
//! coloured left border, a bold title and a table of fields, which reads like the other
//! chat providers (Discord's embed, Slack's blocks) and shows red, green or orange at a
//! glance. The attachment's `fallback` (the title) is what notifications and clients
//! without formatting show, so a `text` would only repeat the title above the card.
//!
//! Mattermost renders markdown in the attachment's title and in field titles and values
//! (and has no plain mode), so all three are markdown-escaped and show as written
//! whatever the notifier's `format`; the format does not apply. The `fallback` is shown
//! as plain text (in notifications) and is sent as written.

use std::{borrow::Cow, fmt};

use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError,
    message::escape_markdown,
    providers::{HttpProvider, http_url, post_json, shown},
};

/// Mattermost's limit on a post's message, in characters; no text of one attachment is
/// longer (Mattermost documents no smaller limit for attachment titles or fields).
const TEXT_LIMIT: usize = 16_383;

/// `mattermost` keys: `url` (the incoming-webhook URL) and the optional overrides
/// `username`, `icon_url` and `channel`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MattermostConfig {
    /// The incoming-webhook URL (`https://mattermost.example.com/hooks/<key>`).
    pub url: String,
    /// Posts under this name instead of the webhook's (when the server allows
    /// overriding it).
    #[serde(default)]
    pub username: Option<String>,
    /// Posts with this profile picture instead of the webhook's (when the server allows
    /// overriding it).
    #[serde(default)]
    pub icon_url: Option<String>,
    /// Posts in this channel (its name, e.g. `town-square`, or `@user` for a direct
    /// message) instead of the webhook's.
    #[serde(default)]
    pub channel: Option<String>,
}

/// Shows only the URL's origin: the rest of it is the webhook's credential.
impl fmt::Debug for MattermostConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MattermostConfig")
            .field("url", &format_args!("{}", shown(&self.url)))
            .field("username", &self.username)
            .field("icon_url", &self.icon_url)
            .field("channel", &self.channel)
            .finish()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon_url: Option<&'a str>,
    attachments: [Attachment<'a>; 1],
}

#[derive(Serialize)]
struct Attachment<'a> {
    fallback: Cow<'a, str>,
    color: String,
    title: String,
    fields: Vec<AttachmentField>,
}

#[derive(Serialize)]
struct AttachmentField {
    short: bool,
    title: String,
    value: String,
}

/// Mattermost: an incoming webhook, `{"attachments":[{"fallback","color","title","fields"}]}`
/// and the `channel`, `username` and `icon_url` overrides when set.
///
/// `fallback` is the title as written and `title` the title markdown-escaped, `color` the
/// message's `#rrggbb`, and each field
/// `{"short":false,"title":<name, markdown-escaped>,"value":<value, markdown-escaped>}`.
/// Text is cut to 16383 characters, Mattermost's limit on a post.
pub(crate) struct MattermostProvider {
    /// The incoming-webhook URL; its path holds the webhook's key.
    url: Url,
    username: Option<String>,
    icon_url: Option<String>,
    channel: Option<String>,
}

impl HttpProvider for MattermostProvider {
    type Config = MattermostConfig;

    fn try_new(config: &MattermostConfig, _: Format) -> Result<Self, NotifyError> {
        let url = http_url("url", &config.url)?;
        if let Some(username) = &config.username
            && username.trim().is_empty()
        {
            return Err(NotifyError::config("username", "must not be empty"));
        }
        if let Some(icon_url) = &config.icon_url {
            http_url("icon_url", icon_url)?;
        }
        if let Some(channel) = &config.channel
            && (channel.is_empty() || channel.chars().any(char::is_whitespace))
        {
            return Err(NotifyError::config(
                "channel",
                format!("{channel:?} must be a channel name like `town-square` or `@user`"),
            ));
        }
        Ok(MattermostProvider {
            url,
            username: config.username.clone(),
            icon_url: config.icon_url.clone(),
            channel: config.channel.clone(),
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let fields = message
            .fields
            .iter()
            .map(|field| AttachmentField {
                short: false,
                title: escape_text(&field.name),
                value: escape_value(&field.value),
            })
            .collect();
        let attachment = Attachment {
            fallback: truncate(&message.title, TEXT_LIMIT),
            color: message.color.hex(),
            title: escape_text(&message.title),
            fields,
        };
        let body = Body {
            channel: self.channel.as_deref(),
            username: self.username.as_deref(),
            icon_url: self.icon_url.as_deref(),
            attachments: [attachment],
        };
        post_json(&self.url, &body)
    }

    fn url(&self) -> &Url {
        &self.url
    }
}

/// A field value as [`escape_text`] makes it; an empty value becomes `-`, as an empty
/// cell reads like a missing field.
fn escape_value(value: &str) -> String {
    if value.trim().is_empty() {
        return "-".to_owned();
    }
    escape_text(value)
}

/// Text markdown-escaped, inside [`TEXT_LIMIT`]: it is cut to half the limit first
/// (escaping at most doubles it, and no escape is split).
fn escape_text(text: &str) -> String {
    escape_markdown(&truncate(text, TEXT_LIMIT / 2)).into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::Color;

    fn config() -> MattermostConfig {
        MattermostConfig {
            url: "https://chat.example.test/hooks/abc".into(),
            username: None,
            icon_url: None,
            channel: None,
        }
    }

    fn body(config: &MattermostConfig, message: &Message) -> serde_json::Value {
        let request = MattermostProvider::try_new(config, Format::Markdown)
            .unwrap()
            .request(message);
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn values_are_escaped_and_overrides_sent_when_set() {
        let message = Message::custom("Deploy *done*", UNIX_EPOCH)
            .with_color(Color::GREEN)
            .with_field("Detail", "a*b_c [x](y) `z`")
            .with_field("Empty", "")
            .with_field("my_field *x*", "v");
        let plain = body(&config(), &message);
        assert_eq!(
            plain,
            serde_json::json!({"attachments": [{
                "fallback": "Deploy *done*",
                "color": "#00ff00",
                "title": "Deploy \\*done\\*",
                "fields": [
                    {"short": false, "title": "Detail", "value": "a\\*b\\_c \\[x\\](y) \\`z\\`"},
                    {"short": false, "title": "Empty", "value": "-"},
                    {"short": false, "title": "my\\_field \\*x\\*", "value": "v"},
                ],
            }]})
        );
        let overrides = MattermostConfig {
            username: Some("healthd".into()),
            icon_url: Some("https://example.test/i.png".into()),
            channel: Some("ops".into()),
            ..config()
        };
        let body = body(&overrides, &message);
        assert_eq!(body["username"], "healthd");
        assert_eq!(body["icon_url"], "https://example.test/i.png");
        assert_eq!(body["channel"], "ops");
    }

    #[test]
    fn long_text_stays_inside_the_post_limit() {
        let stars = "*".repeat(40_000);
        let message = Message::custom(&stars, UNIX_EPOCH).with_field(&stars, &stars);
        let body = body(&config(), &message);
        let attachment = &body["attachments"][0];
        for text in [
            &attachment["fallback"],
            &attachment["title"],
            &attachment["fields"][0]["title"],
            &attachment["fields"][0]["value"],
        ] {
            let text = text.as_str().unwrap();
            assert!(text.chars().count() <= TEXT_LIMIT, "{}", text.len());
        }
    }

    #[test]
    fn optional_keys_are_checked() {
        let bad = [
            MattermostConfig {
                username: Some(" ".into()),
                ..config()
            },
            MattermostConfig {
                icon_url: Some("not a url".into()),
                ..config()
            },
            MattermostConfig {
                channel: Some("town square".into()),
                ..config()
            },
        ];
        for (config, key) in bad.iter().zip(["username", "icon_url", "channel"]) {
            let err = MattermostProvider::try_new(config, Format::Plain)
                .err()
                .unwrap();
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        }
    }
}
