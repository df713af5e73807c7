//! `cert_expiry` events (SPEC §9.4): one per certificate once its time left falls under
//! `cert_expiry_warn`, again only for a different certificate, never again after a
//! restart that restored the warned one. Under tokio's paused clock, with a probe whose
//! results carry a scripted certificate.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use health_monitor::{HealthMonitor, Monitor, MonitorBuilder};
use health_types::{
    CertInfo, CheckResult, Event, EventKind, HealthCheckConfig, MonitorState, Probe, ProbeError,
    StateSink, Url,
};
use tokio::sync::mpsc::UnboundedReceiver;

use self::support::{BASE_SECS, every, run_for, start, with_events};

const DAY: i64 = 86_400;

/// A probe whose every result is healthy and shows the certificate expiring at
/// `not_after` (unix s), when one is set.
#[derive(Debug, Default)]
struct CertProbe {
    not_after: Mutex<Option<i64>>,
}

impl CertProbe {
    fn showing(&self, not_after: Option<i64>) {
        *self.not_after.lock().unwrap() = not_after;
    }
}

#[async_trait]
impl Probe for CertProbe {
    async fn check(&self, _url: &Url) -> Result<CheckResult, ProbeError> {
        let cert = self.not_after.lock().unwrap().map(|not_after| {
            Arc::new(CertInfo {
                not_after,
                subject: "CN=svc.test".to_owned(),
                serial: format!("{not_after:x}"),
            })
        });
        Ok(CheckResult::healthy("HTTP 200 OK", Duration::from_millis(3)).with_cert(cert))
    }
}

/// Unix seconds `days` days after the tests' monitors started.
fn in_days(days: i64) -> i64 {
    i64::try_from(BASE_SECS).unwrap() + days * DAY
}

/// A state sink that keeps the `cert_warned` of every record.
#[derive(Debug, Default)]
struct Warned(Mutex<Vec<Option<i64>>>);

impl StateSink for Warned {
    fn record(&self, _monitor: &str, state: &MonitorState, _events: &[Event]) {
        self.0.lock().unwrap().push(state.cert_warned);
    }
}

impl Warned {
    fn last(&self) -> Option<i64> {
        self.0.lock().unwrap().last().copied().flatten()
    }
}

/// A monitor of `https://svc.test/` checking every minute, warning 14 days ahead, on
/// the shared test clock, recording into `sink`.
fn builder(probe: &Arc<CertProbe>, sink: &Arc<Warned>) -> MonitorBuilder {
    Monitor::builder("svc", "https://svc.test/".parse().unwrap(), probe.clone())
        .clock(Arc::new(health_types::TokioClock::starting_at(
            std::time::UNIX_EPOCH + Duration::from_secs(BASE_SECS),
        )))
        .last_seen(Arc::new(health_monitor::LastSeenRegistry::new()))
        .config(HealthCheckConfig {
            cert_expiry_warn: Duration::from_secs(14 * 86_400),
            ..every(60)
        })
        .state_sink(sink.clone())
}

fn drain(events: &mut UnboundedReceiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(event);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn one_warning_per_certificate_under_the_threshold() {
    let probe = Arc::new(CertProbe::default());
    let sink = Arc::new(Warned::default());
    let (m, mut events) = with_events(builder(&probe, &sink));
    // 20 days left: nothing to say.
    probe.showing(Some(in_days(20)));
    let scope = start(&m);
    run_for(Duration::from_secs(150)).await;
    assert!(drain(&mut events).is_empty());
    assert_eq!(m.snapshot().cert.as_ref().unwrap().not_after, in_days(20));

    // The certificate is swapped for one with 10 days left: one warning, however many
    // checks see it.
    probe.showing(Some(in_days(10) + 3_600));
    run_for(Duration::from_secs(300)).await;
    let warned = drain(&mut events);
    assert_eq!(warned.len(), 1, "{warned:?}");
    let event = &warned[0];
    assert_eq!(event.kind, EventKind::CertExpiry);
    assert_eq!(&*event.service, "svc");
    assert!(
        event.detail.starts_with("certificate CN=svc.test (serial ")
            && event.detail.ends_with(": 10 days left"),
        "{}",
        event.detail
    );
    assert!(
        event.detail.contains(" expires 2023-11-"),
        "{}",
        event.detail
    );
    assert_eq!(
        sink.last(),
        Some(in_days(10) + 3_600),
        "the warning is persisted"
    );

    // A result without a certificate (plain HTTP for a while) changes nothing; the
    // same certificate seen again is not warned of again.
    probe.showing(None);
    run_for(Duration::from_secs(120)).await;
    probe.showing(Some(in_days(10) + 3_600));
    run_for(Duration::from_secs(120)).await;
    assert!(drain(&mut events).is_empty());

    // Its replacement, also short-lived, expires later: one more warning.
    probe.showing(Some(in_days(12)));
    run_for(Duration::from_secs(120)).await;
    let warned = drain(&mut events);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].detail.ends_with(": 11 days left"),
        "{}",
        warned[0].detail
    );
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn nodes_serving_different_certificates_are_warned_of_once_each() {
    let probe = Arc::new(CertProbe::default());
    let sink = Arc::new(Warned::default());
    let (m, mut events) = with_events(builder(&probe, &sink));
    let scope = start(&m);
    // Two nodes behind one name, one check each in turn, for ten rounds; then a node
    // left behind with the certificate before both.
    for round in 0..10 {
        probe.showing(Some(in_days(if round % 2 == 0 { 5 } else { 8 })));
        run_for(Duration::from_secs(60)).await;
    }
    probe.showing(Some(in_days(3)));
    run_for(Duration::from_secs(120)).await;
    let warned: Vec<_> = drain(&mut events).into_iter().map(|e| e.detail).collect();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0].ends_with(": 5 days left"), "{warned:?}");
    assert!(warned[1].ends_with(": 7 days left"), "{warned:?}");
    assert_eq!(sink.last(), Some(in_days(8)));
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn expired_and_absurd_certificates_are_told_without_a_panic() {
    for (not_after, says) in [
        (in_days(-1), " expired 2023-11-13T"),
        (-86_400, " expired unix time -86400"),
        (i64::MIN, " expired unix time -9223372036854775808"),
    ] {
        let probe = Arc::new(CertProbe::default());
        probe.showing(Some(not_after));
        let sink = Arc::new(Warned::default());
        let (m, mut events) = with_events(builder(&probe, &sink));
        let scope = start(&m);
        run_for(Duration::from_secs(150)).await;
        let warned = drain(&mut events);
        assert_eq!(warned.len(), 1, "{not_after}: {warned:?}");
        assert!(warned[0].detail.contains(says), "{}", warned[0].detail);
        assert!(m.snapshot().running, "the monitor keeps checking");
        assert_eq!(m.snapshot().checks(), 3);
        scope.shutdown().await;
    }
    // Far in the future: no warning, no panic.
    let probe = Arc::new(CertProbe::default());
    probe.showing(Some(i64::MAX));
    let sink = Arc::new(Warned::default());
    let (m, mut events) = with_events(builder(&probe, &sink));
    let scope = start(&m);
    run_for(Duration::from_secs(90)).await;
    assert!(drain(&mut events).is_empty());
    assert_eq!(m.snapshot().checks(), 2);
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restored_monitor_does_not_warn_again_of_the_same_certificate() {
    let probe = Arc::new(CertProbe::default());
    probe.showing(Some(in_days(5)));
    let sink = Arc::new(Warned::default());
    let restored = MonitorState {
        cert_warned: Some(in_days(5)),
        ..MonitorState::default()
    };
    let (m, mut events) = with_events(builder(&probe, &sink).restore(restored));
    let scope = start(&m);
    run_for(Duration::from_secs(150)).await;
    assert!(drain(&mut events).is_empty());
    // A renewal that is still short (6 days) is warned of.
    probe.showing(Some(in_days(6)));
    run_for(Duration::from_secs(60)).await;
    let warned = drain(&mut events);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].detail.ends_with(": 5 days left"),
        "{}",
        warned[0].detail
    );
    scope.shutdown().await;
}
