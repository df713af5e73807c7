//! The `opsgenie` provider: Opsgenie's Alert API v2, one alert per outage (keyed by its
//! alias), closed when the service is up again.

use std::borrow::Cow;

use health_types::truncate;
use http::{HeaderName, HeaderValue, header::AUTHORIZATION};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, MessageEvent, NotifyError, Secret,
    providers::{
        HttpProvider, base_url, join,
        pagerduty::{FieldMap, alert_key, check_key},
        post_json, token_header,
    },
};

/// Opsgenie's limit on an alert's `message`, in characters.
const MESSAGE_LIMIT: usize = 130;
/// Opsgenie's limit on `alias`, in characters.
const ALIAS_LIMIT: usize = 512;
/// Opsgenie's limit on `description`, in characters.
const DESCRIPTION_LIMIT: usize = 15_000;
/// Opsgenie's limit on `details`, keys and values together, in characters.
const DETAILS_LIMIT: usize = 8_000;
/// Opsgenie's limit on a `note`, in characters.
const NOTE_LIMIT: usize = 25_000;
/// What alerts and closes say they come from.
const SOURCE: &str = "healthd";

/// `opsgenie` keys: `api_key` (an API integration's key), `url`
/// (`https://api.opsgenie.com`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieConfig {
    /// The key of an Opsgenie API integration, sent as `Authorization: GenieKey <key>`.
    pub api_key: Secret,
    /// The Alert API's address (default `https://api.opsgenie.com`; EU accounts use
    /// `https://api.eu.opsgenie.com`).
    #[serde(default = "default_url")]
    pub url: String,
}

/// The Alert API's address when `url` is not set.
fn default_url() -> String {
    "https://api.opsgenie.com".to_owned()
}

#[derive(Serialize)]
struct Create<'a> {
    message: Cow<'a, str>,
    alias: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: String,
    priority: &'static str,
    source: &'static str,
    details: FieldMap<'a>,
}

#[derive(Serialize)]
struct Close {
    source: &'static str,
    note: String,
}

/// Opsgenie Alert API v2, with `Authorization: GenieKey <api_key>`.
///
/// Every message but up creates an alert: `POST <url>/v2/alerts` with
/// `{"message","alias","description","priority","source":"healthd","details"}`. The
/// message is the title (cut to 130 characters), the description the fields as plain
/// `Name: value` lines (cut to 15000), the details the fields by name (8000 characters in
/// all). Priority is `P1` for down and reminder, `P3` for stopped, cert_expiry and
/// flapping, `P5` for custom messages.
///
/// The alias of down, reminder and up names the outage (`<service>@<outage start>`), so
/// Opsgenie folds a reminder into the open alert, and an up closes it:
/// `POST <url>/v2/alerts/<alias>/close?identifierType=alias` with
/// `{"source":"healthd","note"}` (the note is the plain rendering). Other events get an
/// alias of their own (`<service>@<event>@<time>`). Opsgenie answers 202: the request is
/// queued. The `format` key does not apply.
pub(crate) struct OpsgenieProvider {
    /// `<url>/v2/alerts`.
    alerts: Url,
    /// `Authorization: GenieKey <api_key>`, built once from the checked key.
    auth: (HeaderName, HeaderValue),
}

impl HttpProvider for OpsgenieProvider {
    type Config = OpsgenieConfig;

    fn try_new(config: &OpsgenieConfig, _: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        check_key("api_key", &config.api_key)?;
        let auth = token_header("GenieKey ", &config.api_key)?;
        Ok(OpsgenieProvider {
            alerts: join(&base, "/v2/alerts")?,
            auth: (AUTHORIZATION, auth),
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let alias = alert_key(message, ALIAS_LIMIT);
        let priority = match message.event {
            MessageEvent::Up => {
                let close = Close {
                    source: SOURCE,
                    note: truncate(&message.render(Format::Plain), NOTE_LIMIT).into_owned(),
                };
                return post_json(&self.close_url(&alias), &close)
                    .with_headers([self.auth.clone()]);
            }
            MessageEvent::Down | MessageEvent::Reminder => "P1",
            MessageEvent::Stopped | MessageEvent::CertExpiry | MessageEvent::Flapping => "P3",
            MessageEvent::Custom => "P5",
        };
        let create = Create {
            message: truncate(&message.title, MESSAGE_LIMIT),
            alias,
            description: truncate(&message.render_fields(Format::Plain), DESCRIPTION_LIMIT)
                .into_owned(),
            priority,
            source: SOURCE,
            details: FieldMap::new(&message.fields, DETAILS_LIMIT),
        };
        post_json(&self.alerts, &create).with_headers([self.auth.clone()])
    }

    fn url(&self) -> &Url {
        &self.alerts
    }
}

impl OpsgenieProvider {
    /// `<url>/v2/alerts/<alias>/close?identifierType=alias`, the alias percent-encoded.
    fn close_url(&self, alias: &str) -> Url {
        let mut url = self.alerts.clone();
        let path = format!(
            "{}/{}/close",
            self.alerts.path().trim_end_matches('/'),
            encode_segment(alias)
        );
        url.set_path(&path);
        url.set_query(Some("identifierType=alias"));
        url
    }
}

/// Percent-encodes `text` for one URL path segment: every byte but the unreserved
/// characters of RFC 3986 (`A-Z a-z 0-9 - . _ ~`).
pub(super) fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use health_types::{Event, EventKind};

    use super::*;

    fn provider() -> OpsgenieProvider {
        let config = OpsgenieConfig {
            api_key: Secret::from("k-1"),
            url: "http://127.0.0.1:9/og/".into(),
        };
        OpsgenieProvider::try_new(&config, Format::Markdown).unwrap()
    }

    fn message(kind: EventKind, service: &str) -> Message {
        Message::from_event(&Event {
            kind,
            service: service.into(),
            url: "http://api.test/health".into(),
            detail: "HTTP 503".into(),
            latency: Duration::from_millis(12),
            last_seen: None,
            outage: Some(Duration::from_secs(192)),
            outage_start: Some(UNIX_EPOCH + Duration::from_secs(1_714_564_608)),
            time: UNIX_EPOCH + Duration::from_secs(1_714_564_800),
        })
    }

    #[test]
    fn up_closes_the_outage_alert_by_its_encoded_alias() {
        let provider = provider();
        let down = provider.request(&message(EventKind::Down, "my api/v2"));
        assert_eq!(down.url.as_str(), "http://127.0.0.1:9/og/v2/alerts");
        let body: serde_json::Value = serde_json::from_slice(&down.body).unwrap();
        assert_eq!(body["alias"], "my api/v2@2024-05-01T11:56:48Z");
        assert_eq!(body["priority"], "P1");
        assert_eq!(down.headers["authorization"], "GenieKey k-1");
        let up = provider.request(&message(EventKind::Up, "my api/v2"));
        assert_eq!(
            up.url.as_str(),
            "http://127.0.0.1:9/og/v2/alerts/my%20api%2Fv2%402024-05-01T11%3A56%3A48Z/close?identifierType=alias"
        );
        let body: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["source"], "healthd");
        assert!(
            body["note"]
                .as_str()
                .unwrap()
                .starts_with("Service up: my api/v2\n\n")
        );
        assert_eq!(up.headers["authorization"], "GenieKey k-1");
    }

    #[test]
    fn priorities_follow_the_event() {
        let provider = provider();
        let priority = |message: &Message| {
            let body: serde_json::Value =
                serde_json::from_slice(&provider.request(message).body).unwrap();
            body["priority"].as_str().unwrap().to_owned()
        };
        assert_eq!(priority(&message(EventKind::Reminder, "api")), "P1");
        assert_eq!(priority(&message(EventKind::Stopped, "api")), "P3");
        assert_eq!(priority(&message(EventKind::CertExpiry, "api")), "P3");
        assert_eq!(priority(&message(EventKind::Flapping, "api")), "P3");
        assert_eq!(priority(&Message::custom("hi", UNIX_EPOCH)), "P5");
    }

    #[test]
    fn long_text_is_cut_to_opsgenie_limits() {
        let mut message = message(EventKind::Down, &"s".repeat(600));
        message.title = "t".repeat(200);
        message.fields[3].value = "d".repeat(20_000);
        let request = provider().request(&message);
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let chars = |pointer: &str| {
            body.pointer(pointer)
                .unwrap()
                .as_str()
                .unwrap()
                .chars()
                .count()
        };
        assert_eq!(chars("/message"), MESSAGE_LIMIT);
        assert_eq!(chars("/alias"), ALIAS_LIMIT);
        assert_eq!(chars("/description"), DESCRIPTION_LIMIT);
        let details: usize = body["details"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| k.chars().count() + v.as_str().unwrap().chars().count())
            .sum();
        assert!(details <= DETAILS_LIMIT, "{details}");
    }

    #[test]
    fn the_api_key_is_checked_by_name() {
        let config = OpsgenieConfig {
            api_key: Secret::from(""),
            url: default_url(),
        };
        let err = OpsgenieProvider::try_new(&config, Format::Plain)
            .err()
            .unwrap();
        assert!(err.to_string().contains("`api_key`"), "{err}");
    }

    #[test]
    fn segments_keep_only_unreserved_characters() {
        assert_eq!(encode_segment("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(encode_segment("!r:x é"), "%21r%3Ax%20%C3%A9");
    }
}
