//! The `email` provider: SMTP with STARTTLS, implicit TLS or no encryption, via lettre
//! (tokio, rustls with the ring provider, Mozilla roots).

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use health_types::truncate;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
    message::{
        Mailbox,
        header::{self, ContentType},
    },
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};
use serde::{Deserialize, Deserializer, de};

use crate::{
    Format, Message, Notifier, NotifyError, Secret,
    names::parse_by_name,
    providers::{Provider, Setup, required},
};

/// The longest subject sent, in characters. RFC 5322 sets no limit on a subject, only
/// 998 characters on a line; mail clients show well under 100, so 250 keeps the whole
/// of any usual title (a monitor name included) with room to spare.
const SUBJECT_LIMIT: usize = 250;

/// `email` keys: `host`, `port` (587 for `starttls`, 465 for `tls`, 25 for `none`), `tls`
/// (`starttls`), `username`, `password`, `from`, `to` (a list).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server's host name or address.
    pub host: String,
    /// The SMTP port; the default depends on `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is secured (default `starttls`).
    #[serde(default)]
    pub tls: EmailTls,
    /// The login name, with `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// The password, with `username`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The sender, e.g. `Health <health@example.com>`.
    pub from: String,
    /// The recipients (at least one); a single address may be given as a string.
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(deserializer) {
        Ok(OneOrMany::One(address)) => Ok(vec![address]),
        Ok(OneOrMany::Many(addresses)) => Ok(addresses),
        Err(_) => Err(de::Error::custom(
            "expected a list of addresses, like [\"ops@example.com\"]",
        )),
    }
}

impl EmailConfig {
    /// The port in force: the configured one or the default for `tls`.
    pub(crate) fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            EmailTls::Starttls => 587,
            EmailTls::Tls => 465,
            EmailTls::None => 25,
        })
    }

    fn addresses(&self) -> Result<(Mailbox, Vec<Mailbox>), NotifyError> {
        required("host", &self.host)?;
        if self.port == Some(0) {
            return Err(NotifyError::config("port", "must not be 0"));
        }
        match (&self.username, &self.password) {
            (Some(_), None) => {
                return Err(NotifyError::config(
                    "password",
                    "is required with `username`",
                ));
            }
            (None, Some(_)) => {
                return Err(NotifyError::config(
                    "username",
                    "is required with `password`",
                ));
            }
            _ => {}
        }
        let mailbox = |key: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|err| NotifyError::config(key, format!("{text:?}: {err}")))
        };
        let from = mailbox("from", &self.from)?;
        if self.to.is_empty() {
            return Err(NotifyError::config("to", "must list at least one address"));
        }
        let to = self
            .to
            .iter()
            .map(|address| mailbox("to", address))
            .collect::<Result<_, _>>()?;
        Ok((from, to))
    }
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum EmailTls {
    /// Plain connect, then STARTTLS, required (the default; port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (port 25): for a trusted local relay only.
    None,
}

parse_by_name!(EmailTls, "tls mode", ["starttls" => Starttls, "tls" => Tls, "none" => None]);

/// Sends messages by email (SMTP speaks no HTTP, so email is a notifier of its own):
/// `Subject` is the title on one line, cut to 250 characters (RFC 2047-encoded when not
/// ASCII, folded at spaces); the body is the plain rendering (title, blank line,
/// `Name: value` lines) as `text/plain; charset=utf-8` under `MIME-Version: 1.0`; and
/// `Date` is the message's time. Email has no markdown, so `format` does not apply.
///
/// SMTP replies 5xx fail at once; 4xx replies and connection failures are retried by the
/// dispatcher.
pub(crate) struct EmailNotifier {
    name: String,
    provider: &'static str,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
}

impl Provider for EmailNotifier {
    type Config = EmailConfig;

    fn check(config: &EmailConfig) -> Result<(), NotifyError> {
        config.addresses().map(drop)
    }

    fn notifier(config: &EmailConfig, setup: Setup) -> Result<Arc<dyn Notifier>, NotifyError> {
        let (from, to) = config.addresses()?;
        let host = config.host.trim();
        let tls_parameters = || {
            TlsParameters::new(host.to_owned())
                .map_err(|err| NotifyError::config("host", format!("{host:?}: {err}")))
        };
        let tls = match config.tls {
            EmailTls::Starttls => Tls::Required(tls_parameters()?),
            EmailTls::Tls => Tls::Wrapper(tls_parameters()?),
            EmailTls::None => Tls::None,
        };
        let port = config.effective_port();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls);
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose().to_owned(),
            ));
        }
        Ok(Arc::new(EmailNotifier {
            name: setup.name,
            provider: setup.provider,
            from,
            to,
            transport: builder.build(),
            server: format!("{host}:{port}"),
        }))
    }
}

impl EmailNotifier {
    /// The email sent for `message`.
    fn email(&self, message: &Message) -> Result<lettre::Message, NotifyError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject(&message.title))
            .date(message.time)
            .message_id(None)
            // lettre adds `MIME-Version` only to MIME bodies (`singlepart`, `multipart`),
            // not to a raw one, yet `Content-Type` and `Content-Transfer-Encoding` mean
            // something only under it (RFC 2045 §4).
            .header(header::MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .body(message.render(Format::Plain))
            .map_err(NotifyError::Email)
    }
}

/// The `Subject` for a title: on one line (newlines and tabs become spaces) and at most
/// [`SUBJECT_LIMIT`] characters. lettre encodes what is not ASCII (RFC 2047) and folds
/// long subjects at spaces, but it cannot fold inside a word; with the limit even a
/// subject of one word stays well inside RFC 5322's 998-character line.
fn subject(title: &str) -> String {
    let flat: String = title
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&flat, SUBJECT_LIMIT).into_owned()
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &'static str {
        self.provider
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let email = self.email(message)?;
        self.transport
            .send(email)
            .await
            .map(drop)
            .map_err(NotifyError::Smtp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EmailConfig {
        EmailConfig {
            host: "127.0.0.1".into(),
            port: None,
            tls: EmailTls::None,
            username: None,
            password: None,
            from: "Health <health@example.test>".into(),
            to: vec!["ops@example.test".into()],
        }
    }

    #[test]
    fn ports_default_by_tls_mode() {
        let mut c = config();
        assert_eq!(c.effective_port(), 25);
        c.tls = EmailTls::Starttls;
        assert_eq!(c.effective_port(), 587);
        c.tls = EmailTls::Tls;
        assert_eq!(c.effective_port(), 465);
        c.port = Some(2525);
        assert_eq!(c.effective_port(), 2525);
    }

    #[test]
    fn bad_addresses_and_half_credentials_are_rejected() {
        type Change = fn(&mut EmailConfig);
        let cases: [(Change, &str); 4] = [
            (|c| c.to = vec!["not an address".into()], "invalid `to`:"),
            (|c| c.to.clear(), "invalid `to`:"),
            (|c| c.username = Some("me".into()), "invalid `password`:"),
            (|c| c.from = "@".into(), "invalid `from`:"),
        ];
        for (change, expected) in cases {
            let mut c = config();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}
