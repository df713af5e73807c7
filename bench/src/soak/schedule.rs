//! The upstreams' flapping: one deterministic, seeded schedule of up and down phases per
//! target, and the ground truth (the outages that really happened) derived from it.
//!
//! Times are milliseconds. A schedule's own times count from the moment flapping began;
//! [`Schedule::is_down`] and [`Schedule::outages`] take that moment (and the moment the
//! drain began) so that callers can work on one absolute scale.

use std::ops::RangeInclusive;

/// One outage: the target answered 503 from `start` (inclusive) to `end` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outage {
    /// When it began, in milliseconds.
    pub(crate) start: i64,
    /// When it ended, in milliseconds.
    pub(crate) end: i64,
}

impl Outage {
    /// How long it lasted, in milliseconds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> i64 {
        self.end - self.start
    }
}

/// Lengths of the phases, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Phases {
    /// The first phase, always up: monitors start against healthy targets, and the first
    /// outages are spread out instead of all starting together.
    pub(crate) first_up: RangeInclusive<i64>,
    /// Every later up phase.
    pub(crate) up: RangeInclusive<i64>,
    /// Every down phase.
    pub(crate) down: RangeInclusive<i64>,
}

impl Default for Phases {
    /// First up 10–120 s, then up 30–120 s and down 8–40 s: every outage lasts far longer
    /// than detection needs (3 failed checks 1 s apart), and every up phase far longer
    /// than recovery needs (1 passing check), so none is ambiguous.
    fn default() -> Self {
        Phases {
            first_up: 10_000..=120_000,
            up: 30_000..=120_000,
            down: 8_000..=40_000,
        }
    }
}

/// One target's planned outages, relative to the moment flapping began, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    planned: Vec<Outage>,
}

impl Schedule {
    /// The schedule of target `index` under `seed`, with outages that begin before
    /// `horizon` (the last may end after it; the drain cuts it short).
    ///
    /// The same `(seed, index)` always gives the same schedule; targets draw from
    /// independent streams, so adding targets does not change the others'.
    pub(crate) fn generate(seed: u64, index: usize, phases: &Phases, horizon: i64) -> Self {
        let mut rng = fastrand::Rng::with_seed(mix(seed, index as u64));
        let mut planned = Vec::new();
        let mut at = rng.i64(phases.first_up.clone());
        while at < horizon {
            let down = rng.i64(phases.down.clone());
            planned.push(Outage {
                start: at,
                end: at + down,
            });
            at += down + rng.i64(phases.up.clone());
        }
        Schedule { planned }
    }

    /// A schedule with exactly these outages (relative, in order, not overlapping).
    #[cfg(test)]
    pub(crate) fn from_outages(planned: Vec<Outage>) -> Self {
        Schedule { planned }
    }

    /// Whether the target is down at `now`, when flapping began at `from` and the drain
    /// (every target up from then on) began at `drain` (absolute times).
    pub(crate) fn is_down(&self, now: i64, from: i64, drain: i64) -> bool {
        if now < from || now >= drain {
            return false;
        }
        let t = now - from;
        // The last outage that began at or before `t`.
        let next = self.planned.partition_point(|o| o.start <= t);
        next > 0 && t < self.planned[next - 1].end
    }

    /// The outages that really happened (absolute times): those that began before the
    /// drain, each ending at the drain at the latest. These are exactly the periods in
    /// which [`Schedule::is_down`] is true.
    pub(crate) fn outages(&self, from: i64, drain: i64) -> Vec<Outage> {
        self.planned
            .iter()
            .map(|o| Outage {
                start: o.start + from,
                end: (o.end + from).min(drain),
            })
            .filter(|o| o.start < drain)
            .collect()
    }
}

/// SplitMix64 over the seed and the target's index: independent, well-spread seeds for
/// neighbouring indexes.
fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let phases = Phases::default();
        let a = Schedule::generate(7, 42, &phases, HOUR);
        assert_eq!(a, Schedule::generate(7, 42, &phases, HOUR));
        assert_ne!(a, Schedule::generate(8, 42, &phases, HOUR));
        assert_ne!(a, Schedule::generate(7, 43, &phases, HOUR));
    }

    #[test]
    fn phases_stay_within_their_bounds() {
        let phases = Phases::default();
        for index in 0..500 {
            let schedule = Schedule::generate(1, index, &phases, HOUR);
            let planned = &schedule.planned;
            assert!(
                !planned.is_empty(),
                "target {index} never goes down in an hour"
            );
            assert!(phases.first_up.contains(&planned[0].start));
            for outage in planned {
                assert!(phases.down.contains(&outage.len()), "{outage:?}");
                assert!(outage.start < HOUR);
            }
            for pair in planned.windows(2) {
                assert!(
                    phases.up.contains(&(pair[1].start - pair[0].end)),
                    "{pair:?}"
                );
            }
        }
    }

    #[test]
    fn nothing_begins_at_or_after_the_horizon() {
        let phases = Phases::default();
        let schedule = Schedule::generate(3, 0, &phases, 200_000);
        let last = schedule.planned.last().expect("an outage within 200 s");
        assert!(last.start < 200_000);
        // The first up phase lasts at least 10 s: nothing begins before that.
        assert!(Schedule::generate(3, 0, &phases, 10_000).planned.is_empty());
    }

    #[test]
    fn is_down_follows_the_outages_shifted_and_cut_at_the_drain() {
        let schedule = Schedule::from_outages(vec![
            Outage {
                start: 10_000,
                end: 20_000,
            },
            Outage {
                start: 50_000,
                end: 70_000,
            },
        ]);
        let from = 1_000;
        let drain = 60_000;
        let cases = [
            (0, false),      // before flapping began
            (10_999, false), // the first outage begins at 11 000 absolute
            (11_000, true),
            (20_999, true),
            (21_000, false), // ends are exclusive
            (51_000, true),
            (59_999, true),
            (60_000, false), // the drain ends the second outage early
            (65_000, false),
        ];
        for (now, down) in cases {
            assert_eq!(schedule.is_down(now, from, drain), down, "at {now}");
        }
        assert_eq!(
            schedule.outages(from, drain),
            vec![
                Outage {
                    start: 11_000,
                    end: 21_000
                },
                Outage {
                    start: 51_000,
                    end: 60_000
                },
            ]
        );
        // A drain before the second outage leaves only the first.
        assert_eq!(schedule.outages(from, 30_000).len(), 1);
    }

    #[test]
    fn the_ground_truth_is_what_the_upstream_answers() {
        let phases = Phases::default();
        let (from, drain) = (5_000, 400_000);
        for index in 0..20 {
            let schedule = Schedule::generate(11, index, &phases, drain);
            let outages = schedule.outages(from, drain);
            for now in (0..drain + 10_000).step_by(250) {
                let inside = outages.iter().any(|o| o.start <= now && now < o.end);
                assert_eq!(
                    schedule.is_down(now, from, drain),
                    inside,
                    "{index} at {now}"
                );
            }
        }
    }
}
