//! The bollard-backed [`DockerApi`]: where the engine is (`unix://`, `tcp://`,
//! `DOCKER_HOST`), the lazily created client with its negotiated API version, and the
//! inspect request that decodes only `State`.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use bollard::{API_DEFAULT_VERSION, ClientVersion, Docker, errors::Error as BollardError};
use bytes::Bytes;
use health_types::{CheckKind, ConfigError, ProbeError};
use http::{
    Request, StatusCode,
    header::{ACCEPT, HOST, USER_AGENT},
};
use http_body_util::Empty;
use serde::Deserialize;
use tokio::net::UnixStream;
use url::Url;

use super::{ContainerHealth, ContainerState, DockerApi, HealthLogEntry};
use crate::{
    failure::{
        Failure, Side, classify_chain, classify_io, timed_out_detail, truncate, unsupported_scheme,
    },
    net::{self, USER_AGENT_VALUE},
};

/// The engine used when neither a host nor `DOCKER_HOST` is given.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// The schemes of a Docker host.
const HOST_SCHEMES: &[&str] = &["unix", "tcp"];
/// The port of a `tcp://` host without one (the engine's plain-HTTP port).
const DEFAULT_TCP_PORT: u16 = 2375;
/// The largest inspect answer read. Answers are a few KiB; many mounts, labels and
/// five health-log entries of 4 KiB each stay far below this.
const MAX_INSPECT_ANSWER: usize = 4 * 1024 * 1024;
/// How much of an engine's error message goes into a detail.
const MAX_ERROR_DETAIL: usize = 200;

/// Where the Docker engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket at this absolute path.
    Unix(String),
    /// Plain HTTP on TCP.
    Tcp { host: String, port: u16 },
}

impl Endpoint {
    /// Parses `unix:///path/to/socket` or `tcp://host[:port]` (port 2375 by default).
    pub(crate) fn parse(host: &str) -> Result<Endpoint, ConfigError> {
        if let Some(path) = host.strip_prefix("unix://") {
            return if path.starts_with('/') {
                Ok(Endpoint::Unix(path.to_owned()))
            } else {
                Err(ConfigError::url(
                    host,
                    "a unix:// host needs an absolute socket path (like unix:///var/run/docker.sock)",
                ))
            };
        }
        let url = Url::parse(host)
            .map_err(|err| ConfigError::url(host, format!("not a docker host: {err}")))?;
        if url.scheme() != "tcp" {
            return Err(unsupported_scheme(&url, HOST_SCHEMES));
        }
        let name = net::url_host(&url).ok_or_else(|| ConfigError::url(host, "no host"))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(ConfigError::url(
                host,
                "a tcp:// docker host has no path or query",
            ));
        }
        Ok(Endpoint::Tcp {
            host: name,
            port: url.port().unwrap_or(DEFAULT_TCP_PORT),
        })
    }

    /// The engine of `explicit`, else of a non-empty `env` (`DOCKER_HOST`), else
    /// [`DEFAULT_DOCKER_HOST`].
    pub(crate) fn resolve(
        explicit: Option<&str>,
        env: Option<&str>,
    ) -> Result<Endpoint, ConfigError> {
        let host = explicit
            .or(env.filter(|env| !env.is_empty()))
            .unwrap_or(DEFAULT_DOCKER_HOST);
        Endpoint::parse(host)
    }

    /// [`resolve`](Self::resolve) with this process's `DOCKER_HOST`.
    pub(crate) fn from_environment(explicit: Option<&str>) -> Result<Endpoint, ConfigError> {
        let env = std::env::var("DOCKER_HOST").ok();
        Endpoint::resolve(explicit, env.as_deref())
    }

    /// The host of a display URL: `host:port` for TCP (IPv6 in brackets), `localhost`
    /// for a unix socket (a path cannot be a URL host).
    pub(crate) fn display_host(&self) -> String {
        match self {
            Endpoint::Unix(_) => "localhost".to_owned(),
            Endpoint::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Endpoint::Tcp { host, port } => format!("{host}:{port}"),
        }
    }
}

/// `name` without a leading `/`, when it is a Docker container id or name (a letter or
/// digit, then letters, digits, `_`, `.`, `-`). Anything else could not be put into the
/// inspect path as it is.
pub(crate) fn container_name(name: &str) -> Result<String, ConfigError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let valid = bare.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(bare.to_owned())
    } else {
        Err(ConfigError::Invalid {
            key: "container",
            value: format!("{name:?}"),
            reason: "not a container id or name (a letter or digit, then letters, digits, `_`, `.` or `-`)"
                .to_owned(),
        })
    }
}

/// The Docker Engine API through [bollard](https://docs.rs/bollard), on a unix socket or
/// plain TCP.
///
/// - The client is created on the first [`inspect_state`](DockerApi::inspect_state),
///   with the API version negotiated against the engine's `GET /version` (bollard's
///   `negotiate_version`: the lower of the engine's and bollard's). After any failure,
///   and after a call its caller cut short, it is dropped, so the next call connects and
///   negotiates afresh (the engine may have been restarted or upgraded meanwhile).
/// - The inspect itself, `GET /v<version>/containers/<id>/json`, is one HTTP/1.1 exchange
///   on a fresh connection to the same socket, and only `State` is decoded from the
///   answer. bollard's typed `inspect_container` decodes the whole body, and a field its
///   generated models do not expect anywhere in it (a new enum value in `HostConfig`, a
///   type the engine changed) would fail the check of a perfectly healthy container.
///   Driving the exchange inside the call also makes it cancel safe: dropping it closes
///   its connection and leaves no task behind.
/// - Engine failures become [`ProbeError`]s prefixed `docker: `: HTTP 404 (no such
///   container) is kind `not_found`, another status `status`, a body without a readable
///   `State.Status` `protocol`, and a socket failure the kind of its cause.
///
/// One `BollardDockerApi` can serve the probes of every container of its engine.
#[derive(Debug)]
pub struct BollardDockerApi {
    endpoint: Endpoint,
    timeout: Duration,
    client: Mutex<Option<Client>>,
}

/// A connected client: bollard's, with the negotiated API version.
#[derive(Clone, Debug)]
struct Client {
    docker: Docker,
}

impl BollardDockerApi {
    /// An API for the engine at `host` (`unix:///path` or `tcp://host:port`; default:
    /// `DOCKER_HOST`, else [`DEFAULT_DOCKER_HOST`]) whose calls end after `timeout`. Does
    /// not connect.
    ///
    /// Fails when the host is not a `unix://` or `tcp://` URL.
    pub fn try_new(host: Option<&str>, timeout: Duration) -> Result<Self, ConfigError> {
        Ok(BollardDockerApi {
            endpoint: Endpoint::from_environment(host)?,
            timeout,
            client: Mutex::new(None),
        })
    }

    fn cached(&self) -> Option<Client> {
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn store(&self, client: Option<Client>) {
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = client;
    }

    /// Creates bollard's client and negotiates the API version.
    async fn connect(&self) -> Result<Client, ProbeError> {
        // bollard counts its request timeout in whole seconds; round up so that a
        // sub-second timeout is not zero. The caller's own deadline is the exact one.
        let seconds = self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0);
        let docker = match &self.endpoint {
            Endpoint::Unix(path) => Docker::connect_with_unix(path, seconds, API_DEFAULT_VERSION),
            Endpoint::Tcp { .. } => Docker::connect_with_http(
                &format!("tcp://{}", self.endpoint.display_host()),
                seconds,
                API_DEFAULT_VERSION,
            ),
        }
        .map_err(|err| bollard_error(&err))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|err| bollard_error(&err))?;
        Ok(Client { docker })
    }

    /// `GET /v<version>/containers/<container>/json`, decoding only `State`.
    async fn inspect(
        &self,
        client: &Client,
        container: &str,
    ) -> Result<ContainerState, ProbeError> {
        let ClientVersion {
            major_version,
            minor_version,
        } = client.docker.client_version();
        let host = match &self.endpoint {
            // Any name does for a socket; the engine ignores it.
            Endpoint::Unix(_) => "localhost".to_owned(),
            Endpoint::Tcp { .. } => self.endpoint.display_host(),
        };
        let request = Request::get(format!(
            "/v{major_version}.{minor_version}/containers/{container}/json"
        ))
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|err| ProbeError::new(CheckKind::Internal, format!("docker: request: {err}")))?;
        let answer = match &self.endpoint {
            Endpoint::Unix(path) => match UnixStream::connect(path).await {
                Ok(socket) => net::exchange(socket, request, MAX_INSPECT_ANSWER).await,
                Err(err) => Err(unix_failure(path, &err)),
            },
            Endpoint::Tcp { host, port } => match net::resolve_and_connect(host, *port).await {
                Ok(socket) => net::exchange(socket, request, MAX_INSPECT_ANSWER).await,
                Err(failure) => Err(failure),
            },
        };
        let (status, body, truncated) =
            answer.map_err(|failure| failure.prefixed("docker: ").into_error())?;
        interpret(status, &body, truncated)
    }
}

#[async_trait]
impl DockerApi for BollardDockerApi {
    async fn inspect_state(&self, container: &str) -> Result<ContainerState, ProbeError> {
        let container = container_name(container)
            .map_err(|err| ProbeError::new(CheckKind::Config, err.to_string()))?;
        // A call that fails, or is cut by its caller's deadline (a hanging engine),
        // drops the client: the next call connects and negotiates afresh.
        let mut reset = ResetOnDrop {
            client: &self.client,
            armed: true,
        };
        let call = async {
            let client = match self.cached() {
                Some(client) => client,
                None => {
                    let client = self.connect().await?;
                    self.store(Some(client.clone()));
                    client
                }
            };
            self.inspect(&client, &container).await
        };
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ProbeError::new(
                CheckKind::Timeout,
                format!("docker: {}", timed_out_detail(self.timeout)),
            )),
        };
        reset.armed = outcome.is_err();
        outcome
    }
}

/// Drops the cached client when dropped armed: on a failure, and when the call is
/// dropped before it finished.
struct ResetOnDrop<'a> {
    client: &'a Mutex<Option<Client>>,
    armed: bool,
}

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

/// A failure to connect to the engine's socket at `path`.
fn unix_failure(path: &str, err: &std::io::Error) -> Failure {
    let failure = classify_io(err);
    match failure.side {
        // Refused, reset: the engine's side; the detail reads like a TCP one.
        Side::Target => failure,
        // No such socket, permission denied: say which socket.
        Side::Checker => Failure::checker(failure.kind, format!("{path}: {err}")),
    }
}

/// A bollard error (client creation or version negotiation) as an API failure.
fn bollard_error(err: &BollardError) -> ProbeError {
    let (kind, detail) = match err {
        BollardError::SocketNotFoundError(path) => {
            (CheckKind::Io, format!("socket {path} not found"))
        }
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => (
            if *status_code == 404 {
                CheckKind::NotFound
            } else {
                CheckKind::Status
            },
            format!(
                "HTTP {status_code}: {}",
                truncate(message, MAX_ERROR_DETAIL)
            ),
        ),
        BollardError::RequestTimeoutError => (CheckKind::Timeout, "timed out".to_owned()),
        BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. }
        | BollardError::APIVersionParseError {} => {
            (CheckKind::Protocol, format!("bad version answer: {err}"))
        }
        _ => {
            let failure = classify_chain(err);
            (failure.kind, failure.detail)
        }
    };
    ProbeError::new(kind, format!("docker: {detail}"))
}

/// The engine's answer to an inspect.
fn interpret(
    status: StatusCode,
    body: &[u8],
    truncated: bool,
) -> Result<ContainerState, ProbeError> {
    if !status.is_success() {
        let kind = if status == StatusCode::NOT_FOUND {
            CheckKind::NotFound
        } else {
            CheckKind::Status
        };
        return Err(ProbeError::new(
            kind,
            format!("docker: HTTP {}: {}", status.as_u16(), engine_message(body)),
        ));
    }
    if truncated {
        return Err(ProbeError::new(
            CheckKind::Protocol,
            "docker: inspect answer larger than 4 MiB",
        ));
    }
    decode_state(body)
}

/// The `message` of an engine's JSON error, else the start of the body.
fn engine_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct EngineError {
        message: String,
    }
    match serde_json::from_slice::<EngineError>(body) {
        Ok(err) => truncate(&err.message, MAX_ERROR_DETAIL),
        Err(_) => truncate(&String::from_utf8_lossy(body), MAX_ERROR_DETAIL),
    }
}

/// The part of an inspect answer that is decoded; everything else is only skipped over.
#[derive(Deserialize)]
struct InspectAnswer {
    #[serde(rename = "State")]
    state: Option<RawState>,
}

#[derive(Deserialize)]
struct RawState {
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Health")]
    health: Option<RawHealth>,
}

#[derive(Deserialize)]
struct RawHealth {
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Log")]
    log: Option<Vec<RawLogEntry>>,
}

#[derive(Deserialize)]
struct RawLogEntry {
    #[serde(rename = "Start")]
    start: Option<String>,
    #[serde(rename = "End")]
    end: Option<String>,
    #[serde(rename = "Output")]
    output: Option<String>,
}

/// Decodes `State` from an inspect answer; other fields are skipped, whatever they hold.
pub(crate) fn decode_state(body: &[u8]) -> Result<ContainerState, ProbeError> {
    let answer: InspectAnswer = serde_json::from_slice(body).map_err(|err| {
        ProbeError::new(
            CheckKind::Protocol,
            format!("docker: bad inspect answer: {err}"),
        )
    })?;
    let state = answer
        .state
        .and_then(|state| {
            let status = state.status.filter(|status| !status.is_empty())?;
            Some((status, state.health))
        })
        .ok_or_else(|| {
            ProbeError::new(
                CheckKind::Protocol,
                "docker: inspect answer has no State.Status",
            )
        })?;
    let (status, health) = state;
    let health = health.map(|health| ContainerHealth {
        status: health.status.unwrap_or_default(),
        last_log: health
            .log
            .and_then(|log| log.into_iter().last())
            .map(|entry| HealthLogEntry {
                output: entry.output.unwrap_or_default(),
                duration: run_time(entry.start.as_deref(), entry.end.as_deref()),
            }),
    });
    Ok(ContainerState { status, health })
}

/// `end − start` of a health-log entry; `None` when a time is missing, unreadable (the
/// zero time `0001-01-01T00:00:00Z` included) or the end comes first.
fn run_time(start: Option<&str>, end: Option<&str>) -> Option<Duration> {
    let start = timestamp(start?)?;
    let end = timestamp(end?)?;
    end.duration_since(start).ok()
}

/// An RFC 3339 time as the engine writes it: `2024-05-01T10:00:00.123456789Z`, or with
/// the daemon's offset, `2024-05-01T12:00:00.123456789+02:00`.
fn timestamp(text: &str) -> Option<SystemTime> {
    if text.ends_with(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(text).ok();
    }
    let split = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..split)?, text.get(split..)?);
    let (sign, hours_minutes) = match offset.split_at_checked(1)? {
        ("+", rest) => (true, rest),
        ("-", rest) => (false, rest),
        _ => return None,
    };
    let (hours, minutes) = hours_minutes.split_once(':')?;
    let offset =
        Duration::from_secs(hours.parse::<u64>().ok()? * 3600 + minutes.parse::<u64>().ok()? * 60);
    let local = humantime::parse_rfc3339_weak(local).ok()?;
    // Local time = UTC + offset.
    if sign {
        local.checked_sub(offset)
    } else {
        local.checked_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_unix_sockets_or_tcp() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".to_owned())
        );
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.2:2376").unwrap(),
            Endpoint::Tcp {
                host: "10.0.0.2".to_owned(),
                port: 2376
            }
        );
        let v6 = Endpoint::parse("tcp://[::1]").unwrap();
        assert_eq!(v6.display_host(), "[::1]:2375");
        let err = Endpoint::parse("ssh://docker.test")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"ssh\"") && err.contains("unix, tcp"),
            "{err}"
        );
        let err = Endpoint::parse("unix://docker.sock")
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");
        let err = Endpoint::parse("tcp://10.0.0.2:2375/v1.41")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no path"), "{err}");
        assert!(Endpoint::parse("/var/run/docker.sock").is_err());
    }

    #[test]
    fn an_explicit_host_beats_docker_host_which_beats_the_default() {
        let tcp = Endpoint::Tcp {
            host: "h".to_owned(),
            port: 1,
        };
        assert_eq!(
            Endpoint::resolve(Some("tcp://h:1"), Some("unix:///x.sock")).unwrap(),
            tcp
        );
        assert_eq!(
            Endpoint::resolve(None, Some("unix:///x.sock")).unwrap(),
            Endpoint::Unix("/x.sock".to_owned())
        );
        for env in [None, Some("")] {
            assert_eq!(
                Endpoint::resolve(None, env).unwrap(),
                Endpoint::Unix("/var/run/docker.sock".to_owned())
            );
        }
    }

    #[test]
    fn container_names_are_checked_and_lose_a_leading_slash() {
        assert_eq!(container_name("/web-1").unwrap(), "web-1");
        assert_eq!(container_name("a1b2c3").unwrap(), "a1b2c3");
        assert_eq!(container_name("my_app.v2").unwrap(), "my_app.v2");
        for bad in ["", "/", "-x", "a/b", "a b", "a?b", "../x", "ä"] {
            assert!(container_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_state_is_decoded() {
        // Garbage in every other field, of every type, is skipped over.
        let body = br#"{"Id": 5, "HostConfig": {"Ulimits": [{"Hard": "x"}], "RestartPolicy": {"Name": "sometimes"}},
            "Mounts": "none", "Config": null,
            "State": {"Status": "running", "Pid": "not a number", "FailingStreak": [],
                "Health": {"Status": "healthy", "FailingStreak": "x", "Log": [
                    {"Start": "2024-05-01T10:00:00Z", "End": "2024-05-01T10:00:01Z", "ExitCode": 1, "Output": "old"},
                    {"Start": "2024-05-01T10:00:05.100Z", "End": "2024-05-01T10:00:05.350Z", "ExitCode": 0, "Output": "ok\n"}]}}}"#;
        let state = decode_state(body).unwrap();
        assert_eq!(
            state,
            ContainerState {
                status: "running".to_owned(),
                health: Some(ContainerHealth {
                    status: "healthy".to_owned(),
                    last_log: Some(HealthLogEntry {
                        output: "ok\n".to_owned(),
                        duration: Some(Duration::from_millis(250)),
                    }),
                }),
            }
        );
    }

    #[test]
    fn a_body_without_a_readable_state_is_a_protocol_error() {
        for body in [
            &b"not json"[..],
            b"{\"State\": {\"Status\": 5}}",
            b"{\"Id\": \"x\"}",
            b"{\"State\": {}}",
            b"{\"State\": {\"Status\": \"\"}}",
            b"[]",
        ] {
            let err = decode_state(body).unwrap_err();
            assert_eq!(err.kind(), CheckKind::Protocol, "{err}");
            assert!(err.detail().starts_with("docker: "), "{err}");
        }
        let state = decode_state(
            br#"{"State": {"Status": "running", "Health": {"Status": "starting", "Log": null}}}"#,
        )
        .unwrap();
        assert_eq!(state.health.unwrap().last_log, None);
    }

    #[test]
    fn error_statuses_carry_the_engines_message() {
        let err = interpret(
            StatusCode::NOT_FOUND,
            br#"{"message":"No such container: web"}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(err.kind(), CheckKind::NotFound);
        assert_eq!(err.detail(), "docker: HTTP 404: No such container: web");
        let err = interpret(StatusCode::INTERNAL_SERVER_ERROR, b"boom", false).unwrap_err();
        assert_eq!(
            (err.kind(), err.detail()),
            (CheckKind::Status, "docker: HTTP 500: boom")
        );
        let err = interpret(StatusCode::OK, b"{", true).unwrap_err();
        assert_eq!(err.kind(), CheckKind::Protocol);
    }

    #[test]
    fn run_times_read_fractions_and_offsets() {
        let d = |start, end| run_time(Some(start), Some(end));
        assert_eq!(
            d("2024-05-01T10:00:00.000000001Z", "2024-05-01T10:00:00.5Z"),
            Some(Duration::from_nanos(499_999_999))
        );
        assert_eq!(
            d("2024-05-01T12:00:00+02:00", "2024-05-01T10:00:03Z"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            d(
                "2024-05-01T09:59:59.75-00:30",
                "2024-05-01T10:30:00.25-00:30"
            ),
            Some(Duration::from_secs(1800) + Duration::from_millis(500))
        );
        assert_eq!(d("2024-05-01T10:00:01Z", "2024-05-01T10:00:00Z"), None);
        assert_eq!(d("0001-01-01T00:00:00Z", "2024-05-01T10:00:00Z"), None);
        assert_eq!(d("yesterday", "2024-05-01T10:00:00Z"), None);
        assert_eq!(run_time(None, Some("2024-05-01T10:00:00Z")), None);
    }
}
