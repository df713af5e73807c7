//! The `slack` provider: a Slack incoming webhook with a header block and a text section.

use std::borrow::Cow;

use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError,
    providers::{HttpProvider, escape_html, http_url, or_title, post_json},
};

/// Slack's limit on a header block's text, in characters.
const HEADER_LIMIT: usize = 150;
/// Slack's limit on a section block's text, in characters.
const SECTION_LIMIT: usize = 3000;

/// `slack` keys: `url` (the incoming-webhook URL).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (`https://hooks.slack.com/services/...`).
    pub url: String,
}

#[derive(Serialize)]
struct Body<'a> {
    text: &'a str,
    blocks: [Block<'a>; 2],
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

/// Slack: an incoming webhook, `{"text", "blocks"}`.
///
/// `text` (the notification fallback) is the title; the blocks are a `header` with the
/// title and a `section` with the fields: `mrkdwn` (`*Name:* value`) for markdown,
/// `plain_text` for plain.
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
                ("mrkdwn", lines.join("\n"))
            }
            Format::Plain => ("plain_text", message.render_fields(Format::Plain)),
        };
        // A section's text may not be empty.
        let fields = or_title(fields, message);
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
                text: truncate(&fields, SECTION_LIMIT),
            },
        };
        let body = Body {
            text: &message.title,
            blocks: [header, section],
        };
        post_json(&self.url, &body)
    }

    fn url(&self) -> &Url {
        &self.url
    }
}
