//! The soak's verdict: what the upstreams saw (outages, check requests) set against what
//! the receiver accepted, as counts per kind of fault. Pure: it reads no clock and does
//! no I/O, so every rule is tested on synthetic timelines.
//!
//! All times are milliseconds on the harness's one scale (since it started). A
//! notification's `time` field is whole seconds, cut down (`12:00:07.900` is sent as
//! `12:00:07`), so it can read up to a second earlier than the event.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::schedule::Outage;

/// The name of target `index`'s monitor.
pub(crate) fn monitor_name(index: usize) -> String {
    format!("t{index}")
}

/// The target index of a monitor named by [`monitor_name`].
pub(crate) fn target_index(service: &str) -> Option<usize> {
    let digits = service.strip_prefix('t')?;
    // `t01` is not a name we give; reject it rather than fold it onto `t1`.
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// How much earlier than the event its `time` field may read: the cut to whole seconds,
/// plus a little for the two clocks' reads.
const TIME_ROUNDING: i64 = 1_250;

/// A span of time, `start` inclusive, `end` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Window {
    /// Its start.
    pub(crate) start: i64,
    /// Its end.
    pub(crate) end: i64,
}

impl Window {
    /// How much of `start..end` lies within this window.
    fn overlap(&self, start: i64, end: i64) -> i64 {
        (end.min(self.end) - start.max(self.start)).max(0)
    }
}

/// The longest part of `start..end` inside one of `windows`.
fn longest_inside(start: i64, end: i64, windows: &[Window]) -> i64 {
    windows
        .iter()
        .map(|w| w.overlap(start, end))
        .max()
        .unwrap_or(0)
}

/// When one target was checked: its first and last check request, how many, and every
/// silence (time between two requests) of at least `gap` ms, which is all the verdict
/// needs to find a stuck monitor without keeping every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestLog {
    /// The first request.
    pub(crate) first: Option<i64>,
    /// The last request.
    pub(crate) last: Option<i64>,
    /// Requests seen.
    pub(crate) count: u64,
    /// Silences of at least the recording threshold, as (previous request, this one).
    pub(crate) gaps: Vec<(i64, i64)>,
}

impl RequestLog {
    /// Records a request at `now`; a silence of at least `gap` ms before it is kept.
    pub(crate) fn record(&mut self, now: i64, gap: i64) {
        if let Some(last) = self.last
            && now - last >= gap
        {
            self.gaps.push((last, now));
        }
        self.first = Some(self.first.map_or(now, |first| first.min(now)));
        // Requests on several connections may be recorded slightly out of order.
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        self.count += 1;
    }

    /// The longest silence inside `windows`, counting the time before the first request
    /// and after the last one (a target never checked is silent throughout).
    fn longest_silence(&self, windows: &[Window]) -> i64 {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return longest_inside(i64::MIN, i64::MAX, windows);
        };
        let edges = [(i64::MIN, first), (last, i64::MAX)];
        edges
            .iter()
            .chain(&self.gaps)
            .map(|&(start, end)| longest_inside(start, end, windows))
            .max()
            .unwrap_or(0)
    }
}

/// A notification the receiver accepted (answered 200).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Accepted {
    /// The `service` field.
    pub(crate) service: String,
    /// The `event` field (`down`, `up`, ...).
    pub(crate) event: String,
    /// The `time` field as sent (RFC 3339).
    pub(crate) time: String,
    /// That time on the harness's scale; `None` when it could not be read.
    pub(crate) at: Option<i64>,
    /// When it arrived.
    pub(crate) arrived: i64,
}

/// The rules' parameters: the monitors' config and the slack allowed around it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    /// The monitors' `interval`.
    pub(crate) interval: i64,
    /// The monitors' `timeout`: a `down` may come this much after its outage ended (the
    /// check began in the outage).
    pub(crate) timeout: i64,
    /// F, the monitors' `retries`.
    pub(crate) retries: i64,
    /// Added to F × interval: an outage observed for that long needs its `down`.
    pub(crate) detect_slack: i64,
    /// A silence this long (outside the excluded windows) makes a target stuck.
    pub(crate) stuck_after: i64,
}

impl Rules {
    /// The soak's monitors (interval 1 s, timeout 2 s, retries 3): an outage needs its
    /// `down` when healthd ran through 6 s of it without a break (3 checks plus 3 s for
    /// the jittered phase and a loaded machine); stuck means 3 intervals without a check.
    pub(crate) fn soak() -> Self {
        Rules {
            interval: 1_000,
            timeout: 2_000,
            retries: 3,
            detect_slack: 3_000,
            stuck_after: 3_000,
        }
    }

    /// How long an outage must be watched without a break to need its `down`.
    pub(crate) fn detect_after(&self) -> i64 {
        self.retries * self.interval + self.detect_slack
    }
}

/// Everything the verdict reads.
#[derive(Debug)]
pub(crate) struct Evidence<'a> {
    /// The rules.
    pub(crate) rules: Rules,
    /// Each target's outages (ground truth), in order.
    pub(crate) outages: &'a [Vec<Outage>],
    /// Each target's check requests.
    pub(crate) requests: &'a [RequestLog],
    /// Every notification the receiver accepted, in arrival order.
    pub(crate) accepted: &'a [Accepted],
    /// When a healthd process was running and checking: an outage needs its `down` only
    /// if one of these covers enough of it.
    pub(crate) monitored: &'a [Window],
    /// Where silences count toward `stuck` (the restart window left out).
    pub(crate) observed: &'a [Window],
    /// healthd's resident memory after the first fifth of the run, in bytes (0: unread).
    pub(crate) rss_warm: u64,
    /// healthd's resident memory at the end, in bytes (0: unread).
    pub(crate) rss_end: u64,
}

/// The counts. The first nine keys are the soak's contract; the rest break them down.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Verdict {
    /// Outages the upstreams went through.
    pub(crate) outages: u64,
    /// Distinct `down` notifications accepted (once per service, event and time).
    pub(crate) downs: u64,
    /// Distinct `up` notifications accepted.
    pub(crate) ups: u64,
    /// Expected notifications never accepted: `lost_downs + lost_ups`.
    pub(crate) lost: u64,
    /// `duplicate_deliveries + second_downs`.
    pub(crate) duplicated: u64,
    /// `up`s with no open `down` before them.
    pub(crate) orphan: u64,
    /// Targets left unchecked for `stuck_after` or longer outside the restart window.
    pub(crate) stuck: u64,
    /// healthd's resident memory after the first fifth of the run, in bytes.
    pub(crate) rss_warm: u64,
    /// healthd's resident memory at the end, in bytes.
    pub(crate) rss_end: u64,
    /// Outages watched long enough that need a `down` but got none.
    pub(crate) lost_downs: u64,
    /// Outages with a `down` (needed or received) whose `up` never came.
    pub(crate) lost_ups: u64,
    /// Extra acceptances of a message already accepted (same service, event and time).
    pub(crate) duplicate_deliveries: u64,
    /// Distinct `down`s beyond the first for one outage.
    pub(crate) second_downs: u64,
    /// Outages that needed a `down` (watched long enough).
    pub(crate) needed_downs: u64,
    /// `down`s that fall in no outage, and `up`s that came before their outage ended:
    /// false alarms (a loaded machine timing checks out, most likely). Reported, not
    /// judged: the soak is about durability.
    pub(crate) spurious: u64,
    /// Accepted notifications of other events (`stopped`, `reminder`, ...).
    pub(crate) other_events: u64,
    /// Accepted notifications for a service that is no target, or with an unreadable time.
    pub(crate) unreadable: u64,
    /// Check requests the upstreams answered.
    pub(crate) checks: u64,
    /// The longest silence of any target outside the excluded windows, in ms: exact
    /// from the request logs' recording threshold on (two intervals in the soak); below
    /// it, only the silences before a target's first check and after its last count.
    pub(crate) max_silence_ms: u64,
}

impl Verdict {
    /// Judges `evidence`.
    ///
    /// Per target, distinct notifications are walked in time order (a `down` before an
    /// `up` of the same second). A `down` belongs to the outage its time falls in (from
    /// a second before its start to `timeout` plus a second after its end) and opens an
    /// episode; an `up` closes the open episode and counts for that episode's outage if
    /// it is not earlier than the outage's end; an `up` with no open episode is an
    /// orphan (and counts as the `up` of the last outage that ended before it). Then, per outage: it needs a `down` when healthd watched it without a
    /// break for [`Rules::detect_after`]; it needs an `up` when it needs a `down` or got
    /// one (every outage ends before the drain ends).
    pub(crate) fn judge(evidence: &Evidence<'_>) -> Self {
        let rules = evidence.rules;
        let mut verdict = Verdict {
            rss_warm: evidence.rss_warm,
            rss_end: evidence.rss_end,
            ..Verdict::default()
        };

        // Distinct messages per target; repeats are duplicate deliveries.
        let mut seen = HashSet::new();
        let mut events: HashMap<usize, Vec<(i64, EventOrder)>> = HashMap::new();
        for accepted in evidence.accepted {
            if !seen.insert((&accepted.service, &accepted.event, &accepted.time)) {
                verdict.duplicate_deliveries += 1;
                continue;
            }
            let order = match accepted.event.as_str() {
                "down" => EventOrder::Down,
                "up" => EventOrder::Up,
                _ => {
                    verdict.other_events += 1;
                    continue;
                }
            };
            match order {
                EventOrder::Down => verdict.downs += 1,
                EventOrder::Up => verdict.ups += 1,
            }
            let target = target_index(&accepted.service).filter(|&i| i < evidence.outages.len());
            match (target, accepted.at) {
                (Some(target), Some(at)) => events.entry(target).or_default().push((at, order)),
                _ => verdict.unreadable += 1,
            }
        }

        for (target, outages) in evidence.outages.iter().enumerate() {
            verdict.outages += outages.len() as u64;
            let mut sequence = events.remove(&target).unwrap_or_default();
            sequence.sort_unstable();
            let mut downs = vec![0u64; outages.len()];
            let mut ups = vec![0u64; outages.len()];
            // The open episode: `Some(Some(k))` a `down` of outage k, `Some(None)` a
            // `down` outside every outage.
            let mut open: Option<Option<usize>> = None;
            for (at, order) in sequence {
                match order {
                    EventOrder::Down => {
                        let outage = outages.iter().position(|o| {
                            o.start - TIME_ROUNDING <= at && at <= o.end + rules.timeout + 1_000
                        });
                        match outage {
                            Some(k) => downs[k] += 1,
                            None => verdict.spurious += 1,
                        }
                        open = Some(outage);
                    }
                    EventOrder::Up => match open.take() {
                        None => {
                            verdict.orphan += 1;
                            // It still is the `up` of the last outage that ended before
                            // it: counted there, not lost as well.
                            if let Some(k) =
                                outages.iter().rposition(|o| o.end <= at + TIME_ROUNDING)
                            {
                                ups[k] += 1;
                            }
                        }
                        // It closes a false alarm, already counted.
                        Some(None) => {}
                        Some(Some(k)) if at + TIME_ROUNDING >= outages[k].end => ups[k] += 1,
                        // Healthy again while the target still answered 503.
                        Some(Some(_)) => verdict.spurious += 1,
                    },
                }
            }
            for (k, outage) in outages.iter().enumerate() {
                let watched = longest_inside(outage.start, outage.end, evidence.monitored);
                let needs_down = watched >= rules.detect_after();
                verdict.needed_downs += u64::from(needs_down);
                if needs_down && downs[k] == 0 {
                    verdict.lost_downs += 1;
                }
                if (needs_down || downs[k] > 0) && ups[k] == 0 {
                    verdict.lost_ups += 1;
                }
                verdict.second_downs += downs[k].saturating_sub(1);
            }
        }
        verdict.lost = verdict.lost_downs + verdict.lost_ups;
        verdict.duplicated = verdict.duplicate_deliveries + verdict.second_downs;

        for log in evidence.requests {
            verdict.checks += log.count;
            let silence = log.longest_silence(evidence.observed);
            verdict.max_silence_ms = verdict.max_silence_ms.max(silence.max(0) as u64);
            if silence >= rules.stuck_after {
                verdict.stuck += 1;
            }
        }
        verdict
    }

    /// Why the soak failed; empty when it passed.
    pub(crate) fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.outages == 0 {
            failures.push("no outage happened: nothing was tested".to_owned());
        }
        if self.lost > 0 {
            failures.push(format!(
                "lost {} notifications ({} downs, {} ups)",
                self.lost, self.lost_downs, self.lost_ups
            ));
        }
        if self.duplicated > 0 {
            failures.push(format!(
                "duplicated {} ({} repeated deliveries, {} second downs for one outage)",
                self.duplicated, self.duplicate_deliveries, self.second_downs
            ));
        }
        if self.orphan > 0 {
            failures.push(format!("{} ups without a down before them", self.orphan));
        }
        if self.stuck > 0 {
            failures.push(format!(
                "{} targets went unchecked for 3 intervals or more (longest silence {} ms)",
                self.stuck, self.max_silence_ms
            ));
        }
        if self.rss_warm == 0 || self.rss_end == 0 {
            failures.push("healthd's resident memory could not be read".to_owned());
        } else if self.rss_end * 100 > self.rss_warm * 105 {
            failures.push(format!(
                "rss_end {} is {:.1} % above rss_warm {} (5 % allowed)",
                self.rss_end,
                (self.rss_end as f64 / self.rss_warm as f64 - 1.0) * 100.0,
                self.rss_warm
            ));
        }
        failures
    }
}

/// How many services' latest accepted notification (by its time) is a `down`: outages
/// whose `up` has not come yet.
pub(crate) fn open_downs(accepted: &[Accepted]) -> usize {
    let mut latest: HashMap<&str, (i64, EventOrder)> = HashMap::new();
    for a in accepted {
        let order = match a.event.as_str() {
            "down" => EventOrder::Down,
            "up" => EventOrder::Up,
            _ => continue,
        };
        let Some(at) = a.at else { continue };
        let entry = latest.entry(&a.service).or_insert((at, order));
        *entry = (*entry).max((at, order));
    }
    latest
        .values()
        .filter(|(_, order)| *order == EventOrder::Down)
        .count()
}

/// An event's kind, ordered so that a `down` sorts before an `up` of the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EventOrder {
    Down,
    Up,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn outage(start: i64, end: i64) -> Outage {
        Outage { start, end }
    }

    fn accepted(target: usize, event: &str, at: i64) -> Accepted {
        // The time field is whole seconds, cut down, like healthd's.
        let at = at - at.rem_euclid(1_000);
        Accepted {
            service: monitor_name(target),
            event: event.to_owned(),
            time: format!("{event}@{at}"),
            at: Some(at),
            arrived: at,
        }
    }

    /// Every target checked each second from 0 to `end`.
    fn steady(targets: usize, end: i64) -> Vec<RequestLog> {
        (0..targets)
            .map(|_| {
                let mut log = RequestLog::default();
                for t in (0..=end).step_by(1_000) {
                    log.record(t, 3_000);
                }
                log
            })
            .collect()
    }

    struct Case {
        outages: Vec<Vec<Outage>>,
        requests: Vec<RequestLog>,
        accepted: Vec<Accepted>,
        monitored: Vec<Window>,
        observed: Vec<Window>,
    }

    impl Case {
        /// `targets` targets over ten minutes, watched and observed throughout.
        fn new(outages: Vec<Vec<Outage>>) -> Self {
            let end = 10 * MIN;
            let targets = outages.len();
            Case {
                outages,
                requests: steady(targets, end),
                accepted: Vec::new(),
                monitored: vec![Window { start: 0, end }],
                observed: vec![Window { start: 0, end }],
            }
        }

        fn judge(&self) -> Verdict {
            Verdict::judge(&Evidence {
                rules: Rules::soak(),
                outages: &self.outages,
                requests: &self.requests,
                accepted: &self.accepted,
                monitored: &self.monitored,
                observed: &self.observed,
                rss_warm: 100,
                rss_end: 100,
            })
        }
    }

    /// Two targets, two outages each, every notification received once.
    fn clean() -> Case {
        let mut case = Case::new(vec![
            vec![outage(MIN, MIN + 20_000), outage(4 * MIN, 4 * MIN + 9_000)],
            vec![outage(2 * MIN, 2 * MIN + 30_000), outage(5 * MIN, 6 * MIN)],
        ]);
        for (target, outages) in case.outages.clone().iter().enumerate() {
            for o in outages {
                // down on the third failed check, up on the first passing one.
                case.accepted
                    .push(accepted(target, "down", o.start + 2_400));
                case.accepted.push(accepted(target, "up", o.end + 700));
            }
        }
        case
    }

    #[test]
    fn names_round_trip_and_others_are_not_targets() {
        for i in [0, 7, 9_999] {
            assert_eq!(target_index(&monitor_name(i)), Some(i));
        }
        for name in ["", "t", "t-1", "t01", "x1", "t1x"] {
            assert_eq!(target_index(name), None, "{name:?}");
        }
    }

    #[test]
    fn a_clean_run_counts_everything_and_finds_nothing() {
        let verdict = clean().judge();
        assert_eq!(
            (
                verdict.outages,
                verdict.downs,
                verdict.ups,
                verdict.needed_downs
            ),
            (4, 4, 4, 4)
        );
        assert_eq!(
            (
                verdict.lost,
                verdict.duplicated,
                verdict.orphan,
                verdict.stuck,
                verdict.spurious
            ),
            (0, 0, 0, 0, 0)
        );
        assert_eq!(verdict.checks, 2 * 601);
        // Silences under the recording threshold are not kept.
        assert_eq!(verdict.max_silence_ms, 0);
        assert!(verdict.failures().is_empty(), "{:?}", verdict.failures());
    }

    #[test]
    fn a_missing_down_loses_it_and_orphans_its_up() {
        let mut case = clean();
        case.accepted.remove(0);
        let verdict = case.judge();
        assert_eq!(
            (verdict.lost, verdict.lost_downs, verdict.lost_ups),
            (1, 1, 0)
        );
        assert_eq!(verdict.orphan, 1);
        assert_eq!(verdict.failures().len(), 2, "{:?}", verdict.failures());
    }

    #[test]
    fn a_missing_up_is_lost() {
        let mut case = clean();
        case.accepted.remove(1);
        let verdict = case.judge();
        assert_eq!(
            (verdict.lost, verdict.lost_downs, verdict.lost_ups),
            (1, 0, 1)
        );
        assert_eq!(verdict.orphan, 0);
    }

    #[test]
    fn an_outage_never_notified_loses_both() {
        let mut case = clean();
        case.accepted.drain(0..2);
        assert_eq!(case.judge().lost, 2);
    }

    #[test]
    fn the_same_message_accepted_twice_is_duplicated_but_counted_once() {
        let mut case = clean();
        let again = case.accepted[2].clone();
        case.accepted.push(again);
        let verdict = case.judge();
        assert_eq!((verdict.downs, verdict.ups), (4, 4));
        assert_eq!((verdict.duplicated, verdict.duplicate_deliveries), (1, 1));
        assert_eq!((verdict.lost, verdict.orphan), (0, 0));
    }

    #[test]
    fn a_second_down_for_one_outage_is_duplicated() {
        // As a daemon that forgot its state would do after a restart mid-outage.
        let mut case = clean();
        case.accepted.push(accepted(0, "down", MIN + 15_000));
        let verdict = case.judge();
        assert_eq!(verdict.downs, 5);
        assert_eq!((verdict.duplicated, verdict.second_downs), (1, 1));
        assert_eq!((verdict.lost, verdict.orphan), (0, 0));
    }

    #[test]
    fn a_second_up_is_an_orphan() {
        let mut case = clean();
        case.accepted.push(accepted(0, "up", MIN + 40_000));
        let verdict = case.judge();
        assert_eq!(
            (verdict.orphan, verdict.duplicated, verdict.lost),
            (1, 0, 0)
        );
    }

    #[test]
    fn an_outage_over_the_restart_window_needs_no_down_but_one_received_needs_its_up() {
        // healthd is away from 3:00 to 3:20; the second target's outage of 3:02-3:14 is
        // watched for none of it.
        let mut case = Case::new(vec![
            vec![outage(MIN, MIN + 20_000)],
            vec![outage(3 * MIN + 2_000, 3 * MIN + 14_000)],
            vec![outage(2 * MIN + 50_000, 3 * MIN + 30_000)],
        ]);
        case.monitored = vec![
            Window {
                start: 0,
                end: 3 * MIN,
            },
            Window {
                start: 3 * MIN + 20_000,
                end: 10 * MIN,
            },
        ];
        case.accepted = vec![
            accepted(0, "down", MIN + 3_000),
            accepted(0, "up", MIN + 21_000),
            // The third target's outage was notified before the kill.
            accepted(2, "down", 2 * MIN + 53_000),
        ];
        let verdict = case.judge();
        assert_eq!(verdict.needed_downs, 2);
        // Only the third target's `up` is missing.
        assert_eq!((verdict.lost, verdict.lost_ups), (1, 1));
        case.accepted.push(accepted(2, "up", 3 * MIN + 31_000));
        assert_eq!(case.judge().lost, 0);
    }

    #[test]
    fn an_outage_watched_for_less_than_detection_needs_no_down() {
        // Watched for 5 s (< 3 × 1 s + 3 s) before healthd went away.
        let mut case = Case::new(vec![vec![outage(2 * MIN - 5_000, 2 * MIN + 10_000)]]);
        case.monitored = vec![
            Window {
                start: 0,
                end: 2 * MIN,
            },
            Window {
                start: 2 * MIN + 30_000,
                end: 10 * MIN,
            },
        ];
        let verdict = case.judge();
        assert_eq!((verdict.needed_downs, verdict.lost), (0, 0));
        // Watched for 6 s it does.
        case.outages[0][0].start = 2 * MIN - 6_000;
        assert_eq!(case.judge().lost, 2);
    }

    #[test]
    fn a_down_in_an_up_phase_is_spurious_and_its_up_is_not_an_orphan() {
        let mut case = clean();
        case.accepted.push(accepted(0, "down", 3 * MIN));
        case.accepted.push(accepted(0, "up", 3 * MIN + 5_000));
        let verdict = case.judge();
        assert_eq!(verdict.spurious, 1);
        assert_eq!(
            (verdict.lost, verdict.duplicated, verdict.orphan),
            (0, 0, 0)
        );
        // Reported, not judged.
        assert!(verdict.failures().is_empty());
    }

    #[test]
    fn an_up_before_its_outage_ended_is_spurious_and_the_outage_still_lacks_its_up() {
        let mut case = clean();
        // Target 1's second outage runs 5:00-6:00; an up at 5:30 is wrong.
        let up = case
            .accepted
            .iter()
            .position(|a| a.service == "t1" && a.event == "up" && a.at > Some(5 * MIN))
            .expect("the up of 5:00-6:00");
        case.accepted[up] = accepted(1, "up", 5 * MIN + 30_000);
        let verdict = case.judge();
        assert_eq!((verdict.spurious, verdict.lost_ups), (1, 1));
    }

    #[test]
    fn a_down_cut_to_the_second_still_matches_its_outage() {
        // The outage starts at 60.9 s; a down emitted at 60.95 s is stamped 60 s, before
        // the outage began.
        let mut case = Case::new(vec![vec![outage(MIN + 900, MIN + 20_000)]]);
        case.accepted = vec![
            accepted(0, "down", MIN + 950),
            accepted(0, "up", MIN + 20_100),
        ];
        let verdict = case.judge();
        assert_eq!((verdict.spurious, verdict.lost, verdict.orphan), (0, 0, 0));
    }

    #[test]
    fn a_late_down_within_the_timeout_matches_and_a_later_one_does_not() {
        let mut case = Case::new(vec![vec![outage(MIN, MIN + 10_000)]]);
        case.accepted = vec![
            accepted(0, "down", MIN + 12_500),
            accepted(0, "up", MIN + 13_000),
        ];
        assert_eq!(case.judge().spurious, 0);
        case.accepted[0] = accepted(0, "down", MIN + 14_500);
        case.accepted[1] = accepted(0, "up", MIN + 15_000);
        let verdict = case.judge();
        assert_eq!((verdict.spurious, verdict.lost), (1, 2));
    }

    #[test]
    fn unknown_services_and_other_events_are_counted_apart() {
        let mut case = clean();
        let mut stranger = accepted(0, "down", MIN);
        stranger.service = "elsewhere".to_owned();
        case.accepted.push(stranger);
        let mut unreadable = accepted(1, "up", MIN);
        unreadable.time = "garbage".to_owned();
        unreadable.at = None;
        case.accepted.push(unreadable);
        case.accepted.push(accepted(0, "stopped", MIN));
        let verdict = case.judge();
        assert_eq!((verdict.unreadable, verdict.other_events), (2, 1));
        assert_eq!((verdict.lost, verdict.orphan), (0, 0));
    }

    #[test]
    fn a_silence_outside_the_restart_window_is_stuck_and_inside_it_is_not() {
        let mut case = Case::new(vec![vec![], vec![], vec![]]);
        let end = 10 * MIN;
        let restart = Window {
            start: 3 * MIN,
            end: 3 * MIN + 20_000,
        };
        case.observed = vec![
            Window {
                start: 0,
                end: restart.start,
            },
            Window {
                start: restart.end,
                end,
            },
        ];
        let mut logs = Vec::new();
        // Target 0: silent 3:00-3:20 (the restart) only.
        // Target 1: silent 2:58-3:22, 2 s on each side of the window: under 3 s.
        // Target 2: silent 2:56-3:20: 4 s before the window.
        for (from, to) in [
            (3 * MIN, restart.end),
            (3 * MIN - 2_000, restart.end + 2_000),
            (3 * MIN - 4_000, restart.end),
        ] {
            let mut log = RequestLog::default();
            for t in (0..=end).step_by(1_000).filter(|t| *t <= from || *t >= to) {
                log.record(t, 3_000);
            }
            logs.push(log);
        }
        case.requests = logs;
        let verdict = case.judge();
        assert_eq!(verdict.stuck, 1);
        assert_eq!(verdict.max_silence_ms, 4_000);
    }

    #[test]
    fn a_target_never_checked_or_abandoned_early_is_stuck() {
        let mut case = Case::new(vec![vec![], vec![]]);
        case.requests[0] = RequestLog::default();
        let mut early = RequestLog::default();
        for t in (0..=5 * MIN).step_by(1_000) {
            early.record(t, 3_000);
        }
        case.requests[1] = early;
        let verdict = case.judge();
        assert_eq!(verdict.stuck, 2);
    }

    #[test]
    fn the_request_log_keeps_only_long_silences() {
        let mut log = RequestLog::default();
        for t in [0, 1_000, 2_000, 5_000, 5_100, 4_900, 9_000] {
            log.record(t, 3_000);
        }
        assert_eq!(log.first, Some(0));
        assert_eq!(log.last, Some(9_000));
        assert_eq!(log.count, 7);
        assert_eq!(log.gaps, vec![(2_000, 5_000), (5_100, 9_000)]);
    }

    #[test]
    fn open_downs_are_services_whose_latest_event_is_a_down() {
        let mut log = vec![
            accepted(0, "down", 1_000),
            accepted(0, "up", 9_000),
            accepted(1, "down", 2_000),
            // Arrived out of order: the time decides.
            accepted(2, "down", 8_000),
            accepted(2, "up", 3_000),
            accepted(3, "stopped", 4_000),
        ];
        assert_eq!(open_downs(&log), 2);
        log.push(accepted(1, "up", 2_000)); // same second: the up is later
        assert_eq!(open_downs(&log), 1);
    }

    #[test]
    fn memory_must_stay_within_five_percent() {
        let verdict = |rss_warm, rss_end| Verdict {
            outages: 1,
            rss_warm,
            rss_end,
            ..Verdict::default()
        };
        assert!(verdict(1_000, 1_050).failures().is_empty());
        assert!(verdict(1_000, 900).failures().is_empty());
        let failures = verdict(1_000, 1_051).failures();
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("rss_end"), "{failures:?}");
        assert_eq!(verdict(0, 1_000).failures().len(), 1);
    }

    #[test]
    fn no_outage_at_all_fails() {
        let verdict = Case::new(vec![vec![]]).judge();
        assert_eq!(verdict.outages, 0);
        let failures = verdict.failures();
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("no outage"), "{failures:?}");
    }
}
