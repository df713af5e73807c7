//! Detection latency: the time from an upstream stopping to our monitor's `down` event,
//! with and without `fast_interval`.
//!
//! The child starts an upstream of its own, puts two sets of monitors on it (one with
//! `fast_interval`, one without; `retries` failures make `down`), waits until every
//! monitor's jittered phase is set, kills the upstream and times each `down`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context, Result};
use health_check::HttpProbe;
use health_monitor::{HealthMonitor, LastSeenRegistry, Monitor, Scope};
use health_types::{Event, EventKind, EventSink, HealthCheckConfig, Probe, Status, Url};
use tokio::time::Instant;

use crate::{
    server::Upstream,
    spec::{DetectSpec, Detection, DetectionStats},
};

/// An event sink that stamps each `down` with the time it was emitted.
#[derive(Debug, Default)]
struct DownTimes {
    downs: Mutex<HashMap<Arc<str>, Instant>>,
}

impl EventSink for DownTimes {
    fn notify(&self, event: Event) {
        if event.kind == EventKind::Down {
            let now = Instant::now();
            self.downs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(event.service)
                .or_insert(now);
        }
    }
}

impl DownTimes {
    fn count(&self) -> usize {
        self.downs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn get(&self, name: &str) -> Option<Instant> {
        self.downs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }
}

/// Runs the detection scenario.
pub(crate) async fn run(spec: &DetectSpec) -> Result<Detection> {
    let upstream = Upstream::spawn(8, 0).await?;
    let targets = upstream.targets.http.clone();
    let interval = Duration::from_millis(spec.interval_ms);
    let fast = Duration::from_millis(spec.fast_interval_ms);
    let base = HealthCheckConfig {
        interval,
        retries: spec.retries,
        ..Default::default()
    };
    let probe: Arc<dyn Probe> = Arc::new(HttpProbe::try_new(&base)?);
    let sink = Arc::new(DownTimes::default());
    let registry = Arc::new(LastSeenRegistry::new());
    let scope = Scope::new();
    let variants = [
        ("plain", Arc::new(base.clone())),
        (
            "fast",
            Arc::new(HealthCheckConfig {
                fast_interval: Some(fast),
                ..base.clone()
            }),
        ),
    ];
    let mut monitors = Vec::new();
    for (variant, config) in &variants {
        for i in 0..spec.monitors {
            let target = targets[i % targets.len()];
            let url = Url::parse(&format!("http://{target}/{variant}/{i}"))?;
            let monitor = Monitor::builder(format!("{variant}-{i}"), url, probe.clone())
                .shared_config(config.clone())
                .sink(sink.clone())
                .last_seen(registry.clone())
                .build()
                .context("cannot build a monitor")?;
            monitor.start(&scope)?;
            monitors.push((*variant, monitor));
        }
    }
    tokio::time::sleep(Duration::from_millis(spec.stop_after_ms)).await;
    let healthy = monitors
        .iter()
        .filter(|(_, m)| m.status() == Status::Healthy)
        .count();
    anyhow::ensure!(
        healthy == monitors.len(),
        "only {healthy} of {} monitors are healthy before the upstream stops",
        monitors.len()
    );

    upstream.stop().await?;
    let stopped = Instant::now();
    // The slowest detection: just missed by one check, then `retries` intervals.
    let deadline = stopped + interval * u32::try_from(spec.retries + 1).unwrap_or(4) + interval;
    while sink.count() < monitors.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scope.shutdown().await;

    let latencies = |variant: &str| -> Vec<f64> {
        monitors
            .iter()
            .filter(|(v, _)| *v == variant)
            .filter_map(|(_, m)| sink.get(m.name()))
            .map(|down| down.saturating_duration_since(stopped).as_secs_f64() * 1000.0)
            .collect()
    };
    let without = summarize(latencies("plain"), spec.monitors);
    let with = summarize(latencies("fast"), spec.monitors);
    Ok(Detection {
        interval_ms: spec.interval_ms,
        fast_interval_ms: spec.fast_interval_ms,
        retries: spec.retries,
        scale: spec.scale,
        ratio: if without.mean_ms > 0.0 {
            (with.mean_ms / without.mean_ms * 1e4).round() / 1e4
        } else {
            0.0
        },
        without_fast_interval: without,
        with_fast_interval: with,
    })
}

fn summarize(mut ms: Vec<f64>, monitors: usize) -> DetectionStats {
    ms.sort_by(f64::total_cmp);
    let detected = ms.len();
    if detected == 0 {
        return DetectionStats {
            monitors,
            ..Default::default()
        };
    }
    // To the microsecond: finer would be noise.
    let micros = |x: f64| (x * 1000.0).round() / 1000.0;
    DetectionStats {
        monitors,
        detected,
        mean_ms: micros(ms.iter().sum::<f64>() / detected as f64),
        p50_ms: micros(ms[(detected - 1) / 2]),
        min_ms: micros(ms[0]),
        max_ms: micros(ms[detected - 1]),
    }
}
