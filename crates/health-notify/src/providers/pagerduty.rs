//! The `pagerduty` provider: PagerDuty's Events API v2 (`POST <url>/v2/enqueue`), one
//! alert per outage, resolved when the service is up again.
//!
//! It also holds what the incident providers (`pagerduty`, `opsgenie`) share: the key
//! that names an outage's alert and the fields as a JSON object.

use std::{borrow::Cow, collections::HashSet};

use health_types::truncate;
use serde::{Deserialize, Serialize, Serializer, ser::SerializeMap};
use url::Url;

use crate::{
    Field, Format, HttpRequest, Level, Message, MessageEvent, NotifyError, Secret,
    message::rfc3339,
    providers::{HttpProvider, base_url, join, post_json},
};

/// PagerDuty's limit on `dedup_key`, in characters.
const DEDUP_KEY_LIMIT: usize = 255;
/// PagerDuty's limit on `payload.summary`, in characters.
const SUMMARY_LIMIT: usize = 1024;

/// `pagerduty` keys: `routing_key` (an Events API v2 integration key), `url`
/// (`https://events.pagerduty.com`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The integration (routing) key of an Events API v2 integration on a service or
    /// ruleset.
    pub routing_key: Secret,
    /// The Events API's address (default `https://events.pagerduty.com`); events go to
    /// `<url>/v2/enqueue`.
    #[serde(default = "default_url")]
    pub url: String,
}

/// The Events API's address when `url` is not set.
fn default_url() -> String {
    "https://events.pagerduty.com".to_owned()
}

#[derive(Serialize)]
struct Body<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
}

#[derive(Serialize)]
struct Payload<'a> {
    summary: Cow<'a, str>,
    source: &'a str,
    severity: &'static str,
    timestamp: String,
    custom_details: FieldMap<'a>,
}

/// PagerDuty Events API v2: `{"routing_key","event_action","dedup_key","payload"}` to
/// `<url>/v2/enqueue`.
///
/// - down and reminder: `trigger` with severity `critical`; their `dedup_key` names the
///   outage (`<service>@<outage start>`, e.g. `api@2024-05-01T11:56:48Z`), so a reminder
///   folds into the open alert instead of opening another.
/// - up: `resolve` with the same key and no payload.
/// - stopped, cert_expiry, flapping: `trigger` with severity `warning` and a key of their
///   own, `<service>@<event>@<time>`; custom messages likewise, with the severity of
///   their level (`error`, `warning` or `info`).
///
/// The payload's `summary` is the title (cut to 1024 characters), `source` the checked URL
/// (or the service name, or `healthd`), `timestamp` the message's time and
/// `custom_details` the fields by name. PagerDuty answers 202. The `format` key does not
/// apply.
pub(crate) struct PagerDutyProvider {
    /// `<url>/v2/enqueue`.
    endpoint: Url,
    routing_key: Secret,
}

impl HttpProvider for PagerDutyProvider {
    type Config = PagerDutyConfig;

    fn try_new(config: &PagerDutyConfig, _: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        check_key("routing_key", &config.routing_key)?;
        Ok(PagerDutyProvider {
            endpoint: join(&base, "/v2/enqueue")?,
            routing_key: config.routing_key.clone(),
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let dedup_key = alert_key(message, DEDUP_KEY_LIMIT);
        let (event_action, payload) = match message.event {
            MessageEvent::Up => ("resolve", None),
            _ => ("trigger", Some(self.payload(message))),
        };
        let body = Body {
            routing_key: self.routing_key.expose(),
            event_action,
            dedup_key,
            payload,
        };
        post_json(&self.endpoint, &body)
    }

    fn url(&self) -> &Url {
        &self.endpoint
    }
}

impl PagerDutyProvider {
    /// The payload of a `trigger`.
    fn payload<'a>(&self, message: &'a Message) -> Payload<'a> {
        let severity = match message.event {
            MessageEvent::Down | MessageEvent::Reminder => "critical",
            MessageEvent::Stopped | MessageEvent::CertExpiry | MessageEvent::Flapping => "warning",
            MessageEvent::Up | MessageEvent::Custom => match message.level {
                Level::Error => "error",
                Level::Warning => "warning",
                Level::Info => "info",
            },
        };
        let source = [message.url.as_str(), message.service.as_str()]
            .into_iter()
            .find(|s| !s.trim().is_empty())
            .unwrap_or("healthd");
        Payload {
            summary: truncate(&message.title, SUMMARY_LIMIT),
            source,
            severity,
            timestamp: message.time_rfc3339(),
            custom_details: FieldMap::new(&message.fields, usize::MAX),
        }
    }
}

/// Fails unless a credential key is non-empty visible ASCII without spaces, naming `key`.
pub(super) fn check_key(key: &str, value: &Secret) -> Result<(), NotifyError> {
    if value.expose().trim().is_empty() {
        return Err(NotifyError::config(key, "is required"));
    }
    if !value.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(NotifyError::config(
            key,
            "must be visible ASCII without spaces",
        ));
    }
    Ok(())
}

/// The key that names the alert `message` opens or closes, at most `limit` characters.
///
/// For down, reminder and up it names the outage: `<service>@<outage start>` (the
/// message's time when it has no outage start), the same for every message of one outage,
/// so the receiver folds reminders into the open alert and the up closes it. Other events
/// get a key of their own, `<service>@<event>@<time>`. A custom message without a service
/// uses its title. Times are RFC 3339 UTC to the second; a long name is cut (never the
/// time), so different outages keep different keys.
pub(super) fn alert_key(message: &Message, limit: usize) -> String {
    let name = if message.service.is_empty() {
        &message.title
    } else {
        &message.service
    };
    let suffix = match message.event {
        MessageEvent::Down | MessageEvent::Reminder | MessageEvent::Up => {
            format!("@{}", rfc3339(message.outage_start.unwrap_or(message.time)))
        }
        other => format!("@{other}@{}", message.time_rfc3339()),
    };
    let room = limit.saturating_sub(suffix.chars().count());
    format!("{}{suffix}", truncate(name, room))
}

/// The fields as a JSON object of name to value, in field order. A repeated name keeps
/// its first value (JSON object keys are unique); names and values together are cut to
/// a budget of characters, dropping the fields that no longer fit.
pub(super) struct FieldMap<'a>(Vec<(&'a str, Cow<'a, str>)>);

impl<'a> FieldMap<'a> {
    /// The fields of `fields`, names and values together at most `budget` characters.
    pub(super) fn new(fields: &'a [Field], budget: usize) -> Self {
        let mut seen = HashSet::new();
        let mut left = budget;
        let mut entries = Vec::new();
        for field in fields {
            if !seen.insert(field.name.as_str()) {
                continue;
            }
            let name_len = field.name.chars().count();
            if name_len >= left {
                break;
            }
            let value = truncate(&field.value, left - name_len);
            left -= name_len + value.chars().count();
            entries.push((field.name.as_str(), value));
        }
        FieldMap(entries)
    }
}

impl Serialize for FieldMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use health_types::{Event, EventKind};

    use super::*;

    fn message(kind: EventKind, outage_start: Option<u64>) -> Message {
        Message::from_event(&Event {
            kind,
            service: "api".into(),
            url: "http://api.test/health".into(),
            detail: "HTTP 503".into(),
            latency: Duration::from_millis(12),
            last_seen: None,
            outage: Some(Duration::from_secs(192)),
            outage_start: outage_start.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            time: UNIX_EPOCH + Duration::from_secs(1_714_564_800),
        })
    }

    fn body(message: &Message) -> serde_json::Value {
        let config = PagerDutyConfig {
            routing_key: Secret::from("R0UT1NG"),
            url: default_url(),
        };
        let request = PagerDutyProvider::try_new(&config, Format::Markdown)
            .unwrap()
            .request(message);
        assert_eq!(
            request.url.as_str(),
            "https://events.pagerduty.com/v2/enqueue"
        );
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn one_outage_has_one_dedup_key() {
        let start = Some(1_714_564_608);
        let down = body(&message(EventKind::Down, start));
        let reminder = body(&message(EventKind::Reminder, start));
        let up = body(&message(EventKind::Up, start));
        assert_eq!(down["dedup_key"], "api@2024-05-01T11:56:48Z");
        assert_eq!(reminder["dedup_key"], down["dedup_key"]);
        assert_eq!(up["dedup_key"], down["dedup_key"]);
        assert_eq!(down["event_action"], "trigger");
        assert_eq!(reminder["event_action"], "trigger");
        assert_eq!(reminder["payload"]["severity"], "critical");
        assert_eq!(up["event_action"], "resolve");
        assert!(up.get("payload").is_none(), "{up}");
        // Without an outage start the message's own time names it.
        let bare = body(&message(EventKind::Down, None));
        assert_eq!(bare["dedup_key"], "api@2024-05-01T12:00:00Z");
    }

    #[test]
    fn other_events_are_warnings_with_their_own_key() {
        for (kind, name) in [
            (EventKind::Stopped, "stopped"),
            (EventKind::CertExpiry, "cert_expiry"),
            (EventKind::Flapping, "flapping"),
        ] {
            let body = body(&message(kind, None));
            assert_eq!(body["event_action"], "trigger");
            assert_eq!(body["payload"]["severity"], "warning");
            assert_eq!(
                body["dedup_key"],
                format!("api@{name}@2024-05-01T12:00:00Z")
            );
        }
        let custom = Message::custom("hello", UNIX_EPOCH).with_level(Level::Error);
        let body = body(&custom);
        assert_eq!(body["payload"]["severity"], "error");
        assert_eq!(body["payload"]["source"], "healthd");
        assert_eq!(body["dedup_key"], "hello@custom@1970-01-01T00:00:00Z");
    }

    #[test]
    fn limits_cut_the_name_and_summary_never_the_time() {
        let mut long = message(EventKind::Down, Some(1_714_564_608));
        long.service = "s".repeat(400);
        long.title = "t".repeat(2000);
        let body = body(&long);
        let key = body["dedup_key"].as_str().unwrap();
        assert_eq!(key.chars().count(), DEDUP_KEY_LIMIT);
        assert!(key.ends_with("…@2024-05-01T11:56:48Z"), "{key}");
        let summary = body["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SUMMARY_LIMIT);
    }

    #[test]
    fn custom_details_keep_field_order_and_first_of_a_name() {
        let message = Message::custom("t", UNIX_EPOCH)
            .with_field("Zeta", "1")
            .with_field("Alpha", "2")
            .with_field("Zeta", "3");
        let json = serde_json::to_string(&FieldMap::new(&message.fields, usize::MAX)).unwrap();
        assert_eq!(json, r#"{"Zeta":"1","Alpha":"2"}"#);
        // 5 characters for Zeta, 5 + 2 for Alpha; nothing is left for the rest.
        let long = Message::custom("t", UNIX_EPOCH)
            .with_field("Zeta", "1")
            .with_field("Alpha", "23456")
            .with_field("Omega", "x");
        let cut = serde_json::to_string(&FieldMap::new(&long.fields, 12)).unwrap();
        assert_eq!(cut, r#"{"Zeta":"1","Alpha":"2…"}"#);
    }

    #[test]
    fn the_routing_key_is_checked_by_name() {
        let config = |key: &str| PagerDutyConfig {
            routing_key: Secret::from(key),
            url: default_url(),
        };
        for bad in ["", "  ", "a b"] {
            let err = PagerDutyProvider::try_new(&config(bad), Format::Plain)
                .err()
                .unwrap();
            assert!(err.to_string().contains("`routing_key`"), "{err}");
        }
    }
}
