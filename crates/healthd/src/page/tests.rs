//! Unit tests of the status page's rendering: order, groups, each §9.2 figure, escaping,
//! the stopped reason and a monitor without history.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::{DaySummary, HistorySummary, LatencyBucket, MonitorJson, Status};

use super::*;
use crate::view::MonitorView;

/// 2026-12-03 16:27:45 UTC.
const NOW: i64 = 1_796_315_265;
const HOUR: u64 = 3_600;

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
}

/// A monitor's JSON; built from JSON so that it reads the §9.2 keys whatever the
/// struct's field list.
fn json(name: &str, status: Status, url: &str) -> MonitorJson {
    let down = matches!(status, Status::Unhealthy | Status::Error);
    serde_json::from_value(serde_json::json!({
        "name": name,
        "config": health_types::ConfigJson::from(&health_types::HealthCheckConfig::default()),
        "started": NOW - 7_200,
        "status": status,
        "uptime": 7_200.0,
        "latency": 12,
        "lastSeen": NOW - 300,
        "detail": if down { "HTTP 503 Service Unavailable" } else { "" },
        "url": url,
        "failures": u32::from(down) * 3,
        "uptime24h": 0.9987,
        "uptime7d": 0.9995,
        "uptime30d": 0.99991,
        "downSince": if down { NOW - 420 } else { 0 },
        "lastCheck": NOW - 12,
    }))
    .unwrap()
}

fn view(name: &str, status: Status, group: Option<&str>) -> MonitorView {
    MonitorView {
        json: json(
            name,
            status,
            &format!("http://{name}.lan:8080/health?full=1"),
        ),
        group: group.map(str::to_owned),
        summary: Some(Arc::new(history())),
        stopped_why: (status == Status::Stopped)
            .then(|| "stopped itself after 5 errors in a row: dns: no such host".to_owned()),
    }
}

/// 90 days ending today: day 0 (89 days ago) unobserved, yesterday at 99.5 %, today
/// perfect, the rest perfect; latency for the last 24 hours but one hour, one hour with
/// failures.
fn history() -> HistorySummary {
    let today = NOW.div_euclid(DAY);
    let days = (today - 89..=today)
        .map(|day| {
            let (uptime, down, checks, failures) = match today - day {
                89 => (None, 0, 0, 0),
                1 => (Some(0.995), 432, 2_880, 15),
                _ => (Some(1.0), 0, 2_880, 0),
            };
            DaySummary {
                day: at(day * DAY),
                uptime,
                down: Duration::from_secs(down),
                checks,
                failures,
                average: (checks > 0).then_some(Duration::from_micros(3_250)),
            }
        })
        .collect();
    let this_hour = NOW - NOW.rem_euclid(3_600);
    let latency_24h = (0..24)
        .filter(|&i| i != 7)
        .map(|i| LatencyBucket {
            time: at(this_hour - (23 - i) * 3_600),
            step: Duration::from_secs(HOUR),
            count: 120,
            sum: Duration::from_millis(120 * (3 + i as u64 % 5)),
            min: Duration::from_millis(1),
            max: Duration::from_millis(40 + i as u64),
            failures: u64::from(i == 20),
        })
        .collect();
    HistorySummary {
        uptime_24h: Some(0.9987),
        uptime_7d: Some(0.9995),
        uptime_30d: Some(0.99991),
        days,
        latency_24h,
        latency_1h: Vec::new(),
    }
}

fn page(views: &[MonitorView]) -> String {
    render(views, at(NOW))
}

/// The text of the card of `name`.
fn card<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!("<article class=\"card\" data-name=\"{name}\""))
        .unwrap_or_else(|| panic!("no card for {name}:\n{html}"));
    let end = start + html[start..].find("</article>").unwrap();
    &html[start..end]
}

fn position(html: &str, name: &str) -> usize {
    html.find(&format!("data-name=\"{name}\"")).unwrap()
}

#[test]
fn down_monitors_come_first_then_groups_then_the_ungrouped() {
    let views = [
        view("plain", Status::Healthy, None),
        view("web", Status::Healthy, Some("Web")),
        view("db", Status::Healthy, Some("Storage")),
        view("cache", Status::Error, Some("Storage")),
        view("api", Status::Unhealthy, Some("Web")),
        view("cdn", Status::Healthy, Some("Web")),
    ];
    let html = page(&views);
    let order = ["cache", "api", "web", "cdn", "db", "plain"];
    let positions: Vec<usize> = order.iter().map(|n| position(&html, n)).collect();
    assert!(positions.is_sorted(), "order {order:?}: {positions:?}");
    let headings: Vec<&str> = html
        .match_indices("<h2>")
        .map(|(i, _)| &html[i + 4..i + html[i..].find(" <span").unwrap()])
        .collect();
    assert_eq!(headings, ["Down", "Web", "Storage", "Ungrouped"]);
    // Down cards name their group; a group's own cards do not.
    assert!(card(&html, "cache").contains("<p class=\"in\">in Storage</p>"));
    assert!(!card(&html, "db").contains("class=\"in\""));
    assert!(html.contains("<section class=\"group down\">"));
}

#[test]
fn without_groups_or_outages_there_is_one_section() {
    let html = page(&[
        view("a", Status::Healthy, None),
        view("b", Status::Napping, None),
    ]);
    assert_eq!(html.matches("<section").count(), 1);
    assert!(html.contains("<h2>Monitors <span class=\"count\">2</span></h2>"));
    assert!(html.contains(">2 up</p>"));
    assert!(html.contains("<title>health · 2 up</title>"));
}

#[test]
fn the_summary_counts_each_state() {
    let html = page(&[
        view("a", Status::Healthy, None),
        view("b", Status::Healthy, None),
        view("c", Status::Napping, None),
        view("d", Status::Unhealthy, None),
        view("e", Status::Stopped, None),
        view("f", Status::Starting, None),
    ]);
    assert!(
        html.contains("data-down=\"1\">3 up · 1 down · 1 stopped · 1 starting</p>"),
        "{html}"
    );
    assert!(html.contains("<title>health · 3 up · 1 down · 1 stopped · 1 starting</title>"));
}

#[test]
fn a_card_shows_every_figure() {
    let html = page(&[view("api", Status::Unhealthy, None)]);
    let card = card(&html, "api");
    for (what, needle) in [
        (
            "full URL",
            "<p class=\"url\">http://api.lan:8080/health?full=1</p>",
        ),
        ("status", "data-status=\"unhealthy\""),
        (
            "status badge",
            "<span class=\"badge\" data-f=\"status\">unhealthy</span>",
        ),
        ("detail", "HTTP 503 Service Unavailable"),
        ("down since", "<dt>Down since</dt>"),
        (
            "down since, relative",
            &format!(
                "<span class=\"ago\" data-t=\"{}\">7 min ago</span>",
                NOW - 420
            ),
        ),
        (
            "down since, absolute",
            "<time datetime=\"2026-12-03T16:20:45Z\">2026-12-03 16:20:45 UTC</time>",
        ),
        ("last check", "<dt>Last check</dt>"),
        ("last check, relative", "12 s ago"),
        (
            "last check, absolute",
            "<time datetime=\"2026-12-03T16:27:33Z\">",
        ),
        ("latency", "<dd data-f=\"latency\">12 ms</dd>"),
        (
            "uptime 24 h",
            "<dt>Uptime 24 h</dt><dd data-f=\"uptime24h\">99.8%</dd>",
        ),
        (
            "uptime 30 d",
            "<dt>Uptime 30 d</dt><dd data-f=\"uptime30d\">99.9%</dd>",
        ),
        ("sparkline", "<svg viewBox=\"0 0 240 40\""),
        ("failure tick", "<path class=\"fail\""),
        ("sparkline caption", "response time, 24 h · mean"),
    ] {
        assert!(card.contains(needle), "{what}: {needle:?} in\n{card}");
    }
    assert_eq!(card.matches("<i class=\"c ").count(), 90, "90 day cells");
    assert_eq!(card.matches("<i class=\"c g\"").count(), 88, "perfect days");
}

#[test]
fn day_cells_carry_their_figures_in_a_tooltip() {
    let html = page(&[view("api", Status::Healthy, None)]);
    let card = card(&html, "api");
    assert!(
        card.contains(
            "<i class=\"c l\" title=\"2026-12-02: 99.5% up · down 7 min 12 s · 2880 checks · 15 failed · mean 3.2 ms\"></i>"
        ),
        "{card}"
    );
    assert!(card.contains("<i class=\"c n\" title=\"2026-09-05: no data\"></i>"));
    // Today is the last cell.
    // A clean day leaves out its (zero) down time and failures.
    let today = "title=\"2026-12-03: 100% up · 2880 checks · mean 3.2 ms\"></i></div>";
    assert!(card.contains(today), "{card}");
}

#[test]
fn the_day_colour_follows_the_uptime() {
    let mut history = history();
    let last = history.days.len() - 1;
    for (i, uptime) in [(last - 3, 0.999), (last - 2, 0.95), (last - 1, 0.5)] {
        history.days[i].uptime = Some(uptime);
    }
    let mut v = view("api", Status::Healthy, None);
    v.summary = Some(Arc::new(history));
    let html = page(&[v]);
    let cells: Vec<&str> = html
        .match_indices("<i class=\"c ")
        .map(|(i, _)| &html[i + 12..i + 13])
        .collect();
    // The legend's cells come after the card's.
    assert_eq!(&cells[86..90], ["l", "o", "r", "g"]);
}

#[test]
fn a_stopped_monitor_says_why() {
    let html = page(&[view("dns", Status::Stopped, None)]);
    let card = card(&html, "dns");
    assert!(card.contains(
        "<p class=\"stopped\">stopped itself after 5 errors in a row: dns: no such host</p>"
    ));
    assert!(card.contains("data-status=\"stopped\""));
    let mut unexplained = view("dns", Status::Stopped, None);
    unexplained.stopped_why = None;
    let html = page(&[unexplained]);
    assert!(html.contains("<p class=\"stopped\">stopped (no reason recorded)</p>"));
    // Only a stopped monitor has the line.
    assert!(!page(&[view("dns", Status::Healthy, None)]).contains("class=\"stopped\""));
}

#[test]
fn a_monitor_that_stopped_itself_is_down_and_says_why() {
    // After `max_errors` the status stays `error`: down, with the reason and a badge.
    let mut v = view("agent", Status::Error, None);
    v.json.detail = "agent: bad answer".into();
    v.stopped_why = Some("stopped itself after 2 errors in a row: agent: bad answer".into());
    let html = page(&[v, view("web", Status::Healthy, None)]);
    assert!(position(&html, "agent") < position(&html, "web"));
    let card = card(&html, "agent");
    assert!(card.contains(
        "<span class=\"badge\" data-f=\"status\">error</span><span class=\"badge off\">stopped</span>"
    ));
    assert!(card.contains(
        "<p class=\"stopped\">stopped itself after 2 errors in a row: agent: bad answer</p>"
    ));
    assert!(html.contains(">1 up · 1 down</p>"));
    // The reason ends with the last detail: it is not said twice.
    assert!(!card.contains("class=\"detail\""), "{card}");
}

#[test]
fn strings_from_config_and_upstreams_are_escaped() {
    let evil = "<script>alert(\"x\")</script>&'";
    let mut v = view(evil, Status::Unhealthy, Some(evil));
    v.json.detail = evil.to_owned();
    v.json.url = format!("http://h.lan/{evil}");
    v.json.status = Status::Stopped;
    v.stopped_why = Some(format!("stopped: {evil} (by hand)"));
    let html = page(&[v]);
    let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;";
    // The name (twice: attribute and heading), the group (heading), the URL, the
    // detail and the reason.
    assert_eq!(html.matches(escaped).count(), 6, "{html}");
    assert_eq!(
        html.matches("<script>").count(),
        1,
        "only the page's own script"
    );
    assert!(!html.contains("alert(\""));
}

#[test]
fn a_monitor_without_history_shows_placeholders() {
    let mut v = view("new", Status::Starting, None);
    v.summary = None;
    v.json = serde_json::from_value(serde_json::json!({
        "name": "new", "config": v.json.config, "started": NOW, "status": "starting",
        "uptime": 0.0, "latency": 0, "lastSeen": 0, "detail": "", "url": "tcp://db.lan:5432",
        "failures": 0, "uptime24h": null, "uptime7d": null, "uptime30d": null,
        "downSince": 0, "lastCheck": 0,
    }))
    .unwrap();
    let html = page(&[v]);
    let card = card(&html, "new");
    assert!(
        card.contains("<dd data-f=\"lastCheck\">never</dd>"),
        "{card}"
    );
    assert!(card.contains("<dd data-f=\"latency\">—</dd>"));
    assert!(card.contains("<dd data-f=\"uptime24h\">—</dd>"));
    assert!(card.contains("<dd data-f=\"uptime30d\">—</dd>"));
    assert!(!card.contains("Down since"));
    assert_eq!(card.matches("<i class=\"c n\" title=\"").count(), 90);
    assert!(card.contains("No checks in the last 24 h."));
    assert!(!card.contains("<svg"));
}

#[test]
fn no_monitors_is_said() {
    let html = page(&[]);
    assert!(html.contains("No monitors are configured."));
    assert!(html.contains(">0 up</p>"));
}

#[test]
fn the_page_is_self_contained() {
    let html = page(&[view("api", Status::Healthy, None)]);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("prefers-color-scheme: dark"));
    assert!(html.contains("new EventSource("));
    // No external resource: every src/href is inline data.
    for attr in ["src=\"", "href=\"", "@import", "url("] {
        for (i, _) in html.match_indices(attr) {
            assert!(
                html[i + attr.len()..].starts_with("data:"),
                "{attr} at {i}: {}",
                &html[i..i + 60]
            );
        }
    }
}

#[test]
fn a_thousand_monitors_make_one_page() {
    let views: Vec<MonitorView> = (0..1_000)
        .map(|i| {
            view(
                &format!("m{i}"),
                Status::Healthy,
                Some(&format!("g{}", i % 10)),
            )
        })
        .collect();
    let html = page(&views);
    assert_eq!(html.matches("<article").count(), 1_000);
    assert_eq!(html.matches("<section").count(), 10);
}

#[test]
fn percentages_round_down_to_one_decimal() {
    let cases = [
        (None, "—"),
        (Some(1.0), "100%"),
        (Some(0.99999), "99.9%"),
        (Some(0.999), "99.9%"),
        (Some(0.9987), "99.8%"),
        (Some(0.5), "50.0%"),
        (Some(0.0), "0.0%"),
    ];
    for (value, text) in cases {
        assert_eq!(Percent(value).to_string(), text, "{value:?}");
    }
}

#[test]
fn dates_and_times_are_utc() {
    assert_eq!(Date(0).to_string(), "1970-01-01");
    assert_eq!(Date(NOW.div_euclid(DAY)).to_string(), "2026-12-03");
    assert_eq!(Date(11_016).to_string(), "2000-02-29");
    assert_eq!(Date(-1).to_string(), "1969-12-31");
    let when = When {
        unix: NOW,
        now: NOW + 7_300,
    }
    .to_string();
    assert_eq!(
        when,
        format!(
            "<span class=\"ago\" data-t=\"{NOW}\">2 h ago</span> \
             <time datetime=\"2026-12-03T16:27:45Z\">2026-12-03 16:27:45 UTC</time>"
        )
    );
}

#[test]
fn spans_latencies_and_ages_read_well() {
    let span = |s| Span(Duration::from_secs(s)).to_string();
    assert_eq!(span(0), "0 s");
    assert_eq!(span(43), "43 s");
    assert_eq!(span(120), "2 min");
    assert_eq!(span(303), "5 min 3 s");
    assert_eq!(span(7_500), "2 h 5 min");
    assert_eq!(span(3 * 86_400 + 4 * 3_600 + 5), "3 d 4 h");
    let ms = |us| Ms(Duration::from_micros(us)).to_string();
    assert_eq!(ms(50), "<0.1 ms");
    assert_eq!(ms(400), "0.4 ms");
    assert_eq!(ms(3_250), "3.2 ms");
    assert_eq!(ms(120_400), "120 ms");
    assert_eq!(ms(12_500_000), "12.5 s");
    let ago = |s| Ago(s).to_string();
    assert_eq!(ago(-3), "just now");
    assert_eq!(ago(42), "42 s ago");
    assert_eq!(ago(185), "3 min ago");
    assert_eq!(ago(86_399), "23 h ago");
    assert_eq!(ago(5 * 86_400), "5 d ago");
    let latency = |ms, checked| Latency { ms, checked }.to_string();
    assert_eq!(latency(0, true), "<1 ms");
    assert_eq!(latency(0, false), "—");
    assert_eq!(latency(12, true), "12 ms");
}

#[test]
fn the_sparkline_breaks_at_hours_without_checks() {
    let html = page(&[view("api", Status::Healthy, None)]);
    let card = card(&html, "api");
    let start = card.find("<path class=\"line\" d=\"").unwrap() + 22;
    let d = &card[start..start + card[start..].find('"').unwrap()];
    // Hour 7 is missing: two runs, each starting with a move.
    assert_eq!(d.matches('M').count(), 2, "{d}");
    assert_eq!(d.matches('L').count(), 2 + 21, "{d}");
}

#[test]
fn a_young_monitor_draws_its_last_hour_by_the_minute() {
    let mut young = view("new", Status::Healthy, None);
    let this_minute = NOW - NOW.rem_euclid(60);
    let minute = |ago: i64, ms: u64| LatencyBucket {
        time: at(this_minute - ago * 60),
        step: Duration::from_secs(60),
        count: 30,
        sum: Duration::from_millis(30 * ms),
        min: Duration::from_millis(ms),
        max: Duration::from_millis(ms),
        failures: 0,
    };
    young.summary = Some(Arc::new(HistorySummary {
        latency_24h: vec![LatencyBucket {
            time: at(NOW - NOW.rem_euclid(3_600)),
            step: Duration::from_secs(HOUR),
            ..minute(0, 20)
        }],
        latency_1h: vec![minute(2, 10), minute(1, 30), minute(0, 20)],
        ..HistorySummary::default()
    }));
    let html = page(&[young, view("api", Status::Healthy, None)]);
    let young = card(&html, "new");
    assert!(
        young.contains("response time, last hour · mean 20 ms"),
        "{young}"
    );
    assert!(
        young.contains("mean response time per minute, last hour"),
        "{young}"
    );
    // Three joined minutes: one move and a dash for the first, a line to each next.
    let start = young.find("<path class=\"line\" d=\"").unwrap() + 22;
    let d = &young[start..start + young[start..].find('"').unwrap()];
    assert_eq!(
        (d.matches('M').count(), d.matches('L').count()),
        (1, 3),
        "{d}"
    );
    // A monitor with 23 hours keeps its 24-hour line.
    let old = card(&html, "api");
    assert!(old.contains("response time, 24 h · mean"), "{old}");
}

#[test]
fn a_monitor_in_a_maintenance_window_says_so_on_its_card() {
    let mut inside = view("api", Status::Unhealthy, None);
    inside.json.maintenance = true;
    let html = page(&[inside, view("web", Status::Healthy, None)]);
    let badge = "<span class=\"badge off\" title=\"in a maintenance window: no notifications\">maintenance</span>";
    assert_eq!(html.matches(badge).count(), 1, "{html}");
    let api = html.find("data-name=\"api\"").unwrap();
    let web = html.find("data-name=\"web\"").unwrap();
    let at = html.find(badge).unwrap();
    assert!(at > api && (web < api || at < web), "on api's card");
}
