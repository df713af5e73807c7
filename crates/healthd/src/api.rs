//! The HTTP API (SPEC §7), `/metrics`, `/healthz` and the status page.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/monitors` | array of monitors in the §4 JSON form |
//! | `GET /api/v1/monitors/{name}` | one monitor, or 404 |
//! | `POST /api/v1/monitors/{name}/check` | runs one check now: `{"healthy","kind","detail","latency"}` (ns) |
//! | `POST /api/v1/monitors/{name}/restart` | restarts it; answers with its JSON |
//! | `GET /api/v1/health` | map name → `{status, uptime, latency, detail}`, durations in ns (GoDoxy) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /` | the status page |
//! | `GET /healthz` | `ok` |
//!
//! Who may use which route is [`auth`]'s (SPEC §9.3): writes need the `[server] token`
//! when one is set, else a loopback client; a cross-origin write is refused; reads are
//! open unless `public_read = false`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header},
    middleware,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use health_monitor::{HealthMonitor, Monitor};
use health_types::{CheckResult, MonitorJson, Status, duration_nanos};
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    config::ApiAccess,
    metrics::{Metrics, NotifyStats},
};

/// The status page: one self-contained HTML file.
const STATUS_PAGE: &str = include_str!("status.html");

mod auth;

/// What the API serves.
#[derive(Clone, Debug)]
pub(crate) struct ApiState {
    inner: Arc<Inner>,
    access: Arc<ApiAccess>,
}

#[derive(Debug)]
struct Inner {
    monitors: Arc<[Monitor]>,
    by_name: HashMap<String, usize>,
    metrics: Metrics,
}

impl ApiState {
    /// Serves `monitors` (in this order) and, optionally, notification counters.
    pub(crate) fn new(monitors: Vec<Monitor>, notify: Option<Arc<dyn NotifyStats>>) -> Self {
        let monitors: Arc<[Monitor]> = monitors.into();
        let by_name = monitors
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name().to_owned(), i))
            .collect();
        ApiState {
            inner: Arc::new(Inner {
                metrics: Metrics::new(monitors.clone(), notify),
                monitors,
                by_name,
            }),
            access: Arc::new(ApiAccess::default()),
        }
    }

    /// Who may use the API; without this call, the default: no token, public reads and
    /// loopback-only writes.
    pub(crate) fn with_access(mut self, access: ApiAccess) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// The monitors served.
    fn monitors(&self) -> &[Monitor] {
        &self.inner.monitors
    }

    fn find(&self, name: &str) -> Result<&Monitor, ApiError> {
        self.inner
            .by_name
            .get(name)
            .map(|&i| &self.inner.monitors[i])
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no monitor named {name:?}")))
    }
}

/// The router of the whole API. Its clients' addresses come from the server as
/// [`ConnectInfo`](axum::extract::ConnectInfo) (`crate::server` puts them there); a
/// write from a client of unknown address is refused.
pub(crate) fn router(state: ApiState) -> Router {
    let access = Arc::clone(&state.access);
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/health", get(health))
        .route("/api/v1/monitors", get(list))
        .route("/api/v1/monitors/{name}", get(one))
        .route("/api/v1/monitors/{name}/check", post(check))
        .route("/api/v1/monitors/{name}/restart", post(restart))
        .with_state(state)
        .layer(middleware::from_fn_with_state(access, auth::admit))
}

/// An error answer: a status and a JSON `{"error": ...}` body.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

async fn status_page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        axum::body::Body::new(state.inner.metrics.stream()),
    )
        .into_response()
}

async fn list(State(state): State<ApiState>) -> Json<Vec<MonitorJson>> {
    Json(state.monitors().iter().map(Monitor::to_json).collect())
}

async fn one(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<MonitorJson>, ApiError> {
    Ok(Json(state.find(&name)?.to_json()))
}

async fn check(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<CheckResult>, ApiError> {
    let monitor = state.find(&name)?;
    // The monitor's next check, now (SPEC §9.3): never alongside another of its checks,
    // shared by concurrent requests, fed to its state machine. A client that goes away
    // leaves the check to finish. A monitor that is not running: 409.
    let result = monitor
        .check_now()
        .await
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(result))
}

async fn restart(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<MonitorJson>, ApiError> {
    let monitor = state.find(&name)?;
    monitor
        .restart()
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(monitor.to_json()))
}

/// One entry of `/api/v1/health` (GoDoxy's form: durations in ns).
#[derive(Debug, Serialize)]
struct HealthEntry {
    status: Status,
    uptime: u64,
    latency: u64,
    detail: String,
}

async fn health(State(state): State<ApiState>) -> Json<HashMap<String, HealthEntry>> {
    let now = Instant::now();
    Json(
        state
            .monitors()
            .iter()
            .map(|m| {
                let s = m.snapshot();
                (
                    m.name().to_owned(),
                    HealthEntry {
                        status: s.status,
                        uptime: duration_nanos(s.uptime(now)),
                        latency: duration_nanos(s.latency),
                        detail: s.detail.clone(),
                    },
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
