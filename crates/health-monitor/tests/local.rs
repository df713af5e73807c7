//! Local results (SPEC §9.3): a check that failed on our side (out of file descriptors,
//! buffers or memory; no local address) changes no counter and no status, sends nothing,
//! never stops the monitor, and is counted; the next check is due at the interval in
//! force. Under tokio's paused clock, with fake probes.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::time::Duration;

use health_monitor::HealthMonitor;
use health_types::{CheckKind, EventKind, HealthCheckConfig, Status};

use self::support::{Act, FakeProbe, builder, every, run_for, start, with_events};

/// Checks every 10 s; one error would make a Healthy monitor Error, two would stop it,
/// and a failure counted while Healthy would switch to the 1 s `fast_interval`.
fn touchy() -> HealthCheckConfig {
    HealthCheckConfig {
        retries: 3,
        max_errors: 2,
        fast_interval: Some(Duration::from_secs(1)),
        down_interval: Some(Duration::from_secs(60)),
        ..every(10)
    }
}

#[tokio::test(start_paused = true)]
async fn twenty_local_results_change_nothing_send_nothing_and_never_stop_the_monitor() {
    let probe = FakeProbe::new(|i| if i == 0 { Act::Healthy } else { Act::Local });
    let (m, mut events) = with_events(builder(probe.clone()).config(touchy()));
    let scope = start(&m);
    run_for(Duration::from_millis(200_500)).await;

    // At the normal interval: neither fast_interval (confirming) nor down_interval.
    let expected: Vec<f64> = (0..=20).map(|i| f64::from(i) * 10.0).collect();
    assert_eq!(probe.call_times(), expected);
    let s = m.snapshot();
    assert_eq!(s.status, Status::Healthy);
    assert_eq!((s.failures, s.errors, s.passes), (0, 0, 1));
    assert!(s.running, "local results never stop a monitor");
    assert_eq!(s.results.local, 20);
    assert_eq!((s.results.healthy, s.results.error), (1, 0));
    assert_eq!(s.checks(), 21);
    assert_eq!(s.transitions, 1, "Starting -> Healthy only");
    // The last result shown is still the last one about the target.
    assert_eq!((s.kind, s.detail.as_str()), (Some(CheckKind::Ok), "ok"));
    assert!(events.try_recv().is_err(), "nothing is sent");
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn local_results_keep_a_confirmation_where_it_was() {
    // Healthy, one failure of F = 3 (fast_interval 1 s from here), five local results,
    // then failures: the down comes on the third real failure, and the local results
    // were checked at the fast interval in force.
    let probe = FakeProbe::new(|i| match i {
        0 => Act::Healthy,
        2..=6 => Act::Local,
        _ => Act::Unhealthy,
    });
    let (m, mut events) = with_events(builder(probe.clone()).config(touchy()));
    let scope = start(&m);
    run_for(Duration::from_millis(16_500)).await;
    assert_eq!(
        probe.call_times(),
        [0.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    );
    let s = m.snapshot();
    assert_eq!(s.failures, 2);
    assert_eq!(s.status, Status::Healthy);
    assert!(events.try_recv().is_err());
    run_for(Duration::from_secs(1)).await;
    assert_eq!(m.status(), Status::Unhealthy);
    assert_eq!(events.try_recv().unwrap().kind, EventKind::Down);
    assert_eq!(m.snapshot().results.local, 5);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn local_results_neither_count_toward_max_errors_nor_reset_the_count() {
    // Error, local results for a minute, then one more error: max_errors = 2 is reached
    // by the two errors, the local results between them did not break the run.
    let probe = FakeProbe::new(|i| match i {
        0 => Act::Error,
        1..=6 => Act::Local,
        _ => Act::Error,
    });
    let (m, mut events) = with_events(builder(probe.clone()).config(HealthCheckConfig {
        fast_interval: None,
        down_interval: None,
        ..touchy()
    }));
    let scope = start(&m);
    run_for(Duration::from_millis(60_500)).await;
    let s = m.snapshot();
    assert_eq!((s.status, s.errors, s.results.local), (Status::Error, 1, 6));
    assert!(s.running);
    assert!(events.try_recv().is_err());
    m.stopped().await;
    assert_eq!(probe.call_count(), 8);
    assert_eq!(events.try_recv().unwrap().kind, EventKind::Stopped);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_first_local_result_leaves_the_monitor_starting() {
    let probe = FakeProbe::new(|i| if i < 3 { Act::Local } else { Act::Unhealthy });
    let (m, mut events) = with_events(builder(probe.clone()).config(HealthCheckConfig {
        retries: -1,
        ..touchy()
    }));
    let scope = start(&m);
    run_for(Duration::from_secs(25)).await;
    let s = m.snapshot();
    assert_eq!(
        (s.status, s.kind, s.results.local),
        (Status::Starting, None, 3)
    );
    assert!(events.try_recv().is_err());
    run_for(Duration::from_secs(10)).await;
    assert_eq!(m.status(), Status::Unhealthy);
    assert_eq!(events.try_recv().unwrap().kind, EventKind::Down);
    scope.shutdown().await;
}
