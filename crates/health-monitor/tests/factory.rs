//! The monitor factories pick the probe by scheme and check real loopback targets.
#![cfg(feature = "probes")]
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

use std::time::Duration;

use health_monitor::{
    HealthMonitor, MonitorError, Scope, new_file_server_monitor, new_http_monitor, new_monitor,
    new_stream_monitor,
};
use health_types::{CheckKind, ConfigError, HealthCheckConfig, Status, Url};

fn config() -> HealthCheckConfig {
    HealthCheckConfig {
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

#[tokio::test]
async fn new_monitor_chooses_the_probe_by_scheme() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let tcp = new_monitor(
        "tcp",
        &config(),
        Url::parse(&format!("tcp://{addr}")).unwrap(),
    )
    .unwrap();
    let result = tcp.check_health().await.unwrap();
    assert!(result.healthy, "{result:?}");

    let file_url = Url::from_directory_path(dir.path()).unwrap();
    let file = new_monitor("file", &config(), file_url.clone()).unwrap();
    assert!(file.check_health().await.unwrap().healthy);
    let missing =
        new_file_server_monitor("missing", &config(), file_url.join("nope").unwrap()).unwrap();
    assert_eq!(
        missing.check_health().await.unwrap().kind,
        CheckKind::NotFound
    );

    // The listener is gone: HTTP to its port is refused.
    drop(listener);
    let http = new_monitor(
        "http",
        &config(),
        Url::parse(&format!("http://{addr}/")).unwrap(),
    )
    .unwrap();
    let result = http.check_health().await.unwrap();
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::Refused),
        "{result:?}"
    );

    let scope = Scope::new();
    tcp.start(&scope).unwrap();
    let mut rx = tcp.subscribe();
    rx.wait_for(|s| s.checks() >= 1).await.unwrap();
    assert_eq!(tcp.status(), Status::Unhealthy, "the listener is gone");
    scope.shutdown().await;
}

#[test]
fn unsupported_schemes_and_bad_urls_are_errors_that_say_why() {
    let err = new_monitor("x", &config(), Url::parse("ftp://host/").unwrap()).unwrap_err();
    let MonitorError::Config(ConfigError::Url { reason, .. }) = &err else {
        panic!("{err:?}");
    };
    for scheme in ["http", "https", "h2c", "tcp", "udp", "file"] {
        assert!(reason.contains(scheme), "{reason}");
    }
    let err = new_stream_monitor("x", &config(), Url::parse("tcp://host").unwrap()).unwrap_err();
    let MonitorError::Config(ConfigError::Url { url, .. }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(url, "tcp://host");
    let err = new_http_monitor("x", &config(), Url::parse("tcp://host:1").unwrap()).unwrap_err();
    assert!(
        matches!(err, MonitorError::Config(ConfigError::Url { .. })),
        "{err:?}"
    );
    assert!(new_monitor("x", &config(), Url::parse("gopher://h/").unwrap()).is_err());
}
