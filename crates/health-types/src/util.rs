//! Small helpers every crate of the toolkit shares: error chains, truncation,
//! durations in nanoseconds and the "timed out after" wording.

use std::{borrow::Cow, error::Error, fmt, time::Duration};

/// Gives a fieldless enum its wire name: `as_str` (a `const fn`) and a `Display` that
/// writes it, from one table of `Variant => "name"`.
macro_rules! wire_names {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            $(#[$doc])*
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl $ty {
            /// The variant whose wire name is `name`, ignoring ASCII case.
            #[allow(dead_code, reason = "not every wire enum is parsed from text")]
            pub(crate) fn from_wire_name(name: &str) -> Option<Self> {
                $(if name.eq_ignore_ascii_case($name) {
                    return Some($ty::$variant);
                })+
                None
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_names;

/// Serializes fieldless enums as their wire name (`as_str`).
macro_rules! serialize_as_str {
    ($($ty:ty),+) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    )+};
}
pub(crate) use serialize_as_str;

/// The marker that ends text cut by [`truncate`].
pub const TRUNCATION_MARKER: char = '…';

/// Displays an error followed by each of its sources: `a: b: c`.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a dyn Error);

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorChain({self})")
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

/// Cuts `text` to at most `max_chars` characters, ending in [`TRUNCATION_MARKER`] when
/// something was cut. Borrowed when it already fits.
pub fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some(_) if max_chars == 0 => Cow::Borrowed(""),
        Some(_) => {
            let end = text
                .char_indices()
                .nth(max_chars - 1)
                .map_or(text.len(), |(i, _)| i);
            let mut cut = String::with_capacity(end + TRUNCATION_MARKER.len_utf8());
            cut.push_str(&text[..end]);
            cut.push(TRUNCATION_MARKER);
            Cow::Owned(cut)
        }
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (584 years).
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `timed out after 10s`: the detail of every check cut at its timeout, in the probes
/// and in the monitor alike.
pub fn timed_out_after(timeout: Duration) -> String {
    format!("timed out after {}", humantime::format_duration(timeout))
}

/// What stands for a password wherever a URL is shown (SPEC §9.3).
pub const PASSWORD_MASK: &str = "***";

/// `url` as it may be shown: a password in it becomes [`PASSWORD_MASK`]
/// (`http://admin:***@host/`); the user name, path and query are kept. Passwords never
/// leave the process: the API, the status page, notifications, logs and metrics show
/// URLs through this.
pub fn redacted(url: &url::Url) -> std::borrow::Cow<'_, str> {
    if url.password().is_none() {
        return std::borrow::Cow::Borrowed(url.as_str());
    }
    let mut shown = url.clone();
    // Setting a password fails only on URLs that cannot have one, and this one has one.
    let _ = shown.set_password(Some(PASSWORD_MASK));
    std::borrow::Cow::Owned(shown.into())
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn truncation_keeps_short_text_and_marks_a_cut() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("äöüß", 3), "äö…");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn timeouts_read_like_the_monitors() {
        assert_eq!(
            timed_out_after(Duration::from_secs(10)),
            "timed out after 10s"
        );
        assert_eq!(
            timed_out_after(Duration::from_millis(250)),
            "timed out after 250ms"
        );
    }

    #[test]
    fn chains_join_every_source() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot send")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Outer(io::Error::other("connection refused"));
        assert_eq!(
            ErrorChain(&err).to_string(),
            "cannot send: connection refused"
        );
        assert_eq!(duration_nanos(Duration::from_micros(3)), 3000);
        assert_eq!(duration_nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn redacted_masks_only_the_password() {
        let url = url::Url::parse("http://admin:s3cret@host:8080/p?q=1#f").unwrap();
        assert_eq!(redacted(&url), "http://admin:***@host:8080/p?q=1#f");
        let url = url::Url::parse("http://admin@host/").unwrap();
        assert_eq!(redacted(&url), "http://admin@host/");
        let url = url::Url::parse("http://host/a?password=x").unwrap();
        assert!(matches!(redacted(&url), std::borrow::Cow::Borrowed(_)));
        let url = url::Url::parse("http://:only@host/").unwrap();
        assert_eq!(redacted(&url), "http://:***@host/");
    }
}
