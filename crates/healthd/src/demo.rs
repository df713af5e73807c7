//! `healthd demo`: a self-contained tour. Starts local upstreams, monitors them with
//! short intervals, prints transitions and notifications, and serves the API and the
//! status page.

use std::{io::ErrorKind, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use health_check::build_probe;
use health_monitor::HealthMonitor;
use health_notify::{Notifier, policy::AlertRules};
use health_types::{HealthCheckConfig, Target, Url};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{DaemonConfig, Delivery, MonitorEntry, ServerSettings},
    console::{ConsoleNotifier, print_transitions, use_colour},
    daemon::{self, DaemonError, StartOptions},
    storage::StorageError,
    upstreams::{FLAP_DOWN, FLAP_UP, Upstreams},
};

/// How often the demo re-reads the history summaries (uptimes, the status page's bars):
/// often enough that `flaky`'s outages show on the page within seconds.
const HISTORY_REFRESH: Duration = Duration::from_secs(5);

/// The health-check config of every demo monitor: fast enough to watch.
fn demo_check_config() -> HealthCheckConfig {
    HealthCheckConfig {
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        retries: 2,
        fast_interval: Some(Duration::from_secs(1)),
        ..Default::default()
    }
}

/// The demo's monitors over `upstreams`, keeping their state in `store` (a temporary
/// file: the demo needs no state directory).
fn demo_config(listen: SocketAddr, upstreams: &Upstreams, store: PathBuf) -> DaemonConfig {
    let entry = |name: &str, group: Option<&str>, url: String| {
        let config = demo_check_config();
        let target = Target::Url(Url::parse(&url).expect("demo URLs are well-formed"));
        let probe = build_probe(&config, &target)
            .expect("every demo target is a loopback address with a scheme a probe checks");
        MonitorEntry {
            name: name.to_owned(),
            target,
            config,
            probe,
            notify: Vec::new(),
            group: group.map(str::to_owned),
            alert: AlertRules::default(),
        }
    };
    DaemonConfig {
        listen,
        server: ServerSettings::default(),
        storage: Some(store),
        history_retention: crate::config::DEFAULT_HISTORY_RETENTION,
        delivery: Delivery::default(),
        notify: Vec::new(),
        probe_defaults: HealthCheckConfig::default(),
        modules: std::collections::BTreeMap::new(),
        monitors: vec![
            entry(
                "steady",
                Some("web"),
                format!("http://{}/", upstreams.steady),
            ),
            entry(
                "flaky",
                Some("web"),
                format!("http://{}/health?deep=1", upstreams.flaky),
            ),
            entry("h2c", Some("web"), format!("h2c://{}/", upstreams.h2c)),
            entry("tcp", Some("backends"), format!("tcp://{}", upstreams.tcp)),
            MonitorEntry {
                // A reminder every 20 s while it is down (SPEC §9.5 `remind_every`).
                alert: AlertRules {
                    remind_every: Some(Duration::from_secs(20)),
                    ..AlertRules::default()
                },
                ..entry(
                    "always-down",
                    Some("backends"),
                    format!("http://{}/", upstreams.down),
                )
            },
        ],
        maintenance: Vec::new(),
    }
}

/// Runs the demo until SIGINT or SIGTERM.
pub(crate) async fn run(listen: SocketAddr) -> Result<(), DaemonError> {
    let stop = CancellationToken::new();
    let upstreams = Upstreams::start(&stop)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: listen,
            source,
        })?;
    // The default port may be taken; any free port will do for a demo.
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            let any = SocketAddr::new(listen.ip(), 0);
            TcpListener::bind(any)
                .await
                .map_err(|source| DaemonError::Bind { addr: any, source })?
        }
        Err(source) => {
            return Err(DaemonError::Bind {
                addr: listen,
                source,
            });
        }
    };
    // Removed (with the store in it) when the demo ends.
    let state = tempfile::Builder::new()
        .prefix("healthd-demo-")
        .tempdir()
        .map_err(StorageError::Temp)?;
    let config = demo_config(listen, &upstreams, state.path().join("healthd.db"));
    let colour = use_colour();
    let console: Arc<dyn Notifier> = Arc::new(ConsoleNotifier::new(colour));
    let options = StartOptions {
        extra: vec![console],
        history_refresh: HISTORY_REFRESH,
    };
    let running = daemon::start_with(listener, &config, options).await?;

    println!(
        "healthd demo: {} monitors on loopback upstreams, checked every 2s",
        running.monitors.len()
    );
    println!(
        "  `flaky` answers 200 for {}s, then 503 for {}s, and again; `always-down` has nothing listening",
        FLAP_UP.as_secs(),
        FLAP_DOWN.as_secs()
    );
    println!(
        "status page: http://{}/   API: http://{}/api/v1/monitors",
        running.addr, running.addr
    );
    println!(
        "  the page re-reads uptimes and day bars every {}s",
        HISTORY_REFRESH.as_secs()
    );
    println!("press Ctrl-C to stop");
    let width = running
        .monitors
        .iter()
        .map(|m| m.name().len())
        .max()
        .unwrap_or(8);
    for monitor in &running.monitors {
        print_transitions(monitor, width, colour, stop.clone());
    }

    daemon::shutdown_signal().await;
    println!("stopping");
    stop.cancel();
    running.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
