//! Bad input: URLs a probe can never check are config errors naming the URL, bad
//! configs are rejected at construction, and no input makes a probe panic.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{sync::Arc, time::Duration};

use health_check::{AgentProbe, FileProbe, StreamProbe};
use health_types::AgentSpec;
use health_types::{CheckKind, ConfigError, HealthCheckConfig, Probe};
use support::config;
use url::Url;

fn probes(config: &HealthCheckConfig) -> Vec<(&'static str, Arc<dyn Probe>)> {
    let agent = AgentSpec::new(Url::parse("http://127.0.0.1:1").expect("a valid URL"));
    #[cfg_attr(not(feature = "http"), allow(unused_mut))]
    let mut probes: Vec<(&'static str, Arc<dyn Probe>)> = vec![
        (
            "stream",
            Arc::new(StreamProbe::try_new(config).expect("valid")),
        ),
        ("file", Arc::new(FileProbe::try_new(config).expect("valid"))),
        (
            "agent",
            Arc::new(AgentProbe::try_new(config, agent).expect("valid")),
        ),
    ];
    #[cfg(feature = "http")]
    {
        probes.push((
            "http",
            Arc::new(health_check::HttpProbe::try_new(config).expect("valid")),
        ));
        probes.push((
            "h2c",
            Arc::new(health_check::H2cProbe::try_new(config).expect("valid")),
        ));
    }
    probes
}

fn url_error(probe: &dyn Probe, url: &str) -> String {
    let err = probe
        .validate_url(&Url::parse(url).expect("a parsable URL"))
        .expect_err(url);
    assert!(matches!(err, ConfigError::Url { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn an_unsupported_scheme_lists_the_supported_ones() {
    let config = config(1000);
    let expected: &[(&str, &str)] = &[
        ("stream", "tcp, tcp4, tcp6, udp, udp4, udp6"),
        ("file", "supported schemes: file"),
        (
            "agent",
            "http, https, h2c, tcp, tcp4, tcp6, udp, udp4, udp6, file",
        ),
        #[cfg(all(feature = "http", feature = "tls"))]
        ("http", "supported schemes: http, https"),
        #[cfg(all(feature = "http", not(feature = "tls")))]
        ("http", "supported schemes: http"),
        #[cfg(feature = "http")]
        ("h2c", "supported schemes: h2c"),
    ];
    for (name, probe) in probes(&config) {
        let message = url_error(probe.as_ref(), "gopher://example.test:70/");
        let supported = expected
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap();
        assert!(message.contains("\"gopher\""), "{name}: {message}");
        assert!(message.contains(supported), "{name}: {message}");
        assert!(
            message.contains("gopher://example.test:70/"),
            "{name}: {message}"
        );
    }
}

#[test]
fn a_url_without_host_or_port_names_the_url() {
    let config = config(1000);
    let stream = StreamProbe::try_new(&config).unwrap();
    let message = url_error(&stream, "tcp://db.internal");
    assert!(
        message.contains("tcp://db.internal") && message.contains("port"),
        "{message}"
    );
    let message = url_error(&stream, "udp:dns");
    assert!(
        message.contains("udp:dns") && message.contains("no host"),
        "{message}"
    );
    #[cfg(feature = "http")]
    {
        let h2c = health_check::H2cProbe::try_new(&config).unwrap();
        let message = url_error(&h2c, "h2c:/health");
        assert!(message.contains("no host"), "{message}");
    }
    let file = FileProbe::try_new(&config).unwrap();
    let message = url_error(&file, "file://remote.host/srv");
    assert!(message.contains("file://remote.host/srv"), "{message}");
}

#[test]
fn errors_naming_a_url_never_show_its_password() {
    let config = config(1000);
    let stream = StreamProbe::try_new(&config).unwrap();
    let agent = AgentSpec::new(Url::parse("http://127.0.0.1:1").unwrap());
    let agent = AgentProbe::try_new(&config, agent).unwrap();
    for message in [
        url_error(&stream, "tcp://admin:s3cret@db.internal"),
        url_error(&stream, "tcp4://admin:s3cret@[::1]:5432"),
        url_error(&agent, "udp://admin:s3cret@dns.internal"),
    ] {
        assert!(message.contains("admin:***@"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}

#[test]
fn invalid_configs_are_rejected_at_construction() {
    let zero = HealthCheckConfig {
        timeout: Duration::ZERO,
        ..Default::default()
    };
    assert!(StreamProbe::try_new(&zero).is_err());
    assert!(FileProbe::try_new(&zero).is_err());
    let agent = AgentSpec::new(Url::parse("http://127.0.0.1:1").unwrap());
    assert!(AgentProbe::try_new(&zero, agent).is_err());
    let ftp_agent = AgentSpec::new(Url::parse("ftp://agent.internal").unwrap());
    let err = AgentProbe::try_new(&config(1000), ftp_agent).unwrap_err();
    assert!(err.to_string().contains("supported schemes"), "{err}");
    #[cfg(feature = "http")]
    {
        use health_check::{HttpClient, HttpClientConfig, HttpProbe};

        assert!(HttpProbe::try_new(&zero).is_err());
        let bad_header = HealthCheckConfig {
            headers: [("X-Bad".to_owned(), "a\nb".to_owned())].into(),
            ..Default::default()
        };
        let err = HttpProbe::try_new(&bad_header).unwrap_err();
        assert!(err.to_string().contains("headers"), "{err}");
        let missing_ca = HttpClientConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
        };
        let verify = HealthCheckConfig {
            tls_verify: true,
            ..Default::default()
        };
        let err = HttpClient::try_new(&verify, &missing_ca).unwrap_err();
        assert!(err.to_string().contains("ca_file"), "{err}");
    }
}

/// URLs that parse but make little sense. Every host is loopback or `.invalid`, so no
/// packet leaves the machine.
const ODD_URLS: &[&str] = &[
    "http://127.0.0.1:1/",
    "https://127.0.0.1:1/%zz?%%",
    "h2c://127.0.0.1:1",
    "http://[::1]:1/a/../../b",
    "http://user:pass@127.0.0.1:1/",
    "http://xn--nxasmq6b.invalid/",
    "http://ünïcödé.invalid:8080/",
    "http://a.invalid:65535/",
    "tcp://127.0.0.1:0",
    "tcp://[::1]:65535",
    "udp://127.0.0.1:0",
    "udp4://[::1]:53",
    "tcp6://127.0.0.1:80",
    "tcp:relative",
    "file:///",
    "file:///nonexistent/\u{0}x",
    "file:relative/path",
    "file://remote.invalid/x",
    "mailto:someone@example.invalid",
    "data:text/plain,hello",
    "h2c:",
    "http://[::1]",
    "unix:///var/run/docker.sock",
];

#[tokio::test]
async fn no_input_makes_a_probe_panic() {
    let long_host = format!("http://{}.invalid/", "a".repeat(63));
    let long_path = format!("http://127.0.0.1:1/{}", "p".repeat(100_000));
    let mut urls: Vec<String> = ODD_URLS.iter().map(|u| (*u).to_owned()).collect();
    urls.push(long_host);
    urls.push(long_path);
    let config = config(200);
    for (name, probe) in probes(&config) {
        for text in &urls {
            let Ok(url) = Url::parse(text) else {
                continue;
            };
            // validate_url and check agree: a URL validate_url rejects is a config error.
            let valid = probe.validate_url(&url).is_ok();
            let outcome = tokio::time::timeout(Duration::from_secs(2), probe.check(&url))
                .await
                .unwrap_or_else(|_| panic!("{name} hung on {text}"));
            if !valid {
                let err = outcome.expect_err(text);
                assert_eq!(err.kind(), CheckKind::Config, "{name} {text}: {err}");
            }
        }
    }
}
