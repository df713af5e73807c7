//! `/probe`'s pieces: the password mask, the time bound and the answer's text.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use health_types::{CertInfo, CheckKind, CheckResult, Phases};

use super::*;

#[test]
fn a_password_in_an_unparsable_target_is_masked() {
    assert_eq!(
        masked("http://admin:s3cret@exa mple/x?y"),
        "http://admin:***@exa mple/x?y"
    );
    assert_eq!(masked("http://admin@host/"), "http://admin@host/");
    assert_eq!(masked("no url at all"), "no url at all");
    // An `@` in the path is not user info.
    assert_eq!(masked("http://host/a:b@c"), "http://host/a:b@c");
}

#[test]
fn the_scrape_timeout_header_bounds_the_check_less_a_margin() {
    let ten = Duration::from_secs(10);
    assert_eq!(time_bound(&HeaderMap::new(), ten).unwrap(), ten);
    let mut headers = HeaderMap::new();
    headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static("2.5"));
    assert_eq!(time_bound(&headers, ten).unwrap(), Duration::from_secs(2));
    // The config's own timeout wins when it is shorter.
    let short = Duration::from_millis(300);
    assert_eq!(time_bound(&headers, short).unwrap(), short);
    // Shorter than the margin: taken whole.
    headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static("0.2"));
    assert_eq!(
        time_bound(&headers, ten).unwrap(),
        Duration::from_millis(200)
    );
    for bad in ["soon", "-1", "0", "NaN"] {
        headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static(bad));
        let reason = time_bound(&headers, ten).unwrap_err();
        assert!(
            reason.starts_with("invalid `X-Prometheus-Scrape-Timeout-Seconds` = "),
            "{bad}: {reason}"
        );
    }
}

fn text(result: &CheckResult, took: Duration) -> String {
    let mut text = String::new();
    write_result(
        &mut Encoder::new(&mut text, Format::Prometheus),
        result,
        took,
    )
    .unwrap();
    text
}

#[test]
fn a_failure_names_its_kind_and_its_phases() {
    let mut result = CheckResult::unhealthy(
        CheckKind::Status,
        "HTTP 503 Service Unavailable",
        Duration::from_millis(4),
    );
    result.status_code = Some(503);
    result.phases = Phases {
        dns: Some(Duration::from_millis(1)),
        connect: Some(Duration::from_millis(2)),
        tls: None,
        first_byte: Some(Duration::from_millis(3)),
    };
    result.cert = Some(std::sync::Arc::new(CertInfo {
        not_after: 1_900_000_000,
        subject: "CN=api.test".into(),
        serial: "01".into(),
    }));
    let text = text(&result, Duration::from_millis(5));
    for line in [
        "# HELP probe_success 1 if the target was healthy, else 0",
        "# TYPE probe_success gauge",
        "probe_success 0",
        "probe_duration_seconds 0.005",
        "probe_http_status_code 503",
        "probe_ssl_earliest_cert_expiry 1900000000",
        "probe_failure_kind{kind=\"status\"} 1",
        "probe_phase_duration_seconds{phase=\"dns\"} 0.001",
        "probe_phase_duration_seconds{phase=\"connect\"} 0.002",
        "probe_phase_duration_seconds{phase=\"first_byte\"} 0.003",
        "probe_dns_lookup_time_seconds 0.001",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("phase=\"tls\""), "{text}");
}

#[test]
fn a_success_has_no_failure_kind_and_no_certificate_unless_seen() {
    let text = text(
        &CheckResult::healthy("open", Duration::from_millis(1)),
        Duration::from_millis(1),
    );
    assert!(text.lines().any(|l| l == "probe_success 1"), "{text}");
    assert!(
        text.lines().any(|l| l == "probe_http_status_code 0"),
        "{text}"
    );
    for absent in [
        "probe_failure_kind",
        "probe_ssl_earliest_cert_expiry",
        "probe_phase_duration_seconds",
        "probe_dns_lookup_time_seconds",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
}
