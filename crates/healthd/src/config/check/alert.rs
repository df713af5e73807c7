//! The alerting keys of SPEC §9.5: a monitor's `remind_every`, `depends_on`,
//! `flap_threshold` and `flap_window`, and the `[[maintenance]]` windows, each problem
//! reported at its key like every other.

use std::{collections::HashSet, time::Duration};

use health_notify::policy::{AlertRules, MaintenanceWindow, PolicyError, validate};
use health_types::parse_duration;
use toml::de::{DeTable, DeValue};

use super::{Checker, Entry, MonitorEntry, entries, entry, from_value};

/// The section name of a `[[maintenance]]` table in messages.
const MAINTENANCE: &str = "[[maintenance]]";
/// The keys of a `[[maintenance]]` table.
pub(super) const MAINTENANCE_KEYS: [&str; 5] = ["monitors", "start", "end", "cron", "duration"];
/// The alerting keys of a `[[monitor]]` table.
pub(super) const ALERT_KEYS: [&str; 4] = [
    "remind_every",
    "depends_on",
    "flap_threshold",
    "flap_window",
];
/// The largest `flap_threshold`.
const MAX_FLAP_THRESHOLD: u32 = 1000;

/// Where a monitor's `depends_on` is written, for problems found across monitors.
pub(super) struct DependsAt {
    pub(super) name: String,
    pub(super) at: usize,
}

impl Checker<'_> {
    /// One alerting key of a monitor, into `rules`; a bad one is reported.
    pub(super) fn alert_key(&mut self, entry: Entry<'_, '_>, rules: &mut AlertRules) {
        match entry.name() {
            "remind_every" => {
                if let Some(every) = self.positive_duration(entry, "remind_every") {
                    rules.remind_every = Some(every);
                }
            }
            "flap_window" => {
                if let Some(window) = self.positive_duration(entry, "flap_window") {
                    rules.flap_window = window;
                }
            }
            "flap_threshold" => match from_value::<u32>(entry.value.get_ref()) {
                Ok(n) if (1..=MAX_FLAP_THRESHOLD).contains(&n) => rules.flap_threshold = n,
                _ => self.invalid(
                    entry,
                    format_args!(
                        "expected a whole number from 1 to {MAX_FLAP_THRESHOLD}: the status changes within `flap_window` past which the monitor is flapping"
                    ),
                ),
            },
            "depends_on" => match from_value::<Vec<String>>(entry.value.get_ref()) {
                Ok(names) if names.iter().all(|n| !n.trim().is_empty()) => {
                    rules.depends_on = names;
                }
                _ => self.invalid(entry, "expected a list of monitor names"),
            },
            _ => {}
        }
    }

    /// A duration key that must be more than zero; `None` (reported) when bad.
    fn positive_duration(&mut self, entry: Entry<'_, '_>, key: &'static str) -> Option<Duration> {
        let DeValue::String(text) = entry.value.get_ref() else {
            self.invalid(
                entry,
                "a bare number is not a duration; expected a string like \"30m\" (units: ms, s, m, h, d)",
            );
            return None;
        };
        match parse_duration(key, text) {
            Ok(value) if !value.is_zero() => Some(value),
            Ok(_) => {
                self.invalid(entry, "must be greater than 0");
                None
            }
            Err(err) => {
                self.report(entry.at(), entry.section, err);
                None
            }
        }
    }

    /// What only all monitors together tell: every `depends_on` name exists, and no
    /// chain of them goes round in a circle. `all` holds the name of every monitor
    /// table (good or not), `written` where each `depends_on` is.
    pub(super) fn dependencies(
        &mut self,
        monitors: &[MonitorEntry],
        all: &HashSet<String>,
        written: &[DependsAt],
    ) {
        let mut unknown = false;
        for at in written {
            let Some(monitor) = monitors.iter().find(|m| m.name == at.name) else {
                continue;
            };
            for name in monitor
                .alert
                .depends_on
                .iter()
                .filter(|n| !all.contains(*n))
            {
                unknown = true;
                self.report(
                    at.at,
                    &format!("[[monitor]] {:?}", at.name),
                    format_args!("`depends_on` names {name:?}, but no [[monitor]] has that name"),
                );
            }
        }
        if unknown {
            return;
        }
        let rules: Vec<(String, AlertRules)> = monitors
            .iter()
            .map(|m| (m.name.clone(), m.alert.clone()))
            .collect();
        if let Err(err @ PolicyError::Cycle(_)) = validate(&rules, &[]) {
            let PolicyError::Cycle(circle) = &err else {
                return;
            };
            let first = circle.split(" -> ").next().unwrap_or_default();
            let at = written.iter().find(|d| d.name == first).map_or(0, |d| d.at);
            self.report(at, &format!("[[monitor]] {first:?}"), err);
        }
    }

    /// The `[[maintenance]]` tables that are good; `monitors` are the names of every
    /// monitor table.
    pub(super) fn maintenance(
        &mut self,
        entry: Entry<'_, '_>,
        monitors: &HashSet<String>,
    ) -> Vec<MaintenanceWindow> {
        let tables = self.tables(entry, MAINTENANCE);
        let mut windows = Vec::with_capacity(tables.len());
        for (index, (header, table)) in tables.into_iter().enumerate() {
            let section = format!("{MAINTENANCE} {}", index + 1);
            if let Some(window) = self.window(&section, header, table, monitors) {
                windows.push(window);
            }
        }
        windows
    }

    /// One `[[maintenance]]` table.
    fn window(
        &mut self,
        section: &str,
        header: usize,
        table: &DeTable<'_>,
        known: &HashSet<String>,
    ) -> Option<MaintenanceWindow> {
        let before = self.problems.len();
        let mut monitors = Vec::new();
        let (mut start, mut end, mut cron, mut duration) = (None, None, None, None);
        for entry in entries(section, table) {
            match entry.name() {
                "monitors" => match from_value::<Vec<String>>(entry.value.get_ref()) {
                    Ok(names) => {
                        for name in names.iter().filter(|n| !known.contains(*n)) {
                            self.report(
                                entry.at(),
                                section,
                                format_args!(
                                    "`monitors` names {name:?}, but no [[monitor]] has that name"
                                ),
                            );
                        }
                        monitors = names;
                    }
                    Err(_) => self.invalid(
                        entry,
                        "expected a list of monitor names (empty: every monitor)",
                    ),
                },
                "start" => start = self.time(entry),
                "end" => end = self.time(entry),
                "cron" => match entry.value.get_ref().as_str() {
                    Some(pattern) => cron = Some((pattern.to_owned(), entry.at())),
                    None => self.invalid(entry, "expected a cron pattern like \"0 3 * * SUN\""),
                },
                "duration" => duration = self.positive_duration(entry, "duration"),
                _ => {
                    let shown = self.equals_written(entry.value);
                    let message = format!(
                        "unknown key `{}`{shown}; accepted keys: {}",
                        entry.name(),
                        MAINTENANCE_KEYS.join(", ")
                    );
                    self.report(entry.at(), section, message);
                }
            }
        }
        let has = |key: &str| table.contains_key(key);
        let window = match (has("start") || has("end"), has("cron") || has("duration")) {
            (true, false) => {
                for key in ["start", "end"].into_iter().filter(|k| !has(k)) {
                    self.report(header, section, format_args!("missing `{key}`"));
                }
                MaintenanceWindow::once(monitors, start?, end?).map_err(|err| {
                    let at = entry(section, table, "end").map_or(header, |e| e.at());
                    self.report(at, section, err);
                })
            }
            (false, true) => {
                for key in ["cron", "duration"].into_iter().filter(|k| !has(k)) {
                    self.report(header, section, format_args!("missing `{key}`"));
                }
                let (pattern, at) = cron?;
                MaintenanceWindow::cron(monitors, &pattern, duration?)
                    .map_err(|err| self.report(at, section, err))
            }
            _ => {
                self.report(
                    header,
                    section,
                    "expected `start` and `end` (RFC 3339 times), or `cron` and `duration`",
                );
                return None;
            }
        };
        window.ok().filter(|_| self.problems.len() == before)
    }

    /// An RFC 3339 time with an offset, as a string or a TOML datetime.
    fn time(&mut self, entry: Entry<'_, '_>) -> Option<std::time::SystemTime> {
        let text = match entry.value.get_ref() {
            DeValue::String(text) => text.to_string(),
            DeValue::Datetime(datetime) => datetime.to_string(),
            _ => {
                self.invalid(
                    entry,
                    "expected an RFC 3339 time like \"2024-05-01T02:00:00Z\"",
                );
                return None;
            }
        };
        match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(time) => Some(time.into()),
            Err(err) => {
                self.invalid(
                    entry,
                    format_args!(
                        "{err}; expected an RFC 3339 time with an offset, like \"2024-05-01T02:00:00Z\""
                    ),
                );
                None
            }
        }
    }
}
