//! The `googlechat` provider: a card message posted to a Google Chat incoming webhook.
//!
//! Why a card and not a text message: Chat's text messages use its own markup (`*bold*`,
//! `_italic_`, `<users/all>` mentions, `<url|label>` links) with no documented way to
//! escape it, so a service's detail text could change the formatting or mention the
//! whole space. Card text uses a small HTML subset, which HTML escaping makes show
//! exactly as written; a card also lays the fields out as labelled rows. The card's
//! `fallbackText` (the title) is what notifications show where a card cannot be.

use std::{borrow::Cow, fmt};

use health_types::truncate;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError,
    providers::{HttpProvider, escape_html, http_url, post_json, shown, to_json},
};

/// The title (card header and fallback text) is cut to this many characters.
const TITLE_LIMIT: usize = 256;
/// Field names (the rows' labels) are cut to this many characters.
const NAME_LIMIT: usize = 256;
/// Field values are cut to this many characters (before escaping).
const VALUE_LIMIT: usize = 1024;
/// How many bytes of JSON the rows may take. Chat refuses messages over 32,000 bytes;
/// this leaves room for the title and the card around the rows.
const ROWS_BUDGET: usize = 24 * 1024;

/// `googlechat` keys: `url` (the incoming-webhook URL).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleChatConfig {
    /// The space's incoming-webhook URL, query included:
    /// `https://chat.googleapis.com/v1/spaces/<space>/messages?key=<key>&token=<token>`
    /// (other query parameters, such as `threadKey`, are kept too).
    pub url: String,
}

/// Shows only the URL's origin: the rest of it is the webhook's credential.
impl fmt::Debug for GoogleChatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleChatConfig")
            .field("url", &format_args!("{}", shown(&self.url)))
            .finish()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "fallbackText")]
    fallback_text: &'a str,
    #[serde(rename = "cardsV2")]
    cards: [CardWithId<'a>; 1],
}

#[derive(Serialize)]
struct CardWithId<'a> {
    #[serde(rename = "cardId")]
    card_id: &'static str,
    card: Card<'a>,
}

#[derive(Serialize)]
struct Card<'a> {
    header: Header<'a>,
    sections: [Section<'a>; 1],
}

#[derive(Serialize)]
struct Header<'a> {
    title: &'a str,
}

#[derive(Serialize)]
struct Section<'a> {
    widgets: Vec<Widget<'a>>,
}

#[derive(Serialize)]
enum Widget<'a> {
    #[serde(rename = "decoratedText")]
    Row {
        #[serde(rename = "topLabel")]
        top_label: Cow<'a, str>,
        text: String,
        #[serde(rename = "wrapText")]
        wrap_text: bool,
    },
    #[serde(rename = "textParagraph")]
    Paragraph { text: String },
}

/// Google Chat: one card, `{"fallbackText","cardsV2":[{"cardId","card":{"header":{"title"},"sections":[{"widgets":[...]}]}}]}`,
/// to the incoming-webhook URL.
///
/// The header is the title; each field is a `decoratedText` row, the name as its
/// `topLabel` and the HTML-escaped value with newlines as `<br>` (`-` when empty, which
/// Chat would refuse) as its wrapped `text`. A message without fields gets one `textParagraph` with the title,
/// as a section needs a widget. The header, labels and fallback text are plain text, so
/// they are sent as written. The title and names are cut to 256 characters and values to
/// 1024 (with a `…` marker); rows that would take the message past Chat's 32,000-byte
/// limit are left out. The `format` key does not apply.
pub(crate) struct GoogleChatProvider {
    /// The webhook URL; its query holds the webhook's key and token.
    url: Url,
}

impl HttpProvider for GoogleChatProvider {
    type Config = GoogleChatConfig;

    fn try_new(config: &GoogleChatConfig, _: Format) -> Result<Self, NotifyError> {
        let url = http_url("url", &config.url)?;
        // A webhook URL without its key and token (cut at the `&`, say) can only fail
        // with 400 or 401 on every message: say so when the config is loaded.
        for name in ["key", "token"] {
            if !url.query_pairs().any(|(k, v)| k == name && !v.is_empty()) {
                return Err(NotifyError::config(
                    "url",
                    format!("must carry the webhook's `{name}` query parameter"),
                ));
            }
        }
        Ok(GoogleChatProvider { url })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let title = truncate(&message.title, TITLE_LIMIT);
        let mut widgets = rows(message);
        if widgets.is_empty() {
            widgets.push(Widget::Paragraph {
                text: card_text(&title),
            });
        }
        let body = Body {
            fallback_text: &title,
            cards: [CardWithId {
                card_id: "health",
                card: Card {
                    header: Header { title: &title },
                    sections: [Section { widgets }],
                },
            }],
        };
        post_json(&self.url, &body)
    }

    fn url(&self) -> &Url {
        &self.url
    }
}

/// The fields as rows, in order, while they fit in [`ROWS_BUDGET`].
fn rows(message: &Message) -> Vec<Widget<'_>> {
    let mut left = ROWS_BUDGET;
    let mut rows = Vec::with_capacity(message.fields.len());
    for field in &message.fields {
        let top_label = truncate(&field.name, NAME_LIMIT);
        let text = if field.value.trim().is_empty() {
            "-".to_owned()
        } else {
            card_text(&truncate(&field.value, VALUE_LIMIT))
        };
        let row = Widget::Row {
            top_label,
            text,
            wrap_text: true,
        };
        // The row as sent, and the comma before the next.
        let size = to_json(&row).len() + 1;
        if size > left {
            break;
        }
        left -= size;
        rows.push(row);
    }
    rows
}

/// Text for a card's formatted text: HTML-escaped, so it shows as written, with each
/// newline as `<br>`, the card markup's line break.
fn card_text(text: &str) -> String {
    escape_html(text).replace('\n', "<br>")
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const URL: &str = "https://chat.test/v1/spaces/AAA/messages?key=k1&token=t1";

    fn body(message: &Message) -> serde_json::Value {
        let config = GoogleChatConfig { url: URL.into() };
        let request = GoogleChatProvider::try_new(&config, Format::Markdown)
            .unwrap()
            .request(message);
        assert_eq!(request.url.as_str(), URL);
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn values_are_html_escaped_and_empty_ones_shown_as_a_dash() {
        let message = Message::custom("a & b", UNIX_EPOCH)
            .with_field("Detail", "<users/all> & <b>x</b>")
            .with_field("URL", "");
        let body = body(&message);
        assert_eq!(body["fallbackText"], "a & b");
        let card = &body["cardsV2"][0]["card"];
        assert_eq!(card["header"]["title"], "a & b");
        let rows = &card["sections"][0]["widgets"];
        assert_eq!(rows[0]["decoratedText"]["topLabel"], "Detail");
        assert_eq!(
            rows[0]["decoratedText"]["text"],
            "&lt;users/all&gt; &amp; &lt;b&gt;x&lt;/b&gt;"
        );
        assert_eq!(rows[1]["decoratedText"]["text"], "-");
    }

    #[test]
    fn newlines_become_card_line_breaks() {
        let message = Message::custom("t", UNIX_EPOCH).with_field("Detail", "one\r\n<two>\nthree");
        let card = body(&message);
        let rows = &card["cardsV2"][0]["card"]["sections"][0]["widgets"];
        assert_eq!(
            rows[0]["decoratedText"]["text"],
            "one<br>&lt;two&gt;<br>three"
        );
        let lines = body(&Message::custom("a\nb", UNIX_EPOCH));
        assert_eq!(
            lines["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"],
            "a<br>b"
        );
    }

    #[test]
    fn a_message_without_fields_gets_a_paragraph() {
        let body = body(&Message::custom("<hi>", UNIX_EPOCH));
        assert_eq!(
            body["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"],
            "&lt;hi&gt;"
        );
    }

    #[test]
    fn long_text_is_cut_and_rows_stop_at_the_budget() {
        let mut message = Message::custom("t".repeat(300), UNIX_EPOCH);
        for i in 0..60 {
            message = message.with_field(format!("F{i}"), "&".repeat(2000));
        }
        let request =
            GoogleChatProvider::try_new(&GoogleChatConfig { url: URL.into() }, Format::Plain)
                .unwrap()
                .request(&message);
        assert!(request.body.len() < 32_000, "{}", request.body.len());
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body["fallbackText"].as_str().unwrap().chars().count(),
            TITLE_LIMIT
        );
        let rows = body["cardsV2"][0]["card"]["sections"][0]["widgets"]
            .as_array()
            .unwrap();
        assert!(rows.len() < 60);
        // 1023 ampersands and the marker, escaped.
        let text = rows[0]["decoratedText"]["text"].as_str().unwrap();
        assert_eq!(text, format!("{}…", "&amp;".repeat(VALUE_LIMIT - 1)));
    }

    #[test]
    fn many_short_fields_stay_under_the_message_limit() {
        let mut message = Message::custom("t", UNIX_EPOCH);
        for i in 0..5000 {
            message = message.with_field(format!("F{i}"), "\"");
        }
        let request =
            GoogleChatProvider::try_new(&GoogleChatConfig { url: URL.into() }, Format::Plain)
                .unwrap()
                .request(&message);
        assert!(request.body.len() < 32_000, "{}", request.body.len());
    }

    #[test]
    fn the_url_needs_its_key_and_token() {
        for (url, missing) in [
            ("https://chat.test/v1/spaces/AAA/messages?key=k1", "token"),
            (
                "https://chat.test/v1/spaces/AAA/messages?token=t1&key=",
                "key",
            ),
        ] {
            let err =
                GoogleChatProvider::try_new(&GoogleChatConfig { url: url.into() }, Format::Plain)
                    .err()
                    .unwrap();
            assert_eq!(
                err.to_string(),
                format!("invalid `url`: must carry the webhook's `{missing}` query parameter")
            );
        }
    }
}
