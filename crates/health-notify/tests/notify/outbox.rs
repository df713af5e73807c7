//! The dispatcher delivering from an outbox (SPEC §9.1) under tokio's paused clock, with
//! a scripted fake sender and a fake store-like outbox: nothing is lost while a receiver
//! is away, give-ups at `max_age` and on permanent failures, the `Note` on an `up` whose
//! `down` was given up, notifiers that do not wait for each other, entries left from
//! before a restart, outbox failures, `wake`, the backlog and shutdown.

use std::{sync::Arc, time::Duration};

use health_notify::{Dispatcher, Message, NotifierBacklog, RetryPolicy, Stats};
use health_types::{EventKind, EventSink, Outbox, TokioClock};
use serde_json::{Value, json};

use crate::support::{
    DRAIN, Fake, FakeOutbox, FakeSend, Logs, durable, event, exact, fake_webhook, outage_event,
    outage_start, secs, t0,
};

fn at(list: &[u64]) -> Vec<Duration> {
    list.iter().copied().map(secs).collect()
}

/// The field names of a default webhook body, in order.
fn field_names(body: &Value) -> Vec<String> {
    let fields = body["fields"].as_array().unwrap();
    let names = fields
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned());
    names.collect()
}

/// Lets the delivery tasks run what is ready, without moving the clock.
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_receiver_away_for_five_minutes_loses_nothing() {
    let http = FakeSend::refusing_for(secs(300));
    let outbox = FakeOutbox::new();
    outbox.insert_api_outage(&[(1, EventKind::Down), (2, EventKind::Up)]);
    let policy = RetryPolicy {
        max_backoff: secs(60),
        ..exact()
    };
    let dispatcher = durable(&http, &outbox).retry(policy).start().unwrap();
    tokio::time::sleep(secs(400)).await;
    // 1 s doubling, capped at one minute, until the receiver is back at 300 s; the up
    // waited for its down and goes out right after it.
    assert_eq!(
        http.times(),
        at(&[0, 1, 3, 7, 15, 31, 63, 123, 183, 243, 303, 303])
    );
    let titles = http.titles();
    assert!(
        titles[..11].iter().all(|t| t == "Service down: api"),
        "{titles:?}"
    );
    assert_eq!(titles[11], "Service up: api");
    assert!(!field_names(&http.bodies()[11]).contains(&"Note".to_owned()));
    assert_eq!(outbox.done(), [(1, None), (2, None)]);
    assert_eq!(
        dispatcher.stats(),
        Stats {
            sent: 2,
            failed: 0,
            retried: 10,
            dropped: 0
        }
    );
    assert!(dispatcher.shutdown(DRAIN).await.drained);
}

#[tokio::test(start_paused = true)]
async fn a_message_still_failing_at_max_age_is_given_up_logged_and_counted() {
    let (logs, _guard) = Logs::capture();
    let http = FakeSend::refusing_for(DRAIN);
    let outbox = FakeOutbox::new();
    outbox.insert_api_outage(&[(1, EventKind::Down)]);
    let policy = RetryPolicy {
        max_age: secs(600),
        ..exact()
    };
    let dispatcher = durable(&http, &outbox).retry(policy).start().unwrap();
    tokio::time::sleep(secs(700)).await;
    // The wait after 511 s would be 300 s; the last attempt comes at the age limit.
    assert_eq!(
        http.times(),
        at(&[0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 600])
    );
    let reason = "gave up after 10m: request failed: connection refused";
    assert_eq!(outbox.done(), [(1, Some(reason.to_owned()))]);
    let stats = dispatcher.stats();
    assert_eq!((stats.sent, stats.failed, stats.retried), (0, 1, 10));
    let given_up = logs.with_message("notification given up");
    assert_eq!(given_up.len(), 1, "{given_up:?}");
    let log = &given_up[0];
    assert_eq!(log.level, tracing::Level::WARN);
    assert_eq!(
        [
            log.field("notifier"),
            log.field("service"),
            log.field("event"),
            log.field("reason")
        ],
        ["hook", "api", "down", reason]
    );
    assert_eq!(
        logs.with_message("notification failed; will retry").len(),
        10
    );
    assert!(dispatcher.shutdown(DRAIN).await.drained);
}

#[tokio::test(start_paused = true)]
async fn a_client_error_gives_up_at_once_and_the_next_entry_follows() {
    let http = FakeSend::new([Fake::Status(404, None)]);
    let outbox = FakeOutbox::new();
    outbox.insert(1, "hook", event(EventKind::Down, "api"));
    outbox.insert(2, "hook", event(EventKind::Stopped, "api"));
    let dispatcher = durable(&http, &outbox).start().unwrap();
    settle().await;
    assert_eq!(http.times(), at(&[0, 0]));
    assert_eq!(
        outbox.done(),
        [
            (1, Some("receiver answered HTTP 404".to_owned())),
            (2, None)
        ]
    );
    let stats = dispatcher.stats();
    assert_eq!((stats.sent, stats.failed, stats.retried), (1, 1, 0));
    dispatcher.shutdown(DRAIN).await;
}

#[tokio::test(start_paused = true)]
async fn an_up_after_a_given_up_down_carries_the_note() {
    let http = FakeSend::new([Fake::Status(400, None)]);
    let outbox = FakeOutbox::new();
    let other_start = t0() + secs(600);
    for (id, kind, start) in [
        (1, EventKind::Down, outage_start()),
        (2, EventKind::Up, outage_start()),
        (3, EventKind::Down, other_start),
        (4, EventKind::Up, other_start),
    ] {
        outbox.insert(id, "hook", outage_event(kind, "api", start));
    }
    let dispatcher = durable(&http, &outbox).start().unwrap();
    settle().await;
    let bodies = http.bodies();
    assert_eq!(bodies.len(), 4);
    let up_fields = ["Service", "Time", "URL", "Latency", "Downtime"];
    assert_eq!(
        field_names(&bodies[1]),
        ["Service", "Time", "URL", "Latency", "Downtime", "Note"]
    );
    assert_eq!(
        bodies[1]["fields"][5],
        json!({"name": "Note", "value": "down notification was not delivered"})
    );
    // The next outage's down was delivered: its up has no note.
    assert_eq!(field_names(&bodies[3]), up_fields);
    dispatcher.shutdown(DRAIN).await;
}

#[tokio::test(start_paused = true)]
async fn without_a_durable_outbox_an_up_after_a_given_up_down_carries_the_note_too() {
    let http = FakeSend::new([Fake::Status(403, None)]);
    let dispatcher = Dispatcher::builder()
        .notifier(fake_webhook("hook", Arc::clone(&http)))
        .start()
        .unwrap();
    dispatcher.notify(outage_event(EventKind::Down, "api", outage_start()));
    dispatcher.notify(outage_event(EventKind::Up, "api", outage_start()));
    dispatcher.notify(outage_event(EventKind::Up, "web", outage_start()));
    assert!(dispatcher.shutdown(DRAIN).await.drained);
    let bodies = http.bodies();
    // The services go out independently: find each one's `up`.
    let up = |service: &str| {
        let found = bodies
            .iter()
            .find(|body| body["service"] == service && body["event"] == "up");
        field_names(found.unwrap()).last().cloned()
    };
    assert_eq!(bodies.len(), 3);
    assert_eq!(up("api").as_deref(), Some("Note"));
    assert_eq!(
        up("web").as_deref(),
        Some("Downtime"),
        "another service's outage"
    );
}

#[tokio::test(start_paused = true)]
async fn notifiers_deliver_independently() {
    let away = FakeSend::refusing_for(secs(600));
    let fine = FakeSend::new([]);
    let outbox = FakeOutbox::new();
    outbox.insert(1, "away", event(EventKind::Down, "api"));
    outbox.insert(2, "fine", event(EventKind::Down, "api"));
    outbox.insert(3, "away", event(EventKind::Up, "api"));
    outbox.insert(4, "fine", event(EventKind::Up, "api"));
    let dispatcher = Dispatcher::builder()
        .notifier(fake_webhook("away", Arc::clone(&away)))
        .notifier(fake_webhook("fine", Arc::clone(&fine)))
        .outbox(Arc::clone(&outbox) as Arc<dyn Outbox>)
        .retry(exact())
        .clock(Arc::new(TokioClock::starting_at(t0())))
        .start()
        .unwrap();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(
        fine.times(),
        at(&[0, 0]),
        "not held up by the other notifier"
    );
    assert_eq!(fine.titles(), ["Service down: api", "Service up: api"]);
    assert_eq!(outbox.pending_ids("away"), [1, 3]);
    tokio::time::sleep(secs(1200)).await;
    assert_eq!(away.titles().last().unwrap(), "Service up: api");
    assert_eq!(outbox.pending_ids("away"), Vec::<u64>::new());
    let per: Vec<_> = dispatcher
        .notifier_stats()
        .into_iter()
        .map(|s| (s.name, s.stats.sent, s.stats.retried > 0))
        .collect();
    assert_eq!(
        per,
        [("away".to_owned(), 2, true), ("fine".to_owned(), 2, false)]
    );
    dispatcher.shutdown(DRAIN).await;
}

#[tokio::test(start_paused = true)]
async fn entries_left_from_before_a_restart_go_out_at_start_in_id_order() {
    let http = FakeSend::new([]);
    let outbox = FakeOutbox::new();
    for id in [7, 3, 5] {
        outbox.insert(id, "hook", event(EventKind::Down, &format!("s{id}")));
    }
    outbox.insert(4, "retired", event(EventKind::Down, "s4"));
    let dispatcher = durable(&http, &outbox).start().unwrap();
    // No wake: a task looks once when it starts.
    settle().await;
    assert_eq!(
        http.titles(),
        ["Service down: s3", "Service down: s5", "Service down: s7"]
    );
    let done: Vec<_> = outbox.done().into_iter().map(|(id, _)| id).collect();
    assert_eq!(done, [3, 5, 7]);
    assert_eq!(
        outbox.pending_ids("retired"),
        [4],
        "not a configured notifier"
    );
    dispatcher.shutdown(DRAIN).await;
}

#[tokio::test(start_paused = true)]
async fn outbox_failures_are_waited_out_without_losing_or_repeating_the_entry() {
    let (logs, _guard) = Logs::capture();
    let http = FakeSend::new([]);
    let outbox = FakeOutbox::new();
    outbox.insert(1, "hook", event(EventKind::Down, "api"));
    outbox.fail_reads(3);
    outbox.fail_marks(2);
    let dispatcher = durable(&http, &outbox).start().unwrap();
    tokio::time::sleep(secs(60)).await;
    // Reads at 0, 1 and 3 s fail; the one at 7 s finds the entry.
    assert_eq!(
        http.times(),
        at(&[7]),
        "sent once, though marking it failed twice"
    );
    assert_eq!(outbox.done(), [(1, None)]);
    assert_eq!(outbox.failed_calls(), 5);
    assert_eq!(
        logs.with_message("could not read the outbox; will try again")
            .len(),
        3
    );
    assert_eq!(
        logs.with_message("could not record the delivery in the outbox; will try again")
            .len(),
        2
    );
    assert_eq!(dispatcher.stats().sent, 1);
    assert!(dispatcher.shutdown(DRAIN).await.drained);
}

#[tokio::test(start_paused = true)]
async fn wake_makes_a_notifier_look_at_the_outbox_now() {
    let http = FakeSend::new([]);
    let outbox = FakeOutbox::new();
    let dispatcher = durable(&http, &outbox).start().unwrap();
    tokio::time::sleep(secs(3600)).await;
    outbox.insert(1, "hook", event(EventKind::Down, "api"));
    tokio::time::sleep(secs(3600)).await;
    assert_eq!(http.count(), 0, "the outbox is not polled");
    dispatcher.wake(["nobody", "hook"]);
    settle().await;
    assert_eq!(http.times(), at(&[7200]));
    assert_eq!(outbox.done(), [(1, None)]);
    dispatcher.shutdown(DRAIN).await;
}

#[tokio::test(start_paused = true)]
async fn with_a_durable_outbox_notify_is_ignored_and_send_still_delivers() {
    let (logs, _guard) = Logs::capture();
    let http = FakeSend::new([]);
    let outbox = FakeOutbox::new();
    let dispatcher = durable(&http, &outbox).start().unwrap();
    dispatcher.notify(event(EventKind::Down, "api"));
    let sink = dispatcher.targeted(["hook"]).unwrap();
    sink.notify(event(EventKind::Up, "api"));
    dispatcher.send(Message::custom("hello", t0()));
    settle().await;
    assert_eq!(http.titles(), ["hello"]);
    assert_eq!(
        dispatcher.stats(),
        Stats {
            sent: 1,
            ..Stats::default()
        }
    );
    let ignored = "notify() ignored: this dispatcher delivers from a durable outbox, which \
                   the store fills; monitors report to the store";
    assert_eq!(logs.with_message(ignored).len(), 1, "warned once");
    assert_eq!(
        logs.with_message("notify() ignored").len(),
        1,
        "then quietly"
    );
    dispatcher.shutdown(DRAIN).await;
}

#[tokio::test(start_paused = true)]
async fn the_backlog_counts_pending_entries_and_the_oldest_per_notifier() {
    let stuck = FakeSend::gated();
    let fine = FakeSend::new([]);
    let outbox = FakeOutbox::new();
    outbox.insert_at(1, "stuck", event(EventKind::Down, "api"), t0() - secs(120));
    outbox.insert_at(2, "stuck", event(EventKind::Up, "api"), t0() - secs(60));
    let dispatcher = Dispatcher::builder()
        .notifier(fake_webhook("stuck", Arc::clone(&stuck)))
        .notifier(fake_webhook("fine", Arc::clone(&fine)))
        .outbox(Arc::clone(&outbox) as Arc<dyn Outbox>)
        .clock(Arc::new(TokioClock::starting_at(t0())))
        .start()
        .unwrap();
    // A ready message about the same service waits in memory for "stuck" too.
    let hello = Message::custom("hello", t0()).with_service("api");
    dispatcher.send(hello.with_to(["stuck"]));
    settle().await;
    assert_eq!(
        stuck.count(),
        1,
        "the first entry is in delivery, the others of its service wait"
    );
    let backlog = dispatcher.backlog().unwrap();
    assert_eq!(
        backlog,
        [
            NotifierBacklog {
                name: "stuck".into(),
                pending: 3,
                oldest: Some(t0() - secs(120)),
            },
            NotifierBacklog {
                name: "fine".into(),
                pending: 0,
                oldest: None,
            },
        ]
    );
    assert_eq!(backlog[0].oldest_age(t0()), secs(120));
    assert_eq!(backlog[1].oldest_age(t0()), Duration::ZERO);
    outbox.fail_reads(1);
    assert!(dispatcher.backlog().is_err());
    stuck.open(3);
    settle().await;
    // The durable entries are older than the message, so they go first.
    assert_eq!(
        stuck.titles(),
        ["Service down: api", "Service up: api", "hello"]
    );
    let empty = dispatcher.backlog().unwrap();
    assert!(empty.iter().all(|b| b.pending == 0 && b.oldest.is_none()));
    dispatcher.shutdown(DRAIN).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_keeps_durable_entries_for_the_next_start() {
    let hung = FakeSend::new([Fake::Hang]);
    let outbox = FakeOutbox::new();
    outbox.insert(1, "hook", event(EventKind::Down, "api"));
    outbox.insert(2, "hook", event(EventKind::Up, "api"));
    let first = durable(&hung, &outbox)
        .request_timeout(secs(3600))
        .start()
        .unwrap();
    let report = first.shutdown(secs(5)).await;
    assert!(!report.drained);
    assert_eq!((report.abandoned, report.kept), (0, 2));
    assert_eq!(first.stats().dropped, 0, "nothing lost");
    assert_eq!(outbox.pending_ids("hook"), [1, 2]);

    let http = FakeSend::new([]);
    let second = durable(&http, &outbox).start().unwrap();
    let report = second.shutdown(DRAIN).await;
    assert!(report.drained);
    assert_eq!(report.kept, 0);
    assert_eq!(http.titles(), ["Service down: api", "Service up: api"]);
    assert_eq!(outbox.done(), [(1, None), (2, None)]);
}
