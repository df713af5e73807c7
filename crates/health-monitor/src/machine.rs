//! The sans-IO debouncing state machine (SPEC §3): results in, status and events out.
//!
//! No clock reads, no locks, no I/O: the caller passes the verdict of each check and the
//! monotonic time it ended at.

use std::time::Duration;

use health_types::{EventKind, HealthCheckConfig, Status, Verdict};
use tokio::time::Instant;

/// The debouncing state machine of one monitor.
///
/// Counters after each result: `failures` (consecutive unhealthy-or-error), `errors`
/// (consecutive error), `passes` (consecutive healthy). F is the fall threshold
/// ([`HealthCheckConfig::fall_threshold`]), R the rise threshold.
///
/// | from      | result    | to |
/// |-----------|-----------|----|
/// | Starting  | healthy   | Healthy (one success is enough at start, whatever R is) |
/// | Starting  | unhealthy | Unhealthy |
/// | Starting  | error     | Error |
/// | Healthy   | healthy   | Healthy |
/// | Healthy   | unhealthy | Healthy while failures < F; Unhealthy once failures ≥ F |
/// | Healthy   | error     | Error |
/// | Unhealthy | healthy   | Healthy once passes ≥ R, else Unhealthy |
/// | Unhealthy | unhealthy | Unhealthy |
/// | Unhealthy | error     | Error |
/// | Error     | healthy   | Healthy once passes ≥ R, else Error |
/// | Error     | unhealthy | Unhealthy |
/// | Error     | error     | Error; stops itself once errors ≥ max_errors (> 0) |
/// | any       | stop      | Stopped |
///
/// `Unknown` and `Napping` (set from outside) take results as `Starting` does; a
/// `Stopped` machine ignores results.
///
/// Events within one result, in this order: `down` when failures reaches F for the first
/// time in an outage; `up` when the status becomes Healthy and a `down` was sent for this
/// outage; `stopped` when errors reach `max_errors`. An outage lasts from the first
/// failure after a healthy period until the status is Healthy again.
#[derive(Clone, Debug)]
pub struct StateMachine {
    status: Status,
    failures: u32,
    errors: u32,
    passes: u32,
    down_sent: bool,
    outage_since: Option<Instant>,
    fall: u32,
    rise: u32,
    max_errors: u32,
}

/// The events of one result, in emission order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// A `down` event is due.
    pub down: bool,
    /// An `up` event is due.
    pub up: bool,
    /// A `stopped` event is due (the monitor stops itself).
    pub stopped: bool,
}

impl Events {
    /// The due events in emission order: down, up, stopped.
    pub fn iter(self) -> impl Iterator<Item = EventKind> {
        [
            (self.down, EventKind::Down),
            (self.up, EventKind::Up),
            (self.stopped, EventKind::Stopped),
        ]
        .into_iter()
        .filter_map(|(due, kind)| due.then_some(kind))
    }

    /// Whether no event is due.
    pub fn is_empty(self) -> bool {
        !(self.down || self.up || self.stopped)
    }
}

/// What one result did to the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Status before the result.
    pub from: Status,
    /// Status after the result.
    pub to: Status,
    /// Events to emit.
    pub events: Events,
    /// For `up`: how long the outage lasted.
    pub outage: Option<Duration>,
}

impl StateMachine {
    /// A machine in `Starting` with the thresholds of `config`.
    pub fn new(config: &HealthCheckConfig) -> Self {
        StateMachine {
            status: Status::Starting,
            failures: 0,
            errors: 0,
            passes: 0,
            down_sent: false,
            outage_since: None,
            fall: config.fall_threshold(),
            rise: config.rise_threshold(),
            max_errors: config.max_errors,
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Consecutive unhealthy-or-error results.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Consecutive error results.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Consecutive healthy results.
    pub fn passes(&self) -> u32 {
        self.passes
    }

    /// Whether a `down` was sent for the current outage.
    pub fn down_sent(&self) -> bool {
        self.down_sent
    }

    /// Whether the machine is confirming a change: 0 < failures < F, or 0 < passes < R
    /// while Unhealthy or Error. This is when `fast_interval` applies.
    pub fn is_confirming(&self) -> bool {
        let falling = self.failures > 0 && self.failures < self.fall;
        let rising = matches!(self.status, Status::Unhealthy | Status::Error)
            && self.passes > 0
            && self.passes < self.rise;
        falling || rising
    }

    /// The interval until the next check under `config`: `fast_interval` while
    /// confirming, else `down_interval` while Unhealthy or Error, else `interval`.
    pub fn next_interval(&self, config: &HealthCheckConfig) -> Duration {
        if let Some(fast) = config.fast_interval
            && self.is_confirming()
        {
            return fast;
        }
        if let Some(down) = config.down_interval
            && matches!(self.status, Status::Unhealthy | Status::Error)
        {
            return down;
        }
        config.interval
    }

    /// Stops the machine (manual stop or cancel): status Stopped, no event.
    pub fn stop(&mut self) {
        self.status = Status::Stopped;
    }

    /// Sets the status from outside (for example `Napping` from an idle watcher).
    pub fn set_status(&mut self, status: Status) {
        self.status = status;
    }

    /// Feeds one result that ended at `now`.
    pub fn observe(&mut self, verdict: Verdict, now: Instant) -> Transition {
        let from = self.status;
        if from == Status::Stopped {
            return Transition {
                from,
                to: from,
                events: Events::default(),
                outage: None,
            };
        }
        match verdict {
            Verdict::Healthy => {
                self.passes = self.passes.saturating_add(1);
                self.failures = 0;
                self.errors = 0;
            }
            Verdict::Unhealthy => {
                self.passes = 0;
                self.failures = self.failures.saturating_add(1);
                self.errors = 0;
            }
            Verdict::Error => {
                self.passes = 0;
                self.failures = self.failures.saturating_add(1);
                self.errors = self.errors.saturating_add(1);
            }
        }
        if verdict != Verdict::Healthy && self.outage_since.is_none() {
            self.outage_since = Some(now);
        }

        use Status::*;
        let to = match (from, verdict) {
            // Starting => Healthy: one success is enough at start, whatever R is.
            (Starting | Unknown | Napping, Verdict::Healthy) => Healthy,
            // Starting => Unhealthy: the first answer was bad.
            (Starting | Unknown | Napping, Verdict::Unhealthy) => Unhealthy,
            // Starting => Error: the first check could not be carried out.
            (Starting | Unknown | Napping, Verdict::Error) => Error,
            // Healthy => Healthy: still fine.
            (Healthy, Verdict::Healthy) => Healthy,
            // Healthy => Unhealthy once failures reached F; until then stays Healthy.
            (Healthy, Verdict::Unhealthy) if self.failures >= self.fall => Unhealthy,
            (Healthy, Verdict::Unhealthy) => Healthy,
            // Healthy => Error: immediately, as the seed's table says.
            (Healthy, Verdict::Error) => Error,
            // Unhealthy => Healthy once passes reached R; until then stays Unhealthy.
            (Unhealthy, Verdict::Healthy) if self.passes >= self.rise => Healthy,
            (Unhealthy, Verdict::Healthy) => Unhealthy,
            // Unhealthy => Unhealthy: still bad.
            (Unhealthy, Verdict::Unhealthy) => Unhealthy,
            // Unhealthy => Error: the checker failed.
            (Unhealthy, Verdict::Error) => Error,
            // Error => Healthy once passes reached R; until then stays Error.
            (Error, Verdict::Healthy) if self.passes >= self.rise => Healthy,
            (Error, Verdict::Healthy) => Error,
            // Error => Unhealthy: the target answered, badly.
            (Error, Verdict::Unhealthy) => Unhealthy,
            // Error => Error: still failing to check (max_errors handled below).
            (Error, Verdict::Error) => Error,
            // Stopped ignores results (returned above).
            (Stopped, _) => Stopped,
        };
        self.status = to;

        let mut events = Events::default();
        let mut outage = None;
        if self.failures >= self.fall && !self.down_sent {
            events.down = true;
            self.down_sent = true;
        }
        // The outage ends on a healthy result that makes the status Healthy (a failure
        // absorbed while still Healthy does not end it).
        if to == Healthy && verdict == Verdict::Healthy {
            if self.down_sent {
                events.up = true;
                self.down_sent = false;
                outage = self
                    .outage_since
                    .map(|since| now.saturating_duration_since(since));
            }
            self.outage_since = None;
        }
        if verdict == Verdict::Error && self.max_errors > 0 && self.errors >= self.max_errors {
            events.stopped = true;
        }
        Transition {
            from,
            to,
            events,
            outage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Error as E, Healthy as H, Unhealthy as U};

    fn machine(retries: i64, rise: u32, max_errors: u32) -> StateMachine {
        StateMachine::new(&HealthCheckConfig {
            retries,
            rise,
            max_errors,
            ..Default::default()
        })
    }

    /// Feeds verdicts and returns (status, events) after each.
    fn run(m: &mut StateMachine, verdicts: &[Verdict]) -> Vec<(Status, Vec<EventKind>)> {
        let t0 = Instant::now();
        verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let now = t0 + Duration::from_secs(10 * i as u64);
                let t = m.observe(*v, now);
                (t.to, t.events.iter().collect())
            })
            .collect()
    }

    fn statuses(m: &mut StateMachine, verdicts: &[Verdict]) -> Vec<Status> {
        run(m, verdicts).into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn starting_takes_the_first_result_at_once() {
        assert_eq!(statuses(&mut machine(3, 5, 5), &[H]), [Status::Healthy]);
        assert_eq!(statuses(&mut machine(3, 1, 5), &[U]), [Status::Unhealthy]);
        assert_eq!(statuses(&mut machine(3, 1, 5), &[E]), [Status::Error]);
    }

    #[test]
    fn healthy_falls_only_at_the_threshold() {
        let mut m = machine(3, 1, 5);
        let out = run(&mut m, &[H, U, U, U, U]);
        assert_eq!(
            out.iter().map(|o| o.0).collect::<Vec<_>>(),
            [
                Status::Healthy,
                Status::Healthy,
                Status::Healthy,
                Status::Unhealthy,
                Status::Unhealthy
            ]
        );
        assert_eq!(out[3].1, [EventKind::Down]);
        assert!(out[4].1.is_empty(), "one down per outage");
    }

    #[test]
    fn healthy_to_error_is_immediate_without_down() {
        let mut m = machine(3, 1, 5);
        let out = run(&mut m, &[H, E]);
        assert_eq!(out[1], (Status::Error, vec![]));
    }

    #[test]
    fn unhealthy_and_error_swap_both_ways() {
        let mut m = machine(1, 1, 0);
        assert_eq!(
            statuses(&mut m, &[U, E, U, E, E]),
            [
                Status::Unhealthy,
                Status::Error,
                Status::Unhealthy,
                Status::Error,
                Status::Error
            ]
        );
    }

    #[test]
    fn rise_holds_unhealthy_and_error_until_r_passes() {
        let mut m = machine(1, 3, 0);
        assert_eq!(
            statuses(&mut m, &[U, H, H, H]),
            [
                Status::Unhealthy,
                Status::Unhealthy,
                Status::Unhealthy,
                Status::Healthy
            ]
        );
        let mut m = machine(1, 2, 0);
        assert_eq!(
            statuses(&mut m, &[E, H, H]),
            [Status::Error, Status::Error, Status::Healthy]
        );
    }

    #[test]
    fn up_only_after_down_with_the_outage_length() {
        let mut m = machine(2, 1, 5);
        let t0 = Instant::now();
        m.observe(H, t0);
        assert!(m.observe(U, t0 + Duration::from_secs(10)).events.is_empty());
        let recovered = m.observe(H, t0 + Duration::from_secs(20));
        assert!(recovered.events.is_empty(), "no up without a down");
        m.observe(U, t0 + Duration::from_secs(30));
        assert!(m.observe(U, t0 + Duration::from_secs(40)).events.down);
        let up = m.observe(H, t0 + Duration::from_secs(50));
        assert!(up.events.up);
        assert_eq!(up.outage, Some(Duration::from_secs(20)));
    }

    #[test]
    fn negative_retries_send_down_on_the_first_failure() {
        let mut m = machine(-1, 1, 5);
        let out = run(&mut m, &[H, U]);
        assert_eq!(out[1], (Status::Unhealthy, vec![EventKind::Down]));
    }

    #[test]
    fn max_errors_stops_and_zero_never_does() {
        let mut m = machine(5, 1, 3);
        let out = run(&mut m, &[E, E, E]);
        assert_eq!(out[2], (Status::Error, vec![EventKind::Stopped]));
        let mut m = machine(5, 1, 0);
        let out = run(&mut m, &[E; 50]);
        assert!(out.iter().all(|(_, e)| !e.contains(&EventKind::Stopped)));
    }

    #[test]
    fn down_then_stopped_in_one_result_keep_their_order() {
        let mut m = machine(2, 1, 2);
        let out = run(&mut m, &[E, E]);
        assert_eq!(out[1].1, [EventKind::Down, EventKind::Stopped]);
    }

    #[test]
    fn stopped_ignores_results() {
        let mut m = machine(1, 1, 5);
        m.stop();
        assert_eq!(statuses(&mut m, &[H, U, E]), [Status::Stopped; 3]);
    }

    #[test]
    fn intervals_follow_the_phase() {
        let config = HealthCheckConfig {
            interval: Duration::from_secs(30),
            fast_interval: Some(Duration::from_secs(1)),
            down_interval: Some(Duration::from_secs(60)),
            retries: 3,
            rise: 2,
            ..Default::default()
        };
        let mut m = StateMachine::new(&config);
        let now = Instant::now();
        let mut next = |v| {
            m.observe(v, now);
            m.next_interval(&config).as_secs()
        };
        assert_eq!(next(H), 30);
        assert_eq!(next(U), 1, "confirming a fall");
        assert_eq!(next(U), 1);
        assert_eq!(next(U), 60, "down");
        assert_eq!(next(H), 1, "confirming a rise");
        assert_eq!(next(H), 30, "healthy again");
    }
}
