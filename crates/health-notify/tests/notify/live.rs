//! The dispatcher against real local receivers (real time, short delays): scripted
//! failures, `Retry-After`, a receiver slower than the timeout, and ordering.

use std::{sync::Arc, time::Duration};

use health_notify::{Dispatcher, Notifier, RetryPolicy, Stats};
use health_types::{EventKind, EventSink};
use tokio::time::Instant;

use crate::support::{Receiver, Reply, WAIT, build, event};

/// Fast retries so real-time tests stay quick.
fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        base: Duration::from_millis(20),
        factor: 2,
        max_delay: Duration::from_secs(2),
        jitter: 0.0,
    }
}

fn webhook(receiver: &Receiver) -> Arc<dyn Notifier> {
    build(&format!(
        "name = \"hook\"\nprovider = \"webhook\"\nurl = \"{}\"",
        receiver.url("/hook")
    ))
}

fn title(request: &crate::support::Recorded) -> String {
    request.json()["title"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_500_is_retried_and_then_delivered() {
    let mut receiver = Receiver::start(vec![Reply::status(500)]).await;
    let dispatcher = Dispatcher::builder()
        .notifier(webhook(&receiver))
        .retry(quick())
        .start()
        .unwrap();
    dispatcher.notify(event(EventKind::Down, "api"));
    let first = receiver.next().await;
    let second = receiver.next().await;
    assert_eq!(first.body, second.body, "the same message, resent");
    assert!(dispatcher.shutdown(WAIT).await.drained);
    assert_eq!(
        dispatcher.stats(),
        Stats {
            sent: 1,
            retried: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let mut receiver = Receiver::start(vec![Reply::status(429).header("retry-after", "1")]).await;
    let dispatcher = Dispatcher::builder()
        .notifier(webhook(&receiver))
        .retry(quick())
        .start()
        .unwrap();
    dispatcher.notify(event(EventKind::Down, "api"));
    receiver.next().await;
    let refused_at = Instant::now();
    receiver.next().await;
    // The quick policy alone would retry after 20 ms.
    assert!(
        refused_at.elapsed() >= Duration::from_millis(900),
        "retried after {:?}",
        refused_at.elapsed()
    );
    dispatcher.shutdown(WAIT).await;
    assert_eq!(dispatcher.stats().sent, 1);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let mut receiver = Receiver::start(vec![Reply::status(400)]).await;
    let dispatcher = Dispatcher::builder()
        .notifier(webhook(&receiver))
        .retry(quick())
        .start()
        .unwrap();
    dispatcher.notify(event(EventKind::Down, "api"));
    assert!(dispatcher.shutdown(WAIT).await.drained);
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        dispatcher.stats(),
        Stats {
            failed: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_cut_and_retried() {
    let mut receiver =
        Receiver::start(vec![Reply::status(200).after(Duration::from_secs(5))]).await;
    let dispatcher = Dispatcher::builder()
        .notifier(webhook(&receiver))
        .retry(quick())
        .request_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    let start = Instant::now();
    dispatcher.notify(event(EventKind::Down, "api"));
    receiver.next().await;
    receiver.next().await;
    assert!(dispatcher.shutdown(WAIT).await.drained);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the slow answer was not awaited: {:?}",
        start.elapsed()
    );
    assert_eq!(
        dispatcher.stats(),
        Stats {
            sent: 1,
            retried: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn down_with_retries_then_up_arrive_in_order() {
    let mut receiver = Receiver::start(vec![
        Reply::status(500),
        Reply::status(502),
        Reply::status(503),
    ])
    .await;
    let dispatcher = Dispatcher::builder()
        .notifier(webhook(&receiver))
        .retry(quick())
        .start()
        .unwrap();
    dispatcher.notify(event(EventKind::Down, "api"));
    dispatcher.notify(event(EventKind::Up, "api"));
    let mut titles = Vec::new();
    for _ in 0..5 {
        titles.push(title(&receiver.next().await));
    }
    assert_eq!(
        titles,
        [
            "Service down: api",
            "Service down: api",
            "Service down: api",
            "Service down: api",
            "Service up: api"
        ]
    );
    assert!(dispatcher.shutdown(WAIT).await.drained);
    assert_eq!(dispatcher.stats().sent, 2);
    assert_eq!(dispatcher.stats().retried, 3);
}
