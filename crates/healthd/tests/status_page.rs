//! The status page in a real headless Chromium: the monitors render with their statuses,
//! and screenshots (desktop and phone widths) are saved under `target/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{path::PathBuf, process::Command, time::Duration};

use health_monitor::HealthMonitor;
use healthd::{DaemonConfig, start};
use tokio::net::TcpListener;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs headless Chromium with `args` on `url`, bounded by `timeout`(1); returns stdout.
fn run_chromium(binary: &str, args: &[String], url: &str) -> String {
    let out = Command::new("timeout")
        .arg("90")
        .arg(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--virtual-time-budget=8000",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_every_monitor_with_its_status() {
    let Some(binary) = chromium() else {
        println!("skipped: no chromium");
        return;
    };
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    tokio::spawn(async move { while up.accept().await.is_ok() {} });
    let down_addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = DaemonConfig::parse(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \":memory:\"\n[defaults]\ninterval = \"1s\"\n\
         [[monitor]]\nname = \"database\"\nurl = \"tcp://{up_addr}\"\n\
         [[monitor]]\nname = \"legacy-api\"\nurl = \"http://{down_addr}/health\"\n"
    ))
    .unwrap();
    let running = start(&config, Vec::new()).await.unwrap();
    for monitor in &running.monitors {
        let mut rx = monitor.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.checks() >= 1))
            .await
            .unwrap()
            .unwrap();
    }
    let url = format!("http://{}/", running.addr);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let desktop = dir.join("status-page.png");
    let phone = dir.join("status-page-phone.png");
    let _ = std::fs::remove_file(&desktop);
    let _ = std::fs::remove_file(&phone);

    let (dom, shots) = tokio::task::spawn_blocking({
        let (url, desktop, phone) = (url.clone(), desktop.clone(), phone.clone());
        move || {
            let dom = run_chromium(binary, &["--dump-dom".into()], &url);
            run_chromium(
                binary,
                &[
                    format!("--screenshot={}", desktop.display()),
                    "--window-size=1280,720".into(),
                ],
                &url,
            );
            run_chromium(
                binary,
                &[
                    format!("--screenshot={}", phone.display()),
                    "--window-size=390,844".into(),
                ],
                &url,
            );
            (dom, [desktop, phone])
        }
    })
    .await
    .unwrap();

    assert!(
        dom.contains(r#"data-name="database" data-status="healthy""#),
        "database healthy in the DOM:\n{dom}"
    );
    assert!(
        dom.contains(r#"data-name="legacy-api" data-status="unhealthy""#),
        "legacy-api unhealthy in the DOM:\n{dom}"
    );
    assert!(dom.contains("connection refused"), "details render:\n{dom}");
    assert!(dom.contains("1 of 2 up"), "the summary renders:\n{dom}");
    assert!(
        !dom.contains(">0 ms<"),
        "sub-millisecond latency reads <1 ms:\n{dom}"
    );
    for shot in shots {
        let bytes = std::fs::read(&shot).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
            "{}",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
    }
    running.shutdown(Duration::from_secs(1)).await;
}
