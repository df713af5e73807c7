//! `healthd run`: opens the state store, builds monitors and notifiers from a
//! [`DaemonConfig`], serves the API and stops cleanly on SIGINT or SIGTERM.
//!
//! The wiring of SPEC §9.1: each monitor resumes from its state in the store and reports
//! to the store ([`StateSink`](health_types::StateSink)), which commits the state and
//! the outbox rows of its events in one transaction and then wakes the dispatcher; the
//! dispatcher delivers from the store's outbox. So a notification is durable before its
//! first attempt, and a restart neither forgets an outage nor sends its `down` twice.
//!
//! Between the monitors and the store sits the alert policy of SPEC §9.5 (an
//! [`AlertGate`]): it decides which of a monitor's events go out now (reminders, events
//! held by `depends_on`, flap damping and maintenance windows) and hands the store each
//! monitor's alert state with its state, so both are committed with the outbox rows of
//! the events it let out. Monitors that no rule and no window concern pass straight
//! through.
//!
//! And the wiring of SPEC §9.2: the store is also each monitor's
//! [`HistorySink`](health_types::HistorySink) (every check and status change) and the
//! API's [`HistoryReader`](health_types::HistoryReader), whose summaries a
//! [`HistoryCache`] re-reads every [`StartOptions::history_refresh`].

use std::{collections::HashMap, io, net::SocketAddr, sync::Arc, time::Duration};

use health_monitor::{HealthMonitor, Monitor, MonitorError, Scope};
use health_notify::{
    Dispatcher, Notifier, NotifierConfig, NotifyError, RetryPolicy,
    policy::{AlertGate, AlertPolicy, PolicyError},
};
use health_store::Store;
use health_types::{Clock, HistoryReader, HistorySink, Outbox, StateSink, SystemClock};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{ApiState, router},
    config::DaemonConfig,
    history::{DEFAULT_REFRESH, HistoryCache, Poking},
    metrics::{Backlog, NotifyCounters, NotifyStats},
    probe_api::ProbeModules,
    server::{self, Limits},
    storage::{self, StorageError},
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
    /// The state store could not be opened (or read).
    #[error("state store")]
    Storage(#[from] StorageError),
    /// The alert rules do not fit together (a config checked by `DaemonConfig::parse`
    /// never fails here).
    #[error("alert rules")]
    Policy(#[from] PolicyError),
}

/// A running daemon: monitors, notifications and the API.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The monitors, in config order.
    pub monitors: Vec<Monitor>,
    dispatcher: Dispatcher,
    store: Arc<Store>,
    scope: Scope,
    stop: CancellationToken,
    server: JoinHandle<()>,
    /// Stops the history cache's refreshes.
    history_stop: CancellationToken,
    history_refresh: JoinHandle<()>,
    /// The alert policy's timer (reminders, the end of flapping, window boundaries).
    alert_timer: JoinHandle<()>,
}

/// What a daemon start takes besides its config.
#[derive(Debug)]
pub(crate) struct StartOptions {
    /// Notifiers that every event reaches besides the config's (the demo's console).
    pub(crate) extra: Vec<Arc<dyn Notifier>>,
    /// How often the history summaries (uptimes, the 90-day bars) are re-read. Default
    /// 60 s; the demo wants a few seconds.
    pub(crate) history_refresh: Duration,
}

impl Default for StartOptions {
    /// No extra notifier; history re-read every 60 s.
    fn default() -> Self {
        StartOptions {
            extra: Vec::new(),
            history_refresh: DEFAULT_REFRESH,
        }
    }
}

impl Running {
    /// Stops the monitors, commits their last state, delivers queued notifications for
    /// at most `within` (the rest stay in the store for the next start), and stops the
    /// API server.
    pub async fn shutdown(self, within: Duration) {
        self.scope.shutdown().await;
        // Whatever the timer was about to let out is due again at the next start: the
        // alert state it would have changed was not committed either.
        self.alert_timer.abort();
        let _ = self.alert_timer.await;
        self.history_stop.cancel();
        let _ = self.history_refresh.await;
        if let Err(err) = self.store.flush() {
            tracing::error!(error = %health_types::ErrorChain(&err), "could not commit the monitors' last state");
        }
        let report = self.dispatcher.shutdown(within).await;
        if !report.drained {
            tracing::warn!(
                abandoned = report.abandoned,
                kept = report.kept,
                "notifications left undelivered at shutdown; the kept ones are sent at the next start"
            );
        }
        // Drops the store's commit hook (which holds the dispatcher, which holds the
        // store) and joins its writer, so the file is closed when this returns.
        if let Err(err) = self.store.close() {
            tracing::error!(error = %health_types::ErrorChain(&err), "could not close the state store");
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

    fn backlog(&self) -> Vec<(String, Backlog)> {
        let now = SystemClock.now();
        match self.0.backlog() {
            Ok(rows) => rows
                .into_iter()
                .map(|row| {
                    let oldest_seconds = row.oldest_age(now).as_secs_f64();
                    (
                        row.name,
                        Backlog {
                            pending: row.pending,
                            oldest_seconds,
                        },
                    )
                })
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the outbox backlog for /metrics");
                Vec::new()
            }
        }
    }
}

/// Opens the state store of `config` (its `[storage] path`, else SPEC §9.1's default)
/// and starts everything in it, plus `extra` notifiers that every event reaches (the
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
    let options = StartOptions {
        extra,
        ..StartOptions::default()
    };
    start_with(listener, config, options).await
}

/// [`start`] on an already bound listener, with `options`.
pub(crate) async fn start_with(
    listener: TcpListener,
    config: &DaemonConfig,
    options: StartOptions,
) -> Result<Running, DaemonError> {
    let StartOptions {
        extra,
        history_refresh,
    } = options;
    let addr = listener.local_addr().map_err(|source| DaemonError::Bind {
        addr: config.listen,
        source,
    })?;
    let store = storage::open(config.storage.as_deref(), config.history_retention)?;
    let mut notifiers = config
        .notify
        .iter()
        .map(NotifierConfig::build)
        .collect::<Result<Vec<_>, _>>()?;
    let everyone: Vec<String> = extra.iter().map(|n| n.name().to_owned()).collect();
    let all: Vec<String> = notifiers
        .iter()
        .map(|n| n.name().to_owned())
        .chain(everyone.iter().cloned())
        .collect();
    notifiers.extend(extra);
    let retry = RetryPolicy {
        max_age: config.delivery.max_age,
        max_backoff: config.delivery.max_backoff,
        ..RetryPolicy::default()
    };
    let dispatcher = Dispatcher::builder()
        .notifiers(notifiers)
        .outbox(Arc::clone(&store) as Arc<dyn Outbox>)
        .retry(retry)
        .start()?;

    // A monitor with a `notify` list reaches those notifiers (and the extra ones);
    // without one it reaches all. The store routes each event by this table, commits it
    // with the monitor's state, then wakes the notifiers it went to.
    let routes: HashMap<String, Vec<String>> = config
        .monitors
        .iter()
        .filter(|entry| !entry.notify.is_empty())
        .map(|entry| {
            let names = entry.notify.iter().chain(&everyone).cloned().collect();
            (entry.name.clone(), names)
        })
        .collect();
    store.set_router(move |monitor| routes.get(monitor).unwrap_or(&all).clone());
    {
        let dispatcher = dispatcher.clone();
        store.set_commit_hook(move |notifiers| dispatcher.wake(notifiers));
    }
    let open_error = |source| StorageError::Open {
        path: store.path().to_owned(),
        source,
    };
    let mut saved = store.load_states().map_err(open_error)?;
    let mut alerts = store.load_alert_states().map_err(open_error)?;
    let policy = AlertPolicy::new(
        config
            .monitors
            .iter()
            .map(|entry| (entry.name.clone(), entry.alert.clone()))
            .collect(),
        config.maintenance.clone(),
    )?;
    let gate = Arc::new(AlertGate::new(
        policy,
        Arc::clone(&store) as Arc<dyn StateSink>,
        Arc::new(SystemClock),
    ));

    // Read once at once, then every `history_refresh` and soon after a status change.
    let history = HistoryCache::new(
        Arc::clone(&store) as Arc<dyn HistoryReader>,
        Arc::new(SystemClock),
    );
    let history_sink: Arc<dyn HistorySink> = Arc::new(Poking {
        sink: Arc::clone(&store) as Arc<dyn HistorySink>,
        cache: history.clone(),
    });
    let mut monitors = Vec::with_capacity(config.monitors.len());
    for entry in &config.monitors {
        let fail = |source| DaemonError::Monitor {
            name: entry.name.clone(),
            source,
        };
        // The probe was built when the config was loaded.
        let mut builder = Monitor::builder(
            entry.name.as_str(),
            entry.probe.url.clone(),
            entry.probe.probe.clone(),
        )
        .config(entry.config.clone())
        .state_sink(Arc::clone(&gate) as Arc<dyn StateSink>)
        .history(Arc::clone(&history_sink));
        if let Some(state) = saved.remove(&entry.name) {
            gate.restore(
                &entry.name,
                &state,
                alerts.remove(&entry.name).unwrap_or_default(),
            );
            builder = builder.restore(state);
        }
        monitors.push(builder.build().map_err(fail)?);
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

    let alert_timer = tokio::spawn({
        let gate = Arc::clone(&gate);
        async move { gate.run().await }
    });

    let history_stop = CancellationToken::new();
    let history_refresh = history.spawn(history_refresh, history_stop.clone());

    let state = ApiState::new(
        monitors.clone(),
        Some(Arc::new(DispatcherStats(dispatcher.clone()))),
    )
    .with_access(config.server.access.clone())
    .with_history(history)
    .with_groups(config.monitors.iter().map(|m| m.group.clone()).collect())
    .with_maintenance(Arc::clone(&gate))
    .with_probe_modules(ProbeModules::new(
        config.probe_defaults.clone(),
        config.modules.clone(),
    ));
    let limits = Limits {
        max_connections: config.server.max_connections,
        ..Limits::default()
    };
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::serve(
        listener,
        None,
        router(state),
        limits,
        stop.clone(),
    ));
    tracing::info!(%addr, monitors = monitors.len(), "healthd started");
    Ok(Running {
        addr,
        monitors,
        dispatcher,
        store,
        scope,
        stop,
        server,
        history_stop,
        history_refresh,
        alert_timer,
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
