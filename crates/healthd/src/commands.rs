//! The body of each CLI command; each returns the process exit code.

use std::{path::Path, time::Duration};

use health_types::{CheckResult, ErrorChain, HealthCheckConfig, Url};

use crate::{
    agent,
    cli::{Command, EXIT_ERROR, EXIT_OK, EXIT_UNHEALTHY},
    config::DaemonConfig,
    daemon, demo,
    probe::check_url,
    server,
};

/// Runs `command` and returns its exit code.
pub async fn dispatch(command: Command) -> u8 {
    if matches!(
        command,
        Command::Demo { .. } | Command::Run { .. } | Command::Agent { .. }
    ) {
        server::raise_open_files_limit();
    }
    match command {
        Command::Demo { listen } => report(demo::run(listen).await),
        Command::Run { config } => run(&config).await,
        Command::Check {
            url,
            path,
            method,
            timeout,
            json,
        } => check(&url, path, method, timeout, json).await,
        Command::Validate { config } => validate(&config),
        Command::Agent {
            listen,
            cert,
            key,
            client_ca,
            allow,
            file_root,
        } => {
            report(agent::serve_until_signal(listen, cert, key, client_ca, allow, file_root).await)
        }
    }
}

fn report<E: std::error::Error>(result: Result<(), E>) -> u8 {
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("healthd: {}", ErrorChain(&e));
            EXIT_ERROR
        }
    }
}

/// `healthd validate --config FILE`.
fn validate(path: &Path) -> u8 {
    match DaemonConfig::load(path) {
        Ok(config) => {
            // Maintenance windows are named only when there are some (SPEC §9.5).
            let windows = match config.maintenance.len() {
                0 => String::new(),
                1 => ", 1 maintenance window".to_owned(),
                n => format!(", {n} maintenance windows"),
            };
            println!(
                "{}: ok: {} monitor{}, {} notifier{}{windows}, API on {}",
                path.display(),
                config.monitors.len(),
                if config.monitors.len() == 1 { "" } else { "s" },
                config.notify.len(),
                if config.notify.len() == 1 { "" } else { "s" },
                config.listen
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "{}: {} problem{}",
                path.display(),
                e.problems.len(),
                if e.problems.len() == 1 { "" } else { "s" }
            );
            EXIT_ERROR
        }
    }
}

/// `healthd run --config FILE`.
async fn run(path: &Path) -> u8 {
    let config = match DaemonConfig::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_ERROR;
        }
    };
    let running = match daemon::start(&config, Vec::new()).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("healthd: {}", ErrorChain(&e));
            return EXIT_ERROR;
        }
    };
    println!(
        "healthd: {} monitors; API and status page on http://{}/",
        running.monitors.len(),
        running.addr
    );
    daemon::shutdown_signal().await;
    running.shutdown(Duration::from_secs(3)).await;
    EXIT_OK
}

/// `healthd check URL ...`: one probe; prints the result.
async fn check(
    url: &str,
    path: Option<String>,
    method: Option<String>,
    timeout: Option<Duration>,
    json: bool,
) -> u8 {
    let fail = |message: String| {
        eprintln!("healthd check: {message}");
        EXIT_ERROR
    };
    let url = match Url::parse(url) {
        Ok(url) => url,
        Err(e) => return fail(format!("invalid url {url:?}: {e}")),
    };
    let mut config = HealthCheckConfig::default();
    if let Some(path) = path {
        config.path = path;
    }
    if let Some(method) = method {
        match method.parse() {
            Ok(method) => config.method = method,
            Err(e) => return fail(ErrorChain(&e).to_string()),
        }
    }
    if let Some(timeout) = timeout {
        config.timeout = timeout;
    }
    let outcome = match check_url(&config, &url).await {
        Ok(outcome) => outcome,
        Err(e) => return fail(ErrorChain(&e).to_string()),
    };
    let (result, code) = match &outcome {
        Ok(r) if r.healthy => (r.clone(), EXIT_OK),
        Ok(r) => (r.clone(), EXIT_UNHEALTHY),
        Err(e) => (e.to_result(Duration::ZERO), EXIT_ERROR),
    };
    if json {
        // Exactly SPEC §7's four keys (latency in ns): the phases, certificate and status
        // code of a result are in the API and /probe, not in this contract.
        #[derive(serde::Serialize)]
        struct Line<'a> {
            healthy: bool,
            kind: health_types::CheckKind,
            detail: &'a str,
            latency: u64,
        }
        let line = Line {
            healthy: result.healthy,
            kind: result.kind,
            detail: &result.detail,
            latency: health_types::duration_nanos(result.latency),
        };
        println!("{}", serde_json::to_string(&line).unwrap_or_default());
    } else {
        println!("{}", describe(&result, code));
    }
    code
}

fn describe(result: &CheckResult, code: u8) -> String {
    let verdict = match code {
        EXIT_OK => "healthy",
        EXIT_UNHEALTHY => "unhealthy",
        _ => "error",
    };
    let latency = result.latency.as_secs_f64() * 1000.0;
    if result.detail.is_empty() {
        format!("{verdict} ({}, {latency:.1} ms)", result.kind)
    } else {
        format!(
            "{verdict}: {} ({}, {latency:.1} ms)",
            result.detail, result.kind
        )
    }
}
