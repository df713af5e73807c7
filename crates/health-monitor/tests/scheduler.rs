//! Scheduler and lifecycle tests under tokio's paused clock, with fake probes.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, UNIX_EPOCH},
};

use health_monitor::{
    HealthMonitor, LastSeenRegistry, Monitor, MonitorError, SchedulerOptions, Scope,
};
use health_types::{CheckKind, ConfigError, Event, EventKind, HealthCheckConfig, Status};
use tokio::time::Instant;

use self::support::{
    Act, BASE_SECS, FakeProbe, builder, builder_of, every, monitor, no_jitter, run_for, start, url,
    with_events,
};

/// Starts ten monitors `m0` to `m9`, checked every 60 s by one probe that does `act`,
/// under a new scope with `options`.
fn start_ten(options: SchedulerOptions, act: Act) -> (Scope, Arc<FakeProbe>, Vec<Monitor>) {
    let scope = Scope::with_options(options);
    let probe = FakeProbe::always(act);
    let config = Arc::new(every(60));
    let monitors = (0..10)
        .map(|i| {
            let m = builder_of(&format!("m{i}"), "http://svc.test/", probe.clone())
                .shared_config(config.clone())
                .build()
                .unwrap();
            m.start(&scope).unwrap();
            m
        })
        .collect();
    (scope, probe, monitors)
}

#[tokio::test(start_paused = true)]
async fn first_check_is_immediate_then_periodic() {
    let probe = FakeProbe::always(Act::Healthy);
    let m = monitor(probe.clone(), every(10));
    let scope = start(&m);
    assert_eq!(m.status(), Status::Starting);
    run_for(Duration::from_millis(35_500)).await;
    assert_eq!(probe.call_times(), [0.0, 10.0, 20.0, 30.0]);
    assert_eq!(m.status(), Status::Healthy);
    assert_eq!(m.latency(), Duration::from_millis(7));
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_check_delays_the_next_and_checks_never_overlap() {
    // Checks take 25 s against a 10 s interval: each next check starts as the previous
    // one ends, and missed ones are not bursted.
    let probe = FakeProbe::always(Act::Slow(Duration::from_secs(25)));
    let m = monitor(
        probe.clone(),
        HealthCheckConfig {
            timeout: Duration::from_secs(60),
            ..every(10)
        },
    );
    let scope = start(&m);
    run_for(Duration::from_secs(80)).await;
    assert_eq!(probe.call_times(), [0.0, 25.0, 50.0, 75.0]);
    assert_eq!(probe.max_in_flight.load(Ordering::SeqCst), 1);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_monitor_cuts_a_late_check_at_its_timeout() {
    let probe = FakeProbe::always(Act::Hang);
    let m = monitor(
        probe.clone(),
        HealthCheckConfig {
            timeout: Duration::from_secs(3),
            retries: -1,
            ..every(10)
        },
    );
    let scope = start(&m);
    run_for(Duration::from_secs(4)).await;
    let s = m.snapshot();
    assert_eq!(s.status, Status::Unhealthy);
    assert_eq!(s.kind, Some(CheckKind::Timeout));
    assert_eq!(s.detail, "timed out after 3s");
    assert_eq!(
        probe.dropped.load(Ordering::SeqCst),
        1,
        "the late check was dropped"
    );
    assert_eq!(probe.in_flight.load(Ordering::SeqCst), 0);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_is_an_error_and_the_monitor_goes_on() {
    let probe = FakeProbe::new(|i| if i == 1 { Act::Panic } else { Act::Healthy });
    let m = monitor(probe.clone(), every(10));
    let scope = start(&m);
    run_for(Duration::from_secs(11)).await;
    let s = m.snapshot();
    assert_eq!(s.status, Status::Error);
    assert_eq!(s.detail, "check panicked: boom");
    assert_eq!(s.errors, 1);
    assert!(s.running);
    run_for(Duration::from_secs(10)).await;
    assert_eq!(m.status(), Status::Healthy);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn max_errors_stops_with_an_event_and_no_more_checks() {
    let probe = FakeProbe::always(Act::Error);
    let (m, mut events) = with_events(builder(probe.clone()).config(HealthCheckConfig {
        retries: 10,
        max_errors: 3,
        ..every(10)
    }));
    let scope = start(&m);
    m.stopped().await;
    assert_eq!(m.status(), Status::Error);
    let event = events.try_recv().unwrap();
    assert_eq!(event.kind, EventKind::Stopped);
    assert_eq!(event.detail, "permission denied");
    run_for(Duration::from_secs(600)).await;
    assert_eq!(probe.call_count(), 3);
    assert!(events.try_recv().is_err());
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn down_and_up_events_carry_what_notifications_need() {
    // Healthy, then 2 failures (F = 2) at 10 s and 20 s, then healthy at 30 s.
    let probe = FakeProbe::new(|i| match i {
        1 | 2 => Act::Unhealthy,
        _ => Act::Healthy,
    });
    let base = UNIX_EPOCH + Duration::from_secs(BASE_SECS);
    let (m, mut events) = with_events(builder_of("api", "http://api.test/", probe).config(
        HealthCheckConfig {
            retries: 2,
            ..every(10)
        },
    ));
    let scope = start(&m);
    run_for(Duration::from_secs(35)).await;
    let down = events.try_recv().unwrap();
    assert_eq!(down.kind, EventKind::Down);
    assert_eq!(&*down.service, "api");
    assert_eq!(down.url, "http://api.test/");
    assert_eq!(down.detail, "HTTP 503 Service Unavailable");
    assert_eq!(down.last_seen, Some(base));
    assert_eq!(down.time, base + Duration::from_secs(20));
    let up = events.try_recv().unwrap();
    assert_eq!(up.kind, EventKind::Up);
    assert_eq!(up.latency, Duration::from_millis(7));
    assert_eq!(up.outage, Some(Duration::from_secs(20)));
    assert_eq!(up.time, base + Duration::from_secs(30));
    assert!(events.try_recv().is_err());
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_offsets_the_phase_once_and_keeps_the_first_check_immediate() {
    let scope = Scope::new();
    let mut probes = Vec::new();
    let mut monitors = Vec::new();
    for _ in 0..20 {
        let probe = FakeProbe::always(Act::Healthy);
        let m = monitor(
            probe.clone(),
            HealthCheckConfig {
                interval: Duration::from_secs(30),
                jitter: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        );
        m.start(&scope).unwrap();
        probes.push(probe);
        monitors.push(m);
    }
    run_for(Duration::from_secs(75)).await;
    let mut offsets = Vec::new();
    for probe in &probes {
        let times = probe.call_times();
        assert_eq!(times[0], 0.0, "first check immediate");
        assert!(
            (30.0..40.0).contains(&times[1]),
            "second check in [30, 40): {times:?}"
        );
        assert!(
            (times[2] - times[1] - 30.0).abs() < 1e-9,
            "then periodic: {times:?}"
        );
        offsets.push(times[1]);
    }
    offsets.sort_by(f64::total_cmp);
    offsets.dedup();
    assert!(offsets.len() > 10, "phases are spread: {offsets:?}");
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn intervals_switch_with_the_phase() {
    // fast while confirming, down while unhealthy, back to interval when healthy.
    let probe = FakeProbe::new(|i| match i {
        1..=4 => Act::Unhealthy,
        _ => Act::Healthy,
    });
    let m = monitor(
        probe.clone(),
        HealthCheckConfig {
            fast_interval: Some(Duration::from_secs(2)),
            down_interval: Some(Duration::from_secs(60)),
            retries: 3,
            ..every(30)
        },
    );
    let scope = start(&m);
    run_for(Duration::from_secs(160)).await;
    assert_eq!(
        probe.call_times(),
        [0.0, 30.0, 32.0, 34.0, 94.0, 154.0],
        "fast 2 s while confirming, 60 s while down, 30 s once healthy"
    );
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn finish_mid_check_drops_the_check_and_sends_nothing() {
    let probe = FakeProbe::always(Act::Slow(Duration::from_secs(5)));
    // The default config, jitter included.
    let (m, mut events) = with_events(builder(probe.clone()));
    let scope = start(&m);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(probe.in_flight.load(Ordering::SeqCst), 1);
    m.finish("test");
    assert_eq!(m.status(), Status::Stopped);
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(probe.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(scope.task_count(), 1, "only the scheduler is left");
    run_for(Duration::from_secs(300)).await;
    assert_eq!(probe.call_count(), 1);
    assert!(events.try_recv().is_err());
    scope.shutdown().await;
    assert_eq!(scope.task_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_scope_stops_every_monitor_mid_check_or_mid_wait() {
    let scope = Scope::new();
    let waiting = monitor(
        FakeProbe::always(Act::Healthy),
        HealthCheckConfig::default(),
    );
    let hanging_probe = FakeProbe::always(Act::Hang);
    let hanging = monitor(hanging_probe.clone(), HealthCheckConfig::default());
    waiting.start(&scope).unwrap();
    hanging.start(&scope).unwrap();
    run_for(Duration::from_secs(1)).await;
    assert_eq!(waiting.status(), Status::Healthy);
    assert_eq!(hanging.status(), Status::Starting);
    scope.cancel();
    // Both stop without any time passing.
    tokio::time::timeout(Duration::from_millis(1), async {
        waiting.stopped().await;
        hanging.stopped().await;
    })
    .await
    .unwrap();
    assert_eq!(waiting.status(), Status::Stopped);
    assert_eq!(hanging.status(), Status::Stopped);
    scope.shutdown().await;
    assert_eq!(scope.task_count(), 0);
    assert_eq!(hanging_probe.dropped.load(Ordering::SeqCst), 1);
    assert!(matches!(
        waiting.start(&scope),
        Err(MonitorError::ScopeClosed(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn restart_resets_counters_and_checks_at_once() {
    let probe = FakeProbe::new(|i| if i < 2 { Act::Unhealthy } else { Act::Healthy });
    let m = monitor(probe.clone(), every(10));
    assert!(matches!(m.restart(), Err(MonitorError::NotStarted(_))));
    let scope = Scope::new();
    m.start(&scope).unwrap();
    assert!(matches!(
        m.start(&scope),
        Err(MonitorError::AlreadyRunning(_))
    ));
    run_for(Duration::from_secs(15)).await;
    assert_eq!(m.snapshot().failures, 2);
    m.restart().unwrap();
    let s = m.snapshot();
    assert_eq!(
        (s.status, s.failures, s.checks(), s.running),
        (Status::Starting, 0, 0, true)
    );
    run_for(Duration::from_millis(1)).await;
    assert_eq!(probe.call_times(), [0.0, 10.0, 15.0]);
    assert_eq!(m.status(), Status::Healthy);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn update_url_is_used_next_and_keeps_last_seen() {
    let probe = FakeProbe::always(Act::Healthy);
    let registry = Arc::new(LastSeenRegistry::new());
    let m = builder_of("svc", "http://old.test/", probe.clone())
        .config(every(10))
        .last_seen(registry.clone())
        .build()
        .unwrap();
    let scope = start(&m);
    run_for(Duration::from_secs(1)).await;
    let seen = m.last_seen().unwrap();
    assert_eq!(registry.get("svc"), Some(seen));
    let err = m.update_url(url("file:///nohost")).unwrap_err();
    assert!(err.to_string().contains("invalid monitor config"), "{err}");
    m.update_url(url("http://new.test:81/health")).unwrap();
    assert_eq!(m.url().as_str(), "http://new.test:81/health");
    assert_eq!(m.snapshot().url.as_str(), "http://new.test:81/health");
    assert_eq!(m.last_seen(), Some(seen));
    run_for(Duration::from_secs(10)).await;
    let calls = probe.calls.lock().unwrap().clone();
    assert_eq!(calls[0].1.as_str(), "http://old.test/");
    assert_eq!(calls[1].1.as_str(), "http://new.test:81/health");
    drop(calls);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn check_health_runs_one_probe_and_leaves_state_alone() {
    let probe = FakeProbe::always(Act::Unhealthy);
    let m = monitor(probe.clone(), HealthCheckConfig::default());
    let result = m.check_health().await.unwrap();
    assert!(!result.healthy);
    assert_eq!(result.detail, "HTTP 503 Service Unavailable");
    assert_eq!(m.status(), Status::Unknown);
    assert_eq!(m.snapshot().checks(), 0);
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_every_change_in_order() {
    let probe = FakeProbe::new(|i| if i == 0 { Act::Healthy } else { Act::Error });
    let m = monitor(
        probe,
        HealthCheckConfig {
            max_errors: 2,
            ..every(10)
        },
    );
    let mut rx = m.subscribe();
    let scope = Scope::new();
    m.start(&scope).unwrap();
    let mut seen = Vec::new();
    while rx.changed().await.is_ok() {
        let s = rx.borrow_and_update().clone();
        seen.push((s.status, s.checks(), s.running));
        if !s.running {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            (Status::Starting, 0, true),
            (Status::Healthy, 1, true),
            (Status::Error, 2, true),
            (Status::Error, 3, false),
        ]
    );
    scope.shutdown().await;
}

/// Ten monitors started together under a tight limit of a scope: the limit spreads
/// their checks.
#[tokio::test(start_paused = true)]
async fn scope_limits_spread_checks_started_together() {
    struct Case {
        name: &'static str,
        options: SchedulerOptions,
        act: Act,
        run_for: Duration,
        /// When each check began, since the monitors started.
        starts: Vec<Duration>,
        /// The most checks in flight at once.
        max_in_flight: usize,
    }
    let secs = |s: &[u64]| s.iter().map(|&s| Duration::from_secs(s)).collect();
    let millis = |ms: &[u64]| ms.iter().map(|&ms| Duration::from_millis(ms)).collect();
    let cases = [
        Case {
            name: "check slots bound the checks in flight",
            options: SchedulerOptions {
                max_in_flight: 3,
                ..Default::default()
            },
            act: Act::Slow(Duration::from_secs(5)),
            run_for: Duration::from_secs(30),
            // Ten 5 s checks through three slots.
            starts: secs(&[0, 0, 0, 5, 5, 5, 10, 10, 10, 15]),
            max_in_flight: 3,
        },
        Case {
            name: "starts per tick are limited and the rest go in the next ticks",
            options: SchedulerOptions {
                max_starts_per_tick: 3,
                ..Default::default()
            },
            act: Act::Healthy,
            run_for: Duration::from_secs(1),
            starts: millis(&[0, 0, 0, 1, 1, 1, 2, 2, 2, 3]),
            // Each check answers within the poll that starts it.
            max_in_flight: 1,
        },
    ];
    for case in cases {
        let (scope, probe, monitors) = start_ten(case.options, case.act);
        run_for(case.run_for).await;
        assert_eq!(
            probe.call_offsets(Duration::clone),
            case.starts,
            "{}",
            case.name
        );
        assert_eq!(
            probe.max_in_flight.load(Ordering::SeqCst),
            case.max_in_flight,
            "{}",
            case.name
        );
        assert!(
            monitors.iter().all(|m| m.status() == Status::Healthy),
            "{}",
            case.name
        );
        scope.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_monitor_started_while_the_scheduler_sleeps_is_checked_at_once() {
    let scope = Scope::new();
    let config = every(3600);
    let first = FakeProbe::always(Act::Healthy);
    let a = monitor(first.clone(), config.clone());
    a.start(&scope).unwrap();
    // The scheduler now sleeps on a timer an hour away.
    run_for(Duration::from_secs(10)).await;
    assert_eq!(first.call_count(), 1);
    let second = FakeProbe::always(Act::Healthy);
    let b = monitor(second.clone(), config);
    let started = Instant::now();
    b.start(&scope).unwrap();
    run_for(Duration::from_secs(1)).await;
    assert_eq!(second.call_times().len(), 1);
    assert_eq!(second.calls.lock().unwrap()[0].0, started);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_ends_the_monitor() {
    let probe = FakeProbe::always(Act::Healthy);
    let m = monitor(probe.clone(), every(10));
    let scope = start(&m);
    run_for(Duration::from_secs(15)).await;
    assert_eq!(probe.call_count(), 2);
    drop(m);
    run_for(Duration::from_secs(100)).await;
    assert_eq!(probe.call_count(), 2);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn json_form_matches_the_snapshot() {
    let probe = FakeProbe::always(Act::Healthy);
    let m = monitor(probe, no_jitter(HealthCheckConfig::default()));
    let scope = start(&m);
    run_for(Duration::from_secs(2)).await;
    let json = m.to_json();
    assert_eq!(json.name, "svc");
    assert_eq!(json.status, Status::Healthy);
    assert_eq!(json.started, 1_700_000_000);
    assert_eq!(json.last_seen, 1_700_000_000);
    assert_eq!(json.latency, 7);
    assert!((json.uptime - 2.0).abs() < 1e-6);
    assert_eq!(json.url, "http://svc.test/");
    assert_eq!(json.config.interval, 30_000_000_000);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_password_reaches_the_probe_and_nothing_else() {
    let probe = FakeProbe::always(Act::Unhealthy);
    let (m, mut events) = with_events(
        builder_of("svc", "http://admin:s3cret@svc.test/", probe.clone()).config(
            HealthCheckConfig {
                retries: -1,
                ..every(10)
            },
        ),
    );
    let scope = start(&m);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(
        probe.calls.lock().unwrap()[0].1.password(),
        Some("s3cret"),
        "the probe checks the URL as configured"
    );
    assert_eq!(m.to_json().url, "http://admin:***@svc.test/");
    let down = events.try_recv().unwrap();
    assert_eq!(down.kind, EventKind::Down);
    assert_eq!(down.url, "http://admin:***@svc.test/");
    scope.shutdown().await;
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let m = monitor(
        FakeProbe::always(Act::Healthy),
        HealthCheckConfig::default(),
    );
    assert!(matches!(
        m.start(&Scope::new()),
        Err(MonitorError::NoRuntime(_))
    ));
}

#[test]
fn invalid_config_and_url_are_rejected_at_build() {
    let bad = HealthCheckConfig {
        interval: Duration::ZERO,
        ..Default::default()
    };
    let err = builder(FakeProbe::always(Act::Healthy))
        .config(bad)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        MonitorError::Config(ConfigError::Invalid {
            key: "interval",
            ..
        })
    ));
    let err = builder_of("svc", "file:///x", FakeProbe::always(Act::Healthy))
        .build()
        .unwrap_err();
    assert!(matches!(err, MonitorError::Config(ConfigError::Url { .. })));
}

/// A sink that panics on every event.
#[derive(Debug)]
struct PanickingSink;

impl health_types::EventSink for PanickingSink {
    fn notify(&self, _event: Event) {
        panic!("sink bug");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_sink_does_not_stop_the_schedule() {
    let probe = FakeProbe::always(Act::Unhealthy);
    let m = builder(probe.clone())
        .config(HealthCheckConfig {
            retries: -1,
            ..every(10)
        })
        .sink(Arc::new(PanickingSink))
        .build()
        .unwrap();
    let scope = start(&m);
    run_for(Duration::from_secs(25)).await;
    assert_eq!(
        probe.call_count(),
        3,
        "checks go on after the sink panicked on down"
    );
    assert!(m.snapshot().running);
    scope.shutdown().await;
}
