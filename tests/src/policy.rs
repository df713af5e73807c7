//! The alert-policy vectors (SPEC §9.5): reminders, dependencies, flapping and
//! maintenance windows, each rule shown step by step.
//!
//! A policy vector is a conformance vector with a `[policy]` table instead of
//! `[config]`/`[monitor]`; `cargo xtask conformance` runs both kinds. It drives the real
//! `health-notify` [`AlertGate`] (the policy and its timer) under tokio's paused clock,
//! starting at 2024-05-01T00:00:00Z, and records what the gate lets through to the store:
//!
//! ```toml
//! description = "what this vector shows"
//! [policy.monitors.db]                  # every monitor, with its §9.5 keys
//! [policy.monitors.api]
//! depends_on = ["db"]
//! remind_every = "10m"
//! flap_threshold = 3                    # flap_window defaults to "10m"
//! [[policy.maintenance]]                # optional windows
//! monitors = ["api"]                    # empty or absent: all
//! start = "2024-05-01T01:00:00Z"        # with end; or cron = "0 1 * * *" with duration = "1h"
//! end = "2024-05-01T02:00:00Z"
//!
//! [[step]]
//! at = "5m"            # when (since the start; never earlier than the step before)
//! monitor = "api"      # the monitor that reports `event` then (optional: time passes)
//! event = "down"       # down | up | stopped | cert_expiry; a down begins an outage
//! notify = ["down api"]  # exactly what went out since the step before, in order
//!                        # ("<event> <monitor>"; timer-driven reminders too); default []
//! maintenance = ["api"]  # optional: exactly the monitors in maintenance at `at`
//!
//! [[step]]
//! at = "1h"
//! stop = true          # the daemon stops here (as at kill -9: what it recorded stays)
//! [[step]]
//! at = "3h"
//! start = true         # it starts again from what it recorded; `notify` as above
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_notify::policy::{AlertGate, AlertPolicy, AlertRules, MaintenanceWindow};
use health_types::{AlertState, Event, EventKind, MonitorState, StateSink, TokioClock};
use serde::Deserialize;

use crate::conformance::Failure;

/// 2024-05-01T00:00:00Z: where a vector's clock starts.
const START: u64 = 1_714_521_600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVector {
    #[allow(dead_code)]
    description: String,
    policy: RawPolicy,
    #[serde(default)]
    step: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    monitors: BTreeMap<String, RawRules>,
    #[serde(default)]
    maintenance: Vec<RawWindow>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    remind_every: Option<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    flap_threshold: u32,
    flap_window: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default)]
    monitors: Vec<String>,
    start: Option<String>,
    end: Option<String>,
    cron: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: String,
    monitor: Option<String>,
    event: Option<String>,
    #[serde(default)]
    stop: bool,
    #[serde(default)]
    start: bool,
    #[serde(default)]
    notify: Vec<String>,
    maintenance: Option<Vec<String>>,
}

struct Step {
    at: Duration,
    /// The daemon stops here (as at `kill -9`: what was recorded stays).
    stop: bool,
    /// The daemon starts again here from what was recorded.
    start: bool,
    event: Option<(String, EventKind)>,
    notify: Vec<String>,
    maintenance: Option<Vec<String>>,
}

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{key}` {text:?}: {e}"))
}

fn time(key: &str, text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(text).map_err(|e| format!("`{key}` {text:?}: {e}"))
}

fn window(raw: RawWindow) -> Result<MaintenanceWindow, String> {
    let made = match (raw.start, raw.end, raw.cron, raw.duration) {
        (Some(start), Some(end), None, None) => {
            MaintenanceWindow::once(raw.monitors, time("start", &start)?, time("end", &end)?)
        }
        (None, None, Some(cron), Some(length)) => {
            MaintenanceWindow::cron(raw.monitors, &cron, duration("duration", &length)?)
        }
        _ => return Err("a window has `start` and `end`, or `cron` and `duration`".into()),
    };
    made.map_err(|e| e.to_string())
}

/// A parsed vector: the policy, every monitor's name, the steps.
type Parsed = (AlertPolicy, Vec<String>, Vec<Step>);
/// Why a vector is malformed: the 1-based step, when the problem is in one, and what.
type Malformed = (Option<usize>, String);

fn parse(text: &str) -> Result<Parsed, Malformed> {
    let raw: RawVector = toml::from_str(text).map_err(|e| (None, e.message().to_owned()))?;
    let names: Vec<String> = raw.policy.monitors.keys().cloned().collect();
    let mut monitors = Vec::new();
    for (name, rules) in raw.policy.monitors {
        let mut made = AlertRules {
            depends_on: rules.depends_on,
            flap_threshold: rules.flap_threshold,
            ..AlertRules::default()
        };
        if let Some(every) = rules.remind_every {
            made.remind_every = Some(duration("remind_every", &every).map_err(|e| (None, e))?);
        }
        if let Some(window) = rules.flap_window {
            made.flap_window = duration("flap_window", &window).map_err(|e| (None, e))?;
        }
        monitors.push((name, made));
    }
    let windows = raw
        .policy
        .maintenance
        .into_iter()
        .map(window)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (None, e))?;
    let policy = AlertPolicy::new(monitors, windows).map_err(|e| (None, e.to_string()))?;
    let mut steps = Vec::new();
    let mut last = Duration::ZERO;
    for (i, raw) in raw.step.into_iter().enumerate() {
        let n = Some(i + 1);
        let at = duration("at", &raw.at).map_err(|e| (n, e))?;
        if at < last {
            return Err((n, format!("`at` {:?} is before the step before", raw.at)));
        }
        last = at;
        let event = match (raw.monitor, raw.event) {
            (None, None) => None,
            (Some(monitor), Some(event)) => {
                if !names.contains(&monitor) {
                    return Err((n, format!("no monitor {monitor:?} in [policy.monitors]")));
                }
                let kind = match event.as_str() {
                    "down" => EventKind::Down,
                    "up" => EventKind::Up,
                    "stopped" => EventKind::Stopped,
                    "cert_expiry" => EventKind::CertExpiry,
                    other => return Err((n, format!("unknown `event` {other:?}"))),
                };
                Some((monitor, kind))
            }
            _ => return Err((n, "`monitor` and `event` go together".into())),
        };
        if [event.is_some(), raw.stop, raw.start]
            .iter()
            .filter(|b| **b)
            .count()
            > 1
        {
            return Err((
                n,
                "a step has at most one of `event`, `stop` and `start`".into(),
            ));
        }
        steps.push(Step {
            at,
            stop: raw.stop,
            start: raw.start,
            event,
            notify: raw.notify,
            maintenance: raw.maintenance,
        });
    }
    Ok((policy, names, steps))
}

/// What the gate recorded: `<event> <monitor>` in order, and each monitor's last alert
/// state (what a store would give back after a restart).
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
    alerts: Mutex<HashMap<String, AlertState>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StateSink for Recorder {
    fn record(&self, monitor: &str, _: &MonitorState, events: &[Event]) {
        lock(&self.seen).extend(events.iter().map(|e| format!("{} {monitor}", e.kind)));
    }

    fn record_with_alert(
        &self,
        monitor: &str,
        state: &MonitorState,
        alert: &AlertState,
        events: &[Event],
    ) {
        lock(&self.alerts).insert(monitor.to_owned(), alert.clone());
        self.record(monitor, state, events);
    }
}

/// Runs the policy vector `text` (from `path`).
pub(crate) fn run(path: &Path, text: &str) -> Result<(), Failure> {
    let (policy, names, steps) = parse(text).map_err(|(step, reason)| Failure::Malformed {
        path: path.to_owned(),
        step,
        reason,
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| Failure::Malformed {
            path: path.to_owned(),
            step: None,
            reason: format!("cannot build a runtime: {e}"),
        })?;
    // A restarted daemon builds its policy from the same config.
    let again = || parse(text).map(|(policy, _, _)| policy).ok();
    runtime.block_on(drive(policy, again, names, steps))
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn drive(
    policy: AlertPolicy,
    again: impl Fn() -> Option<AlertPolicy>,
    names: Vec<String>,
    steps: Vec<Step>,
) -> Result<(), Failure> {
    let start = tokio::time::Instant::now();
    let base = UNIX_EPOCH + Duration::from_secs(START);
    let clock = TokioClock::starting_at(base);
    let recorder = Arc::new(Recorder::default());
    let (mut gate, mut timer) = start_gate(policy, &recorder, clock, &[]);
    let mut running = true;
    let mut outages: HashMap<String, SystemTime> = HashMap::new();
    let mut result = Ok(());
    for (i, step) in steps.into_iter().enumerate() {
        let n = i + 1;
        tokio::time::sleep_until(start + step.at).await;
        settle().await;
        let now = base + step.at;
        let differs = |what: String| Err(Failure::Differs { step: n, what });
        if step.stop {
            timer.abort();
            running = false;
        }
        if step.start {
            let Some(policy) = again() else {
                result = differs("the policy cannot be built again".into());
                break;
            };
            let (restarted, restarted_timer) = start_gate(policy, &recorder, clock, &names);
            gate = restarted;
            timer = restarted_timer;
            running = true;
            settle().await;
        }
        if let Some((monitor, kind)) = &step.event {
            if !running {
                result = differs("an event while the daemon is stopped".into());
                break;
            }
            if *kind == EventKind::Down {
                outages.insert(monitor.clone(), now);
            }
            let event = Event {
                kind: *kind,
                service: Arc::from(monitor.as_str()),
                url: format!("http://{monitor}.test/"),
                detail: String::new(),
                latency: Duration::ZERO,
                last_seen: None,
                outage: None,
                outage_start: outages.get(monitor).copied(),
                time: now,
            };
            gate.record(monitor, &MonitorState::default(), &[event]);
            settle().await;
        }
        let seen = std::mem::take(&mut *lock(&recorder.seen));
        if seen != step.notify {
            result = differs(format!(
                "notify: expected {:?}, got {:?}",
                step.notify, seen
            ));
            break;
        }
        if let Some(expected) = &step.maintenance {
            let got: Vec<String> = names
                .iter()
                .filter(|m| gate.in_maintenance(m))
                .cloned()
                .collect();
            let mut expected = expected.clone();
            expected.sort();
            if got != expected {
                result = differs(format!("maintenance: expected {expected:?}, got {got:?}"));
                break;
            }
        }
    }
    timer.abort();
    result
}

/// A gate for `policy` over `recorder`, its timer running, with the recorded alert
/// state of each of `names` restored (none at the first start; every monitor after a
/// restart).
fn start_gate(
    policy: AlertPolicy,
    recorder: &Arc<Recorder>,
    clock: TokioClock,
    names: &[String],
) -> (Arc<AlertGate>, tokio::task::JoinHandle<()>) {
    let saved = lock(&recorder.alerts).clone();
    let fresh = Arc::new(AlertGate::new(
        policy,
        Arc::clone(recorder) as Arc<dyn StateSink>,
        Arc::new(clock),
    ));
    for name in names {
        let alert = saved.get(name).cloned().unwrap_or_default();
        fresh.restore(name, &MonitorState::default(), alert);
    }
    let timer = tokio::spawn({
        let gate = Arc::clone(&fresh);
        async move { gate.run().await }
    });
    (fresh, timer)
}
