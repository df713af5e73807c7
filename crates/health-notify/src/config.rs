//! A `[[notify]]` table ([`NotifierConfig`]): `name`, `provider`, optional `format` and the
//! provider's own keys, validated when it is read and built into a [`Notifier`].

use std::sync::Arc;

use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value};

use crate::{
    DiscordConfig, EmailConfig, Format, GotifyConfig, HttpSend, Notifier, NotifyError, NtfyConfig,
    PushoverConfig, SlackConfig, TelegramConfig, WebhookConfig,
    providers::{
        Provider, Setup, discord::DiscordProvider, email::EmailNotifier, gotify::GotifyProvider,
        ntfy::NtfyProvider, pushover::PushoverProvider, slack::SlackProvider,
        telegram::TelegramProvider, webhook::WebhookProvider,
    },
};

/// Defines the provider registry from one table: each line is a provider's key, its
/// [`ProviderConfig`] variant, its config type and the [`Provider`] that checks the
/// config and builds the notifier. [`PROVIDERS`], [`ProviderConfig`] and its key, parsing,
/// validation and building, and each config's `validate`, all come from it.
macro_rules! registry {
    ($($key:literal => $variant:ident($config:ty, $provider:ty),)*) => {
        /// The provider keys, as written in `provider = "..."`.
        pub const PROVIDERS: [&str; [$($key),*].len()] = [$($key),*];

        /// A provider and its keys.
        #[derive(Clone, Debug, PartialEq)]
        pub enum ProviderConfig {
            $(
                #[doc = concat!("`provider = \"", $key, "\"`.")]
                $variant($config),
            )*
        }

        impl ProviderConfig {
            /// The provider key (`webhook`, `discord`, ...).
            pub const fn key(&self) -> &'static str {
                match self {
                    $(ProviderConfig::$variant(_) => $key,)*
                }
            }

            /// Checks every key of the provider.
            pub fn validate(&self) -> Result<(), NotifyError> {
                match self {
                    $(ProviderConfig::$variant(config) => config.validate(),)*
                }
            }

            fn from_keys(provider: &str, keys: Value) -> Result<Self, NotifyError> {
                match provider {
                    $($key => Ok(ProviderConfig::$variant(keys_into(keys)?)),)*
                    other => Err(NotifyError::config(
                        "provider",
                        format!(
                            "unknown provider {other:?}: expected one of {}",
                            PROVIDERS.join(", ")
                        ),
                    )),
                }
            }

            fn notifier(&self, setup: Setup) -> Result<Arc<dyn Notifier>, NotifyError> {
                match self {
                    $(ProviderConfig::$variant(config) => <$provider>::notifier(config, setup),)*
                }
            }
        }

        $(
            impl $config {
                /// Checks every key, as reading a `[[notify]]` table does.
                pub fn validate(&self) -> Result<(), NotifyError> {
                    <$provider>::check(self)
                }
            }
        )*
    };
}

registry! {
    "webhook" => Webhook(WebhookConfig, WebhookProvider),
    "discord" => Discord(DiscordConfig, DiscordProvider),
    "slack" => Slack(SlackConfig, SlackProvider),
    "ntfy" => Ntfy(NtfyConfig, NtfyProvider),
    "gotify" => Gotify(GotifyConfig, GotifyProvider),
    "telegram" => Telegram(TelegramConfig, TelegramProvider),
    "pushover" => Pushover(PushoverConfig, PushoverProvider),
    "email" => Email(EmailConfig, EmailNotifier),
    "teams" => Teams(crate::TeamsConfig, crate::providers::teams::TeamsProvider),
    "googlechat" => GoogleChat(crate::GoogleChatConfig, crate::providers::googlechat::GoogleChatProvider),
    "apprise" => Apprise(crate::AppriseConfig, crate::providers::apprise::AppriseProvider),
    "pagerduty" => PagerDuty(crate::PagerDutyConfig, crate::providers::pagerduty::PagerDutyProvider),
    "opsgenie" => Opsgenie(crate::OpsgenieConfig, crate::providers::opsgenie::OpsgenieProvider),
    "matrix" => Matrix(crate::MatrixConfig, crate::providers::matrix::MatrixProvider),
    "mattermost" => Mattermost(crate::MattermostConfig, crate::providers::mattermost::MattermostProvider),
    "alertmanager" => Alertmanager(crate::AlertmanagerConfig, crate::providers::alertmanager::AlertmanagerProvider),
}

/// One `[[notify]]` table: a named, validated notifier config.
///
/// Deserializing one (from the daemon's TOML file, say) checks every key, so a bad table
/// is rejected when the config is loaded, with the notifier's name, the key and the
/// reason; [`build`](Self::build) then cannot fail on a key.
///
/// ```
/// use health_notify::NotifierConfig;
///
/// let config: NotifierConfig = toml::from_str(
///     r#"
///     name = "ops"
///     provider = "ntfy"
///     url = "https://ntfy.example.com"
///     topic = "alerts"
///     "#,
/// )
/// .unwrap();
/// assert_eq!(config.name, "ops");
/// assert_eq!(config.provider.key(), "ntfy");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NotifierConfig {
    /// The notifier's name, used by monitors' `notify = [...]` lists.
    pub name: String,
    /// How providers that render text format it (default markdown).
    pub format: Format,
    /// The provider and its keys.
    pub provider: ProviderConfig,
}

/// Deserializes a provider's keys, naming the key in type errors.
fn keys_into<T: de::DeserializeOwned>(keys: Value) -> Result<T, NotifyError> {
    serde_path_to_error::deserialize(keys).map_err(|err| {
        let path = err.path().to_string();
        let reason = err.into_inner().to_string();
        if path == "." || path.is_empty() {
            // Unknown and missing keys: serde's message names the key itself.
            NotifyError::config("notify", reason)
        } else {
            NotifyError::config(path, reason)
        }
    })
}

impl NotifierConfig {
    /// A config in code; [`validate`](Self::validate) or [`build`](Self::build) checks it.
    pub fn new(name: impl Into<String>, format: Format, provider: ProviderConfig) -> Self {
        NotifierConfig {
            name: name.into(),
            format,
            provider,
        }
    }

    /// Reads and checks one `[[notify]]` table given as a JSON-like value (any serde
    /// format can produce one).
    pub fn from_table(table: Value) -> Result<Self, NotifyError> {
        let Value::Object(mut keys) = table else {
            return Err(NotifyError::config("notify", "must be a table"));
        };
        let name = take_string(&mut keys, "name");
        let shown_name = name.as_ref().map(String::clone).unwrap_or_default();
        let config = (|| {
            let name = name?;
            let provider = take_string(&mut keys, "provider")?;
            let format = match keys.remove("format") {
                None => Format::default(),
                Some(Value::String(format)) => format
                    .parse()
                    .map_err(|reason| NotifyError::config("format", reason))?,
                Some(other) => {
                    return Err(NotifyError::config(
                        "format",
                        format!("expected \"markdown\" or \"plain\", found {other}"),
                    ));
                }
            };
            let provider = ProviderConfig::from_keys(&provider, Value::Object(keys))?;
            let config = NotifierConfig::new(name, format, provider);
            config.validate()?;
            Ok(config)
        })();
        config.map_err(|err| NotifyError::notifier(shown_name, err))
    }

    /// Checks the name and every key of the provider.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if self.name.trim().is_empty() {
            return Err(NotifyError::config("name", "must not be empty"));
        }
        self.provider.validate()
    }

    /// Builds the notifier, sending HTTP through a new hyper client.
    pub fn build(&self) -> Result<Arc<dyn Notifier>, NotifyError> {
        self.build_inner(None)
    }

    /// Builds the notifier, sending HTTP through `http` (email ignores it).
    pub fn build_with(&self, http: Arc<dyn HttpSend>) -> Result<Arc<dyn Notifier>, NotifyError> {
        self.build_inner(Some(http))
    }

    fn build_inner(
        &self,
        http: Option<Arc<dyn HttpSend>>,
    ) -> Result<Arc<dyn Notifier>, NotifyError> {
        self.validate()
            .map_err(|err| NotifyError::notifier(self.name.as_str(), err))?;
        self.provider.notifier(Setup {
            name: self.name.clone(),
            provider: self.provider.key(),
            format: self.format,
            http,
        })
    }
}

fn take_string(keys: &mut Map<String, Value>, key: &'static str) -> Result<String, NotifyError> {
    match keys.remove(key) {
        Some(Value::String(value)) if !value.trim().is_empty() => Ok(value),
        Some(Value::String(_)) => Err(NotifyError::config(key, "must not be empty")),
        Some(other) => Err(NotifyError::config(
            key,
            format!("expected a string, found {other}"),
        )),
        None => Err(NotifyError::config(key, "is required")),
    }
}

impl<'de> Deserialize<'de> for NotifierConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Value::deserialize(deserializer)?;
        NotifierConfig::from_table(table).map_err(|err| de::Error::custom(err.chain()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<NotifierConfig, String> {
        toml::from_str::<NotifierConfig>(toml).map_err(|err| err.message().to_owned())
    }

    #[test]
    fn defaults_fill_in() {
        let config = parse(
            r#"name = "tg"
               provider = "telegram"
               token = "1:a"
               chat_id = "@ops""#,
        )
        .unwrap();
        assert_eq!(config.format, Format::Markdown);
        let ProviderConfig::Telegram(telegram) = config.provider else {
            panic!("not telegram");
        };
        assert_eq!(telegram.url, "https://api.telegram.org");

        let config = parse(
            r#"name = "mail"
               provider = "email"
               host = "smtp.example.test"
               from = "h@example.test"
               to = "ops@example.test""#,
        )
        .unwrap();
        let ProviderConfig::Email(email) = config.provider else {
            panic!("not email");
        };
        assert_eq!(email.to, ["ops@example.test"]);
        assert_eq!(email.tls, crate::EmailTls::Starttls);
        assert_eq!(email.effective_port(), 587);
    }

    #[test]
    fn build_makes_the_named_notifier() {
        let config = parse(
            r#"name = "hook"
               provider = "webhook"
               url = "http://127.0.0.1:1/""#,
        )
        .unwrap();
        let notifier = config.build().unwrap();
        assert_eq!(notifier.name(), "hook");
        assert_eq!(notifier.provider(), "webhook");
    }
}
