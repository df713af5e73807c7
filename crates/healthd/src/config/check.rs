//! The one pass over a parsed config file ([`check`]): every table and every key is
//! checked where it is written, each problem is reported at its key, and each monitor's
//! probe is built.
//!
//! A table's keys are read one at a time (health-check keys too, each on its own), so a
//! bad key is reported without hiding the next one, and the good keys still serve to
//! check what depends on them (a monitor's probe is built from its good keys). A problem
//! inside an inline table (`agent = { ca = ... }`) is reported at that table's key and
//! names the inner key as `agent.ca`.

mod alert;

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashSet},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use health_check::{DOCKER_SCHEME, build_probe};
use health_notify::policy::AlertRules;
use health_notify::{
    DiscordConfig, EmailConfig, GotifyConfig, NotifierConfig, NotifyError, NtfyConfig, PROVIDERS,
    PushoverConfig, SlackConfig, TelegramConfig, WebhookConfig,
};
use health_types::{
    AgentSpec, ConfigError, DockerSpec, ErrorChain, HealthCheckConfig, HealthCheckOverrides,
    Target, Url, parse_duration, truncate,
};
use serde::de::DeserializeOwned;
use toml::{
    Spanned,
    de::{DeString, DeTable, DeValue},
};

use super::{
    ApiToken, ConfigProblem, DEFAULT_HISTORY_RETENTION, DEFAULT_LISTEN, DaemonConfig, Delivery,
    MAX_CONNECTIONS, MIN_BACKOFF, MIN_HISTORY_RETENTION, MonitorEntry, ServerSettings,
    lines::Lines,
    value::{DeError, fields_of, from_entry, from_table, from_value, from_value_at},
};

type Key<'i> = Spanned<DeString<'i>>;
type Value<'i> = Spanned<DeValue<'i>>;

const TOP: &str = "top level";
const SERVER: &str = "[server]";
const STORAGE: &str = "[storage]";
const DELIVERY: &str = "[delivery]";
const DEFAULTS: &str = "[defaults]";
const NOTIFY: &str = "[[notify]]";
const MONITOR: &str = "[[monitor]]";
const MODULES: &str = "[modules]";

/// The keys of the top level.
const TOP_KEYS: [&str; 8] = [
    "server",
    "storage",
    "delivery",
    "defaults",
    "notify",
    "monitor",
    "modules",
    "maintenance",
];
/// The keys of `[server]`.
const SERVER_KEYS: [&str; 5] = [
    "listen",
    "token",
    "token_file",
    "public_read",
    "max_connections",
];
/// The keys of `[storage]`.
const STORAGE_KEYS: [&str; 2] = ["path", "retention"];
/// The keys of `[delivery]`.
const DELIVERY_KEYS: [&str; 2] = ["max_age", "max_backoff"];
/// The keys of a `[[monitor]]` table besides the health-check keys.
const MONITOR_KEYS: [&str; 10] = [
    "name",
    "url",
    "docker",
    "agent",
    "notify",
    "group",
    "remind_every",
    "depends_on",
    "flap_threshold",
    "flap_window",
];
/// The keys of a `[[notify]]` table besides its provider's own.
const NOTIFY_KEYS: [&str; 3] = ["name", "provider", "format"];
/// How many characters of a value a message quotes.
const SHOWN_CHARS: usize = 80;

/// Checks config text; see [`DaemonConfig::parse`].
pub(super) fn check(text: &str) -> Result<DaemonConfig, Vec<ConfigProblem>> {
    let mut checker = Checker::new(text);
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // The tree of a file with syntax errors is partial: checking it would report keys
        // as missing that are only unreadable.
        for error in &errors {
            let at = error.span().map_or(0, |span| span.start);
            checker.report(at, "invalid TOML", error.message());
        }
        return Err(checker.finish());
    }
    let root = root.into_inner();
    let (mut server, mut defaults, mut notify, mut monitor) = (None, None, None, None);
    let (mut storage, mut delivery, mut modules, mut maintenance) = (None, None, None, None);
    for entry in entries(TOP, &root) {
        let slot = match entry.name() {
            "server" => &mut server,
            "storage" => &mut storage,
            "delivery" => &mut delivery,
            "defaults" => &mut defaults,
            "notify" => &mut notify,
            "monitor" => &mut monitor,
            "modules" => &mut modules,
            "maintenance" => &mut maintenance,
            _ => {
                checker.unknown(entry, Accepted::Top);
                continue;
            }
        };
        *slot = Some(entry);
    }

    let (listen, server) = server
        .map(|entry| checker.server(entry))
        .unwrap_or_default();
    let (storage, history_retention) = storage
        .map(|entry| checker.storage(entry))
        .unwrap_or((None, DEFAULT_HISTORY_RETENTION));
    let delivery = delivery
        .map(|entry| checker.delivery(entry))
        .unwrap_or_default();
    let defaults_entry = defaults;
    let defaults = defaults
        .map(|entry| checker.defaults(entry))
        .unwrap_or_default();
    let (notify, notifier_names) = notify
        .map(|entry| checker.notifiers(entry))
        .unwrap_or_default();
    let monitors = monitor
        .map(|entry| checker.monitors(entry, &defaults, &notifier_names))
        .unwrap_or_default();
    let all_monitors = std::mem::take(&mut checker.monitor_names);
    let depends_at = std::mem::take(&mut checker.depends_at);
    checker.dependencies(&monitors, &all_monitors, &depends_at);
    let maintenance = maintenance
        .map(|entry| checker.maintenance(entry, &all_monitors))
        .unwrap_or_default();
    let probe_defaults = checker.probe_defaults(defaults_entry, &defaults);
    let modules = modules
        .map(|entry| checker.modules(entry, &defaults, &monitors))
        .unwrap_or_default();
    if checker.problems.is_empty() {
        Ok(DaemonConfig {
            listen: listen.unwrap_or_else(default_listen),
            server,
            storage,
            history_retention,
            delivery,
            notify,
            monitors,
            probe_defaults,
            modules,
            maintenance,
        })
    } else {
        Err(checker.finish())
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .expect("the default listen address is a valid socket address")
}

/// The table an unknown key was found in, for the list of keys it accepts.
#[derive(Clone, Copy)]
enum Accepted {
    Top,
    Server,
    Defaults,
    Monitor,
    Storage,
    Delivery,
}

/// One `key = value` of a table, with the table's name in messages (`[server]`,
/// `[[monitor]] "api"`): what most checks are about.
#[derive(Clone, Copy)]
struct Entry<'a, 'i> {
    section: &'a str,
    key: &'a Key<'i>,
    value: &'a Value<'i>,
}

impl<'a> Entry<'a, '_> {
    /// The key as written (unquoted).
    fn name(&self) -> &'a str {
        self.key.get_ref()
    }

    /// Where the key starts: where its problems are reported.
    fn at(&self) -> usize {
        self.key.span().start
    }
}

/// The entries of `table`, in its order.
fn entries<'a, 'i>(
    section: &'a str,
    table: &'a DeTable<'i>,
) -> impl Iterator<Item = Entry<'a, 'i>> {
    table.iter().map(move |(key, value)| Entry {
        section,
        key,
        value,
    })
}

/// The entry `name` of `table`, if it is there.
fn entry<'a, 'i>(section: &'a str, table: &'a DeTable<'i>, name: &str) -> Option<Entry<'a, 'i>> {
    table.get_key_value(name).map(|(key, value)| Entry {
        section,
        key,
        value,
    })
}

/// What the keys of one `[[monitor]]` table hold; `None` where a key is missing or bad.
#[derive(Default)]
struct MonitorKeys {
    url: Option<Url>,
    docker: Option<DockerSpec>,
    agent: Option<AgentSpec>,
    notify: Vec<String>,
    group: Option<String>,
    /// The alerting keys (SPEC §9.5).
    alert: AlertRules,
    /// The good health-check keys.
    own: HealthCheckOverrides,
}

impl MonitorKeys {
    /// The target, when every table it is made of is good: the agent's when the
    /// monitor has one, else the Docker container's (its `url` the fallback, unless it
    /// is a `docker://` URL), else the URL.
    fn target(self, table: &DeTable<'_>) -> Option<Target> {
        let url = self.url?;
        Some(if table.contains_key("agent") {
            Target::Agent {
                spec: self.agent?,
                url,
            }
        } else if table.contains_key("docker") {
            let fallback = (url.scheme() != DOCKER_SCHEME).then_some(url);
            Target::Docker {
                spec: self.docker?,
                fallback,
            }
        } else {
            Target::Url(url)
        })
    }
}

/// Walks the tree once, collecting problems.
struct Checker<'t> {
    text: &'t str,
    lines: Lines<'t>,
    problems: Vec<ConfigProblem>,
    /// The health-check keys, as health-types' `HealthCheckOverrides` declares them.
    check_keys: &'static [&'static str],
    /// The keys of an `agent` table.
    agent_keys: &'static [&'static str],
    /// The keys of a `docker` table.
    docker_keys: &'static [&'static str],
    /// The accepted keys of each table, joined for messages once.
    accepted: [String; 6],
    /// The name of every `[[monitor]]` table that has one, good or not.
    monitor_names: HashSet<String>,
    /// Where each monitor's `depends_on` is written.
    depends_at: Vec<alert::DependsAt>,
}

impl<'t> Checker<'t> {
    fn new(text: &'t str) -> Self {
        let check_keys = fields_of::<HealthCheckOverrides>();
        let monitor_keys: Vec<&str> = MONITOR_KEYS.iter().chain(check_keys).copied().collect();
        Checker {
            text,
            lines: Lines::new(text),
            problems: Vec::new(),
            check_keys,
            agent_keys: fields_of::<AgentSpec>(),
            docker_keys: fields_of::<DockerSpec>(),
            accepted: [
                TOP_KEYS.join(", "),
                SERVER_KEYS.join(", "),
                check_keys.join(", "),
                monitor_keys.join(", "),
                STORAGE_KEYS.join(", "),
                DELIVERY_KEYS.join(", "),
            ],
            monitor_names: HashSet::new(),
            depends_at: Vec::new(),
        }
    }

    /// The problems in file order (problems at one position keep the order they were
    /// found in).
    fn finish(mut self) -> Vec<ConfigProblem> {
        self.problems.sort_by_key(|p| (p.line, p.column));
        self.problems
    }

    fn report(&mut self, at: usize, section: &str, message: impl fmt::Display) {
        let (line, column) = self.lines.position(at);
        self.problems.push(ConfigProblem {
            line,
            column,
            message: format!("{section}: {message}"),
        });
    }

    /// The value as written in the file, shortened; `None` for a table given by a
    /// `[header]` or by dotted keys, whose span is not its text.
    fn written(&self, value: &Value<'_>) -> Option<Cow<'t, str>> {
        let text = self.text.get(value.span())?.trim();
        let shown = match value.get_ref() {
            DeValue::Table(_) => text.starts_with('{'),
            DeValue::Array(_) => !text.starts_with("[["),
            _ => true,
        };
        shown.then(|| truncate(text, SHOWN_CHARS))
    }

    /// ` = value` as written, or nothing for a value that is not shown.
    fn equals_written(&self, value: &Value<'_>) -> String {
        self.written(value)
            .map(|shown| format!(" = {shown}"))
            .unwrap_or_default()
    }

    /// `invalid `key` = value: reason`, at the key.
    fn invalid(&mut self, entry: Entry<'_, '_>, reason: impl fmt::Display) {
        let shown = self.equals_written(entry.value);
        let message = format!("invalid `{}`{shown}: {reason}", entry.name());
        self.report(entry.at(), entry.section, message);
    }

    /// `unknown key `key` = value; accepted keys: ...`, at the key.
    fn unknown(&mut self, entry: Entry<'_, '_>, table: Accepted) {
        let shown = self.equals_written(entry.value);
        let message = format!(
            "unknown key `{}`{shown}; accepted keys: {}",
            entry.name(),
            self.accepted[table as usize]
        );
        self.report(entry.at(), entry.section, message);
    }

    /// The table an entry holds, or a problem.
    fn table<'a, 'i>(&mut self, entry: Entry<'a, 'i>, expected: &str) -> Option<&'a DeTable<'i>> {
        match entry.value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.invalid(entry, format_args!("expected a table ({expected})"));
                None
            }
        }
    }

    /// The tables of `[[name]]` headers, each with where its header starts.
    fn tables<'a, 'i>(
        &mut self,
        entry: Entry<'a, 'i>,
        header: &str,
    ) -> Vec<(usize, &'a DeTable<'i>)> {
        let DeValue::Array(items) = entry.value.get_ref() else {
            self.invalid(entry, format_args!("expected {header} tables"));
            return Vec::new();
        };
        let mut tables = Vec::with_capacity(items.len());
        for item in items.iter() {
            let DeValue::Table(table) = item.get_ref() else {
                self.invalid(entry, format_args!("expected {header} tables"));
                return Vec::new();
            };
            tables.push((item.span().start, table));
        }
        tables
    }

    /// A key that must hold a non-empty string.
    fn required_string<'a>(
        &mut self,
        section: &'a str,
        header: usize,
        table: &'a DeTable<'_>,
        name: &str,
    ) -> Option<&'a str> {
        let Some(entry) = entry(section, table, name) else {
            self.report(header, section, format_args!("missing `{name}`"));
            return None;
        };
        match entry.value.get_ref().as_str() {
            Some(text) if !text.trim().is_empty() => Some(text),
            _ => {
                self.invalid(entry, "expected a non-empty string");
                None
            }
        }
    }

    /// Whether `name` is new to `seen`; a problem at the table's `name` when it is not.
    fn unique(
        &mut self,
        section: &str,
        table: &DeTable<'_>,
        name: &str,
        seen: &mut HashSet<String>,
        kind: &str,
    ) -> bool {
        if seen.insert(name.to_owned()) {
            return true;
        }
        let at = key_at(table, "name").unwrap_or_default();
        self.report(
            at,
            section,
            format_args!("duplicate `name` = {name:?}: {kind} names must be unique"),
        );
        false
    }

    /// `[server]`: the listen address (when given and good) and the rest of the table.
    fn server(&mut self, table_entry: Entry<'_, '_>) -> (Option<SocketAddr>, ServerSettings) {
        let mut settings = ServerSettings::default();
        let Some(table) = self.table(table_entry, SERVER) else {
            return (None, settings);
        };
        let mut listen = None;
        for entry in entries(SERVER, table) {
            match entry.name() {
                "listen" => listen = self.listen(entry),
                "token" | "token_file" => {
                    if let Some(token) = self.token(entry) {
                        settings.access.token = Some(token);
                    }
                }
                "public_read" => match entry.value.get_ref() {
                    DeValue::Boolean(public) => settings.access.public_read = *public,
                    _ => self.invalid(entry, "expected true or false"),
                },
                "max_connections" => {
                    if let Some(max) = self.max_connections(entry) {
                        settings.max_connections = max;
                    }
                }
                _ => self.unknown(entry, Accepted::Server),
            }
        }
        if let (Some(token), Some(file)) = (key_at(table, "token"), key_at(table, "token_file")) {
            self.report(
                token.max(file),
                SERVER,
                "`token` and `token_file` are both set; set one of them",
            );
        }
        if let Some(entry) = entry(SERVER, table, "public_read")
            && !settings.access.public_read
            && !table.contains_key("token")
            && !table.contains_key("token_file")
        {
            self.invalid(
                entry,
                "reads can be closed only with a token: set `token` or `token_file` too",
            );
        }
        (listen, settings)
    }

    fn listen(&mut self, entry: Entry<'_, '_>) -> Option<SocketAddr> {
        let listen = entry
            .value
            .get_ref()
            .as_str()
            .and_then(|text| text.parse().ok());
        if listen.is_none() {
            self.invalid(
                entry,
                "expected an address and port like \"127.0.0.1:8090\" or \"[::1]:8090\"",
            );
        }
        listen
    }

    /// `token` (the token itself, never quoted in a message) or `token_file` (a file
    /// holding it; read now, its contents trimmed).
    fn token(&mut self, entry: Entry<'_, '_>) -> Option<ApiToken> {
        let Some(text) = entry.value.get_ref().as_str() else {
            let expected = match entry.name() {
                "token" => "expected a string",
                _ => "expected a file path",
            };
            self.invalid(entry, expected);
            return None;
        };
        let checked = if entry.name() == "token" {
            ApiToken::try_new(text)
        } else {
            let path = Path::new(text);
            let contents = match std::fs::read_to_string(path) {
                Ok(contents) => contents,
                Err(err) => {
                    self.invalid(entry, format_args!("cannot read {}: {err}", path.display()));
                    return None;
                }
            };
            ApiToken::try_new(&contents)
        };
        checked
            .map_err(|reason| match entry.name() {
                // The value is a secret: the message does not show it.
                "token" => self.report(
                    entry.at(),
                    entry.section,
                    format_args!("invalid `token`: {reason}"),
                ),
                _ => self.invalid(entry, format_args!("in {text}: {reason}")),
            })
            .ok()
    }

    fn max_connections(&mut self, entry: Entry<'_, '_>) -> Option<usize> {
        let max = from_value::<usize>(entry.value.get_ref())
            .ok()
            .filter(|max| (1..=MAX_CONNECTIONS).contains(max));
        if max.is_none() {
            self.invalid(
                entry,
                format_args!("expected a whole number from 1 to {MAX_CONNECTIONS}"),
            );
        }
        max
    }

    /// `[storage]`: the store's path, if one is given, and how long hourly history is
    /// kept (default 90 days).
    fn storage(&mut self, table_entry: Entry<'_, '_>) -> (Option<PathBuf>, Duration) {
        let (mut path, mut retention) = (None, DEFAULT_HISTORY_RETENTION);
        let Some(table) = self.table(table_entry, STORAGE) else {
            return (path, retention);
        };
        for entry in entries(STORAGE, table) {
            match entry.name() {
                "path" => {
                    let text = entry
                        .value
                        .get_ref()
                        .as_str()
                        .filter(|t| !t.trim().is_empty());
                    if text.is_none() {
                        self.invalid(
                            entry,
                            "expected a file path, or \":memory:\" to keep nothing",
                        );
                    }
                    path = text.map(PathBuf::from);
                }
                "retention" => match self.duration(entry) {
                    Some(value) if value < MIN_HISTORY_RETENTION => self.invalid(
                        entry,
                        "must be at least 1d: uptime is shown over 24 hours at the least",
                    ),
                    Some(value) => retention = value,
                    None => {}
                },
                _ => self.unknown(entry, Accepted::Storage),
            }
        }
        (path, retention)
    }

    /// `[delivery]`: how long notifications are retried; defaults for what is not set.
    fn delivery(&mut self, table_entry: Entry<'_, '_>) -> Delivery {
        let table = self.table(table_entry, DELIVERY);
        let mut delivery = Delivery::default();
        for entry in table.into_iter().flat_map(|table| entries(DELIVERY, table)) {
            let value = match entry.name() {
                "max_age" | "max_backoff" => self.duration(entry),
                _ => {
                    self.unknown(entry, Accepted::Delivery);
                    None
                }
            };
            match (entry.name(), value) {
                ("max_age", Some(value)) => delivery.max_age = value,
                ("max_backoff", Some(value)) if value < MIN_BACKOFF => {
                    self.invalid(entry, "must be at least 1s, the first retry's wait");
                }
                ("max_backoff", Some(value)) => delivery.max_backoff = value,
                _ => {}
            }
        }
        delivery
    }

    /// A duration key (a string like `"30s"`, at most 365d); `None` (reported) when bad.
    fn duration(&mut self, entry: Entry<'_, '_>) -> Option<Duration> {
        let name: &'static str = DELIVERY_KEYS
            .iter()
            .chain(&STORAGE_KEYS)
            .find(|k| **k == entry.name())?;
        match entry.value.get_ref() {
            DeValue::String(text) => match parse_duration(name, text) {
                Ok(value) if !value.is_zero() => Some(value),
                Ok(_) => {
                    self.invalid(entry, "must be greater than 0");
                    None
                }
                Err(err) => {
                    self.report(entry.at(), entry.section, err);
                    None
                }
            },
            _ => {
                self.invalid(
                    entry,
                    "a bare number is not a duration; expected a string like \"30s\" (units: ms, s, m, h, d)",
                );
                None
            }
        }
    }

    /// `[defaults]`: its good keys (a bad one is reported and left out, so that the
    /// monitors are still checked against the rest).
    fn defaults(&mut self, entry: Entry<'_, '_>) -> HealthCheckOverrides {
        match self.table(entry, DEFAULTS) {
            Some(table) => self.check_keys_in(DEFAULTS, table),
            None => HealthCheckOverrides::default(),
        }
    }

    /// The health-check keys of `table` (section `section`) layered in order; a bad one
    /// is reported and left out, and any other key is reported as unknown.
    fn check_keys_in(&mut self, section: &str, table: &DeTable<'_>) -> HealthCheckOverrides {
        let mut keys = HealthCheckOverrides::default();
        for entry in entries(section, table) {
            if self.check_keys.contains(&entry.name()) {
                if let Some(one) = self.check_key(entry) {
                    keys = one.over(&keys);
                }
            } else {
                self.unknown(entry, Accepted::Defaults);
            }
        }
        keys
    }

    /// One health-check key, read and validated on its own; `None` (reported) when bad.
    fn check_key(&mut self, entry: Entry<'_, '_>) -> Option<HealthCheckOverrides> {
        let one = match from_entry::<HealthCheckOverrides>(entry.name(), entry.value.get_ref()) {
            Ok(one) => one,
            // health-types words its own messages with the key and the value.
            Err(DeError::Own(message)) => {
                self.report(entry.at(), entry.section, message);
                return None;
            }
            Err(err) => {
                self.invalid(entry, err);
                return None;
            }
        };
        // Every rule of a health-check key concerns that key alone, so checking each on
        // its own finds every bad one.
        match one.resolve() {
            Ok(_) => Some(one),
            Err(err) => {
                self.report(entry.at(), entry.section, err);
                None
            }
        }
    }

    /// The `[[notify]]` tables that are good, and the names of all that have one (so that
    /// a monitor naming a bad notifier is not also told that it does not exist).
    fn notifiers(&mut self, entry: Entry<'_, '_>) -> (Vec<NotifierConfig>, HashSet<String>) {
        let mut configs = Vec::new();
        let mut names = HashSet::new();
        for (header, table) in self.tables(entry, NOTIFY) {
            let name = self.required_string(NOTIFY, header, table, "name");
            let provider = self.required_string(NOTIFY, header, table, "provider");
            if let Some(name) = name
                && !self.unique(NOTIFY, table, name, &mut names, "notifier")
            {
                continue;
            }
            let (Some(name), Some(provider)) = (name, provider) else {
                continue;
            };
            if let Some(config) = self.notifier(header, table, name, provider) {
                configs.push(config);
            }
        }
        (configs, names)
    }

    /// One `[[notify]]` table whose `name` and `provider` are strings: its keys are
    /// checked against the provider's, then health-notify checks their values.
    fn notifier(
        &mut self,
        header: usize,
        table: &DeTable<'_>,
        name: &str,
        provider: &str,
    ) -> Option<NotifierConfig> {
        let Some(keys) = provider_keys(provider) else {
            let provider = entry(NOTIFY, table, "provider")?;
            let expected = PROVIDERS.join(", ");
            self.invalid(
                provider,
                format_args!("unknown provider; expected one of {expected}"),
            );
            return None;
        };
        let before = self.problems.len();
        for entry in entries(NOTIFY, table) {
            if !NOTIFY_KEYS.contains(&entry.name()) && !keys.contains(&entry.name()) {
                let shown = self.equals_written(entry.value);
                self.report(
                    entry.at(),
                    NOTIFY,
                    format_args!(
                        "unknown key `{}`{shown} in notifier {name:?}; accepted keys for {provider}: {}, {}",
                        entry.name(),
                        NOTIFY_KEYS.join(", "),
                        keys.join(", ")
                    ),
                );
            }
        }
        if self.problems.len() != before {
            return None;
        }
        let keys = match from_table::<serde_json::Value>(table) {
            Ok(keys) => keys,
            Err(err) => {
                self.report(header, NOTIFY, err);
                return None;
            }
        };
        match NotifierConfig::from_table(keys) {
            Ok(config) => Some(config),
            Err(err) => {
                let at = notify_key(table, &err).unwrap_or(header);
                self.report(at, NOTIFY, ErrorChain(&err));
                None
            }
        }
    }

    fn monitors(
        &mut self,
        entry: Entry<'_, '_>,
        defaults: &HealthCheckOverrides,
        notifiers: &HashSet<String>,
    ) -> Vec<MonitorEntry> {
        let mut seen = HashSet::new();
        let mut monitors = Vec::new();
        for (header, table) in self.tables(entry, MONITOR) {
            if let Some(monitor) = self.monitor(header, table, defaults, notifiers, &mut seen) {
                monitors.push(monitor);
            }
        }
        monitors
    }

    /// The config `/probe` uses without a `module`: `[defaults]` over the built-in
    /// defaults. A rule across `[defaults]`' keys that fails is reported at `[defaults]`.
    fn probe_defaults(
        &mut self,
        entry: Option<Entry<'_, '_>>,
        defaults: &HealthCheckOverrides,
    ) -> HealthCheckConfig {
        match defaults.resolve() {
            Ok(config) => config,
            Err(err) => {
                let at = entry.map_or(0, |entry| {
                    entry
                        .value
                        .get_ref()
                        .as_table()
                        .and_then(|table| self.config_key(table, &err))
                        .unwrap_or_else(|| entry.at())
                });
                self.report(at, DEFAULTS, err);
                HealthCheckConfig::default()
            }
        }
    }

    /// `[modules.<name>]` tables (for `/probe?module=<name>`): health-check keys over
    /// `[defaults]`, checked as a monitor's are; a module may not share a monitor's
    /// name (`module=` names either).
    fn modules(
        &mut self,
        entry: Entry<'_, '_>,
        defaults: &HealthCheckOverrides,
        monitors: &[MonitorEntry],
    ) -> BTreeMap<String, HealthCheckConfig> {
        let mut modules = BTreeMap::new();
        let Some(table) = self.table(entry, "`[modules.<name>]` tables of health-check keys")
        else {
            return modules;
        };
        for module in entries(MODULES, table) {
            let name = module.name();
            let section = format!("[modules.{name}]");
            let before = self.problems.len();
            if name.trim().is_empty() {
                self.report(module.at(), MODULES, "a module needs a non-empty name");
            }
            if monitors.iter().any(|m| m.name == name) {
                self.report(
                    module.at(),
                    &section,
                    format_args!(
                        "a [[monitor]] is also named {name:?}: `/probe?module={name}` would be ambiguous; rename one"
                    ),
                );
            }
            let Some(keys) = self.table(module, "a table of health-check keys") else {
                continue;
            };
            let own = self.check_keys_in(&section, keys);
            match own.over(defaults).resolve() {
                Ok(config) if self.problems.len() == before => {
                    modules.insert(name.to_owned(), config);
                }
                Ok(_) => {}
                // Each key was valid alone; a rule across keys would fail here.
                Err(err) => {
                    let at = self.config_key(keys, &err).unwrap_or_else(|| module.at());
                    self.report(at, &section, err);
                }
            }
        }
        modules
    }

    /// One `[[monitor]]` table: every key, then the probe.
    fn monitor(
        &mut self,
        header: usize,
        table: &DeTable<'_>,
        defaults: &HealthCheckOverrides,
        notifiers: &HashSet<String>,
        seen: &mut HashSet<String>,
    ) -> Option<MonitorEntry> {
        let before = self.problems.len();
        let name = self.required_string(MONITOR, header, table, "name");
        let section = name.map_or_else(|| MONITOR.to_owned(), |name| format!("{MONITOR} {name:?}"));
        if let Some(name) = name {
            self.unique(&section, table, name, seen, "monitor");
            self.monitor_names.insert(name.to_owned());
            if let Some(at) = key_at(table, "depends_on") {
                self.depends_at.push(alert::DependsAt {
                    name: name.to_owned(),
                    at,
                });
            }
        }
        let keys = self.monitor_keys(&section, header, table, notifiers);
        let config = match keys.own.over(defaults).resolve() {
            Ok(config) => config,
            // Each key was valid alone; a rule across keys would fail here.
            Err(err) => {
                let at = self.config_key(table, &err).unwrap_or(header);
                self.report(at, &section, err);
                return None;
            }
        };
        let notify = keys.notify.clone();
        let group = keys.group.clone();
        let alert_rules = keys.alert.clone();
        let target = keys.target(table)?;
        // Built now, so that what only a probe can tell (a stream URL without a port, a
        // certificate file that cannot be read) is reported with the rest.
        let probe = match build_probe(&config, &target) {
            Ok(probe) => probe,
            Err(err) => {
                let (at, message) = self.probe_problem(table, &target, &err);
                self.report(at.unwrap_or(header), &section, message);
                return None;
            }
        };
        if self.problems.len() != before {
            return None;
        }
        Some(MonitorEntry {
            name: name?.to_owned(),
            target,
            config,
            probe,
            notify,
            group,
            alert: alert_rules,
        })
    }

    /// Every key of a `[[monitor]]` table.
    fn monitor_keys(
        &mut self,
        section: &str,
        header: usize,
        table: &DeTable<'_>,
        notifiers: &HashSet<String>,
    ) -> MonitorKeys {
        let mut keys = MonitorKeys::default();
        for entry in entries(section, table) {
            match entry.name() {
                "name" => {}
                "url" => keys.url = self.url(entry),
                "docker" => keys.docker = self.spec(entry),
                "agent" => keys.agent = self.spec(entry),
                "notify" => keys.notify = self.notify_list(entry, notifiers),
                "group" => keys.group = self.group(entry),
                other if alert::ALERT_KEYS.contains(&other) => {
                    self.alert_key(entry, &mut keys.alert);
                }
                other if self.check_keys.contains(&other) => {
                    if let Some(one) = self.check_key(entry) {
                        keys.own = one.over(&keys.own);
                    }
                }
                _ => self.unknown(entry, Accepted::Monitor),
            }
        }
        if !table.contains_key("url") {
            self.report(header, section, "missing `url`");
        }
        if let (Some(spec), Some(at)) = (&keys.agent, key_at(table, "agent"))
            && spec.cert.is_some() != spec.key.is_some()
        {
            self.report(
                at,
                section,
                "`agent` needs both `cert` and `key` for mutual TLS, or neither",
            );
            keys.agent = None;
        }
        keys
    }

    /// A monitor's `group`: a non-empty string.
    fn group(&mut self, entry: Entry<'_, '_>) -> Option<String> {
        match entry.value.get_ref().as_str().map(str::trim) {
            Some(group) if !group.is_empty() => Some(group.to_owned()),
            _ => {
                self.invalid(
                    entry,
                    "expected a non-empty string: the name of the status page's group",
                );
                None
            }
        }
    }

    fn url(&mut self, entry: Entry<'_, '_>) -> Option<Url> {
        let Some(text) = entry.value.get_ref().as_str() else {
            self.invalid(entry, "expected a URL string");
            return None;
        };
        Url::parse(text)
            .map_err(|err| self.invalid(entry, err))
            .ok()
    }

    /// A `docker` or `agent` table, as health-types reads it.
    fn spec<T: DeserializeOwned>(&mut self, entry: Entry<'_, '_>) -> Option<T> {
        let Some(table) = entry.value.get_ref().as_table() else {
            let keys = fields_of::<T>().join(", ");
            self.invalid(entry, format_args!("expected a table with the keys {keys}"));
            return None;
        };
        let (path, err) = match from_value_at::<T>(entry.value.get_ref()) {
            Ok(spec) => return Some(spec),
            Err(failure) => failure,
        };
        // The inner key the error is about, shown as written.
        let inner = match &err {
            DeError::UnknownKey { .. } | DeError::MissingKey(_) => None,
            _ => path
                .first()
                .and_then(|first| table.get(first.as_str()))
                .and_then(|inner| self.written(inner)),
        };
        let name = entry.name();
        let message = match inner {
            Some(shown) => format!("invalid `{name}.{}` = {shown}: {err}", path.join(".")),
            None => format!("invalid `{name}`: {err}"),
        };
        self.report(entry.at(), entry.section, message);
        None
    }

    fn notify_list(&mut self, entry: Entry<'_, '_>, notifiers: &HashSet<String>) -> Vec<String> {
        let names: Vec<String> = match from_value(entry.value.get_ref()) {
            Ok(names) => names,
            Err(err) => {
                self.invalid(entry, err);
                return Vec::new();
            }
        };
        for name in names.iter().filter(|name| !notifiers.contains(*name)) {
            self.report(
                entry.at(),
                entry.section,
                format_args!("`notify` names {name:?}, but no [[notify]] table has that name"),
            );
        }
        names
    }

    /// Where a monitor's own key that `err` names is written.
    fn config_key(&self, table: &DeTable<'_>, err: &ConfigError) -> Option<usize> {
        match err {
            ConfigError::Invalid { key, .. } => key_at(table, key),
            ConfigError::Url { .. } => key_at(table, "url"),
        }
    }

    /// Where a `build_probe` failure belongs and its message: at the monitor's own key
    /// it names, at the `agent` or `docker` key for a key inside that table, else at
    /// `url`.
    fn probe_problem(
        &self,
        table: &DeTable<'_>,
        target: &Target,
        err: &ConfigError,
    ) -> (Option<usize>, String) {
        match err {
            ConfigError::Invalid { key, value, reason } => {
                if let Some(at) = key_at(table, key) {
                    return (Some(at), err.to_string());
                }
                let inner = match target {
                    Target::Agent { .. } if self.agent_keys.contains(key) => Some("agent"),
                    Target::Docker { .. } if self.docker_keys.contains(key) => Some("docker"),
                    _ => None,
                };
                match inner {
                    Some(inner) => (
                        key_at(table, inner),
                        format!("invalid `{inner}.{key}` = {value}: {reason}"),
                    ),
                    None => (None, err.to_string()),
                }
            }
            ConfigError::Url { url, reason } => {
                // The URL says which key it came from: the monitor's own, or one inside its
                // `agent` or `docker` table (else the engine's host came from
                // `DOCKER_HOST`, and the `docker` table is where to look).
                let inner = match target {
                    _ if target
                        .url()
                        .is_some_and(|own| health_types::redacted(own) == url.as_str()) =>
                    {
                        None
                    }
                    Target::Agent { .. } => Some(("agent", "agent.url")),
                    Target::Docker { spec, .. } if spec.host.as_deref() == Some(url) => {
                        Some(("docker", "docker.host"))
                    }
                    Target::Docker { spec, .. } if spec.container == *url => {
                        Some(("docker", "docker.container"))
                    }
                    Target::Docker { .. } => Some(("docker", "docker")),
                    Target::Url(_) => None,
                };
                match inner {
                    Some((key, path)) => (
                        key_at(table, key),
                        format!("invalid `{path}` = {url:?}: {reason}"),
                    ),
                    None => (
                        key_at(table, "url"),
                        format!("invalid `url` = {url:?}: {reason}"),
                    ),
                }
            }
        }
    }
}

/// Where `name` is written in `table`.
fn key_at(table: &DeTable<'_>, name: &str) -> Option<usize> {
    table.get_key_value(name).map(|(key, _)| key.span().start)
}

/// Where the key a health-notify error names is written: `key` is one of the table's
/// keys or a path into one (`headers.X-Token`, `tags[0]`).
fn notify_key(table: &DeTable<'_>, err: &NotifyError) -> Option<usize> {
    let mut err = err;
    while let NotifyError::Notifier { source, .. } = err {
        err = source;
    }
    let NotifyError::Config { key: path, .. } = err else {
        return None;
    };
    table
        .keys()
        .find(|key| {
            let key: &str = key.get_ref();
            path.strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
        .map(|key| key.span().start)
}

/// Each provider's own keys, read from its config type's derive.
///
/// health-notify owns the providers and checks their keys, but names an unknown key only
/// in the text of a whole-table error; with the lists, healthd points at every unknown
/// key itself. `every_provider_has_its_keys` keeps this list in step with `PROVIDERS`.
fn provider_keys(provider: &str) -> Option<&'static [&'static str]> {
    Some(match provider {
        "webhook" => fields_of::<WebhookConfig>(),
        "discord" => fields_of::<DiscordConfig>(),
        "slack" => fields_of::<SlackConfig>(),
        "ntfy" => fields_of::<NtfyConfig>(),
        "gotify" => fields_of::<GotifyConfig>(),
        "telegram" => fields_of::<TelegramConfig>(),
        "pushover" => fields_of::<PushoverConfig>(),
        "email" => fields_of::<EmailConfig>(),
        "alertmanager" => fields_of::<health_notify::AlertmanagerConfig>(),
        "teams" => fields_of::<health_notify::TeamsConfig>(),
        "googlechat" => fields_of::<health_notify::GoogleChatConfig>(),
        "apprise" => fields_of::<health_notify::AppriseConfig>(),
        "pagerduty" => fields_of::<health_notify::PagerDutyConfig>(),
        "opsgenie" => fields_of::<health_notify::OpsgenieConfig>(),
        "matrix" => fields_of::<health_notify::MatrixConfig>(),
        "mattermost" => fields_of::<health_notify::MattermostConfig>(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_its_keys() {
        for provider in PROVIDERS {
            let keys = provider_keys(provider).unwrap_or_default();
            assert!(!keys.is_empty(), "{provider}");
            assert!(
                keys.iter().all(|key| !NOTIFY_KEYS.contains(key)),
                "{provider}: {keys:?}"
            );
        }
    }
}
