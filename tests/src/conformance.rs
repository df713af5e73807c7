//! The conformance-vector runner (SPEC §8).
//!
//! Each `*.toml` vector drives the real `health-monitor` crate with a scripted probe
//! under tokio's paused clock (jitter forced to 0) and compares what happens with the
//! vector's expectations, step by step.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use async_trait::async_trait;
use health_monitor::{HealthMonitor, LastSeenRegistry, Monitor, Scope, Snapshot};
use health_types::{
    CheckKind, CheckResult, Event, EventKind, HealthCheckOverrides, Probe, ProbeError, Status,
    TokioClock, Url,
};
use serde::Deserialize;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

/// How long (in paused time) the runner waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a vector did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The vector itself is broken (bad TOML, unknown key, bad value).
    Malformed {
        /// The vector file.
        path: PathBuf,
        /// The 1-based step, when the problem is in one.
        step: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// The monitor did not do what the vector expects.
    Differs {
        /// The 1-based step.
        step: usize,
        /// What differed.
        what: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Malformed {
                path,
                step: Some(step),
                reason,
            } => write!(
                f,
                "step {step}: malformed vector {}: {reason}",
                path.display()
            ),
            Failure::Malformed {
                path,
                step: None,
                reason,
            } => write!(f, "malformed vector {}: {reason}", path.display()),
            Failure::Differs { step, what } => write!(f, "step {step}: {what}"),
        }
    }
}

/// The result of one vector file.
#[derive(Clone, Debug)]
pub struct VectorOutcome {
    /// The file stem, as printed.
    pub stem: String,
    /// `Ok` when it passed.
    pub result: Result<(), Failure>,
}

impl fmt::Display for VectorOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(()) => write!(f, "PASS {}", self.stem),
            Err(failure) => write!(f, "FAIL {}: {failure}", self.stem),
        }
    }
}

/// Lists the `*.toml` files of `dir`, sorted by name.
pub fn vector_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs one vector file on a fresh paused-clock runtime.
pub fn run_file(path: &Path) -> VectorOutcome {
    let stem = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let text = fs::read_to_string(path);
    if let Ok(text) = &text
        && is_policy_vector(text)
    {
        let result = crate::policy::run(path, text);
        return VectorOutcome { stem, result };
    }
    let result = text
        .map_err(|e| malformed(path, None, format!("cannot read: {e}")))
        .and_then(|text| parse(path, &stem, &text))
        .and_then(|vector| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .map_err(|e| malformed(path, None, format!("cannot build a runtime: {e}")))?;
            runtime.block_on(run(vector))
        });
    VectorOutcome { stem, result }
}

/// Whether `text` is an alert-policy vector (it has a `[policy]` table; see
/// [`crate::policy`]).
fn is_policy_vector(text: &str) -> bool {
    text.parse::<toml::Table>()
        .is_ok_and(|table| table.contains_key("policy"))
}

fn malformed(path: &Path, step: Option<usize>, reason: impl Into<String>) -> Failure {
    Failure::Malformed {
        path: path.to_owned(),
        step,
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVector {
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    monitor: RawMonitor,
    #[serde(default)]
    step: Vec<toml::Table>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    name: Option<String>,
    url: Option<String>,
    initial_status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    check: Option<Scripted>,
    detail: Option<String>,
    latency: Option<String>,
    status: Option<Status>,
    #[serde(default)]
    notify: Vec<EventKind>,
    at: Option<String>,
    failures: Option<u32>,
    detail_contains: Option<String>,
    url_seen: Option<String>,
    running: Option<bool>,
    action: Option<ActionName>,
    url: Option<String>,
    duration: Option<String>,
    checks: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Scripted {
    Healthy,
    Unhealthy,
    Error,
    /// Fails on our side (SPEC §9.3): an error of kind `local`, detail `too many open
    /// files` unless the step gives one.
    Local,
    Panic,
    Hang,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ActionName {
    UpdateUrl,
    Stop,
    /// `HealthMonitor::restart`: stop (if running) and start again at once.
    Restart,
    Wait,
}

/// What the scripted probe answers to one check.
#[derive(Clone, Debug)]
struct Reply {
    check: Scripted,
    detail: Option<String>,
    latency: Duration,
}

enum Action {
    Check(Reply),
    Wait { duration: Duration, reply: Reply },
    UpdateUrl(Url),
    Stop,
    Restart,
}

struct Expect {
    status: Option<Status>,
    notify: Vec<EventKind>,
    at: Option<Duration>,
    failures: Option<u32>,
    detail_contains: Option<String>,
    url_seen: Option<Url>,
    running: Option<bool>,
    checks: Option<u64>,
}

struct Step {
    action: Action,
    expect: Expect,
}

pub(crate) struct Vector {
    name: String,
    url: Url,
    initial_status: Option<Status>,
    config: health_types::HealthCheckConfig,
    steps: Vec<Step>,
}

fn duration(text: &str, key: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{key}` = {text:?} is not a duration like \"10s\": {e}"))
}

fn url(text: &str, key: &str) -> Result<Url, String> {
    Url::parse(text).map_err(|e| format!("`{key}` = {text:?} is not a URL: {e}"))
}

pub(crate) fn parse(path: &Path, stem: &str, text: &str) -> Result<Vector, Failure> {
    let raw: RawVector =
        toml::from_str(text).map_err(|e| malformed(path, None, e.to_string().trim().to_owned()))?;
    let overrides: HealthCheckOverrides =
        toml::Value::Table(raw.config)
            .try_into()
            .map_err(|e: toml::de::Error| {
                malformed(path, None, format!("[config]: {}", e.message()))
            })?;
    // Jitter is forced to 0 so that check times are exact.
    let overrides = HealthCheckOverrides {
        jitter: Some(Duration::ZERO),
        ..overrides
    };
    let config = overrides
        .resolve()
        .map_err(|e| malformed(path, None, format!("[config]: {e}")))?;
    let monitor_url = url(
        raw.monitor
            .url
            .as_deref()
            .unwrap_or("http://conformance.test/"),
        "monitor.url",
    )
    .map_err(|e| malformed(path, None, e))?;
    let steps = raw
        .step
        .into_iter()
        .enumerate()
        .map(|(i, table)| parse_step(table).map_err(|e| malformed(path, Some(i + 1), e)))
        .collect::<Result<Vec<_>, _>>()?;
    if steps.is_empty() {
        return Err(malformed(path, None, "no [[step]]"));
    }
    Ok(Vector {
        name: raw.monitor.name.unwrap_or_else(|| stem.to_owned()),
        url: monitor_url,
        initial_status: raw.monitor.initial_status,
        config,
        steps,
    })
}

fn parse_step(table: toml::Table) -> Result<Step, String> {
    let raw: RawStep = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let reply = |check: Option<Scripted>| -> Result<Reply, String> {
        Ok(Reply {
            check: check.ok_or("`check` is required here")?,
            detail: raw.detail.clone(),
            latency: match &raw.latency {
                Some(text) => duration(text, "latency")?,
                None => Duration::ZERO,
            },
        })
    };
    let action = match raw.action {
        None => {
            if raw.duration.is_some() || raw.url.is_some() || raw.checks.is_some() {
                return Err("`duration`, `url` and `checks` need an `action`".into());
            }
            Action::Check(reply(raw.check)?)
        }
        Some(ActionName::Wait) => Action::Wait {
            duration: duration(
                raw.duration.as_deref().ok_or("wait needs `duration`")?,
                "duration",
            )?,
            reply: reply(raw.check)?,
        },
        Some(ActionName::UpdateUrl) => Action::UpdateUrl(url(
            raw.url.as_deref().ok_or("update_url needs `url`")?,
            "url",
        )?),
        Some(ActionName::Stop) => Action::Stop,
        Some(ActionName::Restart) => Action::Restart,
    };
    if !matches!(action, Action::Check(_) | Action::Wait { .. }) && raw.check.is_some() {
        return Err("`check` goes with a check step or a wait".into());
    }
    if !matches!(action, Action::Wait { .. }) && raw.checks.is_some() {
        return Err("`checks` goes with a wait".into());
    }
    if !matches!(action, Action::Check(_)) && (raw.at.is_some() || raw.url_seen.is_some()) {
        return Err("`at` and `url_seen` go with a check step".into());
    }
    Ok(Step {
        action,
        expect: Expect {
            status: raw.status,
            notify: raw.notify,
            at: raw.at.as_deref().map(|t| duration(t, "at")).transpose()?,
            failures: raw.failures,
            detail_contains: raw.detail_contains,
            url_seen: raw
                .url_seen
                .as_deref()
                .map(|u| url(u, "url_seen"))
                .transpose()?,
            running: raw.running,
            checks: raw.checks,
        },
    })
}

/// A check has begun: the scripted probe waits for the runner's reply.
struct Began {
    at: Instant,
    url: Url,
    reply: oneshot::Sender<Reply>,
}

#[derive(Debug)]
struct ScriptedProbe {
    began: mpsc::UnboundedSender<Began>,
}

#[async_trait]
impl Probe for ScriptedProbe {
    async fn check(&self, url: &Url) -> Result<CheckResult, ProbeError> {
        let (tx, rx) = oneshot::channel();
        let began = Began {
            at: Instant::now(),
            url: url.clone(),
            reply: tx,
        };
        if self.began.send(began).is_err() {
            return std::future::pending().await;
        }
        let Ok(reply) = rx.await else {
            return std::future::pending().await;
        };
        let detail = |default: &str| reply.detail.clone().unwrap_or_else(|| default.to_owned());
        match reply.check {
            Scripted::Healthy => Ok(CheckResult::healthy(detail(""), reply.latency)),
            Scripted::Unhealthy => Ok(CheckResult::unhealthy(
                CheckKind::Status,
                detail("HTTP 503 Service Unavailable"),
                reply.latency,
            )),
            Scripted::Error => Err(ProbeError::new(
                CheckKind::Internal,
                detail("scripted error"),
            )),
            Scripted::Local => Err(ProbeError::new(
                CheckKind::Local,
                detail("too many open files"),
            )),
            Scripted::Panic => panic!("{}", detail("scripted panic")),
            Scripted::Hang => std::future::pending().await,
        }
    }
}

struct Run {
    monitor: Monitor,
    began: mpsc::UnboundedReceiver<Began>,
    events: mpsc::UnboundedReceiver<Event>,
    snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    t0: Instant,
}

/// What one step observed.
#[derive(Default)]
struct Seen {
    at: Option<Duration>,
    url: Option<Url>,
    checks: u64,
}

impl Run {
    /// Waits for the next check to begin, answers it and waits until the monitor has
    /// taken its result in.
    async fn one_check(&mut self, reply: &Reply, seen: &mut Seen) -> Result<(), String> {
        if !self.monitor.snapshot().running {
            return Err("no check can happen: the monitor is not running".into());
        }
        let done_before = self.monitor.snapshot().checks();
        let began = tokio::time::timeout(PATIENCE, self.began.recv())
            .await
            .ok()
            .flatten()
            .ok_or("no check began")?;
        seen.at = Some(began.at - self.t0);
        seen.url = Some(began.url);
        seen.checks += 1;
        let _ = began.reply.send(reply.clone());
        tokio::time::timeout(
            PATIENCE,
            self.snapshots
                .wait_for(|s| s.checks() > done_before || !s.running),
        )
        .await
        .map_err(|_| "the check never completed")?
        .map_err(|_| "the monitor went away")?;
        Ok(())
    }

    async fn step(&mut self, action: &Action) -> Result<Seen, String> {
        let mut seen = Seen::default();
        match action {
            Action::Check(reply) => self.one_check(reply, &mut seen).await?,
            Action::Wait { duration, reply } => {
                let deadline = Instant::now() + *duration;
                loop {
                    let snapshot = self.monitor.snapshot();
                    match snapshot.next_check {
                        Some(due) if snapshot.running && due <= deadline => {
                            self.one_check(reply, &mut seen).await?;
                        }
                        _ => break,
                    }
                }
                tokio::time::sleep_until(deadline).await;
            }
            Action::UpdateUrl(url) => self
                .monitor
                .update_url(url.clone())
                .map_err(|e| format!("update_url rejected {url}: {e}"))?,
            Action::Stop => self.monitor.finish("conformance vector stop"),
            Action::Restart => self
                .monitor
                .restart()
                .map_err(|e| format!("restart failed: {e}"))?,
        }
        Ok(seen)
    }

    fn compare(&mut self, expect: &Expect, seen: &Seen) -> Vec<String> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event.kind);
        }
        let snapshot = self.monitor.snapshot();
        let mut differs = Vec::new();
        if let Some(status) = expect.status
            && snapshot.status != status
        {
            differs.push(format!(
                "status: expected {status}, got {}",
                snapshot.status
            ));
        }
        if events != expect.notify {
            differs.push(format!(
                "notify: expected {}, got {}",
                kinds(&expect.notify),
                kinds(&events)
            ));
        }
        if let Some(at) = expect.at
            && seen.at != Some(at)
        {
            differs.push(format!(
                "at: expected the check to begin at {}, it began at {}",
                humantime::format_duration(at),
                seen.at
                    .map_or("never".into(), |t| humantime::format_duration(t)
                        .to_string())
            ));
        }
        if let Some(failures) = expect.failures
            && snapshot.failures != failures
        {
            differs.push(format!(
                "failures: expected {failures}, got {}",
                snapshot.failures
            ));
        }
        if let Some(needle) = &expect.detail_contains
            && !snapshot.detail.contains(needle.as_str())
        {
            differs.push(format!(
                "detail: expected it to contain {needle:?}, got {:?}",
                snapshot.detail
            ));
        }
        if let Some(url) = &expect.url_seen
            && seen.url.as_ref() != Some(url)
        {
            differs.push(format!(
                "url_seen: expected {url}, the check received {}",
                seen.url.as_ref().map_or("nothing".into(), Url::to_string)
            ));
        }
        if let Some(running) = expect.running
            && snapshot.running != running
        {
            differs.push(format!(
                "running: expected {running}, got {}",
                snapshot.running
            ));
        }
        if let Some(checks) = expect.checks
            && seen.checks != checks
        {
            differs.push(format!(
                "checks: expected {checks} during the wait, got {}",
                seen.checks
            ));
        }
        differs
    }
}

fn kinds(events: &[EventKind]) -> String {
    let names: Vec<_> = events.iter().map(|k| k.as_str()).collect();
    format!("[{}]", names.join(", "))
}

async fn run(vector: Vector) -> Result<(), Failure> {
    let (began_tx, began) = mpsc::unbounded_channel();
    let (event_tx, events) = mpsc::unbounded_channel();
    let clock = TokioClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let monitor = Monitor::builder(
        vector.name.as_str(),
        vector.url.clone(),
        Arc::new(ScriptedProbe { began: began_tx }),
    )
    .config(vector.config.clone())
    .sink(Arc::new(event_tx))
    .clock(Arc::new(clock))
    .last_seen(Arc::new(LastSeenRegistry::new()))
    .build()
    .map_err(|e| Failure::Differs {
        step: 0,
        what: format!("the monitor could not be built: {e}"),
    })?;
    let scope = Scope::new();
    let t0 = Instant::now();
    monitor.start(&scope).map_err(|e| Failure::Differs {
        step: 0,
        what: format!("the monitor could not start: {e}"),
    })?;
    if let Some(initial) = vector.initial_status {
        let status = monitor.status();
        if status != initial {
            return Err(Failure::Differs {
                step: 0,
                what: format!("initial_status: expected {initial}, got {status}"),
            });
        }
    }
    let snapshots = monitor.subscribe();
    let mut run = Run {
        monitor,
        began,
        events,
        snapshots,
        t0,
    };
    for (i, step) in vector.steps.iter().enumerate() {
        let n = i + 1;
        let seen = run
            .step(&step.action)
            .await
            .map_err(|what| Failure::Differs { step: n, what })?;
        let differs = run.compare(&step.expect, &seen);
        if !differs.is_empty() {
            return Err(Failure::Differs {
                step: n,
                what: differs.join("; "),
            });
        }
    }
    scope.shutdown().await;
    Ok(())
}

/// Runs every vector of `dirs` and returns the outcomes in order.
pub fn run_dirs(dirs: &[PathBuf]) -> Result<Vec<VectorOutcome>, String> {
    let mut outcomes = Vec::new();
    for dir in dirs {
        let files = vector_files(dir)
            .map_err(|e| format!("cannot read vector directory {}: {e}", dir.display()))?;
        if files.is_empty() {
            return Err(format!("no *.toml vectors in {}", dir.display()));
        }
        outcomes.extend(files.iter().map(|f| run_file(f)));
    }
    Ok(outcomes)
}
