//! The generic `webhook` provider: the default JSON body of SPEC §6 or a custom `payload`
//! template, POST or PUT, JSON, form or text, optional bearer token.

use std::str::FromStr;

use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Field, Format, HttpRequest, Message, NotifyError, Secret,
    names::{deserialize_from_str, parse_by_name},
    providers::{HttpProvider, bearer, http_url, to_json},
};

/// `webhook` keys: `url`, `method` (`POST`), `mime_type` (`application/json`),
/// `payload` (a template; the default body when absent), `token`, `color_mode` (`hex`).
///
/// `validate` also checks that a JSON `payload` is valid JSON after substitution.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to send.
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default)]
    pub method: WebhookMethod,
    /// The body's type (default `application/json`).
    #[serde(default)]
    pub mime_type: MimeType,
    /// A body template with `$title $message $fields $color $event $service $url
    /// $detail $time`; without one, the default JSON body is sent.
    #[serde(default)]
    pub payload: Option<String>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// How `$color` (and the default body's `color`) is written (default `hex`).
    #[serde(default)]
    pub color_mode: ColorMode,
}

impl WebhookConfig {
    /// A config for `url` with every other key at its default.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            method: WebhookMethod::default(),
            mime_type: MimeType::default(),
            payload: None,
            token: None,
            color_mode: ColorMode::default(),
        }
    }
}

/// The webhook's HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WebhookMethod {
    /// `POST` (the default).
    #[default]
    Post,
    /// `PUT`.
    Put,
}

impl WebhookMethod {
    fn method(self) -> Method {
        match self {
            WebhookMethod::Post => Method::POST,
            WebhookMethod::Put => Method::PUT,
        }
    }
}

parse_by_name!(WebhookMethod, "method", ["POST" => Post, "PUT" => Put]);

/// The webhook body's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MimeType {
    /// `application/json` (the default): placeholders become JSON values.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`: placeholders are inserted raw.
    Form,
    /// `text/plain`: placeholders are inserted raw.
    Text,
}

impl MimeType {
    /// The `Content-Type` sent.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            MimeType::Json => "application/json",
            MimeType::Form => "application/x-www-form-urlencoded",
            MimeType::Text => "text/plain",
        }
    }
}

deserialize_from_str!(MimeType);

impl FromStr for MimeType {
    type Err = String;

    /// Accepts the full types (parameters such as `; charset=utf-8` are ignored) and the
    /// short names `json`, `form` and `text`, in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        let essence = s.split(';').next().unwrap_or_default().trim();
        let lower = essence.to_ascii_lowercase();
        match lower.as_str() {
            "application/json" | "json" => Ok(MimeType::Json),
            "application/x-www-form-urlencoded" | "form" => Ok(MimeType::Form),
            "text/plain" | "text" => Ok(MimeType::Text),
            _ => Err(format!(
                "unsupported mime type {s:?}: expected \"application/json\", \
                 \"application/x-www-form-urlencoded\" or \"text/plain\""
            )),
        }
    }
}

/// How a colour is written in a webhook body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ColorMode {
    /// `#rrggbb` (the default).
    #[default]
    Hex,
    /// Decimal digits, e.g. `16711680`.
    Dec,
}

parse_by_name!(ColorMode, "color mode", ["hex" => Hex, "dec" => Dec]);

/// One of the §6 placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    Title,
    Message,
    Fields,
    Color,
    Event,
    Service,
    Url,
    Detail,
    Time,
}

/// No name is a prefix of another, so the first match is the only match.
const PLACEHOLDERS: [(&str, Placeholder); 9] = [
    ("$title", Placeholder::Title),
    ("$message", Placeholder::Message),
    ("$fields", Placeholder::Fields),
    ("$color", Placeholder::Color),
    ("$event", Placeholder::Event),
    ("$service", Placeholder::Service),
    ("$url", Placeholder::Url),
    ("$detail", Placeholder::Detail),
    ("$time", Placeholder::Time),
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Text(String),
    Value(Placeholder),
}

/// A parsed `payload`: literal text and placeholders, in order.
///
/// Parsing is the single left-to-right pass of §6; rendering only concatenates, so text
/// a placeholder produces is never scanned again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Template(Vec<Segment>);

impl Template {
    fn parse(template: &str) -> Self {
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let tail = &rest[at..];
            match PLACEHOLDERS.iter().find(|(name, _)| tail.starts_with(name)) {
                Some((name, placeholder)) => {
                    if !text.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut text)));
                    }
                    segments.push(Segment::Value(*placeholder));
                    rest = &tail[name.len()..];
                }
                None => {
                    text.push('$');
                    rest = &tail[1..];
                }
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        Template(segments)
    }

    fn render(
        &self,
        message: &Message,
        mime: MimeType,
        color_mode: ColorMode,
        format: Format,
    ) -> String {
        let json = mime == MimeType::Json;
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Value(placeholder) => {
                    out.push_str(&value(message, *placeholder, json, color_mode, format));
                }
            }
        }
        out
    }
}

/// A placeholder's text: a complete JSON literal in JSON mode (but `$color`), raw text
/// otherwise. `$message` is the fields rendered in the notifier's format (markdown as
/// [`Message::render_fields_light`]: a payload is written for a receiver its author
/// knows, who asked for markdown); raw `$fields` are the plain `Name: value` lines.
fn value(
    message: &Message,
    placeholder: Placeholder,
    json: bool,
    color_mode: ColorMode,
    format: Format,
) -> String {
    let text = |s: &str| {
        if json {
            serde_json::Value::from(s).to_string()
        } else {
            s.to_owned()
        }
    };
    match placeholder {
        Placeholder::Title => text(&message.title),
        Placeholder::Message => text(&match format {
            Format::Markdown => message.render_fields_light(),
            Format::Plain => message.render_fields(Format::Plain),
        }),
        Placeholder::Fields if json => {
            serde_json::to_string(&message.fields).expect("fields serialize to JSON")
        }
        Placeholder::Fields => message.render_fields(Format::Plain),
        Placeholder::Color => color_text(message, color_mode),
        Placeholder::Event => text(message.event.as_str()),
        Placeholder::Service => text(&message.service),
        Placeholder::Url => text(&message.url),
        Placeholder::Detail => text(&message.detail),
        Placeholder::Time => text(&message.time_rfc3339()),
    }
}

fn color_text(message: &Message, color_mode: ColorMode) -> String {
    match color_mode {
        ColorMode::Hex => message.color.hex(),
        ColorMode::Dec => message.color.rgb().to_string(),
    }
}

/// The default body, keys in the order of §6.
#[derive(Serialize)]
struct DefaultBody<'a> {
    event: &'static str,
    title: &'a str,
    message: String,
    fields: &'a [Field],
    service: &'a str,
    url: &'a str,
    detail: &'a str,
    level: &'static str,
    color: serde_json::Value,
    time: String,
}

/// The generic webhook.
///
/// Without a `payload`, the body is the JSON object of §6:
/// `{"event","title","message","fields":[{"name","value"}],"service","url","detail",
/// "level","color","time"}`, where `message` is the plain `Name: value` lines whatever
/// the `format` key says (a receiver we do not know may show it anywhere, so it carries
/// no `**` and no backslashes; `fields` has the same data structured) and `color` is
/// `"#rrggbb"` (hex) or an integer (dec). The default body is JSON whatever `mime_type`
/// says; only a `payload` follows the MIME type and, through `$message`, the format.
pub(crate) struct WebhookProvider {
    url: Url,
    method: WebhookMethod,
    mime_type: MimeType,
    template: Option<Template>,
    /// `Authorization: Bearer <token>`, built once from the checked token.
    bearer: Option<(HeaderName, HeaderValue)>,
    color_mode: ColorMode,
    format: Format,
}

impl WebhookProvider {
    /// The exact body sent for `message`.
    fn body(&self, message: &Message) -> String {
        match &self.template {
            Some(template) => {
                template.render(message, self.mime_type, self.color_mode, self.format)
            }
            None => to_json(&DefaultBody {
                event: message.event.as_str(),
                title: &message.title,
                message: message.render_fields(Format::Plain),
                fields: &message.fields,
                service: &message.service,
                url: &message.url,
                detail: &message.detail,
                level: message.level.as_str(),
                color: match self.color_mode {
                    ColorMode::Hex => message.color.hex().into(),
                    ColorMode::Dec => message.color.rgb().into(),
                },
                time: message.time_rfc3339(),
            }),
        }
    }
}

impl HttpProvider for WebhookProvider {
    type Config = WebhookConfig;

    /// Checks every key; a JSON `payload` must be valid JSON after substitution.
    fn try_new(config: &WebhookConfig, format: Format) -> Result<Self, NotifyError> {
        let url = http_url("url", &config.url)?;
        let bearer = bearer(config.token.as_ref())?;
        let template = config.payload.as_deref().map(Template::parse);
        if let Some(template) = &template
            && config.mime_type == MimeType::Json
        {
            // Every string placeholder becomes a complete literal, so one message with
            // awkward text shows whether the template's own structure is valid.
            let body = template.render(
                &Message::sample(),
                config.mime_type,
                config.color_mode,
                Format::Markdown,
            );
            if let Err(err) = serde_json::from_str::<serde_json::Value>(&body) {
                return Err(NotifyError::config(
                    "payload",
                    format!(
                        "is not valid JSON after substitution ({err}); string placeholders are inserted with their quotes, `$color` without"
                    ),
                ));
            }
        }
        Ok(WebhookProvider {
            url,
            method: config.method,
            mime_type: config.mime_type,
            template,
            bearer,
            color_mode: config.color_mode,
            format,
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        HttpRequest::new(self.method.method(), self.url.clone())
            .with_body(self.mime_type.as_str(), self.body(message))
            .with_headers(self.bearer.clone())
    }

    fn url(&self) -> &Url {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn message() -> Message {
        Message::custom(
            "Service down: \"api\"",
            UNIX_EPOCH + Duration::from_secs(60),
        )
        .with_service("api")
        .with_url("http://api.test/")
        .with_detail("$title")
        .with_field("Service", "api")
        .with_field("Detail", "$title")
        .with_color(crate::Color::RED)
    }

    fn render(template: &str, mime: MimeType, mode: ColorMode) -> String {
        Template::parse(template).render(&message(), mime, mode, Format::Plain)
    }

    #[test]
    fn json_placeholders_become_literals() {
        let body = render(
            r##"{"t": $title, "c": "$color", "f": $fields, "e": $event, "d": $detail, "x": $time}"##,
            MimeType::Json,
            ColorMode::Hex,
        );
        assert_eq!(
            body,
            r##"{"t": "Service down: \"api\"", "c": "#ff0000", "f": [{"name":"Service","value":"api"},{"name":"Detail","value":"$title"}], "e": "custom", "d": "$title", "x": "1970-01-01T00:01:00Z"}"##
        );
        serde_json::from_str::<serde_json::Value>(&body).unwrap();
    }

    #[test]
    fn templates_render_in_one_pass() {
        use ColorMode::{Dec, Hex};
        use MimeType::{Form, Text};
        let cases = [
            // The detail is literally "$title": it must come out as is, not as the title.
            ("$detail", Text, Hex, "$title"),
            ("$detail$title", Text, Hex, "$titleService down: \"api\""),
            // Raw modes insert text as is.
            (
                "t=$title&c=$color&u=$url",
                Form,
                Dec,
                "t=Service down: \"api\"&c=16711680&u=http://api.test/",
            ),
            ("$fields", Text, Hex, "Service: api\nDetail: $title"),
            // Unknown dollars and suffixes stay.
            (
                "$5 $nope $$title $titles $",
                Text,
                Hex,
                "$5 $nope $Service down: \"api\" Service down: \"api\"s $",
            ),
            ("", Text, Hex, ""),
        ];
        for (template, mime, mode, expected) in cases {
            assert_eq!(render(template, mime, mode), expected, "{template:?}");
        }
    }

    #[test]
    fn a_password_in_the_monitor_url_never_reaches_a_payload() {
        let event = health_types::Event {
            kind: health_types::EventKind::Down,
            service: "api".into(),
            url: "http://admin:s3cret@host/".into(),
            detail: "HTTP 503".into(),
            latency: Duration::ZERO,
            last_seen: None,
            outage: None,
            outage_start: None,
            time: UNIX_EPOCH,
        };
        let message = Message::from_event(&event);
        let mut config = WebhookConfig::new("http://127.0.0.1:1/hook");
        let default_body = WebhookProvider::try_new(&config, Format::Markdown)
            .unwrap()
            .body(&message);
        config.payload = Some(r#"{"u": $url, "f": $fields, "m": $message}"#.into());
        let templated = WebhookProvider::try_new(&config, Format::Plain)
            .unwrap()
            .body(&message);
        for body in [default_body, templated] {
            assert!(!body.contains("s3cret"), "{body}");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let url = json.get("url").or_else(|| json.get("u")).unwrap();
            assert_eq!(url, "http://admin:***@host/", "{body}");
        }
    }

    #[test]
    fn the_default_message_is_plain_whatever_the_format() {
        let message = message().with_field("Note", "a*b_c <x>");
        let config = WebhookConfig::new("http://127.0.0.1:1/hook");
        for format in [Format::Markdown, Format::Plain] {
            let body = WebhookProvider::try_new(&config, format)
                .unwrap()
                .body(&message);
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                json["message"], "Service: api\nDetail: $title\nNote: a*b_c <x>",
                "{format}"
            );
        }
    }

    #[test]
    fn json_payloads_are_checked_at_load() {
        let mut config = WebhookConfig::new("http://127.0.0.1:1/hook");
        config.payload = Some(r#"{"color": $color}"#.into());
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid `payload`: is not valid JSON"),
            "{err}"
        );
        config.color_mode = ColorMode::Dec;
        config.validate().unwrap();
        config.payload = Some(r#"{"title": "$title"}"#.into());
        assert!(config.validate().is_err());
        config.mime_type = MimeType::Text;
        config.validate().unwrap();
    }

    #[test]
    fn mime_types_parse_full_and_short_names() {
        assert_eq!(
            "application/json; charset=utf-8".parse(),
            Ok(MimeType::Json)
        );
        assert_eq!("FORM".parse(), Ok(MimeType::Form));
        assert_eq!("text/plain".parse(), Ok(MimeType::Text));
        assert!("application/xml".parse::<MimeType>().is_err());
        assert_eq!("put".parse(), Ok(WebhookMethod::Put));
        assert!("GET".parse::<WebhookMethod>().is_err());
    }
}
