//! Our monitors: `n` monitors on one `Scope` (one heap, one timer, default check slots),
//! one shared config, one shared probe (an `HttpProbe` on one pooled `HttpClient`, or a
//! `StreamProbe`) wrapped to time each check's start; with [`Spec::store`], every
//! monitor also reports to one `health_store::Store` on a temp file, as healthd wires it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use async_trait::async_trait;
use health_check::{HttpClient, HttpClientConfig, HttpProbe, StreamProbe};
use health_monitor::{HealthMonitor, LastSeenRegistry, Monitor, Scope};
use health_store::{Store, StoreOptions};
use health_types::{
    CheckResult, Clock, ConfigError, HealthCheckConfig, MonitorState, Probe, ProbeError, StateSink,
    Status, SystemClock, Url,
};
use tempfile::TempDir;

use crate::{
    spec::{Measured, Proto, Spec},
    stats::{Stats, baseline},
};

/// The slot value of a monitor that has not been checked yet.
const NEVER: u64 = u64::MAX;

/// Wraps the shared probe: records each check's schedule lag and counts results.
///
/// The monitor's next check is due one interval after the previous one began (the
/// jitter offsets only the second check), so from the third check on
/// `lag = |start − (previous start + interval)|` (our scheduler may start a check up to
/// half a millisecond early; that counts as lag too). The monitor is named by its URL's last
/// path segment; its slot holds the previous start and how many checks it has seen.
#[derive(Debug)]
struct LagProbe {
    inner: Arc<dyn Probe>,
    stats: Arc<Stats>,
    interval_ns: u64,
    /// Per monitor: `start_ns << 2 | seen` (seen saturates at 3), or [`NEVER`].
    slots: Box<[AtomicU64]>,
}

impl LagProbe {
    fn new(inner: Arc<dyn Probe>, stats: Arc<Stats>, monitors: usize, interval: Duration) -> Self {
        LagProbe {
            inner,
            stats,
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            // A non-zero fill makes every page resident now, before the baseline is read.
            slots: (0..monitors).map(|_| AtomicU64::new(NEVER)).collect(),
        }
    }

    fn started(&self, url: &Url) {
        let Some(slot) = url
            .path()
            .rsplit('/')
            .next()
            .and_then(|id| id.parse::<usize>().ok())
            .and_then(|id| self.slots.get(id))
        else {
            return;
        };
        let now = self.stats.now_nanos();
        // Checks of one monitor never overlap, so this load-then-store has one writer.
        let previous = slot.load(Ordering::Relaxed);
        let seen = if previous == NEVER { 0 } else { previous & 3 };
        slot.store(now << 2 | (seen + 1).min(3), Ordering::Relaxed);
        if seen >= 2 {
            let due = (previous >> 2).saturating_add(self.interval_ns);
            // Our scheduler may start a check up to half a millisecond early: the
            // deviation counts either way.
            self.stats.lag_nanos(now.abs_diff(due));
        }
    }
}

#[async_trait]
impl Probe for LagProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        self.started(url);
        let outcome = self.inner.check(url).await;
        self.stats
            .done(matches!(&outcome, Ok(result) if result.healthy));
        outcome
    }

    fn validate_url(&self, url: &Url) -> Result<(), ConfigError> {
        self.inner.validate_url(url)
    }
}

/// How often health-monitor records a `last_seen` that changed alone: a steady healthy
/// monitor's one write to its store (health-monitor's `LAST_SEEN_EVERY`).
const LAST_SEEN_EVERY: Duration = Duration::from_secs(60);

/// The notifier every event is routed to (no dispatcher delivers it: the bench measures
/// what the monitors and the store's writer cost).
const NOTIFIER: &str = "webhook";

/// A store on a temp file, wired as healthd wires its one store, and the states the
/// monitors resume from.
#[derive(Debug)]
struct BenchStore {
    store: Arc<Store>,
    saved: HashMap<String, MonitorState>,
    /// Removed (with the store's files) when dropped.
    dir: TempDir,
}

impl BenchStore {
    /// Opens the store and leaves in it what a healthd that ran these monitors for a
    /// while leaves: each monitor healthy, last seen `i / n` of a minute ago. Resuming from
    /// these states puts the monitors where a long-running healthd has them: none records
    /// its first check (its state is unchanged), and their once-a-minute `last_seen`
    /// writes are spread evenly over the minute, so that a short window sees the steady
    /// rate (n per minute) rather than none (the monitors' first writes would otherwise
    /// all fall in the warm-up, and the next ones a minute later).
    fn open(config: &HealthCheckConfig, names: &[String]) -> Result<BenchStore> {
        let dir = tempfile::tempdir().context("cannot create the store's directory")?;
        let store = Store::open(dir.path().join("healthd.db"), StoreOptions::default())
            .context("cannot open the store")?;
        store.set_router(|_monitor| vec![NOTIFIER.to_owned()]);
        // healthd's hook wakes the dispatcher's workers; here no dispatcher runs.
        store.set_commit_hook(|_notifiers| {});
        let now = SystemClock.now();
        let spread = LAST_SEEN_EVERY.as_nanos() / names.len().max(1) as u128;
        for (i, name) in names.iter().enumerate() {
            let ago = Duration::from_nanos(u64::try_from(spread * i as u128).unwrap_or(0));
            let state = MonitorState {
                status: Status::Healthy,
                passes: config.rise_threshold(),
                last_seen: Some(now - ago),
                ..MonitorState::default()
            };
            store.record(name, &state, &[]);
        }
        store.flush().context("cannot write the initial states")?;
        let saved = store.load_states().context("cannot read the states back")?;
        Ok(BenchStore {
            store: Arc::new(store),
            saved,
            dir,
        })
    }

    /// Commits what is pending, stops the writer and removes the files: the process
    /// exits right after reporting, which would leave them behind.
    fn close(self) -> Result<()> {
        self.store.close().context("cannot close the store")?;
        drop(self.store);
        self.dir.close().context("cannot remove the store's files")
    }
}

/// Runs `spec` with our monitors.
pub(crate) async fn run(spec: &Spec, stats: Arc<Stats>) -> Result<Measured> {
    // Defaults otherwise: timeout 10 s, retries 3, jitter min(interval, 10 s).
    let config = Arc::new(HealthCheckConfig {
        interval: spec.interval(),
        ..Default::default()
    });
    let inner: Arc<dyn Probe> = match spec.proto {
        Proto::Http => {
            let client = HttpClient::try_new(&config, &HttpClientConfig::default())?;
            Arc::new(HttpProbe::try_with_client(&config, client)?)
        }
        Proto::Tcp => Arc::new(StreamProbe::try_new(&config)?),
    };
    // One check outside the measured set warms the probe (and the HTTP pool's code), on
    // a path whose target never flaps.
    let warm_url = Url::parse(&spec.steady_url(0))?;
    let warm = inner.check(&warm_url).await?;
    anyhow::ensure!(warm.healthy, "the upstream is not healthy: {}", warm.detail);
    let probe: Arc<dyn Probe> = Arc::new(LagProbe::new(
        inner,
        stats.clone(),
        spec.monitors,
        spec.interval(),
    ));
    let registry = Arc::new(LastSeenRegistry::new());
    let scope = Scope::new();
    let names: Vec<String> = (0..spec.monitors).map(|i| format!("svc-{i}")).collect();
    let mut store = spec
        .store
        .then(|| BenchStore::open(&config, &names))
        .transpose()?;
    let rss_base = baseline().await;

    let mut monitors = Vec::with_capacity(spec.monitors);
    for (i, name) in names.into_iter().enumerate() {
        let url = Url::parse(&spec.url(i))?;
        let mut builder = Monitor::builder(name.as_str(), url, probe.clone())
            .shared_config(config.clone())
            .last_seen(registry.clone());
        if let Some(store) = &mut store {
            // One store for all monitors, as healthd has it.
            builder = builder.state_sink(Arc::clone(&store.store) as Arc<dyn StateSink>);
            if let Some(state) = store.saved.remove(&name) {
                builder = builder.restore(state);
            }
        }
        let monitor = builder.build().context("cannot build a monitor")?;
        monitor.start(&scope)?;
        monitors.push(monitor);
    }
    let measured = stats.measure(spec, rss_base).await;
    if let Some(store) = store {
        store.close()?;
    }
    // The process exits right after reporting; the monitors need no orderly stop.
    drop(monitors);
    Ok(measured)
}
