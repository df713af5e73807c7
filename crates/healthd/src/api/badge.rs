//! The badges (SPEC §9.2): flat, shields-style SVG images of a monitor's status
//! (`/badge/{name}/status.svg`) and of its uptime over 24 hours, 7 days or 30 days
//! (`/badge/{name}/uptime/{24h|7d|30d}.svg`), for a README or a wiki.
//!
//! Served with `Cache-Control: no-cache`, so that image proxies ask again each time.

use std::fmt::Write as _;

use axum::{
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use health_types::Status;

use super::{ApiError, ApiState};
use crate::page::Esc;

/// Green: healthy, or uptime of 99 % and more.
const GREEN: &str = "#4c1";
/// Yellow: uptime of 95 % and more.
const YELLOW: &str = "#dfb317";
/// Red: down, or uptime below 95 %.
const RED: &str = "#e05d44";
/// Grey: nothing to tell (starting, stopped, unknown, no observation).
const GREY: &str = "#9f9f9f";
/// Blue: napping.
const BLUE: &str = "#007ec6";
/// The label's background.
const LABEL: &str = "#555";

/// `GET /badge/{name}/status.svg`: the monitor's name and status.
pub(super) async fn status(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let index = state.find(&name)?;
    let status = state.json(index).status;
    let colour = match status {
        Status::Healthy => GREEN,
        Status::Napping => BLUE,
        Status::Unhealthy | Status::Error => RED,
        Status::Starting | Status::Stopped | Status::Unknown => GREY,
    };
    Ok(svg(&render(&name, &status.to_string(), colour)))
}

/// `GET /badge/{name}/uptime/{24h|7d|30d}.svg`: the uptime over that span as a
/// percentage (`99.9%`), `n/a` before any observation.
pub(super) async fn uptime(
    State(state): State<ApiState>,
    Path((name, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let index = state.find(&name)?;
    let json = state.json(index);
    let (span, uptime) = match file.as_str() {
        "24h.svg" => ("24h", json.uptime_24h),
        "7d.svg" => ("7d", json.uptime_7d),
        "30d.svg" => ("30d", json.uptime_30d),
        _ => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no uptime badge {file:?}: use 24h.svg, 7d.svg or 30d.svg"),
            ));
        }
    };
    let (text, colour) = match uptime {
        None => ("n/a".to_owned(), GREY),
        Some(u) if u >= 0.99 => (percent(u), GREEN),
        Some(u) if u >= 0.95 => (percent(u), YELLOW),
        Some(u) => (percent(u), RED),
    };
    Ok(svg(&render(&format!("uptime {span}"), &text, colour)))
}

/// `fraction` (0..1) as a percentage with at most two decimals, cut rather than
/// rounded so that anything short of all the time never reads `100%`: `99.9%`,
/// `99.99%`, `50%`.
pub(super) fn percent(fraction: f64) -> String {
    // The epsilon keeps 0.57 (0.5699999… in binary) from reading 56.99%.
    let hundredths = (fraction.clamp(0.0, 1.0) * 10_000.0 + 1e-6)
        .floor()
        .min(10_000.0);
    // At most 10 000: the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let hundredths = hundredths as u32;
    let (whole, part) = (hundredths / 100, hundredths % 100);
    match part {
        0 => format!("{whole}%"),
        p if p % 10 == 0 => format!("{whole}.{}%", p / 10),
        p => format!("{whole}.{p:02}%"),
    }
}

/// An SVG answer that is not to be cached.
fn svg(body: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body.to_owned(),
    )
        .into_response()
}

/// The width, in pixels, of `text` in 11 px Verdana, near enough for a badge.
fn text_width(text: &str) -> u32 {
    text.chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '!' | '|' | '\'' | ' ' => 4,
            'f' | 't' | 'r' | 'I' | '(' | ')' | '[' | ']' | '-' => 5,
            'm' | 'w' | 'M' | 'W' | '%' => 11,
            c if c.is_ascii_uppercase() || c.is_ascii_digit() => 8,
            _ => 7,
        })
        .sum()
}

/// A flat badge: `label` on grey, `message` on `colour`.
pub(super) fn render(label: &str, message: &str, colour: &str) -> String {
    let (label_w, message_w) = (text_width(label) + 10, text_width(message) + 10);
    let width = label_w + message_w;
    // Text is centred at the middle of its box; SVG coordinates in tenths, as shields
    // writes them, avoid half pixels.
    let (label_x, message_x) = (label_w * 5, label_w * 10 + message_w * 5);
    // A monitor's name is the config's: escaped.
    let (label, message) = (Esc(label), Esc(message));
    let mut out = String::with_capacity(1_024);
    let _ = write!(
        out,
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"20\" role=\"img\" aria-label=\"{label}: {message}\">",
            "<title>{label}: {message}</title>",
            "<linearGradient id=\"s\" x2=\"0\" y2=\"100%\"><stop offset=\"0\" stop-color=\"#bbb\" stop-opacity=\".1\"/><stop offset=\"1\" stop-opacity=\".1\"/></linearGradient>",
            "<clipPath id=\"r\"><rect width=\"{width}\" height=\"20\" rx=\"3\" fill=\"#fff\"/></clipPath>",
            "<g clip-path=\"url(#r)\"><rect width=\"{label_w}\" height=\"20\" fill=\"{label_bg}\"/><rect x=\"{label_w}\" width=\"{message_w}\" height=\"20\" fill=\"{colour}\"/><rect width=\"{width}\" height=\"20\" fill=\"url(#s)\"/></g>",
            "<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,Geneva,DejaVu Sans,sans-serif\" font-size=\"110\" transform=\"scale(.1)\">",
            "<text x=\"{label_x}\" y=\"150\" fill=\"#010101\" fill-opacity=\".3\">{label}</text><text x=\"{label_x}\" y=\"140\">{label}</text>",
            "<text x=\"{message_x}\" y=\"150\" fill=\"#010101\" fill-opacity=\".3\">{message}</text><text x=\"{message_x}\" y=\"140\">{message}</text>",
            "</g></svg>"
        ),
        width = width,
        label = label,
        message = message,
        label_w = label_w,
        message_w = message_w,
        label_bg = LABEL,
        colour = colour,
        label_x = label_x,
        message_x = message_x,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_cut_to_two_decimals_and_never_round_up_to_100() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.999), "99.9%");
        assert_eq!(percent(0.99999), "99.99%");
        assert_eq!(percent(0.9995), "99.95%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.57), "57%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.0105), "1.05%");
    }

    #[test]
    fn a_badge_escapes_its_text_and_widens_with_it() {
        let short = render("a", "ok", GREEN);
        let long = render("a<b>&\"c\"", "healthy", GREEN);
        assert!(
            long.contains("a&lt;b&gt;&amp;&quot;c&quot;: healthy"),
            "{long}"
        );
        let width = |svg: &str| {
            let at = svg.find("width=\"").unwrap() + 7;
            svg[at..].split('"').next().unwrap().parse::<u32>().unwrap()
        };
        assert!(width(&long) > width(&short));
        assert!(short.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    }
}
