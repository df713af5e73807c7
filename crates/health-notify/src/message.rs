//! The notification message model (SPEC §6): titles, ordered fields, colours, levels, and
//! the text helpers (cleaning, markdown escaping, markdown and plain renderings) providers
//! share.

use std::{
    borrow::Cow,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::{Event, EventKind, Url, redacted};
use serde::{Serialize, Serializer};

use crate::names::parse_by_name;

/// What a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageEvent {
    /// A service went down.
    Down,
    /// A service is up again.
    Up,
    /// A monitor stopped itself.
    Stopped,
    /// A peer certificate expires soon (SPEC §9.4).
    CertExpiry,
    /// The service is still down (SPEC §9.5 `remind_every`).
    Reminder,
    /// The service is flapping; its down and up are held until it settles (SPEC §9.5).
    Flapping,
    /// Anything else (a test message, an announcement).
    Custom,
}

impl MessageEvent {
    /// The lowercase name used on the wire: `down`, `up`, `stopped`, `cert_expiry` or
    /// `custom`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageEvent::Down => "down",
            MessageEvent::Up => "up",
            MessageEvent::Stopped => "stopped",
            MessageEvent::CertExpiry => "cert_expiry",
            MessageEvent::Reminder => "reminder",
            MessageEvent::Flapping => "flapping",
            MessageEvent::Custom => "custom",
        }
    }
}

impl fmt::Display for MessageEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<EventKind> for MessageEvent {
    fn from(kind: EventKind) -> Self {
        match kind {
            EventKind::Down => MessageEvent::Down,
            EventKind::Up => MessageEvent::Up,
            EventKind::Stopped => MessageEvent::Stopped,
            EventKind::CertExpiry => MessageEvent::CertExpiry,
            EventKind::Reminder => MessageEvent::Reminder,
            EventKind::Flapping => MessageEvent::Flapping,
        }
    }
}

/// How serious a message is.
///
/// `down` is [`Error`](Level::Error), `up` is [`Info`](Level::Info) and `stopped` is
/// [`Warning`](Level::Warning); providers give warnings and errors the same (high)
/// priority, so `stopped` is delivered like `down`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Level {
    /// Good news or information.
    #[default]
    Info,
    /// Needs attention.
    Warning,
    /// Something is broken.
    Error,
}

impl Level {
    /// The lowercase name used on the wire: `info`, `warning` or `error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }

    /// Whether providers should deliver it with high priority (warnings and errors).
    pub const fn is_urgent(self) -> bool {
        matches!(self, Level::Warning | Level::Error)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RGB colour, rendered as `#rrggbb` or as a decimal integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Color(u32);

impl Color {
    /// `#ff0000`, the colour of `down`.
    pub const RED: Color = Color(0xff0000);
    /// `#00ff00`, the colour of `up`.
    pub const GREEN: Color = Color(0x00ff00);
    /// `#ffa500`, the colour of `stopped`.
    pub const ORANGE: Color = Color(0xffa500);
    /// `#808080`, the default colour of custom messages.
    pub const GREY: Color = Color(0x808080);

    /// A colour from its 24-bit RGB value (higher bits are dropped).
    pub const fn from_rgb(rgb: u32) -> Self {
        Color(rgb & 0x00ff_ffff)
    }

    /// The 24-bit RGB value, e.g. `16711680` for red (Discord's embed colour).
    pub const fn rgb(self) -> u32 {
        self.0
    }

    /// `#rrggbb` in lower case.
    pub fn hex(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:06x}", self.0)
    }
}

/// How a provider that renders text formats a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Markdown (the default): field names in bold, values escaped.
    #[default]
    Markdown,
    /// Plain text: `Name: value` lines.
    Plain,
}

impl Format {
    /// `markdown` or `plain`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Plain => "plain",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

parse_by_name!(Format, "format", ["markdown" => Markdown, "plain" => Plain]);

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One named value of a message, such as `Service: api`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Field {
    /// The field's name (`Service`, `Time`, ...).
    pub name: String,
    /// The field's value, already cleaned.
    pub value: String,
}

impl Field {
    /// A field; both parts are cleaned (`\r\n` becomes `\n`, other control characters but
    /// tabs become `U+FFFD`).
    pub fn new(name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        Field {
            name: clean(name.as_ref()).into_owned(),
            value: clean(value.as_ref()).into_owned(),
        }
    }
}

/// A notification, ready for any provider.
///
/// Build one from a monitor [`Event`] with [`from_event`](Self::from_event) (the titles,
/// fields and colours of SPEC §6) or a custom one with [`custom`](Self::custom). Text
/// that goes in through the constructors and `with_*` methods is cleaned (`\r\n` becomes
/// `\n`, other control characters but tabs become `U+FFFD`); code that sets the public
/// fields directly should put only such text there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// What the message is about.
    pub event: MessageEvent,
    /// How serious it is.
    pub level: Level,
    /// The title, e.g. `Service down: api`.
    pub title: String,
    /// The fields, in display order.
    pub fields: Vec<Field>,
    /// The colour providers that show one use.
    pub color: Color,
    /// The service (monitor) name; empty for custom messages without one.
    pub service: String,
    /// The checked URL, a password in it shown as `***` (SPEC §9.3); may be empty.
    pub url: String,
    /// The detail of the result behind the message; may be empty.
    pub detail: String,
    /// When it happened (wall clock).
    pub time: SystemTime,
    /// For `down`, `up` and `reminder`: when the outage began (wall clock). With the
    /// service it names the outage (PagerDuty's `dedup_key`, Alertmanager's `startsAt`).
    pub outage_start: Option<SystemTime>,
    /// The names of the notifiers it is for; empty means every notifier.
    pub to: Vec<String>,
}

impl Message {
    /// The §6 message for a monitor event, addressed to every notifier.
    ///
    /// - down: `Service down: <name>`; Service, Time, URL, Detail, Last Seen (RFC 3339 or
    ///   `never`); `#ff0000`; level error.
    /// - up: `Service up: <name>`; Service, Time, URL, Latency (`12 ms`), Downtime
    ///   (`3m 12s`, `unknown` when the event has none); `#00ff00`; level info.
    /// - cert_expiry: `Certificate expires soon: <name>`; Service, Time, URL, Detail
    ///   (the certificate, its expiry and the days left); `#ffa500`; a warning.
    /// - stopped: `Monitor stopped: <name>`; Service, Time, URL, Detail; `#ffa500`;
    ///   level warning (delivered with down's priority).
    /// - reminder: `Still down: <name>`; Service, Time, URL, Detail, Downtime (so far);
    ///   `#ff0000`; level error (SPEC §9.5 `remind_every`).
    /// - flapping: `Monitor flapping: <name>`; Service, Time, URL, Detail (how many
    ///   changes in what window); `#ffa500`; a warning (SPEC §9.5).
    ///
    /// When a notifier gave up the `down` of the outage an `up` ends, the dispatcher
    /// appends one more field to that `up`, after the others: `Note` =
    /// `down notification was not delivered` (SPEC §9.1).
    pub fn from_event(event: &Event) -> Self {
        let service = clean(&event.service).into_owned();
        let url = shown_url(&event.url);
        let detail = clean(&event.detail).into_owned();
        let time = rfc3339(event.time);
        let common = [
            Field::new("Service", &service),
            Field::new("Time", &time),
            Field::new("URL", &url),
        ];
        let (level, title, color, extra) = match event.kind {
            EventKind::Down => (
                Level::Error,
                format!("Service down: {service}"),
                Color::RED,
                vec![
                    Field::new("Detail", &detail),
                    Field::new(
                        "Last Seen",
                        event.last_seen.map_or_else(|| "never".to_owned(), rfc3339),
                    ),
                ],
            ),
            EventKind::Up => (
                Level::Info,
                format!("Service up: {service}"),
                Color::GREEN,
                vec![
                    Field::new("Latency", format_latency(event.latency)),
                    Field::new(
                        "Downtime",
                        event
                            .outage
                            .map_or_else(|| "unknown".to_owned(), format_downtime),
                    ),
                ],
            ),
            EventKind::Stopped => (
                Level::Warning,
                format!("Monitor stopped: {service}"),
                Color::ORANGE,
                vec![Field::new("Detail", &detail)],
            ),
            EventKind::CertExpiry => (
                Level::Warning,
                format!("Certificate expires soon: {service}"),
                Color::ORANGE,
                vec![Field::new("Detail", &detail)],
            ),
            EventKind::Reminder => (
                Level::Error,
                format!("Still down: {service}"),
                Color::RED,
                vec![
                    Field::new("Detail", &detail),
                    Field::new(
                        "Downtime",
                        event
                            .outage
                            .map_or_else(|| "unknown".to_owned(), format_downtime),
                    ),
                ],
            ),
            EventKind::Flapping => (
                Level::Warning,
                format!("Monitor flapping: {service}"),
                Color::ORANGE,
                vec![Field::new("Detail", &detail)],
            ),
        };
        Message {
            event: MessageEvent::from(event.kind),
            level,
            title,
            fields: common.into_iter().chain(extra).collect(),
            color,
            service,
            url,
            detail,
            time: event.time,
            outage_start: event.outage_start,
            to: Vec::new(),
        }
    }

    /// A custom message with a title and no fields: level info, colour grey, addressed to
    /// every notifier. Add to it with the `with_*` methods.
    pub fn custom(title: impl AsRef<str>, time: SystemTime) -> Self {
        Message {
            event: MessageEvent::Custom,
            level: Level::Info,
            title: clean(title.as_ref()).into_owned(),
            fields: Vec::new(),
            color: Color::GREY,
            service: String::new(),
            url: String::new(),
            detail: String::new(),
            time,
            outage_start: None,
            to: Vec::new(),
        }
    }

    /// Appends a field.
    pub fn with_field(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.fields.push(Field::new(name, value));
        self
    }

    /// Sets the level.
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Sets the colour.
    pub fn with_color(mut self, color: Color) -> Self {
        self.color = color;
        self
    }

    /// Sets the service name.
    pub fn with_service(mut self, service: impl AsRef<str>) -> Self {
        self.service = clean(service.as_ref()).into_owned();
        self
    }

    /// Sets the URL (a password in it is shown as `***`).
    pub fn with_url(mut self, url: impl AsRef<str>) -> Self {
        self.url = shown_url(url.as_ref());
        self
    }

    /// Sets the detail from raw bytes, which need not be UTF-8: invalid sequences and
    /// control characters become `U+FFFD`.
    pub fn with_detail(mut self, detail: impl AsRef<[u8]>) -> Self {
        self.detail = clean_bytes(detail.as_ref());
        self
    }

    /// Addresses it to the named notifiers only (empty = every notifier).
    pub fn with_to<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.to = names.into_iter().map(Into::into).collect();
        self
    }

    /// The time as RFC 3339 UTC, to the second: `2024-05-01T12:00:00Z`.
    pub fn time_rfc3339(&self) -> String {
        rfc3339(self.time)
    }

    /// The fields rendered as text, one per line: `**Name:** value` (values escaped) for
    /// markdown, `Name: value` for plain. The title is not included.
    pub fn render_fields(&self, format: Format) -> String {
        let lines = self.fields.iter().map(|field| match format {
            Format::Markdown => format!(
                "**{}:** {}",
                escape_markdown(&field.name),
                escape_markdown(&field.value)
            ),
            Format::Plain => format!("{}: {}", field.name, field.value),
        });
        lines.collect::<Vec<_>>().join("\n")
    }

    /// The fields as markdown that reads well rendered and raw alike, for receivers that
    /// render markdown in some clients and show the raw text in others (ntfy, Gotify, a
    /// webhook's `$message`): `**Name:** value` lines, values escaped only where a
    /// character would change the rendering ([`escape_markdown_light`]), and every line
    /// ended by a hard break (two spaces), so renderers that join soft-broken lines into
    /// one paragraph still show one field per line. The title is not included.
    pub(crate) fn render_fields_light(&self) -> String {
        let lines = self.fields.iter().map(|field| {
            let value = escape_markdown_light(&field.value).replace('\n', "  \n");
            format!("**{}:** {value}", escape_markdown_light(&field.name))
        });
        lines.collect::<Vec<_>>().join("  \n")
    }

    /// The title (bold in markdown), a blank line, then the fields.
    pub fn render(&self, format: Format) -> String {
        let title = match format {
            Format::Markdown => format!("**{}**", escape_markdown(&self.title)),
            Format::Plain => self.title.clone(),
        };
        if self.fields.is_empty() {
            title
        } else {
            format!("{title}\n\n{}", self.render_fields(format))
        }
    }

    /// A `down` message full of awkward text (quotes, a backslash, a newline, a
    /// placeholder), for checking a provider's config (the webhook payload template)
    /// without a real event.
    pub(crate) fn sample() -> Self {
        Message::from_event(&Event {
            kind: EventKind::Down,
            service: "example \"svc\"".into(),
            url: "http://example.test/".into(),
            detail: "HTTP 503 \\ \"unavailable\"\n$title".into(),
            latency: Duration::from_millis(12),
            last_seen: None,
            outage: None,
            outage_start: None,
            time: UNIX_EPOCH,
        })
    }
}

/// The value of the `Note` field the dispatcher appends to an `up` whose `down` was given
/// up (SPEC §9.1).
pub(crate) const DOWN_NOT_DELIVERED: &str = "down notification was not delivered";

/// Formats a wall-clock time as RFC 3339 UTC to the second (`2024-05-01T12:00:00Z`).
///
/// Times before 1970 show as the epoch and times after 9999 as the end of 9999, rather
/// than failing.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    // humantime can only format 1970-01-01 .. 9999-12-31.
    let latest = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    let time = time.clamp(UNIX_EPOCH, latest);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Formats a latency in whole milliseconds: `12 ms`.
pub(crate) fn format_latency(latency: Duration) -> String {
    format!("{} ms", latency.as_millis())
}

/// Formats a downtime in days, hours, minutes and seconds, skipping zero parts:
/// `3m 12s`, `1h 5s`, `2d 3h`; under a second it is `0s`.
pub(crate) fn format_downtime(downtime: Duration) -> String {
    let secs = downtime.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A URL as a message shows it: [cleaned](clean), and with a password in it masked
/// (`http://admin:***@host/`): passwords never leave the process (SPEC §9.3), even when
/// an event (an old outbox entry, a caller's own) carries one.
fn shown_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) if parsed.password().is_some() => clean(&redacted(&parsed)).into_owned(),
        // Anything else is shown as given, not re-serialized.
        _ => clean(url).into_owned(),
    }
}

/// Makes text safe to put in any message: `\r\n` becomes `\n`, and control characters
/// other than `\n` and `\t` become `U+FFFD`. Borrowed when nothing changes.
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    let keep = |c: char| !c.is_control() || c == '\n' || c == '\t';
    if text.chars().all(keep) {
        return Cow::Borrowed(text);
    }
    let text = text.replace("\r\n", "\n");
    Cow::Owned(
        text.chars()
            .map(|c| {
                if keep(c) {
                    c
                } else {
                    char::REPLACEMENT_CHARACTER
                }
            })
            .collect(),
    )
}

/// [`clean`] for bytes that may not be UTF-8: invalid sequences become `U+FFFD`.
pub(crate) fn clean_bytes(bytes: &[u8]) -> String {
    clean(&String::from_utf8_lossy(bytes)).into_owned()
}

/// Backslash-escapes the characters that change meaning in common markdown dialects
/// (`\ * _ ` ~ [ ] < >`), so a value shows as written.
pub(crate) fn escape_markdown(text: &str) -> Cow<'_, str> {
    const SPECIAL: &[char] = &['\\', '*', '_', '`', '~', '[', ']', '<', '>'];
    if !text.contains(SPECIAL) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Backslash-escapes only the characters that would change how CommonMark or GFM renders
/// `text` where they stand, so the text shows as written when rendered and carries few
/// backslashes when shown raw (ntfy's phone apps, Gotify's notifications).
///
/// `text` is taken to continue a line (it follows `**Name:** `), so only the lines after
/// its newlines are line starts. Escaped: `` ` `` and `[` always; `\` before ASCII
/// punctuation; `*` and `~` unless whitespace is on both sides; `_` unless whitespace or
/// a letter or digit is on both sides (an intraword `_` never emphasizes); `<` before a
/// letter, `/`, `!` or `?` (HTML, autolinks); `&` that starts an entity (`&amp;`); and
/// at a line start the block markers `# > - + * = | :` and the `.` or `)` of `1.`.
pub(crate) fn escape_markdown_light(text: &str) -> Cow<'_, str> {
    const TRIGGERS: &[char] = &['\\', '*', '_', '`', '~', '[', '<', '&', '\n'];
    if !text.contains(TRIGGERS) {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let blank = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_none_or(|c| c.is_whitespace())
    };
    let alnum = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| c.is_alphanumeric())
    };
    let mut out = String::with_capacity(text.len() + 8);
    // Where the current line's content starts, once a newline has been seen.
    let mut line_start: Option<usize> = None;
    for (i, &c) in chars.iter().enumerate() {
        let (prev, next) = (i.checked_sub(1), Some(i + 1));
        let at_line_start = line_start == Some(i);
        let escape = if at_line_start && "#>-+*=|:".contains(c) {
            true
        } else {
            match c {
                '`' | '[' => true,
                '\\' => chars.get(i + 1).is_some_and(char::is_ascii_punctuation),
                '*' | '~' => !(blank(prev) && blank(next)),
                '_' => !((blank(prev) && blank(next)) || (alnum(prev) && alnum(next))),
                '<' => chars
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_alphabetic() || "/!?".contains(*n)),
                '&' => {
                    let name = chars[i + 1..]
                        .iter()
                        .take_while(|n| n.is_ascii_alphanumeric() || **n == '#')
                        .count();
                    name > 0 && chars.get(i + 1 + name) == Some(&';')
                }
                // `1.` or `12)` at a line start would begin an ordered list.
                '.' | ')' => line_start.is_some_and(|start| {
                    start < i && i - start <= 9 && chars[start..i].iter().all(char::is_ascii_digit)
                }),
                _ => false,
            }
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
        if c == '\n' {
            line_start = Some(i + 1);
        } else if line_start == Some(i) && (c == ' ' || c == '\t') {
            // Indentation: the line's content starts after it.
            line_start = Some(i + 1);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            kind,
            service: Arc::from("api"),
            url: "http://api.test/health".into(),
            detail: "HTTP 503 Service Unavailable".into(),
            latency: Duration::from_micros(12_700),
            last_seen: Some(UNIX_EPOCH + Duration::from_secs(1_714_564_740)),
            outage: Some(Duration::from_secs(192)),
            outage_start: None,
            time: UNIX_EPOCH + Duration::from_secs(1_714_564_800),
        }
    }

    fn pairs(message: &Message) -> Vec<(&str, &str)> {
        message
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect()
    }

    #[test]
    fn down_has_the_spec_title_fields_and_colour() {
        let m = Message::from_event(&event(EventKind::Down));
        assert_eq!(m.event, MessageEvent::Down);
        assert_eq!(m.title, "Service down: api");
        assert_eq!(m.color.hex(), "#ff0000");
        assert_eq!(m.level, Level::Error);
        assert_eq!(
            pairs(&m),
            [
                ("Service", "api"),
                ("Time", "2024-05-01T12:00:00Z"),
                ("URL", "http://api.test/health"),
                ("Detail", "HTTP 503 Service Unavailable"),
                ("Last Seen", "2024-05-01T11:59:00Z"),
            ]
        );
        let never = Message::from_event(&Event {
            last_seen: None,
            ..event(EventKind::Down)
        });
        assert_eq!(never.fields[4].value, "never");
    }

    #[test]
    fn a_password_in_the_url_is_masked_and_other_urls_are_shown_as_given() {
        let m = Message::from_event(&Event {
            url: "http://admin:s3cret@api.test/health".into(),
            ..event(EventKind::Down)
        });
        assert_eq!(m.url, "http://admin:***@api.test/health");
        assert_eq!(m.fields[2].value, m.url);
        let custom = Message::custom("t", UNIX_EPOCH).with_url("tcp://u:p%40ss@db.test:5432");
        assert_eq!(custom.url, "tcp://u:***@db.test:5432");
        // Not re-serialized: no trailing slash added, a user without a password kept.
        for as_given in ["http://api.test", "http://admin@api.test", "not a url"] {
            assert_eq!(
                Message::custom("t", UNIX_EPOCH).with_url(as_given).url,
                as_given
            );
        }
    }

    #[test]
    fn up_has_latency_and_downtime() {
        let m = Message::from_event(&event(EventKind::Up));
        assert_eq!(m.title, "Service up: api");
        assert_eq!(m.color, Color::GREEN);
        assert_eq!(m.color.rgb(), 65280);
        assert_eq!(m.level, Level::Info);
        assert!(!m.level.is_urgent());
        assert_eq!(
            pairs(&m),
            [
                ("Service", "api"),
                ("Time", "2024-05-01T12:00:00Z"),
                ("URL", "http://api.test/health"),
                ("Latency", "12 ms"),
                ("Downtime", "3m 12s"),
            ]
        );
    }

    #[test]
    fn stopped_is_orange_and_as_urgent_as_down() {
        let m = Message::from_event(&event(EventKind::Stopped));
        assert_eq!(m.title, "Monitor stopped: api");
        assert_eq!(m.color.hex(), "#ffa500");
        assert!(m.level.is_urgent());
        let names: Vec<_> = m.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Service", "Time", "URL", "Detail"]);
    }

    #[test]
    fn cert_expiry_names_the_service_and_carries_the_certificate_in_its_detail() {
        let m = Message::from_event(&Event {
            detail: "certificate CN=api.test (serial 1f) expires 2024-05-10T00:00:00Z: 8 days left"
                .into(),
            ..event(EventKind::CertExpiry)
        });
        assert_eq!(m.event, MessageEvent::CertExpiry);
        assert_eq!(m.event.as_str(), "cert_expiry");
        assert_eq!(m.title, "Certificate expires soon: api");
        assert_eq!(m.level, Level::Warning);
        assert_eq!(
            pairs(&m),
            [
                ("Service", "api"),
                ("Time", "2024-05-01T12:00:00Z"),
                ("URL", "http://api.test/health"),
                (
                    "Detail",
                    "certificate CN=api.test (serial 1f) expires 2024-05-10T00:00:00Z: 8 days left"
                )
            ]
        );
    }

    #[test]
    fn renderings() {
        let m = Message::from_event(&Event {
            detail: "a*b_c".into(),
            ..event(EventKind::Stopped)
        });
        assert_eq!(
            m.render_fields(Format::Plain),
            "Service: api\nTime: 2024-05-01T12:00:00Z\nURL: http://api.test/health\nDetail: a*b_c"
        );
        assert_eq!(
            m.render(Format::Markdown),
            "**Monitor stopped: api**\n\n**Service:** api\n**Time:** 2024-05-01T12:00:00Z\n\
             **URL:** http://api.test/health\n**Detail:** a\\*b\\_c"
        );
    }

    #[test]
    fn durations_are_human() {
        assert_eq!(format_downtime(Duration::from_secs(192)), "3m 12s");
        assert_eq!(format_downtime(Duration::from_millis(999)), "0s");
        assert_eq!(format_downtime(Duration::from_secs(3_605)), "1h 5s");
        assert_eq!(
            format_downtime(Duration::from_secs(2 * 86_400 + 3 * 3_600)),
            "2d 3h"
        );
        assert_eq!(format_latency(Duration::from_micros(12_999)), "12 ms");
    }

    #[test]
    fn times_out_of_range_do_not_panic() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00Z");
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn control_characters_and_bad_utf8_are_replaced() {
        let m = Message::from_event(&Event {
            detail: "red\u{1b}[31m\r\nnext\u{0}".into(),
            ..event(EventKind::Down)
        });
        assert_eq!(m.detail, "red\u{fffd}[31m\nnext\u{fffd}");
        assert_eq!(m.fields[3].value, m.detail);
        let custom = Message::custom("x", UNIX_EPOCH).with_detail(b"ok \xff\xfe end\x07");
        assert_eq!(custom.detail, "ok \u{fffd}\u{fffd} end\u{fffd}");
        assert!(matches!(clean("tab\tnew\nline"), Cow::Borrowed(_)));
    }

    #[test]
    fn format_parses_case_insensitively() {
        assert_eq!("Plain".parse::<Format>(), Ok(Format::Plain));
        assert!("html".parse::<Format>().unwrap_err().contains("\"html\""));
    }

    #[test]
    fn light_markdown_escapes_only_what_would_render() {
        let cases = [
            // Nothing that renders: borrowed and unchanged.
            (
                "HTTP 503 Service Unavailable",
                "HTTP 503 Service Unavailable",
            ),
            ("http://api.test/x_y?a=1&b=2", "http://api.test/x_y?a=1&b=2"),
            (
                "snake_case and 2 * 3 and a \\ b",
                "snake_case and 2 * 3 and a \\ b",
            ),
            ("x < 5 & y > 1", "x < 5 & y > 1"),
            // Emphasis, code, links, HTML and entities.
            ("*bold* _it_ ~gone~", "\\*bold\\* \\_it\\_ \\~gone\\~"),
            ("a*b_c", "a\\*b_c"),
            ("`rm` [x](y) <b>&amp;", "\\`rm\\` \\[x](y) \\<b>\\&amp;"),
            ("C:\\*", "C:\\\\\\*"),
            // Block markers only at the start of a later line.
            (
                "- a\n- b\n# h\n> q\n  1. x\n===",
                "- a\n\\- b\n\\# h\n\\> q\n  1\\. x\n\\===",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(escape_markdown_light(text), expected, "{text:?}");
        }
        assert!(matches!(
            escape_markdown_light("a - b # c > d"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn light_rendering_breaks_every_line() {
        let m = Message::custom("t", UNIX_EPOCH)
            .with_field("Service", "my_api")
            .with_field("Detail", "line one\n- line *two*");
        assert_eq!(
            m.render_fields_light(),
            "**Service:** my_api  \n**Detail:** line one  \n\\- line \\*two\\*"
        );
    }
}
