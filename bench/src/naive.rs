//! The naive design: one tokio task per target, each with its own `tokio::time::interval`
//! started at a random phase, checking with one shared `reqwest::Client` (HTTP) or a bare
//! `TcpStream::connect` (TCP).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::{
    net::TcpStream,
    time::{Instant, MissedTickBehavior},
};

use crate::{
    spec::{Measured, Proto, Spec},
    stats::{Stats, baseline},
};

/// The per-check deadline, as our default `timeout`.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `spec` with one task per target.
pub(crate) async fn run(spec: &Spec, stats: Arc<Stats>) -> Result<Measured> {
    let client = match spec.proto {
        Proto::Http => {
            let client = reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .context("cannot build the reqwest client")?;
            // One check outside the measured set warms the client.
            let response = client.get(spec.url(0)).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "upstream answered {response:?}"
            );
            response.bytes().await?;
            Some(client)
        }
        Proto::Tcp => {
            drop(TcpStream::connect(spec.target(0)).await?);
            None
        }
    };
    let rss_base = baseline().await;

    let start = Instant::now();
    let interval = spec.interval();
    let interval_ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    for i in 0..spec.monitors {
        // The natural jitter: each task starts at a random point of the first period.
        let first = start + Duration::from_nanos(fastrand::u64(..interval_ns.max(1)));
        let stats = stats.clone();
        match &client {
            Some(client) => {
                let url = reqwest::Url::parse(&spec.url(i))?;
                tokio::spawn(http_loop(client.clone(), url, first, interval, stats));
            }
            None => {
                tokio::spawn(tcp_loop(spec.target(i), first, interval, stats));
            }
        }
    }
    Ok(stats.measure(spec, rss_base).await)
}

fn ticker(first: Instant, interval: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(first, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

async fn http_loop(
    client: reqwest::Client,
    url: reqwest::Url,
    first: Instant,
    interval: Duration,
    stats: Arc<Stats>,
) {
    let mut ticks = ticker(first, interval);
    loop {
        let due = ticks.tick().await;
        stats.lag_nanos(stats.now_nanos().saturating_sub(stats.nanos(due)));
        let healthy = match client.get(url.clone()).send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        stats.done(healthy);
    }
}

async fn tcp_loop(target: SocketAddr, first: Instant, interval: Duration, stats: Arc<Stats>) {
    let mut ticks = ticker(first, interval);
    loop {
        let due = ticks.tick().await;
        stats.lag_nanos(stats.now_nanos().saturating_sub(stats.nanos(due)));
        let healthy = matches!(
            tokio::time::timeout(TIMEOUT, TcpStream::connect(target)).await,
            Ok(Ok(_))
        );
        stats.done(healthy);
    }
}
