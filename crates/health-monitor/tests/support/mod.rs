//! The fakes and helpers that the lifecycle tests share: a scripted [`FakeProbe`] and
//! builders of monitors on a wall clock that follows tokio's paused clock.

// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, UNIX_EPOCH},
};

use async_trait::async_trait;
use health_monitor::{HealthMonitor, LastSeenRegistry, Monitor, MonitorBuilder, Scope};
use health_types::{
    CheckKind, CheckResult, ConfigError, Event, HealthCheckConfig, Probe, ProbeError, TokioClock,
    Url,
};
use tokio::{
    sync::mpsc::{self, UnboundedReceiver},
    time::Instant,
};

/// What a [`FakeProbe`] does on one call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Act {
    Healthy,
    Unhealthy,
    Error,
    /// Fails on our side: an error of kind `local` (`too many open files`).
    Local,
    Panic,
    /// Answers healthy after this long.
    Slow(Duration),
    Hang,
}

/// A scripted probe that records every call and counts calls in flight.
pub(crate) struct FakeProbe {
    script: Mutex<Box<dyn FnMut(usize) -> Act + Send>>,
    /// When each call began and the URL it checked.
    pub(crate) calls: Mutex<Vec<(Instant, Url)>>,
    /// Calls running now.
    pub(crate) in_flight: AtomicUsize,
    /// The most calls that ran at once.
    pub(crate) max_in_flight: AtomicUsize,
    /// Calls dropped before they returned.
    pub(crate) dropped: AtomicUsize,
    t0: Instant,
}

impl std::fmt::Debug for FakeProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProbe").finish_non_exhaustive()
    }
}

impl FakeProbe {
    pub(crate) fn new(script: impl FnMut(usize) -> Act + Send + 'static) -> Arc<Self> {
        Arc::new(FakeProbe {
            script: Mutex::new(Box::new(script)),
            calls: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            t0: Instant::now(),
        })
    }

    pub(crate) fn always(act: Act) -> Arc<Self> {
        Self::new(move |_| act)
    }

    /// Seconds since creation at which each call began.
    pub(crate) fn call_times(&self) -> Vec<f64> {
        self.call_offsets(Duration::as_secs_f64)
    }

    /// Each call's start since creation, measured by `unit`.
    pub(crate) fn call_offsets<T>(&self, unit: impl Fn(&Duration) -> T) -> Vec<T> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|(at, _)| unit(&(*at - self.t0))).collect()
    }

    pub(crate) fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

/// Counts a call as in flight until dropped, and counts drops that happen mid-call.
struct InFlight<'a>(&'a FakeProbe, bool);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Probe for FakeProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let index = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((Instant::now(), url.clone()));
            calls.len() - 1
        };
        let act = (self.script.lock().unwrap())(index);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut guard = InFlight(self, false);
        let outcome = match act {
            Act::Healthy => Ok(CheckResult::healthy("ok", Duration::from_millis(7))),
            Act::Unhealthy => Ok(CheckResult::unhealthy(
                CheckKind::Status,
                "HTTP 503 Service Unavailable",
                Duration::from_millis(3),
            )),
            Act::Error => Err(ProbeError::new(CheckKind::Io, "permission denied")),
            Act::Local => Err(ProbeError::new(CheckKind::Local, "too many open files")),
            Act::Panic => panic!("boom"),
            Act::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(CheckResult::healthy("slow", d))
            }
            Act::Hang => std::future::pending().await,
        };
        guard.1 = true;
        outcome
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        if url.host_str().is_none() {
            return Err(ConfigError::url(url, "no host"));
        }
        Ok(())
    }
}

pub(crate) fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

pub(crate) fn no_jitter(config: HealthCheckConfig) -> HealthCheckConfig {
    HealthCheckConfig {
        jitter: Some(Duration::ZERO),
        ..config
    }
}

/// A config that checks every `secs` seconds, without jitter; other keys default.
pub(crate) fn every(secs: u64) -> HealthCheckConfig {
    no_jitter(HealthCheckConfig {
        interval: Duration::from_secs(secs),
        ..Default::default()
    })
}

/// The wall-clock time the tests' monitors start at.
pub(crate) const BASE_SECS: u64 = 1_700_000_000;

/// A monitor named `name` of `target` with `probe`, a wall clock that follows the paused
/// clock from [`BASE_SECS`], and a last-seen registry of its own.
pub(crate) fn builder_of(name: &str, target: &str, probe: Arc<FakeProbe>) -> MonitorBuilder {
    Monitor::builder(name, url(target), probe)
        .clock(Arc::new(TokioClock::starting_at(
            UNIX_EPOCH + Duration::from_secs(BASE_SECS),
        )))
        .last_seen(Arc::new(LastSeenRegistry::new()))
}

/// [`builder_of`] `svc` at `http://svc.test/`.
pub(crate) fn builder(probe: Arc<FakeProbe>) -> MonitorBuilder {
    builder_of("svc", "http://svc.test/", probe)
}

pub(crate) fn monitor(probe: Arc<FakeProbe>, config: HealthCheckConfig) -> Monitor {
    builder(probe).config(config).build().unwrap()
}

/// Builds the monitor with its events going to the returned receiver.
pub(crate) fn with_events(builder: MonitorBuilder) -> (Monitor, UnboundedReceiver<Event>) {
    let (tx, events) = mpsc::unbounded_channel::<Event>();
    (builder.sink(Arc::new(tx)).build().unwrap(), events)
}

/// Starts `m` under a new scope.
pub(crate) fn start(m: &Monitor) -> Scope {
    let scope = Scope::new();
    m.start(&scope).unwrap();
    scope
}

/// Lets paused time run for `d` (timers fire in order as the clock auto-advances).
pub(crate) async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}
