//! `/metrics`: Prometheus text exposition, read from the monitors' snapshots at scrape
//! time (nothing is counted on the check path).
//!
//! The text goes out as it is written, in chunks of [`CHUNK`] bytes with at most
//! [`CHUNKS_AHEAD`] waiting for the client: a scrape of 10 000 monitors is about 8 MB of
//! text, and holding it whole, once per scrape, is what made a long-running healthd's
//! resident memory creep up by steps (the allocator keeps such a block for the next one).

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};

use health_monitor::{HealthMonitor, Monitor};
use health_types::Status;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

/// Delivery counters of the notification dispatcher, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NotifyCounters {
    /// Messages delivered.
    pub(crate) sent: u64,
    /// Messages given up on.
    pub(crate) failed: u64,
    /// Delivery attempts retried.
    pub(crate) retried: u64,
    /// Messages dropped because the queue was full.
    pub(crate) dropped: u64,
}

/// One notifier's outbox: undelivered messages and the age of the oldest.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Backlog {
    /// Undelivered messages.
    pub(crate) pending: u64,
    /// Seconds since the oldest undelivered message was committed; 0 when none.
    pub(crate) oldest_seconds: f64,
}

/// Where `/metrics` reads notification counters from.
pub(crate) trait NotifyStats: Send + Sync + fmt::Debug {
    /// Counters per provider name.
    fn counters(&self) -> Vec<(String, NotifyCounters)>;

    /// The outbox backlog of every configured notifier, by name (SPEC §9.1: one series
    /// per notifier, 0 when empty); empty when the outbox cannot be read.
    fn backlog(&self) -> Vec<(String, Backlog)>;
}

#[derive(Debug)]
struct MonitorCollector {
    monitors: Arc<[Monitor]>,
    notify: Option<Arc<dyn NotifyStats>>,
}

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Vec<(&'static str, String)>, M)>,
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for MonitorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let snapshots: Vec<_> = self
            .monitors
            .iter()
            .map(|m| (m.name().to_owned(), m.snapshot()))
            .collect();
        let label = |name: &str| vec![("monitor", name.to_owned())];
        family(
            &mut encoder,
            "healthd_monitor_up",
            "1 if the monitor's status is good (starting, healthy, napping), else 0",
            MetricType::Gauge,
            snapshots
                .iter()
                .map(|(n, s)| (label(n), ConstGauge::new(i64::from(s.status.is_good())))),
        )?;
        family(
            &mut encoder,
            "healthd_monitor_status",
            "1 for the monitor's current status, 0 for the others",
            MetricType::Gauge,
            snapshots.iter().flat_map(|(n, s)| {
                Status::ALL.into_iter().map(move |status| {
                    (
                        vec![("monitor", n.clone()), ("status", status.to_string())],
                        ConstGauge::new(i64::from(s.status == status)),
                    )
                })
            }),
        )?;
        family(
            &mut encoder,
            "healthd_monitor_latency_seconds",
            "Latency of the last check",
            MetricType::Gauge,
            snapshots
                .iter()
                .map(|(n, s)| (label(n), ConstGauge::new(s.latency.as_secs_f64()))),
        )?;
        family(
            &mut encoder,
            "healthd_monitor_consecutive_failures",
            "Consecutive unhealthy-or-error results",
            MetricType::Gauge,
            snapshots
                .iter()
                .map(|(n, s)| (label(n), ConstGauge::new(i64::from(s.failures)))),
        )?;
        family(
            &mut encoder,
            "healthd_monitor_checks",
            "Checks completed since the monitor (re)started, by result",
            MetricType::Counter,
            snapshots.iter().flat_map(|(n, s)| {
                [
                    ("healthy", s.results.healthy),
                    ("unhealthy", s.results.unhealthy),
                    ("error", s.results.error),
                ]
                .into_iter()
                .map(move |(result, count)| {
                    (
                        vec![("monitor", n.clone()), ("result", result.to_owned())],
                        ConstCounter::new(count),
                    )
                })
            }),
        )?;
        family(
            &mut encoder,
            "healthd_local_failures",
            "Checks that failed on our side (kind local: out of file descriptors, buffers or \
             memory; no local address) since the monitor (re)started; they count against no \
             target (SPEC 9.3)",
            MetricType::Counter,
            snapshots
                .iter()
                .map(|(n, s)| (label(n), ConstCounter::new(s.results.local))),
        )?;
        family(
            &mut encoder,
            "healthd_monitor_transitions",
            "Status changes since the monitor (re)started",
            MetricType::Counter,
            snapshots
                .iter()
                .map(|(n, s)| (label(n), ConstCounter::new(s.transitions))),
        )?;
        if let Some(notify) = &self.notify {
            let counters = notify.counters();
            family(
                &mut encoder,
                "healthd_notifications",
                "Notification deliveries by provider and outcome",
                MetricType::Counter,
                counters.iter().flat_map(|(provider, c)| {
                    [
                        ("sent", c.sent),
                        ("failed", c.failed),
                        ("retried", c.retried),
                        ("dropped", c.dropped),
                    ]
                    .into_iter()
                    .map(move |(outcome, count)| {
                        (
                            vec![
                                ("provider", provider.clone()),
                                ("outcome", outcome.to_owned()),
                            ],
                            ConstCounter::new(count),
                        )
                    })
                }),
            )?;
            let backlog = notify.backlog();
            family(
                &mut encoder,
                "healthd_outbox_pending",
                "Notifications committed to the outbox and not yet delivered or given up",
                MetricType::Gauge,
                backlog.iter().map(|(notifier, b)| {
                    let pending = i64::try_from(b.pending).unwrap_or(i64::MAX);
                    (
                        vec![("notifier", notifier.clone())],
                        ConstGauge::new(pending),
                    )
                }),
            )?;
            family(
                &mut encoder,
                "healthd_outbox_oldest_seconds",
                "Age of the oldest undelivered notification in the outbox; 0 when empty",
                MetricType::Gauge,
                backlog.iter().map(|(notifier, b)| {
                    (
                        vec![("notifier", notifier.clone())],
                        ConstGauge::new(b.oldest_seconds),
                    )
                }),
            )?;
        }
        Ok(())
    }
}

/// The size of one chunk of a streamed scrape.
const CHUNK: usize = 32 * 1024;
/// How many chunks of a scrape may wait for a slow client before writing pauses.
const CHUNKS_AHEAD: usize = 4;

/// Renders the metrics of `monitors` (and of the dispatcher, when given).
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    registry: Arc<Registry>,
}

impl Metrics {
    /// Metrics over `monitors` and, optionally, notification counters.
    pub(crate) fn new(monitors: Arc<[Monitor]>, notify: Option<Arc<dyn NotifyStats>>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(MonitorCollector { monitors, notify }));
        Metrics {
            registry: Arc::new(registry),
        }
    }

    /// The Prometheus text exposition as a body that is written while it is sent (see the
    /// module docs). The text is written on a blocking thread; a client that goes away
    /// ends the writing at its next chunk.
    pub(crate) fn stream(&self) -> Channel<Bytes> {
        let (sender, body) = Channel::new(CHUNKS_AHEAD);
        let registry = Arc::clone(&self.registry);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut out = Chunks {
                text: String::with_capacity(CHUNK),
                sender,
                runtime,
            };
            if encode(&mut out, &registry).is_ok() {
                // A failed last send is a client that went away: nothing to tell.
                let _ = out.send();
            }
        });
        body
    }
}

/// A [`fmt::Write`] that sends what it is given in chunks of about [`CHUNK`] bytes.
struct Chunks {
    text: String,
    sender: Sender<Bytes>,
    runtime: tokio::runtime::Handle,
}

impl Chunks {
    /// Sends the text written so far, waiting while [`CHUNKS_AHEAD`] chunks are unread.
    fn send(&mut self) -> fmt::Result {
        if self.text.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.text,
            String::with_capacity(CHUNK),
        ));
        self.runtime
            .block_on(self.sender.send_data(chunk))
            .map_err(|_| fmt::Error)
    }
}

impl fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.text.push_str(s);
        if self.text.len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }
}
