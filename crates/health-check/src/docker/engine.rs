//! The bollard-backed [`DockerApi`]: where the engine is (`unix://`, `tcp://`,
//! `DOCKER_HOST`), the lazily created client with its negotiated API version, and the
//! mapping of bollard's typed inspect answer and errors to ours.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use bollard::{
    API_DEFAULT_VERSION, ClientVersion, Docker,
    errors::Error as BollardError,
    models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthcheckResult},
};
use health_types::{CheckKind, ConfigError, ProbeError, timed_out_after, truncate};
use http::{HeaderValue, Request, Uri, header::USER_AGENT, uri::PathAndQuery};
use url::Url;

use super::{ContainerHealth, ContainerState, DockerApi, HealthLogEntry};
use crate::{
    failure::{Side, classify_chain},
    net::{self, Family, USER_AGENT_VALUE},
};

/// The engine used when neither a host nor `DOCKER_HOST` is given.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// The schemes of a Docker host.
const HOST_SCHEMES: &[&str] = &["unix", "tcp"];
/// The port of a `tcp://` host without one (the engine's plain-HTTP port).
const DEFAULT_TCP_PORT: u16 = 2375;
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
            // Not `health_types::unsupported_scheme`: `unix` is no target scheme.
            return Err(ConfigError::url(
                host,
                format!(
                    "unsupported scheme {:?}; supported schemes: {}",
                    url.scheme(),
                    HOST_SCHEMES.join(", ")
                ),
            ));
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
/// - The inspect is bollard's `inspect_container`, `GET /v<version>/containers/<id>/json`
///   with `User-Agent: healthd/<version>` (bollard 0.21 drops the version from its
///   paths; this client puts the negotiated one back, so the engine answers in a
///   version bollard's models know). Of the typed answer only `State` is read. bollard
///   decodes the whole body into its generated models, so an answer they cannot read
///   anywhere (an enum value its API version 1.53 does not know, a field whose type the
///   engine changed) fails the check as a `protocol` error, even for a healthy
///   container; fields they do not know are skipped.
/// - Engine failures become [`ProbeError`]s prefixed `docker: `: HTTP 404 (no such
///   container) is kind `not_found`, another status `status` (`docker: HTTP <code>:
///   <message>`), a body bollard cannot decode or one without a `State.Status`
///   `protocol`, no answer in time `timeout`, a `tcp://` host whose name does not
///   resolve `dns` (checked when the client is created), and a socket failure the kind
///   of its cause; our own shortage (out of descriptors) is kind `local`, detail
///   `local: …` without the prefix.
/// - Every call ends after the `timeout` given to [`try_new`](Self::try_new), body
///   included (bollard's own timeout, in whole seconds, covers only the answer's head).
///   The answer's size is not capped: bollard reads the whole body, and the engine is
///   trusted as far as that goes.
///
/// One `BollardDockerApi` can serve the probes of every container of its engine.
///
/// # Cancel safety
///
/// Dropping a call before it finished drops bollard's request and the cached client.
/// Unlike the HTTP probes' exchange, which runs inside the check's own future, bollard's
/// client (hyper-util's pooled client) drives each connection on a task it spawns. So a
/// dropped call leaves that task behind for a moment: dropping the request wakes it, it
/// sees the request gone, closes its socket and ends. bollard keeps no idle connections
/// (`pool_max_idle_per_host(0)`), so no socket outlives a call otherwise.
#[derive(Debug)]
pub struct BollardDockerApi {
    endpoint: Endpoint,
    timeout: Duration,
    /// bollard's client with its negotiated API version, once created.
    client: Mutex<Option<Docker>>,
}

/// Which of the engine's answers a failure came with.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// `GET /version`, the API-version negotiation.
    Version,
    /// `GET /containers/<id>/json`.
    Inspect,
}

impl Call {
    fn answer(self) -> &'static str {
        match self {
            Call::Version => "version answer",
            Call::Inspect => "inspect answer",
        }
    }
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

    fn cached(&self) -> Option<Docker> {
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn store(&self, client: Option<Docker>) {
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = client;
    }

    /// Creates bollard's client and negotiates the API version.
    async fn connect(&self) -> Result<Docker, ProbeError> {
        // bollard counts its request timeout in whole seconds; round up so that a
        // sub-second timeout is not zero. The caller's own deadline is the exact one.
        let seconds = self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0);
        if let Endpoint::Tcp { host, port } = &self.endpoint {
            // bollard's connector reports a name that does not resolve as a bare I/O
            // error; resolving it here first makes it the `dns` failure every other
            // probe reports. A client re-created after a failure resolves again.
            let deadline = tokio::time::Instant::now() + self.timeout;
            net::resolve(host, *port, Family::Any, deadline)
                .await
                .map_err(|failure| failure.prefixed("docker: ").into_error())?;
        }
        let docker = match &self.endpoint {
            Endpoint::Unix(path) => Docker::connect_with_unix(path, seconds, API_DEFAULT_VERSION),
            Endpoint::Tcp { .. } => Docker::connect_with_http(
                &format!("tcp://{}", self.endpoint.display_host()),
                seconds,
                API_DEFAULT_VERSION,
            ),
        }
        .map_err(|err| self.failure(&err, Call::Version))?
        .with_request_modifier(named);
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|err| self.failure(&err, Call::Version))?;
        let prefix = api_prefix(&docker.client_version());
        Ok(docker.with_request_modifier(move |request| versioned(named(request), &prefix)))
    }

    /// A bollard error of `call` as an API failure: `docker: ` and what went wrong.
    fn failure(&self, err: &BollardError, call: Call) -> ProbeError {
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
                    truncate(message.trim(), MAX_ERROR_DETAIL)
                ),
            ),
            BollardError::RequestTimeoutError => (CheckKind::Timeout, "timed out".to_owned()),
            // serde's own words, without bollard's "Failed to deserialize JSON".
            BollardError::JsonDataError { message, .. } => (
                CheckKind::Protocol,
                format!(
                    "bad {}: {}",
                    call.answer(),
                    truncate(message.trim(), MAX_ERROR_DETAIL)
                ),
            ),
            BollardError::JsonSerdeError { .. } | BollardError::APIVersionParseError {} => {
                (CheckKind::Protocol, format!("bad {}: {err}", call.answer()))
            }
            _ => {
                // bollard's `#[error(transparent)]` variants hide their own error from
                // the source chain (only its sources follow), so classify that one.
                let failure = match err {
                    BollardError::IOError { err } => classify_chain(err),
                    BollardError::HyperResponseError { err } => classify_chain(err),
                    _ => classify_chain(err),
                };
                match (&self.endpoint, failure.side) {
                    // Out of descriptors: about this process, not the engine.
                    _ if failure.kind == CheckKind::Local => return failure.into_error(),
                    // No such socket, permission denied: say which socket. Refused and
                    // reset are the engine's side and read like a TCP failure.
                    (Endpoint::Unix(path), Side::Checker) => {
                        (failure.kind, format!("{path}: {}", failure.detail))
                    }
                    _ => (failure.kind, failure.detail),
                }
            }
        };
        ProbeError::new(kind, format!("docker: {detail}"))
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
            let docker = match self.cached() {
                Some(docker) => docker,
                None => {
                    let docker = self.connect().await?;
                    self.store(Some(docker.clone()));
                    docker
                }
            };
            let answer = docker
                .inspect_container(&container, None)
                .await
                .map_err(|err| self.failure(&err, Call::Inspect))?;
            container_state(answer)
        };
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ProbeError::new(
                CheckKind::Timeout,
                format!("docker: {}", timed_out_after(self.timeout)),
            )),
        };
        reset.armed = outcome.is_err();
        outcome
    }
}

/// `request` with `User-Agent: healthd/<version>`: the engine's logs name the checker,
/// as the HTTP probes' targets see it.
fn named<B>(mut request: Request<B>) -> Request<B> {
    request
        .headers_mut()
        .insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    request
}

/// `/v1.41` for API version 1.41.
fn api_prefix(version: &ClientVersion) -> String {
    format!("/v{}.{}", version.major_version, version.minor_version)
}

/// `request` under the negotiated API version `prefix` (`/v1.41`).
///
/// bollard 0.21 builds `<host>/v<version>` and then `Url::join`s the absolute API path
/// onto it, which replaces the whole path: its requests go out unversioned, and the
/// engine answers them in its own newest API version, which may hold values bollard's
/// models do not know. A path that already has a version (a bollard that keeps it) is
/// left alone.
fn versioned<B>(mut request: Request<B>, prefix: &str) -> Request<B> {
    let Some(path) = request.uri().path_and_query() else {
        return request;
    };
    let has_version = path
        .path()
        .strip_prefix("/v")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    if has_version {
        return request;
    }
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(format!("{prefix}{path}")).ok();
    // Both parts come from a valid URI and a path of ASCII digits and dots; should that
    // ever fail, the request goes out as bollard built it.
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

/// Drops the cached client when dropped armed: on a failure, and when the call is
/// dropped before it finished.
struct ResetOnDrop<'a> {
    client: &'a Mutex<Option<Docker>>,
    armed: bool,
}

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

/// The `State` of an inspect answer, as far as a health check reads it. An answer
/// without a `State.Status` (or an empty one) is a `protocol` error: nothing can be
/// said about the container.
pub(crate) fn container_state(
    answer: ContainerInspectResponse,
) -> Result<ContainerState, ProbeError> {
    let state = answer.state.unwrap_or_default();
    let status = state
        .status
        .filter(|status| *status != ContainerStateStatusEnum::EMPTY)
        .ok_or_else(|| {
            ProbeError::new(
                CheckKind::Protocol,
                "docker: inspect answer has no State.Status",
            )
        })?;
    let health = state.health.map(|health| ContainerHealth {
        // `""` for an empty or missing status, which `assess` reads as no healthcheck.
        status: health
            .status
            .map(|status| status.as_ref().to_owned())
            .unwrap_or_default(),
        // The engine keeps the log oldest first.
        last_log: health
            .log
            .and_then(|log| log.into_iter().last())
            .map(log_entry),
    });
    Ok(ContainerState {
        status: status.as_ref().to_owned(),
        health,
    })
}

/// One health-log entry. The workspace builds bollard without its `chrono` and `time`
/// features, so `Start` and `End` arrive as the engine's strings and [`run_time`]
/// applies our own rules to them (offsets, nanoseconds, the zero time).
fn log_entry(run: HealthcheckResult) -> HealthLogEntry {
    HealthLogEntry {
        output: run.output.unwrap_or_default(),
        duration: run_time(run.start.as_deref(), run.end.as_deref()),
    }
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
    use bollard::models::HealthStatusEnum;

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

    fn api() -> BollardDockerApi {
        BollardDockerApi::try_new(Some("unix:///run/docker.sock"), Duration::from_secs(1)).unwrap()
    }

    /// What the client makes of an inspect body: bollard's decoding (as its
    /// `decode_response` does it: serde's data and syntax errors become `JsonDataError`),
    /// then ours.
    fn decode(body: &[u8]) -> Result<ContainerState, ProbeError> {
        match serde_json::from_slice::<ContainerInspectResponse>(body) {
            Ok(answer) => container_state(answer),
            Err(err) => Err(api().failure(
                &BollardError::JsonDataError {
                    message: err.to_string(),
                    column: err.column(),
                },
                Call::Inspect,
            )),
        }
    }

    fn health_run(start: &str, end: &str, output: &str) -> HealthcheckResult {
        HealthcheckResult {
            start: Some(start.to_owned()),
            end: Some(end.to_owned()),
            exit_code: Some(0),
            output: Some(output.to_owned()),
        }
    }

    #[test]
    fn state_status_health_and_the_last_run_are_mapped() {
        let answer = ContainerInspectResponse {
            id: Some("0123abcd".to_owned()),
            name: Some("/web".to_owned()),
            state: Some(bollard::models::ContainerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                running: Some(true),
                pid: Some(42),
                health: Some(bollard::models::Health {
                    status: Some(HealthStatusEnum::HEALTHY),
                    failing_streak: Some(0),
                    log: Some(vec![
                        health_run("2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z", "old"),
                        health_run(
                            "2024-05-01T10:00:05.100Z",
                            "2024-05-01T10:00:05.350Z",
                            "ok\n",
                        ),
                    ]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            container_state(answer).unwrap(),
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
    fn every_status_keeps_the_engines_word() {
        use ContainerStateStatusEnum as S;
        for (status, word) in [
            (S::CREATED, "created"),
            (S::RUNNING, "running"),
            (S::PAUSED, "paused"),
            (S::RESTARTING, "restarting"),
            (S::REMOVING, "removing"),
            (S::EXITED, "exited"),
            (S::DEAD, "dead"),
            (S::STOPPING, "stopping"),
        ] {
            let answer = ContainerInspectResponse {
                state: Some(bollard::models::ContainerState {
                    status: Some(status),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let state = container_state(answer).unwrap();
            assert_eq!((state.status.as_str(), state.health), (word, None));
        }
    }

    #[test]
    fn a_body_without_a_readable_state_is_a_protocol_error() {
        let unreadable: [&[u8]; 6] = [
            b"not json",
            b"{\"State\": {\"Status\": 5}}",
            b"{\"Id\": \"x\"}",
            b"{\"State\": {}}",
            b"{\"State\": {\"Status\": \"\"}}",
            b"[]",
        ];
        for err in unreadable.map(|body| decode(body).unwrap_err()) {
            assert_eq!(err.kind(), CheckKind::Protocol, "{err}");
            assert!(err.detail().starts_with("docker: "), "{err}");
        }
        let err = decode(b"{\"State\": {\"Status\": 5}}").unwrap_err();
        assert!(
            err.detail().starts_with("docker: bad inspect answer: "),
            "{err}"
        );
        let state = decode(
            br#"{"State": {"Status": "running", "Health": {"Status": "starting", "Log": null}}}"#,
        )
        .unwrap();
        assert_eq!(state.health.unwrap().last_log, None);
    }

    #[test]
    fn error_statuses_carry_the_engines_message() {
        let server = |status_code, message: &str| BollardError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        };
        let err = api().failure(&server(404, "No such container: web"), Call::Inspect);
        assert_eq!(err.kind(), CheckKind::NotFound);
        assert_eq!(err.detail(), "docker: HTTP 404: No such container: web");
        let err = api().failure(&server(500, "boom"), Call::Inspect);
        assert_eq!(
            (err.kind(), err.detail()),
            (CheckKind::Status, "docker: HTTP 500: boom")
        );
        let err = api().failure(&BollardError::APIVersionParseError {}, Call::Version);
        assert_eq!(err.kind(), CheckKind::Protocol);
        assert!(
            err.detail().starts_with("docker: bad version answer: "),
            "{err}"
        );
        let err = api().failure(&BollardError::RequestTimeoutError, Call::Inspect);
        assert_eq!(
            (err.kind(), err.detail()),
            (CheckKind::Timeout, "docker: timed out")
        );
    }

    #[test]
    fn socket_errors_take_their_causes_kind_and_name_a_local_socket() {
        let io = |kind| BollardError::IOError {
            err: std::io::Error::from(kind),
        };
        let err = api().failure(&io(std::io::ErrorKind::ConnectionRefused), Call::Inspect);
        assert_eq!(
            (err.kind(), err.detail()),
            (CheckKind::Refused, "docker: connection refused")
        );
        let err = api().failure(&io(std::io::ErrorKind::PermissionDenied), Call::Version);
        assert_eq!(err.kind(), CheckKind::Io);
        assert!(
            err.detail().starts_with("docker: /run/docker.sock: "),
            "{err}"
        );
        let err = api().failure(
            &BollardError::SocketNotFoundError("/run/docker.sock".to_owned()),
            Call::Version,
        );
        assert_eq!(
            (err.kind(), err.detail()),
            (CheckKind::Io, "docker: socket /run/docker.sock not found")
        );
    }

    #[test]
    fn requests_go_out_under_the_negotiated_version_and_name_the_checker() {
        let request = |uri: &str| named(Request::get(uri).body(()).unwrap());
        let unix = "unix://2f72756e2f646f636b65722e736f636b/containers/web/json";
        let sent = versioned(request(unix), "/v1.41");
        assert_eq!(
            sent.uri().to_string(),
            "unix://2f72756e2f646f636b65722e736f636b/v1.41/containers/web/json"
        );
        assert_eq!(sent.headers()[USER_AGENT], USER_AGENT_VALUE);
        let sent = versioned(request("http://10.0.0.2:2375/version?x=1"), "/v1.41");
        assert_eq!(
            sent.uri().to_string(),
            "http://10.0.0.2:2375/v1.41/version?x=1"
        );
        let kept = "http://10.0.0.2:2375/v1.53/containers/web/json";
        assert_eq!(versioned(request(kept), "/v1.41").uri().to_string(), kept);
        assert_eq!(
            api_prefix(&ClientVersion {
                major_version: 1,
                minor_version: 41
            }),
            "/v1.41"
        );
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
