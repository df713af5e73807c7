//! The `lb-proxy` binary: a reverse proxy over `--upstream`s, each watched by an HTTP
//! health monitor (see the library's docs).

use std::{error::Error, io::IsTerminal, net::SocketAddr, process::ExitCode};

use health_lb_proxy::{Proxy, ProxyConfig, ProxyError, Upstream};
use health_monitor::{HealthMonitor, Scope, new_http_monitor};
use health_types::{ErrorChain, HealthCheckConfig, Url, parse_duration};
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: lb-proxy --listen ADDR --upstream URL [--upstream URL ...] [options]

Balances HTTP/1.1 requests round-robin over the upstreams whose health monitor says
they are good; an upstream is an origin, http://host:port.

options (monitor keys as in the config file, same defaults):
  --interval DURATION        time between checks (default 30s), e.g. 1s, 250ms
  --timeout DURATION         time a check may take (default 10s)
  --retries N                fall threshold: > 0 = N, 0 = default (3), < 0 = 1
  --path PATH                the health-check path (default /)
  --passive-threshold N      failed exchanges in a row (5xx, connect or transport
                             errors) that trigger an immediate check (default 3; 0 = off)
  --connect-timeout DURATION connecting to an upstream (default 2s)
  -h, --help                 this text

RUST_LOG sets the log filter (default info).";

/// The proxy's command line, parsed and validated.
#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    upstreams: Vec<Url>,
    monitor: HealthCheckConfig,
    proxy: ProxyConfig,
}

/// Parses the arguments after the program name: `None` for `--help`; an error says
/// what is wrong.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut listen = None;
    let mut upstreams = Vec::new();
    let mut monitor = HealthCheckConfig::default();
    let mut proxy = ProxyConfig::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |text: String| {
            text.parse::<i64>()
                .map_err(|_| format!("{flag}: {text:?} is not a whole number"))
        };
        match flag.as_str() {
            "--listen" => {
                let text = value()?;
                let addr = text.parse().map_err(|_| {
                    format!("--listen: {text:?} is not an address like 127.0.0.1:8080")
                })?;
                listen = Some(addr);
            }
            "--upstream" => {
                let text = value()?;
                let url = Url::parse(&text).map_err(|err| format!("--upstream {text:?}: {err}"))?;
                upstreams.push(url);
            }
            "--interval" => monitor.interval = duration("interval", &value()?)?,
            "--timeout" => monitor.timeout = duration("timeout", &value()?)?,
            "--connect-timeout" => proxy.connect_timeout = duration("connect_timeout", &value()?)?,
            "--retries" => monitor.retries = number(value()?)?,
            "--path" => monitor.path = value()?,
            "--passive-threshold" => {
                let text = value()?;
                proxy.passive_threshold = text.parse().map_err(|_| {
                    format!("--passive-threshold: {text:?} is not a count (0 = off)")
                })?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    if upstreams.is_empty() {
        return Err("at least one --upstream is required".to_owned());
    }
    monitor
        .validate()
        .map_err(|err| ErrorChain(&err).to_string())?;
    Ok(Some(Args {
        listen,
        upstreams,
        monitor,
        proxy,
    }))
}

/// A duration for `key`, with the config file's syntax and rules.
fn duration(key: &'static str, text: &str) -> Result<std::time::Duration, String> {
    parse_duration(key, text).map_err(|err| ErrorChain(&err).to_string())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("lb-proxy: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Box::<dyn Error>::from)
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lb-proxy: {}", ErrorChain(&*err));
            ExitCode::FAILURE
        }
    }
}

/// Starts a monitor per upstream and serves until Ctrl-C.
async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let scope = Scope::new();
    let mut upstreams = Vec::new();
    for url in &args.upstreams {
        let name = url.authority().to_owned();
        let monitor = new_http_monitor(&name, &args.monitor, url.clone()).map_err(|source| {
            ProxyError::Monitor {
                upstream: url.to_string(),
                source,
            }
        })?;
        upstreams.push(Upstream::try_new(url, monitor)?);
    }
    for upstream in &upstreams {
        upstream
            .monitor()
            .start(&scope)
            .map_err(|source| ProxyError::Monitor {
                upstream: upstream.origin().to_string(),
                source,
            })?;
    }
    let proxy = Proxy::try_new(upstreams, args.proxy)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
    info!(listen = %listener.local_addr()?, upstreams = args.upstreams.len(), "lb-proxy serving");
    tokio::select! {
        () = proxy.serve(listener) => {}
        signal = tokio::signal::ctrl_c() => {
            signal?;
            info!("interrupted; shutting down");
        }
    }
    proxy.shutdown();
    scope.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Option<Args>, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_the_documented_line() {
        let Ok(Some(args)) = args(
            "--listen 127.0.0.1:8080 --upstream http://127.0.0.1:8081 \
             --upstream=http://127.0.0.1:8082 --interval 1s --timeout 500ms --retries 2 \
             --path /healthz --passive-threshold 0 --connect-timeout 250ms",
        ) else {
            panic!("the documented line parses");
        };
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.upstreams.len(), 2);
        assert_eq!(args.monitor.interval, std::time::Duration::from_secs(1));
        assert_eq!(args.monitor.timeout, std::time::Duration::from_millis(500));
        assert_eq!(args.monitor.retries, 2);
        assert_eq!(args.monitor.path, "/healthz");
        assert_eq!(args.proxy.passive_threshold, 0);
        assert_eq!(
            args.proxy.connect_timeout,
            std::time::Duration::from_millis(250)
        );
    }

    #[test]
    fn defaults_are_the_config_files() {
        let Ok(Some(args)) = args("--listen 127.0.0.1:0 --upstream http://h:1") else {
            panic!("a minimal line parses");
        };
        assert_eq!(args.monitor, HealthCheckConfig::default());
        assert_eq!(args.proxy, ProxyConfig::default());
        assert!(parse(["--help".to_owned()]).unwrap().is_none());
    }

    #[test]
    fn says_what_is_wrong() {
        for (line, wanted) in [
            ("--upstream http://h:1", "--listen is required"),
            ("--listen 127.0.0.1:0", "at least one --upstream"),
            ("--listen nowhere --upstream http://h:1", "not an address"),
            (
                "--listen 127.0.0.1:0 --upstream http://h:1 --interval 30",
                "invalid `interval`",
            ),
            (
                "--listen 127.0.0.1:0 --upstream http://h:1 --interval 0s",
                "invalid `interval`",
            ),
            (
                "--listen 127.0.0.1:0 --upstream http://h:1 --retries x",
                "not a whole number",
            ),
            (
                "--listen 127.0.0.1:0 --upstream http://h:1 --passive-threshold -1",
                "not a count",
            ),
            (
                "--listen 127.0.0.1:0 --upstream",
                "--upstream needs a value",
            ),
            ("--listen 127.0.0.1:0 --frobnicate", "unknown argument"),
        ] {
            let err = args(line).expect_err(line);
            assert!(err.contains(wanted), "{line}: {err}");
        }
    }
}
