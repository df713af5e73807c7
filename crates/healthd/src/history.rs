//! The history cache (SPEC §9.2): every monitor's [`HistorySummary`] (uptimes, the
//! 90-day bar, 24 hours of latency), read from the store once at start and then every
//! `refresh` on a blocking thread, so that the API, the badges and the status page read
//! it for the price of an atomic load.
//!
//! A summary covers days, so re-reading it once a minute ([`DEFAULT_REFRESH`]) is fresh
//! enough while nothing changes; the demo, whose monitors flap within seconds, asks for
//! less. A status change makes it read again soon (the monitors report through
//! [`Poking`]): a monitor's first result, or its going down, shows in its uptimes within
//! [`MIN_GAP`], not a minute later. Reads never follow each other closer than `MIN_GAP`
//! or twice the last read's time, so a thousand flapping monitors cost a bounded share of
//! one blocking thread.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use health_types::{
    Clock, ErrorChain, HistoryError, HistoryReader, HistorySink, HistorySummary, Observation,
    StatusChange,
};
use tokio::{
    sync::Notify,
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

/// How often the summaries are re-read by default.
pub(crate) const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// The shortest time between two reads that a status change asked for.
pub(crate) const MIN_GAP: Duration = Duration::from_secs(2);

/// Summaries by monitor name, as last read.
type Summaries = HashMap<String, Arc<HistorySummary>>;

/// The history reader and the summaries last read from it. Cheap to clone (all clones
/// share one cache).
#[derive(Clone, Debug)]
pub(crate) struct HistoryCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    reader: Arc<dyn HistoryReader>,
    clock: Arc<dyn Clock>,
    summaries: ArcSwap<Summaries>,
    /// Woken by a status change: read again soon.
    poked: Notify,
    /// Pokes so far: a poke that came before a read began is covered by that read.
    pokes: AtomicU64,
}

/// The monitors' [`HistorySink`]: hands everything to the store and, on a status change,
/// asks the cache to read the summaries again soon.
#[derive(Debug)]
pub(crate) struct Poking {
    /// Where history goes (the store).
    pub(crate) sink: Arc<dyn HistorySink>,
    /// The cache to wake.
    pub(crate) cache: HistoryCache,
}

impl HistorySink for Poking {
    fn observe(&self, monitor: &str, observation: &Observation) {
        self.sink.observe(monitor, observation);
    }

    fn change(&self, monitor: &str, change: &StatusChange) {
        self.sink.change(monitor, change);
        self.cache.poke();
    }
}

impl HistoryCache {
    /// An empty cache over `reader`, whose summaries are as of `clock`'s now.
    pub(crate) fn new(reader: Arc<dyn HistoryReader>, clock: Arc<dyn Clock>) -> Self {
        HistoryCache {
            inner: Arc::new(Inner {
                reader,
                clock,
                summaries: ArcSwap::default(),
                poked: Notify::new(),
                pokes: AtomicU64::new(0),
            }),
        }
    }

    /// The reader, for what the cache does not hold (a monitor's changes and latency
    /// over a span). Its calls block: make them on a blocking thread.
    pub(crate) fn reader(&self) -> &Arc<dyn HistoryReader> {
        &self.inner.reader
    }

    /// Asks for a read soon (see the module docs); never blocks.
    pub(crate) fn poke(&self) {
        self.inner.pokes.fetch_add(1, Ordering::SeqCst);
        self.inner.poked.notify_one();
    }

    /// `monitor`'s summary as last read (`None`: no history, or not read yet).
    pub(crate) fn get(&self, monitor: &str) -> Option<Arc<HistorySummary>> {
        self.inner.summaries.load().get(monitor).cloned()
    }

    /// Reads every summary now, on a blocking thread, and keeps them; on failure the
    /// summaries read before stay.
    pub(crate) async fn refresh(&self) -> Result<(), HistoryError> {
        let inner = Arc::clone(&self.inner);
        let read = tokio::task::spawn_blocking(move || {
            let now = inner.clock.now();
            inner.reader.summaries(now).map(|summaries| {
                let summaries: Summaries = summaries
                    .into_iter()
                    .map(|(name, summary)| (name, Arc::new(summary)))
                    .collect();
                inner.summaries.store(Arc::new(summaries));
            })
        })
        .await;
        read.unwrap_or_else(|err| Err(HistoryError(format!("reading summaries failed: {err}"))))
    }

    /// Refreshes the cache at once and then every `every` (a late refresh delays the
    /// next rather than bursting), and soon after a [`poke`](HistoryCache::poke), until
    /// `stop` is cancelled.
    pub(crate) fn spawn(&self, every: Duration, stop: CancellationToken) -> JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let pokes = || cache.inner.pokes.load(Ordering::SeqCst);
            let mut seen = pokes();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                    () = cache.inner.poked.notified() => {
                        if pokes() == seen {
                            // Its pokes came before the last read began.
                            continue;
                        }
                    }
                }
                seen = pokes();
                let began = Instant::now();
                if let Err(err) = cache.refresh().await {
                    tracing::warn!(error = %ErrorChain(&err), "cannot read the history summaries; the last ones read stay");
                }
                // Pokes during the read and the gap are taken by the next read, at the
                // gap's end.
                let gap = MIN_GAP.max(began.elapsed() * 2);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(gap) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::AtomicU32, time::SystemTime};

    use health_types::{HistorySpan, TokioClock};

    use super::*;

    /// A reader whose summary of `api` says how many times it was read.
    #[derive(Debug, Default)]
    struct Counting(AtomicU32);

    impl HistoryReader for Counting {
        fn history(
            &self,
            _: &str,
            _: SystemTime,
            _: SystemTime,
        ) -> Result<HistorySpan, HistoryError> {
            Ok(HistorySpan::default())
        }

        fn summaries(
            &self,
            _: SystemTime,
        ) -> Result<HashMap<String, HistorySummary>, HistoryError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 3 {
                return Err(HistoryError("disk on fire".into()));
            }
            let summary = HistorySummary {
                uptime_24h: Some(f64::from(n) / 10.0),
                ..HistorySummary::default()
            };
            Ok(HashMap::from([("api".to_owned(), summary)]))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn summaries_are_read_at_start_then_every_refresh_and_a_failure_keeps_the_last() {
        let reader = Arc::new(Counting::default());
        let clock =
            TokioClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let cache = HistoryCache::new(reader.clone(), Arc::new(clock));
        assert!(cache.get("api").is_none());
        let stop = CancellationToken::new();
        let task = cache.spawn(Duration::from_secs(5), stop.clone());
        let uptime = |cache: &HistoryCache| cache.get("api").and_then(|s| s.uptime_24h);
        // A blocking read holds the paused clock until it is done, so each sleep below
        // ends after the reads due within it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(uptime(&cache), Some(0.1), "read once at start");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(uptime(&cache), Some(0.2));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(uptime(&cache), Some(0.2), "a failed read keeps the last");
        assert!(cache.get("db").is_none());
        stop.cancel();
        task.await.unwrap();
        assert_eq!(reader.0.load(Ordering::SeqCst), 3);
    }
    #[tokio::test(start_paused = true)]
    async fn a_status_change_reads_again_soon_but_never_closer_than_the_gap() {
        let reader = Arc::new(Counting::default());
        let cache = HistoryCache::new(
            reader.clone(),
            Arc::new(TokioClock::starting_at(SystemTime::UNIX_EPOCH)),
        );
        let stop = CancellationToken::new();
        let task = cache.spawn(Duration::from_secs(60), stop.clone());
        let reads = || reader.0.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(reads(), 1, "read once at start");
        // A poke during the gap after that read waits for the gap's end.
        cache.poke();
        tokio::time::sleep(MIN_GAP - Duration::from_millis(100)).await;
        assert_eq!(reads(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(reads(), 2, "read at the gap's end, not a minute later");
        // Pokes in a burst cost one read.
        tokio::time::sleep(MIN_GAP * 2).await;
        for _ in 0..10 {
            cache.poke();
        }
        tokio::time::sleep(MIN_GAP * 2).await;
        assert_eq!(reads(), 3);
        stop.cancel();
        task.await.unwrap();
    }
}
