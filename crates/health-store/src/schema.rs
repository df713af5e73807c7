//! The file and its schema: opening a connection with the store's settings, and the
//! ordered migrations that bring a file forward to [`KNOWN_VERSION`].
//!
//! Schema version 1:
//!
//! ```sql
//! monitor_state (monitor TEXT PRIMARY KEY, status TEXT, failures, passes, errors,
//!                down_sent INTEGER, outage_start INTEGER NULL, last_seen INTEGER NULL)
//! outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, notifier TEXT, service TEXT, kind TEXT,
//!         outage_start INTEGER NULL, event TEXT /* JSON */, created INTEGER,
//!         state TEXT /* pending | delivered | given_up */, reason TEXT NULL,
//!         done INTEGER NULL)
//! ```
//!
//! Times are unix milliseconds. `AUTOINCREMENT` keeps an outbox id from ever being used
//! twice, even after the rows above it were pruned. Three partial indexes serve the
//! queries: a notifier's pending entries in id order, a notifier's given-up `down`s by
//! outage, and finished entries by the time they were finished (pruning).
//!
//! Schema version 2 adds history (SPEC §9.2):
//!
//! ```sql
//! history_monitor (id INTEGER PRIMARY KEY, name TEXT UNIQUE)
//! history_change (id INTEGER PRIMARY KEY, monitor INTEGER, time INTEGER,
//!                 from_status TEXT, to_status TEXT, detail TEXT)
//!     INDEX (monitor, time, to_status)
//! history_minute | history_hour | history_day
//!     (monitor INTEGER, start INTEGER, count, total, shortest, longest, failures,
//!      PRIMARY KEY (monitor, start)) WITHOUT ROWID
//! ```
//!
//! A monitor is named once, in `history_monitor`; the other tables hold its id, which
//! keeps the many latency rows small. `history_change` holds every status change; its
//! id orders changes of one millisecond, and its index covers what uptime reads (the
//! summaries never visit the table itself). The latency tables hold the checks of one
//! minute, hour or UTC day (`start` in unix ms, latencies in nanoseconds: `total` is
//! their sum, `shortest` and `longest` the extremes). A closed minute is inserted into
//! `history_minute` and added into its hour's and its day's rows in the same
//! transaction, so each table is complete for what was written. Minutes are kept 48 h,
//! hours, days and changes `StoreOptions::history_retention`, but each monitor's last
//! change before that cut (its status at the cut) unless it is `stopped`. The day rows
//! exist for the status page's 90-day bar: 90 rows a monitor instead of 2 160 hours.
//! Every table is keyed (or indexed) by monitor first, so a monitor's span is one range
//! of one B-tree, and the summaries walk the monitors and seek into each.
//!
//! Schema version 3 adds `monitor_state.cert_warned INTEGER NULL`: the `not_after` (unix
//! seconds) of the last certificate a `cert_expiry` event went out for, so a restart
//! does not warn of it again (SPEC §9.4).
//!
//! Schema version 4 adds `monitor_state.alert TEXT NULL`: the alert policy's state of
//! the monitor (SPEC §9.5: what receivers were told, what is held, the recent changes)
//! as JSON, NULL when there is nothing to keep. It is written in the same transaction as
//! the monitor's state and the outbox rows of the events the policy let out, so a held
//! `down` is neither lost nor sent twice across a restart.

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::StoreError;

/// The migrations in order: entry `i` brings a file from schema version `i` to `i + 1`.
/// Each runs in its own transaction with the version bump. Never edit one that was
/// released; add the next.
pub(crate) const MIGRATIONS: [&str; 4] = [
    // 0 -> 1: monitor states and the outbox.
    "
    CREATE TABLE monitor_state (
        monitor      TEXT NOT NULL PRIMARY KEY,
        status       TEXT NOT NULL,
        failures     INTEGER NOT NULL,
        passes       INTEGER NOT NULL,
        errors       INTEGER NOT NULL,
        down_sent    INTEGER NOT NULL,
        outage_start INTEGER,
        last_seen    INTEGER
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        notifier     TEXT NOT NULL,
        service      TEXT NOT NULL,
        kind         TEXT NOT NULL,
        outage_start INTEGER,
        event        TEXT NOT NULL,
        created      INTEGER NOT NULL,
        state        TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'given_up')),
        reason       TEXT,
        done         INTEGER
    ) STRICT;

    CREATE INDEX outbox_pending ON outbox (notifier, id) WHERE state = 'pending';
    CREATE INDEX outbox_down_given_up ON outbox (notifier, service, outage_start)
        WHERE state = 'given_up' AND kind = 'down';
    CREATE INDEX outbox_done ON outbox (done) WHERE state <> 'pending';
    ",
    // 1 -> 2: history (SPEC §9.2).
    "
    CREATE TABLE history_monitor (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    ) STRICT;

    CREATE TABLE history_change (
        id          INTEGER PRIMARY KEY,
        monitor     INTEGER NOT NULL,
        time        INTEGER NOT NULL,
        from_status TEXT NOT NULL,
        to_status   TEXT NOT NULL,
        detail      TEXT NOT NULL
    ) STRICT;

    CREATE INDEX history_change_by_monitor ON history_change (monitor, time, to_status);

    CREATE TABLE history_minute (
        monitor  INTEGER NOT NULL,
        start    INTEGER NOT NULL,
        count    INTEGER NOT NULL,
        total    INTEGER NOT NULL,
        shortest INTEGER NOT NULL,
        longest  INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        PRIMARY KEY (monitor, start)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE history_hour (
        monitor  INTEGER NOT NULL,
        start    INTEGER NOT NULL,
        count    INTEGER NOT NULL,
        total    INTEGER NOT NULL,
        shortest INTEGER NOT NULL,
        longest  INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        PRIMARY KEY (monitor, start)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE history_day (
        monitor  INTEGER NOT NULL,
        start    INTEGER NOT NULL,
        count    INTEGER NOT NULL,
        total    INTEGER NOT NULL,
        shortest INTEGER NOT NULL,
        longest  INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        PRIMARY KEY (monitor, start)
    ) STRICT, WITHOUT ROWID;
    ",
    // 2 -> 3: the certificate a `cert_expiry` event went out for (SPEC §9.4).
    "
    ALTER TABLE monitor_state ADD COLUMN cert_warned INTEGER;
    ",
    // 3 -> 4: the alert policy's state of each monitor, as JSON (SPEC §9.5).
    "
    ALTER TABLE monitor_state ADD COLUMN alert TEXT;
    ",
];

/// A `u64` as an SQLite integer, held at `i64::MAX` (an id above it matches none; a count
/// or a sum above it is kept as the largest there is).
pub(crate) fn sql_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The newest schema version this build knows.
pub(crate) const KNOWN_VERSION: u32 = MIGRATIONS.len() as u32;

/// Our `PRAGMA application_id` ("hlth"): tells a healthd store from other SQLite files.
const APPLICATION_ID: i32 = 0x686c_7468;

/// What a connection is for; the settings differ a little.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The writer's connection: monitor states and new outbox rows, in batches.
    Writer,
    /// Reads, and the rare marks (delivered, given up) that must be durable at once.
    Reader,
}

/// Opens `path` (`None`: a private in-memory database) with the store's settings: WAL
/// mode, `synchronous = NORMAL` for the writer (a commit survives a crash of the
/// process; only a power loss can take the last ones back) and `FULL` for the reader's
/// marks, and a `busy_timeout`.
pub(crate) fn connect(
    path: Option<&Path>,
    shown: &Path,
    role: Role,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let open_error = |source: rusqlite::Error| StoreError::Open {
        path: shown.to_path_buf(),
        source: source.into(),
    };
    let conn = match path {
        None => Connection::open_in_memory(),
        // No SQLITE_OPEN_URI: the configured path is a file name, never a URI.
        Some(path) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
    }
    .map_err(open_error)?;
    conn.busy_timeout(busy_timeout).map_err(open_error)?;
    // The first statement that reads the file: this is where "file is not a database"
    // and "database is locked" show up.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open_error)?;
    if path.is_some() && !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            path = %shown.display(),
            mode,
            "the store is not in WAL mode: reads may wait for the writer's commits"
        );
    }
    let synchronous = match role {
        Role::Writer => "NORMAL",
        Role::Reader => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(open_error)?;
    Ok(conn)
}

/// Brings the schema of `conn`'s database forward to [`KNOWN_VERSION`], one migration
/// per transaction; refuses a database whose version is newer, or that belongs to
/// another application.
pub(crate) fn migrate(conn: &mut Connection, shown: &Path) -> Result<(), StoreError> {
    let read_error = |source: rusqlite::Error| StoreError::Open {
        path: shown.to_path_buf(),
        source: source.into(),
    };
    let (version, application_id, objects) = read_header(conn).map_err(read_error)?;
    if version > i64::from(KNOWN_VERSION) {
        return Err(StoreError::TooNew {
            path: shown.to_path_buf(),
            found: version,
            known: KNOWN_VERSION,
        });
    }
    let fresh = version == 0 && application_id == 0 && objects == 0;
    if !fresh && (version < 0 || application_id != APPLICATION_ID) {
        return Err(StoreError::Foreign {
            path: shown.to_path_buf(),
        });
    }
    // `version` is in 0..=KNOWN_VERSION here.
    let from = u32::try_from(version).unwrap_or(0);
    for (to, sql) in (from + 1..).zip(&MIGRATIONS[from as usize..]) {
        let migrate_error = |source: rusqlite::Error| StoreError::Migrate {
            path: shown.to_path_buf(),
            version: to,
            source: source.into(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(migrate_error)?;
        // Another process may have migrated the file since the header was read.
        let (now, _, _) = read_header(&tx).map_err(migrate_error)?;
        if now >= i64::from(to) {
            continue;
        }
        tx.execute_batch(sql).map_err(migrate_error)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(migrate_error)?;
        tx.pragma_update(None, "user_version", to)
            .map_err(migrate_error)?;
        tx.commit().map_err(migrate_error)?;
        tracing::info!(path = %shown.display(), version = to, "store schema migrated");
    }
    Ok(())
}

/// The schema version, the application id and how many schema objects the file has.
fn read_header(conn: &Connection) -> rusqlite::Result<(i64, i32, i64)> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let objects: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
    Ok((version, application_id, objects))
}
