//! The [`Outbox`] port on the store: a notifier's pending entries in id order, marking
//! them delivered or given up (each committed before it returns), and the backlog.

use std::time::SystemTime;

use health_types::{ErrorChain, Event, Outbox, OutboxEntry, OutboxError};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::{
    Store, StoreError,
    schema::sql_u64,
    time::{from_unix_ms, to_unix_ms},
    writer::lock,
};

impl Store {
    /// Marks entry `id` finished as `state` (with `reason`), committed before it
    /// returns. An entry already finished, or unknown, is left as it is.
    fn finish(&self, id: u64, state: &str, reason: Option<&str>) -> Result<(), StoreError> {
        let now = to_unix_ms(self.clock().now());
        let mut conn = lock(self.reader());
        (|| {
            // IMMEDIATE takes the write lock first (waiting up to the busy timeout
            // while the writer commits), so the update never fails on a stale snapshot.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "UPDATE outbox SET state = ?2, reason = ?3, done = ?4
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![sql_u64(id), state, reason, now])?;
            tx.commit()
        })()
        .map_err(|source| self.write_error(source.into()))
    }
}

/// A pending row as read, before its event is parsed.
struct PendingRow {
    id: i64,
    notifier: String,
    event: String,
    created: i64,
}

/// Reads up to `limit` of `notifier`'s pending rows above `after`.
fn pending_rows(
    conn: &Connection,
    notifier: &str,
    after: i64,
    limit: i64,
) -> rusqlite::Result<Vec<PendingRow>> {
    let mut select = conn.prepare_cached(
        "SELECT id, notifier, event, created FROM outbox
         WHERE state = 'pending' AND notifier = ?1 AND id > ?2
         ORDER BY id LIMIT ?3",
    )?;
    let rows = select.query_map(params![notifier, after, limit], |row| {
        Ok(PendingRow {
            id: row.get(0)?,
            notifier: row.get(1)?,
            event: row.get(2)?,
            created: row.get(3)?,
        })
    })?;
    rows.collect()
}

fn outbox_error(error: StoreError) -> OutboxError {
    OutboxError(ErrorChain(&error).to_string())
}

impl Outbox for Store {
    /// `notifier`'s pending entries above `after` in id order, at most `limit`.
    ///
    /// An entry this build cannot read (its event or time does not parse) is marked
    /// given up, with the reason, and skipped: it could never be sent, and it must not
    /// hold up the entries behind it.
    fn pending(
        &self,
        notifier: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, OutboxError> {
        let mut entries = Vec::new();
        let mut after = sql_u64(after);
        loop {
            let want = i64::try_from(limit - entries.len()).unwrap_or(i64::MAX);
            if want == 0 {
                return Ok(entries);
            }
            let rows = pending_rows(&lock(self.reader()), notifier, after, want)
                .map_err(|source| outbox_error(self.read_error(source.into())))?;
            let complete = i64::try_from(rows.len()).is_ok_and(|n| n < want);
            let mut unreadable = Vec::new();
            for row in rows {
                after = row.id;
                let id = u64::try_from(row.id).unwrap_or_default();
                let event = serde_json::from_str::<Event>(&row.event)
                    .map_err(|error| format!("the event cannot be read: {error}"));
                let created = from_unix_ms(row.created)
                    .ok_or_else(|| format!("created {} ms is out of range", row.created));
                match (event, created) {
                    (Ok(event), Ok(created)) => entries.push(OutboxEntry {
                        id,
                        notifier: row.notifier,
                        event,
                        created,
                    }),
                    (Err(reason), _) | (_, Err(reason)) => unreadable.push((id, reason)),
                }
            }
            for (id, reason) in &unreadable {
                tracing::error!(
                    path = %self.path().display(),
                    notifier,
                    id,
                    reason,
                    "an outbox entry cannot be read; giving it up"
                );
                self.finish(*id, "given_up", Some(reason))
                    .map_err(outbox_error)?;
            }
            if complete || unreadable.is_empty() {
                return Ok(entries);
            }
        }
    }

    /// Marks entry `id` delivered; committed (and synced) before it returns. Marking
    /// an entry that is already finished, or unknown, changes nothing.
    fn delivered(&self, id: u64) -> Result<(), OutboxError> {
        self.finish(id, "delivered", None).map_err(outbox_error)
    }

    /// Marks entry `id` given up for `reason`; committed (and synced) before it
    /// returns. Marking an entry that is already finished, or unknown, changes nothing.
    fn gave_up(&self, id: u64, reason: &str) -> Result<(), OutboxError> {
        self.finish(id, "given_up", Some(reason))
            .map_err(outbox_error)
    }

    /// Whether `notifier` gave up a `down` of `service` whose outage began at
    /// `outage_start` (compared at millisecond precision, as the store keeps it).
    fn down_given_up(
        &self,
        notifier: &str,
        service: &str,
        outage_start: SystemTime,
    ) -> Result<bool, OutboxError> {
        lock(self.reader())
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox
                 WHERE state = 'given_up' AND kind = 'down'
                   AND notifier = ?1 AND service = ?2 AND outage_start = ?3)",
            )
            .and_then(|mut select| {
                select.query_row(
                    params![notifier, service, to_unix_ms(outage_start)],
                    |row| row.get(0),
                )
            })
            .map_err(|source| outbox_error(self.read_error(source.into())))
    }

    /// How many entries `notifier` has pending, and when the oldest was committed.
    fn backlog(&self, notifier: &str) -> Result<(u64, Option<SystemTime>), OutboxError> {
        // An aggregate without GROUP BY always yields one row.
        let (count, oldest): (i64, Option<i64>) = lock(self.reader())
            .prepare_cached(
                "SELECT count(*), min(created) FROM outbox
                 WHERE state = 'pending' AND notifier = ?1",
            )
            .and_then(|mut select| {
                select.query_row([notifier], |row| Ok((row.get(0)?, row.get(1)?)))
            })
            .map_err(|source| outbox_error(self.read_error(source.into())))?;
        let count = u64::try_from(count).unwrap_or_default();
        Ok((count, oldest.and_then(from_unix_ms)))
    }
}
