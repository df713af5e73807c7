//! Measures the memory cost of an idle monitor: starts N monitors (default 100 000) on one
//! scope with a 30 s interval, waits until every first check is done, and prints the
//! resident-set growth per monitor (Linux: read from `/proc/self/statm`).
//!
//! `cargo run --release -p health-monitor --example idle_cost [N]`

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use health_monitor::{HealthMonitor, LastSeenRegistry, Monitor, Scope};
use health_types::{CheckResult, HealthCheckConfig, Probe, ProbeError, Url};

/// A probe that answers healthy at once, shared by every monitor, so that what is
/// measured is the monitor and its scheduling, not a probe.
#[derive(Debug)]
struct Instant200;

#[async_trait]
impl Probe for Instant200 {
    async fn check(&self, _url: &Url) -> Result<CheckResult, ProbeError> {
        Ok(CheckResult::healthy(
            "HTTP 200 OK",
            Duration::from_micros(50),
        ))
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let scope = Scope::new();
        let probe: Arc<dyn Probe> = Arc::new(Instant200);
        let registry = Arc::new(LastSeenRegistry::new());
        // One config for all, as monitors built from one `[defaults]` table share it.
        let config = Arc::new(HealthCheckConfig {
            interval: Duration::from_secs(30),
            ..Default::default()
        });
        // Warm the runtime and the scheduler with one monitor before the baseline.
        let warm = Monitor::builder("warm", Url::parse("tcp://10.0.0.1:1")?, probe.clone())
            .last_seen(registry.clone())
            .build()?;
        warm.start(&scope)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = rss_bytes();

        let mut monitors = Vec::with_capacity(n);
        for i in 0..n {
            let url = Url::parse(&format!(
                "tcp://10.{}.{}.{}:80",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ))?;
            let m = Monitor::builder(format!("svc-{i}"), url, probe.clone())
                .shared_config(config.clone())
                .last_seen(registry.clone())
                .build()?;
            m.start(&scope)?;
            monitors.push(m);
        }
        // Wait (bounded) until every monitor has its first result.
        for _ in 0..600 {
            if monitors.iter().all(|m| m.snapshot().checks() >= 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let done = monitors
            .iter()
            .filter(|m| m.snapshot().checks() >= 1)
            .count();
        let after = rss_bytes();
        let per = (after.saturating_sub(before)) as f64 / n as f64;
        println!("monitors: {n} (first check done: {done})");
        println!(
            "rss before: {} KiB, after: {} KiB",
            before / 1024,
            after / 1024
        );
        println!("rss per idle monitor: {per:.0} bytes");
        println!("tasks alive in the scope: {}", scope.task_count());
        scope.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
