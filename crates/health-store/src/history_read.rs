//! The [`HistoryReader`] port on the store: a monitor's changes and latency over a span,
//! and every monitor's summary (uptime, 90 days, 24 hours of latency), each read from
//! one snapshot of the file merged with what memory holds that the file does not yet.
//!
//! # Uptime (SPEC §9.2)
//!
//! Uptime is computed exactly from the status changes: a monitor's status at any time
//! is the `to` of its last change at or before it, and between two changes it is the
//! earlier one's `to`. Time in `healthy` or `napping` counts as up, time in `unhealthy`
//! or `error` as down, and time in `starting`, `stopped` or `unknown` (or before the
//! first change) on neither side; uptime over a window is up / (up + down), `None` when
//! both are zero. The status at a window's start is the `to` of the last change before
//! it (pruning keeps that change, see `history_write`). The last change's status lasts
//! until now.
//!
//! Time when no process was watching counts on neither side either: a run of a monitor
//! ends with a `stopped` change when it is stopped, when the store is closed (it ends
//! every run then), and, for a process that was killed, when the store is next opened:
//! it then adds the missing `stopped` at the run's last known alive time, the later of
//! its last change and the end of its last written minute (a minute is written only
//! after it ended, so the process was alive then). So the time between a kill and the
//! next start is never counted.
//!
//! A day (UTC) is the same computation over that day (today: until now); its checks,
//! failures and mean latency come from the day rows plus memory.

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use health_types::{
    DaySummary, ErrorChain, HistoryError, HistoryReader, HistorySpan, HistorySummary,
    LatencyBucket, Status, StatusChange,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::{
    Store,
    history::{Agg, DAY_MS, HOUR_MS, MINUTE_MS, Memory, floor_to},
    history_write::MINUTES_KEPT,
    time::{from_unix_ms, to_unix_ms},
    writer::lock,
};

/// Days in a summary, as an `i64`.
const DAYS: i64 = HistorySummary::DAYS as i64;

impl Store {
    /// Copies what memory holds of `monitor` (of every monitor when `None`) and begins a
    /// read transaction on `conn` whose snapshot holds exactly what memory does not
    /// (see `Shared::gate`).
    fn history_snapshot<'c>(
        &self,
        conn: &'c mut Connection,
        monitor: Option<&str>,
    ) -> rusqlite::Result<(Transaction<'c>, Memory)> {
        let gate = lock(&self.shared().gate);
        let memory = lock(&self.shared().pending).history.snapshot(monitor);
        let tx = conn.transaction()?;
        // The first read fixes the transaction's snapshot (WAL): do it under the gate.
        tx.query_row(
            "SELECT count(*) FROM history_monitor WHERE id = 0",
            [],
            |_| Ok(()),
        )?;
        drop(gate);
        Ok((tx, memory))
    }

    fn history_error(&self, source: crate::error::Cause) -> HistoryError {
        HistoryError(ErrorChain(&self.read_error(source)).to_string())
    }
}

/// A stored status that must parse.
fn status(monitor: &str, text: &str) -> Result<Status, String> {
    Status::from_str(text).map_err(|error| format!("monitor {monitor:?}: {error}"))
}

/// A stored time that must be in range.
fn time(monitor: &str, ms: i64) -> Result<SystemTime, String> {
    from_unix_ms(ms).ok_or_else(|| format!("monitor {monitor:?}: time {ms} ms is out of range"))
}

/// Column `index` of `row` as a status, parsed in place (no `String` for each of the
/// many changes the summaries read).
fn status_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Status> {
    let text = row.get_ref(index)?.as_str()?;
    Status::from_str(text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, error.into())
    })
}

/// A latency row as stored: its start and its checks.
fn bucket_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<(i64, Agg)> {
    let u = |i: usize| -> rusqlite::Result<u64> {
        row.get::<_, i64>(first + i)
            .map(|v| u64::try_from(v).unwrap_or_default())
    };
    Ok((
        row.get(first)?,
        Agg {
            count: u(1)?,
            total: u(2)?,
            shortest: u(3)?,
            longest: u(4)?,
            failures: u(5)?,
        },
    ))
}

/// A change as read, before its statuses are parsed.
struct ChangeRow {
    time: i64,
    from: String,
    to: String,
    detail: String,
}

impl HistoryReader for Store {
    /// `monitor`'s changes with `since <= time <= until`, oldest first, and the latency
    /// buckets that overlap that span, oldest first: minutes when `since` is within the
    /// last 48 hours (by the store's clock), else hours. The open minute and hour, and
    /// what is not yet committed, come from memory. An unknown monitor, or `until`
    /// before `since`, has an empty history.
    fn history(
        &self,
        monitor: &str,
        since: SystemTime,
        until: SystemTime,
    ) -> Result<HistorySpan, HistoryError> {
        let now = to_unix_ms(self.clock().now());
        let (since, until) = (to_unix_ms(since), to_unix_ms(until));
        if until < since {
            return Ok(HistorySpan::default());
        }
        let minutes_from = now.saturating_sub(millis(MINUTES_KEPT));
        let (table, step) = if since >= minutes_from {
            ("history_minute", MINUTE_MS)
        } else {
            ("history_hour", HOUR_MS)
        };
        let mut conn = lock(self.history_reader());
        let (rows, stored, memory) = (|| {
            let (tx, memory) = self.history_snapshot(&mut conn, Some(monitor))?;
            let id: Option<i64> = tx
                .prepare_cached("SELECT id FROM history_monitor WHERE name = ?1")?
                .query_row([monitor], |row| row.get(0))
                .optional()?;
            let Some(id) = id else {
                return Ok((Vec::new(), Vec::new(), memory));
            };
            let rows = tx
                .prepare_cached(
                    "SELECT time, from_status, to_status, detail FROM history_change
                     WHERE monitor = ?1 AND time >= ?2 AND time <= ?3 ORDER BY time, id",
                )?
                .query_map(params![id, since, until], |row| {
                    Ok(ChangeRow {
                        time: row.get(0)?,
                        from: row.get(1)?,
                        to: row.get(2)?,
                        detail: row.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let stored = tx
                .prepare_cached(&format!(
                    "SELECT start, count, total, shortest, longest, failures FROM {table}
                     WHERE monitor = ?1 AND start > ?2 AND start <= ?3 ORDER BY start"
                ))?
                .query_map(params![id, since.saturating_sub(step), until], |row| {
                    bucket_row(row, 0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rows, stored, memory))
        })()
        .map_err(|source: rusqlite::Error| self.history_error(source.into()))?;
        drop(conn);

        let mut changes = rows
            .into_iter()
            .map(|row| {
                Ok(StatusChange {
                    time: time(monitor, row.time)?,
                    from: status(monitor, &row.from)?,
                    to: status(monitor, &row.to)?,
                    detail: row.detail,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|reason| self.history_error(reason.into()))?;
        let in_span = |t: SystemTime| (since..=until).contains(&to_unix_ms(t));
        changes.extend(
            memory
                .changes
                .into_iter()
                .map(|(_, change)| change)
                .filter(|change| in_span(change.time)),
        );
        // Stable: a committed change comes before a queued one of the same millisecond.
        changes.sort_by_key(|change| change.time);

        let mut buckets: BTreeMap<i64, Agg> = stored.into_iter().collect();
        for minute in &memory.minutes {
            let start = floor_to(minute.start, step);
            if start > since.saturating_sub(step) && start <= until {
                buckets.entry(start).or_default().add(&minute.agg);
            }
        }
        let latency = buckets
            .into_iter()
            .filter_map(|(start, agg)| agg.bucket(start, step))
            .collect();
        Ok(HistorySpan { changes, latency })
    }

    /// Every monitor's summary as of `now`: uptime over the last 24 hours, 7 and 30
    /// days; the last 90 UTC days (today last, until `now`); and the hours of the last
    /// 24 (the current one last) that had checks. Reads one snapshot: the monitors,
    /// their changes over the 90 days (and the status before), their day rows and the
    /// last day of hour rows, merged with memory.
    fn summaries(&self, now: SystemTime) -> Result<HashMap<String, HistorySummary>, HistoryError> {
        let now = to_unix_ms(now);
        let today = floor_to(now, DAY_MS);
        let first_day = today - (DAYS - 1) * DAY_MS;
        let first_hour = floor_to(now, HOUR_MS) - 23 * HOUR_MS;
        let first_minute = floor_to(now, MINUTE_MS) - 59 * MINUTE_MS;
        let mut conn = lock(self.history_reader());
        let (read, memory) = (|| {
            let (tx, memory) = self.history_snapshot(&mut conn, None)?;
            let read = read_summaries(&tx, first_day, first_hour, first_minute, now)?;
            Ok((read, memory))
        })()
        .map_err(|source: rusqlite::Error| self.history_error(source.into()))?;
        drop(conn);

        let mut monitors: Vec<(Arc<str>, Monitor)> = Vec::with_capacity(read.monitors.len());
        let mut by_id: HashMap<i64, usize> = HashMap::with_capacity(read.monitors.len());
        for (id, name, before) in read.monitors {
            by_id.insert(id, monitors.len());
            let monitor = Monitor {
                before,
                ..Monitor::default()
            };
            monitors.push((name.into(), monitor));
        }
        // Rows come grouped by monitor: remember the last one found.
        let mut last = (i64::MIN, 0);
        let mut find = |id: i64| -> Option<usize> {
            if last.0 != id {
                last = (id, *by_id.get(&id)?);
            }
            Some(last.1)
        };
        for (id, time, order, to) in read.changes {
            if let Some(i) = find(id) {
                monitors[i].1.changes.push((time, order, to));
            }
        }
        for (id, start, agg) in read.days {
            if let Some(i) = find(id) {
                monitors[i].1.days.entry(start).or_default().add(&agg);
            }
        }
        for (id, start, agg) in read.hours {
            if let Some(i) = find(id) {
                monitors[i].1.hours.entry(start).or_default().add(&agg);
            }
        }
        for (id, start, agg) in read.minutes {
            if let Some(i) = find(id) {
                monitors[i].1.minutes.entry(start).or_default().add(&agg);
            }
        }
        // What the file does not hold yet.
        let mut by_name: HashMap<Arc<str>, usize> = monitors
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let mut entry = |name: Arc<str>| -> usize {
            *by_name.entry(name.clone()).or_insert_with(|| {
                monitors.push((name, Monitor::default()));
                monitors.len() - 1
            })
        };
        let mut memory_changes = Vec::new();
        for (name, change) in memory.changes {
            // After every committed change of the same millisecond.
            memory_changes.push((entry(name), (to_unix_ms(change.time), i64::MAX, change.to)));
        }
        let mut memory_minutes = Vec::new();
        for minute in memory.minutes {
            memory_minutes.push((entry(minute.monitor.clone()), minute));
        }
        for (i, change) in memory_changes {
            monitors[i].1.changes.push(change);
        }
        for (i, minute) in memory_minutes {
            let monitor = &mut monitors[i].1;
            let day = floor_to(minute.start, DAY_MS);
            if (first_day..=now).contains(&day) {
                monitor.days.entry(day).or_default().add(&minute.agg);
            }
            let hour = floor_to(minute.start, HOUR_MS);
            if (first_hour..=now).contains(&hour) {
                monitor.hours.entry(hour).or_default().add(&minute.agg);
            }
            if (first_minute..=now).contains(&minute.start) {
                monitor
                    .minutes
                    .entry(minute.start)
                    .or_default()
                    .add(&minute.agg);
            }
        }

        Ok(monitors
            .into_iter()
            .map(|(name, monitor)| (name.to_string(), monitor.summary(first_day, now)))
            .collect())
    }
}

/// `duration` in milliseconds.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// What the summaries read from the file.
struct SummaryRows {
    /// Each monitor's id, name and status before the first day.
    monitors: Vec<(i64, String, Option<Status>)>,
    /// Changes from the first day on: monitor id, time, change id, `to`; in no order
    /// (sorting them here is cheaper than having the index do it).
    changes: Vec<(i64, i64, i64, Status)>,
    /// Day rows from the first day on.
    days: Vec<(i64, i64, Agg)>,
    /// Hour rows from the first hour on.
    hours: Vec<(i64, i64, Agg)>,
    /// Minute rows from the first minute on.
    minutes: Vec<(i64, i64, Agg)>,
}

/// Reads what the summaries need from the file in `tx`.
fn read_summaries(
    tx: &Transaction<'_>,
    first_day: i64,
    first_hour: i64,
    first_minute: i64,
    now: i64,
) -> rusqlite::Result<SummaryRows> {
    let monitors = tx
        .prepare_cached(
            "SELECT m.id, m.name,
                    (SELECT to_status FROM history_change
                     WHERE monitor = m.id AND time < ?1
                     ORDER BY time DESC, id DESC LIMIT 1)
             FROM history_monitor AS m",
        )?
        .query_map([first_day], |row| {
            let before = match row.get_ref(2)? {
                rusqlite::types::ValueRef::Null => None,
                _ => Some(status_column(row, 2)?),
            };
            Ok((row.get(0)?, row.get(1)?, before))
        })?
        .collect::<rusqlite::Result<_>>()?;
    // CROSS JOIN keeps the monitors the outer loop: each one seeks into the other
    // table's (monitor, ...) key instead of scanning it.
    let changes = tx
        .prepare_cached(
            "SELECT c.monitor, c.time, c.id, c.to_status
             FROM history_monitor AS m CROSS JOIN history_change AS c
             ON c.monitor = m.id AND c.time >= ?1 AND c.time <= ?2",
        )?
        .query_map(params![first_day, now], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                status_column(row, 3)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let buckets = |table: &str, from: i64| -> rusqlite::Result<Vec<(i64, i64, Agg)>> {
        tx.prepare_cached(&format!(
            "SELECT b.monitor, b.start, b.count, b.total, b.shortest, b.longest, b.failures
             FROM history_monitor AS m CROSS JOIN {table} AS b
             ON b.monitor = m.id AND b.start >= ?1 AND b.start <= ?2"
        ))?
        .query_map([from, now], |row| {
            let (start, agg) = bucket_row(row, 1)?;
            Ok((row.get(0)?, start, agg))
        })?
        .collect()
    };
    Ok(SummaryRows {
        monitors,
        changes,
        days: buckets("history_day", first_day)?,
        hours: buckets("history_hour", first_hour)?,
        minutes: buckets("history_minute", first_minute)?,
    })
}

/// One monitor's history as the summaries gather it.
#[derive(Debug, Default)]
struct Monitor {
    /// The status before the first day (`None`: no change before it).
    before: Option<Status>,
    /// Changes from the first day on: time, order within a millisecond (the change id;
    /// `i64::MAX` for memory's, which came last), `to`.
    changes: Vec<(i64, i64, Status)>,
    /// Checks per day (start, unix ms).
    days: BTreeMap<i64, Agg>,
    /// Checks per hour (start, unix ms).
    hours: BTreeMap<i64, Agg>,
    /// Checks per minute of the last hour (start, unix ms).
    minutes: BTreeMap<i64, Agg>,
}

/// Time up and down, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UpDown {
    pub(crate) up: i64,
    pub(crate) down: i64,
}

impl UpDown {
    /// Adds `span` ms in `status`.
    fn add(&mut self, status: Status, span: i64) {
        match status {
            Status::Healthy | Status::Napping => self.up += span,
            Status::Unhealthy | Status::Error => self.down += span,
            Status::Unknown | Status::Starting | Status::Stopped => {}
        }
    }

    /// Up over up and down; `None` when nothing was observed.
    pub(crate) fn uptime(self) -> Option<f64> {
        let observed = self.up + self.down;
        // Milliseconds over 90 days stay far below 2^53: the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        (observed > 0).then(|| self.up as f64 / observed as f64)
    }
}

/// Calls `visit(start, end, status)` for each stretch of one status between `from` and
/// `now`, given the status before `from` and the changes after it in order (a change
/// after `now` ends the walk).
pub(crate) fn walk(
    before: Option<Status>,
    changes: &[(i64, Status)],
    from: i64,
    now: i64,
    mut visit: impl FnMut(i64, i64, Status),
) {
    let mut status = before;
    let mut at = from;
    for &(time, to) in changes {
        if time > now {
            break;
        }
        let time = time.max(from);
        if let Some(status) = status.filter(|_| time > at) {
            visit(at, time, status);
        }
        at = at.max(time);
        status = Some(to);
    }
    if let Some(status) = status.filter(|_| now > at) {
        visit(at, now, status);
    }
}

impl Monitor {
    fn summary(mut self, first_day: i64, now: i64) -> HistorySummary {
        // Stable: memory's changes keep their order among themselves.
        self.changes.sort_by_key(|&(time, order, _)| (time, order));
        let changes: Vec<(i64, Status)> = self
            .changes
            .iter()
            .map(|&(time, _, to)| (time, to))
            .collect();
        let windows = [DAY_MS, 7 * DAY_MS, 30 * DAY_MS].map(|w| now - w);
        let mut uptime = [UpDown::default(); 3];
        let mut days = vec![UpDown::default(); DAYS as usize];
        walk(
            self.before,
            &changes,
            first_day,
            now,
            |start, end, status| {
                for (window, sum) in windows.iter().zip(&mut uptime) {
                    let span = end - start.max(*window);
                    if span > 0 {
                        sum.add(status, span);
                    }
                }
                let mut day = floor_to(start, DAY_MS);
                while day < end {
                    let span = end.min(day + DAY_MS) - start.max(day);
                    let index = usize::try_from((day - first_day) / DAY_MS).unwrap_or(usize::MAX);
                    if let Some(sum) = days.get_mut(index) {
                        sum.add(status, span);
                    }
                    day += DAY_MS;
                }
            },
        );
        let days = days
            .into_iter()
            .zip(0..)
            .map(|(up_down, i)| {
                let start = first_day + i * DAY_MS;
                let checks = self.days.get(&start).copied().unwrap_or_default();
                DaySummary {
                    day: from_unix_ms(start).unwrap_or(std::time::UNIX_EPOCH),
                    uptime: up_down.uptime(),
                    down: Duration::from_millis(up_down.down.unsigned_abs()),
                    checks: checks.count,
                    failures: checks.failures,
                    average: checks
                        .bucket(start, DAY_MS)
                        .and_then(|bucket| bucket.average()),
                }
            })
            .collect();
        let latency_24h: Vec<LatencyBucket> = self
            .hours
            .into_iter()
            .filter_map(|(start, agg)| agg.bucket(start, HOUR_MS))
            .collect();
        let latency_1h: Vec<LatencyBucket> = if latency_24h.len() < HistorySummary::FEW_HOURS {
            self.minutes
                .into_iter()
                .filter_map(|(start, agg)| agg.bucket(start, MINUTE_MS))
                .collect()
        } else {
            Vec::new()
        };
        HistorySummary {
            uptime_24h: uptime[0].uptime(),
            uptime_7d: uptime[1].uptime(),
            uptime_30d: uptime[2].uptime(),
            days,
            latency_24h,
            latency_1h,
        }
    }
}
