//! The store against real SQLite files in temporary directories: opening and
//! migrating, monitor states, batching, the outbox queries and pruning.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::{
    AlertState, Clock, ErrorChain, Event, EventKind, MonitorState, Outbox, OutboxEntry, StateSink,
    Status,
};
use rusqlite::Connection;

use crate::{Store, StoreError, StoreOptions, schema::KNOWN_VERSION, time::whole_ms};

/// A wall clock the test moves by hand.
#[derive(Debug)]
struct FakeClock(Mutex<SystemTime>);

impl FakeClock {
    fn at(time: SystemTime) -> Arc<FakeClock> {
        Arc::new(FakeClock(Mutex::new(time)))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// 2023-11-14T22:13:20Z plus some sub-millisecond noise.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_nanos(123_456)
}

/// Options whose tick never comes during a test: batches commit on flush or events.
fn options(clock: &Arc<FakeClock>) -> StoreOptions {
    StoreOptions {
        tick: Duration::from_secs(3600),
        clock: clock.clone(),
        ..StoreOptions::default()
    }
}

fn open(path: &Path) -> Store {
    Store::open(path, options(&FakeClock::at(t0()))).unwrap()
}

fn state(status: Status, failures: u32) -> MonitorState {
    MonitorState {
        status,
        failures,
        ..MonitorState::default()
    }
}

fn event(kind: EventKind, service: &str, outage_start: SystemTime, detail: &str) -> Event {
    Event {
        kind,
        service: service.into(),
        url: format!("http://{service}.test/"),
        detail: detail.to_owned(),
        latency: Duration::from_millis(12),
        last_seen: Some(t0()),
        outage: (kind == EventKind::Up).then_some(Duration::from_secs(90)),
        outage_start: Some(outage_start),
        time: t0() + Duration::from_secs(5),
    }
}

/// What an open that fails in SQLite says first.
const OPEN: &str = "cannot open store";

/// Routes monitor `a` to `slack` and `webhook` (twice, to check they are deduplicated)
/// and every other monitor to `webhook`.
fn route(monitor: &str) -> Vec<String> {
    match monitor {
        "a" => vec!["webhook".into(), "slack".into(), "webhook".into()],
        _ => vec!["webhook".into()],
    }
}

fn details(entries: &[OutboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.event.detail.as_str()).collect()
}

fn chain(error: &StoreError) -> String {
    ErrorChain(error).to_string()
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

/// A fresh temporary directory and the path `healthd.db` in it; the directory goes
/// when the first value is dropped.
fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("healthd.db");
    (dir, path)
}

/// Opens `path` with default options, which must fail as `kind` accepts and with a
/// message that starts `<context> <path>: `; returns the error's whole chain for the
/// test to check its cause.
fn refused_open(path: &Path, kind: fn(&StoreError) -> bool, context: &str) -> String {
    let error = Store::open(path, StoreOptions::default()).unwrap_err();
    assert!(kind(&error), "{error:?}");
    let text = chain(&error);
    let start = format!("{context} {}: ", path.display());
    assert!(text.starts_with(&start), "{text}");
    text
}

/// Opens a store in a fresh temporary directory with [`route`], then runs `sql` on a
/// connection of its own, which it returns with the directory and the store.
fn routed_store_after(sql: &str) -> (tempfile::TempDir, Store, Connection) {
    let (dir, path) = temp_db();
    let store = open(&path);
    store.set_router(route);
    let conn = raw(&path);
    conn.execute_batch(sql).unwrap();
    (dir, store, conn)
}

/// Records a `down` event of `monitor` with `detail`, its state unhealthy after 3 failures.
fn record_down(store: &Store, monitor: &str, detail: &str) {
    let down = event(EventKind::Down, monitor, t0(), detail);
    store.record(monitor, &state(Status::Unhealthy, 3), &[down]);
}

#[test]
fn a_newer_schema_is_refused_naming_the_path() {
    let (_dir, path) = temp_db();
    drop(open(&path));
    raw(&path).pragma_update(None, "user_version", 7).unwrap();

    let error = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(
        matches!(error, StoreError::TooNew { found: 7, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "store {}: schema version 7 is newer than this healthd (knows {KNOWN_VERSION}); use a newer healthd or another [storage] path",
            path.display()
        )
    );
    assert_eq!(error.path(), path);
}

#[test]
fn an_empty_file_is_migrated_to_the_current_schema() {
    let (_dir, path) = temp_db();
    std::fs::File::create(&path).unwrap();

    let store = open(&path);
    assert!(store.load_states().unwrap().is_empty());
    drop(store);
    let conn = raw(&path);
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, KNOWN_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.sort();
    assert_eq!(
        tables,
        [
            "history_change",
            "history_day",
            "history_hour",
            "history_minute",
            "history_monitor",
            "monitor_state",
            "outbox"
        ]
    );
    drop(conn);

    // A second open finds the current version and migrates nothing.
    let store = open(&path);
    assert!(store.load_states().unwrap().is_empty());
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, "these are not the bytes of a database\n".repeat(200)).unwrap();

    let text = refused_open(&path, |e| matches!(e, StoreError::Open { .. }), OPEN);
    assert!(text.contains("not a database"), "{text}");
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    raw(&path)
        .execute_batch("CREATE TABLE recipes (name TEXT)")
        .unwrap();

    let error = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(matches!(error, StoreError::Foreign { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_directory_that_cannot_be_created_is_reported() {
    // An empty regular file where the store's directory should be.
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().join("state").join("healthd.db");

    let create_dir = |e: &StoreError| matches!(e, StoreError::CreateDir { .. });
    let text = refused_open(&path, create_dir, "cannot create the directory of store");
    assert!(text.to_lowercase().contains("not a directory"), "{text}");
}

#[test]
fn a_read_only_directory_is_reported() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(locked.join("probe"), "").is_ok() {
        println!(
            "skipped: this user writes into read-only directories (root), so there is nothing to refuse"
        );
        return;
    }
    let path = locked.join("healthd.db");

    let text = refused_open(&path, |e| matches!(e, StoreError::Open { .. }), OPEN);
    assert!(text.contains("unable to open"), "{text}");
}

#[test]
fn a_store_is_opened_once_per_process() {
    let (dir, path) = temp_db();
    let store = open(&path);

    let other_spelling = dir.path().join(".").join("healthd.db");
    let error = Store::open(&other_spelling, StoreOptions::default()).unwrap_err();
    assert!(matches!(error, StoreError::AlreadyOpen { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "store {} is already open in this process",
            other_spelling.display()
        )
    );

    drop(store);
    drop(open(&other_spelling));
}

#[test]
fn a_store_another_process_holds_is_refused() {
    let (_dir, path) = temp_db();
    // Another process's store: an exclusive flock on the file, as `Store::open` takes.
    let held = std::fs::File::create(&path).unwrap();
    held.lock().unwrap();
    let error = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(matches!(error, StoreError::InUse { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("store {} is in use by another process", path.display())
    );
    drop(held);
    let store = open(&path);
    // While it is open, the lock is held.
    let probe = std::fs::File::open(&path).unwrap();
    assert!(matches!(
        probe.try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    drop(store);
    probe.try_lock().unwrap();
}

#[test]
fn alert_states_commit_with_the_monitor_state_and_come_back() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store.set_router(route);
    let down = event(EventKind::Down, "api", t0(), "HTTP 503");
    let held = AlertState {
        last: Some(down.clone()),
        changes: vec![t0()],
        ..AlertState::default()
    };
    // A held `down`: the state and the alert state are committed, no outbox row.
    store.record_with_alert("api", &state(Status::Unhealthy, 3), &held, &[]);
    // A monitor the policy keeps nothing for stores NULL and is not listed.
    store.record_with_alert(
        "web",
        &state(Status::Healthy, 0),
        &AlertState::default(),
        &[],
    );
    // A plain record leaves the alert state alone.
    store.record("db", &state(Status::Healthy, 0), &[]);
    store.flush().unwrap();
    assert_eq!(
        store.load_alert_states().unwrap(),
        HashMap::from([("api".to_owned(), held.clone())])
    );
    store.record("api", &state(Status::Unhealthy, 3), &[]);
    store.flush().unwrap();
    drop(store);
    let store = open(&path);
    assert_eq!(store.load_alert_states().unwrap()["api"], held);
    let nulls: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM monitor_state WHERE alert IS NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 2, "web and db");
    // Released: the `down` goes to the outbox in the same commit as the new alert state.
    let told = AlertState {
        told_down: Some(down.clone()),
        reminded: Some(t0()),
        ..held
    };
    store.set_router(route);
    store.record_with_alert(
        "api",
        &state(Status::Unhealthy, 3),
        &told,
        std::slice::from_ref(&down),
    );
    store.flush().unwrap();
    assert_eq!(store.load_alert_states().unwrap()["api"], told);
    assert_eq!(store.pending("webhook", 0, 10).unwrap().len(), 1);
}

#[test]
fn states_come_back_after_a_reopen_at_millisecond_precision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("healthd.db");
    let down = MonitorState {
        status: Status::Unhealthy,
        failures: 3,
        passes: 0,
        errors: 1,
        down_sent: true,
        outage_start: Some(t0()),
        last_seen: Some(t0() - Duration::from_secs(30)),
        cert_warned: Some(1_800_000_000),
    };
    let mut expected = HashMap::from([
        ("down".to_owned(), down),
        ("fresh".to_owned(), MonitorState::default()),
    ]);
    for status in Status::ALL {
        expected.insert(format!("s-{status}"), state(status, 7));
    }

    let store = open(&path);
    for (monitor, state) in &expected {
        store.record(monitor, state, &[]);
    }
    store.flush().unwrap();
    drop(store);

    for state in expected.values_mut() {
        state.outage_start = state.outage_start.map(whole_ms);
        state.last_seen = state.last_seen.map(whole_ms);
    }
    assert_ne!(
        expected["down"].outage_start,
        Some(t0()),
        "t0 has sub-ms digits"
    );
    assert_eq!(open(&path).load_states().unwrap(), expected);
}

#[test]
fn a_batch_is_one_transaction_and_the_last_state_of_a_monitor_wins() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    for round in 1..=3 {
        for monitor in 0..1000 {
            store.record(&format!("m{monitor}"), &state(Status::Healthy, round), &[]);
        }
    }
    store.flush().unwrap();

    assert_eq!(store.commits(), 1);
    let states = store.load_states().unwrap();
    assert_eq!(states.len(), 1000);
    assert!(states.values().all(|s| s.failures == 3), "{states:?}");

    // Nothing pending: a flush commits nothing.
    store.flush().unwrap();
    assert_eq!(store.commits(), 1);
}

#[test]
fn events_commit_at_once_with_their_state_and_wake_their_notifiers() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store.set_router(route);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    store.set_commit_hook(move |notifiers| {
        tx.lock().unwrap().send(notifiers.to_vec()).unwrap();
    });

    let down = state(Status::Unhealthy, 3);
    record_down(&store, "a", "HTTP 503");

    // The tick is an hour away: only the event can have woken the writer.
    let woken = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(woken, ["slack", "webhook"]);
    assert_eq!(store.commits(), 1);
    assert_eq!(store.load_states().unwrap()["a"], down);
    for notifier in ["slack", "webhook"] {
        let pending = store.pending(notifier, 0, 10).unwrap();
        assert_eq!(details(&pending), ["HTTP 503"], "{notifier}");
    }
}

#[test]
fn a_failed_commit_writes_neither_the_state_nor_its_rows_and_is_retried() {
    let refuse = "CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused by test'); END";
    let (_dir, store, conn) = routed_store_after(refuse);

    let down = state(Status::Unhealthy, 3);
    record_down(&store, "b", "HTTP 503");
    let error = store.flush().unwrap_err();
    assert!(matches!(error, StoreError::Write { .. }), "{error:?}");
    assert!(
        chain(&error).contains("refused by test"),
        "{}",
        chain(&error)
    );
    assert!(store.load_states().unwrap().is_empty());
    assert!(store.pending("webhook", 0, 10).unwrap().is_empty());

    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    store.flush().unwrap();
    assert_eq!(store.load_states().unwrap()["b"], down);
    assert_eq!(
        details(&store.pending("webhook", 0, 10).unwrap()),
        ["HTTP 503"]
    );
}

#[test]
fn dropping_the_store_commits_what_is_pending() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store.set_router(route);
    record_down(&store, "b", "x");
    store.record("c", &state(Status::Healthy, 0), &[]);
    drop(store);

    let store = open(&path);
    assert_eq!(store.load_states().unwrap().len(), 2);
    assert_eq!(details(&store.pending("webhook", 0, 10).unwrap()), ["x"]);
}

#[test]
fn close_commits_and_drops_a_hook_that_holds_the_store() {
    let (_dir, path) = temp_db();
    let store = Arc::new(open(&path));
    store.set_router(route);
    // Like a dispatcher that reads this store's outbox: a reference cycle.
    let held = store.clone();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    store.set_commit_hook(move |notifiers| {
        let backlog = held.backlog(&notifiers[0]).unwrap();
        tx.lock().unwrap().send(backlog.0).unwrap();
    });
    store.record("b", &state(Status::Unhealthy, 3), &[]);
    store.record(
        "b",
        &state(Status::Unhealthy, 4),
        &[event(EventKind::Down, "b", t0(), "x")],
    );

    store.close().unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(Arc::strong_count(&store), 1, "the hook was dropped");
    // Reads and marks still work; records are no longer saved; closing again is fine.
    let entry = store.pending("webhook", 0, 10).unwrap().remove(0);
    store.delivered(entry.id).unwrap();
    store.record("c", &state(Status::Healthy, 0), &[]);
    store.flush().unwrap_err();
    store.close().unwrap();
    drop(store);

    let store = open(&path);
    let states = store.load_states().unwrap();
    assert_eq!(states.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(states["b"].failures, 4);
    assert_eq!(store.backlog("webhook").unwrap(), (0, None));
}

#[test]
fn an_in_memory_store_works_on_one_connection_and_keeps_nothing() {
    let first = Store::open(":memory:", options(&FakeClock::at(t0()))).unwrap();
    first.set_router(route);
    record_down(&first, "a", "x");
    first.flush().unwrap();
    assert_eq!(first.load_states().unwrap().len(), 1);
    let entry = &first.pending("slack", 0, 10).unwrap()[0];
    first.delivered(entry.id).unwrap();
    assert_eq!(first.backlog("slack").unwrap(), (0, None));
    assert_eq!(first.backlog("webhook").unwrap().0, 1);

    // Several in-memory stores may be open, each its own.
    let second = Store::open(":memory:", StoreOptions::default()).unwrap();
    assert!(second.load_states().unwrap().is_empty());
    drop(first);
    drop(second);
    let again = Store::open(":memory:", StoreOptions::default()).unwrap();
    assert!(again.load_states().unwrap().is_empty());
}

/// A store with events of monitors `a` (to slack and webhook) and `b` (to webhook)
/// committed in two batches, one second apart.
fn store_with_entries(path: &Path, clock: &Arc<FakeClock>) -> Store {
    let store = Store::open(path, options(clock)).unwrap();
    store.set_router(route);
    let ongoing = state(Status::Unhealthy, 3);
    store.record("a", &ongoing, &[event(EventKind::Down, "a", t0(), "a1")]);
    store.record("b", &ongoing, &[event(EventKind::Down, "b", t0(), "b1")]);
    store.record("a", &ongoing, &[event(EventKind::Stopped, "a", t0(), "a2")]);
    store.flush().unwrap();
    clock.advance(Duration::from_secs(1));
    store.record("b", &ongoing, &[event(EventKind::Up, "b", t0(), "b2")]);
    store.record("a", &ongoing, &[event(EventKind::Up, "a", t0(), "a3")]);
    store.flush().unwrap();
    store
}

/// [`store_with_entries`] in a fresh temporary directory, on a clock of its own.
fn with_entries() -> (tempfile::TempDir, Store) {
    let (dir, path) = temp_db();
    let store = store_with_entries(&path, &FakeClock::at(t0()));
    (dir, store)
}

#[test]
fn pending_lists_a_notifiers_entries_in_id_order_across_monitors() {
    let (_dir, store) = with_entries();

    let webhook = store.pending("webhook", 0, 100).unwrap();
    assert_eq!(details(&webhook), ["a1", "b1", "a2", "b2", "a3"]);
    assert!(webhook.windows(2).all(|w| w[0].id < w[1].id));
    assert!(webhook.iter().all(|e| e.notifier == "webhook"));
    let slack = store.pending("slack", 0, 100).unwrap();
    assert_eq!(details(&slack), ["a1", "a2", "a3"]);
    assert!(store.pending("pagerduty", 0, 100).unwrap().is_empty());

    // Paging: `after` and `limit`.
    let first_two = store.pending("webhook", 0, 2).unwrap();
    assert_eq!(details(&first_two), ["a1", "b1"]);
    let rest = store.pending("webhook", first_two[1].id, 100).unwrap();
    assert_eq!(details(&rest), ["a2", "b2", "a3"]);
    assert!(store.pending("webhook", 0, 0).unwrap().is_empty());

    // The event comes back as recorded, its outage start at millisecond precision;
    // `created` is the commit's time.
    let mut expected = event(EventKind::Down, "a", t0(), "a1");
    expected.outage_start = Some(whole_ms(t0()));
    assert_eq!(webhook[0].event, expected);
    assert_eq!(webhook[0].created, whole_ms(t0()));
    assert_eq!(webhook[4].created, whole_ms(t0() + Duration::from_secs(1)));
}

#[test]
fn delivered_and_given_up_entries_leave_pending_and_the_backlog() {
    let (_dir, store) = with_entries();
    let second = whole_ms(t0() + Duration::from_secs(1));
    assert_eq!(store.backlog("webhook").unwrap(), (5, Some(whole_ms(t0()))));
    assert_eq!(store.backlog("slack").unwrap(), (3, Some(whole_ms(t0()))));
    assert_eq!(store.backlog("pagerduty").unwrap(), (0, None));

    let webhook = store.pending("webhook", 0, 100).unwrap();
    store.delivered(webhook[0].id).unwrap();
    store.gave_up(webhook[1].id, "HTTP 404").unwrap();
    store.delivered(webhook[2].id).unwrap();
    assert_eq!(
        details(&store.pending("webhook", 0, 100).unwrap()),
        ["b2", "a3"]
    );
    assert_eq!(store.backlog("webhook").unwrap(), (2, Some(second)));
    // The same events for another notifier are its own entries.
    assert_eq!(store.backlog("slack").unwrap(), (3, Some(whole_ms(t0()))));

    // Marking a finished or unknown entry changes nothing.
    store.gave_up(webhook[0].id, "late").unwrap();
    store.delivered(webhook[1].id).unwrap();
    store.delivered(u64::MAX).unwrap();
    assert!(store.down_given_up("webhook", "b", t0()).unwrap());
    assert!(!store.down_given_up("webhook", "a", t0()).unwrap());

    for entry in store.pending("webhook", 0, 100).unwrap() {
        store.delivered(entry.id).unwrap();
    }
    assert_eq!(store.backlog("webhook").unwrap(), (0, None));
    assert!(store.pending("webhook", 0, 100).unwrap().is_empty());
}

#[test]
fn down_given_up_names_one_notifier_one_service_one_outage() {
    let (_dir, store) = with_entries();
    let slack = store.pending("slack", 0, 100).unwrap();
    // a1 (down) and a3 (up) given up on slack.
    store.gave_up(slack[0].id, "HTTP 400").unwrap();
    store.gave_up(slack[2].id, "HTTP 400").unwrap();

    assert!(store.down_given_up("slack", "a", t0()).unwrap());
    // The time is compared at the precision the store keeps.
    assert!(store.down_given_up("slack", "a", whole_ms(t0())).unwrap());
    assert!(!store.down_given_up("webhook", "a", t0()).unwrap());
    assert!(!store.down_given_up("slack", "b", t0()).unwrap());
    assert!(
        !store
            .down_given_up("slack", "a", t0() + Duration::from_millis(1))
            .unwrap()
    );
    // A given-up `up` (or `stopped`) is not a given-up `down`.
    let webhook = store.pending("webhook", 0, 100).unwrap();
    store.gave_up(webhook[3].id, "HTTP 400").unwrap();
    assert!(!store.down_given_up("webhook", "b", t0()).unwrap());
}

#[test]
fn finished_entries_are_pruned_after_the_retention_but_a_given_up_down_of_an_ongoing_outage() {
    let (_dir, path) = temp_db();
    let clock = FakeClock::at(t0());
    let store = Store::open(
        &path,
        StoreOptions {
            retention: Duration::from_secs(3600),
            ..options(&clock)
        },
    )
    .unwrap();
    store.set_router(route);
    let ended = t0() - Duration::from_secs(600);
    store.record(
        "b",
        &state(Status::Healthy, 0),
        &[event(EventKind::Down, "b", ended, "ended outage")],
    );
    let ongoing = MonitorState {
        outage_start: Some(t0()),
        ..state(Status::Unhealthy, 3)
    };
    store.record(
        "c",
        &ongoing,
        &[
            event(EventKind::Down, "c", t0(), "ongoing outage"),
            event(EventKind::Stopped, "c", t0(), "delivered"),
            event(EventKind::Stopped, "c", t0(), "still pending"),
        ],
    );
    store.flush().unwrap();
    let entries = store.pending("webhook", 0, 100).unwrap();
    store.gave_up(entries[0].id, "HTTP 400").unwrap();
    store.gave_up(entries[1].id, "HTTP 400").unwrap();
    store.delivered(entries[2].id).unwrap();
    let last_id = entries[3].id;

    // Within the retention nothing goes.
    clock.advance(Duration::from_secs(1800));
    store.record("d", &state(Status::Healthy, 0), &[]);
    store.flush().unwrap();
    let count = |conn: &Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))
            .unwrap()
    };
    let conn = raw(&path);
    assert_eq!(count(&conn), 4);

    // After it, the next commit prunes.
    clock.advance(Duration::from_secs(3600));
    store.record("d", &state(Status::Healthy, 1), &[]);
    store.flush().unwrap();
    assert_eq!(count(&conn), 2);
    assert!(!store.down_given_up("webhook", "b", ended).unwrap());
    assert!(store.down_given_up("webhook", "c", t0()).unwrap());
    assert_eq!(
        details(&store.pending("webhook", 0, 100).unwrap()),
        ["still pending"]
    );

    // Ids are never used twice, even after the rows above them were pruned.
    conn.execute("DELETE FROM outbox", []).unwrap();
    record_down(&store, "b", "new");
    store.flush().unwrap();
    let fresh = store.pending("webhook", 0, 100).unwrap();
    assert_eq!(details(&fresh), ["new"]);
    assert!(fresh[0].id > last_id);
}

#[test]
fn an_entry_that_cannot_be_read_is_given_up_and_skipped() {
    let unreadable = "INSERT INTO outbox (notifier, service, kind, event, created) VALUES ('webhook', 'x', 'down', '{not json', 0)";
    let (_dir, store, conn) = routed_store_after(unreadable);
    record_down(&store, "b", "good");
    store.flush().unwrap();

    // The first row cannot be read: a page of one still holds the next readable one.
    let page = store.pending("webhook", 0, 1).unwrap();
    assert_eq!(details(&page), ["good"]);
    let (state, reason): (String, String) = conn
        .query_row(
            "SELECT state, reason FROM outbox WHERE event = '{not json'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "given_up");
    assert!(reason.starts_with("the event cannot be read: "), "{reason}");
    assert_eq!(store.backlog("webhook").unwrap().0, 1);
}
