//! [`StoreOptions`]: how often the store commits, how long it keeps finished
//! notifications and history, and where its wall-clock stamps come from.

use std::{sync::Arc, time::Duration};

use health_types::{Clock, SystemClock};

/// How a [`Store`](crate::Store) commits and prunes.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long the writer gathers monitor states before it commits them in one
    /// transaction. A batch that carries events is committed at once instead, so that
    /// notifications wait for no tick.
    pub tick: Duration,
    /// How long delivered and given-up notifications are kept before they are pruned.
    /// A given-up `down` is kept while its outage goes on, so that the `up` can still
    /// say the `down` was not delivered.
    pub retention: Duration,
    /// How long history is kept (`[storage] retention`, SPEC §9.2): status changes and
    /// hourly and daily latency. Per-minute latency is kept 48 hours whatever this says.
    pub history_retention: Duration,
    /// How long a statement waits for a lock that another connection holds (SQLite's
    /// `busy_timeout`) before it fails with "database is locked".
    pub busy_timeout: Duration,
    /// The wall clock for the times the store stamps (an outbox entry's `created`, when
    /// an entry was finished, pruning, which minutes have ended, "now" for history).
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    /// `tick` 100 ms, `retention` 7 days, `history_retention` 90 days, `busy_timeout`
    /// 5 s, the system clock.
    fn default() -> Self {
        StoreOptions {
            tick: Duration::from_millis(100),
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            history_retention: Duration::from_secs(90 * 24 * 60 * 60),
            busy_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
        }
    }
}
