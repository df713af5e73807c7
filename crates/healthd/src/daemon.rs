//! `healthd run`: builds monitors and notifiers from a [`DaemonConfig`], serves the API
//! and stops cleanly on SIGINT or SIGTERM.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use health_check::{
    AgentProbe, AgentProbeConfig, DOCKER_SCHEME, DockerProbe, DockerProbeConfig, StreamProbe,
    StreamProbeConfig,
};
use health_monitor::{HealthMonitor, Monitor, MonitorError, Scope, check_once, probe_for};
use health_notify::{Dispatcher, Notifier, NotifyError};
use health_types::{
    CheckResult, ConfigError, EventSink, HealthCheckConfig, Probe, ProbeError, Url,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{ApiState, router},
    config::{DaemonConfig, MonitorEntry},
    metrics::{NotifyCounters, NotifyStats},
};

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The API address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A monitor could not be built or started.
    #[error("monitor {name:?}")]
    Monitor {
        /// The monitor.
        name: String,
        /// Why.
        #[source]
        source: MonitorError,
    },
    /// The notifiers could not be built.
    #[error("notifications")]
    Notify(#[from] NotifyError),
}

/// A running daemon: monitors, notifications and the API.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The monitors, in config order.
    pub monitors: Vec<Monitor>,
    /// The notification dispatcher.
    pub dispatcher: Dispatcher,
    scope: Scope,
    stop: CancellationToken,
    server: JoinHandle<io::Result<()>>,
}

impl Running {
    /// Stops the monitors, drains queued notifications for at most `within`, and stops
    /// the API server.
    pub async fn shutdown(self, within: Duration) {
        self.scope.shutdown().await;
        let report = self.dispatcher.shutdown(within).await;
        if !report.drained {
            tracing::warn!(
                abandoned = report.abandoned,
                "notifications left undelivered at shutdown"
            );
        }
        self.stop.cancel();
        let _ = self.server.await;
    }
}

#[derive(Debug)]
struct DispatcherStats(Dispatcher);

impl NotifyStats for DispatcherStats {
    fn counters(&self) -> Vec<(String, NotifyCounters)> {
        self.0
            .notifier_stats()
            .into_iter()
            .map(|n| {
                (
                    n.name,
                    NotifyCounters {
                        sent: n.stats.sent,
                        failed: n.stats.failed,
                        retried: n.stats.retried,
                        dropped: n.stats.dropped,
                    },
                )
            })
            .collect()
    }
}

/// The probe for one configured monitor and the URL the monitor shows, by SPEC §4's flow
/// chart: agent, then Docker, then the URL's scheme.
///
/// A Docker monitor shows `docker://<host>/containers/<id>`; its `url`, when it has a
/// scheme a probe can check, is the fallback target used while the container has no
/// healthcheck or the engine cannot be asked (unless `disable` is set).
pub fn probe_for_entry(entry: &MonitorEntry) -> Result<(Arc<dyn Probe>, Url), MonitorError> {
    if let Some(agent) = &entry.agent {
        let options = AgentProbeConfig {
            url: agent.url.clone(),
            ca_file: agent.ca.clone(),
            cert_file: agent.cert.clone(),
            key_file: agent.key.clone(),
        };
        let probe = AgentProbe::try_new(&entry.config, options)?;
        return Ok((Arc::new(probe), entry.url.clone()));
    }
    if let Some(docker) = &entry.docker {
        let options = DockerProbeConfig {
            container: docker.container.clone(),
            host: docker.host.clone(),
        };
        let mut probe = DockerProbe::try_new(&entry.config, options)?;
        if entry.url.scheme() != DOCKER_SCHEME {
            probe = probe.try_with_fallback(target_probe(entry)?, entry.url.clone())?;
        }
        let display = probe.url().clone();
        return Ok((Arc::new(probe), display));
    }
    Ok((target_probe(entry)?, entry.url.clone()))
}

/// The probe for the monitor's own URL, by scheme (UDP options applied).
fn target_probe(entry: &MonitorEntry) -> Result<Arc<dyn Probe>, MonitorError> {
    if entry.payload.is_some() || entry.expect_reply.is_some() {
        if !entry.url.scheme().starts_with("udp") {
            return Err(ConfigError::url(
                &entry.url,
                "`payload` and `expect_reply` apply to udp targets only",
            )
            .into());
        }
        let options = StreamProbeConfig {
            payload: entry.payload.clone().unwrap_or_default().into_bytes(),
            expect_reply: entry.expect_reply.unwrap_or(false),
        };
        return Ok(Arc::new(StreamProbe::try_new(&entry.config, options)?));
    }
    probe_for(&entry.config, &entry.url)
}

/// One check of `url` under `config`, as a monitor would run it, without a monitor
/// (`healthd check`, the agent endpoint). The outer error is a config or URL the probes
/// reject; the inner result is the check's own outcome.
pub async fn check_url(
    config: &HealthCheckConfig,
    url: &Url,
) -> Result<Result<CheckResult, ProbeError>, MonitorError> {
    config.validate()?;
    let probe = probe_for(config, url)?;
    probe.validate_url(url)?;
    Ok(check_once(&*probe, url, config.timeout).await)
}

/// Starts everything in `config`, plus `extra` notifiers that every event reaches (the
/// demo's console).
pub async fn start(
    config: &DaemonConfig,
    extra: Vec<Arc<dyn Notifier>>,
) -> Result<Running, DaemonError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.listen,
            source,
        })?;
    start_on(listener, config, extra).await
}

/// [`start`] on an already bound listener.
pub async fn start_on(
    listener: TcpListener,
    config: &DaemonConfig,
    extra: Vec<Arc<dyn Notifier>>,
) -> Result<Running, DaemonError> {
    let addr = listener.local_addr().map_err(|source| DaemonError::Bind {
        addr: config.listen,
        source,
    })?;
    let mut notifiers = config
        .notify
        .iter()
        .map(|n| n.config.build())
        .collect::<Result<Vec<_>, _>>()?;
    let everyone: Vec<String> = extra.iter().map(|n| n.name().to_owned()).collect();
    notifiers.extend(extra);
    let dispatcher = Dispatcher::builder().notifiers(notifiers).start()?;

    let mut monitors = Vec::with_capacity(config.monitors.len());
    for entry in &config.monitors {
        let fail = |source| DaemonError::Monitor {
            name: entry.name.clone(),
            source,
        };
        let (probe, url) = probe_for_entry(entry).map_err(fail)?;
        // A monitor with a `notify` list reaches those notifiers (and the extra ones);
        // without one it reaches all.
        let sink: Arc<dyn EventSink> = if entry.notify.is_empty() {
            Arc::new(dispatcher.clone())
        } else {
            let names = entry.notify.iter().cloned().chain(everyone.iter().cloned());
            Arc::new(dispatcher.targeted(names)?)
        };
        let monitor = Monitor::builder(entry.name.as_str(), url, probe)
            .config(entry.config.clone())
            .sink(sink)
            .build()
            .map_err(fail)?;
        monitors.push(monitor);
    }

    let scope = Scope::new();
    for monitor in &monitors {
        monitor
            .start(&scope)
            .map_err(|source| DaemonError::Monitor {
                name: monitor.name().to_owned(),
                source,
            })?;
    }

    let state = ApiState::new(
        monitors.clone(),
        Some(Arc::new(DispatcherStats(dispatcher.clone()))),
    );
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };
    tracing::info!(%addr, monitors = monitors.len(), "healthd started");
    Ok(Running {
        addr,
        monitors,
        dispatcher,
        scope,
        stop,
        server,
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
