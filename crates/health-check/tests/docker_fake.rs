//! DockerProbe with the real bollard client against the fake Docker Engine API of
//! `health_check::test_util` (on a unix socket or TCP, scripted per container):
//! API-version negotiation, every state, error statuses, malformed JSON and a slow
//! answer.
#![cfg(feature = "docker")]
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{path::PathBuf, sync::Arc, time::Duration};

use health_check::{
    DockerProbe, FileProbe, HEALTH_CHECK_NOT_AVAILABLE, MAX_HEALTH_OUTPUT, USER_AGENT_VALUE,
    test_util::{FakeEngine, Reply, health_body, status_body},
};
use health_types::{CheckKind, CheckResult, DockerSpec, HealthCheckConfig, Probe, ProbeError};
use support::config;
use tokio::time::Instant;
use url::Url;

/// A file fallback whose target (a temp dir) exists: healthy `exists`.
fn file_fallback(config: &HealthCheckConfig) -> (Arc<dyn Probe>, Url, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let target = Url::from_directory_path(dir.path()).unwrap();
    (Arc::new(FileProbe::try_new(config).unwrap()), target, dir)
}

async fn check(probe: &DockerProbe) -> Result<CheckResult, ProbeError> {
    probe.check(&probe.url().clone()).await
}

/// The fake refuses a `/v1.53/...` path as a 1.41 engine does, so this also shows that
/// the negotiation itself (bollard's `GET /version`) works against an older engine.
#[tokio::test]
async fn the_client_negotiates_the_engines_version_once_and_inspects_under_it() {
    let engine = FakeEngine::unix("1.41").await;
    engine.set("web", Reply::Now(200, health_body("healthy", "ready\n")));
    let probe = engine.probe("web", &config(2000));
    assert!(engine.seen().is_empty(), "the client is created lazily");

    let result = check(&probe).await.unwrap();
    assert_eq!(
        result,
        CheckResult::healthy("ready", Duration::from_millis(250))
    );
    check(&probe).await.unwrap();
    let seen = engine.seen();
    assert_eq!(engine.version_requests(), 1, "{seen:?}");
    assert_eq!(
        seen.iter()
            .filter(|path| *path == "/v1.41/containers/web/json")
            .count(),
        2,
        "{seen:?}"
    );
    // Every request, the negotiation included, names the checker.
    assert!(
        engine
            .user_agents()
            .iter()
            .all(|agent| agent == USER_AGENT_VALUE),
        "{:?}",
        engine.user_agents()
    );
}

#[tokio::test]
async fn a_newer_engine_is_asked_under_the_clients_own_version() {
    let engine = FakeEngine::unix("9.99").await;
    engine.set("web", Reply::Now(200, health_body("healthy", "")));
    let probe = engine.probe("web", &config(2000));
    assert!(check(&probe).await.unwrap().healthy);
    let own = bollard::API_DEFAULT_VERSION;
    let want = format!(
        "/v{}.{}/containers/web/json",
        own.major_version, own.minor_version
    );
    assert!(engine.seen().contains(&want), "{:?}", engine.seen());
}

#[tokio::test]
async fn every_state_maps_through_the_real_client() {
    let engine = FakeEngine::tcp("1.41").await;
    let long = "y".repeat(2 * MAX_HEALTH_OUTPUT);
    let cases = [
        (
            "exited",
            status_body("exited"),
            false,
            "container is exited",
        ),
        (
            "paused",
            status_body("paused"),
            false,
            "container is paused",
        ),
        ("dead", status_body("dead"), false, "container is dead"),
        (
            "restarting",
            status_body("restarting"),
            false,
            "container is restarting",
        ),
        (
            "removing",
            status_body("removing"),
            false,
            "container is removing",
        ),
        (
            "created",
            status_body("created"),
            false,
            "container is not started",
        ),
        (
            "sick",
            health_body("unhealthy", "HTTP 503\n"),
            false,
            "HTTP 503",
        ),
        (
            "booting",
            health_body("starting", "refused"),
            false,
            "container health is starting: refused",
        ),
        (
            "plain",
            status_body("running"),
            false,
            HEALTH_CHECK_NOT_AVAILABLE,
        ),
        ("ok", health_body("healthy", "all good"), true, "all good"),
    ];
    for (name, body, _, _) in &cases {
        engine.set(name, Reply::Now(200, body.clone()));
    }
    engine.set("chatty", Reply::Now(200, health_body("healthy", &long)));
    for (name, _, healthy, detail) in cases {
        let result = check(&engine.probe(name, &config(2000))).await.unwrap();
        assert_eq!(
            (result.healthy, result.detail.as_str()),
            (healthy, detail),
            "{name}: {result:?}"
        );
        let kind = if healthy {
            CheckKind::Ok
        } else {
            CheckKind::Container
        };
        assert_eq!(result.kind, kind, "{name}");
    }
    let detail = check(&engine.probe("chatty", &config(2000)))
        .await
        .unwrap()
        .detail;
    assert_eq!(detail.chars().count(), MAX_HEALTH_OUTPUT + 1);
    assert!(detail.ends_with('…'));
}

/// bollard decodes the whole inspect body into its models: fields they do not know are
/// skipped, but a value of the wrong type anywhere (here outside `State`) makes the
/// answer unreadable, an API failure like any other (SPEC: the typed response is fine).
#[tokio::test]
async fn unknown_fields_are_skipped_and_unreadable_values_are_protocol_errors() {
    let engine = FakeEngine::unix("1.41").await;
    let unknown = r#"{"Id":"x","FutureSection":{"Ulimits":[{"Hard":"lots"}]},"Mounts":[],
        "State":{"Status":"running","FutureFlag":"x","Health":{"Status":"healthy","FailingStreak":0,"Log":[
            {"Start":"2026-01-01T10:00:00Z","End":"2026-01-01T10:00:00.5Z","ExitCode":0,"Output":"fine","Future":[]}]}}}"#;
    engine.set("web", Reply::Now(200, unknown.to_owned()));
    let result = check(&engine.probe("web", &config(2000))).await.unwrap();
    assert_eq!(
        result,
        CheckResult::healthy("fine", Duration::from_millis(500))
    );

    let odd = r#"{"Id":7,"HostConfig":{"Ulimits":[{"Hard":"lots"}],"RestartPolicy":{"Name":"on-a-whim"}},
        "Mounts":"none","NetworkSettings":[1,2,3],
        "State":{"Status":"running","Pid":"x","Health":{"Status":"healthy","FailingStreak":"n/a","Log":[
            {"Start":"2026-01-01T10:00:00Z","End":"2026-01-01T10:00:00.5Z","ExitCode":"0","Output":"fine"}]}}}"#;
    let newer = health_body("healthy", "fine").replace("\"running\"", "\"hibernating\"");
    for body in [odd.to_owned(), newer] {
        engine.set("web", Reply::Now(200, body));
        let err = check(&engine.probe("web", &config(2000)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), CheckKind::Protocol, "{err}");
        assert!(
            err.detail().starts_with("docker: bad inspect answer: "),
            "{err}"
        );
    }
}

#[tokio::test]
async fn engine_errors_are_errors_and_the_client_is_re_created_after_them() {
    let engine = FakeEngine::unix("1.41").await;
    engine.set("web", Reply::Now(200, health_body("healthy", "")));
    engine.set(
        "broken",
        Reply::Now(500, r#"{"message":"containerd is down"}"#.to_owned()),
    );
    engine.set("garbled", Reply::Now(200, r#"{"State": {"Stat"#.to_owned()));
    engine.set("stateless", Reply::Now(200, r#"{"Id":"x"}"#.to_owned()));

    let web = engine.probe("web", &config(2000));
    check(&web).await.unwrap();
    assert_eq!(engine.version_requests(), 1);

    let err = check(&engine.probe("gone", &config(2000)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.detail()),
        (
            CheckKind::NotFound,
            "docker: HTTP 404: No such container: gone"
        )
    );
    let err = check(&engine.probe("broken", &config(2000)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.detail()),
        (CheckKind::Status, "docker: HTTP 500: containerd is down")
    );
    for name in ["garbled", "stateless"] {
        let err = check(&engine.probe(name, &config(2000))).await.unwrap_err();
        assert_eq!(err.kind(), CheckKind::Protocol, "{name}: {err}");
    }

    // The failure dropped the probe's client: the next check connects and negotiates
    // again, then keeps the new client.
    let before = engine.version_requests();
    let broken = engine.probe("broken", &config(2000));
    check(&broken).await.unwrap_err();
    check(&broken).await.unwrap_err();
    assert_eq!(engine.version_requests(), before + 2);
    assert!(check(&web).await.unwrap().healthy);
    assert!(check(&web).await.unwrap().healthy);
    assert_eq!(engine.version_requests(), before + 2);
}

#[tokio::test]
async fn a_slow_engine_ends_as_an_error_inside_the_timeout_or_in_the_fallback() {
    let engine = FakeEngine::unix("1.41").await;
    engine.set(
        "web",
        Reply::Slow(Duration::from_secs(30), health_body("healthy", "")),
    );
    let config = config(400);

    let probe = engine.probe("web", &config);
    let start = Instant::now();
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Timeout, "{err}");
    assert!(err.detail().starts_with("docker: timed out after"), "{err}");
    assert!(start.elapsed() < config.timeout, "{:?}", start.elapsed());
    // The cut call dropped the client: the next check negotiates again.
    assert_eq!(engine.version_requests(), 1);
    engine.set("web", Reply::Now(200, health_body("healthy", "")));
    assert!(check(&probe).await.unwrap().healthy);
    assert_eq!(engine.version_requests(), 2);
    engine.set(
        "web",
        Reply::Slow(Duration::from_secs(30), health_body("healthy", "")),
    );

    let (fallback, target, _dir) = file_fallback(&config);
    let probe = engine
        .probe("web", &config)
        .try_with_fallback(fallback, target)
        .unwrap();
    let start = Instant::now();
    let result = check(&probe).await.unwrap();
    assert_eq!((result.healthy, result.detail.as_str()), (true, "exists"));
    assert!(start.elapsed() < config.timeout, "{:?}", start.elapsed());
}

#[tokio::test]
async fn the_fallback_covers_api_failures_and_containers_without_healthcheck_only() {
    let engine = FakeEngine::tcp("1.41").await;
    engine.set("plain", Reply::Now(200, status_body("running")));
    engine.set("stopped", Reply::Now(200, status_body("exited")));
    engine.set("sick", Reply::Now(200, health_body("unhealthy", "bad")));
    let config = config(2000);
    let with_fallback = |name| {
        let (fallback, target, dir) = file_fallback(&config);
        let probe = engine
            .probe(name, &config)
            .try_with_fallback(fallback, target)
            .unwrap();
        (probe, dir)
    };
    for name in ["plain", "missing"] {
        let (probe, _dir) = with_fallback(name);
        let result = check(&probe).await.unwrap();
        assert_eq!(
            (result.healthy, result.detail.as_str()),
            (true, "exists"),
            "{name}"
        );
    }
    for (name, detail) in [("stopped", "container is exited"), ("sick", "bad")] {
        let (probe, _dir) = with_fallback(name);
        let result = check(&probe).await.unwrap();
        assert_eq!(
            (result.healthy, result.kind, result.detail.as_str()),
            (false, CheckKind::Container, detail),
            "{name}: a valid Docker answer is final"
        );
    }
    // `disable` turns the fallback off; the container's own state stays checked.
    let disabled = HealthCheckConfig {
        disable: true,
        ..config.clone()
    };
    let (fallback, target, _dir) = file_fallback(&config);
    let probe = engine
        .probe("plain", &disabled)
        .try_with_fallback(fallback, target)
        .unwrap();
    assert_eq!(
        check(&probe).await.unwrap().detail,
        HEALTH_CHECK_NOT_AVAILABLE
    );
}

#[tokio::test]
async fn an_absent_engine_is_an_error_until_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("docker.sock");
    let spec = DockerSpec {
        container: "web".to_owned(),
        host: Some(format!("unix://{}", socket.display())),
    };
    let probe = DockerProbe::try_new(&config(1000), spec).unwrap();
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Io, "{err}");
    assert!(err.detail().contains("docker.sock"), "{err}");

    let engine = FakeEngine::unix_at(&socket, "1.41");
    engine.set("web", Reply::Now(200, health_body("healthy", "up")));
    assert_eq!(check(&probe).await.unwrap().detail, "up");
    engine.stop().await;
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Refused, "{err}");
}

#[tokio::test]
async fn a_tcp_engine_whose_name_does_not_resolve_is_a_dns_error() {
    let spec = DockerSpec {
        container: "web".to_owned(),
        host: Some("tcp://no-such-host.invalid:2375".to_owned()),
    };
    let probe = DockerProbe::try_new(&config(2000), spec).unwrap();
    let err = check(&probe).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.detail()),
        (CheckKind::Dns, "docker: dns: no such host")
    );
}
