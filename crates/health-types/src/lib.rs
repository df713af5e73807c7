//! Shared vocabulary of the health toolkit: statuses, check results, the health-check
//! config with its defaults and validation, monitor events, and the port traits
//! ([`Probe`], [`EventSink`], [`Clock`]) that the other crates implement or consume.
//!
//! This crate does no I/O. `health-check` implements [`Probe`], `health-notify`
//! implements [`EventSink`], and `health-monitor` drives both.

mod clock;
mod config;
mod event;
mod json;
mod probe;
mod result;
mod status;

pub use self::{
    clock::{Clock, SystemClock, TokioClock},
    config::{
        ConfigError, DEFAULT_INTERVAL, DEFAULT_MAX_ERRORS, DEFAULT_RETRIES, DEFAULT_TIMEOUT,
        ExpectedStatus, HealthCheckConfig, HealthCheckOverrides, Method, StatusRange,
    },
    event::{Event, EventKind, EventSink},
    json::{ConfigJson, MonitorJson},
    probe::Probe,
    result::{CheckKind, CheckResult, ProbeError, Verdict},
    status::{ParseStatusError, Status},
};

pub use url::Url;
