//! The health monitor: a sans-IO debouncing [`StateMachine`], the [`Monitor`] lifecycle
//! and a shared scheduler per [`Scope`].
//!
//! With the default `probes` feature the factory functions (`new_http_monitor`,
//! `new_monitor`, ...) build monitors over `health-check`'s probes; the default `docker`
//! feature adds `new_docker_monitor` (bollard). A proxy that needs only
//! the state machine and scheduler builds this crate with `default-features = false`: it
//! then depends on `health-types`, tokio and a few small crates, and never on hyper,
//! rustls or bollard. Any [`Probe`](health_types::Probe) can drive a monitor.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use health_monitor::{HealthMonitor, Monitor, Scope};
//! use health_types::{CheckResult, Probe, ProbeError, Url};
//!
//! #[derive(Debug)]
//! struct AlwaysUp;
//!
//! #[async_trait]
//! impl Probe for AlwaysUp {
//!     async fn check(&self, _url: &Url) -> Result<CheckResult, ProbeError> {
//!         Ok(CheckResult::healthy("", std::time::Duration::ZERO))
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::new();
//! let monitor = Monitor::builder("api", Url::parse("http://127.0.0.1:8080/")?, Arc::new(AlwaysUp))
//!     .build()?;
//! monitor.start(&scope)?;
//! let mut updates = monitor.subscribe();
//! updates.changed().await?;
//! println!("{}: {}", monitor.name(), monitor.status());
//! scope.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Scheduling
//!
//! The first check runs as soon as the monitor starts. Each next check is due one
//! interval after the previous one *began* (`fast_interval` while confirming a change,
//! else `down_interval` while Unhealthy or Error, else `interval`); a check that runs past
//! that moment is followed at once by the next. The periodic phase is offset once by a
//! random delay below `jitter`. Checks of one monitor never overlap, missed checks are not
//! bursted, and the monitor cuts a check at `timeout` (an unhealthy `timeout` result). See
//! [`Scope`] for how 100k monitors share one timer.
//!
//! # Resuming
//!
//! A monitor built with [`MonitorBuilder::restore`] resumes from the
//! [`MonitorState`](health_types::MonitorState) an earlier process persisted, and one
//! built with [`MonitorBuilder::state_sink`] hands its state, with the events of the same
//! check, to a [`StateSink`](health_types::StateSink) after each check that changed it.
//! An outage survives both a new process and [`restart`](HealthMonitor::restart): its
//! `down` is sent once, and the `up` that ends it reports the whole outage and, like the
//! `down`, names it by its start ([`Event::outage_start`](health_types::Event::outage_start)).
//! [`StateMachine::restore`] lists what each persisted status resumes as.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use health_monitor::{HealthMonitor, Monitor, Scope};
//! # use health_types::{Event, MonitorState, Probe, StateSink, Url};
//! #[derive(Debug)]
//! struct Store;
//!
//! impl StateSink for Store {
//!     fn record(&self, monitor: &str, state: &MonitorState, events: &[Event]) {
//!         // Queue `state` and `events` for one transaction; never block here.
//!     }
//! }
//!
//! # fn run(probe: Arc<dyn Probe>, saved: Option<MonitorState>, scope: &Scope) -> Result<(), Box<dyn std::error::Error>> {
//! let mut builder = Monitor::builder("api", Url::parse("http://127.0.0.1:8080/")?, probe)
//!     .state_sink(Arc::new(Store));
//! if let Some(state) = saved {
//!     builder = builder.restore(state);
//! }
//! builder.build()?.start(scope)?;
//! # Ok(()) }
//! ```
//!
//! # History
//!
//! A monitor built with [`MonitorBuilder::history`] reports to a
//! [`HistorySink`](health_types::HistorySink) every check but local ones, and every
//! status change as one chain: to `starting` at each start, each change a check makes
//! (with its detail), and to `stopped` at each stop, a stop after `max_errors` included.
//! Its [`Snapshot`] says when the last check ended ([`Snapshot::last_check`]), when the
//! current outage began ([`Snapshot::outage_start`]) and why it stopped
//! ([`Snapshot::stop_cause`]). Any watcher of [`subscribe`](HealthMonitor::subscribe)
//! sees each change; a slow one sees only the latest.

// Imports run one way, down this list's layers (see `monitor`'s docs): monitor; scope
// and check; lifecycle; snapshot; and the leaves (scheduler, machine, last_seen, error).
mod check;
mod error;
#[cfg(feature = "probes")]
mod factory;
mod last_seen;
mod lifecycle;
mod machine;
mod monitor;
mod scheduler;
mod scope;
mod snapshot;

pub use self::{
    check::check_once,
    error::MonitorError,
    last_seen::LastSeenRegistry,
    machine::{Events, StateMachine, Transition},
    monitor::{HealthMonitor, Monitor, MonitorBuilder},
    scheduler::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_STARTS_PER_TICK, SchedulerOptions},
    scope::Scope,
    snapshot::{LatencyHistogram, PhaseTimes, ResultCounts, Snapshot, StopCause},
};
pub use tokio_util::sync::CancellationToken;

#[cfg(feature = "docker")]
pub use self::factory::new_docker_monitor;
#[cfg(feature = "probes")]
pub use self::factory::{
    new_agent_proxied_monitor, new_file_server_monitor, new_h2c_monitor, new_http_monitor,
    new_monitor, new_stream_monitor, new_target_monitor,
};

/// The README's examples compile.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
