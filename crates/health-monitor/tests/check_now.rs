//! `Monitor::check_now` (SPEC §9.3): the monitor's next check, now; never alongside
//! another check of the monitor; concurrent callers share one check; its result feeds
//! the state machine; the next check is due one interval after it began. Under tokio's
//! paused clock, with fake probes.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures_util::future::join_all;
use health_monitor::{HealthMonitor, Monitor, MonitorError};
use health_types::{CheckKind, EventKind, HealthCheckConfig, Status};
use tokio::time::Instant;

use self::support::{Act, FakeProbe, builder, every, monitor, run_for, start, with_events};

/// Checks every 60 s, each taking 2 s.
fn slow_every_minute() -> (Arc<FakeProbe>, Monitor) {
    let probe = FakeProbe::always(Act::Slow(Duration::from_secs(2)));
    (probe.clone(), monitor(probe, every(60)))
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_calls_make_one_probe_call_and_share_its_result() {
    let (probe, m) = slow_every_minute();
    let scope = start(&m);
    run_for(Duration::from_secs(10)).await;
    assert_eq!(probe.call_count(), 1);

    let results = join_all((0..100).map(|_| m.check_now())).await;
    assert_eq!(probe.call_count(), 2, "one probe call for 100 callers");
    assert_eq!(probe.max_in_flight.load(Ordering::SeqCst), 1);
    let first = results[0].as_ref().unwrap();
    assert_eq!((first.healthy, first.detail.as_str()), (true, "slow"));
    assert!(results.iter().all(|r| r.as_ref() == Ok(first)));
    // Taken in as one check.
    assert_eq!(m.snapshot().checks(), 2);

    // It took the place of the check due at 60 s: the next is due one interval after
    // it began, at 70 s.
    run_for(Duration::from_secs(65)).await;
    assert_eq!(probe.call_times(), [0.0, 10.0, 70.0]);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_during_a_scheduled_check_joins_it() {
    let probe = FakeProbe::always(Act::Slow(Duration::from_secs(5)));
    let m = monitor(
        probe.clone(),
        HealthCheckConfig {
            timeout: Duration::from_secs(10),
            ..every(60)
        },
    );
    let t0 = Instant::now();
    let scope = start(&m);
    run_for(Duration::from_secs(1)).await;
    let result = m.check_now().await.unwrap();
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5),
        "the scheduled check's end"
    );
    assert_eq!(result.detail, "slow");
    assert_eq!(probe.call_count(), 1);
    assert_eq!(m.snapshot().checks(), 1);
    // The schedule is the scheduled check's: next at 60 s.
    run_for(Duration::from_secs(56)).await;
    assert_eq!(probe.call_times(), [0.0, 60.0]);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_result_moves_the_state_machine_and_can_send_down() {
    // F = 2, checks every hour: only check_now moves the monitor after its first check.
    let probe = FakeProbe::new(|i| if i == 0 { Act::Healthy } else { Act::Unhealthy });
    let (m, mut events) = with_events(builder(probe.clone()).config(HealthCheckConfig {
        retries: 2,
        ..every(3600)
    }));
    let scope = start(&m);
    run_for(Duration::from_secs(10)).await;
    assert_eq!(m.status(), Status::Healthy);

    let result = m.check_now().await.unwrap();
    assert_eq!((result.healthy, result.kind), (false, CheckKind::Status));
    let s = m.snapshot();
    assert_eq!((s.status, s.failures), (Status::Healthy, 1));
    assert!(events.try_recv().is_err());

    run_for(Duration::from_secs(5)).await;
    m.check_now().await.unwrap();
    let s = m.snapshot();
    assert_eq!((s.status, s.failures), (Status::Unhealthy, 2));
    assert_eq!(s.results.unhealthy, 2);
    let down = events.try_recv().unwrap();
    assert_eq!(down.kind, EventKind::Down);
    assert_eq!(down.detail, "HTTP 503 Service Unavailable");
    // The next check is one interval after the last one began (at 15 s).
    assert_eq!(
        s.next_check.unwrap() - s.started_at.unwrap(),
        Duration::from_secs(3615)
    );
    assert_eq!(probe.call_times(), [0.0, 10.0, 15.0]);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_monitor_that_is_not_running_answers_not_running() {
    let (probe, m) = slow_every_minute();
    let not_running = Err(MonitorError::NotRunning("svc".into()));
    assert_eq!(m.check_now().await, not_running, "never started");
    let scope = start(&m);
    run_for(Duration::from_secs(3)).await;
    m.finish("test");
    assert_eq!(m.check_now().await, not_running, "stopped");
    scope.shutdown().await;
    assert_eq!(probe.call_count(), 1);

    // Stopped itself after max_errors.
    let probe = FakeProbe::always(Act::Error);
    let m = monitor(
        probe.clone(),
        HealthCheckConfig {
            max_errors: 1,
            ..every(60)
        },
    );
    let scope = start(&m);
    m.stopped().await;
    assert_eq!(m.check_now().await, not_running);
    assert_eq!(probe.call_count(), 1);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_mid_check_fails_the_callers_and_a_restart_hands_them_the_new_check() {
    let (probe, m) = slow_every_minute();
    let scope = start(&m);
    run_for(Duration::from_secs(10)).await;
    let waiting = tokio::spawn({
        let m = m.clone();
        async move { m.check_now().await }
    });
    run_for(Duration::from_secs(1)).await;
    m.finish("test");
    assert_eq!(
        waiting.await.unwrap(),
        Err(MonitorError::NotRunning("svc".into()))
    );

    m.restart().unwrap();
    run_for(Duration::from_secs(10)).await;
    let t = Instant::now();
    let waiting = tokio::spawn({
        let m = m.clone();
        async move { m.check_now().await }
    });
    run_for(Duration::from_secs(1)).await;
    m.restart().unwrap();
    let result = waiting.await.unwrap().unwrap();
    assert_eq!(result.detail, "slow");
    assert_eq!(
        t.elapsed(),
        Duration::from_secs(3),
        "the restarted run's first check, begun at 1 s, ended at 3 s"
    );
    assert_eq!(probe.dropped.load(Ordering::SeqCst), 2);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_caller_leaves_the_check_running_for_the_others() {
    let (probe, m) = slow_every_minute();
    let scope = start(&m);
    run_for(Duration::from_secs(10)).await;
    let gave_up = tokio::time::timeout(Duration::from_secs(1), m.check_now()).await;
    assert!(gave_up.is_err(), "the caller gave up after 1 s");
    // The check goes on; a later caller joins it and sees it end at 12 s.
    let t = Instant::now();
    let result = m.check_now().await.unwrap();
    assert_eq!(result.detail, "slow");
    assert_eq!(t.elapsed(), Duration::from_secs(1));
    assert_eq!(probe.call_count(), 2);
    assert_eq!(probe.dropped.load(Ordering::SeqCst), 0);
    assert_eq!(m.snapshot().checks(), 2);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_local_result_is_returned_and_counted_nowhere_else() {
    let probe = FakeProbe::new(|i| if i == 0 { Act::Healthy } else { Act::Local });
    let (m, mut events) = with_events(builder(probe.clone()).config(HealthCheckConfig {
        retries: -1,
        max_errors: 1,
        ..every(60)
    }));
    let scope = start(&m);
    run_for(Duration::from_secs(1)).await;
    for _ in 0..3 {
        let result = m.check_now().await.unwrap();
        assert_eq!(
            (result.healthy, result.kind, result.detail.as_str()),
            (false, CheckKind::Local, "too many open files")
        );
    }
    let s = m.snapshot();
    assert_eq!((s.status, s.failures, s.errors), (Status::Healthy, 0, 0));
    assert_eq!((s.results.local, s.detail.as_str()), (3, "ok"));
    assert!(s.running);
    assert!(events.try_recv().is_err());
    scope.shutdown().await;
}
