//! The dispatcher against real local receivers (real time, short delays): scripted
//! failures, `Retry-After`, a receiver slower than the timeout, and ordering.

use std::time::Duration;

use health_notify::{Dispatcher, RetryPolicy, Stats};
use health_types::{EventKind, EventSink};
use tokio::time::Instant;

use crate::support::{Receiver, Reply, WAIT, build, event};

/// Fast retries so real-time tests stay quick.
fn quick() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        factor: 2,
        jitter: 0.0,
        max_backoff: Duration::from_secs(2),
        max_age: Duration::from_secs(60),
    }
}

/// The dispatcher's default per-request timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Delivered at the second attempt.
const RESENT_ONCE: Stats = Stats {
    sent: 1,
    failed: 0,
    retried: 1,
    dropped: 0,
};

/// Starts a dispatcher with the quick policy and `timeout` per request whose one
/// notifier is a webhook to `receiver`, and reports `api` down to it.
fn report_down(receiver: &Receiver, timeout: Duration) -> Dispatcher {
    let webhook = build(&format!(
        "name = \"hook\"\nprovider = \"webhook\"\nurl = \"{}\"",
        receiver.url("/hook")
    ));
    let dispatcher = Dispatcher::builder()
        .notifier(webhook)
        .retry(quick())
        .request_timeout(timeout)
        .start()
        .unwrap();
    dispatcher.notify(event(EventKind::Down, "api"));
    dispatcher
}

/// Shuts `dispatcher` down, which must drain it in time, and returns its counters.
async fn drain(dispatcher: &Dispatcher) -> Stats {
    assert!(dispatcher.shutdown(WAIT).await.drained);
    dispatcher.stats()
}

#[tokio::test]
async fn a_500_is_retried_and_then_delivered() {
    let mut receiver = Receiver::start(vec![Reply::status(500)]).await;
    let dispatcher = report_down(&receiver, TIMEOUT);
    let first = receiver.next().await;
    let second = receiver.next().await;
    assert_eq!(first.body, second.body, "the same message, resent");
    assert_eq!(drain(&dispatcher).await, RESENT_ONCE);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let mut receiver = Receiver::start(vec![Reply::status(429).header("retry-after", "1")]).await;
    let dispatcher = report_down(&receiver, TIMEOUT);
    receiver.next().await;
    let refused_at = Instant::now();
    receiver.next().await;
    // The quick policy alone would retry after 20 ms.
    assert!(
        refused_at.elapsed() >= Duration::from_millis(900),
        "retried after {:?}",
        refused_at.elapsed()
    );
    assert_eq!(drain(&dispatcher).await.sent, 1);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let mut receiver = Receiver::start(vec![Reply::status(400)]).await;
    let dispatcher = report_down(&receiver, TIMEOUT);
    let failed_once = Stats {
        failed: 1,
        ..Stats::default()
    };
    assert_eq!(drain(&dispatcher).await, failed_once);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_cut_and_retried() {
    let mut receiver =
        Receiver::start(vec![Reply::status(200).after(Duration::from_secs(5))]).await;
    let start = Instant::now();
    let dispatcher = report_down(&receiver, Duration::from_millis(200));
    receiver.next().await;
    receiver.next().await;
    assert_eq!(drain(&dispatcher).await, RESENT_ONCE);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the slow answer was not awaited: {:?}",
        start.elapsed()
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
    let dispatcher = report_down(&receiver, TIMEOUT);
    dispatcher.notify(event(EventKind::Up, "api"));
    let mut titles = Vec::new();
    for _ in 0..5 {
        let request = receiver.next().await;
        titles.push(request.json()["title"].as_str().unwrap().to_owned());
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
    let stats = drain(&dispatcher).await;
    assert_eq!((stats.sent, stats.retried), (2, 3));
}
