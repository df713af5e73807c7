//! Property tests of the state machine over random result sequences.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use health_monitor::StateMachine;
use health_types::{EventKind, HealthCheckConfig, MonitorState, Status, Verdict};
use proptest::prelude::*;
use tokio::time::Instant;

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Healthy),
        Just(Verdict::Unhealthy),
        Just(Verdict::Error),
        Just(Verdict::Local)
    ]
}

/// The outcomes SPEC §3's table allows for `from` and `verdict`.
fn allowed(from: Status, verdict: Verdict) -> &'static [Status] {
    use Status::*;
    match (from, verdict) {
        (Starting, Verdict::Healthy) => &[Healthy],
        (Starting, Verdict::Unhealthy) => &[Unhealthy],
        (Starting, Verdict::Error) => &[Error],
        (Healthy, Verdict::Healthy) => &[Healthy],
        (Healthy, Verdict::Unhealthy) => &[Healthy, Unhealthy],
        (Healthy, Verdict::Error) => &[Error],
        (Unhealthy, Verdict::Healthy) => &[Healthy, Unhealthy],
        (Unhealthy, Verdict::Unhealthy) => &[Unhealthy],
        (Unhealthy, Verdict::Error) => &[Error],
        (Error, Verdict::Healthy) => &[Healthy, Error],
        (Error, Verdict::Unhealthy) => &[Unhealthy],
        (Error, Verdict::Error) => &[Error],
        _ => &[],
    }
}

/// Length of the run at the end of `seen` whose verdicts satisfy `pred`.
fn trailing(seen: &[Verdict], pred: impl Fn(Verdict) -> bool) -> u32 {
    seen.iter().rev().take_while(|v| pred(**v)).count() as u32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn sequences_keep_the_invariants(
        retries in -2i64..6,
        rise in 1u32..4,
        max_errors in 0u32..6,
        verdicts in prop::collection::vec(verdict(), 1..80),
    ) {
        let config = HealthCheckConfig { retries, rise, max_errors, ..Default::default() };
        let fall = config.fall_threshold();
        let mut machine = StateMachine::new(&config);
        let t0 = Instant::now();
        let mut seen = Vec::new();
        let mut down_open = false;
        let mut downs = 0;
        let mut ups = 0;
        for (i, verdict) in verdicts.iter().copied().enumerate() {
            let from = machine.status();
            let counters = (machine.failures(), machine.errors(), machine.passes());
            let t = machine.observe(verdict, t0 + Duration::from_secs(i as u64));
            if verdict == Verdict::Local {
                // Any => unchanged: a local result says nothing about the target.
                prop_assert_eq!(t.to, from);
                prop_assert!(t.events.is_empty());
                prop_assert_eq!((machine.failures(), machine.errors(), machine.passes()), counters);
                continue;
            }
            seen.push(verdict);

            prop_assert!(allowed(from, verdict).contains(&t.to), "{from} + {verdict:?} -> {}", t.to);
            prop_assert_eq!(machine.failures(), trailing(&seen, |v| v != Verdict::Healthy));
            prop_assert_eq!(machine.passes(), trailing(&seen, |v| v == Verdict::Healthy));
            prop_assert_eq!(machine.errors(), trailing(&seen, |v| v == Verdict::Error));
            if t.to == Status::Unhealthy && from == Status::Healthy {
                prop_assert!(machine.failures() >= fall);
            }

            for kind in t.events.iter() {
                match kind {
                    EventKind::Down => {
                        prop_assert!(!down_open, "a second down in one outage");
                        prop_assert_eq!(machine.failures(), fall, "down exactly when failures reach F");
                        down_open = true;
                        downs += 1;
                    }
                    EventKind::Up => {
                        prop_assert!(down_open, "an up without a down");
                        prop_assert_eq!(t.to, Status::Healthy);
                        down_open = false;
                        ups += 1;
                    }
                    EventKind::Stopped => {
                        prop_assert!(max_errors > 0 && machine.errors() >= max_errors);
                    }
                    EventKind::CertExpiry | EventKind::Reminder | EventKind::Flapping => prop_assert!(false, "the state machine makes only down, up and stopped"),
                }
            }
            // A recovery to Healthy after a down always reports it.
            if t.to == Status::Healthy && from != Status::Healthy {
                prop_assert!(!down_open);
            }
            if t.events.stopped {
                break;
            }
        }
        prop_assert!(ups <= downs && downs <= ups + 1);
    }

    /// A process that persists its machine's state after result `split` and a new one
    /// that restores it take every later result exactly as one process would have: same
    /// status, events, outage lengths and persisted states.
    #[test]
    fn persisting_and_restoring_changes_nothing_that_follows(
        verdicts in prop::collection::vec(verdict(), 1..60),
        split in 0usize..60,
        retries in -2i64..6,
        rise in 1u32..4,
        max_errors in 0u32..6,
    ) {
        let config = HealthCheckConfig { retries, rise, max_errors, ..Default::default() };
        let split = split.min(verdicts.len());
        let t0 = Instant::now();
        let wall0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Result i ends at t0 + i s on the monotonic clock and wall0 + i s on the wall.
        let at = |i: usize| Duration::from_secs(i as u64);
        let mut whole = Tracked::new(StateMachine::new(&config));
        let mut before = Tracked::new(StateMachine::new(&config));
        for (i, verdict) in verdicts[..split].iter().copied().enumerate() {
            let stopped = before.observe(verdict, t0 + at(i), wall0 + at(i)).events.stopped;
            whole.observe(verdict, t0 + at(i), wall0 + at(i));
            if stopped {
                // A monitor that stopped itself restores as a restarted one: not the same.
                return Ok(());
            }
        }
        let state = before.state();
        // The new process restores between the last result and the next.
        let restored_at = at(split).saturating_sub(Duration::from_millis(500));
        let (now, wall_now) = (t0 + restored_at, wall0 + restored_at);
        let mut after = Tracked {
            machine: StateMachine::restore(&config, &state, now, wall_now),
            outage_start: state.outage_start,
        };
        prop_assert_eq!(after.state(), state);
        for (i, verdict) in verdicts.iter().copied().enumerate().skip(split) {
            let (t, wall) = (t0 + at(i), wall0 + at(i));
            let expected = whole.observe(verdict, t, wall);
            let got = after.observe(verdict, t, wall);
            prop_assert_eq!(got, expected, "result {}", i);
            prop_assert_eq!(after.state(), whole.state(), "result {}", i);
            if expected.events.stopped {
                break;
            }
        }
    }
}

/// A machine with the wall-clock start of its outage, tracked as the monitor does.
struct Tracked {
    machine: StateMachine,
    outage_start: Option<SystemTime>,
}

impl Tracked {
    fn new(machine: StateMachine) -> Self {
        Tracked {
            machine,
            outage_start: None,
        }
    }

    fn observe(
        &mut self,
        verdict: Verdict,
        now: Instant,
        wall: SystemTime,
    ) -> health_monitor::Transition {
        let t = self.machine.observe(verdict, now);
        self.outage_start = if self.machine.in_outage() {
            self.outage_start.or(Some(wall))
        } else {
            None
        };
        t
    }

    fn state(&self) -> MonitorState {
        self.machine.state(self.outage_start, None)
    }
}
