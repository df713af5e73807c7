//! An example of embedding `health-monitor` in a reverse proxy: a hyper 1 proxy that
//! balances requests round-robin over the upstreams whose monitors say they may get
//! traffic, and that turns trouble seen in its own traffic into an immediate check.
//!
//! # What it shows
//!
//! - **Rotation from monitors.** Each [`Upstream`] pairs an origin (`http://host:port`)
//!   with a started [`Monitor`](health_monitor::Monitor). One task per upstream awaits
//!   the monitor's [`subscribe`](health_monitor::HealthMonitor::subscribe) changes and,
//!   when [`Status::is_good`](health_types::Status::is_good) flips, rebuilds the rotation
//!   (an `ArcSwap`), so the request path reads it without a lock. `starting`, `healthy`
//!   and `napping` are good: an upstream is routed to from its monitor's start, and taken
//!   out when its monitor reaches `unhealthy` or `error` (after `retries` failed checks).
//!   When no upstream is in rotation the proxy answers `503` with a plain-text reason.
//! - **Passive signals.** The proxy counts, per upstream, consecutive failed exchanges:
//!   `5xx` answers and requests that failed at the transport (a connect error, a reset).
//!   At [`ProxyConfig::passive_threshold`] of them in a row (default 3; 0 turns this
//!   off) it calls [`check_now`](health_monitor::Monitor::check_now) on that upstream's
//!   monitor at once, at most one in flight per upstream, instead of waiting for the
//!   interval. The check's result feeds the monitor's state machine like any other, so
//!   the fall threshold (`retries`) still decides: a dead upstream leaves rotation after
//!   `retries` checks a few tens of milliseconds apart rather than `retries` intervals.
//!   Passive signals only hasten checks; they never take an upstream out by themselves,
//!   so a burst of `500`s from an application bug does not empty the rotation while the
//!   health endpoint still answers.
//! - **The retry rule.** A request that failed to *connect* to its upstream (nothing was
//!   sent) is retried once on another upstream in rotation, so clients do not see a
//!   dead upstream's connect errors while its monitor is still confirming the outage.
//!   Only connect failures are retried: once a request was sent it may have had side
//!   effects, so a reset or a timeout after that is answered `502` and not replayed.
//!   The request body is not buffered for this: it is handed back untouched when the
//!   connection could not be made.
//!
//! The monitors belong to the caller: build them (for example with
//! [`new_http_monitor`](health_monitor::new_http_monitor)), start them under a
//! [`Scope`](health_monitor::Scope), and hand them to the proxy.
//!
//! ```no_run
//! use health_lb_proxy::{Proxy, ProxyConfig, Upstream};
//! use health_monitor::{HealthMonitor, Scope, new_http_monitor};
//! use health_types::{HealthCheckConfig, Url};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::new();
//! let config = HealthCheckConfig {
//!     interval: std::time::Duration::from_secs(1),
//!     retries: 2,
//!     ..Default::default()
//! };
//! let mut upstreams = Vec::new();
//! for origin in ["http://127.0.0.1:8081", "http://127.0.0.1:8082"] {
//!     let url = Url::parse(origin)?;
//!     let monitor = new_http_monitor(origin, &config, url.clone())?;
//!     monitor.start(&scope)?;
//!     upstreams.push(Upstream::try_new(&url, monitor)?);
//! }
//! let proxy = Proxy::try_new(upstreams, ProxyConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! proxy.serve(listener).await; // until `proxy.shutdown()`
//! scope.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The binary `lb-proxy` runs this from the command line (`lb-proxy --help`).

mod body;
mod error;
mod proxy;
mod upstream;

pub use self::{
    error::ProxyError,
    proxy::{Proxy, ProxyConfig},
    upstream::Upstream,
};
