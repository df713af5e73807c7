//! Monitors that resume (SPEC §3 last rule, §9.1): what a monitor hands its
//! [`StateSink`] and when, a monitor restored from a [`MonitorState`], and a restart
//! that keeps the outage. Under tokio's paused clock, with fake probes and a fake sink.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_monitor::{HealthMonitor, LastSeenRegistry, Monitor, MonitorBuilder, Scope};
use health_types::{
    Event, EventKind, EventSink, HealthCheckConfig, MonitorState, StateSink, Status, TokioClock,
};

use self::support::{Act, BASE_SECS, FakeProbe, builder, every, run_for, start};

/// The wall-clock time `secs` seconds after the tests' monitors started.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(BASE_SECS + secs)
}

/// The wall-clock time `secs` seconds before the tests' monitors started.
fn before(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(BASE_SECS - secs)
}

/// One call to a [`Journal`].
#[derive(Clone, Debug, PartialEq)]
enum Entry {
    Record(MonitorState, Vec<Event>),
    Notify(Event),
}

/// A state sink and an event sink in one, that writes down every call in order.
#[derive(Debug, Default)]
struct Journal(Mutex<Vec<Entry>>);

impl StateSink for Journal {
    fn record(&self, monitor: &str, state: &MonitorState, events: &[Event]) {
        assert_eq!(monitor, "svc");
        let entry = Entry::Record(state.clone(), events.to_vec());
        self.0.lock().unwrap().push(entry);
    }
}

impl EventSink for Journal {
    fn notify(&self, event: Event) {
        self.0.lock().unwrap().push(Entry::Notify(event));
    }
}

impl Journal {
    /// The calls since the last `take`.
    fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The recorded states since the last `take`, with the kinds of their events; each
    /// recorded event must be notified right after its record, in the same order.
    fn records(&self) -> Vec<(MonitorState, Vec<EventKind>)> {
        let entries = self.take();
        let mut records = Vec::new();
        let mut entries = entries.into_iter().peekable();
        while let Some(entry) = entries.next() {
            let Entry::Record(state, events) = entry else {
                panic!("an event notified before it was recorded: {entry:?}");
            };
            for event in &events {
                assert_eq!(
                    entries.next(),
                    Some(Entry::Notify(event.clone())),
                    "the event sink gets what was recorded, after it was"
                );
            }
            records.push((state, events.iter().map(|e| e.kind).collect()));
        }
        records
    }

    /// The events since the last `take`, from the records.
    fn events(&self) -> Vec<Event> {
        self.take()
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Notify(event) => Some(event),
                Entry::Record(..) => None,
            })
            .collect()
    }
}

/// `builder` with the journal as both its state sink and its event sink.
fn journaled(builder: MonitorBuilder, journal: &Arc<Journal>) -> MonitorBuilder {
    builder.state_sink(journal.clone()).sink(journal.clone())
}

/// A persisted state: `status` with `failures`, an outage since `outage_start`.
fn persisted(
    status: Status,
    failures: u32,
    down_sent: bool,
    outage_start: SystemTime,
) -> MonitorState {
    MonitorState {
        status,
        failures,
        passes: 0,
        errors: 0,
        down_sent,
        outage_start: Some(outage_start),
        last_seen: Some(outage_start - Duration::from_secs(30)),
        cert_warned: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_restored_outage_is_not_notified_again_and_its_up_reports_all_of_it() {
    // Down for five minutes (F = 3, notified) when the earlier process went away.
    let state = persisted(Status::Unhealthy, 3, true, before(300));
    let probe = FakeProbe::new(|i| if i < 2 { Act::Unhealthy } else { Act::Healthy });
    let journal = Arc::new(Journal::default());
    let registry = Arc::new(LastSeenRegistry::new());
    let m = journaled(builder(probe.clone()), &journal)
        .config(every(10))
        .last_seen(registry.clone())
        .restore(state.clone())
        .build()
        .unwrap();
    let s = m.snapshot();
    assert_eq!(
        (s.status, s.failures, s.running),
        (Status::Unhealthy, 3, false)
    );
    assert_eq!(s.last_seen, Some(before(330)));
    assert_eq!(
        registry.get("svc"),
        Some(before(330)),
        "the registry learns it"
    );

    let scope = start(&m);
    let s = m.snapshot();
    assert_eq!(
        (s.status, s.failures, s.running),
        (Status::Unhealthy, 3, true)
    );
    run_for(Duration::from_secs(15)).await;
    assert_eq!(
        probe.call_times(),
        [0.0, 10.0],
        "the first check is immediate"
    );
    assert_eq!(m.status(), Status::Unhealthy);
    assert_eq!(
        journal.take(),
        [],
        "still the restored state: nothing recorded, no second down"
    );

    run_for(Duration::from_secs(10)).await;
    let records = journal.take();
    let [Entry::Record(state, recorded), Entry::Notify(up)] = &records[..] else {
        panic!("one record and its up: {records:?}");
    };
    assert_eq!(recorded, std::slice::from_ref(up));
    assert_eq!(up.kind, EventKind::Up);
    assert_eq!(
        up.outage,
        Some(Duration::from_secs(320)),
        "the whole outage"
    );
    assert_eq!(up.outage_start, Some(before(300)));
    assert_eq!(up.time, at(20));
    assert_eq!(
        *state,
        MonitorState {
            status: Status::Healthy,
            failures: 0,
            passes: 1,
            errors: 0,
            down_sent: false,
            outage_start: None,
            last_seen: Some(at(20)),
            cert_warned: None,
        }
    );
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restored_unhealthy_below_the_threshold_sends_down_on_the_next_failure() {
    let state = persisted(Status::Unhealthy, 2, false, before(20));
    let journal = Arc::new(Journal::default());
    let m = journaled(builder(FakeProbe::always(Act::Unhealthy)), &journal)
        .config(every(10))
        .restore(state)
        .build()
        .unwrap();
    let scope = start(&m);
    run_for(Duration::from_secs(1)).await;
    let records = journal.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let (state, kinds) = &records[0];
    assert_eq!(kinds, &[EventKind::Down]);
    assert_eq!(
        (
            state.status,
            state.failures,
            state.down_sent,
            state.outage_start
        ),
        (Status::Unhealthy, 3, true, Some(before(20)))
    );
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn down_and_up_name_their_outage_and_are_recorded_with_the_state() {
    // F = 2: healthy, three failures from 10 s, healthy again at 40 s.
    let probe = FakeProbe::new(|i| match i {
        1..=3 => Act::Unhealthy,
        _ => Act::Healthy,
    });
    let journal = Arc::new(Journal::default());
    let m = journaled_f2(builder(probe), &journal);
    let scope = start(&m);
    run_for(Duration::from_secs(45)).await;
    let state = |status, failures, down_sent, outage_start: Option<u64>, seen| MonitorState {
        status,
        failures,
        passes: u32::from(failures == 0),
        errors: 0,
        down_sent,
        outage_start: outage_start.map(at),
        last_seen: Some(at(seen)),
        cert_warned: None,
    };
    assert_eq!(
        journal.records(),
        [
            (state(Status::Healthy, 0, false, None, 0), vec![]),
            // The outage begins with the first failure, while still Healthy.
            (state(Status::Healthy, 1, false, Some(10), 0), vec![]),
            (
                state(Status::Unhealthy, 2, true, Some(10), 0),
                vec![EventKind::Down]
            ),
            // The third failure changes nothing that is persisted (failures capped at F).
            (
                state(Status::Healthy, 0, false, None, 40),
                vec![EventKind::Up]
            ),
        ]
    );
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_steady_monitor_records_last_seen_once_a_minute_and_on_shutdown() {
    let journal = Arc::new(Journal::default());
    let m = journaled_healthy(FakeProbe::always(Act::Healthy), &journal);
    let scope = start(&m);
    run_for(Duration::from_secs(135)).await;
    assert_eq!(m.snapshot().checks(), 14);
    let seen: Vec<_> = journal
        .records()
        .into_iter()
        .map(|(state, events)| {
            assert!(events.is_empty());
            assert_eq!(state.status, Status::Healthy);
            state.last_seen
        })
        .collect();
    assert_eq!(seen, [Some(at(0)), Some(at(60)), Some(at(120))]);
    // A graceful shutdown records the last healthy check, and not as stopped.
    scope.shutdown().await;
    let records = journal.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].0.status, records[0].0.last_seen),
        (Status::Healthy, Some(at(130)))
    );
}

#[tokio::test(start_paused = true)]
async fn local_results_record_nothing() {
    // Healthy 0 s to 50 s (recorded at 0 s: last_seen alone waits a minute), then local
    // results (SPEC §9.3): they change the persisted state in nothing, so none is
    // recorded, not even the last_seen that came due meanwhile; the shutdown flushes it.
    let probe = FakeProbe::new(|i| if i < 6 { Act::Healthy } else { Act::Local });
    let journal = Arc::new(Journal::default());
    let m = journaled_healthy(probe, &journal);
    let scope = start(&m);
    run_for(Duration::from_secs(135)).await;
    assert_eq!(m.snapshot().results.local, 8);
    let records = journal.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0.last_seen, Some(at(0)));
    scope.shutdown().await;
    let records = journal.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].0.status, records[0].0.last_seen),
        (Status::Healthy, Some(at(50)))
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_during_a_notified_outage_sends_no_second_down_and_one_whole_up() {
    // F = 2: down at 10 s; restarted at 15 s; failing until healthy at 35 s.
    let probe = FakeProbe::new(|i| if i < 4 { Act::Unhealthy } else { Act::Healthy });
    let journal = Arc::new(Journal::default());
    let m = journaled_f2(builder(probe.clone()), &journal);
    let scope = start(&m);
    run_for(Duration::from_secs(15)).await;
    let down = journal.events();
    assert_eq!(down.len(), 1);
    assert_eq!(
        (down[0].kind, down[0].outage_start),
        (EventKind::Down, Some(at(0)))
    );

    m.restart().unwrap();
    let s = m.snapshot();
    assert_eq!(
        (s.status, s.failures, s.running),
        (Status::Starting, 0, true)
    );
    run_for(Duration::from_secs(15)).await;
    assert_eq!(probe.call_times(), [0.0, 10.0, 15.0, 25.0]);
    assert_eq!(m.snapshot().failures, 2, "F reached again");
    let records = journal.records();
    assert!(
        records
            .iter()
            .all(|(state, events)| events.is_empty() && state.down_sent),
        "no second down, the outage kept: {records:?}"
    );

    run_for(Duration::from_secs(10)).await;
    let up = journal.events();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].kind, EventKind::Up);
    assert_eq!(
        up[0].outage,
        Some(Duration::from_secs(35)),
        "the whole outage"
    );
    assert_eq!(up[0].outage_start, Some(at(0)));
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_of_a_healthy_monitor_is_nothing_special() {
    let probe = FakeProbe::always(Act::Healthy);
    let journal = Arc::new(Journal::default());
    let m = journaled_healthy(probe.clone(), &journal);
    let scope = start(&m);
    run_for(Duration::from_secs(15)).await;
    assert_eq!(journal.records().len(), 1);
    m.restart().unwrap();
    assert_eq!(m.status(), Status::Starting);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(probe.call_times(), [0.0, 10.0, 15.0]);
    assert_eq!(m.status(), Status::Healthy);
    // The stop records the newer last-seen time; the check after it changes nothing.
    let records = journal.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let (state, events) = &records[0];
    assert!(events.is_empty());
    assert_eq!(
        (
            state.status,
            state.down_sent,
            state.outage_start,
            state.last_seen
        ),
        (Status::Healthy, false, None, Some(at(10)))
    );
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_monitor_that_stopped_itself_resumes_in_a_new_process_and_keeps_its_outage() {
    // One wall clock for both processes, so that wall time goes on across them.
    let clock = Arc::new(TokioClock::starting_at(at(0)));
    let config = HealthCheckConfig {
        retries: 2,
        max_errors: 3,
        ..every(10)
    };
    let journal = Arc::new(Journal::default());
    let first = journaled(builder(FakeProbe::always(Act::Error)), &journal)
        .config(config.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let scope = start(&first);
    first.stopped().await;
    let records = journal.records();
    let (last, kinds) = records.last().unwrap();
    assert_eq!(kinds, &[EventKind::Stopped]);
    assert_eq!(
        (last.status, last.errors, last.down_sent, last.outage_start),
        (Status::Error, 3, true, Some(at(0)))
    );
    scope.shutdown().await;

    // The new process, at 20 s: the target is back.
    let second = journaled(builder(FakeProbe::always(Act::Healthy)), &journal)
        .config(config)
        .clock(clock)
        .restore(last.clone())
        .build()
        .unwrap();
    assert_eq!(second.status(), Status::Starting, "it checks again");
    let scope = start(&second);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(second.status(), Status::Healthy);
    let events = journal.events();
    assert_eq!(events.len(), 1, "an up, and no down: {events:?}");
    assert_eq!(events[0].kind, EventKind::Up);
    assert_eq!(events[0].outage, Some(Duration::from_secs(20)));
    assert_eq!(events[0].outage_start, Some(at(0)));
    scope.shutdown().await;
}

/// A state sink that panics on every call.
#[derive(Debug)]
struct PanickingStateSink;

impl StateSink for PanickingStateSink {
    fn record(&self, _monitor: &str, _state: &MonitorState, _events: &[Event]) {
        panic!("store bug");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_state_sink_neither_stops_the_schedule_nor_loses_events() {
    let probe = FakeProbe::always(Act::Unhealthy);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let m: Monitor = builder(probe.clone())
        .config(HealthCheckConfig {
            retries: -1,
            ..every(10)
        })
        .state_sink(Arc::new(PanickingStateSink))
        .sink(Arc::new(tx))
        .build()
        .unwrap();
    let scope = Scope::new();
    m.start(&scope).unwrap();
    run_for(Duration::from_secs(25)).await;
    assert_eq!(probe.call_count(), 3);
    assert_eq!(events.try_recv().unwrap().kind, EventKind::Down);
    assert!(m.snapshot().running);
    scope.shutdown().await;
}

/// `builder` journaled into `journal`, checking every 10 s with F = 2.
fn journaled_f2(builder: MonitorBuilder, journal: &Arc<Journal>) -> Monitor {
    journaled(builder, journal)
        .config(HealthCheckConfig {
            retries: 2,
            ..every(10)
        })
        .build()
        .unwrap()
}

/// A monitor of `probe` journaled into `journal`, checking every 10 s.
fn journaled_healthy(probe: Arc<FakeProbe>, journal: &Arc<Journal>) -> Monitor {
    journaled(builder(probe), journal)
        .config(every(10))
        .build()
        .unwrap()
}
