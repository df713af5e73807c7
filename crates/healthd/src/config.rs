//! The daemon's config file (SPEC §7): `[server]`, `[defaults]`, `[[notify]]` and
//! `[[monitor]]` tables, read from TOML and checked before anything starts; and
//! `[modules.<name>]` tables (SPEC §9.4), the health-check keys `/probe?module=<name>`
//! checks a target with, layered over `[defaults]` and checked like a monitor's keys.
//! What only a probe can tell (a certificate file that cannot be read, a key that does
//! not fit the target's scheme) depends on the target, so for a module it is found, and
//! answered with 400, when `/probe` builds the probe.
//!
//! [`DaemonConfig::parse`] reads the file into TOML's spanned tree once and walks it
//! once ([`check`]): each key is checked where it is written, so every problem of every
//! table is reported together, each at `line:column` of its key, and each monitor's
//! probe is built there and then. Nothing is re-parsed and no error text is read back.

mod check;
mod lines;
mod value;

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use health_check::BuiltProbe;
use health_notify::{
    NotifierConfig,
    policy::{AlertRules, MaintenanceWindow},
};
use health_types::{HealthCheckConfig, Target};

use crate::server::DEFAULT_MAX_CONNECTIONS;

/// Default API listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
/// Default `[delivery] max_age`: a notification is retried for a day.
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Default `[delivery] max_backoff`: retries are at most 5 minutes apart.
pub(crate) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// The smallest `[delivery] max_backoff`: the first retry's wait.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Default `[storage] retention`: hourly history is kept for 90 days (SPEC §9.2).
pub(crate) const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// The shortest `[storage] retention`: a day, the span of the shortest uptime shown.
pub(crate) const MIN_HISTORY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest `[server] max_connections`.
pub(crate) const MAX_CONNECTIONS: usize = 1_000_000;

/// One problem in a config file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters) of the key the problem is about.
    pub column: usize,
    /// `<section>: <what is wrong>`, naming the key, the value and the reason.
    pub message: String,
}

/// A config file that could not be used: every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigFileError {
    /// The file.
    pub path: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigFileError {
    /// One `path:line:column: message` line per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        Ok(())
    }
}

/// The whole daemon config, checked: every monitor's probe is already built.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Where the API and status page listen.
    pub(crate) listen: SocketAddr,
    /// The rest of `[server]`: who may use the API, and the connection cap.
    pub(crate) server: ServerSettings,
    /// `[storage] path`, when given (else the default of SPEC §9.1, resolved when the
    /// daemon starts, since it depends on the environment).
    pub(crate) storage: Option<PathBuf>,
    /// `[storage] retention`: how long hourly history is kept. Default 90 days; at least
    /// a day.
    pub(crate) history_retention: Duration,
    /// `[delivery]`: how long notifications are retried.
    pub(crate) delivery: Delivery,
    /// Notifiers (`[[notify]]` tables, checked by health-notify), in file order.
    pub(crate) notify: Vec<NotifierConfig>,
    /// Monitors, in file order, each with `[defaults]` applied.
    pub(crate) monitors: Vec<MonitorEntry>,
    /// `[defaults]` over the built-in defaults: what `/probe` checks with when no
    /// `module` is given.
    pub(crate) probe_defaults: HealthCheckConfig,
    /// `[modules.<name>]` tables, each with `[defaults]` applied: `/probe?module=<name>`.
    pub(crate) modules: BTreeMap<String, HealthCheckConfig>,
    /// `[[maintenance]]` windows, in file order (SPEC §9.5).
    pub(crate) maintenance: Vec<MaintenanceWindow>,
}

/// `[server]` besides `listen` (SPEC §9.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerSettings {
    /// `token` or `token_file`, and `public_read`.
    pub(crate) access: ApiAccess,
    /// `max_connections`: connections past it are closed at once. Default 512.
    pub(crate) max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            access: ApiAccess::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Who may use the API (SPEC §9.3). Without a token, writes are answered only for
/// loopback clients; with one, writes need it, and reads too unless `public_read`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiAccess {
    /// `[server] token`, or the trimmed contents of `[server] token_file`.
    pub(crate) token: Option<ApiToken>,
    /// `[server] public_read`: reads need no token. Default `true`.
    pub(crate) public_read: bool,
}

impl Default for ApiAccess {
    fn default() -> Self {
        ApiAccess {
            token: None,
            public_read: true,
        }
    }
}

/// The API's bearer token: printable ASCII without spaces, never empty. `Debug` does not
/// show it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiToken(String);

impl ApiToken {
    /// The token, or why it cannot be one (a reason to follow the key's name).
    pub(crate) fn try_new(text: &str) -> Result<ApiToken, &'static str> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the token is empty");
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "a token is sent in a header: use printable ASCII without spaces or control characters",
            );
        }
        Ok(ApiToken(text.to_owned()))
    }

    /// The token's bytes, to compare a request's with.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// `[delivery]`: each notification is retried (backoff 1 s ×2, ±10 % jitter, capped at
/// `max_backoff`) until it is delivered, fails for good, or is `max_age` old.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Default 24 h.
    pub(crate) max_age: Duration,
    /// Default 5 min; at least 1 s.
    pub(crate) max_backoff: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            max_age: DEFAULT_MAX_AGE,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// One `[[monitor]]` table, resolved, with its probe.
#[derive(Clone, Debug)]
pub(crate) struct MonitorEntry {
    /// Service name (unique).
    pub(crate) name: String,
    /// What is checked: the URL, a Docker container or a URL through an agent. The
    /// daemon runs the probe built from it; the target stays for tests and `Debug`.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the daemon needs only the probe built from it")
    )]
    pub(crate) target: Target,
    /// Health-check config with `[defaults]` applied.
    pub(crate) config: HealthCheckConfig,
    /// The probe, built once when the config was loaded, and the URL the monitor shows.
    pub(crate) probe: BuiltProbe,
    /// Providers to notify (empty = all).
    pub(crate) notify: Vec<String>,
    /// `group`: the status page's group of cards this monitor is in (none by default).
    pub(crate) group: Option<String>,
    /// `remind_every`, `depends_on`, `flap_threshold`, `flap_window` (SPEC §9.5).
    pub(crate) alert: AlertRules,
}

impl DaemonConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            path: path.to_owned(),
            problems: vec![ConfigProblem {
                line: 1,
                column: 1,
                message: format!("cannot read the config file: {e}"),
            }],
        })?;
        DaemonConfig::parse(&text).map_err(|problems| ConfigFileError {
            path: path.to_owned(),
            problems,
        })
    }

    /// Checks config text and builds every monitor's probe; on failure returns every
    /// problem found, in file order.
    pub fn parse(text: &str) -> Result<DaemonConfig, Vec<ConfigProblem>> {
        check::check(text)
    }
}

#[cfg(test)]
mod tests;
