//! The Docker probe: a container's state and healthcheck, read from the Docker Engine
//! API through the narrow [`DockerApi`] port, with an optional fallback probe (SPEC §5).

pub(crate) mod engine;

use std::{fmt::Debug, sync::Arc, time::Duration};

use async_trait::async_trait;
use health_types::{
    CheckKind, CheckResult, ConfigError, DockerSpec, HealthCheckConfig, Probe, ProbeError,
    redacted, timed_out_after, truncate,
};
use tokio::time::Instant;
use url::Url;

use crate::failure::margin;

pub use self::engine::{BollardDockerApi, DEFAULT_DOCKER_HOST};

/// The scheme of a Docker probe's display URL, `docker://<host>/containers/<id>`.
pub const DOCKER_SCHEME: &str = "docker";
/// The longest health-log output put into a detail, in characters (a cut is marked `…`).
pub const MAX_HEALTH_OUTPUT: usize = 256;
/// The detail of a running container without a healthcheck, when no fallback is used.
pub const HEALTH_CHECK_NOT_AVAILABLE: &str = "docker health check not available";

/// A container's `State`, as far as a health check reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerState {
    /// `State.Status`: `created`, `running`, `paused`, `restarting`, `removing`,
    /// `exited`, `dead` (or `stopping`, which newer engines report).
    pub status: String,
    /// `State.Health`; `None` when the container has no healthcheck.
    pub health: Option<ContainerHealth>,
}

/// `State.Health` of a container that has a healthcheck.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerHealth {
    /// `State.Health.Status`: `starting`, `healthy` or `unhealthy` (`none` counts as no
    /// healthcheck).
    pub status: String,
    /// The newest entry of `State.Health.Log`, if there is one.
    pub last_log: Option<HealthLogEntry>,
}

/// One run of a container's healthcheck command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthLogEntry {
    /// What the command printed (`Output`).
    pub output: String,
    /// How long it ran (`End` − `Start`); `None` when a time is missing or unreadable.
    pub duration: Option<Duration>,
}

/// Inspects containers: the narrow port in front of the Docker Engine API.
///
/// [`BollardDockerApi`] is the real one; tests use mockall's `MockDockerApi`.
///
/// # Cancel safety
///
/// Dropping the future of [`inspect_state`](DockerApi::inspect_state) must leave nothing
/// running that does not end by itself at once ([`BollardDockerApi`] leaves a connection
/// task that closes its socket when it sees the call gone).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait DockerApi: Send + Sync + Debug {
    /// The `State` of `container` (an id or a name).
    ///
    /// An error says the engine could not be asked or gave no usable answer: unreachable,
    /// an HTTP error status (404 for an unknown container), or a body without a readable
    /// `State.Status`.
    async fn inspect_state(&self, container: &str) -> Result<ContainerState, ProbeError>;
}

/// The probe a [`DockerProbe`] falls back to, and the target it checks.
#[derive(Clone, Debug)]
struct Fallback {
    probe: Arc<dyn Probe>,
    target: Url,
}

/// Checks a container's state and healthcheck through the Docker Engine API (SPEC §5).
///
/// | container | result | kind | detail | latency |
/// |---|---|---|---|---|
/// | `dead`, `exited`, `paused`, `restarting`, `removing` | unhealthy | `container` | `container is <status>` | the inspect's |
/// | `created` | unhealthy | `container` | `container is not started` | the inspect's |
/// | `running`, health `healthy` | healthy | `ok` | last health-log output | that run's `End` − `Start` |
/// | `running`, health `unhealthy` | unhealthy | `container` | last health-log output (`container is unhealthy` when empty) | that run's |
/// | `running`, health `starting` | unhealthy | `container` | `container health is starting[: <last output>]` | that run's, or the inspect's |
/// | `running`, no healthcheck | the fallback's result, else unhealthy | `container` | `docker health check not available` | the inspect's |
/// | Docker API failure | the fallback's result, else an error | the cause's | `docker: …` | |
///
/// The fallback is used only when one is set ([`try_with_fallback`](Self::try_with_fallback))
/// and the config's `disable` is false. A valid Docker answer other than "no
/// healthcheck" is final: the fallback is not asked. Health-log output is trimmed and cut
/// at [`MAX_HEALTH_OUTPUT`] characters.
///
/// A container whose health is still `starting` counts as unhealthy: it is not ready for
/// traffic (SPEC: healthy iff health is `healthy`), and a monitor debounces it like any
/// other failure.
///
/// ```no_run
/// use std::sync::Arc;
///
/// use health_check::{DockerProbe, StreamProbe};
/// use health_types::{DockerSpec, HealthCheckConfig, Probe, Url};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = HealthCheckConfig::default();
/// // Without a healthcheck in the container, its port is checked instead.
/// let fallback = StreamProbe::try_new(&config)?;
/// let probe = DockerProbe::try_new(&config, DockerSpec::new("web"))?
///     .try_with_fallback(Arc::new(fallback), Url::parse("tcp://10.0.0.5:8080")?)?;
/// let result = probe.check(probe.url()).await?;
/// println!("{}: {} ({})", probe.url(), result.kind, result.detail);
/// # Ok(())
/// # }
/// ```
///
/// # URLs
///
/// The probe's own URL, [`url`](Self::url), is `docker://<host>/containers/<id>`
/// (`<host>` is `localhost` for a unix socket): it is what a monitor of this probe shows.
/// [`check`](Probe::check) inspects the configured container whatever URL it gets, and
/// hands the fallback its target: the fallback's configured target when given a
/// `docker://` URL, else the given URL. So a monitor built with the display URL checks
/// the fallback's target, and `update_url` to a plain URL (which the fallback must
/// accept) makes that URL the fallback's target from the next check on.
///
/// # Time
///
/// Without a usable fallback the engine gets the whole `timeout` less a margin of 10 %
/// (at most 100 ms), so that a hanging engine ends as this probe's error, before the
/// monitor's own cut. With one, the engine gets half the `timeout`, leaving the other
/// half to the fallback.
#[derive(Clone, Debug)]
pub struct DockerProbe {
    api: Arc<dyn DockerApi>,
    container: String,
    url: Url,
    timeout: Duration,
    fallback_enabled: bool,
    fallback: Option<Fallback>,
}

impl DockerProbe {
    /// A probe of `spec.container` (an id or a name; a leading `/`, as `docker inspect`
    /// shows names, is dropped) on the engine `spec.host` (`unix:///path` or
    /// `tcp://host:port`; default `DOCKER_HOST`, else [`DEFAULT_DOCKER_HOST`]), through a
    /// [`BollardDockerApi`]. No connection is made here: the client is created on the
    /// first check.
    ///
    /// Fails when `config` is invalid, the container name is not a Docker name or id, or
    /// the host is not a `unix://` or `tcp://` URL.
    pub fn try_new(config: &HealthCheckConfig, spec: DockerSpec) -> Result<Self, ConfigError> {
        let api = BollardDockerApi::try_new(spec.host.as_deref(), config.timeout)?;
        Self::try_with_api(config, spec, Arc::new(api))
    }

    /// A probe that asks `api` (for example one [`BollardDockerApi`] shared by the
    /// probes of one engine); `spec.host` only names the engine in [`url`](Self::url).
    ///
    /// Fails as [`try_new`](Self::try_new) does.
    pub fn try_with_api(
        config: &HealthCheckConfig,
        spec: DockerSpec,
        api: Arc<dyn DockerApi>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let container = engine::container_name(&spec.container)?;
        let endpoint = engine::Endpoint::from_environment(spec.host.as_deref())?;
        let url = Url::parse(&format!(
            "{DOCKER_SCHEME}://{}/containers/{container}",
            endpoint.display_host()
        ))
        .map_err(|err| ConfigError::url(&container, format!("no display URL: {err}")))?;
        Ok(DockerProbe {
            api,
            container,
            url,
            timeout: config.timeout,
            fallback_enabled: !config.disable,
            fallback: None,
        })
    }

    /// This probe, falling back to `probe` checking `target` when the container has no
    /// healthcheck or the Docker API fails (unless the config's `disable` is set).
    ///
    /// Fails when `probe` rejects `target`.
    pub fn try_with_fallback(
        mut self,
        probe: Arc<dyn Probe>,
        target: Url,
    ) -> Result<Self, ConfigError> {
        probe.validate_url(&target)?;
        self.fallback = Some(Fallback { probe, target });
        Ok(self)
    }

    /// The display URL, `docker://<host>/containers/<id>`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The container checked.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The fallback's configured target, if there is a fallback.
    pub fn fallback_target(&self) -> Option<&Url> {
        self.fallback.as_ref().map(|fallback| &fallback.target)
    }

    /// The fallback when one is set and `disable` is false.
    fn usable_fallback(&self) -> Option<&Fallback> {
        self.fallback.as_ref().filter(|_| self.fallback_enabled)
    }

    /// How long the engine may take (see "Time" above).
    fn engine_budget(&self) -> Duration {
        if self.usable_fallback().is_some() {
            self.timeout / 2
        } else {
            self.timeout - margin(self.timeout)
        }
    }

    async fn inspect(&self) -> Result<ContainerState, ProbeError> {
        let budget = self.engine_budget();
        match tokio::time::timeout(budget, self.api.inspect_state(&self.container)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ProbeError::new(
                CheckKind::Timeout,
                format!("docker: {}", timed_out_after(budget)),
            )),
        }
    }

    /// The fallback's result for `why`, or what `why` amounts to without one.
    async fn fall_back(&self, url: &Url, why: FallbackReason) -> Result<CheckResult, ProbeError> {
        let Some(fallback) = self.usable_fallback() else {
            return match why {
                FallbackReason::NoHealthcheck(latency) => Ok(CheckResult::unhealthy(
                    CheckKind::Container,
                    HEALTH_CHECK_NOT_AVAILABLE,
                    latency,
                )),
                FallbackReason::Api(err) => Err(err),
            };
        };
        let target = if url.scheme() == DOCKER_SCHEME {
            &fallback.target
        } else {
            url
        };
        match &why {
            FallbackReason::NoHealthcheck(_) => {
                tracing::trace!(
                    container = %self.container,
                    target = %redacted(target),
                    "no docker healthcheck, using the fallback"
                );
            }
            FallbackReason::Api(err) => {
                tracing::debug!(
                    container = %self.container,
                    target = %redacted(target),
                    error = %err,
                    "docker API failed, using the fallback"
                );
            }
        }
        fallback.probe.check(target).await
    }
}

/// Why the fallback is asked.
enum FallbackReason {
    /// The container runs without a healthcheck; the inspect took this long.
    NoHealthcheck(Duration),
    /// The Docker API failed.
    Api(ProbeError),
}

/// What a container's state says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Assessment {
    /// A final result.
    Result(CheckResult),
    /// The container runs without a healthcheck.
    NoHealthcheck,
}

/// Maps a container's state to a result (the table on [`DockerProbe`]). `inspect` is
/// the inspect's round trip, the latency of rows without a health-log duration.
pub(crate) fn assess(state: &ContainerState, inspect: Duration) -> Assessment {
    let unhealthy =
        |detail: String, latency| CheckResult::unhealthy(CheckKind::Container, detail, latency);
    match state.status.as_str() {
        "running" => {}
        "created" => {
            return Assessment::Result(unhealthy("container is not started".to_owned(), inspect));
        }
        // dead, exited, paused, restarting, removing, and anything newer engines add.
        status => return Assessment::Result(unhealthy(format!("container is {status}"), inspect)),
    }
    let Some(health) = state
        .health
        .as_ref()
        .filter(|health| !matches!(health.status.as_str(), "" | "none"))
    else {
        return Assessment::NoHealthcheck;
    };
    let (output, latency) = match &health.last_log {
        Some(log) => (
            // The output's own whitespace (a trailing newline) is not part of the detail.
            truncate(log.output.trim(), MAX_HEALTH_OUTPUT + 1).into_owned(),
            log.duration.unwrap_or(inspect),
        ),
        None => (String::new(), inspect),
    };
    let result = match health.status.as_str() {
        "healthy" => CheckResult::healthy(output, latency),
        "unhealthy" if output.is_empty() => unhealthy("container is unhealthy".to_owned(), latency),
        "unhealthy" => unhealthy(output, latency),
        // `starting`, and any status newer engines add: not (yet) healthy.
        status if output.is_empty() => unhealthy(format!("container health is {status}"), latency),
        status => unhealthy(format!("container health is {status}: {output}"), latency),
    };
    Assessment::Result(result)
}

#[async_trait]
impl Probe for DockerProbe {
    /// Inspects the container and maps its state (see the table on [`DockerProbe`]).
    ///
    /// Cancel safe when the [`DockerApi`] and the fallback are.
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let start = Instant::now();
        match self.inspect().await {
            Ok(state) => match assess(&state, start.elapsed()) {
                Assessment::Result(result) => Ok(result),
                Assessment::NoHealthcheck => {
                    self.fall_back(url, FallbackReason::NoHealthcheck(start.elapsed()))
                        .await
                }
            },
            Err(err) => self.fall_back(url, FallbackReason::Api(err)).await,
        }
    }

    /// Accepts this probe's own display URL, and any URL the fallback accepts (it becomes
    /// the fallback's target). Another `docker://` URL is rejected: the container and
    /// the engine of a probe are fixed.
    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        if url.scheme() == DOCKER_SCHEME {
            return if *url == self.url {
                Ok(())
            } else {
                Err(ConfigError::url(
                    redacted(url),
                    format!(
                        "this probe checks {}; its container and host cannot change",
                        self.url
                    ),
                ))
            };
        }
        match &self.fallback {
            Some(fallback) => fallback.probe.validate_url(url),
            None => Err(ConfigError::url(
                redacted(url),
                format!("a docker probe without a fallback checks only {}", self.url),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mockall::mock! {
        Probe {}
        #[async_trait]
        impl Probe for Probe {
            async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError>;
            fn validate_url(&self, url: &Url) -> Result<(), ConfigError>;
        }
    }

    // `Probe` needs `Debug`, which `mock!` does not derive.
    impl std::fmt::Debug for MockProbe {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("MockProbe")
        }
    }

    const TARGET: &str = "http://10.0.0.5:8080/";

    fn running(health: &str, output: &str, duration_ms: u64) -> ContainerState {
        ContainerState {
            status: "running".to_owned(),
            health: Some(ContainerHealth {
                status: health.to_owned(),
                last_log: Some(HealthLogEntry {
                    output: output.to_owned(),
                    duration: Some(Duration::from_millis(duration_ms)),
                }),
            }),
        }
    }

    fn state(status: &str) -> ContainerState {
        ContainerState {
            status: status.to_owned(),
            health: None,
        }
    }

    fn api_returning(outcome: Result<ContainerState, ProbeError>) -> MockDockerApi {
        let mut api = MockDockerApi::new();
        api.expect_inspect_state()
            .withf(|container| container == "web")
            .times(1)
            .returning(move |_| outcome.clone());
        api
    }

    fn probe_with(api: MockDockerApi, disable: bool) -> DockerProbe {
        let config = HealthCheckConfig {
            timeout: Duration::from_secs(2),
            disable,
            ..Default::default()
        };
        DockerProbe::try_with_api(&config, DockerSpec::new("web"), Arc::new(api)).unwrap()
    }

    /// A fallback that must not be asked.
    fn unused_fallback() -> MockProbe {
        let mut fallback = MockProbe::new();
        fallback.expect_validate_url().returning(|_| Ok(()));
        fallback.expect_check().never();
        fallback
    }

    /// A fallback answering healthy `fallback` once, for `target`.
    fn fallback_for(target: &'static str) -> MockProbe {
        let mut fallback = MockProbe::new();
        fallback.expect_validate_url().returning(|_| Ok(()));
        fallback
            .expect_check()
            .withf(move |url| url.as_str() == target)
            .times(1)
            .returning(|_| Ok(CheckResult::healthy("fallback", Duration::from_millis(3))));
        fallback
    }

    fn with_fallback(probe: DockerProbe, fallback: MockProbe) -> DockerProbe {
        probe
            .try_with_fallback(Arc::new(fallback), Url::parse(TARGET).unwrap())
            .unwrap()
    }

    async fn check(probe: &DockerProbe) -> Result<CheckResult, ProbeError> {
        let url = probe.url().clone();
        probe.check(&url).await
    }

    /// One check by a probe (`disable` false) whose engine answers `outcome`, with
    /// `fallback`.
    async fn check_with(
        outcome: Result<ContainerState, ProbeError>,
        fallback: MockProbe,
    ) -> Result<CheckResult, ProbeError> {
        check(&with_fallback(
            probe_with(api_returning(outcome), false),
            fallback,
        ))
        .await
    }

    /// One check by a probe without a fallback whose engine answers `outcome`.
    async fn check_alone(
        outcome: Result<ContainerState, ProbeError>,
    ) -> Result<CheckResult, ProbeError> {
        check(&probe_with(api_returning(outcome), false)).await
    }

    #[tokio::test]
    async fn stopped_and_created_containers_are_final_unhealthy_results_even_with_a_fallback() {
        let cases = [
            ("dead", "container is dead"),
            ("exited", "container is exited"),
            ("paused", "container is paused"),
            ("restarting", "container is restarting"),
            ("removing", "container is removing"),
            ("created", "container is not started"),
        ];
        for (status, detail) in cases {
            let result = check_with(Ok(state(status)), unused_fallback()).await;
            let result = result.unwrap();
            assert!(!result.healthy, "{status}");
            assert_eq!(
                (result.kind, result.detail.as_str()),
                (CheckKind::Container, detail)
            );
        }
    }

    #[tokio::test]
    async fn health_healthy_and_unhealthy_are_final_with_the_last_output_and_its_duration() {
        let cases = [
            (
                running("healthy", "ready\n", 250),
                CheckResult::healthy("ready", Duration::from_millis(250)),
            ),
            (
                running("unhealthy", "HTTP 503 from /health", 40),
                CheckResult::unhealthy(
                    CheckKind::Container,
                    "HTTP 503 from /health",
                    Duration::from_millis(40),
                ),
            ),
        ];
        for (state, want) in cases {
            let result = check_with(Ok(state), unused_fallback()).await;
            assert_eq!(result.unwrap(), want);
        }
        let silent = check_alone(Ok(running("unhealthy", "", 40))).await;
        assert_eq!(silent.unwrap().detail, "container is unhealthy");
    }

    #[tokio::test]
    async fn health_starting_is_unhealthy_and_says_so() {
        let mut starting = running("starting", "", 0);
        starting.health.as_mut().unwrap().last_log = None;
        let result = check_alone(Ok(starting)).await.unwrap();
        assert_eq!(
            (result.healthy, result.kind, result.detail.as_str()),
            (false, CheckKind::Container, "container health is starting")
        );
        let refused = check_alone(Ok(running("starting", "connection refused", 5))).await;
        assert_eq!(
            refused.unwrap().detail,
            "container health is starting: connection refused"
        );
    }

    #[tokio::test]
    async fn long_output_is_cut_with_a_marker() {
        let long = "x".repeat(1000);
        let detail = check_alone(Ok(running("healthy", &long, 1)))
            .await
            .unwrap()
            .detail;
        assert_eq!(detail.chars().count(), MAX_HEALTH_OUTPUT + 1);
        assert!(detail.ends_with('…'), "{detail}");
    }

    #[tokio::test]
    async fn a_log_without_times_takes_the_inspects_latency() {
        let mut state = running("healthy", "ok", 0);
        state
            .health
            .as_mut()
            .unwrap()
            .last_log
            .as_mut()
            .unwrap()
            .duration = None;
        let result = check_alone(Ok(state)).await.unwrap();
        assert!(result.healthy);
        assert!(result.latency < Duration::from_secs(1), "{result:?}");
    }

    #[tokio::test]
    async fn no_healthcheck_uses_the_fallback_on_its_target() {
        let result = check_with(Ok(state("running")), fallback_for(TARGET))
            .await
            .unwrap();
        assert_eq!(
            result,
            CheckResult::healthy("fallback", Duration::from_millis(3))
        );
    }

    #[tokio::test]
    async fn health_none_counts_as_no_healthcheck() {
        let mut state = running("none", "", 0);
        state.health.as_mut().unwrap().last_log = None;
        let result = check_with(Ok(state), fallback_for(TARGET)).await;
        assert_eq!(result.unwrap().detail, "fallback");
    }

    #[tokio::test]
    async fn a_plain_url_becomes_the_fallbacks_target() {
        // What a monitor passes after `update_url`.
        let probe = with_fallback(
            probe_with(api_returning(Ok(state("running"))), false),
            fallback_for("http://10.0.0.6:9090/"),
        );
        let result = probe
            .check(&Url::parse("http://10.0.0.6:9090/").unwrap())
            .await
            .unwrap();
        assert_eq!(result.detail, "fallback");
    }

    #[tokio::test]
    async fn no_healthcheck_without_a_usable_fallback_is_not_available() {
        let alone = probe_with(api_returning(Ok(state("running"))), false);
        let disabled = with_fallback(
            probe_with(api_returning(Ok(state("running"))), true),
            unused_fallback(),
        );
        for probe in [alone, disabled] {
            let result = check(&probe).await.unwrap();
            assert_eq!(
                (result.healthy, result.kind, result.detail.as_str()),
                (false, CheckKind::Container, HEALTH_CHECK_NOT_AVAILABLE)
            );
        }
    }

    #[tokio::test]
    async fn an_api_failure_uses_the_fallback() {
        let refused = ProbeError::new(CheckKind::Refused, "docker: connection refused");
        let result = check_with(Err(refused), fallback_for(TARGET)).await;
        assert_eq!(result.unwrap().detail, "fallback");
    }

    #[tokio::test]
    async fn an_api_failure_without_a_usable_fallback_is_an_error() {
        let refused = ProbeError::new(CheckKind::Refused, "docker: connection refused");
        let alone = probe_with(api_returning(Err(refused.clone())), false);
        let disabled = with_fallback(
            probe_with(api_returning(Err(refused.clone())), true),
            unused_fallback(),
        );
        for probe in [alone, disabled] {
            assert_eq!(check(&probe).await.unwrap_err(), refused);
        }
    }

    #[tokio::test]
    async fn a_failing_fallback_is_reported_as_it_is() {
        let mut fallback = MockProbe::new();
        fallback.expect_validate_url().returning(|_| Ok(()));
        fallback
            .expect_check()
            .returning(|_| Err(ProbeError::new(CheckKind::Io, "permission denied")));
        let err = check_with(Ok(state("running")), fallback)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), CheckKind::Io);
    }

    #[test]
    fn the_display_url_names_host_and_container() {
        // (container, host) → Ok((display URL, container)) or Err(part of the message).
        let cases = [
            (
                "/web",
                Some("tcp://10.0.0.2:2375"),
                Ok(("docker://10.0.0.2:2375/containers/web", "web")),
            ),
            (
                "0123abcd",
                Some("unix:///run/docker.sock"),
                Ok(("docker://localhost/containers/0123abcd", "0123abcd")),
            ),
            ("a/b", None, Err("container")),
            ("web", Some("ssh://docker.test"), Err("unix, tcp")),
        ];
        for (container, host, want) in cases {
            let spec = DockerSpec {
                container: container.to_owned(),
                host: host.map(str::to_owned),
            };
            let outcome = DockerProbe::try_with_api(
                &HealthCheckConfig::default(),
                spec,
                Arc::new(MockDockerApi::new()),
            );
            match (outcome, want) {
                (Ok(probe), Ok((url, name))) => {
                    assert_eq!((probe.url().as_str(), probe.container()), (url, name));
                }
                (Err(err), Err(part)) => assert!(err.to_string().contains(part), "{err}"),
                (outcome, want) => panic!("{container} on {host:?}: {outcome:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn urls_are_the_own_one_or_what_the_fallback_accepts() {
        let alone = probe_with(MockDockerApi::new(), false);
        assert!(alone.validate_url(&alone.url().clone()).is_ok());
        let other = Url::parse("docker://localhost/containers/db").unwrap();
        let err = alone.validate_url(&other).unwrap_err();
        assert!(err.to_string().contains("cannot change"), "{err}");
        let err = alone
            .validate_url(&Url::parse(TARGET).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("without a fallback"), "{err}");

        let mut fallback = MockProbe::new();
        fallback
            .expect_validate_url()
            .returning(|url| match url.scheme() {
                "http" => Ok(()),
                _ => Err(ConfigError::url(url, "not http")),
            });
        let probe = with_fallback(probe_with(MockDockerApi::new(), false), fallback);
        assert_eq!(probe.fallback_target().map(Url::as_str), Some(TARGET));
        assert!(
            probe
                .validate_url(&Url::parse("http://b.test/").unwrap())
                .is_ok()
        );
        assert!(
            probe
                .validate_url(&Url::parse("ftp://b.test/").unwrap())
                .is_err()
        );
        let err = probe_with(MockDockerApi::new(), false)
            .try_with_fallback(
                Arc::new(unused_fallback_rejecting()),
                Url::parse(TARGET).unwrap(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("rejected"), "{err}");
    }

    fn unused_fallback_rejecting() -> MockProbe {
        let mut fallback = MockProbe::new();
        fallback
            .expect_validate_url()
            .returning(|url| Err(ConfigError::url(url, "rejected")));
        fallback.expect_check().never();
        fallback
    }

    #[test]
    fn the_engine_gets_half_the_timeout_when_a_fallback_waits() {
        let alone = probe_with(MockDockerApi::new(), false);
        assert_eq!(alone.engine_budget(), Duration::from_millis(1900));
        let with = with_fallback(probe_with(MockDockerApi::new(), false), unused_fallback());
        assert_eq!(with.engine_budget(), Duration::from_secs(1));
        let disabled = with_fallback(probe_with(MockDockerApi::new(), true), unused_fallback());
        assert_eq!(disabled.engine_budget(), Duration::from_millis(1900));
    }
}
