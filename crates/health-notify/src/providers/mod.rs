//! The providers, one module each, the seam they plug into and the small helpers they
//! share (URL checks, header encoding, JSON bodies).
//!
//! An HTTP provider is a request builder ([`HttpProvider`]): it checks its keys once and
//! turns each [`Message`] into one [`HttpRequest`]. The generic [`HttpNotifier`] owns the
//! rest: the name, the provider key, the sender and `Debug`. Email speaks SMTP and is a
//! notifier of its own. Both are built through [`Provider`], which is all the registry in
//! `config.rs` needs of a provider, so adding one is a module here and a registry line.

pub(crate) mod alertmanager;
pub(crate) mod apprise;
pub(crate) mod discord;
pub(crate) mod email;
pub(crate) mod googlechat;
pub(crate) mod gotify;
pub(crate) mod matrix;
pub(crate) mod mattermost;
pub(crate) mod ntfy;
pub(crate) mod opsgenie;
pub(crate) mod pagerduty;
pub(crate) mod pushover;
pub(crate) mod slack;
pub(crate) mod teams;
pub(crate) mod telegram;
pub(crate) mod webhook;

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Method, header::AUTHORIZATION};
use serde::Serialize;
use url::Url;

use crate::{
    Format, HttpRequest, HttpSend, Message, Notifier, NotifyError, Secret, http::default_sender,
};

/// What every notifier is built from besides its provider's keys.
pub(crate) struct Setup {
    /// The notifier's name.
    pub(crate) name: String,
    /// The provider key (`webhook`, `discord`, ...).
    pub(crate) provider: &'static str,
    /// How providers that render text format it.
    pub(crate) format: Format,
    /// The sender under HTTP providers; a new hyper client when `None`.
    pub(crate) http: Option<Arc<dyn HttpSend>>,
}

/// How a provider's keys are checked and become a notifier: what the registry in
/// `config.rs` needs of each provider.
pub(crate) trait Provider {
    /// The provider's `[[notify]]` keys.
    type Config;

    /// Checks every key.
    fn check(config: &Self::Config) -> Result<(), NotifyError>;

    /// Builds the notifier `setup` names from checked keys.
    fn notifier(config: &Self::Config, setup: Setup) -> Result<Arc<dyn Notifier>, NotifyError>;
}

/// An HTTP provider: a request builder. It checks its keys once, then turns each message
/// into the one request that delivers it; [`HttpNotifier`] sends it.
pub(crate) trait HttpProvider: Sized + Send + Sync + 'static {
    /// The provider's `[[notify]]` keys.
    type Config;

    /// Checks the keys and prepares what every request needs (URL, headers); `format` is
    /// the notifier's.
    fn try_new(config: &Self::Config, format: Format) -> Result<Self, NotifyError>;

    /// The one request that delivers `message`.
    fn request(&self, message: &Message) -> HttpRequest;

    /// Where the requests go. `Debug` shows only its origin: paths can carry tokens.
    fn url(&self) -> &Url;

    /// What the receiver's answer means: by default 2xx is delivered and anything else
    /// a [`NotifyError::Status`]. A provider whose receiver answers a 2xx without
    /// delivering (the Apprise API's 204) overrides it.
    fn outcome(&self, response: crate::HttpResponse) -> Result<(), NotifyError> {
        response.into_result()
    }
}

impl<P: HttpProvider> Provider for P {
    type Config = P::Config;

    fn check(config: &P::Config) -> Result<(), NotifyError> {
        // The format changes how text is rendered, never whether the keys are valid.
        P::try_new(config, Format::default()).map(drop)
    }

    fn notifier(config: &P::Config, setup: Setup) -> Result<Arc<dyn Notifier>, NotifyError> {
        let requests = P::try_new(config, setup.format)?;
        Ok(Arc::new(HttpNotifier {
            name: setup.name,
            provider: setup.provider,
            http: setup.http.unwrap_or_else(default_sender),
            requests,
        }))
    }
}

/// The notifier of every HTTP provider: it owns the name, the provider key and the
/// sender, and makes one attempt per call with the request its provider builds.
pub(crate) struct HttpNotifier<P> {
    name: String,
    provider: &'static str,
    http: Arc<dyn HttpSend>,
    requests: P,
}

impl<P: HttpProvider> fmt::Debug for HttpNotifier<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpNotifier")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field(
                "origin",
                &self.requests.url().origin().ascii_serialization(),
            )
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<P: HttpProvider> Notifier for HttpNotifier<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &'static str {
        self.provider
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let request = self.requests.request(message);
        self.requests.outcome(self.http.send(request).await?)
    }
}

/// Parses a base URL from a config key: absolute, `http` or `https`, with a host, no
/// query or fragment (paths are appended to it).
pub(crate) fn base_url(key: &str, value: &str) -> Result<Url, NotifyError> {
    let url = http_url(key, value)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(NotifyError::config(
            key,
            format!("{} must not have a query or fragment", shown(value)),
        ));
    }
    Ok(url)
}

/// Parses a complete endpoint URL from a config key: absolute, `http` or `https`, with a
/// host.
///
/// Errors never repeat the value: webhook URLs carry their credential in the path or the
/// query (Slack, Discord, Mattermost, Teams' `sig`, Google Chat's `key` and `token`), so
/// an error shows only what [`shown`] keeps.
pub(crate) fn http_url(key: &str, value: &str) -> Result<Url, NotifyError> {
    required(key, value)?;
    let url = Url::parse(value)
        .map_err(|err| NotifyError::config(key, format!("{}: {err}", shown(value))))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NotifyError::config(
            key,
            format!("{} must be an http or https URL", shown(value)),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(NotifyError::config(
            key,
            format!("{} has no host", shown(value)),
        ));
    }
    Ok(url)
}

/// How errors and `Debug` show a URL from a config key, which may carry a credential in
/// its user info, path or query: only its origin when it parses with a host
/// (`"https://hooks.slack.com/…"`), its scheme when it parses without one
/// (`"mailto:…"`), and otherwise the host name it starts with (`"hooks.slack.com…"`) or
/// nothing (`"…"`). A `…` marks what was left out.
pub(crate) fn shown(value: &str) -> String {
    let value = value.trim();
    match Url::parse(value) {
        Ok(url) => match url.host_str().filter(|host| !host.is_empty()) {
            Some(host) => {
                let port = url
                    .port()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default();
                let origin = format!("{}://{host}{port}", url.scheme());
                let bare = matches!(url.path(), "" | "/")
                    && url.query().is_none()
                    && url.fragment().is_none()
                    && url.username().is_empty()
                    && url.password().is_none();
                if bare {
                    format!("{origin:?}")
                } else {
                    format!("{:?}", format!("{origin}/…"))
                }
            }
            None => format!("{:?}", format!("{}:…", url.scheme())),
        },
        Err(_) => {
            // Only a host name is shown: anything else could be the credential itself
            // (a token pasted into `url`).
            let head = value
                .split(['/', '?', '#', '@', ':'])
                .next()
                .unwrap_or_default();
            let host = head.contains('.')
                && head
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
            if !host {
                "\"…\"".to_owned()
            } else if head.len() == value.len() {
                format!("{head:?}")
            } else {
                format!("{:?}", format!("{head}…"))
            }
        }
    }
}

/// `base` with `path` (which starts with `/`) appended to its path.
pub(crate) fn join(base: &Url, path: &str) -> Result<Url, NotifyError> {
    let joined = format!("{}{path}", base.as_str().trim_end_matches('/'));
    // The base may carry a credential in its path: the error shows only its origin.
    Url::parse(&joined).map_err(|err| {
        NotifyError::config(
            "url",
            format!("{} with {path:?}: {err}", shown(base.as_str())),
        )
    })
}

/// Fails with "is required" when a required text key is empty.
pub(crate) fn required(key: &str, value: &str) -> Result<(), NotifyError> {
    if value.trim().is_empty() {
        Err(NotifyError::config(key, "is required"))
    } else {
        Ok(())
    }
}

/// Escapes `&`, `<` and `>` (Telegram's HTML mode and Slack's mrkdwn need no more).
pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text`, or the message's title when `text` is empty (a message with no fields);
/// providers that reject an empty body send the title instead.
pub(crate) fn or_title(text: String, message: &Message) -> String {
    if text.is_empty() {
        message.title.clone()
    } else {
        text
    }
}

/// The header value `<prefix><token>` (e.g. `Bearer <token>`), marked sensitive so it
/// never shows in `Debug`; fails unless the token is non-empty visible ASCII without
/// spaces.
pub(crate) fn token_header(prefix: &str, token: &Secret) -> Result<HeaderValue, NotifyError> {
    if token.is_empty() {
        return Err(NotifyError::config("token", "must not be empty"));
    }
    if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(NotifyError::config(
            "token",
            "must be visible ASCII without spaces",
        ));
    }
    let mut value = HeaderValue::try_from(format!("{prefix}{}", token.expose()))
        .expect("a visible ASCII prefix and checked token make a valid header value");
    value.set_sensitive(true);
    Ok(value)
}

/// `Authorization: Bearer <token>` for an optional `token` key, checked like
/// [`token_header`].
pub(crate) fn bearer(
    token: Option<&Secret>,
) -> Result<Option<(HeaderName, HeaderValue)>, NotifyError> {
    token
        .map(|token| Ok((AUTHORIZATION, token_header("Bearer ", token)?)))
        .transpose()
}

/// `Authorization: Basic <base64(username:password)>` (RFC 7617), marked sensitive so it
/// never shows in `Debug`; fails when the user name is empty or holds a `:` or a control
/// character, or the password is empty or holds a control character.
pub(crate) fn basic_auth(
    username: &str,
    password: &Secret,
) -> Result<(HeaderName, HeaderValue), NotifyError> {
    required("username", username)?;
    if username.contains(':') || username.chars().any(char::is_control) {
        return Err(NotifyError::config(
            "username",
            "must not contain `:` or control characters",
        ));
    }
    if password.is_empty() {
        return Err(NotifyError::config("password", "must not be empty"));
    }
    if password.expose().chars().any(char::is_control) {
        return Err(NotifyError::config(
            "password",
            "must not contain control characters",
        ));
    }
    let credentials = format!("{username}:{}", password.expose());
    let mut value = HeaderValue::try_from(format!("Basic {}", base64(credentials.as_bytes())))
        .expect("base64 text is a valid header value");
    value.set_sensitive(true);
    Ok((AUTHORIZATION, value))
}

/// A POST of `body` as `application/json`.
pub(crate) fn post_json(url: &Url, body: &impl Serialize) -> HttpRequest {
    HttpRequest::new(Method::POST, url.clone()).with_body("application/json", to_json(body))
}

/// Serializes a provider's body; the body types hold only strings and numbers.
pub(crate) fn to_json(body: &impl Serialize) -> String {
    serde_json::to_string(body).expect("a provider body serializes to JSON")
}

/// A header value for free text: newlines and tabs become spaces; text that is not
/// visible ASCII is sent as an RFC 2047 encoded word (`=?UTF-8?B?...?=`), which ntfy
/// and most receivers decode.
pub(crate) fn text_header(text: &str) -> HeaderValue {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.bytes().all(|b| (0x20..0x7f).contains(&b))
        && let Ok(value) = HeaderValue::from_str(&flat)
    {
        return value;
    }
    let encoded = format!("=?UTF-8?B?{}?=", base64(flat.as_bytes()));
    HeaderValue::try_from(encoded).expect("base64 text is a valid header value")
}

/// Standard base64 with padding (RFC 4648), for RFC 2047 headers.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatId, NotifierConfig, ProviderConfig, TelegramConfig};

    #[test]
    fn debug_shows_the_origin_never_the_path() {
        let telegram = TelegramConfig {
            token: Secret::from("123:hunter2"),
            chat_id: ChatId::Id(1),
            url: "https://api.telegram.org".into(),
        };
        let config = NotifierConfig::new("tg", Format::Plain, ProviderConfig::Telegram(telegram));
        let debug = format!("{:?}", config.build().unwrap());
        assert!(debug.contains("\"tg\""), "{debug}");
        assert!(debug.contains("\"telegram\""), "{debug}");
        assert!(debug.contains("https://api.telegram.org"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn provider_limits_cut_to_the_limit_with_a_marker() {
        assert_eq!(health_types::truncate("hello", 5), "hello");
        assert_eq!(health_types::truncate("hello!", 5), "hell…");
        assert_eq!(health_types::truncate("ééééé", 3).chars().count(), 3);
        assert_eq!(health_types::truncate("abc", 0), "");
        let long = "x".repeat(5000);
        let cut = health_types::truncate(&long, 1024);
        assert_eq!(cut.chars().count(), 1024);
        assert!(cut.ends_with(health_types::TRUNCATION_MARKER));
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn header_text_is_flat_ascii_or_encoded() {
        assert_eq!(text_header("Service down: api"), "Service down: api");
        assert_eq!(text_header("a\nb"), "a b");
        assert_eq!(text_header("café"), "=?UTF-8?B?Y2Fmw6k=?=");
    }

    #[test]
    fn url_errors_and_config_debug_never_show_the_credential() {
        use self::{
            discord::{DiscordConfig, DiscordProvider},
            googlechat::{GoogleChatConfig, GoogleChatProvider},
            mattermost::{MattermostConfig, MattermostProvider},
            slack::{SlackConfig, SlackProvider},
            teams::{TeamsConfig, TeamsProvider},
        };

        fn error<P: HttpProvider>(config: &P::Config) -> String {
            P::try_new(config, Format::Markdown)
                .map(drop)
                .expect_err("a bad URL")
                .to_string()
        }
        let mattermost = |url: &str| MattermostConfig {
            url: url.into(),
            username: None,
            icon_url: None,
            channel: None,
        };
        // Each value is wrong in a different way, and each carries `SECRET` where the
        // provider's credential goes.
        let bad = [
            "teams.test/workflows/1/invoke?api-version=1&sig=SECRET",
            "ftp://prod.logic.azure.com/workflows/1/invoke?sig=SECRET",
            "chat.googleapis.com/v1/spaces/A/messages?key=SECRET&token=SECRET",
            "htps://discord.com/api/webhooks/1/SECRET",
            "hooks.slack.com/services/T0/B0/SECRET",
            "http://:443/hooks/SECRET",
            "mailto:SECRET@example.test",
            "https://user:SECRET@[::1/x",
            "SECRET",
        ];
        let mut errors = Vec::new();
        for url in bad {
            errors.push(error::<TeamsProvider>(&TeamsConfig { url: url.into() }));
            errors.push(error::<GoogleChatProvider>(&GoogleChatConfig {
                url: url.into(),
            }));
            errors.push(error::<SlackProvider>(&SlackConfig { url: url.into() }));
            errors.push(error::<DiscordProvider>(&DiscordConfig { url: url.into() }));
            errors.push(error::<MattermostProvider>(&mattermost(url)));
        }
        errors.push(
            base_url("url", "http://apprise.test/?token=SECRET")
                .unwrap_err()
                .to_string(),
        );
        errors.push(
            base_url("url", "http://ntfy.test/#SECRET")
                .unwrap_err()
                .to_string(),
        );
        for err in &errors {
            assert!(err.starts_with("invalid `url`: "), "{err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
        // Still specific: what is wrong, and which URL.
        assert_eq!(
            error::<SlackProvider>(&SlackConfig {
                url: "hooks.slack.com/services/T0/B0/SECRET".into()
            }),
            "invalid `url`: \"hooks.slack.com…\": relative URL without a base"
        );
        assert_eq!(
            error::<TeamsProvider>(&TeamsConfig {
                url: "ftp://prod.logic.azure.com/workflows/1/invoke?sig=SECRET".into()
            }),
            "invalid `url`: \"ftp://prod.logic.azure.com/…\" must be an http or https URL"
        );
        assert_eq!(
            base_url("url", "http://apprise.test:8000/?token=SECRET")
                .unwrap_err()
                .to_string(),
            "invalid `url`: \"http://apprise.test:8000/…\" must not have a query or fragment"
        );
        assert_eq!(
            http_url("url", "ftp://nope").unwrap_err().to_string(),
            "invalid `url`: \"ftp://nope\" must be an http or https URL"
        );

        let url = "https://hooks.example.test:8443/services/SECRET?sig=SECRET";
        let debugs = [
            format!("{:?}", TeamsConfig { url: url.into() }),
            format!("{:?}", GoogleChatConfig { url: url.into() }),
            format!("{:?}", SlackConfig { url: url.into() }),
            format!("{:?}", DiscordConfig { url: url.into() }),
            format!("{:?}", mattermost(url)),
            format!(
                "{:?}",
                NotifierConfig::new(
                    "n",
                    Format::Plain,
                    ProviderConfig::Slack(SlackConfig { url: url.into() })
                )
            ),
        ];
        for debug in &debugs {
            assert!(
                debug.contains("https://hooks.example.test:8443/…"),
                "{debug}"
            );
            assert!(!debug.contains("SECRET"), "{debug}");
        }
        assert_eq!(
            debugs[4],
            "MattermostConfig { url: \"https://hooks.example.test:8443/…\", username: None, \
             icon_url: None, channel: None }"
        );
    }

    #[test]
    fn urls_are_checked_and_joined() {
        let base = base_url("url", "http://127.0.0.1:9/ntfy/").unwrap();
        assert_eq!(
            join(&base, "/alerts").unwrap().as_str(),
            "http://127.0.0.1:9/ntfy/alerts"
        );
        let err = base_url("url", "ftp://x").unwrap_err();
        assert!(err.to_string().starts_with("invalid `url`:"), "{err}");
        assert!(http_url("url", "").is_err());
        assert!(http_url("url", "not a url").is_err());
        assert!(base_url("url", "http://x/?q=1").is_err());
    }
}
