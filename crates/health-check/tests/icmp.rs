//! IcmpProbe (`icmp://`) on loopback: an echo to 127.0.0.1 and ::1, and a host that
//! does not answer, made inside a network namespace of the test's own (loopback up,
//! echo replies off), so no packet leaves the machine.
//!
//! Where the kernel refuses unprivileged ping sockets (`net.ipv4.ping_group_range`
//! excludes us), a check is an `io` error naming the sysctl; the echo cases then print
//! `skipped: <reason>` and pass. The silent-host case needs root and `ip` (else it is
//! skipped the same way).
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{process::Command, time::Duration};

use health_check::{IcmpProbe, PING_REFUSED};
use health_types::{CheckKind, CheckResult, HealthCheckConfig, IpFamily, Probe};
use support::config;
use tokio::time::Instant;
use url::Url;

/// Pings `url`; `None` (after printing why) when the kernel refuses us the socket.
async fn ping(probe: &IcmpProbe, url: &str) -> Option<CheckResult> {
    match probe.check(&Url::parse(url).unwrap()).await {
        Ok(result) => Some(result),
        Err(err) if err.detail() == PING_REFUSED => {
            assert_eq!(err.kind(), CheckKind::Io);
            println!("skipped: {err}");
            None
        }
        Err(err) => panic!("{url}: {err}"),
    }
}

#[tokio::test]
async fn loopback_answers_an_echo() {
    let probe = IcmpProbe::try_new(&config(2000)).unwrap();
    let Some(result) = ping(&probe, "icmp://127.0.0.1").await else {
        return;
    };
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (true, CheckKind::Ok, "echo reply"),
        "{result:?}"
    );
    assert_eq!(result.phases.first_byte, Some(result.latency));
    assert!(result.latency < Duration::from_secs(1), "{result:?}");
    // By name, through the shared resolver (localhost needs no server).
    let v4 = IcmpProbe::try_new(&HealthCheckConfig {
        ip_family: IpFamily::Ipv4,
        ..config(2000)
    })
    .unwrap();
    let result = ping(&v4, "icmp://localhost").await.unwrap();
    assert!(result.healthy, "{result:?}");
    assert!(result.phases.dns.is_some(), "{result:?}");
}

#[tokio::test]
async fn ipv6_loopback_answers_an_echo_where_there_is_one() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        println!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let probe = IcmpProbe::try_new(&config(2000)).unwrap();
    // Only the kernel's refusal of ping sockets skips; any other error fails.
    if let Some(result) = ping(&probe, "icmp://[::1]").await {
        assert_eq!(
            (result.healthy, result.kind, result.detail.as_str()),
            (true, CheckKind::Ok, "echo reply"),
            "{result:?}"
        );
    }
}

/// Runs `program args` in the calling thread's network namespace.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| format!("{program}: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// In a new network namespace entered by this thread: loopback up, ping sockets allowed
/// for every group, echo requests ignored.
fn silent_namespace() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|err| format!("no network namespace: {err}"))?;
    // Commands and /proc/sys/net opened from this thread see its namespace.
    run("ip", &["link", "set", "lo", "up"])?;
    for (key, value) in [
        ("ping_group_range", "0 2147483647"),
        ("icmp_echo_ignore_all", "1"),
    ] {
        std::fs::write(format!("/proc/sys/net/ipv4/{key}"), value)
            .map_err(|err| format!("net.ipv4.{key}: {err}"))?;
    }
    Ok(())
}

#[test]
fn a_host_that_does_not_answer_times_out_and_no_route_is_refused() {
    // A thread of its own: the namespace is the thread's, and it ends with it.
    let outcome = std::thread::spawn(|| {
        silent_namespace()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let probe = IcmpProbe::try_new(&config(300)).unwrap();
            let started = Instant::now();
            let result = probe.check(&Url::parse("icmp://127.0.0.1").unwrap()).await;
            let elapsed = started.elapsed();
            // No route at all (only loopback is up): the send fails at once.
            let unrouted = probe.check(&Url::parse("icmp://192.0.2.1").unwrap()).await;
            Ok::<_, String>((result, elapsed, unrouted))
        })
    })
    .join()
    .unwrap();
    match outcome {
        Err(reason) => println!("skipped: {reason}"),
        Ok((Err(err), _, _)) if err.detail() == PING_REFUSED => println!("skipped: {err}"),
        Ok((result, elapsed, unrouted)) => {
            let unrouted = unrouted.unwrap();
            assert_eq!(
                (unrouted.healthy, unrouted.kind, unrouted.detail.as_str()),
                (false, CheckKind::Refused, "network unreachable")
            );
            let result = result.unwrap();
            assert_eq!(
                (result.healthy, result.kind, result.detail.as_str()),
                (false, CheckKind::Timeout, "timed out after 300ms")
            );
            assert!(
                elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(800),
                "{elapsed:?}"
            );
        }
    }
}

#[test]
fn bad_icmp_urls_are_config_errors() {
    let probe = IcmpProbe::try_new(&config(1000)).unwrap();
    for (url, needle) in [
        ("icmp://host:80", "no ports"),
        ("icmp://host/path", "no path"),
        ("icmp://host?x=1", "no query"),
    ] {
        let err = probe
            .validate_url(&Url::parse(url).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(needle) && err.contains("icmp://host"),
            "{url}: {err}"
        );
    }
}
