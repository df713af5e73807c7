//! `/metrics`: the Prometheus text exposition, read from the monitors' snapshots at
//! scrape time (nothing is counted on the check path), and the [`Encoder`] that
//! `/probe` writes its answer with too.
//!
//! Two formats, by the request's `Accept` header ([`Format::negotiate`], by `q`-values):
//!
//! | asked for | served as | counters |
//! |---|---|---|
//! | `application/openmetrics-text` with the highest `q` (ties included) | OpenMetrics 1.0.0, ending in `# EOF` | family `x`, samples `x_total` |
//! | anything else | Prometheus text 0.0.4 | `HELP`/`TYPE` and samples all named `x_total` |
//!
//! The encoder is ours rather than prometheus-client's: prometheus-client writes only
//! OpenMetrics, and the 0.0.4 form (what `promtool check metrics` and most scrapers
//! other than Prometheus read) differs in how counters are named. Both formats are a few
//! lines apart, so one writer with a [`Format`] serves them; every family gets `HELP`
//! and `TYPE`, label values and help text are escaped for the format.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `healthd_monitor_up` | gauge | `monitor` |
//! | `healthd_monitor_status` | gauge | `monitor`, `status` |
//! | `healthd_monitor_latency_seconds` | gauge (last check) | `monitor` |
//! | `healthd_monitor_check_duration_seconds` | histogram (this run's checks) | `monitor`, `le` |
//! | `healthd_monitor_phase_seconds` | gauge (last check's phases) | `monitor`, `phase` |
//! | `healthd_cert_expiry_seconds` | gauge (unix s; monitors that saw a certificate) | `monitor` |
//! | `healthd_monitor_consecutive_failures` | gauge | `monitor` |
//! | `healthd_monitor_checks_total` | counter | `monitor`, `result` |
//! | `healthd_local_failures_total` | counter | `monitor` |
//! | `healthd_monitor_transitions_total` | counter | `monitor` |
//! | `healthd_notifications_total` | counter | `provider`, `outcome` |
//! | `healthd_outbox_pending`, `healthd_outbox_oldest_seconds` | gauge | `notifier` |
//!
//! The latency histogram is not called `..._latency_histogram_seconds`: promtool's lint
//! refuses a type name inside a metric name ("metric name should not include type
//! 'histogram'"), so it is named for what it measures, like `http_request_duration_seconds`.
//!
//! The text goes out as it is written, in chunks of [`CHUNK`] bytes with at most
//! [`CHUNKS_AHEAD`] waiting for the client: a monitor with every series it can have
//! (the histogram's 14, four phases, a certificate) and a 13-character name adds about
//! 2.5 KB to a scrape in either format (measured by the test
//! `a_monitor_adds_about_two_and_a_half_kilobytes_to_a_scrape`), so a scrape of 10 000
//! monitors is about 25 MB of text; holding it whole, once per scrape, is what made a
//! long-running healthd's resident memory creep up by steps (the allocator keeps such a
//! block for the next one). Writing it allocates nothing per sample: label values are
//! escaped as they are written and the histogram's `le` labels are the constants [`LE`].
//!
//! A sample's name is its family's, with `_total` added by the [`Encoder`] when the
//! family is a counter; the callers never spell the suffix.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};

use health_monitor::{HealthMonitor, LatencyHistogram, Monitor, Snapshot};
use health_types::Status;

/// The exposition formats `/metrics` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of the Prometheus text format 0.0.4.
    pub(crate) const PROMETHEUS: &'static str = "text/plain; version=0.0.4; charset=utf-8";
    /// The `Content-Type` of OpenMetrics 1.0.0.
    pub(crate) const OPENMETRICS: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// The format for the `Accept` header lines `accept` (all of them, in order, as if
    /// joined by `,`): OpenMetrics when `application/openmetrics-text` has a `q` above 0
    /// and at least that of the Prometheus text format, else the Prometheus text format
    /// (also when neither is acceptable, or without `Accept`).
    ///
    /// OpenMetrics' `q` is the highest of the `application/openmetrics-text` ranges
    /// (Prometheus lists one per version). The text format's is that of the most
    /// specific range matching it: `text/plain`, else `text/*`, else `*/*`. A range
    /// without `q` has 1; `q=0` means not acceptable; a `q` that is no number from 0 to
    /// 1 leaves its range out. Media types and parameter names are compared without
    /// case. A tie goes to OpenMetrics, which Prometheus lists first.
    pub(crate) fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Format {
        let mut openmetrics: Option<f64> = None;
        // (specificity, q) of the most specific range matching text/plain.
        let mut text: Option<(u8, f64)> = None;
        for range in accept.into_iter().flat_map(|line| line.split(',')) {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let mut q = Some(1.0);
            for param in parts {
                if let Some((name, value)) = param.split_once('=')
                    && name.trim().eq_ignore_ascii_case("q")
                {
                    q = value
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q));
                }
            }
            let Some(q) = q else { continue };
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = Some(openmetrics.map_or(q, |best| best.max(q)));
                continue;
            }
            let specificity = if media.eq_ignore_ascii_case("text/plain") {
                3
            } else if media.eq_ignore_ascii_case("text/*") {
                2
            } else if media == "*/*" {
                1
            } else {
                continue;
            };
            text = match text {
                Some((s, best)) if s > specificity => Some((s, best)),
                Some((s, best)) if s == specificity => Some((s, best.max(q))),
                _ => Some((specificity, q)),
            };
        }
        let openmetrics = openmetrics.unwrap_or(0.0);
        let text = text.map_or(0.0, |(_, q)| q);
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => Format::PROMETHEUS,
            Format::OpenMetrics => Format::OPENMETRICS,
        }
    }
}

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A count that only goes up; its samples are named `<family>_total`.
    Counter,
    /// Cumulative buckets (`_bucket{le}`), `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value {
    /// A whole number.
    Int(i64),
    /// A count.
    Count(u64),
    /// A real number (`+Inf`, `-Inf` and `NaN` as the formats spell them).
    Float(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Count(n) => write!(f, "{n}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Value::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            // `Display` of an f64 never uses an exponent and never loses digits.
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(i64::from(b))
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Count(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(i64::from(n))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

/// The `le` label of each bucket of a [`LatencyHistogram`], `+Inf` last: written as
/// they are rather than formatted per bucket and series (`1.0` keeps its `.0`, the
/// canonical OpenMetrics form). A test checks them against
/// [`LatencyHistogram::BOUNDS`].
pub(crate) const LE: [&str; LatencyHistogram::BOUNDS.len() + 1] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
];

/// Writes metric families in one of the two [`Format`]s to any [`fmt::Write`].
///
/// Call [`family`](Self::family) once per family, then its samples, then the next
/// family; [`finish`](Self::finish) at the end (OpenMetrics' `# EOF`). A sample's name
/// gets `_total` when its family is a counter: callers give the family's name.
#[derive(Debug)]
pub(crate) struct Encoder<W> {
    out: W,
    format: Format,
    /// The kind of the family being written.
    kind: Kind,
}

impl<W: fmt::Write> Encoder<W> {
    /// An encoder writing `format` to `out`.
    pub(crate) fn new(out: W, format: Format) -> Self {
        Encoder {
            out,
            format,
            kind: Kind::Gauge,
        }
    }

    /// The `HELP` and `TYPE` lines of family `name` (a counter's name without `_total`);
    /// the samples that follow are this family's.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) -> fmt::Result {
        self.kind = kind;
        // In 0.0.4 a counter's lines name its series (`x_total`); in OpenMetrics, the
        // family (`x`).
        let suffix = match (self.format, kind) {
            (Format::Prometheus, Kind::Counter) => "_total",
            _ => "",
        };
        write!(self.out, "# HELP {name}{suffix} ")?;
        // 0.0.4 escapes no quote in help text; OpenMetrics does.
        self.escaped(help, self.format == Format::OpenMetrics)?;
        writeln!(self.out, "\n# TYPE {name}{suffix} {}", kind.as_str())
    }

    /// One sample of the current family `name` (`name_total` for a counter), its labels
    /// and its value. Histograms write theirs with [`histogram`](Self::histogram).
    pub(crate) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Into<Value>,
    ) -> fmt::Result {
        let suffix = match self.kind {
            Kind::Counter => "_total",
            Kind::Gauge | Kind::Histogram => "",
        };
        self.line(name, suffix, labels, None, value.into())
    }

    /// `text` with backslashes and newlines escaped, and double quotes when `quotes`.
    fn escaped(&mut self, text: &str, quotes: bool) -> fmt::Result {
        for c in text.chars() {
            match c {
                '\\' => self.out.write_str("\\\\")?,
                '\n' => self.out.write_str("\\n")?,
                '"' if quotes => self.out.write_str("\\\"")?,
                c => self.out.write_char(c)?,
            }
        }
        Ok(())
    }

    /// One sample line: `name` + `suffix`, `labels` and then `le` when given, the value.
    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: Value,
    ) -> fmt::Result {
        self.out.write_str(name)?;
        self.out.write_str(suffix)?;
        if !labels.is_empty() || le.is_some() {
            self.out.write_char('{')?;
            let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
            for (i, (label, value)) in all.enumerate() {
                if i > 0 {
                    self.out.write_char(',')?;
                }
                self.out.write_str(label)?;
                self.out.write_str("=\"")?;
                self.escaped(value, true)?;
                self.out.write_char('"')?;
            }
            self.out.write_char('}')?;
        }
        writeln!(self.out, " {value}")
    }

    /// The samples of one histogram series `name{labels}` in seconds: a `_bucket` per
    /// bound (`le` from [`LE`], `+Inf` last), `_sum` and `_count`. Nothing is allocated.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        histogram: &LatencyHistogram,
    ) -> fmt::Result {
        for (le, (_, count)) in LE.iter().zip(histogram.cumulative()) {
            self.line(name, "_bucket", labels, Some(le), Value::Count(count))?;
        }
        let sum = Value::Float(histogram.sum.as_secs_f64());
        self.line(name, "_sum", labels, None, sum)?;
        self.line(
            name,
            "_count",
            labels,
            None,
            Value::Count(histogram.count()),
        )
    }

    /// Ends the exposition (OpenMetrics: `# EOF`) and hands back the writer.
    pub(crate) fn finish(mut self) -> Result<W, fmt::Error> {
        if self.format == Format::OpenMetrics {
            self.out.write_str("# EOF\n")?;
        }
        Ok(self.out)
    }
}

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

/// What `/metrics` reads: the monitors and, optionally, the dispatcher's counters.
#[derive(Debug)]
struct Sources {
    monitors: Arc<[Monitor]>,
    notify: Option<Arc<dyn NotifyStats>>,
}

impl Sources {
    /// Writes every family (see the module docs' table); every value is read from a
    /// snapshot or the dispatcher.
    fn encode<W: fmt::Write>(&self, out: &mut Encoder<W>) -> fmt::Result {
        // One snapshot per monitor, taken once, so that every family agrees.
        let snapshots: Vec<(&str, Arc<Snapshot>)> = self
            .monitors
            .iter()
            .map(|m| (m.name(), m.snapshot()))
            .collect();

        let name = "healthd_monitor_up";
        out.family(
            name,
            Kind::Gauge,
            "1 if the monitor's status is good (starting, healthy, napping), else 0",
        )?;
        for (monitor, s) in &snapshots {
            out.sample(name, &[("monitor", *monitor)], s.status.is_good())?;
        }

        let name = "healthd_monitor_status";
        out.family(
            name,
            Kind::Gauge,
            "1 for the monitor's current status, 0 for the others",
        )?;
        for (monitor, s) in &snapshots {
            for status in Status::ALL {
                let labels = [("monitor", *monitor), ("status", status.as_str())];
                out.sample(name, &labels, s.status == status)?;
            }
        }

        let name = "healthd_monitor_latency_seconds";
        out.family(name, Kind::Gauge, "Latency of the last check")?;
        for (monitor, s) in &snapshots {
            out.sample(name, &[("monitor", *monitor)], s.latency.as_secs_f64())?;
        }

        let name = "healthd_monitor_check_duration_seconds";
        out.family(
            name,
            Kind::Histogram,
            "Latencies of the monitor's checks since healthd started (local failures left out)",
        )?;
        for monitor in self.monitors.iter() {
            out.histogram(name, &[("monitor", monitor.name())], &monitor.latencies())?;
        }

        let name = "healthd_monitor_phase_seconds";
        out.family(
            name,
            Kind::Gauge,
            "Time each phase of the last check took (dns, connect, tls, first_byte), where \
             the check went through it",
        )?;
        for (monitor, s) in &snapshots {
            for (phase, took) in s.phases.get().iter() {
                let labels = [("monitor", *monitor), ("phase", phase)];
                out.sample(name, &labels, took.as_secs_f64())?;
            }
        }

        let name = "healthd_cert_expiry_seconds";
        out.family(
            name,
            Kind::Gauge,
            "When the certificate the monitor last saw expires (not after), in unix seconds",
        )?;
        for (monitor, s) in &snapshots {
            if let Some(cert) = &s.cert {
                out.sample(name, &[("monitor", *monitor)], cert.not_after)?;
            }
        }

        let name = "healthd_monitor_consecutive_failures";
        out.family(name, Kind::Gauge, "Consecutive unhealthy-or-error results")?;
        for (monitor, s) in &snapshots {
            out.sample(name, &[("monitor", *monitor)], s.failures)?;
        }

        let name = "healthd_monitor_checks";
        out.family(
            name,
            Kind::Counter,
            "Checks completed since the monitor (re)started, by result",
        )?;
        for (monitor, s) in &snapshots {
            for (result, count) in [
                ("healthy", s.results.healthy),
                ("unhealthy", s.results.unhealthy),
                ("error", s.results.error),
            ] {
                let labels = [("monitor", *monitor), ("result", result)];
                out.sample(name, &labels, count)?;
            }
        }

        let name = "healthd_local_failures";
        out.family(
            name,
            Kind::Counter,
            "Checks that failed on our side (kind local: out of file descriptors, buffers or \
             memory; no local address) since the monitor (re)started; they count against no \
             target (SPEC 9.3)",
        )?;
        for (monitor, s) in &snapshots {
            out.sample(name, &[("monitor", *monitor)], s.results.local)?;
        }

        let name = "healthd_monitor_transitions";
        out.family(
            name,
            Kind::Counter,
            "Status changes since the monitor (re)started",
        )?;
        for (monitor, s) in &snapshots {
            out.sample(name, &[("monitor", *monitor)], s.transitions)?;
        }

        if let Some(notify) = &self.notify {
            let name = "healthd_notifications";
            out.family(
                name,
                Kind::Counter,
                "Notification deliveries by provider and outcome",
            )?;
            for (provider, c) in notify.counters() {
                for (outcome, count) in [
                    ("sent", c.sent),
                    ("failed", c.failed),
                    ("retried", c.retried),
                    ("dropped", c.dropped),
                ] {
                    let labels = [("provider", provider.as_str()), ("outcome", outcome)];
                    out.sample(name, &labels, count)?;
                }
            }

            let backlog = notify.backlog();
            let name = "healthd_outbox_pending";
            out.family(
                name,
                Kind::Gauge,
                "Notifications committed to the outbox and not yet delivered or given up",
            )?;
            for (notifier, b) in &backlog {
                out.sample(name, &[("notifier", notifier.as_str())], b.pending)?;
            }
            let name = "healthd_outbox_oldest_seconds";
            out.family(
                name,
                Kind::Gauge,
                "Age of the oldest undelivered notification in the outbox; 0 when empty",
            )?;
            for (notifier, b) in &backlog {
                out.sample(name, &[("notifier", notifier.as_str())], b.oldest_seconds)?;
            }
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
    sources: Arc<Sources>,
}

impl Metrics {
    /// Metrics over `monitors` and, optionally, notification counters.
    pub(crate) fn new(monitors: Arc<[Monitor]>, notify: Option<Arc<dyn NotifyStats>>) -> Self {
        Metrics {
            sources: Arc::new(Sources { monitors, notify }),
        }
    }

    /// The exposition in `format` as a body that is written while it is sent (see the
    /// module docs). The text is written on a blocking thread; a client that goes away
    /// ends the writing at its next chunk.
    pub(crate) fn stream(&self, format: Format) -> Channel<Bytes> {
        let (sender, body) = Channel::new(CHUNKS_AHEAD);
        let sources = Arc::clone(&self.sources);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut out = Encoder::new(
                Chunks {
                    text: String::with_capacity(CHUNK),
                    sender,
                    runtime,
                },
                format,
            );
            if sources.encode(&mut out).is_ok()
                && let Ok(mut chunks) = out.finish()
            {
                // A failed last send is a client that went away: nothing to tell.
                let _ = chunks.send();
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

#[cfg(test)]
mod tests;
