//! One monitor as the API and the status page show it (SPEC §4 and §9.2): the handshake
//! between the API (which builds views from the monitors and the history cache) and the
//! status page (which renders them).

use std::sync::Arc;

use health_types::{HistorySummary, MonitorJson};

/// One monitor as the API and the status page show it.
#[derive(Clone, Debug)]
pub(crate) struct MonitorView {
    /// The §4 JSON with the §9.2 fields filled in (`uptime24h`, `uptime7d`,
    /// `uptime30d`, `downSince`, `lastCheck`); its `url` keeps path and query and shows a
    /// password as `***`.
    pub(crate) json: MonitorJson,
    /// The monitor's `group` key, if it has one.
    pub(crate) group: Option<String>,
    /// The monitor's history (90 days, 24 h of latency), `None` before any.
    pub(crate) summary: Option<Arc<HistorySummary>>,
    /// Why the monitor is not running, once it stopped: `stopped itself after 5 errors
    /// in a row: <detail>` (its status then stays `error`, SPEC §3), `stopped:
    /// healthd is shutting down`, or `stopped: <reason>`; `None` while it runs.
    pub(crate) stopped_why: Option<String>,
}
