//! The HTTP API (SPEC §7, §9.2), `/metrics`, `/healthz`, the badges and the status
//! page.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/monitors` | array of monitors in the §4 JSON form, with §9.2's keys (`uptime24h`, `uptime7d`, `uptime30d`, `downSince`, `lastCheck`) |
//! | `GET /api/v1/monitors/{name}` | one monitor, or 404 |
//! | `GET /api/v1/monitors/{name}/history?since=&until=` | its status changes and latency buckets in `since..until` (unix s; `until` defaults to now, `since` to 24 h before `until`); 400 for a bad span, 404 for no such monitor |
//! | `POST /api/v1/monitors/{name}/check` | runs one check now: the result, `{"healthy","kind","detail","latency"}` (`latency` in ns), plus `phases` (ns each: `dns`, `connect`, `tls`, `first_byte`, those the check went through), `cert` (`{"not_after","subject","serial"}`, when a certificate was seen) and `status_code` (when known) |
//! | `POST /api/v1/monitors/{name}/restart` | restarts it; answers with its JSON |
//! | `GET /api/v1/health` | map name → `{status, uptime, latency, detail}`, durations in ns (GoDoxy) |
//! | `GET /api/v1/events` | Server-Sent Events: one `status` event per monitor, then one whenever a monitor's snapshot changes |
//! | `GET /badge/{name}/status.svg` | an SVG badge of the status |
//! | `GET /badge/{name}/uptime/{24h,7d,30d}.svg` | an SVG badge of the uptime (`99.9%`, `n/a` before any observation) |
//! | `GET /metrics` | Prometheus text 0.0.4, or OpenMetrics 1.0 when `Accept` asks for `application/openmetrics-text` (see [`crate::metrics`]) |
//! | `GET /probe?target=<url>&module=<name>` | one check of `target` as blackbox_exporter answers it (see [`crate::probe_api`]) |
//! | `GET /` | the status page, rendered on the server |
//! | `GET /healthz` | `ok` |
//!
//! Every monitor's JSON, wherever it is served, is one [`MonitorView`]'s: the snapshot's
//! §4 form with the uptimes from the [`HistoryCache`] (`null` without history); its
//! `phases` are in ms, like its `latency` (a check result's are in ns, like its own).
//!
//! The event stream holds one [`watch`](tokio::sync::watch) receiver per monitor and
//! builds an event only when the client takes one: a monitor that changed many times
//! while the client was slow is sent once, as it is now, so a slow client costs no
//! memory beyond its receivers. Keep-alive comments go out every 15 s.
//!
//! Who may use which route is [`auth`]'s (SPEC §9.3): writes need the `[server] token`
//! when one is set, else a loopback client; a cross-origin write is refused; reads are
//! open unless `public_read = false`. `/probe`, a read, is also refused (403) when a
//! browser sent it from another site (`Sec-Fetch-Site`, `Origin`: [`auth`]).

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, Uri, header},
    middleware,
    response::{
        Html, IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures_util::{Stream, StreamExt, stream};
use health_monitor::{HealthMonitor, Monitor, Snapshot, StopCause};
use health_notify::policy::AlertGate;
use health_types::{
    CheckResult, Clock, HistorySpan, HistorySummary, LatencyBucket, MonitorJson, Status,
    StatusChange, SystemClock, duration_nanos,
};
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    config::ApiAccess,
    history::HistoryCache,
    metrics::{Format, Metrics, NotifyStats},
    probe_api::ProbeModules,
    view::MonitorView,
};

mod auth;
mod badge;

/// How often an idle event stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The span `/history` covers when `since` is not given.
const DEFAULT_SPAN: Duration = Duration::from_secs(24 * 60 * 60);

/// What the API serves.
#[derive(Clone, Debug)]
pub(crate) struct ApiState {
    inner: Arc<Inner>,
    access: Arc<ApiAccess>,
    /// The history cache; `None`: no history is kept (the uptimes are `null`, and
    /// `/history` answers 503).
    history: Option<HistoryCache>,
    /// Each monitor's `group`, in the monitors' order (empty: none has one).
    groups: Arc<[Option<String>]>,
    clock: Arc<dyn Clock>,
    /// `/probe`'s defaults, modules and concurrency bound.
    probes: Arc<ProbeModules>,
    /// Tells which monitors a `[[maintenance]]` window covers now (SPEC §9.5); none
    /// without one.
    maintenance: Option<Arc<AlertGate>>,
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
            history: None,
            groups: Arc::new([]),
            clock: Arc::new(SystemClock),
            probes: Arc::new(ProbeModules::default()),
            maintenance: None,
        }
    }

    /// Shows `"maintenance": true` for the monitors a window of `gate`'s covers now.
    pub(crate) fn with_maintenance(mut self, gate: Arc<AlertGate>) -> Self {
        self.maintenance = Some(gate);
        self
    }

    /// Who may use the API; without this call, the default: no token, public reads and
    /// loopback-only writes.
    pub(crate) fn with_access(mut self, access: ApiAccess) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// Where the uptimes, the status page's history and `/history` come from; without
    /// this call there is no history.
    pub(crate) fn with_history(mut self, history: HistoryCache) -> Self {
        self.history = Some(history);
        self
    }

    /// What `/probe` checks with (without this call: the built-in defaults, no modules).
    pub(crate) fn with_probe_modules(mut self, probes: ProbeModules) -> Self {
        self.probes = Arc::new(probes);
        self
    }

    /// Each monitor's `group` key, in the order of the monitors.
    pub(crate) fn with_groups(mut self, groups: Vec<Option<String>>) -> Self {
        self.groups = groups.into();
        self
    }

    /// The wall clock of `/history`'s default span and the status page (default: the
    /// system's).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The monitors served.
    fn monitors(&self) -> &[Monitor] {
        &self.inner.monitors
    }

    /// The index of the monitor `name`, or a 404.
    fn find(&self, name: &str) -> Result<usize, ApiError> {
        self.inner
            .by_name
            .get(name)
            .copied()
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no monitor named {name:?}")))
    }

    /// Every monitor as the API and the status page show it, in config order.
    pub(crate) fn views(&self) -> Vec<MonitorView> {
        (0..self.monitors().len()).map(|i| self.view(i)).collect()
    }

    /// The monitor at `index` as the API and the status page show it.
    fn view(&self, index: usize) -> MonitorView {
        let monitor = &self.monitors()[index];
        let snapshot = monitor.snapshot();
        let summary = self.history.as_ref().and_then(|h| h.get(monitor.name()));
        MonitorView {
            json: self.json_of(monitor, &snapshot, summary.as_deref()),
            group: self.groups.get(index).cloned().flatten(),
            summary,
            // A running monitor has no stop cause: each start begins a fresh snapshot.
            stopped_why: snapshot.stop_cause.as_ref().map(stopped_why),
        }
    }

    /// The §4 JSON (with §9.2's keys) of the monitor at `index`.
    fn json(&self, index: usize) -> MonitorJson {
        let monitor = &self.monitors()[index];
        let summary = self.history.as_ref().and_then(|h| h.get(monitor.name()));
        self.json_of(monitor, &monitor.snapshot(), summary.as_deref())
    }

    /// `monitor`'s §4 JSON from `snapshot`, with the uptimes of `summary` and whether a
    /// maintenance window covers it.
    fn json_of(
        &self,
        monitor: &Monitor,
        snapshot: &Snapshot,
        summary: Option<&HistorySummary>,
    ) -> MonitorJson {
        let mut json = snapshot.to_json(monitor.config(), Instant::now());
        if let Some(summary) = summary {
            json.uptime_24h = summary.uptime_24h;
            json.uptime_7d = summary.uptime_7d;
            json.uptime_30d = summary.uptime_30d;
        }
        json.maintenance = self
            .maintenance
            .as_ref()
            .is_some_and(|gate| gate.in_maintenance(monitor.name()));
        json
    }
}

/// Why a monitor stopped, as the status page says it.
fn stopped_why(cause: &StopCause) -> String {
    match cause {
        StopCause::Scope => "stopped: healthd is shutting down".to_owned(),
        // "stopped: <reason>", "stopped itself after <n> errors in a row: <detail>".
        other => other.to_string(),
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
        .route("/probe", get(probe))
        .route("/api/v1/health", get(health))
        .route("/api/v1/events", get(events))
        .route("/api/v1/monitors", get(list))
        .route("/api/v1/monitors/{name}", get(one))
        .route("/api/v1/monitors/{name}/history", get(history))
        .route("/api/v1/monitors/{name}/check", post(check))
        .route("/api/v1/monitors/{name}/restart", post(restart))
        .route("/badge/{name}/status.svg", get(badge::status))
        .route("/badge/{name}/uptime/{file}", get(badge::uptime))
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

async fn status_page(State(state): State<ApiState>) -> Html<String> {
    Html(crate::page::render(&state.views(), state.clock.now()))
}

/// `/metrics`: OpenMetrics when the client asks for it, else Prometheus text 0.0.4.
async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        axum::body::Body::new(state.inner.metrics.stream(format)),
    )
        .into_response()
}

/// `/probe`: one check of `target` with `module` (see [`crate::probe_api`]).
async fn probe(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    if let Err(reason) = auth::same_site_only(&headers, &uri) {
        return crate::probe_api::plain(StatusCode::FORBIDDEN, reason);
    }
    let monitor = |name: &str| {
        let monitor = &state.monitors()[*state.inner.by_name.get(name)?];
        Some((monitor.config().clone(), monitor.url()))
    };
    crate::probe_api::probe(&state.probes, monitor, &headers, query).await
}

async fn list(State(state): State<ApiState>) -> Json<Vec<MonitorJson>> {
    Json(state.views().into_iter().map(|view| view.json).collect())
}

async fn one(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<MonitorJson>, ApiError> {
    Ok(Json(state.json(state.find(&name)?)))
}

async fn check(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<CheckResult>, ApiError> {
    let monitor = &state.monitors()[state.find(&name)?];
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
    let index = state.find(&name)?;
    state.monitors()[index]
        .restart()
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(state.json(index)))
}

/// `/history`'s answer (SPEC §9.2): times in unix seconds, latencies in milliseconds.
#[derive(Debug, Serialize)]
struct HistoryJson {
    changes: Vec<ChangeJson>,
    latency: Vec<BucketJson>,
}

/// One status change in `/history`.
#[derive(Debug, Serialize)]
struct ChangeJson {
    time: i64,
    from: Status,
    to: Status,
    detail: String,
}

/// One latency bucket (a minute or an hour) in `/history`.
#[derive(Debug, Serialize)]
struct BucketJson {
    time: i64,
    /// The bucket's length in seconds: 60 or 3600.
    step: u64,
    count: u64,
    avg_ms: f64,
    min_ms: f64,
    max_ms: f64,
    failures: u64,
}

impl From<HistorySpan> for HistoryJson {
    fn from(span: HistorySpan) -> Self {
        // Milliseconds to the microsecond: `0.328`, not `0.32823599999999997`.
        #[allow(clippy::cast_precision_loss)] // Exact below 2^53 µs, some 285 years.
        let ms = |d: Duration| d.as_micros() as f64 / 1_000.0;
        HistoryJson {
            changes: span
                .changes
                .into_iter()
                .map(
                    |StatusChange {
                         time,
                         from,
                         to,
                         detail,
                     }| ChangeJson {
                        time: unix_seconds(time),
                        from,
                        to,
                        detail,
                    },
                )
                .collect(),
            latency: span
                .latency
                .iter()
                .map(|bucket: &LatencyBucket| BucketJson {
                    time: unix_seconds(bucket.time),
                    step: bucket.step.as_secs(),
                    count: bucket.count,
                    avg_ms: bucket.average().map_or(0.0, ms),
                    min_ms: ms(bucket.min),
                    max_ms: ms(bucket.max),
                    failures: bucket.failures,
                })
                .collect(),
        }
    }
}

/// `t` in whole unix seconds (0 before 1970).
fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The query parameter `key` as unix seconds: `None` when absent, a 400 naming the key
/// and the value when it is not a whole number of seconds since 1970.
fn unix_param(query: &HashMap<String, String>, key: &str) -> Result<Option<SystemTime>, ApiError> {
    let Some(text) = query.get(key) else {
        return Ok(None);
    };
    text.trim()
        .parse::<u64>()
        .ok()
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        .map(Some)
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("invalid `{key}` = {text:?}: expected unix time in whole seconds, like 1700000000"),
            )
        })
}

async fn history(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<HistoryJson>, ApiError> {
    let Query(query) =
        query.map_err(|err| ApiError(StatusCode::BAD_REQUEST, format!("invalid query: {err}")))?;
    let index = state.find(&name)?;
    let until = unix_param(&query, "until")?.unwrap_or_else(|| state.clock.now());
    let since = match unix_param(&query, "since")? {
        Some(since) => since,
        None => until.checked_sub(DEFAULT_SPAN).unwrap_or(UNIX_EPOCH),
    };
    if since > until {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "`since` = {} is after `until` = {}",
                unix_seconds(since),
                unix_seconds(until)
            ),
        ));
    }
    let Some(history) = &state.history else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server keeps no history".to_owned(),
        ));
    };
    let reader = Arc::clone(history.reader());
    let monitor = state.monitors()[index].name().to_owned();
    let span = tokio::task::spawn_blocking(move || reader.history(&monitor, since, until))
        .await
        .map_err(|err| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("history: {err}")))?
        .map_err(|err| ApiError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    Ok(Json(span.into()))
}

/// `/api/v1/events`: every monitor's JSON at once, then a monitor's whenever its
/// snapshot changes (see the module docs for how a slow client is served).
async fn events(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let events = updates(&state).map(move |index| Ok(status_event(&state.json(index))));
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The indices of every monitor, then of each monitor whose snapshot changed since it
/// was last yielded: however often a monitor changes between two polls, it is yielded
/// once. Never ends.
fn updates(state: &ApiState) -> impl Stream<Item = usize> + Send + use<> {
    // Subscribed before the first indices are taken, so no change in between is missed.
    let changes = stream::select_all(state.monitors().iter().enumerate().map(|(index, m)| {
        stream::unfold(m.subscribe(), move |mut rx| async move {
            // Ends when the monitor is dropped (never, while the state holds it).
            rx.changed().await.ok()?;
            rx.borrow_and_update();
            Some((index, rx))
        })
        .boxed()
    }));
    stream::iter(0..state.monitors().len())
        .chain(changes)
        // Without monitors, or should every one end, the stream stays open.
        .chain(stream::pending())
}

/// One `event: status` with `json` as its data.
fn status_event(json: &MonitorJson) -> SseEvent {
    SseEvent::default()
        .event("status")
        .json_data(json)
        // A monitor's JSON always serialises; should it not, the stream goes on.
        .unwrap_or_else(|_| SseEvent::default().comment("a monitor could not be serialised"))
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
