//! The limit: a pooled hyper-util client (HTTP) or bare connects (TCP) in a tight loop,
//! `spec.monitors` requests in flight at once, over the same targets as the monitors.
//! No scheduling at all, so its CPU per request is what a check cannot go below.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::net::TcpStream;

use crate::{
    spec::{Measured, Proto, Spec},
    stats::{Stats, baseline},
};

/// A bound on each loop's requests, on top of the process ending after its window.
const MAX_REQUESTS_PER_LOOP: usize = 2_000_000;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Runs `spec` as `spec.monitors` loops in flight.
pub(crate) async fn run(spec: &Spec, stats: Arc<Stats>) -> Result<Measured> {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(50))
        .build_http();
    let uris: Arc<[Uri]> = (0..spec.targets.len())
        .map(|i| spec.url(i).parse::<Uri>())
        .collect::<Result<_, _>>()
        .context("bad target URI")?;
    let next = Arc::new(AtomicUsize::new(0));
    let rss_base = baseline().await;
    for _ in 0..spec.monitors.max(1) {
        let stats = stats.clone();
        let next = next.clone();
        match spec.proto {
            Proto::Http => {
                let client = client.clone();
                let uris = uris.clone();
                tokio::spawn(async move {
                    for _ in 0..MAX_REQUESTS_PER_LOOP {
                        let uri = &uris[next.fetch_add(1, Ordering::Relaxed) % uris.len()];
                        stats.done(get(&client, uri).await);
                    }
                });
            }
            Proto::Tcp => {
                let targets = spec.targets.clone();
                tokio::spawn(async move {
                    for _ in 0..MAX_REQUESTS_PER_LOOP {
                        let target = targets[next.fetch_add(1, Ordering::Relaxed) % targets.len()];
                        stats.done(TcpStream::connect(target).await.is_ok());
                    }
                });
            }
        }
    }
    Ok(stats.measure(spec, rss_base).await)
}

/// One `GET`, its body read to the end; `true` on a 2xx.
async fn get(client: &HttpClient, uri: &Uri) -> bool {
    let Ok(request) = Request::get(uri.clone()).body(Empty::new()) else {
        return false;
    };
    match client.request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}
