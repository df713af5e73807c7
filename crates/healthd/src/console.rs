//! Terminal output of `healthd demo`: one line per status change and per notification.

use std::{
    fmt,
    io::{IsTerminal, Write},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use health_monitor::{HealthMonitor, Monitor};
use health_notify::{Message, MessageEvent, Notifier, NotifyError};
use health_types::{Clock, Status, SystemClock};
use tokio_util::sync::CancellationToken;

/// Whether to colour output (stdout is a terminal and `NO_COLOR` is unset).
pub(crate) fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn status_code(status: Status) -> &'static str {
    match status {
        Status::Healthy => "32",
        Status::Unhealthy => "31",
        Status::Error => "33",
        Status::Starting => "36",
        Status::Napping => "35",
        Status::Stopped | Status::Unknown => "90",
    }
}

/// `HH:MM:SS` (UTC) of a wall-clock time.
fn clock_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// A detail between `before` and `after`, or nothing when it is empty.
struct Detail<'a>(&'a str, &'static str, &'static str);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Detail(detail, before, after) = self;
        if detail.is_empty() {
            Ok(())
        } else {
            write!(f, "{before}{detail}{after}")
        }
    }
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop the demo.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints `monitor`'s status changes until `stop` is cancelled.
pub(crate) fn print_transitions(
    monitor: &Monitor,
    width: usize,
    colour: bool,
    stop: CancellationToken,
) {
    let mut rx = monitor.subscribe();
    let name = monitor.name().to_owned();
    tokio::spawn(async move {
        // Start from Starting so that a first result that came in before this printer
        // subscribed is still shown.
        let mut last = Status::Starting;
        rx.mark_changed();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                changed = rx.changed() => if changed.is_err() || stop.is_cancelled() { return },
            }
            let snapshot = rx.borrow_and_update().clone();
            if snapshot.status == last {
                continue;
            }
            print_line(&format!(
                "{}  {:width$}  {} → {}{}",
                clock_time(SystemClock.now()),
                name,
                paint(colour, status_code(last), last.as_str()),
                paint(
                    colour,
                    status_code(snapshot.status),
                    snapshot.status.as_str()
                ),
                Detail(&snapshot.detail, "  ", ""),
            ));
            last = snapshot.status;
        }
    });
}

/// A notifier that prints each message's title (and detail) to the terminal.
#[derive(Debug)]
pub(crate) struct ConsoleNotifier {
    colour: bool,
}

impl ConsoleNotifier {
    /// A console notifier; `colour` adds ANSI colours.
    pub(crate) fn new(colour: bool) -> Self {
        ConsoleNotifier { colour }
    }
}

#[async_trait]
impl Notifier for ConsoleNotifier {
    fn name(&self) -> &str {
        "console"
    }

    fn provider(&self) -> &'static str {
        "console"
    }

    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let code = match message.event {
            MessageEvent::Down => "1;31",
            MessageEvent::Up => "1;32",
            _ => "1;33",
        };
        print_line(&format!(
            "{}  notify: {}{}",
            clock_time(message.time),
            paint(self.colour, code, &message.title),
            Detail(&message.detail, "  (", ")"),
        ));
        Ok(())
    }
}
