//! Shared vocabulary of the health toolkit: statuses, check results, the health-check
//! config with its defaults and validation, the [`Scheme`]s and [`Target`]s a monitor
//! checks, monitor events, the port traits ([`Probe`], [`EventSink`], [`Clock`]) that
//! the other crates implement or consume, and the few helpers they all share.
//!
//! This crate does no I/O, but for one thing behind the `tls` feature: [`tls`] reads
//! the PEM files a config names (CA, certificate, key) and builds every rustls config
//! of the toolkit, on the ring provider. `health-check` implements [`Probe`],
//! `health-notify` implements [`EventSink`], and `health-monitor` drives both.

mod clock;
mod config;
mod depth;
mod event;
mod history;
mod json;
mod persist;
mod probe;
mod result;
mod scheme;
mod status;
mod target;
#[cfg(feature = "test-util")]
pub mod test_util;
#[cfg(feature = "tls")]
pub mod tls;
mod util;

pub use self::{
    clock::{Clock, SystemClock, TokioClock},
    config::{
        ConfigError, DEFAULT_CERT_EXPIRY_WARN, DEFAULT_INTERVAL, DEFAULT_MAX_ERRORS,
        DEFAULT_RETRIES, DEFAULT_TIMEOUT, ExpectedStatus, HealthCheckConfig, HealthCheckOverrides,
        MAX_DURATION, Method, StatusRange, parse_duration,
    },
    depth::{IpFamily, JsonCondition, JsonOp, TlsOptions, TlsVersion},
    event::{Event, EventKind, EventSink},
    history::{
        DaySummary, HistoryError, HistoryReader, HistorySink, HistorySpan, HistorySummary,
        LatencyBucket, Observation, StatusChange,
    },
    json::{ConfigJson, MonitorJson},
    persist::{AlertState, MonitorState, Outbox, OutboxEntry, OutboxError, StateSink},
    probe::Probe,
    result::{CertInfo, CheckKind, CheckResult, Phases, ProbeError, Verdict},
    scheme::{Scheme, UnknownScheme, unsupported_reason, unsupported_scheme},
    status::{ParseStatusError, Status},
    target::{AgentSpec, DockerSpec, Target},
    util::{
        ErrorChain, PASSWORD_MASK, TRUNCATION_MARKER, duration_nanos, redacted, timed_out_after,
        truncate,
    },
};

pub use url::Url;
