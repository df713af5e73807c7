//! healthd's Prometheus surfaces against the real tools, over loopback upstreams (a
//! healthy HTTP one, a 503 one, HTTPS with an rcgen certificate, TCP):
//!
//! - `promtool check metrics` finds nothing to complain about in `/metrics` (with a
//!   latency histogram, phases and a certificate expiry in it) nor in `/probe`'s answers;
//! - a real Prometheus scrapes `/metrics` and, with a blackbox_exporter-style job
//!   (`metrics_path: /probe`, `params: {module: [...]}`, targets relabelled into
//!   `__param_target`), probes the upstreams through healthd; its query API then shows
//!   `probe_success`, `probe_http_status_code`, `up` and the monitors' series;
//! - the monitor JSON shows the HTTPS monitor's `certExpiry` and every monitor's
//!   `phases`, and the status page still renders.
//!
//! Each test prints `skipped: <tool> not found` and passes when its tool is missing
//! (`.ci/run` installs Debian's `prometheus` package, which has both).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, UNIX_EPOCH},
};

use health_monitor::HealthMonitor;
use health_types::{Clock, SystemClock, test_util::self_signed};
use healthd::{DaemonConfig, Running, start};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::Command,
};
use tokio_rustls::TlsAcceptor;

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads a request head (up to its blank line, at most 8 KiB) from `stream`.
async fn read_head<S: AsyncReadExt + Unpin>(stream: &mut S) {
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// The answer every upstream gives: `status` and a short body, then close.
fn answer(status: u16) -> String {
    format!("HTTP/1.1 {status} Status\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
}

/// An HTTP server on loopback answering every request with `status`. (The unit tests'
/// upstreams are in `src/test_support.rs`, a crate-private module an integration test
/// cannot reach; this one stays here.)
async fn http_upstream(status: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_head(&mut stream).await;
                let _ = stream.write_all(answer(status).as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// An HTTPS server on loopback (a self-signed rcgen certificate for 127.0.0.1)
/// answering 200.
async fn https_upstream() -> SocketAddr {
    let acceptor = TlsAcceptor::from(self_signed().server_config(&[b"http/1.1"], None));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                read_head(&mut tls).await;
                let _ = tls.write_all(answer(200).as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP server on loopback that accepts and closes.
async fn tcp_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

/// A loopback port nothing listens on (for Prometheus' own address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `GET` over HTTP/1.1 with `headers`; the status and the (de-chunked) body.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    (status, out)
}

/// `text` with every byte but unreserved ones percent-encoded, for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The upstreams of a test.
struct Upstreams {
    ok: SocketAddr,
    busy: SocketAddr,
    tls: SocketAddr,
    tcp: SocketAddr,
}

/// healthd (in process, state in memory) monitoring the four upstreams every second,
/// with modules `http_2xx` and `tcp_connect`; returned once every monitor has a result
/// and the HTTPS one has seen its certificate.
async fn healthd() -> (Running, Upstreams) {
    let up = Upstreams {
        ok: http_upstream(200).await,
        busy: http_upstream(503).await,
        tls: https_upstream().await,
        tcp: tcp_upstream().await,
    };
    let config = DaemonConfig::parse(&format!(
        r#"[server]
listen = "127.0.0.1:0"
[storage]
path = ":memory:"
[defaults]
interval = "1s"
timeout = "2s"

[modules.http_2xx]
expected_status = ["200-299"]

[modules.tcp_connect]
timeout = "1s"

[[monitor]]
name = "web"
url = "http://{ok}/health"

[[monitor]]
name = "busy"
url = "http://{busy}/"

[[monitor]]
name = "secure"
url = "https://{tls}/"

[[monitor]]
name = "db"
url = "tcp://{tcp}"
"#,
        ok = up.ok,
        busy = up.busy,
        tls = up.tls,
        tcp = up.tcp,
    ))
    .unwrap();
    let running = start(&config, Vec::new()).await.unwrap();
    for monitor in &running.monitors {
        let secure = monitor.name() == "secure";
        tokio::time::timeout(
            Duration::from_secs(20),
            monitor
                .subscribe()
                .wait_for(|s| s.checks() >= 2 && (!secure || s.cert.is_some())),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{}: two checks (and a certificate) within 20 s: {:?}",
                monitor.name(),
                monitor.snapshot()
            )
        })
        .unwrap();
    }
    (running, up)
}

/// Runs `promtool check metrics` on `text`; panics with what it said unless it said
/// nothing and succeeded.
async fn promtool_accepts(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("promtool ends within 30 s")
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool on {what}: {} {said}\n---\n{text}",
        out.status
    );
}

/// The lines of `text` that start with `prefix`.
fn lines_with<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_to_complain_about() {
    if !installed("promtool") {
        println!("skipped: promtool not found");
        return;
    }
    let (running, up) = healthd().await;
    let api = running.addr;

    let (status, metrics) = get(api, "/metrics", &[]).await;
    assert_eq!(status, 200);
    // What the new families hold, before promtool judges their form.
    assert_eq!(
        lines_with(&metrics, "healthd_cert_expiry_seconds{").len(),
        1,
        "only the HTTPS monitor saw a certificate:\n{metrics}"
    );
    let expiry: i64 = lines_with(&metrics, "healthd_cert_expiry_seconds{monitor=\"secure\"} ")[0]
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let now = SystemClock.now().duration_since(UNIX_EPOCH).unwrap();
    assert!(
        expiry > i64::try_from(now.as_secs()).unwrap(),
        "not after {expiry} is in the future"
    );
    assert_eq!(
        lines_with(
            &metrics,
            "healthd_monitor_check_duration_seconds_bucket{monitor=\"web\","
        )
        .len(),
        12,
        "11 bounds and +Inf:\n{metrics}"
    );
    assert!(
        !lines_with(
            &metrics,
            "healthd_monitor_phase_seconds{monitor=\"secure\",phase=\"tls\"}"
        )
        .is_empty(),
        "{metrics}"
    );
    promtool_accepts("/metrics", &metrics).await;

    let targets = [
        ("http_2xx", format!("http://{}/", up.ok)),
        ("http_2xx", format!("http://{}/", up.busy)),
        ("http_2xx", format!("https://{}/", up.tls)),
        ("tcp_connect", format!("tcp://{}", up.tcp)),
        ("web", format!("http://{}/health", up.ok)),
    ];
    for (module, target) in targets {
        let path = format!("/probe?module={module}&target={}", encode(&target));
        let (status, text) = get(api, &path, &[("X-Prometheus-Scrape-Timeout-Seconds", "5")]).await;
        assert_eq!(status, 200, "{path}: {text}");
        promtool_accepts(&path, &text).await;
    }
    let path = format!("/probe?target={}", encode(&format!("https://{}/", up.tls)));
    let (_, text) = get(api, &path, &[]).await;
    assert_eq!(
        lines_with(&text, "probe_ssl_earliest_cert_expiry ").len(),
        1,
        "{text}"
    );
    assert!(text.lines().any(|l| l == "probe_success 1"), "{text}");
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_json_and_the_page_show_phases_and_the_certificate() {
    let (running, _up) = healthd().await;
    let (status, body) = get(running.addr, "/api/v1/monitors", &[]).await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let monitor = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    let secure = monitor("secure");
    let now = SystemClock
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        secure["certExpiry"].as_u64().unwrap() > now,
        "certExpiry in unix s: {secure}"
    );
    for phase in ["connect", "tls", "first_byte"] {
        assert!(
            secure["phases"][phase].as_f64().is_some(),
            "{phase} in ms: {secure}"
        );
    }
    let web = monitor("web");
    assert_eq!(
        web["certExpiry"], 0,
        "no certificate over plain HTTP: {web}"
    );
    assert!(web["phases"]["connect"].as_f64().is_some(), "{web}");
    let (status, page) = get(running.addr, "/", &[]).await;
    assert_eq!(status, 200);
    assert!(page.contains("secure"), "{page}");
    running.shutdown(Duration::from_secs(5)).await;
}

/// Queries Prometheus at `prometheus` for `query`; the result vector as
/// `(labels, value)` pairs, or `None` while Prometheus does not answer.
async fn query(prometheus: SocketAddr, query: &str) -> Option<Vec<(serde_json::Value, String)>> {
    let path = format!("/api/v1/query?query={}", encode(query));
    // Not listening yet: no answer (rather than a panic in `get`).
    TcpStream::connect(prometheus).await.ok()?;
    let (status, body) = get(prometheus, &path, &[]).await;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(
        json["data"]["result"]
            .as_array()?
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
    )
}

/// The value of the series of `result` whose label `label` is `value`.
fn value_of<'r>(
    result: &'r [(serde_json::Value, String)],
    label: &str,
    value: &str,
) -> Option<&'r str> {
    result
        .iter()
        .find(|(labels, _)| labels[label] == value)
        .map(|(_, v)| v.as_str())
}

/// Writes Prometheus' config: a job scraping healthd's `/metrics`, and two
/// blackbox-style jobs probing `http` (module `http_2xx`) and `tcp` (module
/// `tcp_connect`) through healthd's `/probe`.
fn write_prometheus_config(dir: &Path, healthd: SocketAddr, http: &[String], tcp: &[String]) {
    let job = |name: &str, module: &str, targets: &[String]| {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        format!(
            r#"  - job_name: {name}
    metrics_path: /probe
    params:
      module: [{module}]
    static_configs:
      - targets: [{targets}]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {healthd}
"#,
            targets = targets.join(", ")
        )
    };
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: healthd
    static_configs:
      - targets: ['{healthd}']
{http}{tcp}"#,
        http = job("blackbox_http", "http_2xx", http),
        tcp = job("blackbox_tcp", "tcp_connect", tcp),
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_metrics_and_probes_through_healthd() {
    if !installed("prometheus") {
        println!("skipped: prometheus not found");
        return;
    }
    let (running, up) = healthd().await;
    let dir = tempfile::tempdir().unwrap();
    let ok = format!("http://{}/", up.ok);
    let busy = format!("http://{}/", up.busy);
    let tcp = format!("tcp://{}", up.tcp);
    write_prometheus_config(
        dir.path(),
        running.addr,
        &[ok.clone(), busy.clone()],
        std::slice::from_ref(&tcp),
    );
    let port = free_port();
    let prometheus: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prometheus}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Polls until every target has been scraped (bounded: 150 × 200 ms = 30 s).
    let mut seen = None;
    for _ in 0..150 {
        let success = query(prometheus, "probe_success").await.unwrap_or_default();
        let status = query(prometheus, "healthd_monitor_status")
            .await
            .unwrap_or_default();
        let healthd_up = query(prometheus, "up{job=\"healthd\"}")
            .await
            .unwrap_or_default();
        if [&ok, &busy, &tcp]
            .iter()
            .all(|t| value_of(&success, "instance", t).is_some())
            && !status.is_empty()
            && !healthd_up.is_empty()
        {
            seen = Some((success, healthd_up, status));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let Some((success, healthd_up, status)) = seen else {
        panic!("Prometheus did not scrape every target within 30 s; its log:\n{log}");
    };
    let codes = query(prometheus, "probe_http_status_code").await.unwrap();
    let histogram = query(
        prometheus,
        "healthd_monitor_check_duration_seconds_count{monitor=\"web\"}",
    )
    .await
    .unwrap();
    for (name, result) in [
        ("probe_success", &success),
        ("probe_http_status_code", &codes),
        ("up{job=\"healthd\"}", &healthd_up),
        (
            "healthd_monitor_check_duration_seconds_count{monitor=\"web\"}",
            &histogram,
        ),
    ] {
        println!("{name}:");
        for (labels, value) in result {
            println!("  {labels} => {value}");
        }
    }
    println!("healthd_monitor_status: {} series", status.len());

    assert_eq!(
        value_of(&success, "instance", &ok),
        Some("1"),
        "{success:?}"
    );
    assert_eq!(
        value_of(&success, "instance", &busy),
        Some("0"),
        "{success:?}"
    );
    assert_eq!(
        value_of(&success, "instance", &tcp),
        Some("1"),
        "{success:?}"
    );
    assert_eq!(
        value_of(&codes, "instance", &busy),
        Some("503"),
        "{codes:?}"
    );
    assert_eq!(value_of(&codes, "instance", &ok), Some("200"), "{codes:?}");
    assert_eq!(
        value_of(&healthd_up, "job", "healthd"),
        Some("1"),
        "{healthd_up:?}"
    );
    assert!(
        status.iter().any(|(labels, v)| labels["monitor"] == "busy"
            && labels["status"] == "unhealthy"
            && v == "1"),
        "{status:?}"
    );
    assert_eq!(histogram.len(), 1, "the histogram was read: {histogram:?}");
    running.shutdown(Duration::from_secs(5)).await;
}
