//! Crash safety: a child process records states and events, flushes some, keeps
//! recording and is killed with SIGKILL; the store then opens cleanly, holds everything
//! that was flushed, and every state it holds came with all of its outbox rows. The
//! child's history run, never stopped, is closed at its last known alive time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_store::{Store, StoreOptions};
use health_types::{
    Clock, Event, EventKind, HistoryReader, HistorySink, MonitorState, Observation, Outbox,
    StateSink, Status, StatusChange, SystemClock,
};

/// Set (to the store's path) in the child: the test then plays the child's part.
const CHILD: &str = "HEALTH_STORE_CRASH_CHILD";
const MONITORS: u32 = 100;
const NOTIFIERS: [&str; 2] = ["slack", "webhook"];
const FLUSH_EVERY: u32 = 10;
/// The last flushed round before the kill.
const FLUSHED: u32 = 50;

fn options() -> StoreOptions {
    StoreOptions {
        // Commit often, so that the kill lands among commits.
        tick: Duration::from_millis(2),
        ..StoreOptions::default()
    }
}

/// Round `round` of `monitor`: its failure count is the round, and its event says both.
fn record_round(store: &Store, monitor: u32, round: u32) {
    let name = format!("m{monitor}");
    let state = MonitorState {
        status: Status::Unhealthy,
        failures: round,
        ..MonitorState::default()
    };
    let event = Event {
        kind: EventKind::Down,
        service: name.as_str().into(),
        url: format!("http://{name}.test/"),
        detail: format!("{name}:{round}"),
        latency: Duration::from_millis(1),
        last_seen: None,
        outage: None,
        outage_start: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        time: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(round)),
    };
    store.record(&name, &state, &[event]);
}

/// Set in the child: the unix second its history starts at (a whole minute a day ago,
/// within every retention).
const HISTORY_BASE: &str = "HEALTH_STORE_CRASH_HISTORY_BASE";

/// The time [`HISTORY_BASE`] names.
fn history_base() -> SystemTime {
    let secs = std::env::var(HISTORY_BASE).unwrap().parse().unwrap();
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The child's history: monitor `web` starts, goes healthy and is checked in three
/// minutes, all flushed; it is never stopped.
fn child_history(store: &Store) {
    let base = history_base();
    let change = |secs: u64, from: Status, to: Status| StatusChange {
        time: base + Duration::from_secs(secs),
        from,
        to,
        detail: String::new(),
    };
    store.change("web", &change(0, Status::Unknown, Status::Starting));
    store.change("web", &change(1, Status::Starting, Status::Healthy));
    for secs in [10, 70, 130] {
        let observation = Observation {
            time: base + Duration::from_secs(secs),
            latency: Duration::from_millis(5),
            failed: false,
        };
        store.observe("web", &observation);
    }
    // The store's clock is long past those minutes: the flush writes all three.
    store.flush().unwrap();
}

/// The child's part: round after round of every monitor, flushing every tenth round
/// and saying so, until it is killed.
fn child(path: &Path) {
    let store = Store::open(path, options()).unwrap();
    store.set_router(|_| NOTIFIERS.map(String::from).to_vec());
    store.set_commit_hook(|_| println!("child: committed"));
    child_history(&store);
    // Bounded, in case the parent is gone; it kills us long before.
    for round in 1..100_000 {
        for monitor in 0..MONITORS {
            record_round(&store, monitor, round);
        }
        if round.is_multiple_of(FLUSH_EVERY) {
            store.flush().unwrap();
            println!("child: flushed round {round}");
        }
    }
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_loses_nothing_that_was_flushed() {
    if let Some(path) = std::env::var_os(CHILD) {
        child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("healthd.db");
    let now = SystemClock
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let base = (now / 60 - 24 * 60) * 60;
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "kill_9_loses_nothing_that_was_flushed",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, &path)
            .env(HISTORY_BASE, base.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut wait_for = |wanted: &str| {
        for line in lines.by_ref() {
            // The test harness may print its own words before ours on the line.
            if line.unwrap().ends_with(wanted) {
                return;
            }
        }
        panic!("the child ended before printing {wanted:?}");
    };
    wait_for(&format!("child: flushed round {FLUSHED}"));
    // Later rounds are being recorded and committed when the kill lands: the writer
    // committed a few batches past the flush and is on the next.
    for _ in 0..3 {
        wait_for("child: committed");
    }
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");

    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    let store = Store::open(&path, options()).unwrap();
    let states = store.load_states().unwrap();
    assert_eq!(states.len(), MONITORS as usize);
    for notifier in NOTIFIERS {
        let entries = store.pending(notifier, 0, usize::MAX).unwrap();
        let mut rounds = vec![Vec::new(); MONITORS as usize];
        for entry in &entries {
            let (name, round) = entry.event.detail.split_once(':').unwrap();
            let monitor: usize = name[1..].parse().unwrap();
            rounds[monitor].push(round.parse::<u32>().unwrap());
        }
        for (monitor, rounds) in rounds.iter().enumerate() {
            let state = &states[&format!("m{monitor}")];
            // Everything flushed is there; every committed state came with its rows
            // (state and rows in one transaction), in order, with no gap.
            assert!(state.failures >= FLUSHED, "m{monitor}: {state:?}");
            let expected: Vec<u32> = (1..=state.failures).collect();
            assert_eq!(rounds, &expected, "m{monitor} on {notifier}");
        }
        assert!(entries.windows(2).all(|w| w[0].id < w[1].id));
        let (count, oldest) = store.backlog(notifier).unwrap();
        assert_eq!(count, entries.len() as u64);
        assert!(oldest.is_some_and(|t| t > SystemTime::UNIX_EPOCH));
    }

    // The killed run of `web` ends at the end of its last written minute (base + 3 min):
    // the time after the kill is not observed.
    let base = UNIX_EPOCH + Duration::from_secs(base);
    let span = store
        .history("web", base, base + Duration::from_secs(3600))
        .unwrap();
    let changes: Vec<_> = span.changes.iter().map(|c| (c.time, c.to)).collect();
    assert_eq!(
        changes,
        [
            (base, Status::Starting),
            (base + Duration::from_secs(1), Status::Healthy),
            (base + Duration::from_secs(180), Status::Stopped),
        ]
    );
    let counts: Vec<u64> = span.latency.iter().map(|b| b.count).collect();
    assert_eq!(counts, [1, 1, 1], "three minutes: {:?}", span.latency);
    let summary = &store.summaries(base + Duration::from_secs(3600)).unwrap()["web"];
    assert_eq!(summary.uptime_24h, Some(1.0));
}
