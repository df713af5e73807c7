//! The `telegram` provider: the Bot API's `sendMessage`.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpSend, Message, Notifier, NotifyError, Secret,
    http::default_sender,
    providers::{base_url, escape_html, join, post_json, to_json},
};

/// The Bot API's default address.
pub const TELEGRAM_DEFAULT_URL: &str = "https://api.telegram.org";
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

fn default_url() -> String {
    TELEGRAM_DEFAULT_URL.to_owned()
}

impl TelegramConfig {
    /// Checks every key.
    pub fn validate(&self) -> Result<(), NotifyError> {
        self.endpoint().map(drop)
    }

    fn endpoint(&self) -> Result<Url, NotifyError> {
        let base = base_url("url", &self.url)?;
        let token = self.token.expose();
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-');
        if token.is_empty() || !token.bytes().all(valid) {
            return Err(NotifyError::config(
                "token",
                "must be a bot token like `123456:ABC-DEF...`",
            ));
        }
        if let ChatId::Name(name) = &self.chat_id
            && name.trim().is_empty()
        {
            return Err(NotifyError::config("chat_id", "must not be empty"));
        }
        join(&base, &format!("/bot{token}/sendMessage"))
    }
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
}

/// Sends messages through a Telegram bot as `{"chat_id","text","parse_mode"}` to
/// `<url>/bot<token>/sendMessage`.
///
/// Markdown uses `parse_mode` `MarkdownV2` (title and field names in bold, every special
/// character escaped); plain uses `HTML` with the plain text escaped, so it shows exactly
/// as written.
#[derive(Clone)]
pub struct TelegramNotifier {
    name: String,
    format: Format,
    endpoint: Url,
    chat_id: ChatId,
    http: Arc<dyn HttpSend>,
}

impl TelegramNotifier {
    /// A Telegram notifier named `name`; fails when the config breaks a rule.
    pub fn try_new(
        name: impl Into<String>,
        format: Format,
        config: &TelegramConfig,
    ) -> Result<Self, NotifyError> {
        Ok(TelegramNotifier {
            name: name.into(),
            format,
            endpoint: config.endpoint()?,
            chat_id: config.chat_id.clone(),
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
        to_json(&Body {
            chat_id: &self.chat_id,
            text,
            parse_mode,
        })
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

impl fmt::Debug for TelegramNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The endpoint's path holds the bot token.
        f.debug_struct("TelegramNotifier")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("url", &self.endpoint.origin().ascii_serialization())
            .field("chat_id", &self.chat_id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for TelegramNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &'static str {
        "telegram"
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let request = post_json(self.endpoint.clone(), self.body(message));
        self.http.send(request).await?.into_result()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn notifier(format: Format) -> TelegramNotifier {
        let config = TelegramConfig {
            token: Secret::from("123:abc"),
            chat_id: ChatId::Id(-42),
            url: default_url(),
        };
        TelegramNotifier::try_new("tg", format, &config).unwrap()
    }

    #[test]
    fn markdown_v2_escapes_everything_reserved() {
        let message = Message::custom("Service down: my-api", UNIX_EPOCH)
            .with_field("URL", "http://a.test/x_y")
            .with_field("Detail", "HTTP 503 (down)!");
        let body: serde_json::Value =
            serde_json::from_str(&notifier(Format::Markdown).body(&message)).unwrap();
        assert_eq!(body["parse_mode"], "MarkdownV2");
        assert_eq!(body["chat_id"], -42);
        assert_eq!(
            body["text"],
            "*Service down: my\\-api*\n\n*URL:* http://a\\.test/x\\_y\n*Detail:* HTTP 503 \\(down\\)\\!"
        );
    }

    #[test]
    fn plain_is_html_escaped() {
        let message = Message::custom("a <b> & c", UNIX_EPOCH).with_field("Detail", "x<y");
        let body: serde_json::Value =
            serde_json::from_str(&notifier(Format::Plain).body(&message)).unwrap();
        assert_eq!(body["parse_mode"], "HTML");
        assert_eq!(body["text"], "a &lt;b&gt; &amp; c\n\nDetail: x&lt;y");
    }

    #[test]
    fn long_messages_drop_trailing_fields() {
        let mut message = Message::custom("t", UNIX_EPOCH);
        for i in 0..10 {
            message = message.with_field(format!("F{i}"), "v".repeat(2000));
        }
        let body: serde_json::Value =
            serde_json::from_str(&notifier(Format::Plain).body(&message)).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.chars().count() <= TEXT_LIMIT);
        assert!(text.contains("F2: "), "{text}");
        assert!(!text.contains("F4: "));
    }
}
