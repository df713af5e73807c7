//! Fuzzing entry point for the webhook's `payload` templates, shared by the cargo-fuzz
//! target `webhook_template` and the stable mutation harness in `fuzz/`.
//!
//! Built with the `fuzzing` feature (and in this crate's tests); not part of the API.

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use health_types::{Event, EventKind};
use http::header::CONTENT_TYPE;

use crate::{
    ColorMode, Format, Message, MimeType, NotifyError, WebhookConfig,
    providers::{HttpProvider, webhook::WebhookProvider},
};

/// Separates the template and the event's texts in an input.
const SEPARATOR: char = '\u{1}';

/// Checks a webhook `payload` template and renders it for an event, both from `data`.
///
/// The first byte picks the MIME type (bits 0–1: JSON, JSON, form, text), the colour
/// mode (bit 2: decimal), the format (bit 3: plain), the event (bits 4–5: down, up,
/// stopped, down), an outage (bit 6) and a last-seen time (bit 7). The next eight bytes
/// (little-endian) give the event's times and latency. The rest, as text split at
/// U+0001, is the template, then the service, URL and detail.
///
/// # Panics
///
/// When checking or rendering panics, when a template is rejected other than as an
/// invalid `payload`, and when a JSON template that passed the check renders an event
/// into a body that is not JSON, or without its `Content-Type`.
pub fn webhook_template(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (stamp, text) = rest.split_at(rest.len().min(8));
    let mut number = [0; 8];
    number[..stamp.len()].copy_from_slice(stamp);
    let stamp = u64::from_le_bytes(number);
    let text = String::from_utf8_lossy(text);
    let mut parts = text.split(SEPARATOR);
    let mut next = || parts.next().unwrap_or_default().to_owned();
    let template = next();
    let time = UNIX_EPOCH + Duration::from_secs(stamp >> 16);
    let event = Event {
        kind: [
            EventKind::Down,
            EventKind::Up,
            EventKind::Stopped,
            EventKind::Down,
        ][usize::from((flags >> 4) & 3)],
        service: Arc::from(next()),
        url: next(),
        detail: next(),
        latency: Duration::from_nanos(stamp),
        last_seen: (flags & 0x80 != 0).then_some(time),
        outage: (flags & 0x40 != 0).then(|| Duration::from_secs(stamp)),
        outage_start: None,
        time,
    };
    let mime_type = [
        MimeType::Json,
        MimeType::Json,
        MimeType::Form,
        MimeType::Text,
    ][usize::from(flags & 3)];
    let format = if flags & 8 != 0 {
        Format::Plain
    } else {
        Format::Markdown
    };
    let config = WebhookConfig {
        payload: Some(template),
        mime_type,
        color_mode: if flags & 4 != 0 {
            ColorMode::Dec
        } else {
            ColorMode::Hex
        },
        ..WebhookConfig::new("http://127.0.0.1:9/hook")
    };
    let message = Message::from_event(&event);
    for format in [Format::Markdown, Format::Plain] {
        message.render(format);
    }
    let provider = match WebhookProvider::try_new(&config, format) {
        Ok(provider) => provider,
        Err(NotifyError::Config { key, .. }) if key == "payload" => {
            assert_eq!(mime_type, MimeType::Json, "only a JSON payload is checked");
            return;
        }
        Err(err) => panic!("the template was rejected as {err:?}"),
    };
    let request = provider.request(&message);
    assert_eq!(
        request.headers.get(CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(mime_type.as_str().as_bytes())
    );
    if mime_type == MimeType::Json {
        let parsed = serde_json::from_slice::<serde_json::Value>(&request.body);
        assert!(
            parsed.is_ok(),
            "a checked JSON template rendered {:?}: {parsed:?}",
            String::from_utf8_lossy(&request.body)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_corpus_renders_without_a_panic() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/webhook_template"
        );
        let seeds = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
        assert!(
            seeds
                .map(|seed| webhook_template(&std::fs::read(seed).unwrap()))
                .count()
                >= 3
        );
    }

    #[test]
    fn extreme_times_and_awkward_text_render() {
        let mut input = vec![0x70, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        input.extend_from_slice(
            "{\"t\": $title, \"f\": $fields}\u{1}\"svc\"\\\u{1}$url\u{1}\r\n$detail".as_bytes(),
        );
        webhook_template(&input);
        input[0] = 0xc5;
        webhook_template(&input);
    }
}
