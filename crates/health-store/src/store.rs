//! [`Store`]: opening the file, restoring monitor states, taking new ones
//! ([`StateSink`]), and flushing.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use health_types::{AlertState, Clock, ErrorChain, Event, MonitorState, StateSink, Status};
use rusqlite::Connection;

use crate::{
    StoreError, StoreOptions,
    history_write::{HistoryWriter, close_dangling_runs},
    schema::{self, Role},
    time::{from_unix_ms, to_unix_ms},
    writer::{Shared, Writer, alert_json, lock},
};

/// The name that opens a store in memory.
const MEMORY: &str = ":memory:";

/// The files this process has open as stores: each is opened once per process.
static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Holds a path in [`OPEN`], and an exclusive `flock` on the file against other
/// processes, until dropped.
///
/// The lock is taken on a handle of our own, kept open as long as the store: closing
/// any handle of a file drops the process's `fcntl` locks on it, SQLite's among them,
/// so the handle must outlive SQLite's connections (it is the store's last field).
/// `flock` and SQLite's `fcntl` locks do not interact on Linux.
#[derive(Debug)]
struct Registration(PathBuf, Option<std::fs::File>);

impl Registration {
    fn claim(key: PathBuf, shown: &Path) -> Result<Registration, StoreError> {
        if lock(&OPEN).insert(key.clone()) {
            // Registered first, so that a failure below unregisters on drop.
            let mut registration = Registration(key, None);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(shown)
                .map_err(|source| StoreError::Open {
                    path: shown.to_path_buf(),
                    source: source.into(),
                })?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::InUse {
                        path: shown.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(StoreError::Open {
                        path: shown.to_path_buf(),
                        source: source.into(),
                    });
                }
            }
            registration.1 = Some(file);
            Ok(registration)
        } else {
            Err(StoreError::AlreadyOpen {
                path: shown.to_path_buf(),
            })
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&OPEN).remove(&self.0);
    }
}

/// The durable state of healthd (SPEC §9.1) in one embedded SQLite file: the
/// [`MonitorState`] of each monitor and the [`Outbox`](health_types::Outbox) of
/// notifications.
///
/// - Monitors report through [`StateSink::record`], which only queues (a mutex and a
///   hash-map insert); a writer thread commits each batch in one transaction (see
///   [`StoreOptions::tick`]), states together with the outbox rows of their events.
/// - The dispatcher reads and marks entries through the `Outbox` port on a second
///   connection, so it never waits for the writer's tick (WAL mode lets it read while
///   the writer commits). `delivered` and `gave_up` commit before they return.
/// - History (SPEC §9.2): monitors report checks and status changes through
///   [`HistorySink`](health_types::HistorySink), which only updates memory (a check
///   joins its monitor's open minute); the writer commits changes and closed minutes
///   with its batches, and prunes old history a small transaction at a time. The
///   [`HistoryReader`](health_types::HistoryReader) reads on a connection of its own
///   and merges what memory holds. Closing the store ends every monitor's run with a
///   `stopped` change; opening it ends the runs a killed process left open (see
///   `history_read` for how uptime counts).
/// - [`flush`](Store::flush) commits everything pending and waits until it is durable;
///   [`close`](Store::close), or dropping the store, commits what is pending and joins
///   the writer.
///
/// An in-memory store (path `":memory:"`) keeps nothing after it is dropped. SQLite's
/// in-memory database belongs to one connection, so there the writer and the readers
/// share that one connection (behind a mutex) instead of a shared-cache URI, whose
/// table locks would fail reads with "database table is locked" during commits.
///
/// ```
/// use health_store::{Store, StoreOptions};
/// use health_types::{MonitorState, Outbox, StateSink, Status};
///
/// let store = Store::open(":memory:", StoreOptions::default())?;
/// store.set_router(|_monitor| vec!["webhook".to_owned()]);
/// let state = MonitorState { status: Status::Healthy, passes: 1, ..MonitorState::default() };
/// store.record("api", &state, &[]);
/// store.flush()?;
/// assert_eq!(store.load_states()?["api"], state);
/// assert_eq!(store.backlog("webhook")?, (0, None));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Store {
    shared: Arc<Shared>,
    reader: Arc<Mutex<Connection>>,
    history: Arc<Mutex<Connection>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    _registration: Option<Registration>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path`, creating the file (and its parent directories) on
    /// first use and migrating its schema forward; `":memory:"` opens a store that keeps
    /// nothing.
    ///
    /// Fails, naming the path and the reason, when the directory cannot be created, the
    /// file cannot be opened or is not a SQLite database, it is locked by another
    /// process for longer than the busy timeout, it belongs to another application, its
    /// schema is newer than this build knows, or this process has it open already.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let shown = path.to_path_buf();
        let memory = path.as_os_str() == MEMORY;
        let mut registration = None;
        if !memory {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: shown.clone(),
                    source,
                })?;
            }
            registration = Some(Registration::claim(identity(path), &shown)?);
        }
        let file = (!memory).then_some(path);
        let mut writer_conn = schema::connect(file, &shown, Role::Writer, options.busy_timeout)?;
        schema::migrate(&mut writer_conn, &shown)?;
        let write_error = |source: rusqlite::Error| StoreError::Write {
            path: shown.clone(),
            source: source.into(),
        };
        // Runs left open by a process that was killed end at their last known alive
        // time, before this process adds anything.
        let ended =
            close_dangling_runs(&mut writer_conn, options.clock.now()).map_err(write_error)?;
        if ended > 0 {
            tracing::info!(
                path = %shown.display(),
                monitors = ended,
                "history: closed the runs of monitors the last process did not stop"
            );
        }
        let history = HistoryWriter::load(&writer_conn).map_err(|source| StoreError::Read {
            path: shown.clone(),
            source: source.into(),
        })?;
        let writer_conn = Arc::new(Mutex::new(writer_conn));
        // History reads get a connection of their own, so that a long one (the
        // summaries) never holds up the dispatcher's outbox reads and marks.
        let (reader, history_reader) = if memory {
            (writer_conn.clone(), writer_conn.clone())
        } else {
            let connect = || {
                schema::connect(file, &shown, Role::Reader, options.busy_timeout)
                    .map(|conn| Arc::new(Mutex::new(conn)))
            };
            (connect()?, connect()?)
        };

        let shared = Arc::new(Shared::default());
        let writer = Writer {
            shared: shared.clone(),
            conn: writer_conn,
            path: shown.clone(),
            tick: options.tick,
            retention: options.retention,
            history_retention: options.history_retention,
            clock: options.clock.clone(),
            history,
        };
        let writer = std::thread::Builder::new()
            .name("health-store".into())
            .spawn(move || writer.run())
            .map_err(|source| StoreError::Open {
                path: shown.clone(),
                source: source.into(),
            })?;
        Ok(Store {
            shared,
            reader,
            history: history_reader,
            writer: Mutex::new(Some(writer)),
            path: shown,
            clock: options.clock,
            _registration: registration,
        })
    }

    /// The path the store was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every monitor's last committed state, by monitor name (what was recorded but not
    /// yet committed is not included: [`flush`](Store::flush) first for that). Times
    /// come back at millisecond precision.
    pub fn load_states(&self) -> Result<HashMap<String, MonitorState>, StoreError> {
        let conn = lock(&self.reader);
        let rows = (|| {
            let mut select = conn.prepare_cached(
                "SELECT monitor, status, failures, passes, errors, down_sent, outage_start, last_seen,
                        cert_warned
                 FROM monitor_state",
            )?;
            let rows = select.query_map([], |row| {
                Ok(StateRow {
                    monitor: row.get(0)?,
                    status: row.get(1)?,
                    failures: row.get(2)?,
                    passes: row.get(3)?,
                    errors: row.get(4)?,
                    down_sent: row.get(5)?,
                    outage_start: row.get(6)?,
                    last_seen: row.get(7)?,
                    cert_warned: row.get(8)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<StateRow>>>()
        })()
        .map_err(|source| self.read_error(source.into()))?;
        drop(conn);
        rows.into_iter()
            .map(|row| {
                row.into_state()
                    .map_err(|reason| self.read_error(reason.into()))
            })
            .collect()
    }

    /// Every monitor's last committed alert-policy state (SPEC §9.5), by monitor name;
    /// monitors without one are not included.
    pub fn load_alert_states(&self) -> Result<HashMap<String, AlertState>, StoreError> {
        let conn = lock(&self.reader);
        let rows = (|| {
            let mut select = conn.prepare_cached(
                "SELECT monitor, alert FROM monitor_state WHERE alert IS NOT NULL",
            )?;
            let rows = select.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<(String, String)>>>()
        })()
        .map_err(|source| self.read_error(source.into()))?;
        drop(conn);
        rows.into_iter()
            .map(|(monitor, json)| {
                serde_json::from_str(&json)
                    .map(|alert| (monitor.clone(), alert))
                    .map_err(|error| {
                        self.read_error(format!("monitor {monitor:?}: alert state: {error}").into())
                    })
            })
            .collect()
    }

    /// Sets where events go: `route(monitor)` names the notifiers (their `[[notify]]`
    /// names) that each event of `monitor` becomes an outbox entry for.
    ///
    /// Called on the writer thread once per monitor per batch, outside the transaction.
    /// Until a router is set, events go to no notifier (and a warning says so).
    pub fn set_router(&self, route: impl Fn(&str) -> Vec<String> + Send + Sync + 'static) {
        lock(&self.shared.pending).router = Some(Arc::new(route));
    }

    /// Sets what to call after each commit that added outbox entries, with the names of
    /// the notifiers that got some (sorted, each once): the dispatcher wakes their
    /// workers.
    ///
    /// Runs on the writer thread: keep it short, and never call [`flush`](Store::flush)
    /// or [`close`](Store::close) from it (the writer would wait for itself). A hook that
    /// holds (a dispatcher that holds) this store keeps the store alive, so dropping it
    /// never comes: [`close`](Store::close) it at shutdown, which drops the hook.
    pub fn set_commit_hook(&self, hook: impl Fn(&[String]) + Send + Sync + 'static) {
        lock(&self.shared.pending).hook = Some(Arc::new(hook));
    }

    /// Commits everything recorded so far now and returns once it is durable (for
    /// shutdown and tests): monitor states, events, history changes, and the history
    /// minutes that have ended by the store's clock (a minute still open stays in
    /// memory, where reads find it). Blocks the calling thread for up to one commit.
    ///
    /// Fails when that commit failed (the batch is kept and retried on the next tick),
    /// or the writer has stopped (the store was closed, or the writer panicked).
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut pending = lock(&self.shared.pending);
        if pending.stopped {
            return Err(StoreError::WriterStopped {
                path: self.path.clone(),
            });
        }
        // History minutes that have ended by now count as recorded: close them.
        pending.history.sweep(to_unix_ms(self.clock.now()));
        // Everything recorded so far is in the pending batch, or in the batch being
        // committed (number `taken`), or already finished.
        let target = if pending.is_empty() {
            pending.taken
        } else {
            pending.flush = true;
            self.shared.wake.notify_one();
            pending.taken + 1
        };
        while pending.finished < target && !pending.stopped {
            pending = self
                .shared
                .finished
                .wait(pending)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        match &pending.failed {
            Some((batch, error)) if *batch == target => Err(StoreError::Write {
                path: self.path.clone(),
                source: Box::new(error.clone()),
            }),
            _ if pending.finished < target => Err(StoreError::WriterStopped {
                path: self.path.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Commits everything pending, stops the writer and drops the router and the commit
    /// hook (ending a reference cycle through the dispatcher, if any); for shutdown.
    /// Reads and marks through the `Outbox` still work; what is recorded afterwards is
    /// not saved. Closing again does nothing.
    ///
    /// Fails when the final commit failed (what it held is lost) or the writer had
    /// stopped (panicked) before.
    pub fn close(&self) -> Result<(), StoreError> {
        let Some(writer) = lock(&self.writer).take() else {
            return Ok(());
        };
        lock(&self.shared.pending).shutdown = true;
        self.shared.wake.notify_one();
        let panicked = writer.join().is_err();
        let mut pending = lock(&self.shared.pending);
        let hooks = (pending.router.take(), pending.hook.take());
        let outcome = if panicked {
            Err(StoreError::WriterStopped {
                path: self.path.clone(),
            })
        } else {
            match &pending.failed {
                Some((batch, error)) if !pending.is_empty() && *batch == pending.taken => {
                    Err(StoreError::Write {
                        path: self.path.clone(),
                        source: Box::new(error.clone()),
                    })
                }
                _ => Ok(()),
            }
        };
        drop(pending);
        // Dropped outside the lock: they may own things whose drop reaches the store.
        drop(hooks);
        outcome
    }

    /// The connection reads and marks go through.
    pub(crate) fn reader(&self) -> &Mutex<Connection> {
        &self.reader
    }

    /// The connection history reads go through.
    pub(crate) fn history_reader(&self) -> &Mutex<Connection> {
        &self.history
    }

    /// What the store shares with its writer.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The wall clock of this store.
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub(crate) fn read_error(&self, source: crate::error::Cause) -> StoreError {
        StoreError::Read {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn write_error(&self, source: crate::error::Cause) -> StoreError {
        StoreError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// How many batches the writer committed.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        lock(&self.shared.pending).commits
    }

    /// Stops the writer as a killed process would: nothing pending is committed and
    /// no run is ended. The store stays open for reads.
    #[cfg(test)]
    pub(crate) fn kill(&self) {
        let Some(writer) = lock(&self.writer).take() else {
            return;
        };
        {
            let mut pending = lock(&self.shared.pending);
            pending.killed = true;
            pending.shutdown = true;
        }
        self.shared.wake.notify_one();
        writer.join().expect("the writer does not panic");
    }

    /// Waits until the writer completed `passes` history pruning passes in all; returns
    /// how many chunks (transactions) they took in all.
    #[cfg(test)]
    pub(crate) fn wait_history_pruned(&self, passes: u64) -> u64 {
        let mut pending = lock(&self.shared.pending);
        while pending.history_prune_passes < passes && !pending.stopped {
            pending = self
                .shared
                .finished
                .wait(pending)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        pending.history_prune_chunks
    }
}

impl StateSink for Store {
    /// Queues `state` (replacing a queued state of the same monitor) and `events` for
    /// the writer's next commit, and returns: it takes a mutex for a hash-map insert and
    /// wakes the writer when the batch was empty or carries events.
    fn record(&self, monitor: &str, state: &MonitorState, events: &[Event]) {
        self.queue(monitor, state, None, events);
    }

    /// [`record`](StateSink::record), and `alert` with them in the same commit (schema
    /// version 4; JSON, NULL when empty).
    fn record_with_alert(
        &self,
        monitor: &str,
        state: &MonitorState,
        alert: &AlertState,
        events: &[Event],
    ) {
        // Serialized here, outside the store's mutex.
        self.queue(monitor, state, Some(alert_json(alert)), events);
    }
}

impl Store {
    /// Queues a record: `alert` is `Some` when an alert state (as stored) comes with it.
    fn queue(
        &self,
        monitor: &str,
        state: &MonitorState,
        alert: Option<Option<String>>,
        events: &[Event],
    ) {
        let mut pending = lock(&self.shared.pending);
        if pending.refuse(&self.path) {
            return;
        }
        if let Some(alert) = alert {
            pending.alerts.insert(monitor.to_owned(), alert);
        }
        let wake = pending.is_empty() || !events.is_empty();
        match pending.states.get_mut(monitor) {
            Some(queued) => queued.clone_from(state),
            None => {
                pending.states.insert(monitor.to_owned(), state.clone());
            }
        }
        pending.events.extend(
            events
                .iter()
                .map(|event| (monitor.to_owned(), event.clone())),
        );
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Store {
    /// [`close`](Store::close)s the store, logging a failure.
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(error = %ErrorChain(&error), "cannot close the store");
        }
    }
}

/// What names a store file in [`OPEN`]: the canonical path of its directory and its
/// file name, so that two spellings of one file are one store.
fn identity(path: &Path) -> PathBuf {
    if let Ok(canonical) = path.canonicalize() {
        return canonical;
    }
    let dir = match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
        None => std::env::current_dir().unwrap_or_default(),
    };
    match path.file_name() {
        Some(name) => dir.join(name),
        None => path.to_path_buf(),
    }
}

/// A `monitor_state` row as stored.
struct StateRow {
    monitor: String,
    status: String,
    failures: u32,
    passes: u32,
    errors: u32,
    down_sent: bool,
    outage_start: Option<i64>,
    last_seen: Option<i64>,
    cert_warned: Option<i64>,
}

impl StateRow {
    fn into_state(self) -> Result<(String, MonitorState), String> {
        let status = Status::from_str(&self.status)
            .map_err(|error| format!("monitor {:?}: {error}", self.monitor))?;
        let time = |ms: Option<i64>, what: &str| match ms {
            None => Ok(None),
            Some(ms) => from_unix_ms(ms).map(Some).ok_or_else(|| {
                format!("monitor {:?}: {what} {ms} ms is out of range", self.monitor)
            }),
        };
        let state = MonitorState {
            status,
            failures: self.failures,
            passes: self.passes,
            errors: self.errors,
            down_sent: self.down_sent,
            outage_start: time(self.outage_start, "outage_start")?,
            last_seen: time(self.last_seen, "last_seen")?,
            cert_warned: self.cert_warned,
        };
        Ok((self.monitor, state))
    }
}
