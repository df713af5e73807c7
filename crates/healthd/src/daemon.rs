//! `healthd run`: builds monitors and notifiers from a [`DaemonConfig`], serves the API
//! and stops cleanly on SIGINT or SIGTERM.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use health_monitor::{HealthMonitor, Monitor, MonitorError, Scope};
use health_notify::{Dispatcher, Notifier, NotifierConfig, NotifyError};
use health_types::EventSink;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{ApiState, router},
    config::DaemonConfig,
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
    dispatcher: Dispatcher,
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
pub(crate) async fn start_on(
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
        .map(NotifierConfig::build)
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
        // A monitor with a `notify` list reaches those notifiers (and the extra ones);
        // without one it reaches all.
        let sink: Arc<dyn EventSink> = if entry.notify.is_empty() {
            Arc::new(dispatcher.clone())
        } else {
            let names = entry.notify.iter().cloned().chain(everyone.iter().cloned());
            Arc::new(dispatcher.targeted(names)?)
        };
        // The probe was built when the config was loaded.
        let monitor = Monitor::builder(
            entry.name.as_str(),
            entry.probe.url.clone(),
            entry.probe.probe.clone(),
        )
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
pub(crate) async fn shutdown_signal() {
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
