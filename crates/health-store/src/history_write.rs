//! History (SPEC §9.2) on the writer's connection: committing a batch's changes and
//! closed minutes (a minute row, added into its hour and day rows), closing the runs a
//! killed process left open, and pruning in small chunks.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use health_types::Status;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::{
    history::{Agg, DAY_MS, HOUR_MS, HistoryBatch, MINUTE_MS, floor_to},
    schema::sql_u64,
    time::to_unix_ms,
};

/// How long per-minute latency is kept (SPEC §9.2).
pub(crate) const MINUTES_KEPT: Duration = Duration::from_secs(48 * 60 * 60);

/// The most rows one pruning transaction deletes, so that a batch of checks never
/// waits long behind one.
pub(crate) const PRUNE_CHUNK_ROWS: i64 = 5_000;

/// The most monitors one pruning transaction looks at (each costs a few index seeks
/// even when it has nothing to delete).
const PRUNE_CHUNK_MONITORS: i64 = 500;

/// The detail of the `stopped` change that closes a run its process did not stop.
pub(crate) const NOT_STOPPED_DETAIL: &str =
    "the process ended without stopping the monitor (closed at its last known alive time)";

/// The writer's knowledge of history: monitor ids, and the last status of the monitors
/// that changed in this process.
#[derive(Debug, Default)]
pub(crate) struct HistoryWriter {
    /// Each monitor's id in `history_monitor`, as committed.
    pub(crate) ids: HashMap<Arc<str>, i64>,
    /// The `to` of the last committed change of each monitor that changed in this
    /// process.
    pub(crate) last_to: HashMap<Arc<str>, Status>,
    /// The pruning pass under way, if any.
    pub(crate) prune: Option<PrunePass>,
}

impl HistoryWriter {
    /// Loads the monitor ids.
    pub(crate) fn load(conn: &Connection) -> rusqlite::Result<HistoryWriter> {
        let mut select = conn.prepare("SELECT id, name FROM history_monitor")?;
        let ids = select
            .query_map([], |row| {
                let name: String = row.get(1)?;
                Ok((Arc::<str>::from(name), row.get(0)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(HistoryWriter {
            ids,
            ..HistoryWriter::default()
        })
    }

    /// Writes `batch` in `tx`; returns the ids it created, to be learned once the
    /// transaction is committed.
    pub(crate) fn write(
        &self,
        tx: &Transaction<'_>,
        batch: &HistoryBatch,
    ) -> rusqlite::Result<HashMap<Arc<str>, i64>> {
        let mut created = HashMap::new();
        if batch.is_empty() {
            return Ok(created);
        }
        let mut id_of = |monitor: &Arc<str>| -> rusqlite::Result<i64> {
            if let Some(id) = self.ids.get(monitor).or_else(|| created.get(monitor)) {
                return Ok(*id);
            }
            tx.prepare_cached(
                "INSERT INTO history_monitor (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
            )?
            .execute([&**monitor])?;
            let id: i64 = tx
                .prepare_cached("SELECT id FROM history_monitor WHERE name = ?1")?
                .query_row([&**monitor], |row| row.get(0))?;
            created.insert(monitor.clone(), id);
            Ok(id)
        };

        let mut put_change = tx.prepare_cached(
            "INSERT INTO history_change (monitor, time, from_status, to_status, detail)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (monitor, change) in &batch.changes {
            put_change.execute(params![
                id_of(monitor)?,
                to_unix_ms(change.time),
                change.from.as_str(),
                change.to.as_str(),
                change.detail,
            ])?;
        }

        // Hours and days are summed here first: a batch that holds several minutes of
        // one hour (after a stall, or at close) upserts that hour once.
        let mut hours: HashMap<(i64, i64), Agg> = HashMap::new();
        let mut days: HashMap<(i64, i64), Agg> = HashMap::new();
        let mut put_minute = tx.prepare_cached(&upsert("history_minute"))?;
        for closed in &batch.closed {
            let id = id_of(&closed.monitor)?;
            put_bucket(&mut put_minute, id, closed.start, &closed.agg)?;
            hours
                .entry((id, floor_to(closed.start, HOUR_MS)))
                .or_default()
                .add(&closed.agg);
            days.entry((id, floor_to(closed.start, DAY_MS)))
                .or_default()
                .add(&closed.agg);
        }
        let mut put_hour = tx.prepare_cached(&upsert("history_hour"))?;
        for ((id, start), agg) in &hours {
            put_bucket(&mut put_hour, *id, *start, agg)?;
        }
        let mut put_day = tx.prepare_cached(&upsert("history_day"))?;
        for ((id, start), agg) in &days {
            put_bucket(&mut put_day, *id, *start, agg)?;
        }
        Ok(created)
    }

    /// Learns what a committed batch created and changed.
    pub(crate) fn committed(&mut self, batch: &HistoryBatch, created: HashMap<Arc<str>, i64>) {
        self.ids.extend(created);
        for (monitor, change) in &batch.changes {
            self.last_to.insert(monitor.clone(), change.to);
        }
    }
}

/// `column + excluded.column`, held at `i64::MAX`: SQLite turns an overflowing integer
/// sum into a REAL, which a STRICT table refuses, and a refused batch would stop every
/// later commit.
fn saturating_sum(column: &str) -> String {
    format!(
        "CASE WHEN {column} > 9223372036854775807 - excluded.{column} \
         THEN 9223372036854775807 ELSE {column} + excluded.{column} END"
    )
}

/// The statement that adds a bucket's checks into `table`'s row for it.
fn upsert(table: &str) -> String {
    format!(
        "INSERT INTO {table} (monitor, start, count, total, shortest, longest, failures)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (monitor, start) DO UPDATE SET
             count = {count},
             total = {total},
             shortest = min(shortest, excluded.shortest),
             longest = max(longest, excluded.longest),
             failures = {failures}",
        count = saturating_sum("count"),
        total = saturating_sum("total"),
        failures = saturating_sum("failures"),
    )
}

fn put_bucket(
    statement: &mut rusqlite::CachedStatement<'_>,
    monitor: i64,
    start: i64,
    agg: &Agg,
) -> rusqlite::Result<()> {
    statement.execute(params![
        monitor,
        start,
        sql_u64(agg.count),
        sql_u64(agg.total),
        sql_u64(agg.shortest),
        sql_u64(agg.longest),
        sql_u64(agg.failures),
    ])?;
    Ok(())
}

/// Closes the runs that a process ended without a `stopped` change (it was killed):
/// for each monitor whose last change is not `stopped`, adds one at its last known
/// alive time, the later of that change and the end of its last written minute (never
/// after `now`). Returns how many it closed.
pub(crate) fn close_dangling_runs(
    conn: &mut Connection,
    now: SystemTime,
) -> rusqlite::Result<usize> {
    let now = to_unix_ms(now);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let dangling: Vec<(i64, i64, String, Option<i64>)> = {
        let mut select = tx.prepare(
            "SELECT m.id, c.time, c.to_status,
                    (SELECT max(start) FROM history_minute WHERE monitor = m.id)
             FROM history_monitor AS m
             JOIN history_change AS c ON c.id = (
                 SELECT id FROM history_change WHERE monitor = m.id
                 ORDER BY time DESC, id DESC LIMIT 1)
             WHERE c.to_status <> 'stopped'",
        )?;
        select
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?
    };
    {
        let mut put = tx.prepare(
            "INSERT INTO history_change (monitor, time, from_status, to_status, detail)
             VALUES (?1, ?2, ?3, 'stopped', ?4)",
        )?;
        for (monitor, time, to, last_minute) in &dangling {
            let minute_end = last_minute.map_or(*time, |start| start.saturating_add(MINUTE_MS));
            let alive = minute_end.min(now).max(*time);
            put.execute(params![monitor, alive, to, NOT_STOPPED_DETAIL])?;
        }
    }
    tx.commit()?;
    Ok(dangling.len())
}

/// A pruning pass over every monitor, one chunk (transaction) at a time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrunePass {
    /// Minutes that ended at or before this go.
    pub(crate) minute_cut: i64,
    /// Hours, days and changes before this go (but each monitor's last change before
    /// it, which says its status at the cut).
    pub(crate) cut: i64,
    /// The next monitor id to look at.
    pub(crate) next: i64,
}

impl PrunePass {
    /// A pass as of `now`, keeping history for `retention`.
    pub(crate) fn new(now: SystemTime, retention: Duration) -> PrunePass {
        let cut = |kept: Duration| now.checked_sub(kept).map_or(i64::MIN, to_unix_ms);
        PrunePass {
            minute_cut: cut(MINUTES_KEPT),
            cut: cut(retention),
            next: i64::MIN,
        }
    }
}

/// What one chunk did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Rows deleted.
    pub(crate) deleted: i64,
    /// The pass is complete.
    pub(crate) done: bool,
    /// Monitors left without any history, whose ids were deleted.
    pub(crate) forgotten: Vec<String>,
}

/// Runs one chunk of `pass` in one transaction: at most [`PRUNE_CHUNK_ROWS`] rows
/// over at most [`PRUNE_CHUNK_MONITORS`] monitors, in id order.
pub(crate) fn prune_chunk(
    conn: &mut Connection,
    pass: &mut PrunePass,
    max_rows: i64,
) -> rusqlite::Result<Chunk> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let monitors: Vec<(i64, String)> = tx
        .prepare_cached("SELECT id, name FROM history_monitor WHERE id >= ?1 ORDER BY id LIMIT ?2")?
        .query_map(params![pass.next, PRUNE_CHUNK_MONITORS], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut chunk = Chunk {
        done: i64::try_from(monitors.len()).is_ok_and(|n| n < PRUNE_CHUNK_MONITORS),
        ..Chunk::default()
    };
    let mut next = pass.next;
    for (id, name) in monitors {
        let before = chunk.deleted;
        let finished = prune_monitor(&tx, pass, id, max_rows, &mut chunk.deleted)?;
        if !finished {
            // The budget ran out inside this monitor: the next chunk goes on here.
            chunk.done = false;
            break;
        }
        // A monitor's id is written with its first change or minute, in one transaction:
        // only a monitor that just lost rows can have none left.
        let left: bool = chunk.deleted == before
            || tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM history_change WHERE monitor = ?1)
                     OR EXISTS (SELECT 1 FROM history_minute WHERE monitor = ?1)
                     OR EXISTS (SELECT 1 FROM history_hour WHERE monitor = ?1)
                     OR EXISTS (SELECT 1 FROM history_day WHERE monitor = ?1)",
                )?
                .query_row([id], |row| row.get(0))?;
        if !left {
            tx.prepare_cached("DELETE FROM history_monitor WHERE id = ?1")?
                .execute([id])?;
            chunk.forgotten.push(name);
        }
        next = id.saturating_add(1);
    }
    tx.commit()?;
    pass.next = next;
    Ok(chunk)
}

/// Deletes what `pass` prunes of monitor `id`, counting rows in `deleted` up to
/// `max_rows`; returns whether the monitor is done.
fn prune_monitor(
    tx: &Transaction<'_>,
    pass: &PrunePass,
    id: i64,
    max_rows: i64,
    deleted: &mut i64,
) -> rusqlite::Result<bool> {
    let buckets = [
        ("history_minute", pass.minute_cut.saturating_sub(MINUTE_MS)),
        ("history_hour", pass.cut.saturating_sub(HOUR_MS)),
        ("history_day", pass.cut.saturating_sub(DAY_MS)),
    ];
    for (table, last_start) in buckets {
        let budget = max_rows - *deleted;
        if budget <= 0 {
            return Ok(false);
        }
        // A bucket goes once it has ended by the cut: its start is at most the cut
        // minus its length.
        let gone = tx
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE monitor = ?1 AND start IN (
                     SELECT start FROM {table} WHERE monitor = ?1 AND start <= ?2
                     ORDER BY start LIMIT ?3)"
            ))?
            .execute(params![id, last_start, budget])?;
        let gone = i64::try_from(gone).unwrap_or(i64::MAX);
        *deleted += gone;
        if gone == budget {
            return Ok(false);
        }
    }
    let budget = max_rows - *deleted;
    if budget <= 0 {
        return Ok(false);
    }
    // Changes before the cut go, but the last one: it is the status at the cut.
    let last_before: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT id, to_status FROM history_change WHERE monitor = ?1 AND time < ?2
             ORDER BY time DESC, id DESC LIMIT 1",
        )?
        .query_row(params![id, pass.cut], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((keep, to)) = last_before else {
        return Ok(true);
    };
    let gone = tx
        .prepare_cached(
            "DELETE FROM history_change WHERE id IN (
                 SELECT id FROM history_change WHERE monitor = ?1 AND time < ?2 AND id <> ?3
                 ORDER BY time, id LIMIT ?4)",
        )?
        .execute(params![id, pass.cut, keep, budget])?;
    let gone = i64::try_from(gone).unwrap_or(i64::MAX);
    *deleted += gone;
    if gone == budget {
        return Ok(false);
    }
    // A `stopped` at the cut says no more than nothing: it counts on neither side.
    if to == Status::Stopped.as_str() && *deleted < max_rows {
        tx.prepare_cached("DELETE FROM history_change WHERE id = ?1")?
            .execute([keep])?;
        *deleted += 1;
    }
    Ok(true)
}
