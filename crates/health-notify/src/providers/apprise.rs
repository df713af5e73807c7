//! The `apprise` provider: a notification sent through an Apprise API server
//! (`caronc/apprise-api`), which fans it out to the services Apprise URLs name.

use std::borrow::Cow;

use health_types::truncate;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Format, HttpRequest, HttpResponse, Level, Message, MessageEvent, NotifyError, Secret,
    message::clean_bytes,
    providers::{HttpProvider, base_url, join, or_title, post_json, required},
};

/// The config key the Apprise API uses when none is named (its
/// `APPRISE_DEFAULT_CONFIG_ID`).
const DEFAULT_KEY: &str = "apprise";
/// The title is cut to this many characters. Apprise cuts titles and bodies to each
/// service's own limits; these limits only keep a request far below the API's 3 MB
/// upload limit.
const TITLE_LIMIT: usize = 1024;
/// The body is cut to this many characters (see [`TITLE_LIMIT`]).
const BODY_LIMIT: usize = 64 * 1024;
/// How much of an answer's body goes into an error (as for every other answer).
const ERROR_BODY_CHARS: usize = 200;

/// `apprise` keys: `url` (the Apprise API server) and exactly one of `urls` (stateless:
/// the Apprise URLs to notify) and `tag` (stateful: the tag expression to notify in the
/// configuration saved under `key`, default `apprise`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppriseConfig {
    /// The Apprise API server, e.g. `http://apprise:8000` (with its path prefix if it
    /// is served under one).
    pub url: String,
    /// Stateless: the Apprise URLs (`tgram://<token>/<chat>`, `mailto://...`) to notify,
    /// one string (several separated by commas or spaces) or a list; sent with every
    /// message to `<url>/notify/`. They carry the services' credentials, so `Debug`
    /// never shows them.
    #[serde(default)]
    pub urls: Option<AppriseUrls>,
    /// Stateful: which of the URLs saved on the server to notify, as an Apprise tag
    /// expression (`devops`; `a, b` for a or b; `a b` for a and b; `all` for every URL).
    #[serde(default)]
    pub tag: Option<String>,
    /// Stateful: the key the server's configuration is saved under (1 to 128 of
    /// `A-Z a-z 0-9 _ -`; default `apprise`). Only with `tag`.
    #[serde(default)]
    pub key: Option<String>,
}

/// The `urls` of an [`AppriseConfig`]: one string or a list, each hidden from `Debug`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AppriseUrls {
    /// `urls = "tgram://..., mailto://..."`.
    One(Secret),
    /// `urls = ["tgram://...", "mailto://..."]`.
    Many(Vec<Secret>),
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    urls: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    title: Cow<'a, str>,
    body: String,
    #[serde(rename = "type")]
    kind: &'static str,
    format: &'static str,
}

/// Where a request goes and what selects the services.
enum Target {
    /// `<url>/notify/` with the comma-joined Apprise URLs.
    Stateless { urls: String },
    /// `<url>/notify/<key>` with a tag expression.
    Stateful { tag: String },
}

/// Apprise API: `{"urls","title","body","type","format"}` to `<url>/notify/`
/// (stateless), or `{"tag","title","body","type","format"}` to `<url>/notify/<key>`
/// (stateful).
///
/// `type` is `failure` for down and reminders, `success` for up, `warning` for stopped,
/// certificate expiry and flapping, and for custom messages follows the level (`info`,
/// `warning`, `failure`). The body is the fields rendered in the notifier's format, with
/// `format` `markdown` or `text` to match. Apprise turns markdown into HTML for services
/// that take HTML but passes it on unchanged to text-only ones (SMS, Pushover, ...), so
/// markdown is the light rendering (`**Name:** value` lines with hard breaks, values
/// escaped only where a character would change the rendering), which reads well raw; the
/// title is sent as written (Apprise passes it on as text to services with a title of
/// their own).
///
/// Answers: 200 is delivered. 424 (some services failed, or the tag matched none) fails
/// at once, like other 4xx: the API does not say which services got the message, and
/// retrying would send it again to every one that did. 204 (no configuration under the
/// key, or no valid URLs) is a 2xx but delivered nothing, so it fails too, at once.
pub(crate) struct AppriseProvider {
    /// `<url>/notify/` or `<url>/notify/<key>`.
    endpoint: Url,
    format: Format,
    target: Target,
}

impl HttpProvider for AppriseProvider {
    type Config = AppriseConfig;

    fn try_new(config: &AppriseConfig, format: Format) -> Result<Self, NotifyError> {
        let base = base_url("url", &config.url)?;
        let (path, target) = match (&config.urls, &config.tag) {
            (Some(urls), None) => {
                if config.key.is_some() {
                    return Err(NotifyError::config(
                        "key",
                        "applies only with `tag` (stateful notifications)",
                    ));
                }
                (
                    "/notify/".to_owned(),
                    Target::Stateless {
                        urls: join_urls(urls)?,
                    },
                )
            }
            (None, Some(tag)) => {
                required("tag", tag)?;
                let key = config.key.as_deref().unwrap_or(DEFAULT_KEY);
                check_key(key)?;
                (
                    format!("/notify/{key}"),
                    Target::Stateful {
                        tag: tag.trim().to_owned(),
                    },
                )
            }
            (Some(_), Some(_)) => {
                return Err(NotifyError::config(
                    "urls",
                    "set either `urls` (stateless) or `tag` (stateful), not both",
                ));
            }
            (None, None) => {
                return Err(NotifyError::config(
                    "urls",
                    "one of `urls` (stateless) and `tag` (stateful) is required",
                ));
            }
        };
        Ok(AppriseProvider {
            endpoint: join(&base, &path)?,
            format,
            target,
        })
    }

    fn request(&self, message: &Message) -> HttpRequest {
        let (urls, tag) = match &self.target {
            Target::Stateless { urls } => (Some(urls.as_str()), None),
            Target::Stateful { tag } => (None, Some(tag.as_str())),
        };
        // Apprise converts markdown to HTML for services that take HTML but sends it as
        // written to text-only ones, so markdown is the light rendering, which reads well
        // raw too. The API refuses an empty body.
        let text = match self.format {
            Format::Markdown => message.render_fields_light(),
            Format::Plain => message.render_fields(Format::Plain),
        };
        let body = or_title(text, message);
        let body = Body {
            urls,
            tag,
            title: truncate(&message.title, TITLE_LIMIT),
            body: truncate(&body, BODY_LIMIT).into_owned(),
            kind: kind(message),
            format: match self.format {
                Format::Markdown => "markdown",
                Format::Plain => "text",
            },
        };
        post_json(&self.endpoint, &body)
    }

    fn url(&self) -> &Url {
        &self.endpoint
    }

    fn outcome(&self, response: HttpResponse) -> Result<(), NotifyError> {
        if response.status == StatusCode::NO_CONTENT {
            // Nothing was sent: no configuration under the key, or no valid URLs.
            let body = clean_bytes(&response.body);
            return Err(NotifyError::Status {
                status: StatusCode::NO_CONTENT.as_u16(),
                retry_after: None,
                body: truncate(body.trim(), ERROR_BODY_CHARS).into_owned(),
            });
        }
        response.into_result()
    }
}

/// The Apprise notification type.
fn kind(message: &Message) -> &'static str {
    match message.event {
        MessageEvent::Down | MessageEvent::Reminder => "failure",
        MessageEvent::Up => "success",
        MessageEvent::Stopped | MessageEvent::CertExpiry | MessageEvent::Flapping => "warning",
        MessageEvent::Custom => match message.level {
            Level::Error => "failure",
            Level::Warning => "warning",
            Level::Info => "info",
        },
    }
}

/// The `urls` key as the one comma-separated string the API takes. Errors never repeat
/// a URL: they carry credentials.
fn join_urls(urls: &AppriseUrls) -> Result<String, NotifyError> {
    let list = match urls {
        AppriseUrls::One(url) => std::slice::from_ref(url),
        AppriseUrls::Many(urls) => urls.as_slice(),
    };
    if list.is_empty() {
        return Err(NotifyError::config("urls", "must not be empty"));
    }
    let mut joined = Vec::with_capacity(list.len());
    for (i, url) in list.iter().enumerate() {
        let url = url.expose().trim();
        let which = || match urls {
            AppriseUrls::One(_) => "the value".to_owned(),
            AppriseUrls::Many(_) => format!("entry {}", i + 1),
        };
        if url.is_empty() {
            return Err(NotifyError::config("urls", format!("{} is empty", which())));
        }
        if !url.contains("://") {
            return Err(NotifyError::config(
                "urls",
                format!("{} is not an Apprise URL (`scheme://...`)", which()),
            ));
        }
        joined.push(url);
    }
    Ok(joined.join(","))
}

/// Checks a config key as the Apprise API's routes do: 1 to 128 of `A-Z a-z 0-9 _ -`.
fn check_key(key: &str) -> Result<(), NotifyError> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-');
    if key.is_empty() || key.len() > 128 || !key.bytes().all(valid) {
        return Err(NotifyError::config(
            "key",
            format!("{key:?} must be 1 to 128 of A-Z a-z 0-9 _ -"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn config(urls: Option<AppriseUrls>, tag: Option<&str>, key: Option<&str>) -> AppriseConfig {
        AppriseConfig {
            url: "http://apprise.test:8000/".into(),
            urls,
            tag: tag.map(Into::into),
            key: key.map(Into::into),
        }
    }

    fn error(config: &AppriseConfig) -> String {
        AppriseProvider::try_new(config, Format::Markdown)
            .err()
            .unwrap()
            .to_string()
    }

    #[test]
    fn stateless_and_stateful_endpoints() {
        let many = AppriseUrls::Many(vec![" tgram://1/2 ".into(), "mailto://u:p@x".into()]);
        let stateless =
            AppriseProvider::try_new(&config(Some(many), None, None), Format::Plain).unwrap();
        assert_eq!(
            stateless.endpoint.as_str(),
            "http://apprise.test:8000/notify/"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&stateless.request(&Message::custom("t", UNIX_EPOCH)).body)
                .unwrap();
        assert_eq!(body["urls"], "tgram://1/2,mailto://u:p@x");
        assert_eq!(body["body"], "t");
        assert_eq!(body["format"], "text");
        assert_eq!(body["type"], "info");
        assert!(body.get("tag").is_none());

        let stateful =
            AppriseProvider::try_new(&config(None, Some("devops"), None), Format::Plain).unwrap();
        assert_eq!(
            stateful.endpoint.as_str(),
            "http://apprise.test:8000/notify/apprise"
        );
        let keyed =
            AppriseProvider::try_new(&config(None, Some("a b"), Some("my-key_1")), Format::Plain)
                .unwrap();
        assert_eq!(
            keyed.endpoint.as_str(),
            "http://apprise.test:8000/notify/my-key_1"
        );
    }

    #[test]
    fn exactly_one_of_urls_and_tag() {
        let one = || Some(AppriseUrls::One("json://x".into()));
        assert_eq!(
            error(&config(None, None, None)),
            "invalid `urls`: one of `urls` (stateless) and `tag` (stateful) is required"
        );
        assert!(error(&config(one(), Some("t"), None)).contains("not both"));
        assert!(error(&config(one(), None, Some("k"))).starts_with("invalid `key`"));
        assert_eq!(
            error(&config(None, Some(" "), None)),
            "invalid `tag`: is required"
        );
    }

    #[test]
    fn bad_urls_and_keys_are_named_without_the_url() {
        let bad = config(
            Some(AppriseUrls::Many(vec![
                "json://x".into(),
                "s3cret-token".into(),
            ])),
            None,
            None,
        );
        let err = error(&bad);
        assert_eq!(
            err,
            "invalid `urls`: entry 2 is not an Apprise URL (`scheme://...`)"
        );
        assert!(!err.contains("s3cret"));
        assert!(error(&config(Some(AppriseUrls::Many(vec![])), None, None)).contains("empty"));
        assert!(error(&config(Some(AppriseUrls::One("".into())), None, None)).contains("empty"));
        for key in ["", "a/b", "a.b", &"k".repeat(129)] {
            assert!(
                error(&config(None, Some("t"), Some(key))).starts_with("invalid `key`"),
                "{key}"
            );
        }
    }

    #[test]
    fn types_follow_the_event_and_custom_messages_their_level() {
        let custom = Message::custom("t", UNIX_EPOCH);
        assert_eq!(kind(&custom), "info");
        assert_eq!(kind(&custom.clone().with_level(Level::Warning)), "warning");
        assert_eq!(kind(&custom.clone().with_level(Level::Error)), "failure");
        let reminder = Message {
            event: MessageEvent::Reminder,
            ..custom
        };
        assert_eq!(kind(&reminder), "failure");
    }

    #[test]
    fn markdown_is_the_light_rendering_that_reads_well_raw() {
        let provider =
            AppriseProvider::try_new(&config(None, Some("t"), None), Format::Markdown).unwrap();
        let message = Message::custom("t", UNIX_EPOCH)
            .with_field("Service", "my_api")
            .with_field("Detail", "HTTP 503 <html> a-b (x) *bold*");
        let body: serde_json::Value =
            serde_json::from_slice(&provider.request(&message).body).unwrap();
        assert_eq!(body["format"], "markdown");
        assert_eq!(
            body["body"],
            "**Service:** my_api  \n**Detail:** HTTP 503 \\<html> a-b (x) \\*bold\\*"
        );
    }

    #[test]
    fn no_content_is_a_permanent_failure_and_other_answers_as_usual() {
        let provider =
            AppriseProvider::try_new(&config(None, Some("t"), None), Format::Markdown).unwrap();
        let mut empty = HttpResponse::new(StatusCode::NO_CONTENT);
        empty.body = "There was no configuration found".into();
        let err = provider.outcome(empty).unwrap_err();
        assert_eq!(err.status(), Some(204));
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "receiver answered HTTP 204: There was no configuration found"
        );
        let failed = provider
            .outcome(HttpResponse::new(StatusCode::FAILED_DEPENDENCY))
            .unwrap_err();
        assert_eq!(failed.status(), Some(424));
        assert!(!failed.is_retryable());
        assert!(provider.outcome(HttpResponse::new(StatusCode::OK)).is_ok());
    }

    #[test]
    fn debug_never_shows_the_urls() {
        let config = config(
            Some(AppriseUrls::One("tgram://s3cret/1".into())),
            None,
            None,
        );
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
