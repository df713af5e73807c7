//! The status page (SPEC §9.2), rendered on the server: one self-contained HTML page
//! (CSS and script inline, no downloads) that reads fine with JavaScript off and in
//! `curl`; a small script then keeps it live from `/api/v1/events`.
//!
//! What it shows, top to bottom:
//! - a summary line (`3 up · 1 down · 1 stopped`);
//! - a **Down** section with every `unhealthy` or `error` monitor, whatever its group;
//! - then one section per `group`, in the order of each group's first monitor in the
//!   config, and last the monitors without a group (titled `Ungrouped` when there are
//!   groups, else `Monitors`); within a section, config order;
//! - per monitor a card: name, status, full URL (path and query kept, a password as
//!   `***`), the last detail, why it stopped (a stopped monitor), down since, last check,
//!   latency, uptime over 24 h and 30 d, a 90-day bar (one cell per UTC day, coloured by
//!   its uptime, its figures in the cell's tooltip) and the last 24 hours' response time
//!   as an inline SVG sparkline.
//!
//! Uptimes read as percentages with one decimal, rounded down so that a short outage
//! never reads as a perfect day (`99.9%`); exactly 1 reads `100%`; `—` before any
//! observation. Times show the absolute UTC time in a `<time datetime>` and a relative
//! form (`3 min ago`) that the script keeps current.
//!
//! Every string from the config or an upstream (names, URLs, details, groups, reasons)
//! goes through [`Esc`]. The page is written into one `String` with `write!`: 1 000
//! monitors with full history render in a few milliseconds.

use std::{
    fmt::{self, Write as _},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::{DaySummary, HistorySummary, LatencyBucket, Status};

use crate::view::MonitorView;

/// The page's style sheet (light and dark themes follow the system).
const STYLE: &str = include_str!("page/style.css");
/// The page's script: live updates from `/api/v1/events`, relative times.
const SCRIPT: &str = include_str!("page/script.js");
/// Seconds in a day.
const DAY: i64 = 86_400;
/// Width of the sparkline's view box: ten units an hour.
const SPARK_W: f64 = 240.0;
/// Height of the sparkline's view box.
const SPARK_H: f64 = 40.0;

/// The whole status page for `views` (config order) as of `now`.
pub(crate) fn render(views: &[MonitorView], now: SystemTime) -> String {
    // About 8 kB a card with 90 days of history and 24 hours of latency.
    let mut out = String::with_capacity(STYLE.len() + SCRIPT.len() + 2_048 + views.len() * 9_000);
    write_page(&mut out, views, unix(now)).expect("writing to a String never fails");
    out
}

/// How many monitors are in which state, for the summary line and the title.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    up: usize,
    down: usize,
    stopped: usize,
    starting: usize,
    unknown: usize,
}

impl Counts {
    fn of(views: &[MonitorView]) -> Self {
        let mut counts = Counts::default();
        for view in views {
            match view.json.status {
                Status::Healthy | Status::Napping => counts.up += 1,
                Status::Unhealthy | Status::Error => counts.down += 1,
                Status::Stopped => counts.stopped += 1,
                Status::Starting => counts.starting += 1,
                Status::Unknown => counts.unknown += 1,
            }
        }
        counts
    }

    /// The colour of the whole page's state (the favicon): red when anything is down.
    fn colour(self) -> &'static str {
        if self.down > 0 {
            "%23dc2626"
        } else if self.stopped + self.unknown > 0 {
            "%23d97706"
        } else {
            "%2316a34a"
        }
    }
}

impl fmt::Display for Counts {
    /// `3 up · 1 down · 1 stopped`: always the count up, the others when not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} up", self.up)?;
        for (n, word) in [
            (self.down, "down"),
            (self.stopped, "stopped"),
            (self.starting, "starting"),
            (self.unknown, "unknown"),
        ] {
            if n > 0 {
                write!(f, " · {n} {word}")?;
            }
        }
        Ok(())
    }
}

/// One section of cards.
#[derive(Debug)]
struct Section<'a> {
    title: &'a str,
    /// The Down section: its cards name their group.
    down: bool,
    cards: Vec<&'a MonitorView>,
}

/// The sections in page order: Down first, then the groups in order of first
/// appearance, then the monitors without a group.
fn sections(views: &[MonitorView]) -> Vec<Section<'_>> {
    let mut down = Vec::new();
    let mut groups: Vec<Section<'_>> = Vec::new();
    let mut ungrouped = Vec::new();
    let mut any_group = false;
    for view in views {
        any_group |= view.group.is_some();
        if view.json.status.is_down() {
            down.push(view);
            continue;
        }
        match view.group.as_deref() {
            None => ungrouped.push(view),
            Some(group) => match groups.iter_mut().find(|s| s.title == group) {
                Some(section) => section.cards.push(view),
                None => groups.push(Section {
                    title: group,
                    down: false,
                    cards: vec![view],
                }),
            },
        }
    }
    let mut all = Vec::with_capacity(groups.len() + 2);
    if !down.is_empty() {
        all.push(Section {
            title: "Down",
            down: true,
            cards: down,
        });
    }
    all.extend(groups);
    if !ungrouped.is_empty() {
        all.push(Section {
            title: if any_group { "Ungrouped" } else { "Monitors" },
            down: false,
            cards: ungrouped,
        });
    }
    all
}

fn write_page(out: &mut String, views: &[MonitorView], now: i64) -> fmt::Result {
    let counts = Counts::of(views);
    let dates = bar_dates(now);
    write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <title>health · {counts}</title>\n\
         <link id=\"icon\" rel=\"icon\" href=\"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='{colour}'/%3E%3C/svg%3E\">\n\
         <style>\n{STYLE}</style>\n</head>\n<body>\n\
         <header class=\"top\">\n<h1>health</h1>\n\
         <p id=\"summary\" class=\"summary\" data-down=\"{down}\">{counts}</p>\n\
         <p class=\"asof\"><span id=\"live\" class=\"live\" hidden></span>\
         <span id=\"asof\">as of {asof}</span></p>\n\
         <noscript><p class=\"note\">JavaScript is off: reload the page for fresh figures.</p></noscript>\n\
         </header>\n<main id=\"monitors\">\n",
        colour = counts.colour(),
        down = counts.down,
        asof = When { unix: now, now },
    )?;
    if views.is_empty() {
        out.push_str("<p class=\"empty\">No monitors are configured.</p>\n");
    }
    for section in sections(views) {
        write!(
            out,
            "<section class=\"group{down}\">\n<h2>{title} <span class=\"count\">{n}</span></h2>\n<div class=\"cards\">\n",
            down = if section.down { " down" } else { "" },
            title = Esc(section.title),
            n = section.cards.len(),
        )?;
        for view in section.cards {
            write_card(out, view, section.down, now, &dates)?;
        }
        out.push_str("</div>\n</section>\n");
    }
    write!(
        out,
        "</main>\n<footer>\n<p class=\"legend\">Days: \
         <i class=\"c g\"></i> 100% <i class=\"c l\"></i> ≥ 99% <i class=\"c o\"></i> ≥ 90% \
         <i class=\"c r\"></i> below <i class=\"c n\"></i> no data. \
         Uptime counts healthy time over time observed; times are UTC.</p>\n\
         </footer>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n"
    )
}

fn write_card(
    out: &mut String,
    view: &MonitorView,
    in_down: bool,
    now: i64,
    dates: &[(i64, String)],
) -> fmt::Result {
    let json = &view.json;
    let status = json.status;
    write!(
        out,
        "<article class=\"card\" data-name=\"{name}\" data-status=\"{status}\">\n\
         <div class=\"who\">\n<div class=\"head\"><h3 class=\"name\">{name}</h3>\
         <span class=\"badge\" data-f=\"status\">{status}</span>{off}{maintenance}</div>\n\
         <p class=\"url\">{url}</p>\n",
        name = Esc(&json.name),
        url = Esc(&json.url),
        off = if view.stopped_why.is_some() && status != Status::Stopped {
            "<span class=\"badge off\">stopped</span>"
        } else {
            ""
        },
        // A `[[maintenance]]` window covers it: it sends no notifications (SPEC §9.5).
        maintenance = if json.maintenance {
            "<span class=\"badge off\" title=\"in a maintenance window: no notifications\">maintenance</span>"
        } else {
            ""
        },
    )?;
    if let Some(group) = view.group.as_deref().filter(|_| in_down) {
        writeln!(out, "<p class=\"in\">in {}</p>", Esc(group))?;
    }
    // A monitor that stopped itself after `max_errors` keeps its `error` status: the
    // reason shows whatever the status.
    let why = match (&view.stopped_why, status) {
        (Some(why), _) => Some(why.as_str()),
        (None, Status::Stopped) => Some("stopped (no reason recorded)"),
        (None, _) => None,
    };
    if let Some(why) = why {
        writeln!(out, "<p class=\"stopped\">{}</p>", Esc(why))?;
    }
    // The reason of a monitor that stopped itself ends with its last detail already.
    if !json.detail.is_empty() && !why.is_some_and(|why| why.ends_with(json.detail.as_str())) {
        writeln!(
            out,
            "<p class=\"detail\" data-f=\"detail\">{}</p>",
            Esc(&json.detail)
        )?;
    }
    out.push_str("</div>\n<dl class=\"figures\">\n");
    if json.down_since > 0 {
        writeln!(
            out,
            "<div class=\"since\"><dt>Down since</dt><dd data-f=\"downSince\">{}</dd></div>",
            When {
                unix: json.down_since,
                now
            }
        )?;
    }
    let last_check = if json.last_check > 0 {
        Some(When {
            unix: json.last_check,
            now,
        })
    } else {
        None
    };
    write!(
        out,
        "<div><dt>Last check</dt><dd data-f=\"lastCheck\">{last}</dd></div>\n\
         <div><dt>Latency</dt><dd data-f=\"latency\">{latency}</dd></div>\n\
         <div><dt>Uptime 24 h</dt><dd data-f=\"uptime24h\">{u24}</dd></div>\n\
         <div><dt>Uptime 30 d</dt><dd data-f=\"uptime30d\">{u30}</dd></div>\n</dl>\n",
        last = Or(last_check, "never"),
        latency = Latency {
            ms: json.latency,
            checked: json.last_check > 0,
        },
        u24 = Percent(json.uptime_24h),
        u30 = Percent(json.uptime_30d),
    )?;
    let summary = view.summary.as_deref();
    out.push_str("<div class=\"hist\">\n");
    write_days(out, summary.map_or(&[][..], |s| &s.days), dates)?;
    write_sparkline(out, Spark::of(summary), now)?;
    out.push_str("</div>\n</article>\n");
    Ok(())
}

/// The dates of the 90-day bar, oldest first, today last (`2026-12-03`): the same for
/// every card, so written once per page.
fn bar_dates(now: i64) -> Vec<(i64, String)> {
    let today = now.div_euclid(DAY);
    (today - i64::from(HistorySummary::DAYS) + 1..=today)
        .map(|day| (day, Date(day).to_string()))
        .collect()
}

/// The 90-day bar: one cell per UTC day of `dates`, a day without data grey. `days` is
/// the history's, oldest first (it may be shorter or misaligned: each cell takes the
/// day whose start falls in it).
///
/// The bar is most of the page (90 cells a monitor): it is written with `push_str` and
/// integers, no float formatting.
fn write_days(out: &mut String, days: &[DaySummary], dates: &[(i64, String)]) -> fmt::Result {
    out.push_str("<div class=\"days\" role=\"img\" aria-label=\"uptime per day, last 90 days\">");
    let mut days = days
        .iter()
        .map(|d| (unix(d.day).div_euclid(DAY), d))
        .peekable();
    for (day, date) in dates {
        // Skip history older than the bar (it should not be there).
        while days.next_if(|(d, _)| d < day).is_some() {}
        let summary = days.next_if(|(d, _)| d == day).map(|(_, d)| d);
        match summary {
            Some(d) if d.uptime.is_some() || d.checks > 0 => {
                out.push_str(match d.uptime {
                    None => "<i class=\"c n\" title=\"",
                    Some(u) if u >= 1.0 => "<i class=\"c g\" title=\"",
                    Some(u) if u >= 0.99 => "<i class=\"c l\" title=\"",
                    Some(u) if u >= 0.90 => "<i class=\"c o\" title=\"",
                    Some(_) => "<i class=\"c r\" title=\"",
                });
                out.push_str(date);
                out.push_str(": ");
                put_percent(out, d.uptime)?;
                out.push_str(" up · ");
                // A clean day says less: most days are, and the page stays small.
                if !d.down.is_zero() || d.failures > 0 {
                    write!(out, "down {} · ", Span(d.down))?;
                }
                put_u64(out, d.checks)?;
                out.push_str(" checks · ");
                if d.failures > 0 {
                    put_u64(out, d.failures)?;
                    out.push_str(" failed · ");
                }
                out.push_str("mean ");
                match d.average {
                    Some(mean) => put_ms(out, mean)?,
                    None => out.push('—'),
                }
                out.push_str("\"></i>");
            }
            _ => {
                out.push_str("<i class=\"c n\" title=\"");
                out.push_str(date);
                out.push_str(": no data\"></i>");
            }
        }
    }
    out.push_str("</div>\n<div class=\"ends\"><span>90 days ago</span><span>today</span></div>\n");
    Ok(())
}

/// What a card's chart draws: 24 hours by the hour, or, for a monitor with fewer than
/// [`HistorySummary::FEW_HOURS`] hours of checks (a young one, or the demo's), its last hour by
/// the minute, so that the chart shows something within a minute of the first check.
struct Spark<'a> {
    buckets: &'a [LatencyBucket],
    /// Seconds the chart spans, ending now.
    span: i64,
    /// `hour` or `minute`.
    per: &'static str,
    /// `24 h` or `last hour`.
    caption: &'static str,
}

impl<'a> Spark<'a> {
    fn of(summary: Option<&'a HistorySummary>) -> Self {
        let day = |buckets| Spark {
            buckets,
            span: DAY,
            per: "hour",
            caption: "24 h",
        };
        match summary {
            Some(s)
                if s.latency_24h.len() < HistorySummary::FEW_HOURS && !s.latency_1h.is_empty() =>
            {
                Spark {
                    buckets: &s.latency_1h,
                    span: 3_600,
                    per: "minute",
                    caption: "last hour",
                }
            }
            Some(s) => day(&s.latency_24h),
            None => day(&[]),
        }
    }
}

/// The chart's mean response time per bucket (hour or minute) as an inline SVG line,
/// broken where a bucket had no check; a red tick marks each bucket with a failed check.
fn write_sparkline(out: &mut String, spark: Spark<'_>, now: i64) -> fmt::Result {
    let Spark {
        buckets,
        span,
        per,
        caption,
    } = spark;
    let start = now - span;
    let buckets: Vec<(f64, &LatencyBucket, f64)> = buckets
        .iter()
        .filter_map(|b| {
            let mean = b.average()?.as_secs_f64() * 1e3;
            let mid = unix(b.time) as f64 + b.step.as_secs_f64() / 2.0;
            let x = ((mid - start as f64) / span as f64 * SPARK_W).clamp(0.0, SPARK_W);
            Some((x, b, mean))
        })
        .collect();
    if buckets.is_empty() {
        return out.write_str("<p class=\"spark none\">No checks in the last 24 h.</p>\n");
    }
    let (count, sum) = buckets
        .iter()
        .fold((0u64, Duration::ZERO), |(n, s), (_, b, _)| {
            (n + b.count, s + b.sum)
        });
    let mean = u32::try_from(count)
        .ok()
        .filter(|&n| n > 0)
        .map(|n| sum / n);
    let slowest = buckets
        .iter()
        .map(|(_, b, _)| b.max)
        .max()
        .unwrap_or_default();
    let top = buckets
        .iter()
        .map(|&(_, _, m)| m)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let y = |ms: f64| SPARK_H - 2.0 - ms / top * (SPARK_H - 6.0);
    write!(
        out,
        "<figure class=\"spark\"><svg viewBox=\"0 0 {SPARK_W} {SPARK_H}\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"mean response time per {per}, {caption}\"><path class=\"line\" d=\""
    )?;
    let mut previous: Option<&LatencyBucket> = None;
    for &(x, b, ms) in &buckets {
        let joined = previous.is_some_and(|p| b.time == p.time + p.step);
        let y = y(ms);
        if joined {
            write!(out, "L{} {}", Tenths(x), Tenths(y))?;
        } else {
            // A lone bucket is drawn as a short dash so that it shows.
            let (y, left, right) = (Tenths(y), Tenths(x - 2.0), Tenths(x + 2.0));
            write!(out, "M{left} {y}L{right} {y}")?;
        }
        previous = Some(b);
    }
    out.push_str("\"/>");
    if buckets.iter().any(|(_, b, _)| b.failures > 0) {
        out.push_str("<path class=\"fail\" d=\"");
        for (x, _, _) in buckets.iter().filter(|(_, b, _)| b.failures > 0) {
            write!(out, "M{} {SPARK_H}V{}", Tenths(*x), Tenths(SPARK_H - 8.0))?;
        }
        out.push_str("\"/>");
    }
    writeln!(
        out,
        "</svg><figcaption>response time, {caption} · mean {mean} · max {max}</figcaption></figure>",
        mean = Or(mean.map(Ms), "—"),
        max = Ms(slowest),
    )
}

/// Unix seconds of a wall-clock time (negative before 1970).
fn unix(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A string escaped for HTML (and SVG) text and quoted attribute values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Esc<'a>(pub(crate) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A value, or a placeholder when there is none.
#[derive(Clone, Copy, Debug)]
struct Or<T>(Option<T>, &'static str);

impl<T: fmt::Display> fmt::Display for Or<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str(self.1),
        }
    }
}

/// An uptime fraction as a percentage with one decimal, rounded down (`99.9%`);
/// exactly 1 is `100%`, none is `—`.
#[derive(Clone, Copy, Debug)]
struct Percent(Option<f64>);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        put_percent(f, self.0)
    }
}

/// Writes [`Percent`] to `w` with integers only (it is in every cell of the bars).
fn put_percent(w: &mut impl fmt::Write, uptime: Option<f64>) -> fmt::Result {
    match uptime {
        None => w.write_str("—"),
        Some(u) if u >= 1.0 => w.write_str("100%"),
        Some(u) => {
            // Tenths of a percent, rounded down; the nudge keeps 0.999 at 99.9.
            let tenths = (u.max(0.0) * 1000.0 + 1e-6).floor() as u64;
            put_u64(w, tenths / 10)?;
            w.write_char('.')?;
            put_u64(w, tenths % 10)?;
            w.write_char('%')
        }
    }
}

/// Writes `n` in decimal without the formatting machinery.
fn put_u64(w: &mut impl fmt::Write, mut n: u64) -> fmt::Result {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is a digit.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    w.write_str(std::str::from_utf8(&buf[i..]).unwrap_or_default())
}

/// The last check's latency in whole milliseconds (the §4 JSON's): `<1 ms` for a
/// faster answer, `—` before any check.
#[derive(Clone, Copy, Debug)]
struct Latency {
    ms: i64,
    checked: bool,
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.checked, self.ms) {
            (false, _) => f.write_str("—"),
            (true, ..=0) => f.write_str("<1 ms"),
            (true, ms) => write!(f, "{ms} ms"),
        }
    }
}

/// A latency, in the unit that reads best: `0.4 ms`, `3.2 ms`, `120 ms`, `2.5 s`.
#[derive(Clone, Copy, Debug)]
struct Ms(Duration);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        put_ms(f, self.0)
    }
}

/// Writes [`Ms`] to `w`, rounded down, with integers only (it is in every cell).
fn put_ms(w: &mut impl fmt::Write, latency: Duration) -> fmt::Result {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let (whole, tenth, unit) = match us {
        0..100 => return w.write_str("<0.1 ms"),
        100..10_000 => (us / 1_000, Some(us / 100 % 10), " ms"),
        10_000..10_000_000 => (us / 1_000, None, " ms"),
        _ => (us / 1_000_000, Some(us / 100_000 % 10), " s"),
    };
    put_u64(w, whole)?;
    if let Some(tenth) = tenth {
        w.write_char('.')?;
        put_u64(w, tenth)?;
    }
    w.write_str(unit)
}

/// A non-negative coordinate with one decimal (`12.3`), written with integers.
#[derive(Clone, Copy, Debug)]
struct Tenths(f64);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0.max(0.0) * 10.0).round() as u64;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// A length of time, two units at most: `0 s`, `43 s`, `5 min 3 s`, `2 h 5 min`, `3 d 4 h`.
#[derive(Clone, Copy, Debug)]
struct Span(Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        let (d, h, m, s) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60, s % 60);
        match (d, h, m) {
            (0, 0, 0) => write!(f, "{s} s"),
            (0, 0, _) if s == 0 => write!(f, "{m} min"),
            (0, 0, _) => write!(f, "{m} min {s} s"),
            (0, ..) if m == 0 => write!(f, "{h} h"),
            (0, ..) => write!(f, "{h} h {m} min"),
            _ if h == 0 => write!(f, "{d} d"),
            _ => write!(f, "{d} d {h} h"),
        }
    }
}

/// A UTC day (days since 1970-01-01) as `2026-12-03`.
#[derive(Clone, Copy, Debug)]
struct Date(i64);

impl Date {
    /// Year, month, day of the proleptic Gregorian calendar (Howard Hinnant's
    /// `civil_from_days`).
    fn civil(self) -> (i64, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // Both are small and positive by construction.
        (year, month as u32, day as u32)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// An instant on the page: the relative form (`3 min ago`, kept current by the
/// script through `data-t`) and the absolute UTC time in a `<time datetime>`.
#[derive(Clone, Copy, Debug)]
struct When {
    unix: i64,
    now: i64,
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = Date(self.unix.div_euclid(DAY));
        let secs = self.unix.rem_euclid(DAY);
        let (h, m, s) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
        write!(
            f,
            "<span class=\"ago\" data-t=\"{t}\">{ago}</span> \
             <time datetime=\"{date}T{h:02}:{m:02}:{s:02}Z\">{date} {h:02}:{m:02}:{s:02} UTC</time>",
            t = self.unix,
            ago = Ago(self.now - self.unix),
        )
    }
}

/// Seconds elapsed, read as `just now`, `42 s ago`, `3 min ago`, `2 h ago`, `5 d ago`
/// (the script's `ago` says the same).
#[derive(Clone, Copy, Debug)]
struct Ago(i64);

impl fmt::Display for Ago {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ..5 => f.write_str("just now"),
            s @ 5..60 => write!(f, "{s} s ago"),
            s @ 60..3_600 => write!(f, "{} min ago", s / 60),
            s @ 3_600..DAY => write!(f, "{} h ago", s / 3_600),
            s => write!(f, "{} d ago", s / DAY),
        }
    }
}

#[cfg(test)]
mod tests;
