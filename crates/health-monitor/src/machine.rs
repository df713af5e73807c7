//! The sans-IO debouncing state machine (SPEC §3): results in, status and events out;
//! and its persisted form (SPEC §9.1): a [`MonitorState`] out, a machine restored from one.
//!
//! No clock reads, no locks, no I/O: the caller passes the verdict of each check and the
//! monotonic time it ended at, and the clocks' readings when it restores a machine.

use std::time::{Duration, SystemTime};

use health_types::{EventKind, HealthCheckConfig, MonitorState, Status, Verdict, duration_nanos};
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
/// | any       | local     | unchanged: no counter moves, no event (SPEC §9.3) |
/// | any       | stop      | Stopped |
///
/// `Unknown` and `Napping` (set from outside) take results as `Starting` does; a
/// `Stopped` machine ignores results. A `local` result ([`Verdict::Local`]: the check
/// failed on our side, out of file descriptors or memory) says nothing about the target:
/// the machine is left exactly as it was, so it neither starts nor ends an outage and
/// never counts toward `max_errors`.
///
/// Events within one result, in this order: `down` when failures reaches F for the first
/// time in an outage; `up` when the status becomes Healthy and a `down` was sent for this
/// outage; `stopped` when errors reach `max_errors`. An outage lasts from the first
/// failure after a healthy period until the status is Healthy again.
///
/// # Restarts and restores
///
/// [`restart`](Self::restart) (a stopped monitor started again) and
/// [`restore`](Self::restore) (a new process resuming from a [`MonitorState`]) keep the
/// outage: whether its `down` was sent and when it began. So a restart during an outage
/// never sends a second `down`, and the `up` that ends it reports the whole outage.
/// [`state`](Self::state) is what to persist; restoring it gives a machine that takes
/// every later result as the original would have.
#[derive(Clone, Debug)]
pub struct StateMachine {
    status: Status,
    failures: u32,
    errors: u32,
    passes: u32,
    down_sent: bool,
    /// When the current outage began, as far as the monotonic clock reaches back.
    outage_since: Option<Instant>,
    /// The part of the current outage before `outage_since`, in nanoseconds (8 bytes
    /// where a `Duration` takes 16; held at 584 years): non-zero only after a restore of
    /// an outage older than the monotonic clock (which starts near zero at boot, so a
    /// host that rebooted during an outage cannot express its start).
    outage_before: u64,
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
            outage_before: 0,
            fall: config.fall_threshold(),
            rise: config.rise_threshold(),
            max_errors: config.max_errors,
        }
    }

    /// A machine with the thresholds of `config` that resumes from `state`, persisted by
    /// an earlier process; `now` and `wall_now` are the monotonic and the wall clock read
    /// at the same moment.
    ///
    /// The outage's wall-clock start becomes a monotonic one, `now - (wall_now -
    /// outage_start)` (a start in the future counts as `now`), so that an `up` reports the
    /// whole outage. The counters are taken as far as they matter (up to F, R and
    /// `max_errors`, as [`state`](Self::state) writes them).
    ///
    /// | persisted status | restored as |
    /// |------------------|-------------|
    /// | Healthy, Unhealthy, Error | that status with its counters |
    /// | Error with errors ≥ max_errors (> 0): the monitor had stopped itself | Starting, counters at zero |
    /// | Stopped, Starting, Unknown, Napping | Starting, counters at zero |
    ///
    /// Every row keeps the outage (`down_sent` and its start): a monitor that stopped
    /// itself after max_errors, or was stopped, checks again in the new process as a
    /// restarted one does, and does not send its outage's `down` a second time.
    pub fn restore(
        config: &HealthCheckConfig,
        state: &MonitorState,
        now: Instant,
        wall_now: SystemTime,
    ) -> Self {
        let mut machine = StateMachine::new(config);
        machine.down_sent = state.down_sent;
        if let Some(start) = state.outage_start {
            // A start in the future (the wall clock stepped back) counts as now.
            let elapsed = wall_now.duration_since(start).unwrap_or(Duration::ZERO);
            match now.checked_sub(elapsed) {
                Some(since) => machine.outage_since = Some(since),
                None => {
                    machine.outage_since = Some(now);
                    machine.outage_before = duration_nanos(elapsed);
                }
            }
        }
        let stopped_itself = state.status == Status::Error
            && machine.max_errors > 0
            && state.errors >= machine.max_errors;
        match state.status {
            // Healthy, Unhealthy, Error => the same, with the counters as they were.
            Status::Healthy | Status::Unhealthy | Status::Error if !stopped_itself => {
                machine.status = state.status;
                machine.failures = state.failures.min(machine.fall);
                machine.passes = state.passes.min(machine.rise);
                machine.errors = state.errors.min(machine.max_errors);
            }
            // Stopped (by max_errors or from outside), Starting, Unknown, Napping =>
            // Starting: the new process checks again, as after a restart.
            _ => {}
        }
        machine
    }

    /// The state to persist, with the outage's wall-clock start and the last healthy
    /// result's time that the caller keeps: counters capped at what matters (`failures`
    /// at F, `passes` at R, `errors` at `max_errors`), so a monitor in a steady state
    /// yields the same state after every check.
    pub fn state(
        &self,
        outage_start: Option<SystemTime>,
        last_seen: Option<SystemTime>,
    ) -> MonitorState {
        MonitorState {
            status: self.status,
            failures: self.failures.min(self.fall),
            passes: self.passes.min(self.rise),
            errors: self.errors.min(self.max_errors),
            down_sent: self.down_sent,
            outage_start,
            last_seen,
            cert_warned: None,
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

    /// Whether an outage is going on: from the first failure after a healthy period
    /// until the status is Healthy again.
    pub fn in_outage(&self) -> bool {
        self.outage_since.is_some()
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

    /// Starts again (a stopped monitor restarted): status Starting, counters at zero; the
    /// outage is kept, so its `down` is not sent again and its `up` reports all of it.
    pub fn restart(&mut self) {
        self.status = Status::Starting;
        self.failures = 0;
        self.errors = 0;
        self.passes = 0;
    }

    /// Sets the status from outside (for example `Napping` from an idle watcher).
    pub fn set_status(&mut self, status: Status) {
        self.status = status;
    }

    /// Feeds one result that ended at `now`.
    pub fn observe(&mut self, verdict: Verdict, now: Instant) -> Transition {
        let from = self.status;
        // Any => unchanged: a stopped machine ignores results, and a local result says
        // nothing about the target.
        if from == Status::Stopped || verdict == Verdict::Local {
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
            // Returned above.
            Verdict::Local => {}
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
            // Stopped ignores results, and local results change nothing (returned above).
            (Stopped, _) | (_, Verdict::Local) => from,
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
                outage = self.outage_since.map(|since| {
                    now.saturating_duration_since(since)
                        .saturating_add(Duration::from_nanos(self.outage_before))
                });
            }
            self.outage_since = None;
            self.outage_before = 0;
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
    fn local_results_change_nothing_in_any_phase() {
        use Verdict::Local as L;
        // Healthy, confirming a fall, Unhealthy after a down, rising, Error near max_errors.
        let prefixes: [&[Verdict]; 5] = [&[H], &[H, U], &[U, U], &[U, U, H], &[E, E]];
        for prefix in prefixes {
            let mut m = machine(2, 2, 3);
            run(&mut m, prefix);
            let before = (
                m.status(),
                m.failures(),
                m.errors(),
                m.passes(),
                m.down_sent(),
            );
            let (in_outage, state) = (m.in_outage(), m.state(None, None));
            for (to, events) in run(&mut m, &[L; 20]) {
                assert_eq!((to, events), (before.0, vec![]), "{prefix:?}");
            }
            let after = (
                m.status(),
                m.failures(),
                m.errors(),
                m.passes(),
                m.down_sent(),
            );
            assert_eq!(after, before, "{prefix:?}");
            assert_eq!((m.in_outage(), m.state(None, None)), (in_outage, state));
        }
        // Interleaved, they neither break a run of errors toward max_errors nor extend it.
        let mut m = machine(10, 1, 3);
        let out = run(&mut m, &[E, L, E, L, L, E]);
        assert_eq!(out[5], (Status::Error, vec![EventKind::Stopped]));
        // From Starting: still Starting, and the first real result counts as the first.
        let mut m = machine(3, 1, 5);
        assert_eq!(
            statuses(&mut m, &[L, L, U]),
            [Status::Starting, Status::Starting, Status::Unhealthy]
        );
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

    /// The wall clock of the restore tests: some time in 2023.
    fn wall() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn persisted(status: Status, failures: u32, down_sent: bool, outage_secs: u64) -> MonitorState {
        MonitorState {
            status,
            failures,
            down_sent,
            outage_start: Some(wall() - Duration::from_secs(outage_secs)),
            last_seen: Some(wall() - Duration::from_secs(outage_secs + 30)),
            ..MonitorState::default()
        }
    }

    fn config(retries: i64, rise: u32, max_errors: u32) -> HealthCheckConfig {
        HealthCheckConfig {
            retries,
            rise,
            max_errors,
            ..Default::default()
        }
    }

    #[test]
    fn a_restored_notified_outage_sends_no_second_down_and_its_up_reports_all_of_it() {
        // Down for 5 min before the process restarted, with F = 3.
        let state = persisted(Status::Unhealthy, 3, true, 300);
        let now = Instant::now();
        let mut m = StateMachine::restore(&config(3, 1, 5), &state, now, wall());
        assert_eq!(
            (m.status(), m.failures(), m.down_sent()),
            (Status::Unhealthy, 3, true)
        );
        assert!(m.in_outage());
        for i in 1..=4 {
            let t = m.observe(U, now + Duration::from_secs(10 * i));
            assert!(t.events.is_empty(), "no second down: {t:?}");
        }
        let up = m.observe(H, now + Duration::from_secs(50));
        assert!(up.events.up);
        assert_eq!(up.outage, Some(Duration::from_secs(350)));
        assert!(!m.in_outage() && !m.down_sent());
    }

    #[test]
    fn a_restored_unhealthy_below_the_threshold_sends_down_on_the_next_failure() {
        // F = 3: the first failure made it Unhealthy from Starting; one more to go.
        let state = persisted(Status::Unhealthy, 2, false, 20);
        let now = Instant::now();
        let mut m = StateMachine::restore(&config(3, 1, 5), &state, now, wall());
        assert_eq!(
            (m.status(), m.failures(), m.down_sent()),
            (Status::Unhealthy, 2, false)
        );
        let t = m.observe(U, now + Duration::from_secs(10));
        assert_eq!(
            (t.to, t.events.iter().collect::<Vec<_>>()),
            (Status::Unhealthy, vec![EventKind::Down])
        );
        let up = m.observe(H, now + Duration::from_secs(20));
        assert_eq!(
            up.outage,
            Some(Duration::from_secs(40)),
            "from the persisted start"
        );
    }

    #[test]
    fn stopped_starting_and_self_stopped_restore_as_starting_and_keep_the_outage() {
        let now = Instant::now();
        let cases = [
            ("stopped", persisted(Status::Stopped, 3, true, 60)),
            ("starting", persisted(Status::Starting, 0, true, 60)),
            ("napping", persisted(Status::Napping, 0, true, 60)),
            (
                "stopped itself after max_errors",
                MonitorState {
                    errors: 5,
                    ..persisted(Status::Error, 3, true, 60)
                },
            ),
        ];
        for (name, state) in cases {
            let mut m = StateMachine::restore(&config(3, 2, 5), &state, now, wall());
            assert_eq!(
                (
                    m.status(),
                    m.failures(),
                    m.errors(),
                    m.passes(),
                    m.down_sent()
                ),
                (Status::Starting, 0, 0, 0, true),
                "{name}"
            );
            // One success is enough at start; it ends the kept outage with an up.
            let up = m.observe(H, now + Duration::from_secs(5));
            assert_eq!(up.to, Status::Healthy, "{name}");
            assert!(up.events.up, "{name}");
            assert_eq!(up.outage, Some(Duration::from_secs(65)), "{name}");
        }
        // An Error below max_errors stays Error with its counts.
        let state = MonitorState {
            errors: 4,
            ..persisted(Status::Error, 4, true, 60)
        };
        let m = StateMachine::restore(&config(3, 2, 5), &state, now, wall());
        assert_eq!(
            (m.status(), m.failures(), m.errors()),
            (Status::Error, 3, 4)
        );
    }

    #[test]
    fn a_self_stopped_monitor_restored_stops_again_only_after_max_errors_more() {
        let state = MonitorState {
            errors: 2,
            ..persisted(Status::Error, 2, true, 60)
        };
        let now = Instant::now();
        let mut m = StateMachine::restore(&config(2, 1, 2), &state, now, wall());
        assert_eq!(m.status(), Status::Starting);
        let out = run(&mut m, &[E, E]);
        assert_eq!(out[0], (Status::Error, vec![]));
        assert_eq!(
            out[1],
            (Status::Error, vec![EventKind::Stopped]),
            "no second down"
        );
    }

    #[test]
    fn an_outage_start_in_the_future_counts_as_now() {
        let state = MonitorState {
            outage_start: Some(wall() + Duration::from_secs(3600)),
            ..persisted(Status::Unhealthy, 3, true, 0)
        };
        let now = Instant::now();
        let mut m = StateMachine::restore(&config(3, 1, 5), &state, now, wall());
        let up = m.observe(H, now + Duration::from_secs(7));
        assert_eq!(up.outage, Some(Duration::from_secs(7)));
    }

    #[test]
    fn an_outage_older_than_the_monotonic_clock_is_reported_whole() {
        // Since the Unix epoch: before the monotonic clock's start (near zero at boot).
        // Where `Instant` cannot go below it (macOS, Windows) the part before `now` is
        // carried as a duration; Linux's signed `Instant` reaches back that far. Either
        // way the whole outage is reported.
        let state = MonitorState {
            outage_start: Some(SystemTime::UNIX_EPOCH),
            ..persisted(Status::Unhealthy, 3, true, 0)
        };
        let now = Instant::now();
        let mut m = StateMachine::restore(&config(3, 1, 5), &state, now, wall());
        let up = m.observe(H, now + Duration::from_secs(7));
        assert_eq!(up.outage, Some(Duration::from_secs(1_700_000_007)));
        // The next outage starts from nothing.
        m.observe(U, now + Duration::from_secs(10));
        m.observe(U, now + Duration::from_secs(20));
        m.observe(U, now + Duration::from_secs(30));
        let up = m.observe(H, now + Duration::from_secs(40));
        assert_eq!(up.outage, Some(Duration::from_secs(30)));
    }

    #[test]
    fn state_caps_the_counters_so_a_steady_state_persists_the_same() {
        let mut m = machine(3, 2, 4);
        let t0 = Instant::now();
        let states: Vec<_> = (0..6)
            .map(|i| {
                m.observe(U, t0 + Duration::from_secs(i));
                m.state(Some(wall()), None)
            })
            .collect();
        assert_eq!(states[2].failures, 3);
        assert!(states[2..].iter().all(|s| *s == states[2]), "{states:?}");
        let mut m = machine(3, 2, 4);
        let healthy: Vec<_> = (0..5)
            .map(|i| {
                m.observe(H, t0 + Duration::from_secs(i));
                m.state(None, Some(wall()))
            })
            .collect();
        assert_eq!(healthy[0].passes, 1);
        assert_eq!(healthy[1].passes, 2);
        assert!(healthy[1..].iter().all(|s| *s == healthy[1]), "{healthy:?}");
        let mut m = machine(10, 1, 3);
        run(&mut m, &[E, E, E, E]);
        assert_eq!(m.state(None, None).errors, 3);
    }

    #[test]
    fn restart_resets_the_counters_and_keeps_the_outage() {
        let mut m = machine(2, 1, 5);
        let t0 = Instant::now();
        m.observe(U, t0);
        assert!(m.observe(U, t0 + Duration::from_secs(10)).events.down);
        m.stop();
        m.restart();
        assert_eq!(
            (m.status(), m.failures(), m.down_sent()),
            (Status::Starting, 0, true)
        );
        for i in 2..6 {
            let t = m.observe(U, t0 + Duration::from_secs(10 * i));
            assert!(t.events.is_empty(), "no second down after a restart: {t:?}");
        }
        let up = m.observe(H, t0 + Duration::from_secs(60));
        assert!(up.events.up);
        assert_eq!(up.outage, Some(Duration::from_secs(60)), "the whole outage");
        // A healthy machine restarted: nothing special.
        m.restart();
        assert_eq!(run(&mut m, &[H]), [(Status::Healthy, vec![])]);
    }
}
