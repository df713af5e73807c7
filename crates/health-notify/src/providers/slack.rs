//! The `slack` provider: a Slack incoming webhook with a header block and a text section.

use std::{borrow::Cow, fmt, sync::Arc};

use async_trait::async_trait;
use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpSend, Message, Notifier, NotifyError,
    http::default_sender,
    providers::{escape_html, http_url, or_title, post_json, to_json},
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

impl SlackConfig {
    /// Checks every key.
    pub fn validate(&self) -> Result<(), NotifyError> {
        http_url("url", &self.url).map(drop)
    }
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

/// Sends messages to a Slack incoming webhook as `{"text", "blocks"}`.
///
/// `text` (the notification fallback) is the title; the blocks are a `header` with the
/// title and a `section` with the fields: `mrkdwn` (`*Name:* value`) for markdown,
/// `plain_text` for plain.
#[derive(Clone)]
pub struct SlackNotifier {
    name: String,
    format: Format,
    url: Url,
    http: Arc<dyn HttpSend>,
}

impl SlackNotifier {
    /// A Slack notifier named `name`; fails when the config breaks a rule.
    pub fn try_new(
        name: impl Into<String>,
        format: Format,
        config: &SlackConfig,
    ) -> Result<Self, NotifyError> {
        Ok(SlackNotifier {
            name: name.into(),
            format,
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
    pub fn body(&self, message: &Message) -> String {
        let (kind, section) = match self.format {
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
        let section = or_title(section, message);
        let body = Body {
            text: &message.title,
            blocks: [
                Block {
                    kind: "header",
                    text: Text {
                        kind: "plain_text",
                        text: truncate(&message.title, HEADER_LIMIT),
                    },
                },
                Block {
                    kind: "section",
                    text: Text {
                        kind,
                        text: Cow::Owned(truncate(&section, SECTION_LIMIT).into_owned()),
                    },
                },
            ],
        };
        to_json(&body)
    }
}

impl fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL's path holds the webhook's secret.
        f.debug_struct("SlackNotifier")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("url", &self.url.origin().ascii_serialization())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &'static str {
        "slack"
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let request = post_json(self.url.clone(), self.body(message));
        self.http.send(request).await?.into_result()
    }
}
