//! The dispatcher's rules under tokio's paused clock, with a scripted fake sender under a
//! real webhook notifier: backoff timing, `Retry-After`, permanent failures, timeouts,
//! ordering, overflow, routing and shutdown.

use std::{sync::Arc, time::Duration};

use health_notify::{Dispatcher, DispatcherBuilder, Message, NotifyError, RetryPolicy, Stats};
use health_types::{EventKind, EventSink, TokioClock};
use tokio::time::Instant;

use crate::support::{DRAIN, Fake, FakeSend, event, exact, fake_webhook, secs, t0};

fn custom(title: &str) -> Message {
    Message::custom(title, t0())
}

/// The default age limit of a message.
const DAY: Duration = Duration::from_secs(86_400);

/// A dispatcher whose one notifier, the webhook "hook", sends through `http`.
fn hook(http: &Arc<FakeSend>) -> DispatcherBuilder {
    Dispatcher::builder().notifier(fake_webhook("hook", Arc::clone(http)))
}

/// Starts `builder`'s dispatcher, sends `messages` and shuts it down within [`DRAIN`].
async fn drained(
    builder: DispatcherBuilder,
    messages: impl IntoIterator<Item = Message>,
) -> Dispatcher {
    let dispatcher = builder.start().unwrap();
    for message in messages {
        dispatcher.send(message);
    }
    assert!(dispatcher.shutdown(DRAIN).await.drained);
    dispatcher
}

/// One message against scripted answers, with the default policy without jitter (or
/// another `max_age`), the default 10 s timeout and a wall clock at t0: when each attempt
/// came (seconds after the send) and the counters once drained.
///
/// These replace the attempt-count schedules: the 5xx row gave up after 5 attempts and
/// now gives up at `max_age`; Retry-After dates were capped at 5 min and now wait as
/// asked, up to the age limit.
#[tokio::test(start_paused = true)]
async fn retry_schedules() {
    let retry_at = |s| Fake::Status(503, Some(httpdate::fmt_http_date(t0() + secs(s))));
    let retry_in = |value: &str| Fake::Status(429, Some(value.to_owned()));
    let counts = |sent, failed, retried| Stats {
        sent,
        failed,
        retried,
        dropped: 0,
    };
    let cases = [
        (
            "5xx backs off from 1 s, doubling, until max_age (20 s here), then gives up",
            secs(20),
            vec![Fake::Status(500, None); 6],
            vec![0.0, 1.0, 3.0, 7.0, 15.0, 20.0],
            counts(0, 1, 5),
        ),
        (
            "max_age zero: one attempt",
            Duration::ZERO,
            vec![Fake::Status(503, None)],
            vec![0.0],
            counts(0, 1, 0),
        ),
        (
            "Retry-After seconds are waited",
            DAY,
            vec![retry_in("7")],
            vec![0.0, 7.0],
            counts(1, 0, 1),
        ),
        (
            "Retry-After with a fraction: 1.5 s",
            DAY,
            vec![retry_in("1.5")],
            vec![0.0, 1.5],
            counts(1, 0, 1),
        ),
        (
            "a Retry-After shorter than the backoff waits the backoff",
            DAY,
            vec![
                Fake::Status(500, None),
                Fake::Status(500, None),
                retry_in("1"),
            ],
            vec![0.0, 1.0, 3.0, 7.0],
            counts(1, 0, 3),
        ),
        (
            "Retry-After dates use the clock: 30 s as asked, 2 h past max_backoff as asked",
            DAY,
            vec![retry_at(30), retry_at(7230)],
            vec![0.0, 30.0, 7230.0],
            counts(1, 0, 2),
        ),
        (
            "a Retry-After date past max_age: the last attempt at max_age, then give up",
            DAY,
            vec![retry_at(30), retry_at(90_000), Fake::Status(503, None)],
            vec![0.0, 30.0, 86_400.0],
            counts(0, 1, 2),
        ),
        (
            "408 and transport errors are retried",
            DAY,
            vec![
                Fake::Status(408, None),
                Fake::Refused,
                Fake::Status(200, None),
            ],
            vec![0.0, 1.0, 3.0],
            counts(1, 0, 2),
        ),
        (
            "a hung request times out after the default 10 s, then backs off 1 s",
            DAY,
            vec![Fake::Hang],
            vec![0.0, 11.0],
            counts(1, 0, 1),
        ),
    ];
    for (name, max_age, script, times, stats) in cases {
        let http = FakeSend::new(script);
        let clock = Arc::new(TokioClock::starting_at(t0()));
        let policy = RetryPolicy { max_age, ..exact() };
        let builder = hook(&http).retry(policy).clock(clock);
        let dispatcher = drained(builder, [custom(name)]).await;
        let times: Vec<_> = times.into_iter().map(Duration::from_secs_f64).collect();
        assert_eq!(http.times(), times, "{name}");
        assert_eq!(dispatcher.stats(), stats, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn default_backoff_has_ten_percent_jitter() {
    let http = FakeSend::new([503, 502, 500].map(|status| Fake::Status(status, None)));
    let dispatcher = drained(hook(&http), [custom("flaky")]).await;
    let times = http.times();
    assert_eq!(times.len(), 4);
    let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, nominal) in gaps.iter().zip([1000, 2000, 4000]) {
        let low = Duration::from_millis(nominal * 9 / 10);
        let high = Duration::from_millis(nominal * 11 / 10);
        assert!(
            (low..=high).contains(gap),
            "{gap:?} not within 10% of {nominal} ms"
        );
    }
    assert_eq!(dispatcher.stats().sent, 1);
    assert_eq!(dispatcher.stats().retried, 3);
}

#[tokio::test(start_paused = true)]
async fn client_errors_fail_at_once() {
    for status in [400, 401, 404, 422] {
        let http = FakeSend::new(vec![Fake::Status(status, None)]);
        let dispatcher = drained(hook(&http), [custom("bad")]).await;
        assert_eq!(http.count(), 1, "{status} must not be retried");
        let failed_once = Stats {
            failed: 1,
            ..Stats::default()
        };
        assert_eq!(dispatcher.stats(), failed_once);
    }
}

#[tokio::test(start_paused = true)]
async fn a_down_that_needs_retries_still_precedes_its_up() {
    let http = FakeSend::new([500, 503, 200, 200].map(|status| Fake::Status(status, None)));
    let dispatcher = hook(&http).start().unwrap();
    dispatcher.notify(event(EventKind::Down, "api"));
    dispatcher.notify(event(EventKind::Up, "api"));
    dispatcher.shutdown(DRAIN).await;
    assert_eq!(
        http.titles(),
        [
            "Service down: api",
            "Service down: api",
            "Service down: api",
            "Service up: api"
        ]
    );
    assert_eq!(dispatcher.stats().sent, 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_never_blocks_and_drops_the_oldest() {
    let http = FakeSend::gated();
    let dispatcher = hook(&http).queue_capacity(3).start().unwrap();
    dispatcher.send(custom("m0"));
    // Let the delivery task take m0 and get stuck at the closed gate (bounded).
    for _ in 0..100 {
        if http.count() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(http.count(), 1, "m0 is in flight");
    let before = Instant::now();
    for i in 1..=10 {
        dispatcher.send(custom(&format!("m{i}")));
    }
    assert_eq!(Instant::now(), before, "sending took no time");
    assert_eq!(dispatcher.stats().dropped, 7);
    http.open(100);
    dispatcher.shutdown(DRAIN).await;
    assert_eq!(http.titles(), ["m0", "m8", "m9", "m10"]);
    assert_eq!(
        dispatcher.stats(),
        Stats {
            sent: 4,
            dropped: 7,
            ..Stats::default()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn to_lists_pick_notifiers_by_name() {
    let a = FakeSend::new([]);
    let b = FakeSend::new([]);
    let both = [("a", &a), ("b", &b)].map(|(name, http)| fake_webhook(name, Arc::clone(http)));
    let dispatcher = Dispatcher::builder().notifiers(both).start().unwrap();
    dispatcher.send(custom("for b").with_to(["b"]));
    dispatcher.send(custom("for all"));
    dispatcher.send(custom("for nobody").with_to(["c"]));
    dispatcher
        .targeted(["a"])
        .unwrap()
        .notify(event(EventKind::Down, "x"));
    dispatcher
        .targeted(Vec::<String>::new())
        .unwrap()
        .notify(event(EventKind::Up, "y"));
    assert!(matches!(
        dispatcher.targeted(["a", "zzz"]),
        Err(NotifyError::UnknownNotifier(name)) if name == "zzz"
    ));
    dispatcher.shutdown(DRAIN).await;
    assert_eq!(a.titles(), ["for all", "Service down: x", "Service up: y"]);
    // Messages without a service go out one after the other, so "for all" waits for
    // "for b" while the event of service y, queued after it, goes out meanwhile.
    assert_eq!(b.titles(), ["for b", "Service up: y", "for all"]);
    let per: Vec<_> = dispatcher
        .notifier_stats()
        .into_iter()
        .map(|s| (s.name, s.provider, s.stats.sent))
        .collect();
    assert_eq!(
        per,
        [
            ("a".to_owned(), "webhook", 3),
            ("b".to_owned(), "webhook", 3)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_queued_messages_and_retries() {
    let http = FakeSend::new(vec![Fake::Status(500, None)]);
    let dispatcher = hook(&http).retry(exact()).start().unwrap();
    for i in 0..3 {
        dispatcher.send(custom(&format!("q{i}")));
    }
    let start = Instant::now();
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained);
    assert_eq!(report.abandoned, 0);
    assert_eq!(http.titles(), ["q0", "q0", "q1", "q2"]);
    assert_eq!(
        Instant::now() - start,
        secs(1),
        "returns as soon as drained"
    );
    // After shutdown, messages are dropped and counted, and shutdown is idempotent.
    dispatcher.send(custom("late"));
    assert_eq!(dispatcher.stats().dropped, 1);
    assert!(dispatcher.shutdown(secs(1)).await.drained);
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_what_is_left_at_the_deadline() {
    let http = FakeSend::new(vec![Fake::Hang]);
    let dispatcher = hook(&http)
        .request_timeout(Duration::from_secs(3600))
        .start()
        .unwrap();
    for i in 0..3 {
        dispatcher.send(custom(&format!("s{i}")));
    }
    let start = Instant::now();
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;
    assert_eq!(Instant::now() - start, secs(5));
    assert!(!report.drained);
    assert_eq!(report.abandoned, 3, "one in flight, two queued");
    assert_eq!(report.kept, 0, "no durable outbox");
    assert_eq!(dispatcher.stats().dropped, 3);
}

#[tokio::test(start_paused = true)]
async fn duplicate_names_and_bad_policies_are_rejected() {
    let http = FakeSend::new([]);
    let err = Dispatcher::builder()
        .notifier(fake_webhook("same", Arc::clone(&http)))
        .notifier(fake_webhook("same", Arc::clone(&http)))
        .start()
        .unwrap_err();
    assert!(
        matches!(err, NotifyError::DuplicateName(ref n) if n == "same"),
        "{err}"
    );
    let err = Dispatcher::builder()
        .retry(RetryPolicy {
            base: Duration::ZERO,
            ..RetryPolicy::default()
        })
        .start()
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid `base`: must be more than zero");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_lets_queued_messages_finish() {
    let http = FakeSend::new([]);
    let dispatcher = hook(&http).start().unwrap();
    dispatcher.send(custom("last words"));
    drop(dispatcher);
    // Bounded: the delivery task needs a few polls at most.
    for _ in 0..100 {
        if http.count() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(http.titles(), ["last words"]);
}
