//! HAProxy as a peer ([`Impl::Haproxy`](crate::spec::Impl::Haproxy)): Debian's
//! `haproxy` with one backend holding the scenario's servers (the same upstream
//! addresses, in the same order, as the other implementations' targets), run by the
//! orchestrator as a child of its own (`haproxy -f CFG -db`: in the foreground, no master
//! process, no fork) and measured from outside over the same warm-up and window as the
//! others: its CPU time from `/proc/<pid>/task/*/schedstat` (each thread's time on a
//! CPU, user and system, in nanoseconds; `/proc/<pid>/stat`'s `utime + stime`, in 10 ms
//! ticks, where schedstat is missing), its resident memory from `/proc/<pid>/status`,
//! its HTTP checks from the upstream's counters (one request each), its TCP checks from
//! its own count of connections (`show info`'s `CumConns` on its stats socket, less the
//! readings' own), and its failed checks from its stats socket (`chkfail`).
//!
//! # HAProxy's TCP check never reaches the upstream's `accept`
//!
//! A plain `check` (no data to send) connects with delayed ACKs and, once the SYN-ACK
//! arrives, closes at once with a reset: the handshake's last ACK is never sent, so the
//! upstream's kernel drops the half-open connection and its `accept` never sees it (its
//! TCP counter stays at zero). So its TCP checks, and the new connections they open (one
//! each), are HAProxy's own count; it also spares HAProxy the close and the upstream the
//! accept that every other implementation's TCP check pays for.
//!
//! # The configuration, and why
//!
//! - `nbthread 2`: our monitors, the naive loop and Pingora each run on a tokio runtime
//!   with two workers (the reference machine has two cores); HAProxy gets as many threads.
//! - `maxconn 4096`: it bounds frontend connections, and there are none (checks do not
//!   count against it), but HAProxy sizes its file-descriptor table from it: it needs
//!   `2 × maxconn` plus one per checked server plus a few below the open-files limit, or
//!   it refuses to start (2 × 4096 + 10 000 + 27 = 18 219 under this machine's 20 000).
//! - No `log` line: nothing goes to syslog. What HAProxy prints (its notices, a server
//!   going down) goes to a file in its temporary directory, shown when it fails.
//! - `default-server check inter 1s fall 3 rise 1`: our defaults (`retries = 3`,
//!   `rise = 1`) at the scenario's interval; `timeout connect` and `timeout check` 10 s,
//!   our default `timeout`.
//! - HTTP: `option httpchk` sending what our probe sends (`GET`, HTTP/1.1, a `Host`
//!   header) and `http-check expect status 200`; TCP: a plain `check` (connect, close).
//!   HAProxy opens a new connection for every check: the `new conn/check` figure shows it.
//! - No `spread-checks`: HAProxy already staggers a backend's first checks evenly over
//!   the interval (server `k` of `n` first at `k/n` of it), which spreads the load as our
//!   one-time jitter does; `spread-checks` would shift every later check by a random
//!   amount too, which ours does not. Its next check is due one interval after the last
//!   one ended (ours: after it began), so it does a little under one check per second
//!   per server; CPU per check divides by the checks done, so this does not favour it.
//! - Memory per server: resident memory after the warm-up less that of the same
//!   configuration with no server (a process of its own, measured first), ÷ servers.
//!   Its schedule lag is not measured.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    process::{Child, Command},
    time::Instant,
};

use crate::{
    spec::{Measured, Proto, Spec},
    stats::{rss_of, upstream_counters},
};

/// Why a HAProxy row is skipped where the program is missing.
pub(crate) const MISSING: &str = "haproxy not installed (apt-get install haproxy)";
/// HAProxy's threads: as many as the tokio workers of the other implementations.
const NBTHREAD: usize = 2;
/// See the module docs: high enough for anything, low enough for the fd table.
const MAXCONN: usize = 4096;
/// The path HAProxy's HTTP checks ask for (the upstream answers `200` to it).
const CHECK_PATH: &str = "/m/haproxy";
/// How long HAProxy may take to read its configuration and open its stats socket.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// Time for a process that just started to settle before its baseline memory is read
/// (as [`crate::stats::baseline`] waits).
const SETTLE: Duration = Duration::from_millis(200);
/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux port).
const USER_HZ: u64 = 100;

/// HAProxy's version line (`HAProxy version 2.6.12-1+deb12u4 ...`), or why it cannot
/// run (for a missing program, [`MISSING`]).
pub(crate) fn version() -> Result<String, String> {
    let output = std::process::Command::new("haproxy")
        .arg("-v")
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("HAProxy")
            .trim()
            .to_owned()),
        Ok(out) => Err(format!("`haproxy -v` failed ({})", out.status)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(MISSING.to_owned()),
        Err(err) => Err(format!("cannot run haproxy: {err}")),
    }
}

/// HAProxy's configuration for `spec` with its first `servers` servers (none for the
/// memory baseline), its stats socket at `socket`.
pub(crate) fn config(spec: &Spec, servers: usize, socket: &Path) -> String {
    let timeout_ms = 10_000;
    let mut cfg = String::new();
    let _ = writeln!(cfg, "global");
    let _ = writeln!(cfg, "    nbthread {NBTHREAD}");
    let _ = writeln!(cfg, "    maxconn {MAXCONN}");
    let _ = writeln!(
        cfg,
        "    stats socket {} mode 600 level user",
        socket.display()
    );
    let _ = writeln!(cfg, "defaults");
    let _ = writeln!(cfg, "    mode tcp");
    for timeout in ["connect", "check", "client", "server"] {
        let _ = writeln!(cfg, "    timeout {timeout} {timeout_ms}ms");
    }
    let _ = writeln!(cfg, "backend checks");
    if spec.proto == Proto::Http {
        let _ = writeln!(cfg, "    option httpchk");
        let _ = writeln!(
            cfg,
            "    http-check send meth GET uri {CHECK_PATH} ver HTTP/1.1 hdr Host localhost"
        );
        let _ = writeln!(cfg, "    http-check expect status 200");
    }
    let _ = writeln!(
        cfg,
        "    default-server check inter {}ms fall 3 rise 1",
        spec.interval_ms
    );
    for i in 0..servers {
        let _ = writeln!(cfg, "    server s{i} {}", spec.target(i));
    }
    cfg
}

/// Runs `spec` with HAProxy: first the baseline (no server), then the servers over the
/// warm-up and the window.
pub(crate) async fn run(spec: &Spec) -> Result<Measured> {
    let dir = tempfile::tempdir().context("cannot create HAProxy's directory")?;
    let mut base = Haproxy::start(dir.path(), "base", spec, 0).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_base = base.rss();
    base.stop().await;

    let mut haproxy = Haproxy::start(dir.path(), "run", spec, spec.monitors).await?;
    let measured = haproxy.measure(spec, rss_base).await;
    haproxy.stop().await;
    measured.with_context(|| haproxy.printed())
}

/// One running `haproxy -db`.
#[derive(Debug)]
struct Haproxy {
    child: Child,
    pid: u32,
    socket: PathBuf,
    /// Where its standard error goes.
    log: PathBuf,
}

impl Haproxy {
    /// Writes `<name>.cfg` in `dir`, starts HAProxy on it and waits until its stats
    /// socket answers (its configuration read, its checks scheduled).
    async fn start(dir: &Path, name: &str, spec: &Spec, servers: usize) -> Result<Haproxy> {
        let socket = dir.join(format!("{name}.sock"));
        let cfg_path = dir.join(format!("{name}.cfg"));
        let log = dir.join(format!("{name}.log"));
        std::fs::write(&cfg_path, config(spec, servers, &socket))
            .with_context(|| format!("cannot write {}", cfg_path.display()))?;
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&cfg_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start haproxy")?;
        let pid = child.id().context("haproxy ended at once")?;
        let mut haproxy = Haproxy {
            child,
            pid,
            socket,
            log,
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = haproxy
                .child
                .try_wait()
                .context("cannot wait for haproxy")?
            {
                bail!("haproxy exited ({status}): {}", haproxy.printed());
            }
            if UnixStream::connect(&haproxy.socket).await.is_ok() {
                return Ok(haproxy);
            }
            if Instant::now() >= deadline {
                haproxy.stop().await;
                bail!(
                    "haproxy did not open its stats socket in {} s: {}",
                    READY_WITHIN.as_secs(),
                    haproxy.printed()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The warm-up, the memory reading and the window, as [`crate::stats::Stats::measure`]
    /// has them; the readings that make HAProxy work (its stats) are taken outside the
    /// CPU window.
    async fn measure(&mut self, spec: &Spec, rss_base: u64) -> Result<Measured> {
        tokio::time::sleep(Duration::from_millis(spec.warmup_ms)).await;
        self.alive()?;
        let rss_after = self.rss();
        let mut measured = Measured {
            rss_base,
            rss_after,
            ..Measured::default()
        };
        if spec.window_ms == 0 {
            return Ok(measured);
        }
        let failed_before = self.failed_checks().await?;
        let counted = "HAProxy's checks are counted by the upstream, whose counters did not answer";
        let before = upstream_counters(spec).await.context(counted)?;
        let opened_before = self.opened().await?;
        let cpu_start = self.cpu_time()?;
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(spec.window_ms)).await;
        let cpu_end = self.cpu_time()?;
        let elapsed = start.elapsed();
        // Counted with its own connection to the stats socket.
        let opened = self.opened().await?.saturating_sub(opened_before + 1);
        let after = upstream_counters(spec).await.context(counted)?;
        let failed_after = self.failed_checks().await?;
        self.alive()?;
        let seen = after.since(&before);
        (measured.checks, measured.connections) = match spec.proto {
            Proto::Http => (seen.checks(spec.proto), Some(seen.connections(spec.proto))),
            // See the module docs: the upstream never accepts these.
            Proto::Tcp => (opened, Some(opened)),
        };
        measured.failures = failed_after.saturating_sub(failed_before);
        measured.window_s = elapsed.as_secs_f64();
        measured.cpu_s = cpu_end.saturating_sub(cpu_start).as_secs_f64();
        Ok(measured)
    }

    fn alive(&mut self) -> Result<()> {
        match self.child.try_wait().context("cannot wait for haproxy")? {
            Some(status) => bail!("haproxy exited ({status})"),
            None => Ok(()),
        }
    }

    fn rss(&self) -> u64 {
        rss_of(&format!("/proc/{}/status", self.pid))
    }

    /// User plus system CPU time of every HAProxy thread so far.
    fn cpu_time(&self) -> Result<Duration> {
        // schedstat's first field is the thread's time on a CPU in nanoseconds (what
        // getrusage sums for our processes); HAProxy's threads live as long as it does,
        // so the sum over its threads is the process's.
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .context("cannot read HAProxy's threads")?;
        let mut nanos = 0u64;
        let mut threads = 0;
        for task in tasks.flatten() {
            let first = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(first) = first {
                nanos += first;
                threads += 1;
            }
        }
        if threads > 0 {
            return Ok(Duration::from_nanos(nanos));
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .context("cannot read HAProxy's CPU time")?;
        stat_cpu_time(&stat).context("cannot parse /proc/<pid>/stat")
    }

    /// Failed checks so far, summed over the servers (`show stat`'s `chkfail`).
    async fn failed_checks(&self) -> Result<u64> {
        // Servers only (type 4), of every proxy.
        failed_in(&self.ask("show stat -1 4 -1").await?)
    }

    /// Connections HAProxy opened or accepted so far (`show info`'s `CumConns`: its
    /// checks' and those of its stats socket, this one's included).
    async fn opened(&self) -> Result<u64> {
        cum_conns(&self.ask("show info").await?)
    }

    /// Sends `command` to the stats socket and reads its whole answer.
    async fn ask(&self, command: &str) -> Result<String> {
        let read = async {
            let mut stream = UnixStream::connect(&self.socket).await?;
            stream.write_all(format!("{command}\n").as_bytes()).await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .with_context(|| format!("HAProxy's stats socket did not answer {command:?} in 10 s"))?
            .with_context(|| format!("cannot read HAProxy's answer to {command:?}"))
    }

    /// Kills HAProxy and waits until it is gone.
    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The last lines HAProxy printed, for an error message.
    fn printed(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        if tail.is_empty() {
            "haproxy printed nothing".to_owned()
        } else {
            format!("haproxy printed: {tail}")
        }
    }
}

/// `utime + stime` from the text of `/proc/<pid>/stat` (fields 14 and 15, after the
/// parenthesised command name, which may hold spaces).
fn stat_cpu_time(stat: &str) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// `CumConns` from `show info`'s answer.
fn cum_conns(info: &str) -> Result<u64> {
    info.lines()
        .find_map(|line| line.strip_prefix("CumConns:"))
        .and_then(|value| value.trim().parse().ok())
        .context("HAProxy's info has no CumConns")
}

/// The sum of the `chkfail` column of `show stat`'s CSV.
fn failed_in(csv: &str) -> Result<u64> {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|line| line.strip_prefix("# "))
        .context("HAProxy's stats have no header")?;
    let column = header
        .split(',')
        .position(|name| name == "chkfail")
        .context("HAProxy's stats have no chkfail column")?;
    Ok(lines
        .filter_map(|line| line.split(',').nth(column)?.parse::<u64>().ok())
        .sum())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::spec::Impl;

    fn spec(proto: Proto) -> Spec {
        Spec {
            name: "http-1k-1s".to_owned(),
            imp: Impl::Haproxy,
            proto,
            monitors: 3,
            interval_ms: 1000,
            warmup_ms: 1,
            window_ms: 1,
            parallel: false,
            targets: vec![
                SocketAddr::from(([127, 0, 0, 2], 8080)),
                SocketAddr::from(([127, 0, 0, 2], 8081)),
            ],
            control: None,
            store: false,
            flapping_percent: 0,
        }
    }

    #[test]
    fn the_backend_holds_the_same_servers_as_the_other_implementations_targets() {
        let socket = Path::new("/tmp/x/run.sock");
        let http = config(&spec(Proto::Http), 3, socket);
        for line in [
            "    nbthread 2\n",
            "    stats socket /tmp/x/run.sock mode 600 level user\n",
            "    timeout check 10000ms\n",
            "    option httpchk\n",
            "    http-check send meth GET uri /m/haproxy ver HTTP/1.1 hdr Host localhost\n",
            "    http-check expect status 200\n",
            "    default-server check inter 1000ms fall 3 rise 1\n",
            "    server s0 127.0.0.2:8080\n",
            "    server s1 127.0.0.2:8081\n",
            "    server s2 127.0.0.2:8080\n",
        ] {
            assert!(http.contains(line), "{line:?} missing from\n{http}");
        }
        assert!(
            !http.lines().any(|l| l.trim_start().starts_with("log")),
            "{http}"
        );
        let tcp = config(&spec(Proto::Tcp), 3, socket);
        assert!(!tcp.contains("httpchk"), "{tcp}");
        assert!(tcp.contains("    server s2 127.0.0.2:8080\n"), "{tcp}");
        let base = config(&spec(Proto::Http), 0, socket);
        assert!(!base.contains("server s"), "{base}");
    }

    #[test]
    fn failed_checks_are_summed_over_the_servers() {
        let csv = "# pxname,svname,status,chkfail,chkdown\n\
                   checks,s0,UP,2,0\n\
                   checks,s1,UP,,0\n\
                   checks,s2,DOWN,5,1\n\n";
        assert_eq!(failed_in(csv).unwrap(), 7);
        assert!(failed_in("Unknown command\n").is_err());
    }

    #[test]
    fn connections_come_from_show_info() {
        let info = "Name: HAProxy\nMaxconn: 4096\nCumConns: 4998\nCumReq: 2\n";
        assert_eq!(cum_conns(info).unwrap(), 4998);
        assert!(cum_conns("Maxconn: 4096\n").is_err());
    }

    #[test]
    fn cpu_time_comes_from_utime_and_stime() {
        let stat = "4242 (hap roxy) S 1 4242 4242 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 2 0";
        assert_eq!(stat_cpu_time(stat), Some(Duration::from_millis(1750)));
        assert_eq!(stat_cpu_time("garbage"), None);
    }
}
