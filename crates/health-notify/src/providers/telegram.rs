//! The `telegram` provider: the Bot API's `sendMessage`.

use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError, Secret,
    providers::{HttpProvider, base_url, escape_html, join, post_json},
};

/// Telegram's limit on a message's text, in characters.
const TEXT_LIMIT: usize = 4096;
/// Values are cut to this many characters before escaping, which keeps the usual
/// messages well inside [`TEXT_LIMIT`] without cutting through an escape sequence.
const VALUE_LIMIT: usize = 1024;

/// `telegram` keys: `token` (the bot token), `chat_id`, `url`
/// (`https://api.telegram.org`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot token, e.g. `123456:ABC-DEF...`.
    pub token: Secret,
    /// The chat: a numeric id or an `@channelusername`.
    pub chat_id: ChatId,
    /// The Bot API's address (default `https://api.telegram.org`).
    #[serde(default = "default_url")]
    pub url: String,
}

/// The Bot API's address when `url` is not set.
fn default_url() -> String {
    "https://api.telegram.org".to_owned()
}

/// A Telegram chat: a numeric id or a name, sent as given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatId {
    /// A numeric chat id (negative for groups).
    Id(i64),
    /// A name such as `@channelusername`, or an id written as a string.
    Name(String),
}

#[derive(Serialize)]
struct Body<'a> {
    chat_id: &'a ChatId,
    text: String,
    parse_mode: &'static str,
    link_preview_options: LinkPreviewOptions,
    disable_web_page_preview: bool,
}

/// The Bot API's `LinkPreviewOptions` (Bot API 7.0).
#[derive(Serialize)]
struct LinkPreviewOptions {
    is_disabled: bool,
}

/// Telegram: a bot's `sendMessage`, `{"chat_id","text","parse_mode"}` to
/// `<url>/bot<token>/sendMessage`.
///
/// Markdown uses `parse_mode` `MarkdownV2` (title and field names in bold, every special
/// character escaped); plain uses `HTML` with the plain text escaped, so it shows exactly
/// as written.
///
/// Link previews are off: a preview of the monitored URL would push the fields out of
/// sight and fetch the page from Telegram's servers. The body says so twice:
/// `"link_preview_options":{"is_disabled":true}` (Bot API 7.0 and later, which reads it
/// first) and the older `"disable_web_page_preview":true`, which Bot API servers still
/// read when `link_preview_options` is absent, so a self-hosted server older than 7.0
/// (which ignores the unknown key) also leaves previews off.
pub(crate) struct TelegramProvider {
    /// `<url>/bot<token>/sendMessage`: its path holds the bot token.
    endpoint: Url,
    format: Format,
    chat_id: ChatId,
}

impl HttpProvider for TelegramProvider {
    type Config = TelegramConfig;

    fn try_new(config: &TelegramConfig, format: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        let token = config.token.expose();
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-');
        if token.is_empty() || !token.bytes().all(valid) {
            return Err(NotifyError::config(
                "token",
                "must be a bot token like `123456:ABC-DEF...`",
            ));
        }
        if let ChatId::Name(name) = &config.chat_id
            && name.trim().is_empty()
        {
            return Err(NotifyError::config("chat_id", "must not be empty"));
        }
        Ok(TelegramProvider {
            endpoint: join(&base, &format!("/bot{token}/sendMessage"))?,
            format,
            chat_id: config.chat_id.clone(),
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let (parse_mode, text) = self.text(message);
        let body = Body {
            chat_id: &self.chat_id,
            text,
            parse_mode,
            link_preview_options: LinkPreviewOptions { is_disabled: true },
            disable_web_page_preview: true,
        };
        post_json(&self.endpoint, &body)
    }

    fn url(&self) -> &Url {
        &self.endpoint
    }
}

impl TelegramProvider {
    /// The `parse_mode` and the text for `message`, inside Telegram's limit.
    fn text(&self, message: &Message) -> (&'static str, String) {
        let (parse_mode, title) = match self.format {
            Format::Markdown => (
                "MarkdownV2",
                format!(
                    "*{}*",
                    escape_markdown_v2(&truncate(&message.title, VALUE_LIMIT))
                ),
            ),
            Format::Plain => ("HTML", escape_html(&truncate(&message.title, VALUE_LIMIT))),
        };
        let mut lines: Vec<String> = message
            .fields
            .iter()
            .map(|field| {
                let name = truncate(&field.name, VALUE_LIMIT);
                let value = truncate(&field.value, VALUE_LIMIT);
                match self.format {
                    Format::Markdown => format!(
                        "*{}:* {}",
                        escape_markdown_v2(&name),
                        escape_markdown_v2(&value)
                    ),
                    Format::Plain => format!("{}: {}", escape_html(&name), escape_html(&value)),
                }
            })
            .collect();
        // Drop whole trailing fields rather than cut through markup. The count is the
        // title, the blank line, and each line with its newline (one more than needed).
        let length = |lines: &[String]| {
            title.chars().count() + 2 + lines.iter().map(|l| l.chars().count() + 1).sum::<usize>()
        };
        while !lines.is_empty() && length(&lines) > TEXT_LIMIT {
            lines.pop();
        }
        let text = if lines.is_empty() {
            title
        } else {
            format!("{title}\n\n{}", lines.join("\n"))
        };
        (parse_mode, text)
    }
}

/// Escapes every character MarkdownV2 reserves.
fn escape_markdown_v2(text: &str) -> String {
    const SPECIAL: &str = "_*[]()~`>#+-=|{}.!\\";
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    /// The JSON body sent for `message` to chat -42 in `format`.
    fn body(format: Format, message: &Message) -> serde_json::Value {
        let config = TelegramConfig {
            token: Secret::from("123:abc"),
            chat_id: ChatId::Id(-42),
            url: default_url(),
        };
        let provider = TelegramProvider::try_new(&config, format).unwrap();
        serde_json::from_slice(&provider.request(message).body).unwrap()
    }

    #[test]
    fn markdown_v2_escapes_everything_reserved() {
        let message = Message::custom("Service down: my-api", UNIX_EPOCH)
            .with_field("URL", "http://a.test/x_y")
            .with_field("Detail", "HTTP 503 (down)!");
        let body = body(Format::Markdown, &message);
        assert_eq!(body["parse_mode"], "MarkdownV2");
        assert_eq!(body["chat_id"], -42);
        assert_eq!(
            body["text"],
            "*Service down: my\\-api*\n\n*URL:* http://a\\.test/x\\_y\n*Detail:* HTTP 503 \\(down\\)\\!"
        );
    }

    #[test]
    fn link_previews_are_off_for_new_and_old_bot_api_servers() {
        let message = Message::custom("t", UNIX_EPOCH).with_field("URL", "https://a.test/");
        for format in [Format::Markdown, Format::Plain] {
            let body = body(format, &message);
            assert_eq!(body["link_preview_options"]["is_disabled"], true);
            assert_eq!(body["disable_web_page_preview"], true);
        }
    }

    #[test]
    fn plain_is_html_escaped() {
        let message = Message::custom("a <b> & c", UNIX_EPOCH).with_field("Detail", "x<y");
        let body = body(Format::Plain, &message);
        assert_eq!(body["parse_mode"], "HTML");
        assert_eq!(body["text"], "a &lt;b&gt; &amp; c\n\nDetail: x&lt;y");
    }

    #[test]
    fn long_messages_drop_trailing_fields() {
        let mut message = Message::custom("t", UNIX_EPOCH);
        for i in 0..10 {
            message = message.with_field(format!("F{i}"), "v".repeat(2000));
        }
        let body = body(Format::Plain, &message);
        let text = body["text"].as_str().unwrap();
        assert!(text.chars().count() <= TEXT_LIMIT);
        assert!(text.contains("F2: "), "{text}");
        assert!(!text.contains("F4: "));
    }
}
