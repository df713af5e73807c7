//! healthd as the soak drives it: the generated config, the child process (killed on
//! drop, so that no exit path leaves it behind), its API (`/healthz`, `/metrics`) and its
//! resident memory from `/proc`.

use std::{
    fs::File,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

use super::verdict::{Rules, monitor_name};

/// What the generated config holds.
#[derive(Clone, Debug)]
pub(crate) struct HealthdConfig {
    /// `[server] listen`.
    pub(crate) listen: SocketAddr,
    /// The receiver: the one `[[notify]]` webhook posts to `http://<receiver>/notify`.
    pub(crate) receiver: SocketAddr,
    /// `[storage] path`; `None` leaves `[storage]` and `[delivery]` out (for a healthd
    /// that does not know them yet).
    pub(crate) store: Option<PathBuf>,
    /// `[delivery] max_backoff`.
    pub(crate) max_backoff: Duration,
    /// The monitors' interval, timeout and retries.
    pub(crate) rules: Rules,
    /// Each target's URL; monitor `i` is named [`monitor_name`]`(i)`.
    pub(crate) targets: Vec<String>,
}

/// The name of the one notifier.
pub(crate) const NOTIFIER: &str = "soak";

#[derive(Serialize)]
struct ConfigFile<'a> {
    server: Server,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<Storage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<Delivery>,
    defaults: Defaults,
    notify: [Notify; 1],
    monitor: Vec<MonitorEntry<'a>>,
}

#[derive(Serialize)]
struct Server {
    listen: String,
}

#[derive(Serialize)]
struct Storage<'a> {
    path: &'a str,
}

#[derive(Serialize)]
struct Delivery {
    max_backoff: String,
}

#[derive(Serialize)]
struct Defaults {
    interval: String,
    timeout: String,
    retries: i64,
    rise: u32,
}

#[derive(Serialize)]
struct Notify {
    name: &'static str,
    provider: &'static str,
    url: String,
}

#[derive(Serialize)]
struct MonitorEntry<'a> {
    name: String,
    url: &'a str,
}

/// A duration as a config string (`"1s"`, `"2500ms"`).
fn duration(ms: i64) -> String {
    if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

impl HealthdConfig {
    /// The config file's text: `[server]`, `[storage]` and `[delivery]` (unless left
    /// out), `[defaults]` with the monitors' interval, timeout, retries and `rise = 1`,
    /// one webhook `[[notify]]` with the default JSON body, and one `[[monitor]]` per
    /// target.
    pub(crate) fn render(&self) -> Result<String> {
        let store = match &self.store {
            Some(path) => Some(
                path.to_str()
                    .with_context(|| format!("{} is not UTF-8", path.display()))?,
            ),
            None => None,
        };
        let file = ConfigFile {
            server: Server {
                listen: self.listen.to_string(),
            },
            storage: store.map(|path| Storage { path }),
            delivery: store.map(|_| Delivery {
                max_backoff: duration(self.max_backoff.as_millis() as i64),
            }),
            defaults: Defaults {
                interval: duration(self.rules.interval),
                timeout: duration(self.rules.timeout),
                retries: self.rules.retries,
                rise: 1,
            },
            notify: [Notify {
                name: NOTIFIER,
                provider: "webhook",
                url: format!("http://{}/notify", self.receiver),
            }],
            monitor: self
                .targets
                .iter()
                .enumerate()
                .map(|(i, url)| MonitorEntry {
                    name: monitor_name(i),
                    url,
                })
                .collect(),
        };
        toml::to_string(&file).context("cannot write the config")
    }
}

/// A free loopback port below the kernel's ephemeral range, so that no outgoing
/// connection can hold it when the receiver or a restarted healthd listens on it again.
pub(crate) fn free_port() -> Result<SocketAddr> {
    let low = ephemeral_low();
    let floor = if low > 12_000 { 10_000 } else { 1_024 };
    for _ in 0..200 {
        let port = fastrand::u16(floor..low.max(floor + 1));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if std::net::TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    bail!("no free port in {floor}..{low} after 200 tries")
}

/// The first port of the kernel's ephemeral range (Linux's default where unreadable).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A running `healthd run`. Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub(crate) struct Healthd {
    child: Child,
    pid: u32,
    stderr: PathBuf,
}

impl Healthd {
    /// Starts `exe run --config config` with `STATE_DIRECTORY=state`, its output in
    /// `out/healthd.<generation>.{stdout,stderr}`.
    pub(crate) fn spawn(
        exe: &Path,
        config: &Path,
        state: &Path,
        out: &Path,
        generation: u32,
    ) -> Result<Self> {
        let stdout = out.join(format!("healthd.{generation}.stdout"));
        let stderr = out.join(format!("healthd.{generation}.stderr"));
        let create = |path: &Path| {
            File::create(path).with_context(|| format!("cannot create {}", path.display()))
        };
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("STATE_DIRECTORY", state)
            .stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id().context("healthd exited at once")?;
        Ok(Healthd { child, pid, stderr })
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Resolves when it exits (cancel safe).
    pub(crate) async fn exited(&mut self) -> Result<ExitStatus> {
        self.child.wait().await.context("cannot wait for healthd")
    }

    /// `kill -9`, then waits (10 s at most) until it is gone.
    pub(crate) async fn kill9(&mut self) -> Result<ExitStatus> {
        self.child.start_kill().context("cannot kill healthd")?;
        tokio::time::timeout(Duration::from_secs(10), self.exited())
            .await
            .context("healthd still runs 10 s after SIGKILL")?
    }

    /// SIGTERM, then waits `within` for it to exit; past that, SIGKILL. `true` when it
    /// exited by itself with status 0.
    pub(crate) async fn terminate(&mut self, within: Duration) -> Result<bool> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status.success());
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .context("cannot send SIGTERM to healthd")?;
        match tokio::time::timeout(within, self.exited()).await {
            Ok(status) => Ok(status?.success()),
            Err(_) => {
                self.kill9().await?;
                Ok(false)
            }
        }
    }

    /// The last lines of its standard error, for a message.
    pub(crate) fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Healthd {
    fn drop(&mut self) {
        // On every exit path (an error, Ctrl-C, a panic) healthd goes with the harness.
        // A process already waited for is not signalled again.
        let _ = self.child.start_kill();
    }
}

/// `exe validate --config config`: fails with healthd's own words on a bad config.
pub(crate) async fn validate(exe: &Path, config: &Path) -> Result<()> {
    let run = Command::new(exe)
        .arg("validate")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .context("healthd validate took over 120 s")?
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let head: Vec<&str> = text.lines().take(10).collect();
        bail!(
            "healthd rejects the generated config ({}):\n{}",
            output.status,
            head.join("\n")
        );
    }
    Ok(())
}

/// A client for healthd's API: one connection per request, so that a killed healthd's
/// pooled sockets never get in the way.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for the API at `addr`.
    pub(crate) fn new(addr: SocketAddr) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .context("cannot build the API client")?;
        Ok(Api {
            client,
            base: format!("http://{addr}"),
        })
    }

    /// Whether `GET /healthz` answers 2xx.
    pub(crate) async fn healthy(&self) -> bool {
        let url = format!("{}/healthz", self.base);
        self.client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// `GET /metrics`, when it answers.
    pub(crate) async fn metrics(&self) -> Option<String> {
        let url = format!("{}/metrics", self.base);
        let response = self.client.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }
}

/// The sum of `healthd_outbox_pending` over its series (one per notifier), or `None`
/// when the metric is absent (a healthd without an outbox).
pub(crate) fn outbox_pending(metrics: &str) -> Option<u64> {
    const NAME: &str = "healthd_outbox_pending";
    let mut found = None;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(NAME) else {
            continue;
        };
        // The name must end here: not `healthd_outbox_pending_total`.
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.split_once('}').map(|(_, value)| value)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        let Some(value) = value.and_then(|v| v.split_whitespace().next()) else {
            continue;
        };
        if let Ok(value) = value.parse::<f64>() {
            *found.get_or_insert(0) += value.max(0.0).round() as u64;
        }
    }
    found
}

/// A process's resident memory in bytes (`VmRSS` in `/proc/<pid>/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(store: Option<PathBuf>) -> HealthdConfig {
        HealthdConfig {
            listen: "127.0.0.1:18090".parse().expect("an address"),
            receiver: "127.0.0.1:18091".parse().expect("an address"),
            store,
            max_backoff: Duration::from_secs(10),
            rules: Rules::soak(),
            targets: (0..3)
                .map(|i| format!("http://127.0.0.1:{}/t/{i}", 20_000 + i % 2))
                .collect(),
        }
    }

    fn parse(text: &str) -> toml::Table {
        text.parse().expect("the config is TOML")
    }

    #[test]
    fn the_config_has_the_store_delivery_defaults_notifier_and_every_monitor() {
        let text = config(Some(PathBuf::from("/tmp/soak \"x\"/healthd.db")))
            .render()
            .expect("renders");
        let config = parse(&text);
        assert_eq!(config["server"]["listen"].as_str(), Some("127.0.0.1:18090"));
        // Quotes in the path survive TOML's escaping.
        assert_eq!(
            config["storage"]["path"].as_str(),
            Some("/tmp/soak \"x\"/healthd.db")
        );
        assert_eq!(config["delivery"]["max_backoff"].as_str(), Some("10s"));
        let defaults = &config["defaults"];
        assert_eq!(defaults["interval"].as_str(), Some("1s"));
        assert_eq!(defaults["timeout"].as_str(), Some("2s"));
        assert_eq!(defaults["retries"].as_integer(), Some(3));
        assert_eq!(defaults["rise"].as_integer(), Some(1));
        let notify = config["notify"].as_array().expect("[[notify]]");
        assert_eq!(notify.len(), 1);
        assert_eq!(notify[0]["provider"].as_str(), Some("webhook"));
        assert_eq!(notify[0]["name"].as_str(), Some(NOTIFIER));
        assert_eq!(
            notify[0]["url"].as_str(),
            Some("http://127.0.0.1:18091/notify")
        );
        // The default JSON body: no payload template.
        assert!(notify[0].get("payload").is_none());
        let monitors = config["monitor"].as_array().expect("[[monitor]]");
        let names: Vec<_> = monitors.iter().map(|m| m["name"].as_str()).collect();
        assert_eq!(names, [Some("t0"), Some("t1"), Some("t2")]);
        assert_eq!(
            monitors[1]["url"].as_str(),
            Some("http://127.0.0.1:20001/t/1")
        );
    }

    #[test]
    fn without_a_store_the_new_tables_are_left_out() {
        let config = parse(&config(None).render().expect("renders"));
        assert!(config.get("storage").is_none());
        assert!(config.get("delivery").is_none());
        assert_eq!(config["monitor"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn durations_are_written_in_healthd_units() {
        assert_eq!(duration(1_000), "1s");
        assert_eq!(duration(300_000), "300s");
        assert_eq!(duration(2_500), "2500ms");
    }

    #[test]
    fn the_outbox_metric_is_summed_over_notifiers_and_absent_is_none() {
        let text = "\
# HELP healthd_outbox_pending Messages not yet delivered.
# TYPE healthd_outbox_pending gauge
healthd_outbox_pending{notifier=\"soak\"} 3
healthd_outbox_pending{notifier=\"other\"} 2.0
healthd_outbox_pending_total{notifier=\"soak\"} 99
healthd_outbox_oldest_seconds{notifier=\"soak\"} 12
";
        assert_eq!(outbox_pending(text), Some(5));
        let empty = "healthd_outbox_pending{notifier=\"soak\"} 0\n";
        assert_eq!(outbox_pending(empty), Some(0));
        assert_eq!(outbox_pending("healthd_outbox_pending 7\n"), Some(7));
        let without = "healthd_monitor_up{monitor=\"t0\"} 1\n# EOF\n";
        assert_eq!(outbox_pending(without), None);
    }

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_bindable() {
        let addr = free_port().expect("a port");
        assert!(addr.ip().is_loopback());
        assert!(addr.port() < ephemeral_low(), "{addr}");
        std::net::TcpListener::bind(addr).expect("still free");
    }

    #[test]
    fn our_own_resident_memory_reads_from_proc() {
        let rss = rss_bytes(std::process::id()).expect("VmRSS");
        assert!(rss > 1024 * 1024, "{rss} bytes");
    }
}
