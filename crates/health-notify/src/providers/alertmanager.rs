//! The `alertmanager` provider: `POST <url>/api/v2/alerts` with one alert, the way
//! Prometheus sends them, so Alertmanager groups, deduplicates, silences and routes
//! healthd's alerts with everyone else's.
//!
//! # One alert per outage
//!
//! Alertmanager knows an alert by its label set, so the labels of one outage are the same
//! on its `down`, every `reminder` and its `up`, and the same on every replica of healthd
//! that runs the same config: `alertname`, `service` (the monitor), `instance` (the
//! checked URL, a password masked) and `severity`, plus the configured static `labels`.
//! Nothing that changes between messages (a time, the outage start, the detail) is a
//! label; that goes in `startsAt` and the annotations. Two replicas that each send every
//! alert to every Alertmanager node of a cluster therefore make one alert, and the
//! cluster sends one notification for it (see healthd's `tests/alertmanager.rs`).
//!
//! # Custom messages
//!
//! Custom messages have no outage to name them, so they also carry a `title` label: the
//! title itself when it is at most 128 characters (readable in Alertmanager's UI and
//! usable in routes and silences), else its first 111 characters, `…` and 16 hex digits
//! of a 64-bit FNV-1a hash of the whole title. Without it every custom message would have
//! the label set `{alertname="Custom", severity="info"}` and Alertmanager would fold
//! distinct ones into one alert; with it the same title sent twice is still one alert.
//!
//! # When an alert ends
//!
//! Alertmanager resolves an alert at its `endsAt`, or, when a sender gives none,
//! `resolve_timeout` (default 5 minutes) after it last heard of it: Prometheus re-sends
//! firing alerts every evaluation to keep them open. healthd sends a `down` once (and a
//! `reminder` only with `remind_every`), so:
//!
//! - `down` and `reminder` carry `endsAt` = their time + 365 days: a long outage stays
//!   firing however long it lasts, and it is the `up` that resolves it. (Should the `up`
//!   never come, because the monitor was removed from the config, the alert ends a year
//!   later or when someone silences it.)
//! - `up` carries `endsAt` = its time (not before the outage start): it resolves the
//!   alert at once.
//! - `stopped`, `cert_expiry`, `flapping` and custom messages are one-shot warnings with
//!   no end of their own: they carry no `endsAt`, so Alertmanager resolves them
//!   `resolve_timeout` (default 5 minutes) after they arrive, and receivers with
//!   `send_resolved: true` get a RESOLVED notification for them then. That is deliberate:
//!   an `endsAt` at the message time would make the alert arrive resolved, which
//!   Alertmanager never notifies as firing, and any later `endsAt` would only pick
//!   another arbitrary moment for the same RESOLVED. Routes that should not see it set
//!   `send_resolved: false` for these `alertname`s.
//!
//! # Authentication
//!
//! Alertmanager's own authentication is HTTP basic auth (`basic_auth_users` in its web
//! config): set `username` and `password`. A proxy in front of it may want a bearer
//! `token` instead; the two are exclusive. Credentials in the URL (`http://user:pw@host`)
//! are refused when the config is loaded, so they never end up in logs or errors.
//!
//! `startsAt` is the outage start for `down`, `up` and `reminder` (the message time when
//! the event has none), else the message time.

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, Message, MessageEvent, NotifyError, Secret,
    message::rfc3339,
    providers::{HttpProvider, base_url, basic_auth, bearer, join, post_json},
};

/// How long after a `down` or `reminder` its alert would end if no `up` came: long enough
/// that no real outage outlives it (see the module docs).
const FIRING_FOR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The labels the provider sets itself; `labels` must not set them.
const BUILT_IN_LABELS: [&str; 5] = ["alertname", "service", "instance", "severity", "title"];

/// The longest `title` label of a custom message, in characters (see the module docs).
const TITLE_LABEL_LIMIT: usize = 128;
/// How many hex digits of the title's hash end a cut `title` label.
const TITLE_HASH_DIGITS: usize = 16;

/// `alertmanager` keys: `url` (the Alertmanager), `username` and `password` or `token`
/// (optional), `labels` (optional extra static labels).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// The Alertmanager base URL, e.g. `http://alertmanager:9093`; a path prefix (a
    /// `--web.route-prefix`) is kept. It must not carry credentials (`user:pw@`): use
    /// `username` and `password`.
    pub url: String,
    /// With `password`: sent as `Authorization: Basic ...`, Alertmanager's own
    /// authentication (`basic_auth_users` in its web config). Not with `token`.
    #[serde(default)]
    pub username: Option<String>,
    /// The password of `username`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Sent as `Authorization: Bearer <token>` (for an Alertmanager behind a proxy). Not
    /// with `username` and `password`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Extra static labels on every alert (e.g. `team = "ops"`): names match
    /// `[a-zA-Z_][a-zA-Z0-9_]*`, values are not empty, and none may be `alertname`,
    /// `service`, `instance`, `severity` or `title`, which the provider sets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One alert of the Alertmanager API v2 (`postableAlert`).
#[derive(Serialize)]
struct Alert<'a> {
    labels: BTreeMap<&'a str, &'a str>,
    annotations: Annotations<'a>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<&'a str>,
}

#[derive(Serialize)]
struct Annotations<'a> {
    summary: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
}

/// Alertmanager: a JSON array with one alert to `<url>/api/v2/alerts`.
///
/// Labels: `alertname` (`ServiceDown` for down, reminder and up, `MonitorStopped`,
/// `CertificateExpiresSoon`, `MonitorFlapping` or `Custom`), `service` (the monitor,
/// when there is one), `instance` (the URL, when there is one), `severity` (`critical`
/// for down, reminder and up, `warning` for stopped, cert_expiry and flapping, `info` for
/// custom), for custom messages `title` (the title, cut as the module docs say) and the
/// configured `labels`. Annotations: `summary` (the title) and
/// `description` (the fields as plain text). `startsAt`, `endsAt` as the module docs
/// say; `generatorURL` is the URL when it is an absolute `http` or `https` one.
pub(crate) struct AlertmanagerProvider {
    /// `<url>/api/v2/alerts`.
    endpoint: Url,
    /// `Authorization: Basic ...` or `Bearer <token>`, built once from the checked keys.
    auth: Option<(HeaderName, HeaderValue)>,
    /// The configured extra labels, checked.
    labels: BTreeMap<String, String>,
}

impl HttpProvider for AlertmanagerProvider {
    type Config = AlertmanagerConfig;

    fn try_new(config: &AlertmanagerConfig, _format: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(NotifyError::config(
                "url",
                "must not carry credentials (`user:password@`); set `username` and \
                 `password` instead",
            ));
        }
        for (name, value) in &config.labels {
            check_label(name, value)?;
        }
        Ok(AlertmanagerProvider {
            endpoint: join(&base, "/api/v2/alerts")?,
            auth: auth(config)?,
            labels: config.labels.clone(),
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let (alertname, severity) = match message.event {
            MessageEvent::Down | MessageEvent::Reminder | MessageEvent::Up => {
                ("ServiceDown", "critical")
            }
            MessageEvent::Stopped => ("MonitorStopped", "warning"),
            MessageEvent::CertExpiry => ("CertificateExpiresSoon", "warning"),
            MessageEvent::Flapping => ("MonitorFlapping", "warning"),
            MessageEvent::Custom => ("Custom", "info"),
        };
        let mut labels: BTreeMap<&str, &str> = self
            .labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        labels.insert("alertname", alertname);
        labels.insert("severity", severity);
        // An empty label value is no label to Alertmanager: leave the label out.
        if !message.service.is_empty() {
            labels.insert("service", &message.service);
        }
        if !message.url.is_empty() {
            labels.insert("instance", &message.url);
        }
        let title = (message.event == MessageEvent::Custom).then(|| title_label(&message.title));
        if let Some(title) = title.as_deref().filter(|title| !title.is_empty()) {
            labels.insert("title", title);
        }
        let outage = matches!(
            message.event,
            MessageEvent::Down | MessageEvent::Reminder | MessageEvent::Up
        );
        let starts = match message.outage_start {
            Some(start) if outage => start,
            _ => message.time,
        };
        let ends = match message.event {
            MessageEvent::Down | MessageEvent::Reminder => Some(message.time + FIRING_FOR),
            // Never before the start (a wall clock stepped back), which Alertmanager
            // would refuse.
            MessageEvent::Up => Some(message.time.max(starts)),
            _ => None,
        };
        let description = message.render_fields(Format::Plain);
        let alert = Alert {
            labels,
            annotations: Annotations {
                summary: &message.title,
                description: &description,
            },
            starts_at: rfc3339(starts),
            ends_at: ends.map(rfc3339),
            generator_url: generator_url(&message.url),
        };
        post_json(&self.endpoint, &[alert]).with_headers(self.auth.clone())
    }

    fn url(&self) -> &Url {
        &self.endpoint
    }
}

/// `url` when it is an absolute `http` or `https` URL with a host (Alertmanager shows it
/// as the alert's source link).
fn generator_url(url: &str) -> Option<&str> {
    let parsed = Url::parse(url).ok()?;
    let web = matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some();
    web.then_some(url)
}

/// The `Authorization` header the keys ask for: basic auth from `username` and
/// `password`, a bearer `token`, or none.
fn auth(config: &AlertmanagerConfig) -> Result<Option<(HeaderName, HeaderValue)>, NotifyError> {
    match (&config.username, &config.password, &config.token) {
        (None, None, token) => bearer(token.as_ref()),
        (Some(_) | None, Some(_) | None, Some(_)) => Err(NotifyError::config(
            "token",
            "set either `token` (bearer) or `username` and `password` (basic auth), not both",
        )),
        (Some(username), Some(password), None) => basic_auth(username, password).map(Some),
        (Some(_), None, None) => Err(NotifyError::config(
            "password",
            "is required with `username`",
        )),
        (None, Some(_), None) => Err(NotifyError::config(
            "username",
            "is required with `password`",
        )),
    }
}

/// The `title` label of a custom message: the title when it has at most
/// [`TITLE_LABEL_LIMIT`] characters, else its start, `…` and a hash of the whole title,
/// so distinct long titles stay distinct labels.
fn title_label(title: &str) -> Cow<'_, str> {
    if title.chars().count() <= TITLE_LABEL_LIMIT {
        return Cow::Borrowed(title);
    }
    // FNV-1a, 64 bits: stable across runs and builds, unlike the standard hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in title.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let start: String = title
        .chars()
        .take(TITLE_LABEL_LIMIT - 1 - TITLE_HASH_DIGITS)
        .collect();
    Cow::Owned(format!("{start}…{hash:016x}"))
}

/// Checks one configured label: a Prometheus label name that is not one the provider
/// sets, and a non-empty value.
fn check_label(name: &str, value: &str) -> Result<(), NotifyError> {
    let key = format!("labels.{name}");
    let mut bytes = name.bytes();
    let valid = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(NotifyError::config(
            key,
            format!(
                "{name:?} is not a label name: letters, digits and `_`, not starting with a digit"
            ),
        ));
    }
    if BUILT_IN_LABELS.contains(&name) {
        return Err(NotifyError::config(
            key,
            format!(
                "{name:?} is set by the provider; extra labels must not be one of {}",
                BUILT_IN_LABELS.join(", ")
            ),
        ));
    }
    if value.is_empty() {
        return Err(NotifyError::config(
            key,
            "must not be empty (an empty label is no label to Alertmanager)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use health_types::{Event, EventKind};

    use super::*;

    fn config(labels: &[(&str, &str)]) -> AlertmanagerConfig {
        AlertmanagerConfig {
            url: "http://127.0.0.1:9093/am".into(),
            username: None,
            password: None,
            token: None,
            labels: labels
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn check(labels: &[(&str, &str)]) -> Result<(), String> {
        AlertmanagerProvider::try_new(&config(labels), Format::Plain)
            .map(drop)
            .map_err(|err| err.to_string())
    }

    fn body(provider: &AlertmanagerProvider, message: &Message) -> serde_json::Value {
        let request = provider.request(message);
        serde_json::from_slice(&request.body).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn message(kind: EventKind, url: &str, outage_start: Option<SystemTime>) -> Message {
        Message::from_event(&Event {
            kind,
            service: "api".into(),
            url: url.into(),
            detail: "HTTP 503".into(),
            latency: Duration::from_millis(3),
            last_seen: None,
            outage: Some(Duration::from_secs(60)),
            outage_start,
            time: at(1_714_564_800),
        })
    }

    #[test]
    fn label_names_follow_prometheus() {
        for good in ["team", "_x", "A9_b", "region_1"] {
            assert_eq!(check(&[(good, "v")]), Ok(()), "{good}");
        }
        for bad in ["", "1team", "team-a", "tëam", "a.b", "a b"] {
            let err = check(&[(bad, "v")]).unwrap_err();
            assert!(err.contains(&format!("labels.{bad}")), "{err}");
            assert!(err.contains("not a label name"), "{err}");
        }
    }

    #[test]
    fn extra_labels_must_not_override_the_built_in_ones_nor_be_empty() {
        for built_in in BUILT_IN_LABELS {
            let err = check(&[(built_in, "x")]).unwrap_err();
            assert!(err.contains("is set by the provider"), "{err}");
        }
        let err = check(&[("team", "")]).unwrap_err();
        assert!(err.contains("`labels.team`"), "{err}");
        assert!(err.contains("must not be empty"), "{err}");
    }

    #[test]
    fn the_path_prefix_is_kept() {
        let provider = AlertmanagerProvider::try_new(&config(&[]), Format::Plain).unwrap();
        assert_eq!(
            provider.url().as_str(),
            "http://127.0.0.1:9093/am/api/v2/alerts"
        );
    }

    #[test]
    fn one_outage_has_one_label_set_and_its_up_resolves_it() {
        let provider =
            AlertmanagerProvider::try_new(&config(&[("team", "ops")]), Format::Plain).unwrap();
        let start = Some(at(1_714_564_740));
        let url = "http://admin:s3cret@api.test/health";
        let down = body(&provider, &message(EventKind::Down, url, start));
        let reminder = body(&provider, &message(EventKind::Reminder, url, start));
        let up = body(&provider, &message(EventKind::Up, url, start));
        assert_eq!(down[0]["labels"], reminder[0]["labels"]);
        assert_eq!(down[0]["labels"], up[0]["labels"]);
        assert_eq!(
            down[0]["labels"],
            serde_json::json!({
                "alertname": "ServiceDown",
                "instance": "http://admin:***@api.test/health",
                "service": "api",
                "severity": "critical",
                "team": "ops",
            })
        );
        for alert in [&down, &reminder, &up] {
            assert_eq!(alert[0]["startsAt"], "2024-05-01T11:59:00Z");
            assert_eq!(alert[0]["generatorURL"], "http://admin:***@api.test/health");
        }
        assert_eq!(down[0]["endsAt"], "2025-05-01T12:00:00Z");
        assert_eq!(up[0]["endsAt"], "2024-05-01T12:00:00Z");
    }

    #[test]
    fn one_shot_warnings_have_no_end_and_odd_urls_no_generator() {
        let provider = AlertmanagerProvider::try_new(&config(&[]), Format::Plain).unwrap();
        let stopped = body(
            &provider,
            &message(EventKind::Stopped, "tcp://db:5432", None),
        );
        assert_eq!(stopped[0]["labels"]["alertname"], "MonitorStopped");
        assert_eq!(stopped[0]["labels"]["severity"], "warning");
        assert_eq!(stopped[0]["labels"]["instance"], "tcp://db:5432");
        assert_eq!(stopped[0]["startsAt"], "2024-05-01T12:00:00Z");
        assert!(stopped[0].get("endsAt").is_none(), "{stopped}");
        assert!(stopped[0].get("generatorURL").is_none(), "{stopped}");

        let custom = body(&provider, &Message::custom("hello", at(0)));
        assert_eq!(
            custom,
            serde_json::json!([{
                "labels": {"alertname": "Custom", "severity": "info", "title": "hello"},
                "annotations": {"summary": "hello"},
                "startsAt": "1970-01-01T00:00:00Z",
            }])
        );
    }

    #[test]
    fn custom_messages_are_told_apart_by_their_title() {
        let provider = AlertmanagerProvider::try_new(&config(&[]), Format::Plain).unwrap();
        let labels =
            |title: &str| body(&provider, &Message::custom(title, at(0)))[0]["labels"].clone();
        assert_ne!(labels("Deploy started"), labels("Backup failed"));
        assert_eq!(labels("Deploy started"), labels("Deploy started"));
        assert_eq!(labels("Deploy started")["title"], "Deploy started");
        // Long titles are cut to the limit, and a hash keeps ones that differ only past
        // the cut apart.
        let long = |end: &str| format!("{}{end}", "x".repeat(200));
        let (a, b) = (labels(&long("a")), labels(&long("b")));
        assert_ne!(a, b);
        let title = a["title"].as_str().unwrap();
        assert_eq!(title.chars().count(), TITLE_LABEL_LIMIT);
        assert!(title.starts_with(&"x".repeat(111)), "{title}");
        assert_eq!(title, title_label(&long("a")));
        // A monitor's messages never carry it: one outage keeps one label set.
        let down = body(
            &provider,
            &message(EventKind::Down, "http://api.test/", None),
        );
        assert!(down[0]["labels"].get("title").is_none(), "{down}");
    }

    #[test]
    fn basic_auth_or_a_token_and_no_credentials_in_the_url() {
        let with = |username: Option<&str>, password: Option<&str>, token: Option<&str>| {
            AlertmanagerProvider::try_new(
                &AlertmanagerConfig {
                    username: username.map(Into::into),
                    password: password.map(Into::into),
                    token: token.map(Into::into),
                    ..config(&[])
                },
                Format::Plain,
            )
            .map(|provider| provider.request(&Message::custom("t", at(0))))
            .map_err(|err| err.to_string())
        };
        let basic = with(Some("healthd"), Some("s3cret"), None).unwrap();
        // base64("healthd:s3cret")
        assert_eq!(basic.headers["authorization"], "Basic aGVhbHRoZDpzM2NyZXQ=");
        assert!(basic.headers["authorization"].is_sensitive());
        let bearer = with(None, None, Some("tk")).unwrap();
        assert_eq!(bearer.headers["authorization"], "Bearer tk");
        assert!(
            with(None, None, None)
                .unwrap()
                .headers
                .get("authorization")
                .is_none()
        );

        let err = with(Some("u"), Some("p"), Some("tk")).unwrap_err();
        assert!(
            err.starts_with("invalid `token`") && err.contains("not both"),
            "{err}"
        );
        let err = with(None, Some("p"), Some("tk")).unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let err = with(Some("u"), None, None).unwrap_err();
        assert_eq!(err, "invalid `password`: is required with `username`");
        let err = with(None, Some("p"), None).unwrap_err();
        assert_eq!(err, "invalid `username`: is required with `password`");
        let err = with(Some("a:b"), Some("p"), None).unwrap_err();
        assert!(err.starts_with("invalid `username`"), "{err}");
        let err = with(Some("u"), Some(""), None).unwrap_err();
        assert!(err.starts_with("invalid `password`"), "{err}");

        for url in [
            "http://admin:s3cret@127.0.0.1:9093",
            "http://admin@127.0.0.1:9093",
        ] {
            let err = AlertmanagerProvider::try_new(
                &AlertmanagerConfig {
                    url: url.into(),
                    ..config(&[])
                },
                Format::Plain,
            )
            .map(drop)
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("invalid `url`: must not carry credentials"),
                "{err}"
            );
            assert!(err.contains("`username` and `password`"), "{err}");
            assert!(!err.contains("s3cret") && !err.contains("admin"), "{err}");
        }
    }

    #[test]
    fn an_up_never_ends_before_it_starts() {
        let provider = AlertmanagerProvider::try_new(&config(&[]), Format::Plain).unwrap();
        // The wall clock stepped back between the outage start and the up.
        let up = body(
            &provider,
            &message(EventKind::Up, "http://api.test/", Some(at(1_714_564_900))),
        );
        assert_eq!(up[0]["startsAt"], up[0]["endsAt"]);
    }
}
