//! The alert policy in the daemon (SPEC §9.5), end to end with the real binary: a `down`
//! held by `depends_on` survives a `kill -9` and goes out when the dependency is back;
//! reminders reach the receiver; a maintenance window mutes a monitor and shows in the
//! API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde_json::Value;

use support::{Receiver, eventually, free_port, get, healthd, switchable_upstream};

/// A config with fast checks, one webhook at `hook`, and `rest` (monitors, windows).
fn write_config(dir: &Path, api: SocketAddr, hook: SocketAddr, rest: &str) -> PathBuf {
    let path = dir.join("healthd.toml");
    let text = format!(
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
{rest}"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A monitor's JSON as the API shows it (`Null` while healthd does not answer).
async fn monitor(addr: SocketAddr, name: &str) -> Value {
    let body = get(addr, &format!("/api/v1/monitors/{name}")).await;
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// How many checks of `name` had `result`, by /metrics.
async fn checks(addr: SocketAddr, name: &str, result: &str) -> u64 {
    let prefix = format!("healthd_monitor_checks_total{{monitor=\"{name}\",result=\"{result}\"}} ");
    get(addr, "/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_down_survives_kill_9_and_goes_out_when_its_dependency_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (db_addr, db) = switchable_upstream().await;
    let (api_addr, api_up) = switchable_upstream().await;
    let hook = Receiver::new().await;
    let addr = free_port();
    let monitors = format!(
        r#"
[[monitor]]
name = "db"
url = "http://{db_addr}/"

[[monitor]]
name = "api"
url = "http://{api_addr}/"
depends_on = ["db"]
"#
    );
    let config = write_config(dir.path(), addr, hook.addr, &monitors);
    let mut daemon = healthd(dir.path(), &config);
    eventually("both healthy", || async {
        monitor(addr, "db").await["status"] == "healthy"
            && monitor(addr, "api").await["status"] == "healthy"
    })
    .await;

    db.store(503, Ordering::SeqCst);
    eventually("db's down", || async { hook.about() == ["down db"] }).await;
    api_up.store(503, Ordering::SeqCst);
    // api goes down while db is down: its down is held. Five failed checks later it is
    // still held.
    eventually("api unhealthy, then five more failed checks", || async {
        monitor(addr, "api").await["status"] == "unhealthy"
            && checks(addr, "api", "unhealthy").await >= 8
    })
    .await;
    assert_eq!(hook.about(), ["down db"], "api's down is held");
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();

    // db comes back while healthd is away; api is still down. After the restart, db's
    // up goes out, then api's held down: once.
    db.store(200, Ordering::SeqCst);
    let mut daemon = healthd(dir.path(), &config);
    eventually("db's up and api's released down", || async {
        hook.about().len() >= 3
    })
    .await;
    assert_eq!(hook.about(), ["down db", "up db", "down api"]);
    api_up.store(200, Ordering::SeqCst);
    eventually("api's up", || async { hook.about().len() >= 4 }).await;
    assert_eq!(hook.about(), ["down db", "up db", "down api", "up api"]);
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_reach_the_receiver_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, answer) = switchable_upstream().await;
    let hook = Receiver::new().await;
    let addr = free_port();
    let monitors = format!(
        "[[monitor]]\nname = \"api\"\nurl = \"http://{upstream}/\"\nremind_every = \"300ms\"\n"
    );
    let config = write_config(dir.path(), addr, hook.addr, &monitors);
    let mut daemon = healthd(dir.path(), &config);
    eventually("healthy", || async {
        monitor(addr, "api").await["status"] == "healthy"
    })
    .await;
    answer.store(503, Ordering::SeqCst);
    eventually("a down and two reminders", || async {
        hook.events().len() >= 3
    })
    .await;
    answer.store(200, Ordering::SeqCst);
    eventually("the up", || async {
        hook.events().last().map(String::as_str) == Some("up")
    })
    .await;
    let events = hook.events();
    assert_eq!(events.first().map(String::as_str), Some("down"));
    assert!(
        events[1..events.len() - 1].iter().all(|e| e == "reminder"),
        "{events:?}"
    );
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_mutes_its_monitor_and_shows_in_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, answer) = switchable_upstream().await;
    let (other, other_answer) = switchable_upstream().await;
    let hook = Receiver::new().await;
    let addr = free_port();
    let monitors = format!(
        r#"
[[monitor]]
name = "api"
url = "http://{upstream}/"

[[monitor]]
name = "web"
url = "http://{other}/"

[[maintenance]]
monitors = ["api"]
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
"#
    );
    let config = write_config(dir.path(), addr, hook.addr, &monitors);
    let mut daemon = healthd(dir.path(), &config);
    eventually("both healthy", || async {
        monitor(addr, "api").await["status"] == "healthy"
            && monitor(addr, "web").await["status"] == "healthy"
    })
    .await;
    assert_eq!(monitor(addr, "api").await["maintenance"], true);
    assert_eq!(monitor(addr, "web").await["maintenance"], false);
    answer.store(503, Ordering::SeqCst);
    other_answer.store(503, Ordering::SeqCst);
    eventually("web's down", || async { hook.about() == ["down web"] }).await;
    eventually("api unhealthy, then five more failed checks", || async {
        monitor(addr, "api").await["status"] == "unhealthy"
            && checks(addr, "api", "unhealthy").await >= 8
    })
    .await;
    assert_eq!(
        hook.about(),
        ["down web"],
        "nothing about api inside its window"
    );
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}
