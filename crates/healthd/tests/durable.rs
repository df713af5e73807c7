//! Alerts that survive the daemon (SPEC §9.1), end to end with the real binary: a
//! `kill -9` while a `down` waits for a receiver that is away, and a restart in the
//! middle of an outage. Each case ends with exactly one `down` and one `up`, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde_json::Value;

use support::{Receiver, eventually, free_port, get, healthd, switchable_upstream};

fn write_config(dir: &Path, api: SocketAddr, upstream: SocketAddr, hook: SocketAddr) -> PathBuf {
    let path = dir.join("healthd.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "{api}"

[delivery]
max_backoff = "1s"

[defaults]
interval = "100ms"
timeout = "1s"
jitter = "0s"
retries = 2

[[notify]]
name = "hook"
provider = "webhook"
url = "http://{hook}/events"

[[monitor]]
name = "api"
url = "http://{upstream}/"
"#
        ),
    )
    .unwrap();
    path
}

/// The monitor's status as the API shows it.
async fn status(addr: SocketAddr) -> String {
    let body = get(addr, "/api/v1/monitors/api").await;
    serde_json::from_str::<Value>(&body)
        .map(|m| m["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_queued_at_kill_9_is_delivered_after_restart_then_its_up() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, answer) = switchable_upstream().await;
    let mut hook = Receiver::new().await;
    let api = free_port();
    let config = write_config(dir.path(), api, upstream, hook.addr);

    let mut daemon = healthd(dir.path(), &config);
    eventually("healthy", || async { status(api).await == "healthy" }).await;
    hook.down().await;
    answer.store(503, Ordering::SeqCst);
    // The down is committed and waits for the receiver.
    let pending = "healthd_outbox_pending{notifier=\"hook\"} 1";
    eventually("a queued down", || async {
        get(api, "/metrics").await.lines().any(|l| l == pending)
    })
    .await;
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();

    // The outage ends while healthd is away; the receiver is back.
    answer.store(200, Ordering::SeqCst);
    hook.up().await;
    let mut daemon = healthd(dir.path(), &config);
    eventually("down then up", || async { hook.events().len() >= 2 }).await;
    assert_eq!(hook.events(), ["down", "up"]);
    // Nothing more comes: the outbox is empty and stays so.
    let empty = "healthd_outbox_pending{notifier=\"hook\"} 0";
    eventually("an empty outbox", || async {
        get(api, "/metrics").await.lines().any(|l| l == empty)
    })
    .await;
    assert_eq!(hook.events(), ["down", "up"]);
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_sends_no_second_down() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, answer) = switchable_upstream().await;
    let hook = Receiver::new().await;
    let api = free_port();
    let config = write_config(dir.path(), api, upstream, hook.addr);

    let mut daemon = healthd(dir.path(), &config);
    eventually("healthy", || async { status(api).await == "healthy" }).await;
    answer.store(503, Ordering::SeqCst);
    eventually("a down", || async { hook.events() == ["down"] }).await;
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();

    // The restarted daemon resumes the outage: unhealthy, and silent.
    let mut daemon = healthd(dir.path(), &config);
    eventually("resumed unhealthy", || async {
        status(api).await == "unhealthy"
    })
    .await;
    // Five failed checks of the resumed outage later, still only the first down.
    eventually("five failed checks after the restart", || async {
        get(api, "/metrics").await.lines().any(|l| {
            l.strip_prefix("healthd_monitor_checks_total{monitor=\"api\",result=\"unhealthy\"} ")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 5)
        })
    })
    .await;
    assert_eq!(hook.events(), ["down"], "no second down after the restart");
    answer.store(200, Ordering::SeqCst);
    eventually("the up", || async { hook.events().len() >= 2 }).await;
    assert_eq!(hook.events(), ["down", "up"]);
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}
