//! Name resolution as the probes see it, with this process's resolver pointed at a
//! scripted DNS server: each failure has its own detail, a silent server ends the check
//! at its timeout, and IP literals and `localhost` need no server.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::OnceLock,
    time::Duration,
};

use health_check::{
    StreamProbe,
    test_util::{DnsAnswer, ScriptedDns, use_name_server},
};
use health_types::{CheckKind, CheckResult, Probe};
use support::config;
use tokio::{net::TcpListener, time::Instant};
use url::Url;

/// The scripted server every test of this binary resolves through (one per process:
/// the probes share one resolver).
fn dns() -> &'static ScriptedDns {
    static DNS: OnceLock<ScriptedDns> = OnceLock::new();
    DNS.get_or_init(|| {
        let dns = ScriptedDns::start([
            (
                "web.test",
                DnsAnswer::Address(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ),
            ("nx.test", DnsAnswer::NxDomain),
            ("fail.test", DnsAnswer::ServFail),
            ("empty.test", DnsAnswer::Empty),
            ("silent.test", DnsAnswer::Silent),
        ]);
        assert!(
            use_name_server(dns.addr()),
            "no probe resolved a name before"
        );
        dns
    })
}

async fn check(probe: &dyn Probe, url: &str) -> CheckResult {
    dns();
    probe
        .check(&Url::parse(url).unwrap())
        .await
        .expect("a name that does not resolve is the target's failure")
}

#[tokio::test]
async fn each_dns_failure_is_unhealthy_with_its_own_detail() {
    let probe = StreamProbe::try_new(&config(2000)).unwrap();
    for (name, detail) in [
        ("nx.test", "dns: no such host"),
        ("fail.test", "dns: server failure"),
        ("empty.test", "dns: no answer"),
    ] {
        let result = check(&probe, &format!("tcp://{name}:80")).await;
        assert_eq!(
            (result.healthy, result.kind, result.detail.as_str()),
            (false, CheckKind::Dns, detail),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_resolved_name_is_connected_to() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = StreamProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &format!("tcp://web.test:{port}")).await;
    assert!(result.healthy, "{result:?}");
    // `localhost` is answered without the server, which knows no such name.
    let result = check(&probe, &format!("tcp://localhost:{port}")).await;
    assert!(result.healthy, "{result:?}");
}

/// Checks `url` with a 300 ms timeout: the check ends at it, not after.
async fn silent_check(probe: &dyn Probe, url: &str) -> CheckResult {
    let started = Instant::now();
    let result = check(probe, url).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{url}: {elapsed:?}");
    result
}

#[tokio::test]
async fn a_silent_server_ends_the_check_at_its_timeout() {
    let before = dns().queries();
    let stream = StreamProbe::try_new(&config(300)).unwrap();
    let result = silent_check(&stream, "tcp://silent.test:80").await;
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Dns, "dns: timed out")
    );
    #[cfg(feature = "http")]
    {
        let http = health_check::HttpProbe::try_new(&config(300)).unwrap();
        let result = silent_check(&http, "http://silent.test/").await;
        assert_eq!(
            (result.kind, result.detail.as_str()),
            (CheckKind::Dns, "dns: timed out")
        );
    }
    assert!(dns().queries() > before, "the server was asked");
}

/// Threads of this process that tokio's blocking pool runs (named `tokio-runtime-w…`;
/// the tests' runtimes are single-threaded, so they have no workers of that name).
fn blocking_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("tokio-runtime"))
        .count()
}

#[tokio::test]
async fn silent_lookups_hold_no_threads() {
    let probe = std::sync::Arc::new(StreamProbe::try_new(&config(300)).unwrap());
    let mut checks = tokio::task::JoinSet::new();
    for port in 80..88 {
        let probe = probe.clone();
        checks.spawn(
            async move { check(probe.as_ref(), &format!("tcp://silent.test:{port}")).await },
        );
    }
    while let Some(result) = checks.join_next().await {
        assert_eq!(result.unwrap().detail, "dns: timed out");
    }
    assert_eq!(blocking_threads(), 0);
}

/// A single-threaded runtime of its own.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_runtime_that_ends_mid_lookup_leaves_the_others_alone() {
    // Two runtimes ask the same silent name at once (hickory joins queries in flight);
    // one gives up after 100 ms and is shut down while the other still waits.
    let probe = StreamProbe::try_new(&config(600)).unwrap();
    let url = "tcp://silent.test:53";
    std::thread::scope(|scope| {
        let quitter = scope.spawn(|| {
            runtime().block_on(async {
                let check = check(&probe, url);
                tokio::time::timeout(Duration::from_millis(100), check).await
            })
        });
        let waiter = scope.spawn(|| runtime().block_on(check(&probe, url)));
        assert!(quitter.join().unwrap().is_err(), "cut at 100 ms");
        let result = waiter.join().expect("no panic in the other runtime");
        assert_eq!(result.detail, "dns: timed out");
    });
}

#[tokio::test]
async fn ip_literals_are_not_looked_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let probe = StreamProbe::try_new(&config(300)).unwrap();
    // With a silent server, any lookup would time out.
    let result = check(&probe, &format!("tcp://{addr}")).await;
    assert!(result.healthy, "{result:?}");
    #[cfg(feature = "http")]
    {
        let http = health_check::HttpProbe::try_new(&config(300)).unwrap();
        let result = check(&http, &format!("http://{addr}/")).await;
        // Connected: the listener never answers, so the check times out at the HTTP
        // exchange, not at a lookup.
        assert_eq!(
            (result.kind, result.detail.as_str()),
            (CheckKind::Timeout, "timed out after 300ms")
        );
    }
}
