//! The proxy's request path over loopback upstreams: the 503 with nothing in rotation,
//! the connect retry (body included), passive signals, and origin validation.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::time::Duration;

use health_lb_proxy::{Proxy, ProxyConfig, ProxyError, Upstream};
use health_monitor::{HealthMonitor, Monitor, Scope, new_http_monitor};
use health_types::{HealthCheckConfig, Status, Url};
use hyper::StatusCode;
use support::{FakeUpstream, client, send, wait_until};
use tokio::net::TcpListener;

/// Checks once at start, then not for an hour: the test decides what the monitor knows.
fn quiet() -> HealthCheckConfig {
    HealthCheckConfig {
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(2),
        retries: 2,
        ..Default::default()
    }
}

fn monitor(upstream: &FakeUpstream) -> Monitor {
    new_http_monitor(upstream.name, &quiet(), upstream.url()).unwrap()
}

/// A proxy over `upstreams` serving on a loopback port.
async fn proxy(upstreams: Vec<Upstream>, passive_threshold: u32) -> (Proxy, std::net::SocketAddr) {
    let proxy = Proxy::try_new(
        upstreams,
        ProxyConfig {
            passive_threshold,
            ..Default::default()
        },
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = proxy.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    (proxy, addr)
}

/// Starts `monitors` under a new scope and waits until every one is healthy.
async fn healthy(monitors: &[&Monitor]) -> Scope {
    let scope = Scope::new();
    for monitor in monitors {
        monitor.start(&scope).unwrap();
    }
    wait_until("every monitor healthy", Duration::from_secs(5), || {
        monitors.iter().all(|m| m.status() == Status::Healthy)
    })
    .await;
    scope
}

#[tokio::test]
async fn nothing_in_rotation_is_a_503_saying_so() {
    let up = FakeUpstream::start("a");
    // Never started: its status is `unknown`, which is not good.
    let (proxy, addr) = proxy(vec![Upstream::try_new(&up.url(), monitor(&up)).unwrap()], 3).await;
    assert!(proxy.in_rotation().is_empty());
    let answer = send(&client(), addr, "GET", "/", "").await.unwrap();
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.body.contains("no upstream in rotation"),
        "{}",
        answer.body
    );
    proxy.shutdown();
}

#[tokio::test]
async fn a_connect_failure_is_retried_once_on_another_upstream_with_its_body() {
    let mut dead = FakeUpstream::start("dead");
    let live = FakeUpstream::start("live");
    let (dead_monitor, live_monitor) = (monitor(&dead), monitor(&live));
    let scope = healthy(&[&dead_monitor, &live_monitor]).await;
    let upstreams = vec![
        Upstream::try_new(&dead.url(), dead_monitor.clone()).unwrap(),
        Upstream::try_new(&live.url(), live_monitor.clone()).unwrap(),
    ];
    // Passive signals off and no check due for an hour: "dead" stays in rotation.
    let (proxy, addr) = proxy(upstreams, 0).await;
    dead.kill().await;
    let client = client();
    for i in 0..10 {
        let answer = send(&client, addr, "POST", "/orders?x=1", "payload")
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "request {i}: {answer:?}");
        assert_eq!(answer.upstream, "live", "request {i}");
        assert_eq!(answer.body, "payload", "request {i}");
    }
    assert_eq!(proxy.in_rotation(), ["dead", "live"]);
    assert_eq!(proxy.passive_checks(), 0);
    proxy.shutdown();
    scope.shutdown().await;
}

#[tokio::test]
async fn a_connect_failure_with_no_other_upstream_is_a_502() {
    let mut dead = FakeUpstream::start("dead");
    let dead_monitor = monitor(&dead);
    let scope = healthy(&[&dead_monitor]).await;
    let (proxy, addr) = proxy(
        vec![Upstream::try_new(&dead.url(), dead_monitor).unwrap()],
        0,
    )
    .await;
    dead.kill().await;
    let answer = send(&client(), addr, "GET", "/", "").await.unwrap();
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.body, "upstream dead did not answer\n");
    proxy.shutdown();
    scope.shutdown().await;
}

#[tokio::test]
async fn a_run_of_5xx_asks_the_monitor_for_a_check_now() {
    let up = FakeUpstream::start("a");
    let up_monitor = monitor(&up);
    let scope = healthy(&[&up_monitor]).await;
    let checks = || up_monitor.snapshot().results.total();
    assert_eq!(checks(), 1);
    let (proxy, addr) = proxy(
        vec![Upstream::try_new(&up.url(), up_monitor.clone()).unwrap()],
        3,
    )
    .await;
    let client = client();
    // A good answer ends a run: two failures, one success, two failures is no signal.
    for path in ["/fail", "/fail", "/ok", "/fail", "/fail"] {
        send(&client, addr, "GET", path, "").await.unwrap();
    }
    assert_eq!(proxy.passive_checks(), 0);
    // The third in a row is.
    let answer = send(&client, addr, "GET", "/fail/again", "").await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "5xx answers pass through"
    );
    assert_eq!(proxy.passive_checks(), 1);
    wait_until("the passive check", Duration::from_secs(5), || {
        checks() == 2
    })
    .await;
    // Its health endpoint answers: passive signals alone take nothing out of rotation.
    assert_eq!(up_monitor.status(), Status::Healthy);
    assert_eq!(proxy.in_rotation(), ["a"]);
    proxy.shutdown();
    scope.shutdown().await;
}

#[tokio::test]
async fn an_origin_is_a_plain_http_host_and_port() {
    let up = FakeUpstream::start("a");
    for bad in [
        "https://127.0.0.1:1/",
        "http://127.0.0.1:1/api",
        "http://127.0.0.1:1/?q=1",
        "http://user:pw@127.0.0.1:1/",
    ] {
        let err = Upstream::try_new(&Url::parse(bad).unwrap(), monitor(&up)).unwrap_err();
        assert!(matches!(err, ProxyError::Upstream { .. }), "{bad}: {err}");
    }
    let upstream =
        Upstream::try_new(&Url::parse("http://localhost").unwrap(), monitor(&up)).unwrap();
    assert_eq!(upstream.origin().to_string(), "http://localhost:80/");
    assert_eq!(upstream.name(), "a");
}

#[tokio::test]
async fn a_proxy_needs_an_upstream() {
    assert!(matches!(
        Proxy::try_new(Vec::new(), ProxyConfig::default()),
        Err(ProxyError::NoUpstreams)
    ));
}
