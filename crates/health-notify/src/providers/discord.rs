//! The `discord` provider: one embed per message, posted to a Discord webhook URL.

use std::{borrow::Cow, fmt};

use health_types::TRUNCATION_MARKER;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError,
    providers::{HttpProvider, http_url, post_json, shown},
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
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The webhook URL (`https://discord.com/api/webhooks/<id>/<token>`).
    pub url: String,
}

/// Shows only the URL's origin: the rest of it is the webhook's credential.
impl fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("url", &format_args!("{}", shown(&self.url)))
            .finish()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    embeds: [Embed<'a>; 1],
    allowed_mentions: AllowedMentions,
}

/// Discord's `allowed_mentions`; an empty `parse` list lets nothing ping.
#[derive(Serialize)]
struct AllowedMentions {
    parse: [&'static str; 0],
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

/// Discord: `{"embeds":[{"title","color":<int>,"fields":[{"name","value","inline":false}]}],
/// "allowed_mentions":{"parse":[]}}`.
///
/// Discord renders its markdown in embed titles, field names and field values whatever
/// the `format` key says, so all three are escaped to show as written
/// ([`escape_discord`]); URLs are left as they are, for Discord links them whole. Limits
/// apply to the escaped text: titles and field names 256 characters, values 1024, cut
/// with a `…` marker and never between a backslash and what it escapes; an empty value is
/// sent as `-` because Discord rejects empty field values. At most 25 fields are sent.
/// Mentions in embeds never ping, and `allowed_mentions` with an empty `parse` list makes
/// sure of it should the body ever carry `content`.
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
                name: non_empty(escape_discord(&field.name, FIELD_NAME_LIMIT)),
                value: non_empty(escape_discord(&field.value, FIELD_VALUE_LIMIT)),
                inline: false,
            })
            .collect();
        let embed = Embed {
            title: escape_discord(&message.title, TITLE_LIMIT),
            color: message.color.rgb(),
            fields,
        };
        let body = Body {
            embeds: [embed],
            allowed_mentions: AllowedMentions { parse: [] },
        };
        post_json(&self.url, &body)
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

/// `text` escaped for Discord's markdown and cut to `limit` characters, escapes
/// included.
///
/// Escaped: `` \ * _ ~ ` | < > [ ] `` anywhere (emphasis, code, spoilers, mentions and
/// custom emoji, masked links), and at the start of a line (after any indentation) the
/// block markers `# - +` and the `.` of `1.` (headings, subtext, lists). A backslash
/// before any ASCII punctuation shows that character in Discord, so these escapes never
/// show. Words that start with `http://` or `https://` are left as they are: Discord
/// links a URL up to the next space, backslashes included, so escaping one would break
/// the link.
fn escape_discord(text: &str, limit: usize) -> Cow<'_, str> {
    const ANYWHERE: &str = "\\*_~`|<>[]";
    const LINE_START: &str = "#-+";
    // Each character of the text, and whether it is escaped.
    let mut units: Vec<(bool, char)> = Vec::with_capacity(text.len());
    let mut line_start = true;
    let mut digits = 0usize;
    let mut in_url = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_url = false;
        } else if i == 0 || text[..i].ends_with(char::is_whitespace) {
            let rest = &text[i..];
            in_url = rest.starts_with("http://") || rest.starts_with("https://");
        }
        let escaped = !in_url
            && (ANYWHERE.contains(c)
                || (line_start && LINE_START.contains(c))
                || (c == '.' && digits > 0));
        units.push((escaped, c));
        // Track the start of a line (indentation keeps it) and a leading number.
        match c {
            '\n' => (line_start, digits) = (true, 0),
            ' ' | '\t' if line_start => {}
            '0'..='9' if line_start || digits > 0 => (line_start, digits) = (false, digits + 1),
            _ => (line_start, digits) = (false, 0),
        }
    }
    let width = |unit: &(bool, char)| if unit.0 { 2 } else { 1 };
    let total: usize = units.iter().map(width).sum();
    if total == text.chars().count() && total <= limit {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut used = 0;
    // Room for the marker when the text does not fit.
    let room = if total <= limit {
        limit
    } else {
        limit.saturating_sub(1)
    };
    for unit in &units {
        if used + width(unit) > room {
            break;
        }
        used += width(unit);
        if unit.0 {
            out.push('\\');
        }
        out.push(unit.1);
    }
    if total > limit && limit > 0 {
        out.push(TRUNCATION_MARKER);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn body(message: &Message) -> serde_json::Value {
        let config = DiscordConfig {
            url: "https://discord.test/api/webhooks/1/x".into(),
        };
        let request = DiscordProvider::try_new(&config, Format::Plain)
            .unwrap()
            .request(message);
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn long_text_is_cut_to_discord_limits() {
        let message = Message::custom("t".repeat(300), UNIX_EPOCH)
            .with_field("Detail", "d".repeat(2000))
            .with_field("Empty", "");
        let body = body(&message);
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

    #[test]
    fn markdown_in_titles_names_and_values_shows_as_written() {
        let message = Message::custom("Service down: *prod*_api", UNIX_EPOCH)
            .with_field("A|B", "`x` ~~y~~ ||z|| <@123> [l](http://e.test)")
            .with_field(
                "Detail",
                "# not a heading\n- not a list\n 1. nor this\n2024-05-01",
            )
            .with_field(
                "URL",
                "http://admin:***@api.test/x_y see https://a.test/*b*",
            );
        let body = body(&message);
        let embed = &body["embeds"][0];
        assert_eq!(embed["title"], "Service down: \\*prod\\*\\_api");
        assert_eq!(embed["fields"][0]["name"], "A\\|B");
        assert_eq!(
            embed["fields"][0]["value"],
            "\\`x\\` \\~\\~y\\~\\~ \\|\\|z\\|\\| \\<@123\\> \\[l\\](http://e.test)"
        );
        assert_eq!(
            embed["fields"][1]["value"],
            "\\# not a heading\n\\- not a list\n 1\\. nor this\n2024-05-01"
        );
        assert_eq!(
            embed["fields"][2]["value"],
            "http://admin:***@api.test/x_y see https://a.test/*b*"
        );
        assert_eq!(body["allowed_mentions"], serde_json::json!({ "parse": [] }));
    }

    #[test]
    fn limits_count_the_escapes_and_never_split_one() {
        let message = Message::custom("*".repeat(300), UNIX_EPOCH)
            .with_field("Detail", "_".repeat(2000))
            .with_field("Fits", "*".repeat(512));
        let body = body(&message);
        let embed = &body["embeds"][0];
        let title = embed["title"].as_str().unwrap();
        // 127 escaped stars (254 characters), then the marker.
        assert_eq!(title, format!("{}…", "\\*".repeat(127)));
        let value = embed["fields"][0]["value"].as_str().unwrap();
        assert_eq!(value.chars().count(), 1023);
        assert!(value.ends_with("\\_…"), "{value}");
        assert_eq!(embed["fields"][1]["value"], "\\*".repeat(512));
    }
}
