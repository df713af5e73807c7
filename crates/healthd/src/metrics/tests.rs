//! The encoder's two formats: negotiation, counter naming, escaping and values.

use std::time::Duration;

use health_monitor::LatencyHistogram;

use super::*;

/// The `Accept` header Prometheus sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn the_format_with_the_highest_q_is_served() {
    for (accept, format) in [
        (&[][..], Format::Prometheus),
        (&[PROMETHEUS_ACCEPT], Format::OpenMetrics),
        (
            &["text/plain;q=1, application/openmetrics-text;q=0.1"],
            Format::Prometheus,
        ),
        (&["text/plain"], Format::Prometheus),
        (&["*/*"], Format::Prometheus),
        (&["application/openmetrics-text"], Format::OpenMetrics),
        (
            &["text/plain;q=0.5, Application/OpenMetrics-Text; version=1.0.0"],
            Format::OpenMetrics,
        ),
        (
            &["application/openmetrics-text;q=0, text/plain"],
            Format::Prometheus,
        ),
        (&["application/openmetrics-text; q=0.0"], Format::Prometheus),
        // Parameter names without case.
        (
            &["application/openmetrics-text;Q=0.2, text/plain;q=0.9"],
            Format::Prometheus,
        ),
        (
            &["text/plain;Q=0.2, application/openmetrics-text;q=0.9"],
            Format::OpenMetrics,
        ),
        // A tie goes to OpenMetrics.
        (
            &["text/plain;q=0.5, application/openmetrics-text;q=0.5"],
            Format::OpenMetrics,
        ),
        // A wildcard above OpenMetrics' q wins; a specific range outranks it.
        (
            &["application/openmetrics-text;q=0.5, */*"],
            Format::Prometheus,
        ),
        (
            &["application/openmetrics-text;q=0.5, text/plain;q=0.1, */*"],
            Format::OpenMetrics,
        ),
        // Several header lines are one list.
        (
            &["text/plain;q=0.3", "application/openmetrics-text;q=0.6"],
            Format::OpenMetrics,
        ),
        (
            &["application/openmetrics-text;q=0.3", "text/plain;q=0.6"],
            Format::Prometheus,
        ),
        // A q that is no number from 0 to 1 leaves its range out.
        (
            &["application/openmetrics-text;q=2, text/plain;q=0.1"],
            Format::Prometheus,
        ),
    ] {
        assert_eq!(
            Format::negotiate(accept.iter().copied()),
            format,
            "{accept:?}"
        );
    }
}

#[test]
fn the_le_labels_are_the_bounds_as_written() {
    let formatted: Vec<String> = LatencyHistogram::BOUNDS
        .iter()
        .map(|bound| format!("{bound:?}"))
        .chain(["+Inf".to_owned()])
        .collect();
    assert_eq!(LE.to_vec(), formatted);
}

fn encoded(format: Format, write: impl FnOnce(&mut Encoder<&mut String>) -> fmt::Result) -> String {
    let mut text = String::new();
    let mut out = Encoder::new(&mut text, format);
    write(&mut out).unwrap();
    out.finish().unwrap();
    text
}

#[test]
fn counters_are_named_for_each_format() {
    let write = |out: &mut Encoder<&mut String>| {
        out.family("jobs", Kind::Counter, "Jobs done")?;
        out.sample("jobs", &[("queue", "a")], 3_u64)?;
        out.family("idle", Kind::Gauge, "Idle workers")?;
        out.sample("idle", &[], 2_u64)
    };
    assert_eq!(
        encoded(Format::Prometheus, write),
        "# HELP jobs_total Jobs done\n# TYPE jobs_total counter\njobs_total{queue=\"a\"} 3\n\
         # HELP idle Idle workers\n# TYPE idle gauge\nidle 2\n"
    );
    assert_eq!(
        encoded(Format::OpenMetrics, write),
        "# HELP jobs Jobs done\n# TYPE jobs counter\njobs_total{queue=\"a\"} 3\n\
         # HELP idle Idle workers\n# TYPE idle gauge\nidle 2\n# EOF\n"
    );
}

#[test]
fn label_values_and_help_are_escaped() {
    let write = |out: &mut Encoder<&mut String>| {
        out.family("g", Kind::Gauge, "a \\ \"b\"\nc")?;
        out.sample("g", &[("monitor", "x\"y\\z\nw")], -1_i64)
    };
    assert_eq!(
        encoded(Format::Prometheus, write),
        "# HELP g a \\\\ \"b\"\\nc\n# TYPE g gauge\ng{monitor=\"x\\\"y\\\\z\\nw\"} -1\n"
    );
    assert!(
        encoded(Format::OpenMetrics, write).starts_with("# HELP g a \\\\ \\\"b\\\"\\nc\n"),
        "OpenMetrics escapes quotes in help too"
    );
}

#[test]
fn values_are_written_as_both_formats_read_them() {
    assert_eq!(Value::from(0.012).to_string(), "0.012");
    assert_eq!(Value::from(1_700_000_000.0).to_string(), "1700000000");
    assert_eq!(Value::from(f64::INFINITY).to_string(), "+Inf");
    assert_eq!(Value::from(f64::NEG_INFINITY).to_string(), "-Inf");
    assert_eq!(Value::from(f64::NAN).to_string(), "NaN");
    assert_eq!(Value::from(true).to_string(), "1");
    assert_eq!(Value::from(u64::MAX).to_string(), "18446744073709551615");
}

#[test]
fn a_histogram_has_cumulative_buckets_sum_and_count() {
    let mut histogram = LatencyHistogram::default();
    for ms in [3, 30, 30, 20_000] {
        histogram.observe(Duration::from_millis(ms));
    }
    let text = encoded(Format::OpenMetrics, |out| {
        out.family("d_seconds", Kind::Histogram, "Durations")?;
        out.histogram("d_seconds", &[("m", "a")], &histogram)
    });
    for line in [
        "d_seconds_bucket{m=\"a\",le=\"0.005\"} 1",
        "d_seconds_bucket{m=\"a\",le=\"0.025\"} 1",
        "d_seconds_bucket{m=\"a\",le=\"0.05\"} 3",
        "d_seconds_bucket{m=\"a\",le=\"10.0\"} 3",
        "d_seconds_bucket{m=\"a\",le=\"+Inf\"} 4",
        "d_seconds_sum{m=\"a\"} 20.063",
        "d_seconds_count{m=\"a\"} 4",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert_eq!(text.lines().filter(|l| l.contains("_bucket")).count(), 12);
}

/// A probe whose every result has all four phases, a certificate and a status code:
/// the most series a monitor adds to a scrape.
#[derive(Debug)]
struct Deep;

#[async_trait::async_trait]
impl health_types::Probe for Deep {
    async fn check(
        &self,
        _url: &health_types::Url,
    ) -> Result<health_types::CheckResult, health_types::ProbeError> {
        let ms = Duration::from_millis;
        let mut result = health_types::CheckResult::healthy("HTTP 200 OK", ms(12));
        result.phases = health_types::Phases {
            dns: Some(ms(1)),
            connect: Some(ms(2)),
            tls: Some(ms(5)),
            first_byte: Some(ms(4)),
        };
        result.cert = Some(Arc::new(health_types::CertInfo {
            not_after: 1_900_000_000,
            subject: "CN=api.example".into(),
            serial: "01".into(),
        }));
        result.status_code = Some(200);
        Ok(result)
    }
}

/// The bytes of a scrape of `count` monitors named `monitor-00000`, … (13 characters),
/// each checked once by [`Deep`].
async fn scrape_bytes(count: usize, format: Format) -> usize {
    let scope = health_monitor::Scope::new();
    let mut monitors = Vec::new();
    for i in 0..count {
        let m = Monitor::builder(
            format!("monitor-{i:05}"),
            health_types::Url::parse("https://api.example/").unwrap(),
            Arc::new(Deep),
        )
        .last_seen(Arc::new(health_monitor::LastSeenRegistry::new()))
        .build()
        .unwrap();
        m.start(&scope).unwrap();
        m.subscribe().wait_for(|s| s.checks() >= 1).await.unwrap();
        monitors.push(m);
    }
    let sources = Sources {
        monitors: monitors.into(),
        notify: None,
    };
    let mut text = String::new();
    let mut out = Encoder::new(&mut text, format);
    sources.encode(&mut out).unwrap();
    out.finish().unwrap();
    scope.shutdown().await;
    text.len()
}

/// What one monitor adds to a scrape, with every series it can have (the figure in the
/// module docs and the README: about 2.5 KB, some 25 MB for 10 000 monitors).
#[tokio::test]
async fn a_monitor_adds_about_two_and_a_half_kilobytes_to_a_scrape() {
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let one = scrape_bytes(1, format).await;
        let hundred = scrape_bytes(101, format).await;
        let per_monitor = (hundred - one) / 100;
        println!("{format:?}: {per_monitor} bytes per monitor");
        assert!(
            (2_000..=3_000).contains(&per_monitor),
            "{format:?}: {per_monitor} bytes per monitor; update the figure in the docs"
        );
    }
}
