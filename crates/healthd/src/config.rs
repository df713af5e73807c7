//! The daemon's config file (SPEC §7): `[server]`, `[defaults]`, `[[notify]]` and
//! `[[monitor]]` tables, read from TOML and checked before anything starts.
//!
//! Every problem is reported with the file, line and column, the key and the reason,
//! and all problems of a file are reported together (`healthd validate` lists them).

use std::{
    collections::BTreeSet,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use health_monitor::MonitorError;
use health_notify::NotifierConfig;
use health_types::{ConfigError, HealthCheckConfig, HealthCheckOverrides, Url};
use serde::Deserialize;
use toml::Spanned;

/// Default API listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// One problem in a config file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, naming the key and the value.
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

/// The whole daemon config.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Where the API and status page listen.
    pub listen: SocketAddr,
    /// Notification providers, in file order.
    pub notify: Vec<NotifyEntry>,
    /// Monitors, in file order, each with `[defaults]` applied.
    pub monitors: Vec<MonitorEntry>,
}

/// One `[[notify]]` table, checked by `health-notify`.
#[derive(Clone, Debug)]
pub struct NotifyEntry {
    /// The name monitors refer to.
    pub name: String,
    /// The provider (`webhook`, `discord`, ...).
    pub provider: String,
    /// The provider's validated config.
    pub config: NotifierConfig,
}

/// The `docker` table of a monitor.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerTarget {
    /// Container id or name.
    pub container: String,
    /// Engine host (`unix://...` or `tcp://...`); default `DOCKER_HOST` or the local socket.
    pub host: Option<String>,
}

/// The `agent` table of a monitor.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTarget {
    /// The agent's base URL.
    pub url: Url,
    /// CA certificate (PEM) to verify the agent with.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub key: Option<PathBuf>,
}

/// One `[[monitor]]` table, resolved.
#[derive(Clone, Debug)]
pub struct MonitorEntry {
    /// Service name (unique).
    pub name: String,
    /// Target URL.
    pub url: Url,
    /// Health-check config with `[defaults]` applied.
    pub config: HealthCheckConfig,
    /// Check a Docker container's own health.
    pub docker: Option<DockerTarget>,
    /// Check through a remote agent.
    pub agent: Option<AgentTarget>,
    /// Providers to notify (empty = all).
    pub notify: Vec<String>,
    /// UDP: the datagram to send.
    pub payload: Option<String>,
    /// UDP: silence is unhealthy.
    pub expect_reply: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    server: Option<Spanned<toml::Table>>,
    defaults: Option<Spanned<toml::Table>>,
    #[serde(default)]
    notify: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    monitor: Vec<Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
}

/// Keys of a `[[monitor]]` table that are not health-check keys.
const MONITOR_KEYS: [&str; 7] = [
    "name",
    "url",
    "docker",
    "agent",
    "notify",
    "payload",
    "expect_reply",
];

/// Finds positions in the source text.
struct Locator<'a> {
    text: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, column)
    }

    /// Where `key = ...` is written inside `span` (else the start of the span).
    fn key(&self, span: &Range<usize>, key: Option<&str>) -> (usize, usize) {
        // A table's span may cover only its header: search from its start to the next
        // table header.
        let rest = self.text.get(span.start..).unwrap_or_default();
        let first_line = rest.find('\n').map_or(rest.len(), |nl| nl + 1);
        let end = rest[first_line..]
            .match_indices('\n')
            .map(|(nl, _)| first_line + nl + 1)
            .find(|&at| rest[at..].trim_start_matches([' ', '\t']).starts_with('['))
            .unwrap_or(rest.len());
        let section = &rest[..end.max(span.len().min(rest.len()))];
        if let Some(key) = key {
            let mut offset = span.start;
            for line in section.split_inclusive('\n') {
                let trimmed = line.trim_start();
                let indent = line.len() - trimmed.len();
                let bare = trimmed.trim_start_matches('"');
                if let Some(rest) = bare.strip_prefix(key)
                    && rest
                        .trim_start_matches('"')
                        .trim_start()
                        .starts_with(['=', '.'])
                {
                    return self.line_col(offset + indent);
                }
                // Inline tables: `docker = { container = ... }`.
                if let Some(pos) = line
                    .find(&format!("{key} ="))
                    .or_else(|| line.find(&format!("{key}=")))
                    && line[..pos].ends_with([' ', '{', ','])
                {
                    return self.line_col(offset + pos);
                }
                offset += line.len();
            }
        }
        self.line_col(span.start)
    }
}

/// Collects problems in file order.
struct Problems<'a> {
    locator: Locator<'a>,
    list: Vec<ConfigProblem>,
}

impl Problems<'_> {
    fn at(&mut self, span: &Range<usize>, key: Option<&str>, message: impl Into<String>) {
        let (line, column) = self.locator.key(span, key);
        self.list.push(ConfigProblem {
            line,
            column,
            message: message.into(),
        });
    }
}

/// Deserializes `value`; on failure returns the key the error is at (when known) and a
/// message that names it.
fn with_path<T: serde::de::DeserializeOwned>(
    value: toml::Value,
) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().to_owned();
        if path == "." || path.is_empty() || message.contains('`') {
            (None, message)
        } else {
            let key = path.split('.').next().unwrap_or(&path).to_owned();
            (Some(key), format!("invalid `{path}`: {message}"))
        }
    })
}

/// An error and its causes, joined with `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The key a serde or validation message names in backticks, if any.
fn named_key(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
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

    /// Checks config text; on failure returns every problem found, in file order.
    pub fn parse(text: &str) -> Result<DaemonConfig, Vec<ConfigProblem>> {
        let mut problems = Problems {
            locator: Locator { text },
            list: Vec::new(),
        };
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(err) => {
                let span = err.span().unwrap_or(0..0);
                problems.at(&span, None, err.message().to_owned());
                return Err(problems.list);
            }
        };

        let listen = parse_server(raw.server.as_ref(), &mut problems);
        let defaults = match &raw.defaults {
            Some(table) => overrides(table, &mut problems, "[defaults]").unwrap_or_default(),
            None => HealthCheckOverrides::default(),
        };
        let defaults_error = defaults.resolve().err();
        if let (Some(table), Some(e)) = (&raw.defaults, &defaults_error) {
            let message = e.to_string();
            problems.at(
                &table.span(),
                named_key(&message),
                format!("[defaults]: {message}"),
            );
        }
        let notify = parse_notify(&raw.notify, &mut problems);
        let names: BTreeSet<&str> = notify.iter().map(|n| n.name.as_str()).collect();
        let mut monitors = Vec::new();
        let mut seen = BTreeSet::new();
        for table in &raw.monitor {
            if let Some(toml::Value::String(name)) = table.get_ref().get("name")
                && !seen.insert(name.clone())
            {
                problems.at(
                    &table.span(),
                    Some("name"),
                    format!(
                        "[[monitor]]: duplicate `name` = {name:?}: monitor names must be unique"
                    ),
                );
            }
            let with_defaults = (&defaults, defaults_error.as_ref());
            if let Some(m) = parse_monitor(table, with_defaults, &names, &mut problems) {
                // Build the probe once now, so that what only a probe can tell (a stream
                // URL without a port, a missing certificate file) is reported here too.
                let probe = crate::daemon::probe_for_entry(&m)
                    .and_then(|(probe, url)| Ok(probe.validate_url(&url)?));
                if let Err(e) = probe {
                    let key = match &e {
                        MonitorError::Config(ConfigError::Invalid { key, .. }) => Some(*key),
                        _ => Some("url"),
                    };
                    problems.at(
                        &table.span(),
                        key,
                        format!("[[monitor]] {:?}: {}", m.name, error_chain(&e)),
                    );
                }
                monitors.push(m);
            }
        }
        if problems.list.is_empty() {
            Ok(DaemonConfig {
                listen: listen.unwrap_or_else(default_listen),
                notify,
                monitors,
            })
        } else {
            problems.list.sort_by_key(|p| (p.line, p.column));
            Err(problems.list)
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .expect("the default listen address is a valid socket address")
}

fn parse_server(
    table: Option<&Spanned<toml::Table>>,
    problems: &mut Problems<'_>,
) -> Option<SocketAddr> {
    let table = table?;
    let span = table.span();
    match toml::Value::Table(table.get_ref().clone()).try_into::<RawServer>() {
        Ok(server) => {
            let text = server.listen?;
            match text.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    problems.at(
                        &span,
                        Some("listen"),
                        format!(
                            "[server]: invalid `listen` = {text:?}: expected an address and port like \"127.0.0.1:8090\" or \"[::1]:8090\""
                        ),
                    );
                    None
                }
            }
        }
        Err(e) => {
            let message = e.message().to_owned();
            problems.at(&span, named_key(&message), format!("[server]: {message}"));
            None
        }
    }
}

fn overrides(
    table: &Spanned<toml::Table>,
    problems: &mut Problems<'_>,
    section: &str,
) -> Option<HealthCheckOverrides> {
    let span = table.span();
    match with_path::<HealthCheckOverrides>(toml::Value::Table(table.get_ref().clone())) {
        Ok(o) => Some(o),
        Err((key, message)) => {
            let key = key.or_else(|| named_key(&message).map(str::to_owned));
            problems.at(&span, key.as_deref(), format!("{section}: {message}"));
            None
        }
    }
}

fn string_key<'t>(
    table: &'t Spanned<toml::Table>,
    key: &str,
    section: &str,
    problems: &mut Problems<'_>,
) -> Option<&'t str> {
    match table.get_ref().get(key) {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s),
        Some(other) => {
            problems.at(
                &table.span(),
                Some(key),
                format!("{section}: invalid `{key}` = {other}: expected a non-empty string"),
            );
            None
        }
        None => {
            problems.at(&table.span(), None, format!("{section}: missing `{key}`"));
            None
        }
    }
}

fn parse_notify(tables: &[Spanned<toml::Table>], problems: &mut Problems<'_>) -> Vec<NotifyEntry> {
    let mut entries: Vec<NotifyEntry> = Vec::new();
    for table in tables {
        let name = string_key(table, "name", "[[notify]]", problems);
        let provider = string_key(table, "provider", "[[notify]]", problems);
        let (Some(name), Some(provider)) = (name, provider) else {
            continue;
        };
        if entries.iter().any(|e| e.name == name) {
            problems.at(
                &table.span(),
                Some("name"),
                format!("[[notify]]: duplicate `name` = {name:?}: notifier names must be unique"),
            );
            continue;
        }
        match toml::Value::Table(table.get_ref().clone()).try_into::<NotifierConfig>() {
            Ok(config) => entries.push(NotifyEntry {
                name: name.to_owned(),
                provider: provider.to_owned(),
                config,
            }),
            Err(e) => {
                let message = e.message().to_owned();
                problems.at(
                    &table.span(),
                    named_key(&message),
                    format!("[[notify]]: {message}"),
                );
            }
        }
    }
    entries
}

/// `defaults`: the `[defaults]` table, and its own error (reported once, at the table).
fn parse_monitor(
    table: &Spanned<toml::Table>,
    (defaults, defaults_error): (&HealthCheckOverrides, Option<&ConfigError>),
    notifiers: &BTreeSet<&str>,
    problems: &mut Problems<'_>,
) -> Option<MonitorEntry> {
    let span = table.span();
    let name = string_key(table, "name", "[[monitor]]", problems)?.to_owned();
    let section = format!("[[monitor]] {name:?}");
    let before = problems.list.len();

    let url = string_key(table, "url", &section, problems).and_then(|text| {
        Url::parse(text)
            .map_err(|e| {
                problems.at(
                    &span,
                    Some("url"),
                    format!("{section}: invalid `url` = {text:?}: {e}"),
                );
            })
            .ok()
    });

    let mut check_keys = table.get_ref().clone();
    check_keys.retain(|k, _| !MONITOR_KEYS.contains(&k));
    let own = overrides(&Spanned::new(span.clone(), check_keys), problems, &section);
    let config = own.and_then(|own| match own.over(defaults).resolve() {
        Ok(config) => Some(config),
        // Already reported once, at `[defaults]`.
        Err(e) if Some(&e) == defaults_error => None,
        Err(e) => {
            let message = e.to_string();
            problems.at(&span, named_key(&message), format!("{section}: {message}"));
            None
        }
    });

    let docker = typed::<DockerTarget>(table, "docker", &section, problems);
    let agent = typed::<AgentTarget>(table, "agent", &section, problems);
    let notify = typed::<Vec<String>>(table, "notify", &section, problems).unwrap_or_default();
    for target in &notify {
        if !notifiers.contains(target.as_str()) {
            problems.at(
                &span,
                Some("notify"),
                format!(
                    "{section}: `notify` names {target:?}, but no [[notify]] table has that name"
                ),
            );
        }
    }
    let payload = typed::<String>(table, "payload", &section, problems);
    let expect_reply = typed::<bool>(table, "expect_reply", &section, problems);
    if let Some(agent) = &agent
        && agent.cert.is_some() != agent.key.is_some()
    {
        problems.at(
            &span,
            Some("agent"),
            format!("{section}: `agent` needs both `cert` and `key` for mutual TLS, or neither"),
        );
    }

    if problems.list.len() != before {
        return None;
    }
    Some(MonitorEntry {
        name,
        url: url?,
        config: config?,
        docker,
        agent,
        notify,
        payload,
        expect_reply,
    })
}

fn typed<T: serde::de::DeserializeOwned>(
    table: &Spanned<toml::Table>,
    key: &str,
    section: &str,
    problems: &mut Problems<'_>,
) -> Option<T> {
    let value = table.get_ref().get(key)?.clone();
    match value.try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            problems.at(
                &table.span(),
                Some(key),
                format!("{section}: invalid `{key}`: {}", e.message()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"

[defaults]
interval = "10s"
retries = 2

[[notify]]
name = "ops"
provider = "webhook"
url = "http://127.0.0.1:9/hook"

[[monitor]]
name = "api"
url = "http://127.0.0.1:8080/"
path = "/health"
notify = ["ops"]

[[monitor]]
name = "db"
url = "tcp://127.0.0.1:5432"
interval = "5s"

[[monitor]]
name = "web"
url = "http://127.0.0.1:8081/"
docker = { container = "web", host = "unix:///var/run/docker.sock" }
"#;

    #[test]
    fn a_good_file_resolves_with_defaults_under_own_keys() {
        let c = DaemonConfig::parse(GOOD).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.notify[0].name, "ops");
        assert_eq!(c.notify[0].provider, "webhook");
        let api = &c.monitors[0];
        assert_eq!(api.config.interval, Duration::from_secs(10));
        assert_eq!(api.config.path, "/health");
        assert_eq!(api.config.fall_threshold(), 2);
        assert_eq!(api.notify, ["ops"]);
        assert_eq!(c.monitors[1].config.interval, Duration::from_secs(5));
        assert_eq!(c.monitors[2].docker.as_ref().unwrap().container, "web");
    }

    #[test]
    fn notifier_tables_are_checked_by_their_provider() {
        let p = problems(
            "[[notify]]\nname = \"phone\"\nprovider = \"ntfy\"\nurl = \"https://ntfy.sh\"\ntopik = \"x\"\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("5:1: [[notify]]: ") && p[0].contains("topik"),
            "{p:?}"
        );
        let p = problems("[[notify]]\nname = \"x\"\nprovider = \"carrier-pigeon\"\n");
        assert!(p[0].contains("carrier-pigeon"), "{p:?}");
    }

    #[test]
    fn what_only_a_probe_can_tell_is_reported_with_its_monitor() {
        let p = problems("[[monitor]]\nname = \"db\"\nurl = \"tcp://db.internal\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("3:1: [[monitor]] \"db\": ") && p[0].contains("tcp://db.internal"),
            "{p:?}"
        );
        let p = problems("[[monitor]]\nname = \"x\"\nurl = \"gopher://h/\"\n");
        assert!(
            p[0].contains("supported schemes are http, https, h2c"),
            "{p:?}"
        );
        let p = problems("[[monitor]]\nname = \"x\"\nurl = \"tcp://h:1\"\npayload = \"ping\"\n");
        assert!(p[0].contains("udp targets only"), "{p:?}");
    }

    #[test]
    fn the_listen_address_defaults() {
        let c = DaemonConfig::parse("").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.monitors.is_empty());
    }

    fn problems(text: &str) -> Vec<String> {
        DaemonConfig::parse(text)
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn problems_name_line_column_key_and_reason() {
        let text = "[[monitor]]\nname = \"api\"\nurl = \"http://x/\"\ninterval = 30\n";
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("4:1: [[monitor]] \"api\": "), "{p:?}");
        assert!(
            p[0].contains("`interval`") && p[0].contains("\"30s\""),
            "{p:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_in_file_order() {
        let text = r#"
[defaults]
timeout = "0s"

[[monitor]]
name = "a"
url = "not a url"

[[monitor]]
name = "b"
url = "http://b/"
bogus = 1
notify = ["nobody"]

[[monitor]]
url = "http://c/"

[[monitor]]
name = "a"
url = "http://a2/"
"#;
        let p = problems(text);
        assert!(
            p.iter()
                .any(|m| m.starts_with("3:1:") && m.contains("[defaults]")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("7:1:") && m.contains("`url`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("12:1:") && m.contains("bogus")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("13:1:") && m.contains("\"nobody\"")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("missing `name`")), "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("duplicate `name` = \"a\"")),
            "{p:?}"
        );
        let lines: Vec<usize> = p
            .iter()
            .map(|m| m.split(':').next().unwrap().parse().unwrap())
            .collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
    }

    #[test]
    fn defaults_errors_are_reported_once_at_defaults() {
        let p = problems(
            "[defaults]\ntimeout = \"0s\"\n[[monitor]]\nname = \"a\"\nurl = \"http://a/\"\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("2:1: [defaults]: invalid `timeout`"),
            "{p:?}"
        );
    }

    #[test]
    fn toml_syntax_errors_have_a_position() {
        let p = problems("[[monitor]]\nname = \"a\nurl = 1\n");
        assert!(p[0].starts_with("2:"), "{p:?}");
    }

    #[test]
    fn unknown_sections_and_server_keys_are_rejected() {
        let p = problems("[servr]\nlisten = \"x\"\n");
        assert!(p[0].contains("servr"), "{p:?}");
        let p = problems("[server]\nlisten = \"localhost\"\n");
        assert!(
            p[0].starts_with("2:1:") && p[0].contains("`listen`"),
            "{p:?}"
        );
    }

    #[test]
    fn inline_table_keys_are_located_and_checked() {
        let p = problems(
            "[[monitor]]\nname = \"a\"\nurl = \"http://a/\"\nagent = { url = \"https://ag:8890\", cert = \"c.pem\" }\n",
        );
        assert!(
            p[0].starts_with("4:1:") && p[0].contains("both `cert` and `key`"),
            "{p:?}"
        );
        let p = problems(
            "[[monitor]]\nname = \"a\"\nurl = \"http://a/\"\ndocker = { image = \"x\" }\n",
        );
        assert!(p[0].starts_with("4:1:") && p[0].contains("image"), "{p:?}");
    }
}
