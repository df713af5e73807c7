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
    assert_eq!(p.next_deadline(t(100)), Some(t(160)));
    assert_eq!(shown(&p.tick(t(160))), ["reminder api"]);
    assert_eq!(
        shown(&p.on_events(t(170), "api", &[event(EventKind::Up, "api", 0, 170)])),
        ["up api"]
    );
    assert_eq!(p.next_deadline(t(170)), None);
}
