//! `/probe`'s pieces: the password mask, the time bound and the answer's text.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

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
    assert_eq!(
        masked("http://admin@ho st:80/a@b"),
        "http://admin@ho st:80/a@b"
    );
    // A password holding `/`, `?`, `#` or `@`, or percent-encoded, goes whole.
    for password in [
        "pa/ss",
        "pa?ss",
        "pa#ss",
        "p@ss",
        "p@s/s?w#o@rd",
        "p%2Fss%40",
    ] {
        let text = format!("http://admin:{password}@exa mple/x?y");
        assert_eq!(masked(&text), "http://admin:***@exa mple/x?y", "{password}");
    }
}

#[test]
fn a_target_without_a_scheme_is_http() {
    assert_eq!(
        with_scheme("example.com:8080/x"),
        "http://example.com:8080/x"
    );
    assert_eq!(with_scheme("tcp://db:5432"), "tcp://db:5432");
    assert_eq!(with_scheme("https://example.com/"), "https://example.com/");
}

#[test]
fn a_probe_is_bounded_by_a_minute_whatever_its_module_says() {
    let hour = Duration::from_secs(3600);
    assert_eq!(
        time_bound(&HeaderMap::new(), hour).unwrap(),
        MAX_PROBE_TIMEOUT
    );
    assert_eq!(MAX_PROBE_TIMEOUT, Duration::from_secs(60));
    let mut headers = HeaderMap::new();
    headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static("300"));
    assert_eq!(time_bound(&headers, hour).unwrap(), MAX_PROBE_TIMEOUT);
}

/// A config with every credential `/probe` may drop, and `path`.
fn with_credentials(path: &str) -> HealthCheckConfig {
    let mut config = HealthCheckConfig {
        path: path.to_owned(),
        ..HealthCheckConfig::default()
    };
    config.headers.insert("X-Secret".into(), "t0ken".into());
    config.tls.cert = Some("/etc/healthd/client.pem".into());
    config.tls.key = Some("/etc/healthd/client.key".into());
    config.tls.ca = Some("/etc/healthd/ca.pem".into());
    config
}

fn has_credentials(config: &HealthCheckConfig) -> bool {
    !config.headers.is_empty() && config.tls.cert.is_some() && config.tls.key.is_some()
}

fn has_none(config: &HealthCheckConfig) -> bool {
    config.headers.is_empty() && config.tls.cert.is_none() && config.tls.key.is_none()
}

#[test]
fn a_monitors_credentials_go_to_its_own_origin_only() {
    let modules = ProbeModules::new(HealthCheckConfig::default(), BTreeMap::new());
    let monitor = |url: &str| Source::Monitor {
        config: with_credentials("/ready"),
        url: Arc::new(Url::parse(url).unwrap()),
    };
    let own = "https://user:pw@api.test/health";
    for target in [
        "https://api.test/",
        "https://API.test:443/other?x=1",
        "https://other:secret@api.test/",
    ] {
        let (config, url) = modules.for_target(monitor(own), Url::parse(target).unwrap());
        assert!(has_credentials(&config), "{target}");
        assert_eq!(config.path, "/", "{target}");
        if target.contains("other:secret") {
            // A target's own user info is kept.
            assert_eq!((url.username(), url.password()), ("other", Some("secret")));
        } else {
            assert_eq!(
                (url.username(), url.password()),
                ("user", Some("pw")),
                "{target}"
            );
        }
    }
    for target in [
        "http://api.test/",
        "https://api.test:8443/",
        "https://api.test.evil.example/",
        "https://evil.example/",
        "grpcs://api.test:443/",
    ] {
        let (config, url) = modules.for_target(monitor(own), Url::parse(target).unwrap());
        assert!(has_none(&config), "{target}");
        // The rest of the monitor's config applies.
        assert_eq!(
            config.tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/healthd/ca.pem"))
        );
        assert_eq!(config.path, "/", "{target}");
        assert_eq!((url.username(), url.password()), ("", None), "{target}");
    }
}

#[test]
fn defaults_lose_their_credentials_and_tables_keep_theirs() {
    let modules = ProbeModules::new(with_credentials("/healthz"), BTreeMap::new());
    let target = || Url::parse("https://anywhere.example/x").unwrap();
    let (config, _) = modules.for_target(Source::Defaults, target());
    assert!(has_none(&config));
    assert_eq!(config.path, "/");
    assert_eq!(
        config.tls.ca.as_deref(),
        Some(std::path::Path::new("/etc/healthd/ca.pem"))
    );
    // A table is used as written; its path only when it sets one of its own.
    let (config, _) = modules.for_target(Source::Table(with_credentials("/healthz")), target());
    assert!(has_credentials(&config));
    assert_eq!(config.path, "/");
    let (config, _) = modules.for_target(Source::Table(with_credentials("/deep")), target());
    assert_eq!(config.path, "/deep");
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

#[test]
fn an_http_check_asks_for_exactly_the_target() {
    for (target, url, path) in [
        ("http://h/metrics", "http://h/", "/metrics"),
        ("http://h/a/metrics?x=1", "http://h/a/?x=1", "/metrics"),
        ("https://h/a/", "https://h/a/", "/"),
        ("h2c://h", "h2c://h", "/"),
        ("tcp://h:1", "tcp://h:1", "/"),
    ] {
        let mut config = HealthCheckConfig::default();
        let checked = exact_path(&mut config, &Url::parse(target).unwrap());
        assert_eq!(
            (checked.as_str(), config.path.as_str()),
            (url, path),
            "{target}"
        );
    }
    // A table's own path is joined onto the target's as it is.
    let mut config = HealthCheckConfig {
        path: "/deep".into(),
        ..HealthCheckConfig::default()
    };
    let checked = exact_path(&mut config, &Url::parse("http://h/a").unwrap());
    assert_eq!(
        (checked.as_str(), config.path.as_str()),
        ("http://h/a", "/deep")
    );
}
