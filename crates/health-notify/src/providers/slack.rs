//! The `slack` provider: a Slack incoming webhook with a header block and the fields in a
//! section beside a colour bar.

use std::{borrow::Cow, fmt};

use health_types::{TRUNCATION_MARKER, truncate};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError,
    providers::{HttpProvider, escape_html, http_url, or_title, post_json, shown},
};

/// Slack's limit on a header block's text, in characters.
const HEADER_LIMIT: usize = 150;
/// Slack's limit on a section block's text, in characters.
const SECTION_LIMIT: usize = 3000;

/// `slack` keys: `url` (the incoming-webhook URL).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (`https://hooks.slack.com/services/...`).
    pub url: String,
}

/// Shows only the URL's origin: the rest of it is the webhook's credential.
impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field("url", &format_args!("{}", shown(&self.url)))
            .finish()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    text: String,
    blocks: [Block<'a>; 1],
    attachments: [Attachment<'a>; 1],
}

#[derive(Serialize)]
struct Attachment<'a> {
    color: String,
    blocks: [Block<'a>; 1],
}

#[derive(Serialize)]
struct Block<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: Text<'a>,
}

#[derive(Serialize)]
struct Text<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: Cow<'a, str>,
}

/// Slack: an incoming webhook, `{"text", "blocks", "attachments"}`.
///
/// - `text`, the notification fallback, is the title with `&`, `<` and `>` escaped (Slack
///   reads it as mrkdwn and asks for those three to be escaped).
/// - `blocks` holds a `header` block with the title (`plain_text`, shown as written).
/// - Slack draws a colour bar only beside a (legacy, still supported) secondary
///   attachment, never beside top-level blocks, so the fields go in one attachment,
///   `{"color":"#rrggbb","blocks":[section]}`, coloured as the message. The section is
///   `mrkdwn` (`*Name:* value`, `& < >` escaped) for markdown and `plain_text` for plain,
///   cut to Slack's 3000 characters without splitting an escape such as `&amp;`.
pub(crate) struct SlackProvider {
    /// The incoming-webhook URL; its path holds the webhook's secret.
    url: Url,
    format: Format,
}

impl HttpProvider for SlackProvider {
    type Config = SlackConfig;

    fn try_new(config: &SlackConfig, format: Format) -> Result<Self, NotifyError> {
        let url = http_url("url", &config.url)?;
        Ok(SlackProvider { url, format })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let (kind, fields) = match self.format {
            Format::Markdown => {
                let lines: Vec<String> = message
                    .fields
                    .iter()
                    .map(|f| format!("*{}:* {}", escape_html(&f.name), escape_html(&f.value)))
                    .collect();
                // A section's text may not be empty.
                let text = if lines.is_empty() {
                    escape_html(&message.title)
                } else {
                    lines.join("\n")
                };
                ("mrkdwn", cut_escaped(&text, SECTION_LIMIT))
            }
            Format::Plain => {
                let text = or_title(message.render_fields(Format::Plain), message);
                ("plain_text", truncate(&text, SECTION_LIMIT).into_owned())
            }
        };
        let header = Block {
            kind: "header",
            text: Text {
                kind: "plain_text",
                text: truncate(&message.title, HEADER_LIMIT),
            },
        };
        let section = Block {
            kind: "section",
            text: Text {
                kind,
                text: fields.into(),
            },
        };
        let body = Body {
            text: escape_html(&message.title),
            blocks: [header],
            attachments: [Attachment {
                color: message.color.hex(),
                blocks: [section],
            }],
        };
        post_json(&self.url, &body)
    }

    fn url(&self) -> &Url {
        &self.url
    }
}

/// Cuts HTML-escaped text to `limit` characters like [`truncate`], but never through an
/// escape: a cut that would leave `&am` ends before the `&` instead. Every `&` in escaped
/// text starts an escape, so one with no `;` after it in what is kept was cut.
fn cut_escaped(text: &str, limit: usize) -> String {
    let cut = truncate(text, limit);
    let Some(kept) = cut.strip_suffix(TRUNCATION_MARKER) else {
        return cut.into_owned();
    };
    let kept = match kept.rfind('&') {
        Some(at) if !kept[at..].contains(';') => &kept[..at],
        _ => kept,
    };
    format!("{kept}{TRUNCATION_MARKER}")
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn body(format: Format, message: &Message) -> serde_json::Value {
        let config = SlackConfig {
            url: "https://hooks.slack.test/services/T/B/X".into(),
        };
        let request = SlackProvider::try_new(&config, format)
            .unwrap()
            .request(message);
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn the_fallback_text_is_escaped_and_the_header_is_not() {
        let message = Message::custom("Service down: a<b> & c", UNIX_EPOCH).with_field("x", "y");
        let body = body(Format::Markdown, &message);
        assert_eq!(body["text"], "Service down: a&lt;b&gt; &amp; c");
        assert_eq!(body["blocks"][0]["text"]["text"], "Service down: a<b> & c");
    }

    #[test]
    fn the_fields_sit_beside_a_bar_in_the_message_colour() {
        let message = Message::custom("t", UNIX_EPOCH)
            .with_field("Detail", "<down>")
            .with_color(crate::Color::RED);
        for format in [Format::Markdown, Format::Plain] {
            let body = body(format, &message);
            assert_eq!(body["blocks"].as_array().unwrap().len(), 1);
            let attachment = &body["attachments"][0];
            assert_eq!(attachment["color"], "#ff0000");
            assert_eq!(attachment["blocks"][0]["type"], "section");
        }
        let markdown = body(Format::Markdown, &message);
        assert_eq!(
            markdown["attachments"][0]["blocks"][0]["text"]["text"],
            "*Detail:* &lt;down&gt;"
        );
    }

    #[test]
    fn a_long_section_is_never_cut_through_an_escape() {
        // "*D:* " is 5 characters; each "&" becomes the 5 of "&amp;".
        for pad in 0..5 {
            let value = format!("{}{}", "x".repeat(pad), "&".repeat(1000));
            let message = Message::custom("t", UNIX_EPOCH).with_field("D", value);
            let body = body(Format::Markdown, &message);
            let text = body["attachments"][0]["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap();
            assert!(text.chars().count() <= SECTION_LIMIT, "{pad}");
            let kept = text.strip_suffix('…').unwrap();
            assert!(
                kept.ends_with("&amp;"),
                "{pad}: {}",
                &kept[kept.len() - 8..]
            );
        }
        assert_eq!(cut_escaped("a &lt; b", 8), "a &lt; b");
        assert_eq!(cut_escaped("a &lt; bc", 8), "a &lt; …");
        assert_eq!(cut_escaped("ab &lt; c", 5), "ab …");
    }
}
