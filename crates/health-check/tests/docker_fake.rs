//! DockerProbe with the real bollard client against a fake Docker Engine API: a hyper
//! server on a unix socket (or TCP) with scripted containers, API-version negotiation,
//! error statuses, malformed JSON and a slow answer.
#![cfg(feature = "docker")]
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    collections::HashMap,
    convert::Infallible,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use health_check::{
    DockerProbe, DockerProbeConfig, FileProbe, HEALTH_CHECK_NOT_AVAILABLE, MAX_HEALTH_OUTPUT,
};
use health_types::{CheckKind, CheckResult, HealthCheckConfig, Probe, ProbeError};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use support::config;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    task::JoinHandle,
    time::Instant,
};
use url::Url;

/// What the fake engine answers for one container.
#[derive(Clone, Debug)]
enum Reply {
    /// This status and body at once.
    Now(u16, String),
    /// 200 with this body, after a delay.
    Slow(Duration, String),
}

/// The fake engine's script and what it saw.
#[derive(Debug, Default)]
struct Script {
    /// The engine's API version; a request under a newer `/vX.Y` prefix gets a 400, as
    /// a real engine answers.
    api_version: String,
    containers: HashMap<String, Reply>,
    /// Request paths, in order.
    seen: Vec<String>,
}

/// A fake Docker engine serving `/_ping`, `/version` and `/containers/{id}/json`, with or
/// without a `/v1.xx` prefix. Stops when dropped.
struct FakeEngine {
    host: String,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEngine {
    /// An engine on a unix socket in a new temp dir.
    async fn unix(api_version: &str) -> FakeEngine {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = FakeEngine::unix_at(&dir.path().join("docker.sock"), api_version);
        engine._dir = Some(dir);
        engine
    }

    /// An engine on a unix socket at `path`.
    fn unix_at(path: &Path, api_version: &str) -> FakeEngine {
        let listener = UnixListener::bind(path).unwrap();
        let script = Script::new(api_version);
        let serving = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        FakeEngine {
            host: format!("unix://{}", path.display()),
            script,
            task,
            _dir: None,
        }
    }

    /// An engine on loopback TCP.
    async fn tcp(api_version: &str) -> FakeEngine {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Script::new(api_version);
        let serving = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        FakeEngine {
            host: format!("tcp://{addr}"),
            script,
            task,
            _dir: None,
        }
    }

    /// Stops serving: the listener is closed when this returns.
    async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    fn set(&self, container: &str, reply: Reply) {
        self.script
            .lock()
            .unwrap()
            .containers
            .insert(container.to_owned(), reply);
    }

    fn seen(&self) -> Vec<String> {
        self.script.lock().unwrap().seen.clone()
    }

    fn version_requests(&self) -> usize {
        self.seen()
            .iter()
            .filter(|path| path.ends_with("/version"))
            .count()
    }

    fn probe(&self, container: &str, config: &HealthCheckConfig) -> DockerProbe {
        DockerProbe::try_new(
            config,
            DockerProbeConfig {
                container: container.to_owned(),
                host: Some(self.host.clone()),
            },
        )
        .unwrap()
    }
}

impl Script {
    fn new(api_version: &str) -> Arc<Mutex<Script>> {
        Arc::new(Mutex::new(Script {
            api_version: api_version.to_owned(),
            ..Script::default()
        }))
    }
}

async fn serve<S>(stream: S, script: Arc<Mutex<Script>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let script = script.clone();
        async move { Ok::<_, Infallible>(answer(&script, &request).await) }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// `(1, 41)` for `"1.41"`.
fn version_number(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

async fn answer(script: &Mutex<Script>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let (api_version, reply) = {
        let mut script = script.lock().unwrap();
        script.seen.push(path.clone());
        let container = path
            .rsplit_once("/containers/")
            .and_then(|(_, rest)| rest.strip_suffix("/json"))
            .map(str::to_owned);
        let reply = container.map(|id| (script.containers.get(&id).cloned(), id));
        (script.api_version.clone(), reply)
    };
    // `/v1.41/containers/...` → `1.41`, `/containers/...`; a newer version than the
    // engine's is refused, as Docker refuses it.
    let mut rest = path.as_str();
    if let Some(prefixed) = path.strip_prefix("/v")
        && let Some((version, tail)) = prefixed.split_once('/')
        && let Some(asked) = version_number(version)
    {
        if asked > version_number(&api_version).unwrap() {
            return json(
                400,
                format!(
                    r#"{{"message":"client version {version} is too new. Maximum supported API version is {api_version}"}}"#
                ),
            );
        }
        rest = &path[path.len() - tail.len() - 1..];
    }
    match (rest, reply) {
        ("/_ping", _) => Response::builder()
            .header("Api-Version", api_version)
            .body(Full::new(Bytes::from_static(b"OK")))
            .unwrap(),
        ("/version", _) => json(
            200,
            format!(
                r#"{{"Platform":{{"Name":"fake"}},"Version":"20.10.99","ApiVersion":"{api_version}","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}}"#
            ),
        ),
        (_, Some((Some(Reply::Now(status, body)), _))) => json(status, body),
        (_, Some((Some(Reply::Slow(delay, body)), _))) => {
            tokio::time::sleep(delay).await;
            json(200, body)
        }
        (_, Some((None, id))) => json(404, format!(r#"{{"message":"No such container: {id}"}}"#)),
        _ => json(404, r#"{"message":"page not found"}"#.to_owned()),
    }
}

/// An inspect answer around `state`, with the usual noise beside it.
fn inspect(state: &str) -> String {
    format!(
        r#"{{"Id":"0123abcd","Name":"/web","Image":"sha256:00","State":{state},"HostConfig":{{"RestartPolicy":{{"Name":"unless-stopped","MaximumRetryCount":0}}}},"Mounts":[]}}"#
    )
}

fn status_only(status: &str) -> String {
    inspect(&format!(
        r#"{{"Status":"{status}","Running":false,"Pid":0}}"#
    ))
}

/// A running container whose health is `health`, the last log entry printing `output`
/// and running 250 ms.
fn with_health(health: &str, output: &str) -> String {
    inspect(&format!(
        r#"{{"Status":"running","Running":true,"Pid":42,"Health":{{"Status":"{health}","FailingStreak":0,"Log":[
            {{"Start":"2026-01-01T10:00:00.000000000Z","End":"2026-01-01T10:00:00.100000000Z","ExitCode":1,"Output":"older"}},
            {{"Start":"2026-01-01T10:00:01.000000000Z","End":"2026-01-01T10:00:01.250000000Z","ExitCode":0,"Output":{}}}]}}}}"#,
        serde_json::to_string(output).unwrap()
    ))
}

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
    engine.set("web", Reply::Now(200, with_health("healthy", "ready\n")));
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
}

#[tokio::test]
async fn a_newer_engine_is_asked_under_the_clients_own_version() {
    let engine = FakeEngine::unix("9.99").await;
    engine.set("web", Reply::Now(200, with_health("healthy", "")));
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
            status_only("exited"),
            false,
            "container is exited",
        ),
        (
            "paused",
            status_only("paused"),
            false,
            "container is paused",
        ),
        ("dead", status_only("dead"), false, "container is dead"),
        (
            "restarting",
            status_only("restarting"),
            false,
            "container is restarting",
        ),
        (
            "removing",
            status_only("removing"),
            false,
            "container is removing",
        ),
        (
            "created",
            status_only("created"),
            false,
            "container is not started",
        ),
        (
            "sick",
            with_health("unhealthy", "HTTP 503\n"),
            false,
            "HTTP 503",
        ),
        (
            "booting",
            with_health("starting", "refused"),
            false,
            "container health is starting: refused",
        ),
        (
            "plain",
            status_only("running"),
            false,
            HEALTH_CHECK_NOT_AVAILABLE,
        ),
        ("ok", with_health("healthy", "all good"), true, "all good"),
    ];
    for (name, body, _, _) in &cases {
        engine.set(name, Reply::Now(200, body.clone()));
    }
    engine.set("chatty", Reply::Now(200, with_health("healthy", &long)));
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

#[tokio::test]
async fn odd_fields_outside_state_do_not_matter() {
    let engine = FakeEngine::unix("1.41").await;
    let body = r#"{"Id":7,"HostConfig":{"Ulimits":[{"Hard":"lots"}],"RestartPolicy":{"Name":"on-a-whim"}},
        "Mounts":"none","NetworkSettings":[1,2,3],
        "State":{"Status":"running","Pid":"x","Health":{"Status":"healthy","FailingStreak":"n/a","Log":[
            {"Start":"2026-01-01T10:00:00Z","End":"2026-01-01T10:00:00.5Z","ExitCode":"0","Output":"fine"}]}}}"#;
    engine.set("web", Reply::Now(200, body.to_owned()));
    let result = check(&engine.probe("web", &config(2000))).await.unwrap();
    assert_eq!(
        result,
        CheckResult::healthy("fine", Duration::from_millis(500))
    );
}

#[tokio::test]
async fn engine_errors_are_errors_and_the_client_is_re_created_after_them() {
    let engine = FakeEngine::unix("1.41").await;
    engine.set("web", Reply::Now(200, with_health("healthy", "")));
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
        Reply::Slow(Duration::from_secs(30), with_health("healthy", "")),
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
    engine.set("web", Reply::Now(200, with_health("healthy", "")));
    assert!(check(&probe).await.unwrap().healthy);
    assert_eq!(engine.version_requests(), 2);
    engine.set(
        "web",
        Reply::Slow(Duration::from_secs(30), with_health("healthy", "")),
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
    engine.set("plain", Reply::Now(200, status_only("running")));
    engine.set("stopped", Reply::Now(200, status_only("exited")));
    engine.set("sick", Reply::Now(200, with_health("unhealthy", "bad")));
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
    let probe = DockerProbe::try_new(
        &config(1000),
        DockerProbeConfig {
            container: "web".to_owned(),
            host: Some(format!("unix://{}", socket.display())),
        },
    )
    .unwrap();
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Io, "{err}");
    assert!(err.detail().contains("docker.sock"), "{err}");

    let engine = FakeEngine::unix_at(&socket, "1.41");
    engine.set("web", Reply::Now(200, with_health("healthy", "up")));
    assert_eq!(check(&probe).await.unwrap().detail, "up");
    engine.stop().await;
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Refused, "{err}");
}
