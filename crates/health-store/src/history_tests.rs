//! History (SPEC §9.2) against real SQLite files in temporary directories: uptime
//! against a hand computation, spans, rollups, pruning, reopening, a killed process,
//! migration from version 1, and the time the summaries take on a big file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::{
    Clock, HistoryReader, HistorySink, HistorySpan, HistorySummary, LatencyBucket, MonitorState,
    Observation, StateSink, Status, StatusChange,
};
use rusqlite::Connection;

use crate::{
    Store, StoreOptions,
    history_write::{NOT_STOPPED_DETAIL, PRUNE_CHUNK_ROWS},
    schema::{KNOWN_VERSION, MIGRATIONS},
};

/// A wall clock the test sets by hand.
#[derive(Debug)]
struct FakeClock(Mutex<SystemTime>);

impl FakeClock {
    fn at(time: SystemTime) -> Arc<FakeClock> {
        Arc::new(FakeClock(Mutex::new(time)))
    }

    fn set(&self, time: SystemTime) {
        *self.0.lock().unwrap() = time;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// 2023-11-10T00:00:00Z, a UTC midnight: day 0 of the scripts.
const D0: u64 = 1_699_574_400;

/// Day `day` at `h:m:s` (UTC) of the scripts.
fn at(day: u64, h: u64, m: u64, s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(D0 + day * DAY + h * HOUR + m * MINUTE + s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("healthd.db");
    (dir, path)
}

/// Options whose tick never comes during a test: batches commit on flush.
fn options(clock: &Arc<FakeClock>) -> StoreOptions {
    StoreOptions {
        tick: Duration::from_secs(3600),
        clock: clock.clone(),
        ..StoreOptions::default()
    }
}

fn open(path: &Path, clock: &Arc<FakeClock>) -> Store {
    Store::open(path, options(clock)).unwrap()
}

fn change(store: &Store, monitor: &str, time: SystemTime, from: Status, to: Status) {
    let detail = format!("{from} -> {to}");
    store.change(
        monitor,
        &StatusChange {
            time,
            from,
            to,
            detail,
        },
    );
}

fn observe(store: &Store, monitor: &str, time: SystemTime, latency: Duration, failed: bool) {
    store.observe(
        monitor,
        &Observation {
            time,
            latency,
            failed,
        },
    );
}

fn bucket(time: SystemTime, step: u64, latencies: &[u64], failures: u64) -> LatencyBucket {
    LatencyBucket {
        time,
        step: Duration::from_secs(step),
        count: latencies.len() as u64,
        sum: ms(latencies.iter().sum()),
        min: ms(*latencies.iter().min().unwrap()),
        max: ms(*latencies.iter().max().unwrap()),
        failures,
    }
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

/// `a / b` as the store computes an uptime, asserted to the last bit.
fn frac(a: u64, b: u64) -> Option<f64> {
    Some(a as f64 / b as f64)
}

fn tos(span: &HistorySpan) -> Vec<(SystemTime, Status)> {
    span.changes.iter().map(|c| (c.time, c.to)).collect()
}

#[test]
fn uptime_follows_the_changes_and_leaves_out_stopped_and_killed_time() {
    use Status::{Error, Healthy, Napping, Starting, Stopped, Unhealthy, Unknown};
    let (_dir, path) = temp_db();
    let clock = FakeClock::at(at(0, 6, 0, 0));
    let store = open(&path, &clock);

    // The script. Day N is D0 + N days (UTC), times h:m.
    //
    // D0 06:00 starting, 06:10 healthy, 12:00 unhealthy, 13:00 healthy, 18:00 napping,
    //    20:00 stopped (a clean stop).
    // D1 08:00 starting, 08:05 healthy, 20:00 error; a check at 21:59:30 is the last
    //    one written; then the process is killed (no `stopped`), its clock at 22:00:30.
    // D3 09:00 a new process opens the store: it closes the killed run at 22:00 of D1
    //    (the end of its last written minute). 09:00 starting, 09:01 healthy.
    // D9 10:00 unhealthy, 10:30 healthy.
    // D10 11:00 unhealthy; now is D10 12:00.
    let last = std::cell::Cell::new(Unknown);
    let to = |store: &Store, time: SystemTime, status: Status| {
        clock.set(time);
        change(store, "api", time, last.replace(status), status);
    };
    to(&store, at(0, 6, 0, 0), Starting);
    to(&store, at(0, 6, 10, 0), Healthy);
    observe(&store, "api", at(0, 6, 15, 0), ms(10), false);
    to(&store, at(0, 12, 0, 0), Unhealthy);
    observe(&store, "api", at(0, 12, 30, 0), ms(30), true);
    to(&store, at(0, 13, 0, 0), Healthy);
    to(&store, at(0, 18, 0, 0), Napping);
    to(&store, at(0, 20, 0, 0), Stopped);
    store.flush().unwrap();
    to(&store, at(1, 8, 0, 0), Starting);
    to(&store, at(1, 8, 5, 0), Healthy);
    to(&store, at(1, 20, 0, 0), Error);
    observe(&store, "api", at(1, 21, 59, 30), ms(20), true);
    clock.set(at(1, 22, 0, 30));
    store.flush().unwrap();
    store.kill();
    drop(store);

    clock.set(at(3, 9, 0, 0));
    let store = open(&path, &clock);
    last.set(Stopped);
    to(&store, at(3, 9, 0, 0), Starting);
    to(&store, at(3, 9, 1, 0), Healthy);
    to(&store, at(9, 10, 0, 0), Unhealthy);
    to(&store, at(9, 10, 30, 0), Healthy);
    to(&store, at(10, 11, 0, 0), Unhealthy);
    // A check in the open minute: in memory only.
    observe(&store, "api", at(10, 11, 30, 0), ms(40), true);
    store.flush().unwrap();
    let now = at(10, 12, 0, 0);
    clock.set(now);

    // The killed run was closed at the end of its last written minute.
    let span = store
        .history("api", at(1, 0, 0, 0), at(3, 0, 0, 0))
        .unwrap();
    assert_eq!(
        tos(&span),
        [
            (at(1, 8, 0, 0), Starting),
            (at(1, 8, 5, 0), Healthy),
            (at(1, 20, 0, 0), Error),
            (at(1, 22, 0, 0), Stopped),
        ]
    );
    assert_eq!(span.changes[3].from, Error);
    assert_eq!(span.changes[3].detail, NOT_STOPPED_DETAIL);

    let summaries = store.summaries(now).unwrap();
    assert_eq!(summaries.keys().collect::<Vec<_>>(), ["api"]);
    let api = &summaries["api"];

    // By hand, in minutes (up = healthy or napping, down = unhealthy or error):
    //
    // D0: starting 06:00-06:10 neither; healthy 06:10-12:00 = 350 up; unhealthy
    //     12:00-13:00 = 60 down; healthy 13:00-18:00 = 300 up; napping 18:00-20:00 =
    //     120 up; stopped from 20:00 neither.              D0: up 770, down 60
    // D1: stopped until 08:00, starting 08:00-08:05 neither; healthy 08:05-20:00 = 715
    //     up; error 20:00-22:00 = 120 down; stopped (killed) from 22:00 neither.
    //                                                      D1: up 715, down 120
    // D2: stopped all day.                                 D2: nothing observed
    // D3: stopped until 09:00, starting 09:00-09:01; healthy 09:01-24:00 = 899 up.
    // D4..D8: healthy all day, 1440 up each.
    // D9: healthy 00:00-10:00 = 600, unhealthy 10:00-10:30 = 30 down, healthy
    //     10:30-24:00 = 810.                               D9: up 1410, down 30
    // D10: healthy 00:00-11:00 = 660, unhealthy 11:00-12:00 (now) = 60 down.
    //
    // 24 h = D9 12:00..D10 12:00: healthy 23 h (1380), unhealthy 60 -> 1380/1440.
    // 7 d = D3 12:00..D10 12:00: down 30 + 60 = 90 of 7 * 1440 = 10080 -> 9990/10080.
    // 30 d reaches before D0: up 770 + 715 + 899 + 5 * 1440 + 1410 + 660 = 11654,
    //     down 60 + 120 + 30 + 60 = 270 -> 11654/11924.
    assert_eq!(api.uptime_24h, frac(1380, 1440));
    assert_eq!(api.uptime_7d, frac(9990, 10080));
    assert_eq!(api.uptime_30d, frac(11654, 11924));

    assert_eq!(api.days.len(), HistorySummary::DAYS as usize);
    // Today (D10) is last, D0 is 10 days before.
    let day = |n: usize| &api.days[api.days.len() - 11 + n];
    assert_eq!(day(10).day, at(10, 0, 0, 0));
    assert_eq!(
        api.days[0].day,
        at(10, 0, 0, 0) - Duration::from_secs(89 * DAY)
    );
    let expected_days = [
        (frac(770, 830), 60),
        (frac(715, 835), 120),
        (None, 0),
        (frac(899, 899), 0),
        (frac(1, 1), 0),
        (frac(1, 1), 0),
        (frac(1, 1), 0),
        (frac(1, 1), 0),
        (frac(1, 1), 0),
        (frac(1410, 1440), 30),
        (frac(660, 720), 60),
    ];
    for (n, (uptime, down)) in expected_days.into_iter().enumerate() {
        assert_eq!(day(n).uptime, uptime, "D{n}");
        assert_eq!(day(n).down, Duration::from_secs(down * MINUTE), "D{n}");
    }
    assert!(
        api.days[..79]
            .iter()
            .all(|d| d.uptime.is_none() && d.checks == 0)
    );
    // Checks: D0 two (10 ms, 30 ms failed), D1 one (20 ms failed), D10 one in the
    // open minute (40 ms failed).
    let checks = |n: usize| (day(n).checks, day(n).failures, day(n).average);
    assert_eq!(checks(0), (2, 1, Some(ms(20))));
    assert_eq!(checks(1), (1, 1, Some(ms(20))));
    assert_eq!(checks(2), (0, 0, None));
    assert_eq!(checks(10), (1, 1, Some(ms(40))));
    // The last 24 hours of latency: only the current hour had checks.
    assert_eq!(api.latency_24h, [bucket(at(10, 11, 0, 0), HOUR, &[40], 1)]);
}

#[test]
fn history_holds_changes_and_buckets_open_minute_included() {
    use Status::{Healthy, Starting, Unhealthy, Unknown};
    let (_dir, path) = temp_db();
    let clock = FakeClock::at(at(0, 10, 0, 0));
    let store = open(&path, &clock);
    change(&store, "web", at(0, 10, 0, 0), Unknown, Starting);
    change(&store, "web", at(0, 10, 1, 0), Starting, Healthy);
    observe(&store, "web", at(0, 10, 28, 10), ms(10), false);
    observe(&store, "web", at(0, 10, 28, 50), ms(30), true);
    // A check of the next minute closes 10:28.
    observe(&store, "web", at(0, 10, 29, 5), ms(20), false);
    change(&store, "web", at(0, 10, 29, 0), Healthy, Unhealthy);
    observe(&store, "web", at(0, 10, 30, 20), ms(5), false);
    clock.set(at(0, 10, 30, 30));
    store.flush().unwrap();
    // Queued, not committed: memory.
    change(&store, "web", at(0, 10, 30, 25), Unhealthy, Healthy);

    let conn = Connection::open(&path).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM history_minute"), 2);
    assert_eq!(count(&conn, "SELECT count(*) FROM history_change"), 3);

    let span = store
        .history("web", at(0, 10, 0, 0), at(0, 10, 31, 0))
        .unwrap();
    assert_eq!(
        tos(&span),
        [
            (at(0, 10, 0, 0), Starting),
            (at(0, 10, 1, 0), Healthy),
            (at(0, 10, 29, 0), Unhealthy),
            (at(0, 10, 30, 25), Healthy),
        ]
    );
    assert_eq!(span.changes[2].detail, "healthy -> unhealthy");
    // Minutes: the span lies within the last 48 h. 10:30 is the open minute.
    assert_eq!(
        span.latency,
        [
            bucket(at(0, 10, 28, 0), MINUTE, &[10, 30], 1),
            bucket(at(0, 10, 29, 0), MINUTE, &[20], 0),
            bucket(at(0, 10, 30, 0), MINUTE, &[5], 0),
        ]
    );
    assert_eq!(span.latency[0].average(), Some(ms(20)));

    // Both ends are inclusive: the changes at them, the buckets that overlap them.
    let span = store
        .history("web", at(0, 10, 1, 0), at(0, 10, 29, 0))
        .unwrap();
    assert_eq!(
        tos(&span),
        [(at(0, 10, 1, 0), Healthy), (at(0, 10, 29, 0), Unhealthy)]
    );
    assert_eq!(span.latency.len(), 2, "{:?}", span.latency);
    let span = store
        .history("web", at(0, 10, 29, 30), at(0, 10, 29, 40))
        .unwrap();
    assert!(span.changes.is_empty());
    assert_eq!(span.latency, [bucket(at(0, 10, 29, 0), MINUTE, &[20], 0)]);

    // Hours once the span reaches back more than 48 h: the stored hour row (10:28 and
    // 10:29) merged with the open minute.
    let span = store
        .history(
            "web",
            at(0, 10, 0, 0) - Duration::from_secs(3 * DAY),
            at(0, 11, 0, 0),
        )
        .unwrap();
    assert_eq!(span.changes.len(), 4);
    assert_eq!(
        span.latency,
        [bucket(at(0, 10, 0, 0), HOUR, &[10, 30, 20, 5], 1)]
    );

    // Empty answers: an unknown monitor, a span with nothing, until before since.
    assert_eq!(
        store
            .history("nope", at(0, 0, 0, 0), at(1, 0, 0, 0))
            .unwrap(),
        HistorySpan::default()
    );
    assert_eq!(
        store
            .history("web", at(0, 9, 0, 0), at(0, 9, 59, 0))
            .unwrap(),
        HistorySpan::default()
    );
    assert_eq!(
        store
            .history("web", at(0, 11, 0, 0), at(0, 10, 0, 0))
            .unwrap(),
        HistorySpan::default()
    );
}

#[test]
fn rollups_sum_minutes_into_hours_and_days_across_midnight() {
    let (_dir, path) = temp_db();
    let clock = FakeClock::at(at(0, 23, 58, 0));
    let store = open(&path, &clock);
    let checks = [
        (at(0, 23, 58, 30), 10, false),
        (at(0, 23, 59, 10), 40, true),
        (at(0, 23, 59, 50), 20, false),
        (at(1, 0, 0, 10), 70, true),
        (at(1, 0, 0, 40), 30, true),
        (at(1, 0, 1, 30), 5, false),
    ];
    for (time, latency, failed) in checks {
        observe(&store, "db", time, ms(latency), failed);
    }
    // 00:01 has ended by the clock: the writer closes it too.
    clock.set(at(1, 0, 2, 30));
    store.flush().unwrap();
    // A late check of a minute already written is added into its rows (once the
    // writer has closed it: a minute later).
    observe(&store, "db", at(0, 23, 59, 55), ms(60), false);
    clock.set(at(1, 0, 3, 30));
    store.flush().unwrap();

    let conn = Connection::open(&path).unwrap();
    let rows = |table: &str| -> Vec<(i64, i64, i64, i64, i64, i64)> {
        conn.prepare(&format!(
            "SELECT start / 1000 - {D0}, count, total / 1000000, shortest / 1000000,
                    longest / 1000000, failures FROM {table} ORDER BY start"
        ))
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let d1 = DAY as i64;
    // (start - D0 in s, count, total ms, min ms, max ms, failures)
    assert_eq!(
        rows("history_minute"),
        [
            (d1 - 120, 1, 10, 10, 10, 0),
            (d1 - 60, 3, 120, 20, 60, 1),
            (d1, 2, 100, 30, 70, 2),
            (d1 + 60, 1, 5, 5, 5, 0),
        ]
    );
    assert_eq!(
        rows("history_hour"),
        [(d1 - 3600, 4, 130, 10, 60, 1), (d1, 3, 105, 5, 70, 2)]
    );
    assert_eq!(
        rows("history_day"),
        [(0, 4, 130, 10, 60, 1), (d1, 3, 105, 5, 70, 2)]
    );

    // The same through the port: hours over a long span, and the days.
    let span = store
        .history(
            "db",
            at(0, 0, 0, 0) - Duration::from_secs(3 * DAY),
            at(1, 1, 0, 0),
        )
        .unwrap();
    assert_eq!(
        span.latency,
        [
            bucket(at(0, 23, 0, 0), HOUR, &[10, 40, 20, 60], 1),
            bucket(at(1, 0, 0, 0), HOUR, &[70, 30, 5], 2),
        ]
    );
    let summary = &store.summaries(at(1, 0, 3, 30)).unwrap()["db"];
    let days = &summary.days[summary.days.len() - 2..];
    assert_eq!((days[0].checks, days[0].failures), (4, 1));
    assert_eq!(
        days[0].average,
        Some(ms(130 / 4) + Duration::from_micros(500))
    );
    assert_eq!((days[1].checks, days[1].failures), (3, 2));
    assert_eq!(days[1].average, Some(ms(35)));
    assert_eq!(summary.latency_24h.len(), 2);
    // The last hour by the minute, the late check in its minute.
    assert_eq!(
        summary.latency_1h,
        [
            bucket(at(0, 23, 58, 0), 60, &[10], 0),
            bucket(at(0, 23, 59, 0), 60, &[40, 20, 60], 1),
            bucket(at(1, 0, 0, 0), 60, &[70, 30], 2),
            bucket(at(1, 0, 1, 0), 60, &[5], 0),
        ]
    );
    // No change: no uptime.
    assert_eq!(summary.uptime_24h, None);
}

#[test]
fn changes_and_minutes_survive_a_reopen_and_close_ends_the_runs() {
    use Status::{Healthy, Starting, Stopped, Unknown};
    let (_dir, path) = temp_db();
    let clock = FakeClock::at(at(0, 8, 0, 0));
    let store = open(&path, &clock);
    change(&store, "a", at(0, 8, 0, 0), Unknown, Starting);
    change(&store, "a", at(0, 8, 0, 5), Starting, Healthy);
    observe(&store, "a", at(0, 8, 0, 30), ms(12), false);
    observe(&store, "a", at(0, 8, 1, 30), ms(14), false);
    clock.set(at(0, 8, 1, 45));
    // Closing writes the open minute as far as it got and ends the run.
    drop(store);

    let store = open(&path, &clock);
    let span = store.history("a", at(0, 8, 0, 0), at(0, 8, 2, 0)).unwrap();
    assert_eq!(
        tos(&span),
        [
            (at(0, 8, 0, 0), Starting),
            (at(0, 8, 0, 5), Healthy),
            (at(0, 8, 1, 45), Stopped),
        ]
    );
    assert_eq!(span.changes[2].detail, "");
    assert_eq!(
        span.latency,
        [
            bucket(at(0, 8, 0, 0), MINUTE, &[12], 0),
            bucket(at(0, 8, 1, 0), MINUTE, &[14], 0),
        ]
    );
    // 8:00:05 to 8:01:45 healthy, then stopped: all up.
    let summary = &store.summaries(at(0, 9, 0, 0)).unwrap()["a"];
    assert_eq!(summary.uptime_24h, Some(1.0));
    // A second open finds the run ended: nothing more is added.
    drop(store);
    let store = open(&path, &clock);
    assert_eq!(
        store
            .history("a", at(0, 0, 0, 0), at(1, 0, 0, 0))
            .unwrap()
            .changes
            .len(),
        3
    );
}

#[test]
fn a_killed_run_ends_at_its_last_change_without_minutes() {
    use Status::{Healthy, Starting, Stopped, Unknown};
    let (_dir, path) = temp_db();
    let clock = FakeClock::at(at(0, 8, 0, 0));
    let store = open(&path, &clock);
    change(&store, "a", at(0, 8, 0, 0), Unknown, Starting);
    change(&store, "a", at(0, 8, 0, 5), Starting, Healthy);
    // Observed but never written: the minute is open when the process dies.
    observe(&store, "a", at(0, 8, 0, 30), ms(12), false);
    store.flush().unwrap();
    store.kill();
    drop(store);

    clock.set(at(0, 9, 0, 0));
    let store = open(&path, &clock);
    let span = store.history("a", at(0, 8, 0, 0), at(0, 9, 0, 0)).unwrap();
    assert_eq!(
        tos(&span),
        [
            (at(0, 8, 0, 0), Starting),
            (at(0, 8, 0, 5), Healthy),
            (at(0, 8, 0, 5), Stopped),
        ]
    );
    assert!(span.latency.is_empty());
    assert_eq!(
        store.summaries(at(0, 9, 0, 0)).unwrap()["a"].uptime_24h,
        None
    );
}

#[test]
fn pruning_goes_in_chunks_and_keeps_uptime_right_at_the_cut() {
    use Status::{Healthy, Starting, Stopped, Unhealthy, Unknown};
    let (_dir, path) = temp_db();
    // Now is P = D100 12:00; the history kept is 8 days.
    let p = at(100, 12, 0, 0);
    let days_before = |d: u64| p - Duration::from_secs(d * DAY);
    let clock = FakeClock::at(p - Duration::from_secs(2 * HOUR));
    let store = Store::open(
        &path,
        StoreOptions {
            history_retention: Duration::from_secs(8 * DAY),
            ..options(&clock)
        },
    )
    .unwrap();
    // The pass that runs at open has nothing to do.
    let chunks = store.wait_history_pruned(1);

    // `a`: 100 days of history, its last change before the cut (P - 8 d) is `healthy`
    // at P - 20 d + 1 h: it is the status at the cut and must stay.
    let script = [
        (days_before(100), Unknown, Starting),
        (
            days_before(100) + Duration::from_secs(60),
            Starting,
            Healthy,
        ),
        (days_before(20), Healthy, Unhealthy),
        (
            days_before(20) + Duration::from_secs(HOUR),
            Unhealthy,
            Healthy,
        ),
        (days_before(5), Healthy, Unhealthy),
        (
            days_before(5) + Duration::from_secs(2 * HOUR),
            Unhealthy,
            Healthy,
        ),
    ];
    for (time, from, to) in script {
        change(&store, "a", time, from, to);
    }
    // Hour and day rows of `a` before and after the cut.
    observe(&store, "a", days_before(30), ms(10), false);
    observe(&store, "a", days_before(3), ms(10), false);
    // `b`: stopped long before the cut; nothing of it stays.
    change(&store, "b", days_before(50), Unknown, Starting);
    change(
        &store,
        "b",
        days_before(50) + Duration::from_secs(60),
        Starting,
        Healthy,
    );
    change(&store, "b", days_before(40), Healthy, Stopped);
    // `c`: a recent minute, to learn its id.
    observe(
        &store,
        "c",
        p - Duration::from_secs(2 * HOUR + 60),
        ms(1),
        false,
    );
    clock.set(p - Duration::from_secs(2 * HOUR - 60));
    store.flush().unwrap();

    // 12 000 minutes of `c` older than 48 h, written behind the store's back.
    let conn = Connection::open(&path).unwrap();
    let c: i64 = conn
        .query_row("SELECT id FROM history_monitor WHERE name = 'c'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let old_minute = crate::time::to_unix_ms(days_before(3)) / 60_000 * 60_000;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
         INSERT INTO history_minute SELECT ?1, ?2 - i * 60000, 1, 1000000, 1000000, 1000000, 0 FROM n",
        [c, old_minute],
    )
    .unwrap();

    let summaries = store.summaries(p).unwrap();
    let a_before = summaries["a"].clone();
    assert!(summaries.contains_key("b"));
    // 7 d = P - 7 d .. P: healthy but 2 h down at P - 5 d.
    assert_eq!(a_before.uptime_7d, frac(166, 168));
    // 30 d: down 1 h at P - 20 d and 2 h at P - 5 d.
    assert_eq!(a_before.uptime_30d, frac(717, 720));

    // An hour later the next commit starts a pass.
    clock.set(p);
    store.record("c", &MonitorState::default(), &[]);
    store.flush().unwrap();
    let chunks = store.wait_history_pruned(2) - chunks;
    let minutes_of_c = 12_000 + 1;
    // The minutes of `a`: two; of `c`: all but the recent one.
    assert!(
        chunks >= (minutes_of_c as u64).div_ceil(PRUNE_CHUNK_ROWS as u64),
        "{chunks} chunks"
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM history_minute"), 1);
    // `a`: the hour and day rows of P - 30 d went, P - 3 d stays.
    assert_eq!(count(&conn, "SELECT count(*) FROM history_hour"), 2);
    assert_eq!(count(&conn, "SELECT count(*) FROM history_day"), 2);
    // `a` keeps its change at P - 20 d + 1 h and the two after the cut; `b` lost all
    // and is forgotten.
    let span = store.history("a", days_before(200), p).unwrap();
    assert_eq!(
        tos(&span),
        [
            (days_before(20) + Duration::from_secs(HOUR), Healthy),
            (days_before(5), Unhealthy),
            (days_before(5) + Duration::from_secs(2 * HOUR), Healthy),
        ]
    );
    let summaries = store.summaries(p).unwrap();
    let mut names: Vec<_> = summaries.keys().collect();
    names.sort();
    assert_eq!(names, ["a", "c"]);
    let a = &summaries["a"];
    // Within the retention, uptime is what it was.
    assert_eq!(a.uptime_24h, a_before.uptime_24h);
    assert_eq!(a.uptime_7d, a_before.uptime_7d);
    assert_eq!(a.days[82..], a_before.days[82..]);
    // Beyond it, only what was kept counts: P - 20 d + 1 h .. P, 2 h down.
    assert_eq!(a.uptime_30d, frac(20 * 24 - 1 - 2, 20 * 24 - 1));
}

#[test]
fn a_failed_commit_keeps_history_readable_and_commits_it_once_later() {
    use Status::{Healthy, Starting, Unknown};
    let (_dir, path) = temp_db();
    let clock = FakeClock::at(at(0, 8, 0, 0));
    let store = open(&path, &clock);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON history_change
         BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
    )
    .unwrap();
    change(&store, "a", at(0, 8, 0, 0), Unknown, Starting);
    change(&store, "a", at(0, 8, 0, 1), Starting, Healthy);
    observe(&store, "a", at(0, 8, 0, 2), ms(7), false);
    clock.set(at(0, 8, 1, 0));
    store.flush().unwrap_err();
    // Back in memory: still read, once.
    let span = store.history("a", at(0, 8, 0, 0), at(0, 8, 2, 0)).unwrap();
    assert_eq!(span.changes.len(), 2);
    assert_eq!(span.latency, [bucket(at(0, 8, 0, 0), MINUTE, &[7], 0)]);
    assert_eq!(count(&conn, "SELECT count(*) FROM history_minute"), 0);

    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    store.flush().unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM history_change"), 2);
    assert_eq!(count(&conn, "SELECT count(*) FROM history_minute"), 1);
    assert_eq!(
        store.history("a", at(0, 8, 0, 0), at(0, 8, 2, 0)).unwrap(),
        span
    );
    // A summary as of an earlier time leaves out what came after it.
    let summary = &store.summaries(at(0, 7, 59, 0)).unwrap()["a"];
    assert_eq!(summary.uptime_24h, None);
    assert!(summary.latency_24h.is_empty());
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_states() {
    let (_dir, path) = temp_db();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "application_id", 0x686c_7468)
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO monitor_state VALUES ('api', 'healthy', 0, 4, 0, 0, NULL, NULL)",
        [],
    )
    .unwrap();
    drop(conn);

    let clock = FakeClock::at(at(0, 0, 0, 0));
    let store = open(&path, &clock);
    assert_eq!(store.load_states().unwrap()["api"].passes, 4);
    assert!(store.summaries(at(0, 0, 0, 0)).unwrap().is_empty());
    drop(store);
    let version: u32 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, KNOWN_VERSION);
    assert_eq!(KNOWN_VERSION, 4);
}

#[test]
fn an_in_memory_store_keeps_history_while_open() {
    use Status::{Healthy, Starting, Unknown};
    let clock = FakeClock::at(at(0, 8, 0, 0));
    let store = Store::open(":memory:", options(&clock)).unwrap();
    change(&store, "m", at(0, 8, 0, 0), Unknown, Starting);
    change(&store, "m", at(0, 8, 0, 1), Starting, Healthy);
    observe(&store, "m", at(0, 8, 0, 2), ms(3), false);
    observe(&store, "m", at(0, 8, 1, 2), ms(5), false);
    store.flush().unwrap();
    let span = store.history("m", at(0, 8, 0, 0), at(0, 8, 2, 0)).unwrap();
    assert_eq!(span.changes.len(), 2);
    assert_eq!(span.latency.len(), 2);
    assert_eq!(
        store.summaries(at(0, 9, 0, 0)).unwrap()["m"].uptime_24h,
        Some(1.0)
    );
}

/// The summaries of 1 000 monitors with 90 days of hour and day rows and a few
/// changes a day: the time is printed, not asserted.
#[test]
#[allow(clippy::disallowed_types, clippy::disallowed_methods)] // Measures real time.
fn summaries_of_a_thousand_monitors_over_ninety_days() {
    const MONITORS: i64 = 1_000;
    let (_dir, path) = temp_db();
    let now = at(100, 12, 30, 0);
    let clock = FakeClock::at(now);
    let store = open(&path, &clock);
    let started = std::time::Instant::now();
    let conn = Connection::open(&path).unwrap();
    let now_ms = crate::time::to_unix_ms(now);
    let hour0 = now_ms / 3_600_000 * 3_600_000 - 90 * 24 * 3_600_000;
    let day0 = now_ms / 86_400_000 * 86_400_000 - 89 * 86_400_000;
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE m(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM m WHERE i < {MONITORS})
         INSERT INTO history_monitor (id, name) SELECT i, 'monitor-' || i FROM m;
         WITH RECURSIVE h(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM h WHERE i < 90 * 24)
         INSERT INTO history_hour
             SELECT m.id, {hour0} + h.i * 3600000, 60, 60 * 25000000, 10000000, 90000000, m.id % 3
             FROM history_monitor AS m, h;
         WITH RECURSIVE d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < 90)
         INSERT INTO history_day
             SELECT m.id, {day0} + d.i * 86400000, 1440, 1440 * 25000000, 10000000, 90000000, m.id % 7
             FROM history_monitor AS m, d;
         WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 90 * 4)
         INSERT INTO history_change (monitor, time, from_status, to_status, detail)
             SELECT m.id, {hour0} + c.i * 21600000 + m.id,
                    CASE c.i % 2 WHEN 0 THEN 'unhealthy' ELSE 'healthy' END,
                    CASE c.i % 2 WHEN 0 THEN 'healthy' ELSE 'unhealthy' END, 'HTTP 503'
             FROM history_monitor AS m, c;
         COMMIT;"
    ))
    .unwrap();
    // As the store's own checkpoints keep it: the pages in the file, not the log.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    eprintln!(
        "generated {MONITORS} monitors x 90 days ({} hour rows) in {:?}",
        count(&conn, "SELECT count(*) FROM history_hour"),
        started.elapsed()
    );
    // Memory, too: an open minute for every monitor.
    for m in 1..=MONITORS {
        observe(&store, &format!("monitor-{m}"), now, ms(20), false);
    }

    let mut times = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let summaries = store.summaries(now).unwrap();
        times.push(started.elapsed());
        assert_eq!(summaries.len(), MONITORS as usize);
        let one = &summaries["monitor-1"];
        assert_eq!(one.days.len(), 90);
        assert_eq!(one.latency_24h.len(), 24);
        // 24 hours of checks: the last hour by the minute is not kept.
        assert!(one.latency_1h.is_empty());
        assert!(one.uptime_30d.is_some());
    }
    eprintln!("summaries() of {MONITORS} monitors over 90 days took {times:?}");
}

#[test]
fn absurd_latencies_are_kept_as_a_day_and_never_stop_the_commits() {
    let (_dir, path) = temp_db();
    let clock = FakeClock::at(at(0, 10, 0, 0));
    let store = open(&path, &clock);
    // A hostile agent may answer any latency: u64::MAX ns, more than once an hour.
    let huge = Duration::from_nanos(u64::MAX);
    for minute in 0..3 {
        observe(&store, "agent", at(0, 10, minute, 1), huge, false);
        clock.set(at(0, 10, minute + 1, 1));
        store.flush().unwrap();
    }
    let day = Duration::from_secs(24 * 60 * 60);
    let span = store
        .history("agent", at(0, 9, 0, 0), at(0, 10, 30, 0))
        .unwrap();
    assert_eq!(span.latency.len(), 3, "{span:?}");
    assert!(span.latency.iter().all(|b| b.max == day && b.sum == day));
    let summary = &store.summaries(at(0, 10, 30, 0)).unwrap()["agent"];
    let hour = summary.latency_24h.last().unwrap();
    assert_eq!((hour.count, hour.sum), (3, day * 3));
    // Later states still commit.
    store.record("agent", &MonitorState::default(), &[]);
    store.flush().unwrap();
}
