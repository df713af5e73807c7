//! The `healthd` binary: exit codes, output lines and signal handling (SPEC §7).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::Stdio,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
    time::Instant,
};

fn healthd() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_healthd"));
    cmd.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env("STATE_DIRECTORY", state_directory());
    cmd
}

/// A fresh state directory for one healthd process (SPEC §9.1: tests that start healthd
/// without `[storage]` set `STATE_DIRECTORY`), kept until the test binary ends.
fn state_directory() -> PathBuf {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let root = ROOT.get_or_init(|| tempfile::tempdir().unwrap());
    let dir = root
        .path()
        .join(NEXT.fetch_add(1, Ordering::Relaxed).to_string());
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// A loopback HTTP server answering every request with `status`, on its own thread,
/// for at most `requests` requests.
fn http_server(status: u16, requests: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read(&mut buf);
            let reason = if status == 200 {
                "OK"
            } else {
                "Service Unavailable"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    addr
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = healthd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_exits_0_healthy_1_unhealthy_2_error() {
    let ok = http_server(200, 2);
    let (code, out, _) = run(&["check", &format!("http://{ok}/")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("healthy: HTTP 200 OK (ok, "), "{out}");

    let (code, out, _) = run(&["check", &format!("http://{ok}/"), "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["kind"], "ok");
    assert_eq!(json["detail"], "HTTP 200 OK");
    assert!(
        json["latency"].as_u64().unwrap() > 0,
        "latency in ns: {json}"
    );
    assert_eq!(json.as_object().unwrap().len(), 4);

    let bad = http_server(503, 1);
    let (code, out, _) = run(&["check", &format!("http://{bad}/"), "--path", "/health"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 503 Service Unavailable"), "{out}");

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, _) = run(&[
        "check",
        &format!("tcp://{closed}"),
        "--json",
        "--timeout",
        "2s",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\"kind\":\"refused\""), "{out}");

    // A path through a regular file: ENOTDIR is a checker-side error.
    let file = tempfile::NamedTempFile::new().unwrap();
    let url = format!("file://{}/inside", file.path().display());
    let (code, out, _) = run(&["check", &url, "--json"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("\"healthy\":false"), "{out}");
}

#[test]
fn check_rejects_bad_usage_with_exit_2() {
    for args in [
        &["check"][..],
        &["check", "not a url"],
        &["check", "gopher://h/"],
        &["check", "tcp://host-without-port"],
        &["check", "http://h/", "--method", "POST"],
        &["check", "http://h/", "--timeout", "30"],
        &["frobnicate"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(!err.is_empty(), "{args:?} says why");
    }
    let (_, _, err) = run(&["check", "gopher://h/"]);
    assert!(err.contains("supported schemes: http, https, h2c"), "{err}");
}

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn validate_summarises_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let good = write_config(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[notify]]\nname = \"ops\"\nprovider = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[[monitor]]\nname = \"api\"\nurl = \"http://127.0.0.1:1/\"\nnotify = [\"ops\"]\n",
    );
    let (code, out, err) = run(&["validate", "--config", good.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: 1 monitor, 1 notifier, API on"), "{out}");
    let windows = write_config(
        "[[monitor]]\nname = \"api\"\nurl = \"http://127.0.0.1:1/\"\n[[maintenance]]\ncron = \"0 3 * * SUN\"\nduration = \"2h\"\n",
    );
    let (code, out, err) = run(&["validate", "--config", windows.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok: 1 monitor, 0 notifiers, 1 maintenance window, API on"),
        "{out}"
    );

    let bad = write_config(
        "[[monitor]]\nname = \"api\"\nurl = \"http://x/\"\ninterval = 30\n\n[[monitor]]\nname = \"db\"\nurl = \"tcp://db\"\n",
    );
    let path = bad.path().to_str().unwrap();
    let (code, _, err) = run(&["validate", "--config", path]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{path}:4:1: [[monitor]] \"api\": invalid `interval` = 30"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:8:1: [[monitor]] \"db\"")),
        "{err}"
    );
    assert!(err.contains("2 problems"), "{err}");

    let (code, _, err) = run(&["validate", "--config", "/nonexistent/healthd.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/healthd.toml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn run_exits_2_before_starting_on_a_bad_config() {
    let bad = write_config("[defaults]\nretries = \"three\"\n");
    let (code, out, err) = run(&["run", "--config", bad.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.is_empty(), "nothing started: {out}");
    assert!(
        err.contains(":2:1: [defaults]") && err.contains("retries"),
        "{err}"
    );
}

#[test]
fn run_exits_2_naming_the_store_when_it_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the store's directory should be.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let store = blocker.join("healthd.db");
    let config = write_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = {:?}\n",
        store.display().to_string()
    ));
    let (code, out, err) = run(&["run", "--config", config.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "nothing started: {out}");
    assert!(
        err.contains(&store.display().to_string()) && err.contains("state store"),
        "{err}"
    );

    // A store newer than this binary is refused too.
    let newer = dir.path().join("newer.db");
    std::fs::write(&newer, b"").unwrap();
    let config = write_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = {:?}\n",
        newer.display().to_string()
    ));
    let status = std::process::Command::new("sqlite3")
        .arg(&newer)
        .arg("PRAGMA user_version = 999;")
        .status();
    match status {
        Ok(status) if status.success() => {
            let (code, _, err) = run(&["run", "--config", config.path().to_str().unwrap()]);
            assert_eq!(code, 2, "{err}");
            assert!(
                err.contains(&newer.display().to_string()) && err.contains("newer"),
                "{err}"
            );
        }
        _ => println!("skipped: sqlite3 is not installed (the newer-store case)"),
    }
}

/// Reads `child`'s stdout lines on a task; returns a receiver of lines.
fn lines(child: &mut Child) -> mpsc::UnboundedReceiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line containing `needle`.
async fn wait_for_line(
    rx: &mut mpsc::UnboundedReceiver<String>,
    needle: &str,
    within: Duration,
) -> String {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Some(line) = rx.recv().await {
            if line.contains(needle) {
                return Some(line);
            }
            seen.push(line);
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        _ => panic!(
            "no line with {needle:?} within {within:?}; saw:\n{}",
            seen.join("\n")
        ),
    }
}

/// Sends `sig` to `child` and waits (bounded by `within`) for it to exit with code 0;
/// returns how long that took.
async fn stop(child: &mut Child, sig: &str, within: Duration) -> Duration {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args([sig, &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    match tokio::time::timeout(within, child.wait()).await {
        Ok(status) => {
            assert_eq!(status.unwrap().code(), Some(0));
            start.elapsed()
        }
        Err(_) => {
            let _ = child.kill().await;
            panic!("still running after {within:?}");
        }
    }
}

/// One HTTP/1.1 GET of `target` from `addr`; returns the whole answer.
async fn get(addr: &str, target: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

fn spawn(args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_healthd"));
    cmd.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env("STATE_DIRECTORY", state_directory())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

#[tokio::test]
async fn run_serves_and_stops_on_sigterm_with_exit_0() {
    let upstream = http_server(200, 1000);
    let config = write_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[monitor]]\nname = \"api\"\nurl = \"http://{upstream}/\"\ninterval = \"1s\"\n"
    ));
    let mut child = spawn(&["run", "--config", config.path().to_str().unwrap()]);
    let mut rx = lines(&mut child);
    let line = wait_for_line(
        &mut rx,
        "API and status page on http://",
        Duration::from_secs(10),
    )
    .await;
    let addr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let answer = get(&addr, "/healthz").await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer}"
    );
    let took = stop(&mut child, "-TERM", Duration::from_secs(6)).await;
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn demo_shows_a_down_and_stops_on_ctrl_c() {
    let mut child = spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let mut rx = lines(&mut child);
    let page = wait_for_line(&mut rx, "status page: http://", Duration::from_secs(10)).await;
    assert!(page.contains("/api/v1/monitors"), "{page}");
    wait_for_line(&mut rx, "steady", Duration::from_secs(10)).await;
    let down = wait_for_line(
        &mut rx,
        "notify: Service down: always-down",
        Duration::from_secs(15),
    )
    .await;
    assert!(down.contains("connection refused"), "{down}");
    let took = stop(&mut child, "-INT", Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn agent_answers_and_stops_on_sigterm_with_exit_0() {
    let upstream = http_server(200, 10);
    let mut child = spawn(&["agent", "--listen", "127.0.0.1:0"]);
    let mut rx = lines(&mut child);
    let line = wait_for_line(&mut rx, "healthd agent: http://", Duration::from_secs(10)).await;
    let endpoint = line.rsplit("http://").next().unwrap().to_owned();
    let (addr, path) = endpoint.split_once('/').unwrap();
    assert_eq!(path, "godoxy/agent/health");
    let answer = get(
        addr,
        &format!("/{path}?scheme=http&host={upstream}&timeout=2000"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"healthy\":true"), "{answer}");
    let took = stop(&mut child, "-TERM", Duration::from_secs(6)).await;
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // On loopback there is nothing to warn about.
    let rest = rest_of(&mut rx).await;
    assert!(!rest.iter().any(|l| l.starts_with("warning:")), "{rest:?}");
}

/// The lines `child` printed after those already read, once it has exited (bounded).
async fn rest_of(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = rx.recv().await {
            rest.push(line);
        }
    })
    .await
    .unwrap();
    rest
}

#[tokio::test]
async fn agent_on_a_public_address_without_client_certificates_warns() {
    let mut child = spawn(&["agent", "--listen", "0.0.0.0:0"]);
    let mut rx = lines(&mut child);
    wait_for_line(
        &mut rx,
        "healthd agent: http://0.0.0.0:",
        Duration::from_secs(10),
    )
    .await;
    let warning = wait_for_line(&mut rx, "warning", Duration::from_secs(5)).await;
    assert!(
        warning.starts_with("warning: agent without client certificates: "),
        "{warning}"
    );
    assert!(warning.contains("no --allow"), "{warning}");
    stop(&mut child, "-TERM", Duration::from_secs(6)).await;
}

#[tokio::test]
async fn agent_refuses_a_bad_allow_entry_or_file_root_with_exit_2() {
    let missing = "/nonexistent/healthd-file-root";
    for (flags, reason) in [
        (
            ["--allow", "10.0.0.0/33"],
            "\"10.0.0.0/33\" is not a network",
        ),
        (
            ["--file-root", missing],
            "cannot use --file-root /nonexistent/healthd-file-root",
        ),
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_healthd"))
            .args(["agent", "--listen", "127.0.0.1:0"])
            .args(flags)
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the agent exits")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(reason), "{flags:?}: {stderr}");
    }
}
