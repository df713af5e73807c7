//! Order and concurrency within one notifier, under tokio's paused clock: entries start
//! in id order, several at once; each service's entries go out strictly one after the
//! other; a failing entry backs off on its own without holding back other services; the
//! number of requests in flight and of entries read ahead are bounded.

use std::time::Duration;

use health_notify::{Message, RetryPolicy, Stats};
use health_types::{Event, EventKind, EventSink};
use serde_json::Value;

use crate::support::{
    DRAIN, Fake, FakeOutbox, FakeSend, durable, event, exact, exact_hook, outage_event,
    outage_start, secs, t0,
};

/// Lets the delivery task run what is ready, without moving the clock.
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// A request as `(seconds, service, event)`.
fn summary((at, body): &(Duration, Value)) -> (u64, String, String) {
    let text = |key: &str| body[key].as_str().unwrap().to_owned();
    (at.as_secs(), text("service"), text("event"))
}

/// The requests as `<seconds> <service> <event>`, comma-separated, so a test can
/// compare a whole schedule at once.
fn timeline(requests: &[(Duration, Value)]) -> String {
    let line = |request| {
        let (at, service, event) = summary(request);
        format!("{at} {service} {event}")
    };
    requests.iter().map(line).collect::<Vec<_>>().join(", ")
}

/// A `down` of `service` whose detail numbers it, so its place can be checked.
fn numbered(service: &str, number: u64) -> Event {
    Event {
        detail: format!("#{number}"),
        ..event(EventKind::Down, service)
    }
}

fn is(body: &Value, service: &str) -> bool {
    body["service"] == service
}

#[tokio::test(start_paused = true)]
async fn a_failing_service_does_not_hold_back_the_others() {
    // The receiver answers 500 to everything about "api" for the first 10 s.
    let http = FakeSend::answering(|_, at, body| {
        if is(body, "api") && at < secs(10) {
            Fake::Status(500, None)
        } else {
            Fake::Status(200, None)
        }
    });
    let outbox = FakeOutbox::new();
    outbox.insert(1, "hook", event(EventKind::Down, "api"));
    outbox.insert(2, "hook", event(EventKind::Down, "web"));
    outbox.insert(3, "hook", event(EventKind::Down, "db"));
    outbox.insert(4, "hook", event(EventKind::Up, "web"));
    outbox.insert(5, "hook", event(EventKind::Up, "db"));
    let dispatcher = durable(&http, &outbox).start().unwrap();
    settle().await;
    let done: Vec<_> = outbox.done().into_iter().map(|(id, _)| id).collect();
    assert_eq!(done, [2, 3, 4, 5], "delivered while api's down is retried");
    assert_eq!(outbox.pending_ids("hook"), [1]);
    tokio::time::sleep(secs(30)).await;
    assert_eq!(
        timeline(&http.requests()),
        "0 api down, 0 web down, 0 db down, 0 web up, 0 db up, \
         1 api down, 3 api down, 7 api down, 15 api down"
    );
    assert_eq!(outbox.done().last(), Some(&(1, None)));
    assert_eq!(
        dispatcher.stats(),
        Stats {
            sent: 5,
            retried: 4,
            ..Stats::default()
        }
    );
    assert!(dispatcher.shutdown(DRAIN).await.drained);
}

#[tokio::test(start_paused = true)]
async fn a_down_and_its_up_stay_in_order_while_the_down_is_retried() {
    // The receiver asks to come back in 5 s to api's down, for the first 10 s.
    let http = FakeSend::answering(|_, at, body| {
        if is(body, "api") && body["event"] == "down" && at < secs(10) {
            Fake::Status(429, Some("5".into()))
        } else {
            Fake::Status(200, None)
        }
    });
    let dispatcher = exact_hook(&http).start().unwrap();
    dispatcher.notify(outage_event(EventKind::Down, "api", outage_start()));
    dispatcher.notify(outage_event(EventKind::Up, "api", outage_start()));
    dispatcher.notify(event(EventKind::Down, "web"));
    assert!(dispatcher.shutdown(DRAIN).await.drained);
    let requests = http.requests();
    assert_eq!(
        timeline(&requests),
        "0 api down, 0 web down, 5 api down, 10 api down, 10 api up"
    );
    let up_fields = requests[4].1["fields"].as_array().unwrap().len();
    assert_eq!(up_fields, 5, "the down was delivered: no Note");
    assert_eq!(dispatcher.stats().sent, 3);
}

#[tokio::test(start_paused = true)]
async fn an_up_waits_until_its_down_is_given_up_and_carries_the_note() {
    let http = FakeSend::answering(|_, _, body| {
        if is(body, "api") && body["event"] == "down" {
            Fake::Status(500, None)
        } else {
            Fake::Status(200, None)
        }
    });
    let outbox = FakeOutbox::new();
    outbox.insert_api_outage(&[(1, EventKind::Down), (2, EventKind::Up)]);
    outbox.insert(3, "hook", event(EventKind::Down, "web"));
    let policy = RetryPolicy {
        max_age: secs(20),
        ..exact()
    };
    let dispatcher = durable(&http, &outbox).retry(policy).start().unwrap();
    settle().await;
    assert_eq!(outbox.done(), [(3, None)], "web is not held back");
    tokio::time::sleep(secs(30)).await;
    let requests = http.requests();
    let api: Vec<_> = requests
        .iter()
        .filter(|(_, body)| is(body, "api"))
        .map(summary)
        .collect();
    let down = |at| (at, "api".to_owned(), "down".to_owned());
    let up = (20, "api".to_owned(), "up".to_owned());
    assert_eq!(
        api,
        [down(0), down(1), down(3), down(7), down(15), down(20), up]
    );
    let note = &requests.last().unwrap().1["fields"][5];
    assert_eq!(note["value"], "down notification was not delivered");
    let given_up = "gave up after 20s: receiver answered HTTP 500";
    assert_eq!(
        outbox.done(),
        [(3, None), (1, Some(given_up.to_owned())), (2, None)]
    );
    assert!(dispatcher.shutdown(DRAIN).await.drained);
}

/// 200 services, each with a `down` and then an `up`, against a receiver that fails
/// every 10th request. Delivered strictly one at a time, each of those 40 or more
/// failures would stop every later message for at least its 1 s backoff: 40 s at the
/// least. Per service, they are all delivered within 10 s, each service's in order.
#[tokio::test(start_paused = true)]
async fn a_receiver_failing_every_tenth_request_holds_nobody_back() {
    const SERVICES: u64 = 200;
    let http = FakeSend::answering(|index, _, _| {
        if index % 10 == 9 {
            Fake::Status(500, None)
        } else {
            Fake::Status(200, None)
        }
    });
    let outbox = FakeOutbox::new();
    for i in 0..SERVICES {
        let service = format!("s{i}");
        outbox.insert(1 + i, "hook", event(EventKind::Down, &service));
        outbox.insert(1 + SERVICES + i, "hook", event(EventKind::Up, &service));
    }
    let dispatcher = durable(&http, &outbox).start().unwrap();
    tokio::time::sleep(secs(10)).await;

    let done = outbox.done();
    assert_eq!(done.len(), 2 * SERVICES as usize);
    assert!(done.iter().all(|(_, reason)| reason.is_none()), "{done:?}");
    let stats = dispatcher.stats();
    assert_eq!(stats.sent, 2 * SERVICES);
    assert_eq!(stats.retried as usize, http.count() / 10);
    assert!(stats.retried >= 40, "{stats:?}");
    // Each service's down was marked before its up, and every request for its down came
    // before the first for its up.
    let position = |id| done.iter().position(|(done_id, _)| *done_id == id);
    let requests: Vec<_> = http.requests().iter().map(summary).collect();
    for i in 0..SERVICES {
        assert!(position(1 + i) < position(1 + SERVICES + i), "s{i}");
        let service = format!("s{i}");
        let events: Vec<_> = requests
            .iter()
            .filter(|(_, s, _)| *s == service)
            .map(|(_, _, event)| event.as_str())
            .collect();
        let first_up = events.iter().position(|event| *event == "up").unwrap();
        assert!(
            events[..first_up].iter().all(|event| *event == "down")
                && events[first_up..].iter().all(|event| *event == "up"),
            "{service}: {events:?}"
        );
    }
    assert!(dispatcher.shutdown(DRAIN).await.drained);
}

#[tokio::test(start_paused = true)]
async fn no_more_than_sixteen_requests_are_in_flight() {
    // Every answer takes a second.
    let http = FakeSend::answering(|_, _, _| Fake::Slow(secs(1)));
    let outbox = FakeOutbox::new();
    for id in 1..=40 {
        outbox.insert(id, "hook", event(EventKind::Down, &format!("s{id}")));
    }
    let dispatcher = durable(&http, &outbox).start().unwrap();
    assert!(dispatcher.shutdown(DRAIN).await.drained);
    assert_eq!(http.max_in_flight(), 16);
    let times: Vec<u64> = http.times().iter().map(Duration::as_secs).collect();
    let expected: Vec<u64> = [(0, 16), (1, 16), (2, 8)]
        .into_iter()
        .flat_map(|(at, n)| std::iter::repeat_n(at, n))
        .collect();
    assert_eq!(times, expected);
    // Started in id order.
    let services: Vec<_> = http.bodies().iter().map(|b| b["service"].clone()).collect();
    let in_order: Vec<_> = (1..=40).map(|id| Value::from(format!("s{id}"))).collect();
    assert_eq!(services, in_order);
    assert_eq!(dispatcher.stats().sent, 40);
}

#[tokio::test(start_paused = true)]
async fn entries_backing_off_hold_no_request_slot() {
    // Sixteen services fail for the first minute, as many as there are slots.
    let http = FakeSend::answering(|_, at, body| {
        if body["service"] != "late" && at < secs(60) {
            Fake::Status(503, None)
        } else {
            Fake::Status(200, None)
        }
    });
    let outbox = FakeOutbox::new();
    for id in 1..=16 {
        outbox.insert(id, "hook", event(EventKind::Down, &format!("s{id}")));
    }
    let dispatcher = durable(&http, &outbox).start().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(http.count(), 16);
    outbox.insert(17, "hook", event(EventKind::Down, "late"));
    dispatcher.wake(["hook"]);
    settle().await;
    let (at, body) = http.requests().pop().unwrap();
    assert_eq!(
        (at, body["service"].as_str()),
        (Duration::from_millis(500), Some("late"))
    );
    assert_eq!(outbox.done(), [(17, None)]);
    assert!(dispatcher.shutdown(DRAIN).await.drained);
    assert_eq!(dispatcher.stats().sent, 17);
}

#[tokio::test(start_paused = true)]
async fn reading_pauses_once_1024_entries_are_held() {
    let http = FakeSend::gated();
    let outbox = FakeOutbox::new();
    // 1100 entries of one service, then one of another.
    for id in 1..=1100 {
        outbox.insert(id, "hook", numbered("busy", id));
    }
    outbox.insert(1101, "hook", event(EventKind::Down, "other"));
    let dispatcher = durable(&http, &outbox).start().unwrap();
    settle().await;
    // The first entry waits at the gate, 1023 more wait behind it, and the task reads
    // no further: the other service's entry is not even started.
    assert_eq!(http.count(), 1);
    http.open(2000);
    assert!(dispatcher.shutdown(DRAIN).await.drained);
    let bodies = http.bodies();
    assert_eq!(bodies.len(), 1101);
    assert!(bodies.iter().any(|body| is(body, "other")));
    let busy: Vec<_> = bodies
        .iter()
        .filter(|body| is(body, "busy"))
        .map(|body| body["detail"].as_str().unwrap().to_owned())
        .collect();
    let in_order: Vec<_> = (1..=1100).map(|id| format!("#{id}")).collect();
    assert_eq!(busy, in_order);
    assert_eq!(dispatcher.stats().sent, 1101);
}

#[tokio::test(start_paused = true)]
async fn a_full_memory_outbox_drops_a_waiting_message_never_one_in_delivery() {
    let http = FakeSend::gated();
    let dispatcher = exact_hook(&http).queue_capacity(2).start().unwrap();
    let message = |title: &str, service: &str| Message::custom(title, t0()).with_service(service);
    dispatcher.send(message("a1", "a"));
    dispatcher.send(message("b1", "b"));
    settle().await;
    assert_eq!(http.count(), 2, "a1 and b1 are in delivery");
    // a2 and a3 are read, and wait behind a1; a4 makes room by dropping a2.
    dispatcher.send(message("a2", "a"));
    dispatcher.send(message("a3", "a"));
    settle().await;
    dispatcher.send(message("a4", "a"));
    assert_eq!(dispatcher.stats().dropped, 1);
    http.open(10);
    assert!(dispatcher.shutdown(DRAIN).await.drained);
    assert_eq!(http.titles(), ["a1", "b1", "a3", "a4"]);
    assert_eq!(
        dispatcher.stats(),
        Stats {
            sent: 4,
            dropped: 1,
            ..Stats::default()
        }
    );
}
