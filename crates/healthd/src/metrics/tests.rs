//! The encoder's two formats: negotiation, counter naming, escaping and values.

use std::time::Duration;

use health_monitor::LatencyHistogram;

use super::*;

#[test]
fn openmetrics_only_when_asked_for() {
    for (accept, format) in [
        (None, Format::Prometheus),
        (Some("text/plain"), Format::Prometheus),
        (Some("*/*"), Format::Prometheus),
        (Some("application/openmetrics-text"), Format::OpenMetrics),
        (
            Some("text/plain;q=0.5, Application/OpenMetrics-Text; version=1.0.0"),
            Format::OpenMetrics,
        ),
        (
            Some("application/openmetrics-text;q=0, text/plain"),
            Format::Prometheus,
        ),
        (
            Some("application/openmetrics-text; q=0.0"),
            Format::Prometheus,
        ),
    ] {
        assert_eq!(Format::negotiate(accept), format, "{accept:?}");
    }
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
        out.sample("jobs", "_total", &[("queue", "a")], 3_u64)
    };
    assert_eq!(
        encoded(Format::Prometheus, write),
        "# HELP jobs_total Jobs done\n# TYPE jobs_total counter\njobs_total{queue=\"a\"} 3\n"
    );
    assert_eq!(
        encoded(Format::OpenMetrics, write),
        "# HELP jobs Jobs done\n# TYPE jobs counter\njobs_total{queue=\"a\"} 3\n# EOF\n"
    );
}

#[test]
fn label_values_and_help_are_escaped() {
    let write = |out: &mut Encoder<&mut String>| {
        out.family("g", Kind::Gauge, "a \\ \"b\"\nc")?;
        out.sample("g", "", &[("monitor", "x\"y\\z\nw")], -1_i64)
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
