//! `new_docker_monitor` against the fake Docker engine of `health_check::test_util` on a
//! unix socket: the display URL, the fallback's target and `update_url`, and a scheduled
//! run.
#![cfg(feature = "docker")]
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

use std::time::Duration;

use health_check::test_util::{FakeEngine, Reply, inspect_body};
use health_monitor::{HealthMonitor, Monitor, MonitorError, Scope, new_docker_monitor};
use health_types::{CheckKind, HealthCheckConfig, Status, Url};

/// A fake engine (API 1.41) on a unix socket whose containers are in these `State`s.
async fn engine_with(containers: &[(&str, &str)]) -> FakeEngine {
    let engine = FakeEngine::unix("1.41").await;
    for (id, state) in containers {
        engine.set(id, Reply::Now(200, inspect_body(state)));
    }
    engine
}

/// A monitor `name` of `container` on `engine`, falling back to a file check of `dir`
/// (which exists: healthy `exists`).
fn with_file_fallback(
    name: &str,
    engine: &FakeEngine,
    container: &str,
    dir: &tempfile::TempDir,
) -> Monitor {
    let target = Url::from_directory_path(dir.path()).unwrap();
    new_docker_monitor(
        name,
        &config(),
        Some(engine.host()),
        container,
        Some(target),
    )
    .unwrap()
}

const RUNNING: &str = r#"{"Status":"running"}"#;
const UNHEALTHY: &str = r#"{"Status":"running","Health":{"Status":"unhealthy","Log":[{"Start":"2026-01-01T00:00:00Z","End":"2026-01-01T00:00:00.02Z","Output":"HTTP 503"}]}}"#;
const HEALTHY: &str = r#"{"Status":"running","Health":{"Status":"healthy","Log":[{"Start":"2026-01-01T00:00:00Z","End":"2026-01-01T00:00:00.02Z","Output":"ok"}]}}"#;

fn config() -> HealthCheckConfig {
    HealthCheckConfig {
        timeout: Duration::from_secs(2),
        interval: Duration::from_millis(100),
        jitter: Some(Duration::ZERO),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_monitor_shows_the_docker_url_and_the_fallback_checks_the_target() {
    let engine = engine_with(&[("plain", RUNNING)]).await;
    let present = tempfile::tempdir().unwrap();
    let monitor = with_file_fallback("app", &engine, "plain", &present);
    assert_eq!(
        monitor.url().as_str(),
        "docker://localhost/containers/plain"
    );
    let result = monitor.check_health().await.unwrap();
    assert_eq!((result.healthy, result.detail.as_str()), (true, "exists"));

    // update_url reaches the fallback: the next check uses the new target.
    let moved = Url::from_directory_path(present.path().join("gone")).unwrap();
    monitor.update_url(moved.clone()).unwrap();
    assert_eq!(*monitor.url(), moved);
    let result = monitor.check_health().await.unwrap();
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::NotFound),
        "{result:?}"
    );

    // The container is fixed; the fallback still vets plain URLs.
    let err = monitor
        .update_url(Url::parse("docker://localhost/containers/other").unwrap())
        .unwrap_err();
    assert!(matches!(err, MonitorError::Config(_)), "{err:?}");
    assert!(
        monitor
            .update_url(Url::parse("http://10.0.0.5/").unwrap())
            .is_err(),
        "a file probe does not check http"
    );
}

#[tokio::test]
async fn a_docker_unhealthy_result_is_final_and_no_fallback_means_an_error() {
    let engine = engine_with(&[("sick", UNHEALTHY)]).await;
    let present = tempfile::tempdir().unwrap();
    let sick = with_file_fallback("sick", &engine, "sick", &present);
    let result = sick.check_health().await.unwrap();
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Container, "HTTP 503")
    );
    assert_eq!(result.latency, Duration::from_millis(20));

    let missing = new_docker_monitor("gone", &config(), Some(engine.host()), "gone", None).unwrap();
    let err = missing.check_health().await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::NotFound, "{err}");
}

#[tokio::test]
async fn a_started_monitor_follows_the_container() {
    let engine = engine_with(&[("web", HEALTHY)]).await;
    let monitor = new_docker_monitor("web", &config(), Some(engine.host()), "web", None).unwrap();
    let scope = Scope::new();
    monitor.start(&scope).unwrap();
    let mut updates = monitor.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        updates.wait_for(|snapshot| snapshot.checks() >= 2),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(monitor.status(), Status::Healthy);
    assert_eq!(monitor.detail(), "ok");
    scope.shutdown().await;
}

#[test]
fn bad_hosts_and_containers_are_config_errors() {
    for (host, container) in [
        (Some("ssh://docker.test"), "web"),
        (Some("unix://relative.sock"), "web"),
        (None, "no/slashes"),
    ] {
        let err = new_docker_monitor("x", &config(), host, container, None).unwrap_err();
        assert!(matches!(err, MonitorError::Config(_)), "{err:?}");
    }
}
