//! The `matrix` provider: an `m.room.message` sent to a room through the Client-Server
//! API, with a transaction id derived from the message so a retried send is idempotent.

use std::{
    borrow::Cow,
    time::{SystemTime, UNIX_EPOCH},
};

use health_types::truncate;
use http::{HeaderName, HeaderValue, Method, header::AUTHORIZATION};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, NotifyError, Secret,
    providers::{
        HttpProvider, base_url, escape_html, join, opsgenie::encode_segment, to_json, token_header,
    },
};

/// Field values are cut to this many characters before rendering.
const VALUE_LIMIT: usize = 4096;
/// The most bytes `body` and `formatted_body` may take together. Matrix limits a whole
/// event to 65536 bytes (JSON, with the server's own keys and signatures); this leaves
/// room for those and for JSON escaping.
const CONTENT_LIMIT: usize = 48_000;
/// Matrix's limit on a room id, in bytes.
const ROOM_ID_LIMIT: usize = 255;

/// `matrix` keys: `url` (the homeserver), `room` (a room id), `token` (an access token).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    /// The homeserver's client API address, e.g. `https://matrix.example.org`.
    pub url: String,
    /// The room's id, `!opaque:example.org` (or `!opaque` in room version 12 and
    /// later). Aliases (`#room:example.org`) are rejected: the send endpoint takes an
    /// id, and resolving an alias would take a second request.
    pub room: String,
    /// The access token of the account that posts (it must have joined the room), sent
    /// as `Authorization: Bearer <token>`.
    pub token: Secret,
}

#[derive(Serialize)]
struct Body<'a> {
    msgtype: &'static str,
    body: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    formatted_body: Option<String>,
    /// Always empty: the message mentions no one (see [`NoMentions`]).
    #[serde(rename = "m.mentions")]
    mentions: NoMentions,
}

/// An empty `m.mentions` (`{}`): the event mentions no user and not the room. Clients
/// and servers that still use the legacy push rules notify whoever's display name, or
/// everyone for `@room`, appears in `body` unless the content has `m.mentions`; with it
/// only the intentional mentions it lists notify, so a detail that reads `@room` pings
/// no one.
#[derive(Serialize)]
struct NoMentions {}

/// Matrix: `PUT <url>/_matrix/client/v3/rooms/<room>/send/m.room.message/<txnId>` with
/// `Authorization: Bearer <token>` and an `m.text` message.
///
/// `body` is the plain rendering (title, blank line, `Name: value` lines), and
/// `m.mentions` is always `{}` so nothing in the text (`@room`, a display name) pings
/// anyone. With the
/// markdown format the message also carries `"format":"org.matrix.custom.html"` and a
/// `formatted_body`: the title in bold and each field as `<b>Name:</b> value`, every
/// piece HTML-escaped, lines joined with `<br>`. Values are cut to 4096 characters and
/// trailing fields dropped to keep the event well inside Matrix's 64 KiB.
///
/// The transaction id is `healthd-` and a 128-bit FNV-1a hash of the room and the
/// message (event, service, title, time and outage start to the second, fields): the same
/// for every retry of one message, even after a restart, so the homeserver answers a
/// repeated PUT with the first event instead of posting it twice, and different between
/// messages.
pub(crate) struct MatrixProvider {
    /// `<url>/_matrix/client/v3/rooms/<room>/send/m.room.message`.
    endpoint: Url,
    room: String,
    format: Format,
    /// `Authorization: Bearer <token>`, built once from the checked token.
    auth: (HeaderName, HeaderValue),
}

impl HttpProvider for MatrixProvider {
    type Config = MatrixConfig;

    fn try_new(config: &MatrixConfig, format: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        check_room(&config.room)?;
        let auth = token_header("Bearer ", &config.token)?;
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message",
            encode_segment(&config.room)
        );
        Ok(MatrixProvider {
            endpoint: join(&base, &path)?,
            room: config.room.clone(),
            format,
            auth: (AUTHORIZATION, auth),
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let mut url = self.endpoint.clone();
        url.set_path(&format!(
            "{}/{}",
            self.endpoint.path(),
            txn_id(&self.room, message)
        ));
        HttpRequest::new(Method::PUT, url)
            .with_body("application/json", to_json(&self.body(message)))
            .with_headers([self.auth.clone()])
    }

    fn url(&self) -> &Url {
        &self.endpoint
    }
}

impl MatrixProvider {
    /// The event content for `message`, inside [`CONTENT_LIMIT`].
    fn body<'a>(&self, message: &'a Message) -> Body<'a> {
        let fields: Vec<(Cow<'_, str>, Cow<'_, str>)> = message
            .fields
            .iter()
            .map(|f| {
                (
                    truncate(&f.name, VALUE_LIMIT),
                    truncate(&f.value, VALUE_LIMIT),
                )
            })
            .collect();
        let title = truncate(&message.title, VALUE_LIMIT);
        let mut count = fields.len();
        loop {
            let plain = plain(&title, &fields[..count]);
            let html = (self.format == Format::Markdown).then(|| html(&title, &fields[..count]));
            let size = plain.len() + html.as_ref().map_or(0, String::len);
            if size <= CONTENT_LIMIT || count == 0 {
                return Body {
                    msgtype: "m.text",
                    body: plain.into(),
                    format: html.is_some().then_some("org.matrix.custom.html"),
                    formatted_body: html,
                    mentions: NoMentions {},
                };
            }
            count -= 1;
        }
    }
}

/// The plain rendering: the title, a blank line, then `Name: value` lines.
fn plain(title: &str, fields: &[(Cow<'_, str>, Cow<'_, str>)]) -> String {
    let mut out = title.to_owned();
    if !fields.is_empty() {
        out.push_str("\n\n");
        let lines: Vec<String> = fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        out.push_str(&lines.join("\n"));
    }
    out
}

/// The HTML rendering: the title in bold, then `<b>Name:</b> value` lines, all escaped,
/// newlines as `<br>`.
fn html(title: &str, fields: &[(Cow<'_, str>, Cow<'_, str>)]) -> String {
    let escape = |text: &str| {
        escape_html(text)
            .replace('"', "&quot;")
            .replace('\n', "<br>")
    };
    let mut out = format!("<b>{}</b>", escape(title));
    if !fields.is_empty() {
        out.push_str("<br><br>");
        let lines: Vec<String> = fields
            .iter()
            .map(|(n, v)| format!("<b>{}:</b> {}", escape(n), escape(v)))
            .collect();
        out.push_str(&lines.join("<br>"));
    }
    out
}

/// Checks that `room` is a room id: `!` then visible characters, at most 255 bytes.
fn check_room(room: &str) -> Result<(), NotifyError> {
    if room.starts_with('#') {
        return Err(NotifyError::config(
            "room",
            format!(
                "{room:?} is a room alias; give the room's id (`!...`), which clients show \
                 in the room's settings (Element: Settings > Advanced)"
            ),
        ));
    }
    let valid = room.len() > 1
        && room.len() <= ROOM_ID_LIMIT
        && room.starts_with('!')
        && room.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if valid {
        Ok(())
    } else {
        Err(NotifyError::config(
            "room",
            format!("{room:?} must be a room id like `!abc123:example.org`"),
        ))
    }
}

/// The transaction id of `message` in `room`: `healthd-` and 32 hex digits of a stable
/// hash, so every retry of one message reuses it.
fn txn_id(room: &str, message: &Message) -> String {
    let mut hash = Fnv128::new();
    hash.text(room);
    hash.text(message.event.as_str());
    hash.text(&message.service);
    hash.text(&message.title);
    hash.time(Some(message.time));
    hash.time(message.outage_start);
    for field in &message.fields {
        hash.text(&field.name);
        hash.text(&field.value);
    }
    format!("healthd-{:032x}", hash.0)
}

/// 128-bit FNV-1a: stable across runs and builds, unlike the standard library's hasher.
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn new() -> Self {
        Fnv128(Self::OFFSET)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
    fn text(&mut self, text: &str) {
        self.bytes(&(text.len() as u64).to_le_bytes());
        self.bytes(text.as_bytes());
    }

    /// A time to the second: a message restored from a store that keeps less than
    /// nanoseconds still gets the transaction id of its first attempt.
    fn time(&mut self, time: Option<SystemTime>) {
        match time.map(|t| t.duration_since(UNIX_EPOCH)) {
            None => self.bytes(&[0]),
            Some(Ok(since)) => {
                self.bytes(&[1]);
                self.bytes(&since.as_secs().to_le_bytes());
            }
            Some(Err(before)) => {
                self.bytes(&[2]);
                self.bytes(&before.duration().as_secs().to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn provider(format: Format) -> MatrixProvider {
        let config = MatrixConfig {
            url: "http://127.0.0.1:9/".into(),
            room: "!room:example.org".into(),
            token: Secret::from("syt_abc"),
        };
        MatrixProvider::try_new(&config, format).unwrap()
    }

    fn json(request: &HttpRequest) -> serde_json::Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn fnv_matches_the_published_vectors() {
        let hash = |text: &str| {
            let mut h = Fnv128::new();
            h.bytes(text.as_bytes());
            h.0
        };
        assert_eq!(hash(""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_eq!(hash("a"), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
    }

    #[test]
    fn retries_reuse_the_transaction_id_and_messages_differ() {
        let provider = provider(Format::Markdown);
        let at = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        let first = Message::custom("a", at).with_service("api");
        let path = |m: &Message| provider.request(m).url.path().to_owned();
        assert_eq!(path(&first), path(&first.clone()));
        assert!(
            path(&first).starts_with(
                "/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/healthd-"
            ),
            "{}",
            path(&first)
        );
        let later = Message::custom("a", at + Duration::from_secs(1)).with_service("api");
        let other = Message::custom("b", at).with_service("api");
        let field = first.clone().with_field("Detail", "x");
        let paths = [path(&first), path(&later), path(&other), path(&field)];
        for (i, a) in paths.iter().enumerate() {
            for b in &paths[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // A store that keeps times to the millisecond restores the same id.
        let mut restored = first.clone();
        restored.time += Duration::from_nanos(1);
        assert_eq!(path(&first), path(&restored));
        let request = provider.request(&first);
        assert_eq!(request.method, Method::PUT);
        assert_eq!(request.headers["authorization"], "Bearer syt_abc");
    }

    #[test]
    fn html_escapes_everything_and_plain_has_no_html() {
        let message =
            Message::custom("<b>x</b> & y", UNIX_EPOCH).with_field("Detail", "a<b\n\"c\"");
        let body = json(&provider(Format::Markdown).request(&message));
        assert_eq!(body["msgtype"], "m.text");
        assert_eq!(body["body"], "<b>x</b> & y\n\nDetail: a<b\n\"c\"");
        assert_eq!(body["format"], "org.matrix.custom.html");
        assert_eq!(
            body["formatted_body"],
            "<b>&lt;b&gt;x&lt;/b&gt; &amp; y</b><br><br><b>Detail:</b> a&lt;b<br>&quot;c&quot;"
        );
        let plain = json(&provider(Format::Plain).request(&message));
        assert!(plain.get("format").is_none(), "{plain}");
        assert!(plain.get("formatted_body").is_none(), "{plain}");
    }

    #[test]
    fn room_mentions_in_the_text_ping_no_one() {
        let message = Message::custom("@room", UNIX_EPOCH).with_field("Detail", "@room hi @alice");
        for format in [Format::Markdown, Format::Plain] {
            let body = json(&provider(format).request(&message));
            assert!(body["body"].as_str().unwrap().contains("@room"), "{body}");
            assert_eq!(body["m.mentions"], serde_json::json!({}), "{body}");
        }
    }

    #[test]
    fn long_messages_stay_inside_the_event_limit() {
        let mut message = Message::custom("t", UNIX_EPOCH);
        for i in 0..40 {
            message = message.with_field(format!("F{i}"), "<".repeat(5000));
        }
        let request = provider(Format::Markdown).request(&message);
        assert!(request.body.len() < 65_536, "{}", request.body.len());
        let body = json(&request);
        assert!(body["body"].as_str().unwrap().contains("F0: "));
        assert!(!body["body"].as_str().unwrap().contains("F39: "));
    }

    #[test]
    fn rooms_are_checked_at_load() {
        let config = |room: &str| MatrixConfig {
            url: "https://matrix.example.org".into(),
            room: room.into(),
            token: Secret::from("t"),
        };
        for good in [
            "!abc:example.org",
            "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM",
        ] {
            assert!(
                MatrixProvider::try_new(&config(good), Format::Plain).is_ok(),
                "{good}"
            );
        }
        let alias = MatrixProvider::try_new(&config("#ops:example.org"), Format::Plain)
            .err()
            .unwrap();
        assert!(alias.to_string().contains("room alias"), "{alias}");
        for bad in [
            "",
            "!",
            "abc:example.org",
            "!a b:x",
            &format!("!{}", "a".repeat(255)),
        ] {
            let err = MatrixProvider::try_new(&config(bad), Format::Plain)
                .err()
                .unwrap();
            assert!(err.to_string().contains("`room`"), "{err}");
        }
    }
}
