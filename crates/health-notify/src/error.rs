//! The crate's one error type, [`NotifyError`], and how the dispatcher classifies it.

use std::{
    error::Error as StdError,
    time::{Duration, SystemTime},
};

use health_types::ErrorChain;

/// Why a notifier could not be built or a notification could not be delivered.
///
/// The dispatcher decides what to do with a failed delivery from the variant, never from
/// the message text: see [`is_retryable`](Self::is_retryable) and
/// [`retry_after`](Self::retry_after).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// A config key has a value that breaks its rule.
    #[error("invalid `{key}`: {reason}")]
    Config {
        /// The key, as written in the `[[notify]]` table.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A `[[notify]]` table was rejected; the source says which key and why.
    #[error("invalid notifier {name:?}")]
    Notifier {
        /// The notifier's `name` (empty when the table has none).
        name: String,
        /// What was wrong with it.
        #[source]
        source: Box<NotifyError>,
    },
    /// Two notifiers share a name.
    #[error("duplicate notifier name {0:?}")]
    DuplicateName(String),
    /// A route names a notifier that does not exist.
    #[error("unknown notifier {0:?}")]
    UnknownNotifier(String),
    /// The request could not be sent or its answer could not be read (connect, TLS, reset).
    #[error("request failed")]
    Transport(#[source] Box<dyn StdError + Send + Sync>),
    /// The request took longer than the per-request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The receiver answered with a status other than 2xx.
    #[error("receiver answered HTTP {status}{}", body_suffix(.body))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The receiver's `Retry-After`, if it sent a valid one.
        retry_after: Option<RetryAfter>,
        /// The start of the answer's body, cleaned for logging (may be empty).
        body: String,
    },
    /// The SMTP exchange failed.
    #[error("smtp delivery failed")]
    Smtp(#[source] lettre::transport::smtp::Error),
    /// The email could not be assembled (bad address, missing header).
    #[error("could not build the email")]
    Email(#[source] lettre::error::Error),
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl NotifyError {
    /// A [`Config`](Self::Config) error for `key`.
    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        NotifyError::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A [`Notifier`](Self::Notifier) error: the notifier `name` was rejected because of
    /// `source`.
    pub(crate) fn notifier(name: impl Into<String>, source: NotifyError) -> Self {
        NotifyError::Notifier {
            name: name.into(),
            source: Box::new(source),
        }
    }

    /// A [`Transport`](Self::Transport) error wrapping `source`.
    pub fn transport(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        NotifyError::Transport(source.into())
    }

    /// Whether the dispatcher should try again (SPEC §6): transport errors, timeouts,
    /// HTTP 408, 429 and 5xx, and SMTP failures that are not permanent (5xx replies).
    /// Every other HTTP status fails at once, as do config errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Transport(_) | NotifyError::Timeout(_) => true,
            NotifyError::Status { status, .. } => {
                matches!(status, 408 | 429) || (500..=599).contains(status)
            }
            NotifyError::Smtp(err) => !err.is_permanent(),
            NotifyError::Config { .. }
            | NotifyError::Notifier { .. }
            | NotifyError::DuplicateName(_)
            | NotifyError::UnknownNotifier(_)
            | NotifyError::Email(_) => false,
        }
    }

    /// The receiver's `Retry-After`, when it answered with one.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            NotifyError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status code, for [`Status`](Self::Status) errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            NotifyError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// This error and all its sources on one line, joined by `": "`, for logs and for
    /// serde errors that can carry only a string.
    pub fn chain(&self) -> ErrorChain<'_> {
        ErrorChain(self)
    }
}

/// A receiver's `Retry-After` header: a delay in seconds or an HTTP date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`, or with a fraction, `Retry-After: 1.5`.
    Delay(Duration),
    /// `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
    At(SystemTime),
}

impl RetryAfter {
    /// Parses a header value: whole seconds (`120`), seconds with a fraction (`1.5`,
    /// which RFC 9110 does not allow but some receivers send), or an HTTP date; `None`
    /// when it is none of these (a sign, an exponent, an empty part around the dot).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        let is_number = !whole.is_empty()
            && digits(whole)
            && digits(fraction)
            && (!fraction.is_empty() || !value.contains('.'));
        if is_number {
            // A value too large for a Duration is still "a very long time".
            let very_long = Duration::from_secs(u64::MAX);
            let delay = if fraction.is_empty() {
                whole.parse::<u64>().map_or(very_long, Duration::from_secs)
            } else {
                value
                    .parse::<f64>()
                    .ok()
                    .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                    .unwrap_or(very_long)
            };
            return Some(RetryAfter::Delay(delay));
        }
        httpdate::parse_http_date(value).ok().map(RetryAfter::At)
    }

    /// How long to wait from `now` (zero when the date has passed).
    pub fn delay_from(self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Delay(delay) => delay,
            RetryAfter::At(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn retry_classes_follow_the_spec() {
        let status = |status| NotifyError::Status {
            status,
            retry_after: None,
            body: String::new(),
        };
        for code in [408, 429, 500, 502, 503, 599] {
            assert!(status(code).is_retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 410, 422, 300] {
            assert!(!status(code).is_retryable(), "{code}");
        }
        assert!(NotifyError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(NotifyError::transport("connection refused").is_retryable());
        assert!(!NotifyError::config("url", "missing").is_retryable());
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(
            RetryAfter::parse(" 3 "),
            Some(RetryAfter::Delay(Duration::from_secs(3)))
        );
        let at = RetryAfter::parse("Thu, 01 Jan 1970 00:01:40 GMT").unwrap();
        assert_eq!(at, RetryAfter::At(UNIX_EPOCH + Duration::from_secs(100)));
        assert_eq!(
            at.delay_from(UNIX_EPOCH + Duration::from_secs(90)),
            Duration::from_secs(10)
        );
        assert_eq!(
            at.delay_from(UNIX_EPOCH + Duration::from_secs(200)),
            Duration::ZERO
        );
        assert_eq!(RetryAfter::parse("soon"), None);
        assert_eq!(RetryAfter::parse("-1"), None);
    }

    #[test]
    fn retry_after_takes_fractional_seconds() {
        let delay = |value| match RetryAfter::parse(value) {
            Some(RetryAfter::Delay(delay)) => Some(delay),
            _ => None,
        };
        assert_eq!(delay("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(delay(" 0.25 "), Some(Duration::from_millis(250)));
        assert_eq!(delay("2.000"), Some(Duration::from_secs(2)));
        assert_eq!(
            delay("18446744073709551616"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            delay("99999999999999999999999.5"),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["1.", ".5", "1.5.2", "1,5", "1e3", "+1", "-1.5", "1. 5", ""] {
            assert_eq!(RetryAfter::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn messages_are_lowercase_and_chain_sources() {
        let err = NotifyError::Notifier {
            name: "ops".into(),
            source: Box::new(NotifyError::config("url", "missing")),
        };
        assert_eq!(
            err.chain().to_string(),
            "invalid notifier \"ops\": invalid `url`: missing"
        );
        let status = NotifyError::Status {
            status: 500,
            retry_after: None,
            body: "boom".into(),
        };
        assert_eq!(status.to_string(), "receiver answered HTTP 500: boom");
    }
}
