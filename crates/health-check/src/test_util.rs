//! Test helpers for this crate's tests and the crates above it (feature `test-util`): a
//! fake Docker Engine API with scripted containers, on a unix socket or loopback TCP, and
//! a scripted DNS server ([`ScriptedDns`]) that this process's probes can be pointed at
//! ([`use_name_server`]).
//!
//! The fake answers as a Docker 20.10 engine does (the shapes of its `/version` and
//! inspect bodies, its headers, its error messages), so bollard's typed client reads
//! it exactly as it reads a real engine.
//!
//! ```no_run
//! use health_check::test_util::{FakeEngine, Reply, health_body};
//! use health_types::{HealthCheckConfig, Probe};
//!
//! # async fn run() {
//! let engine = FakeEngine::unix("1.41").await;
//! engine.set("web", Reply::Now(200, health_body("healthy", "ready")));
//! let probe = engine.probe("web", &HealthCheckConfig::default());
//! let result = probe.check(probe.url()).await.expect("the fake answers");
//! assert_eq!(result.detail, "ready");
//! # }
//! ```

use std::{
    collections::HashMap,
    convert::Infallible,
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use health_types::{DockerSpec, HealthCheckConfig};
use http::{Request, Response, StatusCode, header::USER_AGENT};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    task::JoinHandle,
};

pub use self::dns::{DnsAnswer, ScriptedDns, use_name_server};
use crate::DockerProbe;

mod dns;

/// The engine version the fake reports (its API version is the fake's own).
const ENGINE_VERSION: &str = "20.10.99";

/// What the fake engine answers to the inspect of one container.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status and JSON body at once.
    Now(u16, String),
    /// 200 with this JSON body, after this delay (an engine that hangs).
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
    /// The `User-Agent` of each request, in order (empty when there was none).
    user_agents: Vec<String>,
}

/// A fake Docker engine serving `/_ping`, `/version` and `/containers/{id}/json`, with or
/// without a `/v1.xx` prefix. An unknown container is a 404 `No such container: <id>`.
/// Stops serving when dropped (connections already open are served to their end).
#[derive(Debug)]
pub struct FakeEngine {
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
    /// An engine of API version `api_version` (like `"1.41"`) on a unix socket in a new
    /// temporary directory, removed with the engine.
    pub async fn unix(api_version: &str) -> FakeEngine {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let mut engine = FakeEngine::unix_at(&dir.path().join("docker.sock"), api_version);
        engine._dir = Some(dir);
        engine
    }

    /// An engine on a unix socket at `path` (which must not exist yet). Must be called
    /// inside a tokio runtime.
    pub fn unix_at(path: &Path, api_version: &str) -> FakeEngine {
        let listener = UnixListener::bind(path).expect("the socket path is free");
        let script = Script::new(api_version);
        let serving = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        FakeEngine::new(format!("unix://{}", path.display()), script, task)
    }

    /// An engine on loopback TCP, on a free port.
    pub async fn tcp(api_version: &str) -> FakeEngine {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback has a free port");
        let addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        let script = Script::new(api_version);
        let serving = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        FakeEngine::new(format!("tcp://{addr}"), script, task)
    }

    fn new(host: String, script: Arc<Mutex<Script>>, task: JoinHandle<()>) -> FakeEngine {
        FakeEngine {
            host,
            script,
            task,
            _dir: None,
        }
    }

    /// The engine's address: `unix:///…/docker.sock` or `tcp://127.0.0.1:<port>`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Stops serving: the listener is closed when this returns (a unix socket's file
    /// stays, so a client is refused rather than told there is no socket).
    pub async fn stop(mut self) {
        self.task.abort();
        // The task's end is its cancellation; nothing else can come of it.
        let _ = (&mut self.task).await;
    }

    /// Answers the inspect of `container` with `reply` from now on.
    pub fn set(&self, container: &str, reply: Reply) {
        self.script().containers.insert(container.to_owned(), reply);
    }

    /// The paths of the requests so far, in order (`/version`, `/v1.41/containers/web/json`).
    pub fn seen(&self) -> Vec<String> {
        self.script().seen.clone()
    }

    /// The `User-Agent` of each request so far, in order (empty when there was none).
    pub fn user_agents(&self) -> Vec<String> {
        self.script().user_agents.clone()
    }

    /// How many API-version negotiations (`GET /version`) there were.
    pub fn version_requests(&self) -> usize {
        self.script()
            .seen
            .iter()
            .filter(|path| path.ends_with("/version"))
            .count()
    }

    /// `container` on this engine.
    pub fn spec(&self, container: &str) -> DockerSpec {
        DockerSpec {
            container: container.to_owned(),
            host: Some(self.host.clone()),
        }
    }

    /// A probe of `container` on this engine, with the real bollard client.
    ///
    /// # Panics
    ///
    /// When `container` is not a valid container name or `config` is invalid.
    pub fn probe(&self, container: &str, config: &HealthCheckConfig) -> DockerProbe {
        DockerProbe::try_new(config, self.spec(container))
            .expect("a valid config and container name")
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding the lock has failed already; what it left
        // is still the best record of what the engine saw.
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Serves one connection with HTTP/1.1 (keep-alive, as the engine does).
async fn serve<S>(stream: S, script: Arc<Mutex<Script>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let script = script.clone();
        async move { Ok::<_, Infallible>(answer(&script, &request).await) }
    });
    // A client that goes away mid-answer is no failure of the fake.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A JSON answer with the headers a real engine sends.
fn json(status: u16, api_version: &str, body: String) -> Response<Full<Bytes>> {
    engine_response(status, api_version)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("the fake's headers are valid")
}

fn engine_response(status: u16, api_version: &str) -> http::response::Builder {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("the fake's statuses are valid"))
        .header("Api-Version", api_version)
        .header("Docker-Experimental", "false")
        .header("Ostype", "linux")
        .header("Server", format!("Docker/{ENGINE_VERSION} (linux)"))
}

/// `(1, 41)` for `"1.41"`.
fn version_number(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

async fn answer(script: &Mutex<Script>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let (api_version, reply) = {
        let mut script = script.lock().unwrap_or_else(PoisonError::into_inner);
        script.seen.push(path.clone());
        let user_agent = request
            .headers()
            .get(USER_AGENT)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        script.user_agents.push(user_agent);
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
        if Some(asked) > version_number(&api_version) {
            return json(
                400,
                &api_version,
                error_body(&format!(
                    "client version {version} is too new. Maximum supported API version is {api_version}"
                )),
            );
        }
        rest = &path[path.len() - tail.len() - 1..];
    }
    match (rest, reply) {
        ("/_ping", _) => engine_response(200, &api_version)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(b"OK")))
            .expect("the fake's headers are valid"),
        ("/version", _) => json(200, &api_version, version_body(&api_version)),
        (_, Some((Some(Reply::Now(status, body)), _))) => json(status, &api_version, body),
        (_, Some((Some(Reply::Slow(delay, body)), _))) => {
            tokio::time::sleep(delay).await;
            json(200, &api_version, body)
        }
        (_, Some((None, id))) => json(
            404,
            &api_version,
            error_body(&format!("No such container: {id}")),
        ),
        _ => json(404, &api_version, error_body("page not found")),
    }
}

/// An engine error body, `{"message":…}` and a newline, as the engine writes it.
fn error_body(message: &str) -> String {
    format!("{}\n", json!({ "message": message }))
}

/// The `/version` answer of a Docker 20.10 engine with API version `api_version`.
fn version_body(api_version: &str) -> String {
    json!({
        "Platform": {"Name": ""},
        "Components": [{
            "Name": "Engine",
            "Version": ENGINE_VERSION,
            "Details": {
                "ApiVersion": api_version,
                "Arch": "amd64",
                "BuildTime": "2026-01-01T00:00:00.000000000+00:00",
                "Experimental": "false",
                "GitCommit": "0000000",
                "GoVersion": "go1.19.8",
                "KernelVersion": "6.1.0",
                "MinAPIVersion": "1.12",
                "Os": "linux"
            }
        }],
        "Version": ENGINE_VERSION,
        "ApiVersion": api_version,
        "MinAPIVersion": "1.12",
        "GitCommit": "0000000",
        "GoVersion": "go1.19.8",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.1.0",
        "BuildTime": "2026-01-01T00:00:00.000000000+00:00"
    })
    .to_string()
}

/// An inspect answer of container `/web` around `state` (the JSON of its `State`), with
/// the other sections a Docker 20.10 engine sends beside it.
///
/// # Panics
///
/// When `state` is not JSON.
pub fn inspect_body(state: &str) -> String {
    let state: Value = serde_json::from_str(state).expect("the State is JSON");
    let id = "0123abcd".repeat(8);
    // Built in parts: one `json!` of all of it exceeds the macro's recursion limit.
    json!({
        "Id": id,
        "Created": "2026-01-01T09:59:58.000000000Z",
        "Path": "/bin/sleep",
        "Args": ["3600"],
        "State": state,
        "Image": format!("sha256:{}", "00".repeat(32)),
        "ResolvConfPath": format!("/var/lib/docker/containers/{id}/resolv.conf"),
        "HostnamePath": format!("/var/lib/docker/containers/{id}/hostname"),
        "HostsPath": format!("/var/lib/docker/containers/{id}/hosts"),
        "LogPath": format!("/var/lib/docker/containers/{id}/{id}-json.log"),
        "Name": "/web",
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config(),
        "GraphDriver": {
            "Data": {"MergedDir": format!("/var/lib/docker/overlay2/{id}/merged")},
            "Name": "overlay2"
        },
        "Mounts": [{
            "Type": "volume",
            "Name": "data",
            "Source": "/var/lib/docker/volumes/data/_data",
            "Destination": "/data",
            "Driver": "local",
            "Mode": "z",
            "RW": true,
            "Propagation": ""
        }],
        "Config": container_config(),
        "NetworkSettings": network_settings()
    })
    .to_string()
}

/// The `HostConfig` of an inspect answer.
fn host_config() -> Value {
    json!({
        "Binds": null,
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
        "NetworkMode": "default",
        "PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "AutoRemove": false,
        "CgroupnsMode": "host",
        "Dns": [],
        "IpcMode": "private",
        "Privileged": false,
        "ShmSize": 67108864,
        "Runtime": "runc",
        "ConsoleSize": [0, 0],
        "Isolation": "",
        "Memory": 0,
        "NanoCpus": 0,
        "PidsLimit": null,
        "Ulimits": [],
        "MaskedPaths": ["/proc/kcore", "/sys/firmware"],
        "ReadonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
    })
}

/// The `Config` of an inspect answer.
fn container_config() -> Value {
    json!({
        "Hostname": "0123abcd0123",
        "Domainname": "",
        "User": "",
        "Tty": false,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sleep", "3600"],
        "Image": "web:latest",
        "Volumes": null,
        "WorkingDir": "",
        "Entrypoint": null,
        "OnBuild": null,
        "Labels": {"com.example.role": "web"},
        "ExposedPorts": {"8080/tcp": {}}
    })
}

/// The `NetworkSettings` of an inspect answer: the default bridge network.
fn network_settings() -> Value {
    json!({
        "Bridge": "",
        "SandboxID": "5a".repeat(32),
        "Ports": {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
        "Gateway": "172.17.0.1",
        "IPAddress": "172.17.0.2",
        "IPPrefixLen": 16,
        "MacAddress": "02:42:ac:11:00:02",
        "Networks": {
            "bridge": {
                "IPAMConfig": null,
                "Links": null,
                "Aliases": null,
                "NetworkID": "9e".repeat(32),
                "Gateway": "172.17.0.1",
                "IPAddress": "172.17.0.2",
                "IPPrefixLen": 16,
                "MacAddress": "02:42:ac:11:00:02",
                "DriverOpts": null
            }
        }
    })
}

/// An inspect answer of a container in `status` (`running`, `exited`, ...) without a
/// healthcheck, its flags and times as the engine sets them for that status.
pub fn status_body(status: &str) -> String {
    let running = matches!(status, "running" | "paused" | "restarting");
    let finished = matches!(status, "exited" | "dead" | "removing");
    inspect_body(
        &json!({
            "Status": status,
            "Running": running,
            "Paused": status == "paused",
            "Restarting": status == "restarting",
            "OOMKilled": false,
            "Dead": status == "dead",
            "Pid": if running { 4242 } else { 0 },
            "ExitCode": if finished { 137 } else { 0 },
            "Error": "",
            "StartedAt": if status == "created" { ZERO_TIME } else { "2026-01-01T10:00:00.000000000Z" },
            "FinishedAt": if finished { "2026-01-01T11:00:00.000000000Z" } else { ZERO_TIME },
        })
        .to_string(),
    )
}

/// An inspect answer of a running container whose health is `health` (`starting`,
/// `healthy`, `unhealthy`): two health-log entries, the last printing `output` and
/// running 250 ms.
pub fn health_body(health: &str, output: &str) -> String {
    inspect_body(
        &json!({
            "Status": "running",
            "Running": true,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": 4242,
            "ExitCode": 0,
            "Error": "",
            "StartedAt": "2026-01-01T09:59:59.000000000Z",
            "FinishedAt": ZERO_TIME,
            "Health": {
                "Status": health,
                "FailingStreak": if health == "unhealthy" { 3 } else { 0 },
                "Log": [
                    {
                        "Start": "2026-01-01T10:00:00.000000000Z",
                        "End": "2026-01-01T10:00:00.100000000Z",
                        "ExitCode": 1,
                        "Output": "older"
                    },
                    {
                        "Start": "2026-01-01T10:00:01.000000000Z",
                        "End": "2026-01-01T10:00:01.250000000Z",
                        "ExitCode": if health == "healthy" { 0 } else { 1 },
                        "Output": output
                    }
                ]
            }
        })
        .to_string(),
    )
}

/// The engine's "never": Go's zero `time.Time`.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
