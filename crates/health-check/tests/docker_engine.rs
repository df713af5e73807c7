//! DockerProbe against the real Docker engine, whenever `docker info` answers: an image
//! made without pulling anything (a root filesystem of Debian's static busybox, imported
//! with `docker import`), a container whose HEALTHCHECK the test flips through `docker
//! exec`, then `docker pause` and `docker stop`, and a container without a healthcheck
//! whose checks go to the fallback. Everything created is removed, also on failure.
//! Without an engine, or without busybox-static, the test says why it skipped and passes.
#![cfg(feature = "docker")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    path::Path,
    process::{Command as BlockingCommand, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use health_check::{DockerProbe, FileProbe, HEALTH_CHECK_NOT_AVAILABLE};
use health_types::{CheckKind, CheckResult, DockerSpec, HealthCheckConfig, Probe, ProbeError};
use tokio::{process::Command, time::Instant};
use url::Url;

/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";
/// The longest any one expected state may take to show.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often a waiting step checks again.
const POLL: Duration = Duration::from_millis(200);
/// The busybox applets the containers use.
const APPLETS: &[&str] = &["sh", "sleep", "cat", "rm", "echo", "test"];

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A name no parallel run uses: `health-check-test-<what>-<pid>-<n>`.
fn unique(what: &str) -> String {
    format!(
        "health-check-test-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs `docker args` and returns its output; fails the test with docker's stderr.
async fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether an engine answers `docker info` (false without a docker CLI, too).
async fn engine_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// Removes the containers and images a test created when dropped, so also when it fails.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            let _ = BlockingCommand::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for container in &self.containers {
            // A paused container cannot be removed on every engine version.
            run(&["unpause", container]);
            run(&["rm", "-f", "-v", container]);
        }
        for image in &self.images {
            run(&["rmi", "-f", image]);
        }
    }
}

/// Imports a busybox root filesystem as image `tag`: `/bin/busybox`, applet links and
/// `/tmp`. Nothing is pulled.
async fn import_busybox_image(tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.path().join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .await
        .expect("tar runs");
    assert!(status.success(), "tar failed");
    docker(&["import", tar.to_str().unwrap(), tag]).await;
}

fn describe(outcome: &Result<CheckResult, ProbeError>) -> String {
    match outcome {
        Ok(result) => format!(
            "{} kind={} detail={:?} latency={:?}",
            if result.healthy {
                "healthy"
            } else {
                "unhealthy"
            },
            result.kind,
            result.detail,
            result.latency
        ),
        Err(err) => format!("error kind={} detail={:?}", err.kind(), err.detail()),
    }
}

/// Checks until `want` holds, at most [`DEADLINE`]; prints the outcome and returns the
/// result, if it was one.
async fn wait_for(
    step: &str,
    probe: &DockerProbe,
    want: impl Fn(&Result<CheckResult, ProbeError>) -> bool,
) -> Option<CheckResult> {
    let url = probe.url().clone();
    let start = Instant::now();
    loop {
        let outcome = probe.check(&url).await;
        if want(&outcome) {
            println!(
                "{step:<28} after {:>5} ms: {}",
                start.elapsed().as_millis(),
                describe(&outcome)
            );
            return outcome.ok();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{step}: still {} after {DEADLINE:?}",
            describe(&outcome)
        );
        tokio::time::sleep(POLL).await;
    }
}

fn unhealthy_with(outcome: &Result<CheckResult, ProbeError>, detail: &str) -> bool {
    matches!(
        outcome,
        Ok(r) if !r.healthy && r.kind == CheckKind::Container && r.detail.starts_with(detail)
    )
}

fn healthy_with(outcome: &Result<CheckResult, ProbeError>, detail: &str) -> bool {
    matches!(outcome, Ok(r) if r.healthy && r.detail == detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_containers_state_and_health_drive_the_probe() {
    if !Path::new(BUSYBOX).exists() {
        println!("skipped: busybox-static not installed");
        return;
    }
    if !engine_answers().await {
        println!("skipped: no docker engine");
        return;
    }
    let mut cleanup = Cleanup::default();
    let image = format!("{}:latest", unique("image"));
    cleanup.images.push(image.clone());
    import_busybox_image(&image).await;

    let config = HealthCheckConfig {
        timeout: Duration::from_secs(5),
        ..Default::default()
    };

    // A healthcheck that passes while /tmp/ready exists, printing its contents. The long
    // start period keeps the health `starting` until the first pass, so that state is
    // seen for sure; after a pass every failure counts, and one makes it unhealthy.
    let web = unique("health");
    cleanup.containers.push(web.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &web,
        "--health-cmd",
        "cat /tmp/ready",
        "--health-interval",
        "1s",
        "--health-timeout",
        "2s",
        "--health-retries",
        "1",
        "--health-start-period",
        "60s",
        &image,
        "/bin/sleep",
        "3600",
    ])
    .await;
    let probe = DockerProbe::try_new(&config, DockerSpec::new(web.as_str())).unwrap();
    println!("probe {} ({})", probe.url(), web);

    wait_for("health starting", &probe, |o| {
        unhealthy_with(o, "container health is starting")
    })
    .await;
    docker(&["exec", &web, "sh", "-c", "echo ready > /tmp/ready"]).await;
    let healthy = wait_for("file created: healthy", &probe, |o| {
        healthy_with(o, "ready")
    })
    .await
    .expect("a healthy result");
    assert!(
        healthy.latency > Duration::ZERO && healthy.latency < Duration::from_secs(2),
        "latency is the health command's run time: {healthy:?}"
    );
    docker(&["exec", &web, "rm", "/tmp/ready"]).await;
    wait_for("file removed: unhealthy", &probe, |o| {
        unhealthy_with(o, "cat: can't open '/tmp/ready'")
    })
    .await;
    docker(&["exec", &web, "sh", "-c", "echo back > /tmp/ready"]).await;
    wait_for("file back: healthy", &probe, |o| healthy_with(o, "back")).await;
    docker(&["pause", &web]).await;
    wait_for("docker pause", &probe, |o| {
        unhealthy_with(o, "container is paused")
    })
    .await;
    docker(&["unpause", &web]).await;
    docker(&["stop", "-t", "1", &web]).await;
    wait_for("docker stop", &probe, |o| {
        unhealthy_with(o, "container is exited")
    })
    .await;

    // No healthcheck: "not available" alone, the fallback's result with one.
    let plain = unique("plain");
    cleanup.containers.push(plain.clone());
    docker(&["run", "-d", "--name", &plain, &image, "/bin/sleep", "3600"]).await;
    let alone = DockerProbe::try_new(&config, DockerSpec::new(plain.as_str())).unwrap();
    wait_for("no healthcheck", &alone, |o| {
        unhealthy_with(o, HEALTH_CHECK_NOT_AVAILABLE)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = Url::from_directory_path(dir.path()).unwrap();
    let with_fallback = DockerProbe::try_new(&config, DockerSpec::new(plain.as_str()))
        .unwrap()
        .try_with_fallback(Arc::new(FileProbe::try_new(&config).unwrap()), target)
        .unwrap();
    wait_for("no healthcheck: fallback", &with_fallback, |o| {
        healthy_with(o, "exists")
    })
    .await;

    // A container the engine does not know: an API failure, an error without fallback.
    let missing = DockerProbe::try_new(&config, DockerSpec::new(unique("missing"))).unwrap();
    wait_for(
        "unknown container",
        &missing,
        |o| matches!(o, Err(err) if err.kind() == CheckKind::NotFound),
    )
    .await;
}
