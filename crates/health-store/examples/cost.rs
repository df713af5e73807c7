//! What the store costs: `record()` CPU, and a simulated hour of 10 000 monitors with
//! 2 % of them flapping, committed one transaction per 100 ms tick, with the file size
//! at the end; then history: `observe()` CPU, and simulated minutes of every monitor
//! checking every second, with the commit that writes each closed minute.
//!
//! ```text
//! cargo run --release -p health-store --example cost [MONITORS] [TICKS] [MINUTES]
//! ```
//!
//! The hour is simulated, not waited for: each tick records what changed in it and
//! flushes (one transaction, as the writer commits once per tick), as fast as it can.
// A benchmark measures real elapsed time: the clock bans are for the toolkit's logic.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A measuring tool may stop at the first error.

use std::{
    hint::black_box,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use health_store::{Store, StoreOptions};
use health_types::{
    Event, EventKind, HistorySink, MonitorState, Observation, Outbox, StateSink, Status,
};

/// Share of monitors that flap: each changes state on every tick.
const FLAPPING_PERCENT: usize = 2;
/// A flapping monitor goes down or up (an event) once in this many of its changes: every
/// 10 s at one change per 100 ms tick.
const CHANGES_PER_EVENT: usize = 100;
/// `record()` calls timed in the CPU measurement.
const RECORDS: usize = 1_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let monitors: usize = args.next().map_or(10_000, |a| a.parse().expect("MONITORS"));
    let ticks: usize = args.next().map_or(36_000, |a| a.parse().expect("TICKS"));
    let minutes: u64 = args.next().map_or(10, |a| a.parse().expect("MINUTES"));
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..monitors).map(|m| format!("monitor-{m:05}")).collect();

    record_cost(&dir.path().join("record.db"), &names);
    simulated_hour(&dir.path().join("healthd.db"), &names, ticks);
    history_cost(&dir.path().join("history.db"), &names, minutes);
}

/// `observe()` alone, then `minutes` simulated minutes in which every monitor checks
/// once a second: the first check of a minute closes the monitor's previous one, and a
/// flush then commits them all (a minute row, and the hour and day rows, for each).
fn history_cost(path: &Path, names: &[String], minutes: u64) {
    let store = open_without_tick(path);
    // A whole minute in the past, so that its checks land in one minute.
    let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000 / 60 * 60);
    let observation = |second: u64, i: usize| Observation {
        time: base + Duration::from_secs(second),
        latency: Duration::from_micros(800 + (i % 400) as u64),
        failed: i.is_multiple_of(97),
    };
    let start = Instant::now();
    for i in 0..RECORDS {
        store.observe(
            black_box(&names[i % names.len()]),
            black_box(&observation(((i / names.len()) % 60) as u64, i)),
        );
    }
    let elapsed = start.elapsed();
    println!(
        "observe(): {:.0} ns per call ({RECORDS} calls over {} monitors, one minute)",
        elapsed.as_nanos() as f64 / RECORDS as f64,
        names.len()
    );

    let mut observing = Duration::ZERO;
    let mut committing = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    for minute in 1..=minutes {
        let start = Instant::now();
        for second in minute * 60..(minute + 1) * 60 {
            for (i, name) in names.iter().enumerate() {
                store.observe(name, &observation(second, i));
            }
        }
        observing += start.elapsed();
        let start = Instant::now();
        store.flush().unwrap();
        let took = start.elapsed();
        committing += took;
        slowest = slowest.max(took);
    }
    let checks = minutes * 60 * names.len() as u64;
    println!(
        "history: {minutes} simulated minutes, {checks} checks: observe() {:.0} ns per check; \
         the commit of each minute's {} closed minutes {:.1} ms on average, {:.1} ms at most; \
         file {:.1} MiB + WAL {:.1} MiB",
        observing.as_nanos() as f64 / checks as f64,
        names.len(),
        committing.as_secs_f64() * 1e3 / minutes as f64,
        slowest.as_secs_f64() * 1e3,
        file_size(path) as f64 / (1 << 20) as f64,
        file_size(&path.with_extension("db-wal")) as f64 / (1 << 20) as f64,
    );
}

fn state(status: Status, failures: u32, passes: u32) -> MonitorState {
    MonitorState {
        status,
        failures,
        passes,
        errors: 0,
        down_sent: status == Status::Unhealthy,
        outage_start: None,
        last_seen: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        cert_warned: None,
    }
}

/// Opens the store at `path` with a tick of an hour, so the writer commits only on a
/// flush or an event while a measurement runs.
fn open_without_tick(path: &Path) -> Store {
    let options = StoreOptions {
        tick: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    Store::open(path, options).unwrap()
}

/// The CPU of `record()` alone: a mutex and a hash-map insert. The tick is an hour, so
/// the writer commits nothing meanwhile.
fn record_cost(path: &Path, names: &[String]) {
    let store = open_without_tick(path);
    let states = [state(Status::Healthy, 0, 1), state(Status::Unhealthy, 3, 0)];
    let start = Instant::now();
    for i in 0..RECORDS {
        store.record(
            black_box(&names[i % names.len()]),
            black_box(&states[i % 2]),
            &[],
        );
    }
    let elapsed = start.elapsed();
    println!(
        "record(): {:.0} ns per call ({RECORDS} calls over {} monitors, no events)",
        elapsed.as_nanos() as f64 / RECORDS as f64,
        names.len()
    );
    let start = Instant::now();
    store.flush().unwrap();
    println!(
        "flush of {} coalesced states: {:.1} ms",
        names.len(),
        start.elapsed().as_secs_f64() * 1e3
    );

    // After each commit the batch starts empty, so a monitor's first record in a tick
    // also copies its name: time that case too.
    let mut elapsed = Duration::ZERO;
    let rounds = RECORDS / names.len();
    for round in 0..rounds {
        let start = Instant::now();
        for name in names {
            store.record(black_box(name), black_box(&states[round % 2]), &[]);
        }
        elapsed += start.elapsed();
        store.flush().unwrap();
    }
    println!(
        "record() into an empty batch: {:.0} ns per call ({} calls, a flush after every {})",
        elapsed.as_nanos() as f64 / (rounds * names.len()) as f64,
        rounds * names.len(),
        names.len()
    );
}

fn event(kind: EventKind, service: &str, tick: usize) -> Event {
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    Event {
        kind,
        service: service.into(),
        url: format!("http://{service}.internal:8080/healthz"),
        detail: "HTTP 503 Service Unavailable".to_owned(),
        latency: Duration::from_millis(12),
        last_seen: Some(start),
        outage: (kind == EventKind::Up).then_some(Duration::from_secs(10)),
        outage_start: Some(start),
        time: start + Duration::from_millis(100 * tick as u64),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// `ticks` ticks of 100 ms: every flapping monitor records a changed state each tick,
/// one in [`CHANGES_PER_EVENT`] of those changes is a `down` or `up` for one notifier,
/// and a dispatcher marks every entry delivered after each tick.
fn simulated_hour(path: &Path, names: &[String], ticks: usize) {
    // The simulation flushes each tick itself; events still commit at once.
    let store = open_without_tick(path);
    store.set_router(|_| vec!["webhook".to_owned()]);
    let steady = state(Status::Healthy, 0, 1);
    for name in names {
        store.record(name, &steady, &[]);
    }
    store.flush().unwrap();

    let flapping = names.len() * FLAPPING_PERCENT / 100;
    let mut tick_time = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    let mut deliver_time = Duration::ZERO;
    let mut delivered = 0_u64;
    let mut after = 0;
    let mut events = 0_u64;
    let started = SystemTime::now();
    for tick in 0..ticks {
        let start = Instant::now();
        let mut with_event = Vec::new();
        for (m, name) in names[..flapping].iter().enumerate() {
            let change = tick + m * (CHANGES_PER_EVENT / flapping.max(1)).max(1);
            let down = (change / CHANGES_PER_EVENT) % 2 == 1;
            let (status, failures, passes) = if down {
                (Status::Unhealthy, 3, (tick % 3) as u32)
            } else {
                (Status::Healthy, (tick % 3) as u32, 3)
            };
            let state = state(status, failures, passes);
            if change.is_multiple_of(CHANGES_PER_EVENT) {
                let kind = if down { EventKind::Down } else { EventKind::Up };
                with_event.push((name, state, event(kind, name, tick)));
            } else {
                store.record(name, &state, &[]);
            }
        }
        // Events last: the first one wakes the writer, which then commits the tick's
        // whole batch in one transaction.
        for (name, state, event) in &with_event {
            store.record(name, state, std::slice::from_ref(event));
        }
        events += with_event.len() as u64;
        store.flush().unwrap();
        let took = start.elapsed();
        tick_time += took;
        slowest = slowest.max(took);

        let start = Instant::now();
        let entries = store.pending("webhook", after, 1000).unwrap();
        for entry in &entries {
            store.delivered(entry.id).unwrap();
            after = entry.id;
        }
        delivered += entries.len() as u64;
        deliver_time += start.elapsed();
    }
    let wall = started.elapsed().unwrap_or_default();
    let wal = path.with_extension("db-wal");
    let (main_size, wal_size) = (file_size(path), file_size(&wal));
    drop(store);

    println!(
        "simulated {ticks} ticks of 100 ms ({:.1} min): {} monitors, {flapping} flapping ({} state changes, {events} events)",
        ticks as f64 / 600.0,
        names.len(),
        flapping * ticks,
    );
    println!(
        "per tick (record the changes + one commit): mean {:.2} ms, slowest {:.2} ms; at 10 ticks/s the writer is busy {:.1} % of the time",
        tick_time.as_secs_f64() * 1e3 / ticks as f64,
        slowest.as_secs_f64() * 1e3,
        tick_time.as_secs_f64() / (ticks as f64 * 0.1) * 100.0
    );
    if delivered > 0 {
        println!(
            "delivered(): {:.2} ms per entry ({delivered} entries, each committed and synced)",
            deliver_time.as_secs_f64() * 1e3 / delivered as f64
        );
    }
    println!(
        "file after {:.1} min: {:.1} MiB + {:.1} MiB WAL (the WAL is checkpointed into the file on close: {:.1} MiB); simulation took {:.0} s",
        ticks as f64 / 600.0,
        main_size as f64 / (1 << 20) as f64,
        wal_size as f64 / (1 << 20) as f64,
        file_size(path) as f64 / (1 << 20) as f64,
        wall.as_secs_f64()
    );
}
