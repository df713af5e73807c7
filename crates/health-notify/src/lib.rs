//! Notifications for the health toolkit (SPEC §6, §9.1): the message model, one provider
//! per destination, and a [`Dispatcher`] that delivers from an outbox.
//!
//! A monitor event becomes a [`Message`] (`Service down: api`, ordered fields, a colour).
//! The dispatcher delivers from an [`Outbox`](health_types::Outbox): a durable one that a
//! store fills (notifications then survive a restart), or its own [`MemoryOutbox`], in
//! which case it is the [`health_types::EventSink`] monitors report to and never blocks
//! them. Each [`Notifier`] has one task that starts its entries in commit order, up to
//! 16 requests at once, and delivers each monitor's entries strictly in order, retrying
//! transport errors, timeouts, HTTP 408, 429 and 5xx with exponential backoff (honouring
//! `Retry-After`) until the message is delivered or `max_age` old ([`RetryPolicy`]). So
//! a receiver that is away for a while loses nothing, an `up` never arrives before its
//! `down`, and a message that the receiver refuses holds back only its own monitor's
//! later messages.
//!
//! That is how SPEC §9.1's "in order per notifier" is kept: started in commit order, one
//! monitor's messages delivered strictly in order. Strict order across all monitors
//! would let one message the receiver refuses hold back every other monitor's alerts
//! (see [`Dispatcher`]'s "Order").
//!
//! # Configuration
//!
//! Each `[[notify]]` table of the daemon's config deserializes into a
//! [`NotifierConfig`]: `name`, `provider`, an optional `format` (`markdown`, the default,
//! or `plain`, for providers that render text) and the provider's keys. Unknown keys are
//! rejected, and every error names the notifier and the key. Every provider has a `url`
//! (or `host`) so tests can point it at loopback.
//!
//! Generic webhook, with the default JSON body
//! `{"event","title","message","fields":[{"name","value"}],"service","url","detail","level","color","time"}`
//! or a `payload` template (`$title $message $fields $color $event $service $url $detail
//! $time`, substituted in one pass; with a JSON MIME type string placeholders become
//! quoted JSON strings, `$fields` a JSON array and `$color` bare `#rrggbb` or digits):
//! ```toml
//! [[notify]]
//! name = "hook"
//! provider = "webhook"
//! url = "https://hooks.example.com/health"
//! method = "POST"                  # or "PUT"
//! mime_type = "application/json"   # or "application/x-www-form-urlencoded", "text/plain"
//! token = "s3cret"                 # optional: Authorization: Bearer s3cret
//! color_mode = "dec"               # "hex" (default) or "dec"
//! payload = '{"text": $title, "color": $color, "fields": $fields}'
//! ```
//! Discord (one embed; integer colour):
//! ```toml
//! [[notify]]
//! name = "discord"
//! provider = "discord"
//! url = "https://discord.com/api/webhooks/123/abc"
//! ```
//! Slack (incoming webhook, `text` and `blocks`):
//! ```toml
//! [[notify]]
//! name = "slack"
//! provider = "slack"
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//! format = "plain"
//! ```
//! ntfy (`POST <url>/<topic>` with `Title`, `Priority` and `Markdown` headers):
//! ```toml
//! [[notify]]
//! name = "phone"
//! provider = "ntfy"
//! url = "https://ntfy.sh"
//! topic = "my-alerts"
//! token = "tk_abc"                 # optional
//! ```
//! Gotify (`POST <url>/message`, priority 8 for down, 4 for up):
//! ```toml
//! [[notify]]
//! name = "gotify"
//! provider = "gotify"
//! url = "https://gotify.example.com"
//! token = "AbCdEf"
//! ```
//! Telegram (bot `sendMessage`):
//! ```toml
//! [[notify]]
//! name = "telegram"
//! provider = "telegram"
//! token = "123456:ABC-DEF"
//! chat_id = -1001234567890         # or "@channel"
//! url = "https://api.telegram.org" # the default
//! ```
//! Pushover (`POST <url>/1/messages.json`, a form):
//! ```toml
//! [[notify]]
//! name = "pushover"
//! provider = "pushover"
//! token = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
//! user = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
//! url = "https://api.pushover.net" # the default
//! ```
//! Email (SMTP; `tls` is `starttls`, the default, `tls` or `none`; the port defaults to
//! 587, 465 or 25 accordingly):
//! ```toml
//! [[notify]]
//! name = "mail"
//! provider = "email"
//! host = "smtp.example.com"
//! port = 587
//! tls = "starttls"
//! username = "health"
//! password = "app-password"
//! from = "Health <health@example.com>"
//! to = ["ops@example.com", "On call <oncall@example.com>"]
//! ```
//!
//! Alertmanager (`POST <url>/api/v2/alerts`, API v2; labels `alertname`, `service`,
//! `instance`, `severity` and the extra `labels`, the same for the `down`, reminders and
//! `up` of one outage and on every replica; `endsAt` a year on for down, so the `up`
//! resolves it; list every node of a cluster as its own notifier):
//! ```toml
//! [[notify]]
//! name = "alertmanager"
//! provider = "alertmanager"
//! url = "http://alertmanager:9093"
//! token = "s3cret"                 # optional: Authorization: Bearer s3cret
//! # or, for Alertmanager's own basic auth: username = "healthd", password = "..."
//! labels = { team = "ops", env = "prod" }  # optional extra labels
//! ```
//!
//! PagerDuty (Events API v2, `POST <url>/v2/enqueue`; `dedup_key` = `<service>@<outage
//! start>`, so reminders fold into the open alert and the `up` resolves it):
//! ```toml
//! [[notify]]
//! name = "pagerduty"
//! provider = "pagerduty"
//! routing_key = "R0UT1NGKEY0123456789ABCDEFGHIJKL"
//! url = "https://events.pagerduty.com" # the default
//! ```
//! Opsgenie (Alert API v2; alias = `<service>@<outage start>`, closed by alias on `up`):
//! ```toml
//! [[notify]]
//! name = "opsgenie"
//! provider = "opsgenie"
//! api_key = "eb243592-faa2-4ba2-a551q-1afdf565c889"
//! url = "https://api.opsgenie.com" # the default; EU: https://api.eu.opsgenie.com
//! ```
//! Matrix (`m.room.message` to a room id, as the account of the access token; a retried
//! send reuses its transaction id, so it never posts twice):
//! ```toml
//! [[notify]]
//! name = "matrix"
//! provider = "matrix"
//! url = "https://matrix.example.org"
//! room = "!AbCdEfGhIjKlMnOp:example.org"  # the room id, not an #alias
//! token = "syt_aGVhbHRoZA_abcdefghijklmnop_0a1b2c"
//! ```
//! Mattermost (incoming webhook; one attachment with the colour, title and fields):
//! ```toml
//! [[notify]]
//! name = "mattermost"
//! provider = "mattermost"
//! url = "https://mattermost.example.com/hooks/xxx-generatedkey-xxx"
//! username = "healthd"             # optional overrides
//! icon_url = "https://example.com/healthd.png"
//! channel = "ops"
//! ```
//!
//! Microsoft Teams (a Workflows "When a Teams webhook request is received" trigger; an
//! Adaptive Card with the title and a fact set; the URL keeps its query):
//! ```toml
//! [[notify]]
//! name = "teams"
//! provider = "teams"
//! url = "https://prod-00.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=XXXX"
//! ```
//! Google Chat (incoming webhook; one card with the title and a row per field; the URL
//! keeps its `key` and `token`):
//! ```toml
//! [[notify]]
//! name = "gchat"
//! provider = "googlechat"
//! url = "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=XXXX&token=YYYY"
//! ```
//! Apprise API (`POST <url>/notify/` with the Apprise `urls`, or `POST <url>/notify/<key>`
//! with a `tag` of the configuration saved under `key`, default `apprise`; exactly one of
//! `urls` and `tag`; `type` failure, success, warning or info):
//! ```toml
//! [[notify]]
//! name = "apprise"
//! provider = "apprise"
//! url = "http://apprise:8000"
//! urls = ["tgram://123456:ABC/-1001234567890", "mailto://user:pass@example.com"]
//!
//! [[notify]]
//! name = "apprise-ops"
//! provider = "apprise"
//! url = "http://apprise:8000"
//! tag = "devops"
//! key = "apprise"                  # the default
//! ```
//!
//! # Example
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//!
//! use health_notify::{Dispatcher, NotifierConfig};
//!
//! #[derive(serde::Deserialize)]
//! struct File {
//!     notify: Vec<NotifierConfig>,
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let file: File = toml::from_str(
//!     r#"
//!     [[notify]]
//!     name = "phone"
//!     provider = "ntfy"
//!     url = "https://ntfy.sh"
//!     topic = "my-alerts"
//!     "#,
//! )?;
//! let notifiers = file.notify.iter().map(NotifierConfig::build).collect::<Result<Vec<_>, _>>()?;
//! let dispatcher = Dispatcher::builder().notifiers(notifiers).start()?;
//! // Give `Arc::new(dispatcher.clone())` (all notifiers) or
//! // `Arc::new(dispatcher.targeted(["phone"])?)` to monitors as their EventSink.
//! dispatcher.shutdown(Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

mod config;
mod delivery;
mod dispatcher;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
mod http;
mod message;
mod names;
mod notifier;
mod outbox;
pub mod policy;
mod providers;
mod retry;

pub use self::{
    config::{NotifierConfig, PROVIDERS, ProviderConfig},
    delivery::Stats,
    dispatcher::{
        Dispatcher, DispatcherBuilder, NotifierBacklog, NotifierStats, ShutdownReport, TargetedSink,
    },
    error::{NotifyError, RetryAfter},
    http::{HttpRequest, HttpResponse, HttpSend},
    message::{Color, Field, Format, Level, Message, MessageEvent},
    notifier::{Notifier, Secret},
    outbox::MemoryOutbox,
    providers::{
        alertmanager::AlertmanagerConfig,
        apprise::{AppriseConfig, AppriseUrls},
        discord::DiscordConfig,
        email::{EmailConfig, EmailTls},
        googlechat::GoogleChatConfig,
        gotify::GotifyConfig,
        matrix::MatrixConfig,
        mattermost::MattermostConfig,
        ntfy::NtfyConfig,
        opsgenie::OpsgenieConfig,
        pagerduty::PagerDutyConfig,
        pushover::PushoverConfig,
        slack::SlackConfig,
        teams::TeamsConfig,
        telegram::{ChatId, TelegramConfig},
        webhook::{ColorMode, MimeType, WebhookConfig, WebhookMethod},
    },
    retry::RetryPolicy,
};
