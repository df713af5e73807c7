//! The policy's rules, step by step with explicit times (the vectors in `tests/policy/`
//! drive the gate under tokio's paused clock).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::{Event, EventKind, MonitorState};

use super::*;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_714_521_600 + secs)
}

fn event(kind: EventKind, name: &str, outage: u64, at: u64) -> Event {
    Event {
        kind,
        service: Arc::from(name),
        url: format!("http://{name}.test/"),
        detail: String::new(),
        latency: Duration::ZERO,
        last_seen: None,
        outage: None,
        outage_start: Some(t(outage)),
        time: t(at),
    }
}

fn shown(out: &[(Arc<str>, Event)]) -> Vec<String> {
    out.iter().map(|(m, e)| format!("{} {m}", e.kind)).collect()
}

fn rules(f: impl FnOnce(&mut AlertRules)) -> AlertRules {
    let mut rules = AlertRules::default();
    f(&mut rules);
    rules
}

#[test]
fn untracked_monitors_pass_through() {
    let mut p = AlertPolicy::new(vec![("api".into(), AlertRules::default())], vec![]).unwrap();
    assert!(!p.tracks("api"));
    let down = event(EventKind::Down, "api", 0, 0);
    assert_eq!(shown(&p.on_events(t(0), "api", &[down])), ["down api"]);
}

#[test]
fn a_dependents_down_waits_for_its_dependency() {
    let mut p = AlertPolicy::new(
        vec![
            ("db".into(), AlertRules::default()),
            ("api".into(), rules(|r| r.depends_on = vec!["db".into()])),
        ],
        vec![],
    )
    .unwrap();
    assert!(p.tracks("db") && p.tracks("api"));
    assert_eq!(
        shown(&p.on_events(t(0), "db", &[event(EventKind::Down, "db", 0, 0)])),
        ["down db"]
    );
    assert!(
        p.on_events(t(5), "api", &[event(EventKind::Down, "api", 5, 5)])
            .is_empty()
    );
    // db back, api still down: api's down goes out then, after db's up.
    assert_eq!(
        shown(&p.on_events(t(60), "db", &[event(EventKind::Up, "db", 0, 60)])),
        ["up db", "down api"]
    );
    assert_eq!(
        shown(&p.on_events(t(90), "api", &[event(EventKind::Up, "api", 5, 90)])),
        ["up api"]
    );
}

#[test]
fn cycles_and_unknown_names_are_refused() {
    let err = AlertPolicy::new(
        vec![
            ("a".into(), rules(|r| r.depends_on = vec!["b".into()])),
            ("b".into(), rules(|r| r.depends_on = vec!["a".into()])),
        ],
        vec![],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`depends_on` goes round in a circle: a -> b -> a"
    );
    let err = AlertPolicy::new(
        vec![("a".into(), rules(|r| r.depends_on = vec!["a".into()]))],
        vec![],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`depends_on` goes round in a circle: a -> a"
    );
    let err = AlertPolicy::new(
        vec![("a".into(), rules(|r| r.depends_on = vec!["x".into()]))],
        vec![],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "monitor \"a\": `depends_on` names \"x\", but no monitor has that name"
    );
    let window = MaintenanceWindow::once(vec!["x".into()], t(0), t(1)).unwrap();
    let err =
        AlertPolicy::new(vec![("a".into(), AlertRules::default())], vec![window]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "[[maintenance]] 1: `monitors` names \"x\", but no monitor has that name"
    );
}

#[test]
fn a_restored_down_without_policy_state_counts_as_told() {
    let mut p = AlertPolicy::new(
        vec![(
            "api".into(),
            rules(|r| r.remind_every = Some(Duration::from_secs(60))),
        )],
        vec![],
    )
    .unwrap();
    let saved = MonitorState {
        down_sent: true,
        outage_start: Some(t(0)),
        ..MonitorState::default()
    };
    p.restore("api", &saved, AlertState::default(), t(100));
    // The first tick brings restored monitors in step: nothing to do here.
    assert_eq!(p.next_deadline(t(100)), Some(t(100)));
    assert!(p.tick(t(100)).is_empty());
    assert_eq!(p.next_deadline(t(100)), Some(t(160)));
    assert_eq!(shown(&p.tick(t(160))), ["reminder api"]);
    assert_eq!(
        shown(&p.on_events(t(170), "api", &[event(EventKind::Up, "api", 0, 170)])),
        ["up api"]
    );
    assert_eq!(p.next_deadline(t(170)), None);
}

#[test]
fn a_monitor_whose_rules_were_removed_lets_out_what_it_held() {
    // Saved while db held api's down; the config no longer has depends_on.
    let mut p = AlertPolicy::new(
        vec![
            ("db".into(), AlertRules::default()),
            ("api".into(), AlertRules::default()),
        ],
        vec![],
    )
    .unwrap();
    assert!(!p.tracks("api"));
    let held = AlertState {
        last: Some(event(EventKind::Down, "api", 5, 5)),
        ..AlertState::default()
    };
    let saved = MonitorState {
        down_sent: true,
        outage_start: Some(t(5)),
        ..MonitorState::default()
    };
    p.restore("api", &saved, held, t(100));
    assert!(p.tracks("api"));
    assert_eq!(shown(&p.tick(t(100))), ["down api"]);
    // From now on its events go through as they come, its up after its down.
    assert_eq!(
        shown(&p.on_events(t(120), "api", &[event(EventKind::Up, "api", 5, 120)])),
        ["up api"]
    );
    assert_eq!(
        shown(&p.on_events(t(130), "api", &[event(EventKind::Down, "api", 130, 130)])),
        ["down api"]
    );
}

#[test]
fn maintenance_queries_do_not_swallow_a_window_closing() {
    let window = MaintenanceWindow::once(vec!["api".into()], t(0), t(100)).unwrap();
    let mut p =
        AlertPolicy::new(vec![("api".into(), AlertRules::default())], vec![window]).unwrap();
    assert!(p.tick(t(10)).is_empty());
    assert!(
        p.on_events(t(20), "api", &[event(EventKind::Down, "api", 20, 20)])
            .is_empty()
    );
    assert!(p.in_maintenance("api", t(50)));
    // The API asks after the window closed, before the timer wakes.
    assert!(!p.in_maintenance("api", t(150)));
    assert_eq!(shown(&p.tick(t(151))), ["down api"]);
}

#[test]
fn a_stopped_dependency_no_longer_holds_its_dependents_and_stops_reminding() {
    let mut p = AlertPolicy::new(
        vec![
            (
                "db".into(),
                rules(|r| r.remind_every = Some(Duration::from_secs(60))),
            ),
            ("api".into(), rules(|r| r.depends_on = vec!["db".into()])),
        ],
        vec![],
    )
    .unwrap();
    assert_eq!(
        shown(&p.on_events(t(0), "db", &[event(EventKind::Down, "db", 0, 0)])),
        ["down db"]
    );
    assert!(
        p.on_events(t(5), "api", &[event(EventKind::Down, "api", 5, 5)])
            .is_empty()
    );
    let stopped = Event {
        kind: EventKind::Stopped,
        ..event(EventKind::Down, "db", 0, 30)
    };
    assert_eq!(
        shown(&p.on_events(t(30), "db", &[stopped])),
        ["stopped db", "down api"]
    );
    assert_eq!(
        p.next_deadline(t(30)),
        None,
        "no reminders for a stopped monitor"
    );
}

#[test]
fn a_clock_that_went_back_does_not_put_reminders_off() {
    let mut p = AlertPolicy::new(
        vec![(
            "api".into(),
            rules(|r| r.remind_every = Some(Duration::from_secs(60))),
        )],
        vec![],
    )
    .unwrap();
    assert_eq!(
        shown(&p.on_events(t(1000), "api", &[event(EventKind::Down, "api", 1000, 1000)])),
        ["down api"]
    );
    // The clock steps back 900 s: the next reminder is 60 s from the new now, not 960.
    assert!(p.tick(t(100)).is_empty());
    assert_eq!(p.next_deadline(t(100)), Some(t(160)));
    assert_eq!(shown(&p.tick(t(160))), ["reminder api"]);
}
