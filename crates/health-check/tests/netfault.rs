//! Network faults made for real: a network namespace and a veth pair made by the test,
//! a target address inside the namespace, and nftables rules there for a black hole, a
//! TCP reset, each ICMP destination-unreachable code Linux maps to an errno, and a delay
//! line. The probes run in this process, in the root namespace, against the address in
//! the namespace; each case asserts the classification and that the check ended within
//! its timeout.
//!
//! The delay line is a slow link with a full queue (bufferbloat), made with the `tbf`
//! queueing discipline rather than `netem`, which many kernels (this project's CI
//! machine's among them) are built without: the namespace's end of the pair sends at
//! 800 kbit/s, and just before each check a ballast of UDP datagrams from inside the
//! namespace fills its queue, so the target's SYN-ACK waits behind about 400 ms of data.
//!
//! Needs root, `ip`, `nft` and `tc`; without them (or where the kernel refuses a
//! namespace) it prints `skipped: <reason>` and passes. The delay line also needs the
//! `tbf` queueing discipline, else that case alone is skipped.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    fs::File,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    process::{Command, Stdio},
    time::Duration,
};

use health_check::StreamProbe;
use health_types::{CheckKind, CheckResult, HealthCheckConfig, Probe};
use support::config;
use tokio::time::Instant;
use url::Url;

/// What the namespace does to packets for each target port (nftables, `inet` family).
const RULES: &str = r"
table inet faults {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 1001 drop
        tcp dport 1002 reject with tcp reset
        meta nfproto ipv4 tcp dport 1010 reject with icmp type net-unreachable
        meta nfproto ipv4 tcp dport 1011 reject with icmp type host-unreachable
        meta nfproto ipv4 tcp dport 1012 reject with icmp type prot-unreachable
        meta nfproto ipv4 tcp dport 1013 reject with icmp type port-unreachable
        meta nfproto ipv4 tcp dport 1015 reject with icmp 5
        meta nfproto ipv4 tcp dport 1016 reject with icmp 6
        meta nfproto ipv4 tcp dport 1017 reject with icmp 7
        meta nfproto ipv4 tcp dport 1018 reject with icmp 8
        meta nfproto ipv4 tcp dport 1019 reject with icmp type net-prohibited
        meta nfproto ipv4 tcp dport 1020 reject with icmp type host-prohibited
        meta nfproto ipv4 tcp dport 1023 reject with icmp type admin-prohibited
        udp dport 2001 drop
        meta nfproto ipv4 udp dport 2012 reject with icmp type prot-unreachable
        meta nfproto ipv4 udp dport 2014 reject with icmp 4
    }
}
";

/// The port a listener inside the namespace serves (no rule touches it).
const OPEN_PORT: u16 = 3000;
/// The delay line's rate, bytes a second (800 kbit/s).
const LINK_RATE: usize = 100_000;
/// How much a check may run past its timeout.
const SLACK: Duration = Duration::from_millis(500);

/// Runs `program args…` (stdin: `input`), or says why it failed.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<(), String> {
    let shown = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("{shown}: {err}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|err| format!("{shown}: {err}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|err| format!("{shown}: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A network namespace joined to this one by a veth pair: the host end has `.1`, the
/// end inside the namespace (the target) `.2` of a /30. Removed when dropped, whatever
/// happened (deleting the namespace deletes its end of the pair, and so the pair).
struct Lab {
    ns: String,
    host_if: String,
    target_if: String,
    target: Ipv4Addr,
}

impl Lab {
    /// Makes the namespace and the pair (names and addresses from this process's id,
    /// so concurrent runs do not collide) and loads [`RULES`] inside.
    fn create() -> Result<Lab, String> {
        let pid = std::process::id();
        let ns = format!("hcnf{pid}");
        run("ip", &["netns", "add", &ns], None)?;
        let lab = Lab {
            host_if: format!("hcnf{pid}h"),
            target_if: format!("hcnf{pid}t"),
            target: Ipv4Addr::new(10, 250, (pid >> 6) as u8, ((pid & 0x3f) << 2) as u8 + 2),
            ns,
        };
        let host_ip = Ipv4Addr::from(u32::from(lab.target) - 1);
        let (ns, host_if, target_if) = (
            lab.ns.as_str(),
            lab.host_if.as_str(),
            lab.target_if.as_str(),
        );
        let host_cidr = format!("{host_ip}/30");
        let target_cidr = format!("{}/30", lab.target);
        let steps: &[&[&str]] = &[
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", target_if, "netns", ns,
            ],
            &["addr", "add", &host_cidr, "dev", host_if],
            &["link", "set", host_if, "up"],
            &["-n", ns, "addr", "add", &target_cidr, "dev", target_if],
            &["-n", ns, "link", "set", target_if, "up"],
            &["-n", ns, "link", "set", "lo", "up"],
            // No ICMP rate limit: every rejected SYN gets its answer at once.
            &[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.icmp_ratelimit=0",
            ],
        ];
        for step in steps {
            run("ip", step, None)?;
        }
        run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(RULES))?;
        Ok(lab)
    }

    /// Runs `make` on a thread that has joined the namespace: sockets it makes stay there.
    fn inside<T: Send>(
        &self,
        make: impl FnOnce() -> Result<T, String> + Send,
    ) -> Result<T, String> {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).map_err(|err| format!("{path}: {err}"))?;
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|err| format!("setns {path}: {err}"))?;
                    make()
                })
                .join()
                .unwrap()
        })
    }

    /// A TCP listener on `port` of the target address, made inside the namespace. The
    /// kernel completes connects to it without an `accept`.
    fn listen(&self, port: u16) -> Result<TcpListener, String> {
        let addr = SocketAddr::from((self.target, port));
        self.inside(|| TcpListener::bind(addr).map_err(|err| format!("bind {addr}: {err}")))
    }

    /// Makes the namespace's end of the pair a slow link with a deep queue: [`LINK_RATE`]
    /// bytes a second, one packet of burst, up to 5 s of queued data. Returns a UDP socket
    /// inside the namespace to fill the queue with ([`Lab::fill_queue`]).
    fn slow_link(&self) -> Result<UdpSocket, String> {
        let rate = format!("{}bit", LINK_RATE * 8);
        let (ns, target_if) = (self.ns.as_str(), self.target_if.as_str());
        let args = [
            "netns", "exec", ns, "tc", "qdisc", "add", "dev", target_if, "root", "tbf", "rate",
            &rate, "burst", "1600", "latency", "5s",
        ];
        run("ip", &args, None)?;
        let addr = SocketAddr::from((self.target, 0));
        self.inside(|| UdpSocket::bind(addr).map_err(|err| format!("bind {addr}: {err}")))
    }

    /// Queues `bytes` of UDP datagrams on the slow link, towards the host end's discard
    /// port (nothing listens; the datagrams only take their turn on the link). Every
    /// packet the namespace sends next waits until they have gone.
    fn fill_queue(&self, socket: &UdpSocket, bytes: usize) {
        let host = SocketAddr::from((Ipv4Addr::from(u32::from(self.target) - 1), 9));
        let datagram = [0u8; 1400];
        for _ in 0..bytes.div_ceil(datagram.len()) {
            socket.send_to(&datagram, host).unwrap();
        }
    }

    fn url(&self, scheme: &str, port: u16) -> Url {
        Url::parse(&format!("{scheme}://{}:{port}/", self.target)).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.ns], None);
        let _ = run("ip", &["link", "del", &self.host_if], None);
    }
}

/// Why the suite cannot run on this machine, if it cannot.
fn missing_tools() -> Option<String> {
    for (tool, flag) in [("ip", "-V"), ("nft", "-v"), ("tc", "-V")] {
        if let Err(err) = run(tool, &[flag], None) {
            return Some(format!("`{tool}` is not available ({err})"));
        }
    }
    None
}

/// Checks `url` with `probe`; asserts the check ended within `timeout` + [`SLACK`].
async fn timed_check(probe: &dyn Probe, url: &Url, timeout: Duration) -> CheckResult {
    let started = Instant::now();
    let result = probe
        .check(url)
        .await
        .unwrap_or_else(|err| panic!("{url}: the target's network is no checker error: {err}"));
    let elapsed = started.elapsed();
    assert!(elapsed < timeout + SLACK, "{url}: took {elapsed:?}");
    result
}

/// One case: the port, the probe's config, and the result wanted.
struct Case {
    what: &'static str,
    scheme: &'static str,
    port: u16,
    config: HealthCheckConfig,
    kind: CheckKind,
    detail: &'static str,
}

fn case(
    what: &'static str,
    scheme: &'static str,
    port: u16,
    kind: CheckKind,
    detail: &'static str,
) -> Case {
    // Rejections answer at once; only the black holes run to their timeout.
    let timeout = if kind == CheckKind::Timeout {
        500
    } else {
        2000
    };
    let mut config = config(timeout);
    config.expect_reply = scheme == "udp";
    Case {
        what,
        scheme,
        port,
        config,
        kind,
        detail,
    }
}

fn cases() -> Vec<Case> {
    use CheckKind::{Refused, Timeout};
    let mut cases = vec![
        case("black hole", "tcp", 1001, Timeout, "timed out after 500ms"),
        case("tcp reset", "tcp", 1002, Refused, "connection refused"),
        case(
            "net unreachable",
            "tcp",
            1010,
            Refused,
            "network unreachable",
        ),
        case("host unreachable", "tcp", 1011, Refused, "host unreachable"),
        case(
            "protocol unreachable",
            "tcp",
            1012,
            Refused,
            "protocol unreachable",
        ),
        case(
            "port unreachable",
            "tcp",
            1013,
            Refused,
            "connection refused",
        ),
        case(
            "source route failed",
            "tcp",
            1015,
            Refused,
            "source route failed",
        ),
        case("net unknown", "tcp", 1016, Refused, "network unreachable"),
        case("host unknown", "tcp", 1017, Refused, "host unknown"),
        case("host isolated", "tcp", 1018, Refused, "host isolated"),
        case(
            "net prohibited",
            "tcp",
            1019,
            Refused,
            "network unreachable",
        ),
        case("host prohibited", "tcp", 1020, Refused, "host unreachable"),
        case("admin prohibited", "tcp", 1023, Refused, "host unreachable"),
        case(
            "udp black hole",
            "udp",
            2001,
            Timeout,
            "no reply (udp): timed out after 250ms",
        ),
        case(
            "udp protocol unreachable",
            "udp",
            2012,
            Refused,
            "protocol unreachable",
        ),
        case(
            "udp fragmentation needed",
            "udp",
            2014,
            Refused,
            "fragmentation needed",
        ),
        case(
            "udp port unreachable",
            "udp",
            2999,
            Refused,
            "port unreachable",
        ),
    ];
    #[cfg(feature = "http")]
    cases.extend([
        case(
            "http black hole",
            "http",
            1001,
            Timeout,
            "timed out after 500ms",
        ),
        case(
            "http tcp reset",
            "http",
            1002,
            Refused,
            "connection refused",
        ),
        case("http host isolated", "http", 1018, Refused, "host isolated"),
    ]);
    cases
}

/// The probe for `scheme` with `config`.
fn probe(scheme: &str, config: &HealthCheckConfig) -> Box<dyn Probe> {
    match scheme {
        #[cfg(feature = "http")]
        "http" => Box::new(health_check::HttpProbe::try_new(config).unwrap()),
        _ => Box::new(StreamProbe::try_new(config).unwrap()),
    }
}

#[test]
fn network_faults_are_classified_within_the_timeout() {
    if let Some(reason) = missing_tools() {
        println!("skipped: {reason}");
        return;
    }
    let lab = match Lab::create() {
        Ok(lab) => lab,
        Err(reason) => {
            println!("skipped: cannot make a network namespace here: {reason}");
            return;
        }
    };
    let _listener = lab.listen(OPEN_PORT).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The path works: the listener inside answers.
        let open = config(2000);
        let stream = StreamProbe::try_new(&open).unwrap();
        let result = timed_check(&stream, &lab.url("tcp", OPEN_PORT), open.timeout).await;
        assert!(result.healthy, "{result:?}");

        for case in cases() {
            let probe = probe(case.scheme, &case.config);
            let url = lab.url(case.scheme, case.port);
            let result = timed_check(probe.as_ref(), &url, case.config.timeout).await;
            assert_eq!(
                (result.healthy, result.kind, result.detail.as_str()),
                (false, case.kind, case.detail),
                "{}: {url}",
                case.what
            );
        }

        delay_line(&lab).await;
    });
}

/// With about 400 ms of data queued ahead of every packet leaving the namespace: a check
/// with time to spare is healthy and slow, one with less is cut at its timeout.
async fn delay_line(lab: &Lab) {
    let socket = match lab.slow_link() {
        Ok(socket) => socket,
        Err(reason) => {
            println!(
                "skipped: delay line: the tbf queueing discipline is not available ({reason})"
            );
            return;
        }
    };
    // 40 000 bytes at 100 000 a second, less the one packet of burst.
    let ballast = 40_000;
    let delay = Duration::from_millis(300);
    let url = lab.url("tcp", OPEN_PORT);

    let hasty = config(100);
    lab.fill_queue(&socket, ballast);
    let result = timed_check(&StreamProbe::try_new(&hasty).unwrap(), &url, hasty.timeout).await;
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Timeout, "timed out after 100ms")
    );

    let patient = config(2000);
    let probe = StreamProbe::try_new(&patient).unwrap();
    lab.fill_queue(&socket, ballast);
    let result = timed_check(&probe, &url, patient.timeout).await;
    assert!(result.healthy, "{result:?}");
    assert!(result.latency >= delay, "{result:?}");
}
