//! The `teams` provider: an Adaptive Card posted to a Microsoft Teams Workflows (Power
//! Automate) webhook.

use std::{borrow::Cow, fmt};

use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Level, Message, MessageEvent, NotifyError,
    providers::{HttpProvider, http_url, post_json, shown, to_json},
};

/// The title is cut to this many characters (before escaping).
const TITLE_LIMIT: usize = 256;
/// Fact titles (field names) are cut to this many characters (before escaping).
const NAME_LIMIT: usize = 256;
/// Fact values are cut to this many characters (before escaping).
const VALUE_LIMIT: usize = 1024;
/// How many bytes of JSON the facts may take. Teams refuses messages over about 28 KB;
/// this leaves room for the title and the card around the facts.
const FACTS_BUDGET: usize = 20 * 1024;

/// `teams` keys: `url` (the Workflows webhook URL).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    /// The URL of a Workflows "When a Teams webhook request is received" trigger, query
    /// string included (it carries the trigger's signature, `sig=...`), e.g.
    /// `https://prod-00.westus.logic.azure.com:443/workflows/<id>/triggers/manual/paths/invoke?api-version=2016-06-01&sp=...&sv=1.0&sig=...`.
    pub url: String,
}

/// Shows only the URL's origin: the rest of it is the webhook's credential.
impl fmt::Debug for TeamsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsConfig")
            .field("url", &format_args!("{}", shown(&self.url)))
            .finish()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    attachments: [Attachment<'a>; 1],
}

#[derive(Serialize)]
struct Attachment<'a> {
    #[serde(rename = "contentType")]
    content_type: &'static str,
    /// Always `null`: the card is inline.
    #[serde(rename = "contentUrl")]
    content_url: Option<&'static str>,
    content: Card<'a>,
}

#[derive(Serialize)]
struct Card<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    body: Vec<Element<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Element<'a> {
    TextBlock {
        text: String,
        weight: &'static str,
        size: &'static str,
        wrap: bool,
        color: &'static str,
    },
    FactSet {
        facts: Vec<Fact<'a>>,
    },
}

#[derive(Serialize)]
struct Fact<'a> {
    title: Cow<'a, str>,
    value: Cow<'a, str>,
}

/// Teams: `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","contentUrl":null,"content":<card>}]}`
/// to the Workflows webhook URL, which answers 202 Accepted.
///
/// The card (Adaptive Cards 1.4) has a `TextBlock` with the title (bold, medium, wrapped;
/// colour `Attention` for down and reminders, `Good` for up, `Warning` for stopped,
/// certificate expiry and flapping; custom messages by level) and a `FactSet` with the
/// fields as `{"title","value"}` (left out when there are none).
///
/// Teams renders a markdown subset in `TextBlock` text and in fact titles and values, so
/// all of them have that subset's markup escaped, and only that
/// ([`escape_card_markdown`]), to show as written whatever the `format` key says.
/// The title is cut to 256 characters, names to 256 and values to 1024 (with a `…`
/// marker); facts that would take the card past Teams' message size limit are left out.
pub(crate) struct TeamsProvider {
    /// The webhook URL; its query holds the trigger's signature.
    url: Url,
}

impl HttpProvider for TeamsProvider {
    type Config = TeamsConfig;

    fn try_new(config: &TeamsConfig, _: Format) -> Result<Self, NotifyError> {
        // The Workflows URL has a query string (`api-version`, `sig`, ...): keep it.
        let url = http_url("url", &config.url)?;
        Ok(TeamsProvider { url })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let title = Element::TextBlock {
            text: escape(truncate(&message.title, TITLE_LIMIT)).into_owned(),
            weight: "Bolder",
            size: "Medium",
            wrap: true,
            color: color(message),
        };
        let mut body = vec![title];
        let facts = facts(message);
        if !facts.is_empty() {
            body.push(Element::FactSet { facts });
        }
        let card = Card {
            schema: "http://adaptivecards.io/schemas/adaptive-card.json",
            kind: "AdaptiveCard",
            version: "1.4",
            body,
        };
        let body = Body {
            kind: "message",
            attachments: [Attachment {
                content_type: "application/vnd.microsoft.card.adaptive",
                content_url: None,
                content: card,
            }],
        };
        post_json(&self.url, &body)
    }

    fn url(&self) -> &Url {
        &self.url
    }
}

/// The title's Adaptive Card colour.
fn color(message: &Message) -> &'static str {
    match message.event {
        MessageEvent::Down | MessageEvent::Reminder => "Attention",
        MessageEvent::Up => "Good",
        MessageEvent::Stopped | MessageEvent::CertExpiry | MessageEvent::Flapping => "Warning",
        MessageEvent::Custom => match message.level {
            Level::Error => "Attention",
            Level::Warning => "Warning",
            Level::Info => "Default",
        },
    }
}

/// The fields as escaped facts, in order, while they fit in [`FACTS_BUDGET`].
fn facts(message: &Message) -> Vec<Fact<'_>> {
    let mut left = FACTS_BUDGET;
    let mut facts = Vec::with_capacity(message.fields.len());
    for field in &message.fields {
        let title = escape(truncate(&field.name, NAME_LIMIT));
        let value = escape(truncate(&field.value, VALUE_LIMIT));
        let fact = Fact { title, value };
        // The fact as sent, and the comma before the next.
        let size = to_json(&fact).len() + 1;
        if size > left {
            break;
        }
        left -= size;
        facts.push(fact);
    }
    facts
}

/// [`escape_card_markdown`] of text that may already be owned.
fn escape(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(text) => escape_card_markdown(text),
        Cow::Owned(text) => Cow::Owned(escape_card_markdown(&text).into_owned()),
    }
}

/// Backslash-escapes what the Adaptive Card markdown subset treats as markup, and
/// nothing else: Teams clients show a backslash before other characters inconsistently
/// (some as written, `my\_api`), so fewer escapes read better.
///
/// The subset is `**bold**`, `_italic_`, `[text](url)` links, and `- ` and `1. ` lists.
/// Escaped: `[` and `]`; `*` unless whitespace is on both sides; `_` unless whitespace
/// or a letter or digit is on both sides (an intraword `_`, as in `my_api`, never
/// emphasizes); `\` before one of those; and at the start of a line (the text's start
/// included) a `-` or the `.` of `1.` followed by whitespace. Code, strikethrough, headings, quotes and HTML
/// are not part of the subset, so `` ` ``, `~`, `#`, `>`, `<` and `&` show as written.
fn escape_card_markdown(text: &str) -> Cow<'_, str> {
    const TRIGGERS: &[char] = &['\\', '*', '_', '[', ']', '-', '.'];
    if !text.contains(TRIGGERS) {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let blank = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_none_or(|c| c.is_whitespace())
    };
    let alnum = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| c.is_alphanumeric())
    };
    let mut out = String::with_capacity(text.len() + 8);
    let mut escaped = false;
    // Where the current line's content starts.
    let mut line_start = 0;
    for (i, &c) in chars.iter().enumerate() {
        let (prev, next) = (i.checked_sub(1), Some(i + 1));
        let escape = match c {
            '[' | ']' => true,
            '\\' => chars
                .get(i + 1)
                .is_some_and(|n| matches!(n, '*' | '_' | '[' | ']' | '\\')),
            '*' => !(blank(prev) && blank(next)),
            '_' => !((blank(prev) && blank(next)) || (alnum(prev) && alnum(next))),
            // `- ` at a line start would begin a list.
            '-' => i == line_start && blank(next),
            // `1. ` or `12. ` at a line start would begin a numbered list.
            '.' => {
                blank(next)
                    && line_start < i
                    && i - line_start <= 9
                    && chars[line_start..i].iter().all(char::is_ascii_digit)
            }
            _ => false,
        };
        if escape {
            out.push('\\');
            escaped = true;
        }
        out.push(c);
        if c == '\n' || (line_start == i && (c == ' ' || c == '\t')) {
            // A new line, or indentation: the line's content starts after it.
            line_start = i + 1;
        }
    }
    if escaped {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn card(message: &Message) -> serde_json::Value {
        let config = TeamsConfig {
            url: "https://teams.test/workflows/1/invoke?api-version=1&sig=s3cret".into(),
        };
        let request = TeamsProvider::try_new(&config, Format::Plain)
            .unwrap()
            .request(message);
        assert_eq!(request.url.query(), Some("api-version=1&sig=s3cret"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        body["attachments"][0]["content"].clone()
    }

    #[test]
    fn markdown_in_values_is_escaped() {
        let message = Message::custom("a_b *c*", UNIX_EPOCH).with_field("Detail", "[x](y) <z>");
        let card = card(&message);
        assert_eq!(card["body"][0]["text"], "a_b \\*c\\*");
        assert_eq!(card["body"][1]["facts"][0]["value"], "\\[x\\](y) <z>");
    }

    #[test]
    fn only_adaptive_card_markup_is_escaped() {
        let cases = [
            // Not markup in the subset: sent as written.
            ("my_api", "my_api"),
            (
                "C:\\temp <b> a & b ~x~ `code` # h > q",
                "C:\\temp <b> a & b ~x~ `code` # h > q",
            ),
            (
                "2 * 3 and _ alone, a-b, v1.2",
                "2 * 3 and _ alone, a-b, v1.2",
            ),
            ("-5 ms\n1.5 s", "-5 ms\n1.5 s"),
            // Markup: escaped.
            (
                "**bold** _it_ [x](y)",
                "\\*\\*bold\\*\\* \\_it\\_ \\[x\\](y)",
            ),
            ("a\\*b", "a\\\\\\*b"),
            ("- one\n2. two\n  - three", "\\- one\n2\\. two\n  \\- three"),
        ];
        for (text, expected) in cases {
            assert_eq!(escape_card_markdown(text), expected, "{text:?}");
        }
        assert!(matches!(
            escape_card_markdown("my_api v1.2"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn colour_follows_the_event_and_custom_messages_their_level() {
        let message = Message::custom("t", UNIX_EPOCH);
        assert_eq!(color(&message), "Default");
        assert_eq!(
            color(&message.clone().with_level(Level::Error)),
            "Attention"
        );
        let flapping = Message {
            event: MessageEvent::Flapping,
            ..message
        };
        assert_eq!(color(&flapping), "Warning");
    }

    #[test]
    fn no_fields_means_no_fact_set() {
        let card = card(&Message::custom("hello", UNIX_EPOCH));
        assert_eq!(card["body"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn long_text_is_cut_and_facts_stop_at_the_budget() {
        let mut message = Message::custom("t".repeat(300), UNIX_EPOCH);
        for i in 0..40 {
            message = message.with_field(format!("F{i}"), "v".repeat(2000));
        }
        let card = card(&message);
        let title = card["body"][0]["text"].as_str().unwrap();
        assert_eq!(title.chars().count(), TITLE_LIMIT);
        let facts = card["body"][1]["facts"].as_array().unwrap();
        let value = facts[0]["value"].as_str().unwrap();
        assert_eq!(value.chars().count(), VALUE_LIMIT);
        assert!(value.ends_with('…'));
        assert!(facts.len() < 40);
        let size = serde_json::to_string(&card["body"][1]["facts"])
            .unwrap()
            .len();
        assert!(size <= FACTS_BUDGET, "{size}");
    }

    #[test]
    fn many_short_fields_stay_under_the_message_limit() {
        let mut message = Message::custom("t", UNIX_EPOCH);
        for i in 0..5000 {
            message = message.with_field(format!("F{i}"), "*");
        }
        let size = serde_json::to_string(&card(&message)).unwrap().len();
        assert!(size < 28 * 1024, "{size}");
    }

    #[test]
    fn the_url_must_be_http() {
        let err = TeamsProvider::try_new(
            &TeamsConfig {
                url: "teams.test/x".into(),
            },
            Format::Markdown,
        )
        .err()
        .unwrap();
        assert!(err.to_string().starts_with("invalid `url`"), "{err}");
    }
}
