//! What a monitor tells its [`HistorySink`] (SPEC §9.2): every check but local ones, and
//! every status change as one chain (to `starting` at each start, to `stopped` at each
//! stop, self-stops after `max_errors` included), plus the snapshot's `last_check`,
//! `outage_start` and `stop_cause`. Under tokio's paused clock with a recording sink.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_monitor::{HealthMonitor, Monitor, StopCause};
use health_types::{
    HealthCheckConfig, HistorySink, MonitorState, Observation, Status, StatusChange,
};

use self::support::{Act, BASE_SECS, FakeProbe, builder, every, run_for, start};

/// The wall-clock time `secs` seconds after the tests' monitors started.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(BASE_SECS + secs)
}

/// One call to a [`FakeHistory`].
#[derive(Clone, Debug, PartialEq)]
enum Call {
    Observe(Observation),
    Change(StatusChange),
}

/// A history sink that writes down every call in order.
#[derive(Debug, Default)]
struct FakeHistory(Mutex<Vec<Call>>);

impl HistorySink for FakeHistory {
    fn observe(&self, monitor: &str, observation: &Observation) {
        assert_eq!(monitor, "svc");
        self.0.lock().unwrap().push(Call::Observe(*observation));
    }

    fn change(&self, monitor: &str, change: &StatusChange) {
        assert_eq!(monitor, "svc");
        self.0.lock().unwrap().push(Call::Change(change.clone()));
    }
}

impl FakeHistory {
    /// The calls since the last `take`.
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The status changes since the last `take`, as `(from, to, detail)`, dropping the
    /// observations.
    fn changes(&self) -> Vec<(Status, Status, String)> {
        self.take()
            .into_iter()
            .filter_map(|call| match call {
                Call::Change(c) => Some((c.from, c.to, c.detail)),
                Call::Observe(_) => None,
            })
            .collect()
    }
}

fn change(secs: u64, from: Status, to: Status, detail: &str) -> Call {
    Call::Change(StatusChange {
        time: at(secs),
        from,
        to,
        detail: detail.to_owned(),
    })
}

fn observe(secs: u64, latency_ms: u64, failed: bool) -> Call {
    Call::Observe(Observation {
        time: at(secs),
        latency: Duration::from_millis(latency_ms),
        failed,
    })
}

fn with_history(probe: Arc<FakeProbe>, config: HealthCheckConfig) -> (Monitor, Arc<FakeHistory>) {
    let history = Arc::new(FakeHistory::default());
    let monitor = builder(probe)
        .config(config)
        .history(history.clone())
        .build()
        .unwrap();
    (monitor, history)
}

#[tokio::test(start_paused = true)]
async fn a_run_reports_its_start_each_check_each_change_and_its_stop() {
    let probe = FakeProbe::new(|i| if i == 2 { Act::Unhealthy } else { Act::Healthy });
    let config = HealthCheckConfig {
        retries: -1,
        ..every(10)
    };
    let (m, history) = with_history(probe, config);
    let scope = start(&m);
    run_for(Duration::from_secs(35)).await;
    m.finish("test over");
    assert_eq!(
        history.take(),
        [
            change(0, Status::Unknown, Status::Starting, ""),
            observe(0, 7, false),
            change(0, Status::Starting, Status::Healthy, "ok"),
            observe(10, 7, false),
            observe(20, 3, true),
            change(
                20,
                Status::Healthy,
                Status::Unhealthy,
                "HTTP 503 Service Unavailable"
            ),
            observe(30, 7, false),
            change(30, Status::Unhealthy, Status::Healthy, "ok"),
            change(35, Status::Healthy, Status::Stopped, ""),
        ]
    );
    let s = m.snapshot();
    assert_eq!(s.stop_cause, Some(StopCause::Finished("test over".into())));
    assert_eq!(
        s.stop_cause.as_ref().unwrap().to_string(),
        "stopped: test over"
    );
    assert_eq!(s.last_check, Some(at(30)));
    scope.shutdown().await;
    assert!(
        history.take().is_empty(),
        "a stopped monitor reports nothing more"
    );
}

#[tokio::test(start_paused = true)]
async fn local_results_are_not_observed() {
    let probe = FakeProbe::new(|i| if i == 1 { Act::Local } else { Act::Healthy });
    let (m, history) = with_history(probe, every(10));
    let scope = start(&m);
    run_for(Duration::from_secs(25)).await;
    assert_eq!(
        history.take(),
        [
            change(0, Status::Unknown, Status::Starting, ""),
            observe(0, 7, false),
            change(0, Status::Starting, Status::Healthy, "ok"),
            observe(20, 7, false),
        ]
    );
    assert_eq!(m.snapshot().results.local, 1);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_self_stop_after_max_errors_is_a_change_to_stopped_with_the_detail() {
    let probe = FakeProbe::always(Act::Error);
    let config = HealthCheckConfig {
        max_errors: 2,
        ..every(10)
    };
    let (m, history) = with_history(probe, config);
    let scope = start(&m);
    run_for(Duration::from_secs(60)).await;
    assert_eq!(
        history.take(),
        [
            change(0, Status::Unknown, Status::Starting, ""),
            observe(0, 0, true),
            change(0, Status::Starting, Status::Error, "permission denied"),
            observe(10, 0, true),
            change(10, Status::Error, Status::Stopped, "permission denied"),
        ]
    );
    // The snapshot keeps `error` (SPEC §3) and says why it stopped.
    let s = m.snapshot();
    assert_eq!(s.status, Status::Error);
    assert!(!s.running);
    assert_eq!(
        s.stop_cause,
        Some(StopCause::MaxErrors {
            errors: 2,
            detail: "permission denied".into()
        })
    );
    assert_eq!(
        s.stop_cause.as_ref().unwrap().to_string(),
        "stopped itself after 2 errors in a row: permission denied"
    );
    assert_eq!(s.down_since(), Some(at(0)));

    // A restart goes on from `stopped`.
    m.restart().unwrap();
    run_for(Duration::from_millis(1)).await;
    assert_eq!(
        history.changes()[..2],
        [
            (Status::Stopped, Status::Starting, String::new()),
            (Status::Starting, Status::Error, "permission denied".into()),
        ]
    );
    assert_eq!(m.snapshot().stop_cause, None);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_reports_stopped_then_starting() {
    let (m, history) = with_history(FakeProbe::always(Act::Healthy), every(10));
    let scope = start(&m);
    run_for(Duration::from_secs(5)).await;
    history.take();
    m.finish("for a while");
    run_for(Duration::from_secs(1)).await;
    assert_eq!(m.snapshot().last_check, Some(at(0)));
    history.take();
    m.start(&scope).unwrap();
    assert_eq!(
        m.snapshot().last_check,
        Some(at(0)),
        "kept until the next check"
    );
    run_for(Duration::from_secs(4)).await;
    history.take();
    m.restart().unwrap();
    run_for(Duration::from_millis(1)).await;
    assert_eq!(
        history.take(),
        [
            change(10, Status::Healthy, Status::Stopped, ""),
            change(10, Status::Stopped, Status::Starting, ""),
            observe(10, 7, false),
            change(10, Status::Starting, Status::Healthy, "ok"),
        ]
    );
    scope.shutdown().await;
    assert_eq!(
        history.changes(),
        [(Status::Healthy, Status::Stopped, String::new())]
    );
    assert_eq!(m.snapshot().stop_cause, Some(StopCause::Scope));
}

#[tokio::test(start_paused = true)]
async fn a_restored_monitor_reports_starting_then_its_first_result() {
    let outage = UNIX_EPOCH + Duration::from_secs(BASE_SECS - 600);
    let state = MonitorState {
        status: Status::Unhealthy,
        failures: 3,
        down_sent: true,
        outage_start: Some(outage),
        ..MonitorState::default()
    };
    let history = Arc::new(FakeHistory::default());
    let m = builder(FakeProbe::always(Act::Unhealthy))
        .config(every(10))
        .history(history.clone())
        .restore(state)
        .build()
        .unwrap();
    // Before its start it shows the restored outage.
    assert_eq!(m.snapshot().down_since(), Some(outage));
    assert_eq!(
        m.to_json().down_since,
        i64::try_from(BASE_SECS - 600).unwrap()
    );
    assert_eq!(m.to_json().last_check, 0);
    let scope = start(&m);
    run_for(Duration::from_millis(1)).await;
    assert_eq!(
        history.take(),
        [
            // The store closed the last process's run with `stopped`: the chain goes on
            // from there.
            change(0, Status::Stopped, Status::Starting, ""),
            observe(0, 3, true),
            change(
                0,
                Status::Starting,
                Status::Unhealthy,
                "HTTP 503 Service Unavailable"
            ),
        ]
    );
    let json = m.to_json();
    assert_eq!(json.down_since, i64::try_from(BASE_SECS - 600).unwrap());
    assert_eq!(json.last_check, i64::try_from(BASE_SECS).unwrap());
    assert_eq!(json.uptime_24h, None);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn down_since_is_the_outage_start_while_down_and_zero_otherwise() {
    // F = 2: the outage starts at the first failure (10 s), the status turns at 20 s.
    let probe = FakeProbe::new(|i| match i {
        0 | 4 => Act::Healthy,
        _ => Act::Unhealthy,
    });
    let config = HealthCheckConfig {
        retries: 2,
        ..every(10)
    };
    let (m, _history) = with_history(probe, config);
    let scope = start(&m);
    let down_since = |m: &Monitor| m.to_json().down_since;
    run_for(Duration::from_secs(5)).await;
    assert_eq!(down_since(&m), 0);
    run_for(Duration::from_secs(10)).await;
    // Failing, but still healthy while confirming.
    assert_eq!(m.snapshot().outage_start, Some(at(10)));
    assert_eq!(down_since(&m), 0);
    run_for(Duration::from_secs(10)).await;
    assert_eq!(m.snapshot().status, Status::Unhealthy);
    assert_eq!(down_since(&m), i64::try_from(BASE_SECS + 10).unwrap());
    assert_eq!(
        m.to_json().last_check,
        i64::try_from(BASE_SECS + 20).unwrap()
    );
    run_for(Duration::from_secs(20)).await;
    assert_eq!(m.snapshot().status, Status::Healthy);
    assert_eq!(m.snapshot().outage_start, None);
    assert_eq!(down_since(&m), 0);
    scope.shutdown().await;
}

/// A history sink that panics on every call.
#[derive(Debug)]
struct Panicky;

impl HistorySink for Panicky {
    fn observe(&self, _: &str, _: &Observation) {
        panic!("observe");
    }

    fn change(&self, _: &str, _: &StatusChange) {
        panic!("change");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_history_sink_does_not_stop_the_monitor() {
    let probe = FakeProbe::always(Act::Healthy);
    let m = builder(probe.clone())
        .config(every(10))
        .history(Arc::new(Panicky))
        .build()
        .unwrap();
    let scope = start(&m);
    run_for(Duration::from_secs(25)).await;
    assert_eq!(probe.call_count(), 3);
    assert!(m.is_running());
    m.finish("done");
    assert_eq!(m.status(), Status::Stopped);
    scope.shutdown().await;
}
