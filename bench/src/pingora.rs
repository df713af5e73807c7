//! The Pingora baseline: pingora-load-balancing's `Backends` with its `HttpHealthCheck`
//! or `TcpHealthCheck` (default settings: a new connection per check), driven round by
//! round as `LoadBalancer`'s background service drives it.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use pingora_load_balancing::{
    Backend, Backends,
    discovery::Static,
    health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck},
};
use tokio::time::Instant;

use crate::{
    spec::{Measured, Proto, Spec},
    stats::{Stats, baseline},
};

/// Wraps Pingora's check: records each check's lag behind its round's due time and
/// counts results.
struct Recorder {
    inner: Box<dyn HealthCheck + Send + Sync>,
    stats: Arc<Stats>,
    /// When the current round was due ([`Stats::nanos`]).
    round_due: Arc<AtomicU64>,
}

#[async_trait]
impl HealthCheck for Recorder {
    async fn check(&self, target: &Backend) -> pingora_error::Result<()> {
        let due = self.round_due.load(Ordering::Relaxed);
        self.stats
            .lag_nanos(self.stats.now_nanos().saturating_sub(due));
        let outcome = self.inner.check(target).await;
        self.stats.done(outcome.is_ok());
        outcome
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

fn check_for(proto: Proto) -> Box<dyn HealthCheck + Send + Sync> {
    match proto {
        Proto::Http => Box::new(HttpHealthCheck::new("localhost", false)),
        Proto::Tcp => TcpHealthCheck::new(),
    }
}

/// Runs `spec` with Pingora's health checks over `spec.monitors` backends.
pub(crate) async fn run(spec: &Spec, stats: Arc<Stats>) -> Result<Measured> {
    // One check outside the measured set warms the connector.
    let warm = Backend::new(&spec.target(0).to_string()).map_err(|e| anyhow!("{e}"))?;
    check_for(spec.proto)
        .check(&warm)
        .await
        .map_err(|e| anyhow!("the upstream is not healthy: {e}"))?;
    let rss_base = baseline().await;

    // A backend is its address and weight: the weight tells apart the backends that
    // share an upstream address (it only matters for selection, which is not used).
    let len = spec.targets.len();
    let backends: BTreeSet<Backend> = (0..spec.monitors)
        .map(|i| Backend::new_with_weight(&spec.target(i).to_string(), 1 + i / len))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("bad backend: {e}"))?;
    anyhow::ensure!(backends.len() == spec.monitors, "duplicate backends");
    let mut backends = Backends::new(Static::new(backends));
    let round_due = Arc::new(AtomicU64::new(0));
    backends.set_health_check(Box::new(Recorder {
        inner: check_for(spec.proto),
        stats: stats.clone(),
        round_due: round_due.clone(),
    }));
    backends
        .update(|_| {})
        .await
        .map_err(|e| anyhow!("{e}"))
        .context("cannot load the backends")?;
    tokio::spawn(drive(
        backends,
        spec.interval(),
        spec.parallel,
        stats.clone(),
        round_due,
    ));
    Ok(stats.measure(spec, rss_base).await)
}

/// The health-check half of `LoadBalancer::run` (pingora-load-balancing 0.9,
/// `background.rs`): run a pass, then sleep until `now + frequency`, where `now` is when
/// the pass began. Reproduced rather than called so that each round's due time is known.
async fn drive(
    backends: Backends,
    frequency: Duration,
    parallel: bool,
    stats: Arc<Stats>,
    round_due: Arc<AtomicU64>,
) {
    let mut due = Instant::now();
    let mut now = due;
    loop {
        round_due.store(stats.nanos(due), Ordering::Relaxed);
        backends.run_health_check(parallel).await;
        due = now + frequency;
        tokio::time::sleep_until(due).await;
        now = Instant::now();
    }
}
