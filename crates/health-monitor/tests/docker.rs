//! `new_docker_monitor` against a minimal fake Docker engine on a unix socket: the
//! display URL, the fallback's target and `update_url`, and a scheduled run.
#![cfg(feature = "docker")]
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use health_monitor::{HealthMonitor, MonitorError, Scope, new_docker_monitor, probe_for};
use health_types::{CheckKind, HealthCheckConfig, Status, Url};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
    task::JoinHandle,
};

/// A fake engine answering `GET /version` and `GET [/vX.Y]/containers/<id>/json` with
/// fixed bodies, one request per connection. Stops when dropped.
struct FakeEngine {
    host: String,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEngine {
    fn start(containers: &[(&str, &str)]) -> FakeEngine {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let states: Arc<HashMap<String, String>> = Arc::new(
            containers
                .iter()
                .map(|(id, state)| ((*id).to_owned(), (*state).to_owned()))
                .collect(),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, states.clone()));
            }
        });
        FakeEngine {
            host: unix_host(&socket),
            task,
            _dir: dir,
        }
    }
}

fn unix_host(socket: &Path) -> String {
    format!("unix://{}", socket.display())
}

async fn answer(mut stream: UnixStream, states: Arc<HashMap<String, String>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let container = path
        .rsplit_once("/containers/")
        .and_then(|(_, rest)| rest.strip_suffix("/json"));
    let (status, body) = if path.ends_with("/version") {
        (
            "200 OK",
            r#"{"ApiVersion":"1.41","Version":"20.10.99"}"#.to_owned(),
        )
    } else if let Some(state) = container.and_then(|id| states.get(id)) {
        ("200 OK", format!(r#"{{"Id":"x","State":{state}}}"#))
    } else {
        (
            "404 Not Found",
            r#"{"message":"No such container"}"#.to_owned(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
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
    let engine = FakeEngine::start(&[("plain", RUNNING)]);
    let present = tempfile::tempdir().unwrap();
    let target = Url::from_directory_path(present.path()).unwrap();
    let fallback = probe_for(&config(), &target).unwrap();
    let monitor = new_docker_monitor(
        "app",
        &config(),
        target,
        Some(&engine.host),
        "plain",
        Some(fallback),
    )
    .unwrap();
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
    let engine = FakeEngine::start(&[("sick", UNHEALTHY)]);
    let present = tempfile::tempdir().unwrap();
    let target = Url::from_directory_path(present.path()).unwrap();
    let fallback = probe_for(&config(), &target).unwrap();
    let sick = new_docker_monitor(
        "sick",
        &config(),
        target.clone(),
        Some(&engine.host),
        "sick",
        Some(fallback),
    )
    .unwrap();
    let result = sick.check_health().await.unwrap();
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Container, "HTTP 503")
    );
    assert_eq!(result.latency, Duration::from_millis(20));

    let missing =
        new_docker_monitor("gone", &config(), target, Some(&engine.host), "gone", None).unwrap();
    let err = missing.check_health().await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::NotFound, "{err}");
}

#[tokio::test]
async fn a_started_monitor_follows_the_container() {
    let engine = FakeEngine::start(&[("web", HEALTHY)]);
    let target = Url::parse("http://127.0.0.1:9/").unwrap();
    let monitor =
        new_docker_monitor("web", &config(), target, Some(&engine.host), "web", None).unwrap();
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
    let target = Url::parse("http://127.0.0.1:9/").unwrap();
    for (host, container) in [
        (Some("ssh://docker.test"), "web"),
        (Some("unix://relative.sock"), "web"),
        (None, "no/slashes"),
    ] {
        let err =
            new_docker_monitor("x", &config(), target.clone(), host, container, None).unwrap_err();
        assert!(matches!(err, MonitorError::Config(_)), "{err:?}");
    }
}
