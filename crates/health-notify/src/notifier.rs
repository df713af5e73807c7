//! The [`Notifier`] port every provider implements, and [`Secret`] for the credentials
//! in provider configs.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};

use crate::{Message, NotifyError};

/// Delivers messages to one destination (a webhook, a chat, a mailbox).
///
/// A notifier makes one delivery attempt per call; the [`Dispatcher`](crate::Dispatcher)
/// owns queuing, ordering, timeouts and retries.
///
/// # Cancel safety
///
/// The dispatcher drops the future returned by [`send`](Notifier::send) when it runs past
/// the per-request timeout or at shutdown. Dropping it must abandon the attempt and
/// leave nothing running on its behalf.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// The configured name (`name` in the `[[notify]]` table).
    fn name(&self) -> &str;

    /// The provider key (`webhook`, `discord`, ...), for logs and metrics.
    fn provider(&self) -> &'static str;

    /// Makes one attempt to deliver `message`.
    ///
    /// The error says whether another attempt may succeed
    /// ([`NotifyError::is_retryable`]).
    async fn send(&self, message: &Message) -> Result<(), NotifyError>;
}

/// A credential from a config file (token, password): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Secret::new(secret)
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Secret(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let secret = Secret::from("hunter2");
        assert_eq!(format!("{secret:?}"), "\"<redacted>\"");
        assert_eq!(secret.expose(), "hunter2");
    }
}
