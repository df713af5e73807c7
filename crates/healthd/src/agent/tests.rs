//! The agent server (SPEC §5 "Agent server") and the round trip healthd monitor →
//! healthd agent → upstream, in plain HTTP and with mutual TLS.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use health_check::{AGENT_HEALTH_PATH, AgentProbe};
use health_monitor::{HealthMonitor, Monitor};
use health_types::{
    AgentSpec, CheckKind, HealthCheckConfig, Probe, Status, Url,
    test_util::{KeyUsage, TestCa},
    tls::{rustls::ServerConfig, server_config},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::serve_agent;
use crate::{
    DaemonConfig, Running, Upstreams, start,
    test_support::{content_type, request},
};

/// A loopback HTTP upstream answering 200 to everything (the demo's steady one); it
/// stops when `stop` is cancelled.
async fn upstream(stop: &CancellationToken) -> SocketAddr {
    Upstreams::start(stop).await.unwrap().steady
}

/// One plain HTTP/1.1 GET; returns the status, the content type and the body.
async fn get(addr: SocketAddr, target: &str) -> (u16, String, String) {
    let (status, head, body) = request(addr, "GET", target).await;
    (status, content_type(&head), body)
}

async fn start_agent(tls: Option<Arc<ServerConfig>>) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_agent(listener, tls, stop.clone()));
    (addr, stop)
}

/// Starts the daemon of `config` and waits (bounded) for its first monitor's first
/// check; returns the daemon and that monitor.
async fn first_check(config: &str) -> (Running, Monitor) {
    let config = DaemonConfig::parse(config).unwrap();
    let running = start(&config, Vec::new()).await.unwrap();
    let monitor = running.monitors[0].clone();
    let mut rx = monitor.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.checks() >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(monitor.status(), Status::Healthy, "{}", monitor.detail());
    (running, monitor)
}

#[tokio::test]
async fn the_agent_answers_the_protocol() {
    let (agent, stop) = start_agent(None).await;
    let up = upstream(&stop).await;
    let path = AGENT_HEALTH_PATH;

    let (status, content_type, body) = get(
        agent,
        &format!("{path}?scheme=http&host={up}&path=/health&timeout=2000"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["detail"], "HTTP 200 OK");
    assert!(json["latency"].as_u64().unwrap() > 0);

    let (status, _, body) = get(agent, &format!("{path}?scheme=tcp&host={up}")).await;
    assert_eq!(
        (status, body.contains("\"healthy\":true")),
        (200, true),
        "{body}"
    );

    for (query, reason) in [
        ("host=x", "missing `scheme`"),
        ("scheme=http", "missing `host`"),
        ("scheme=udp4&host=", "missing `host`"),
        ("scheme=fileserver", "missing `path`"),
        (
            "scheme=gopher&host=x",
            "supported schemes: http, https, h2c, tcp",
        ),
    ] {
        let (status, content_type, body) = get(agent, &format!("{path}?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert!(body.contains(reason), "{query}: {body}");
    }

    // A path through a regular file: the check itself fails (ENOTDIR) → 502, plain text.
    let file = tempfile::NamedTempFile::new().unwrap();
    let target = format!(
        "{path}?scheme=fileserver&path={}/inside",
        file.path().display()
    );
    let (status, content_type, body) = get(agent, &target).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        content_type.starts_with("text/plain") && !body.is_empty(),
        "{body}"
    );

    // A missing file is a healthy answer about an unhealthy target.
    let (status, _, body) = get(
        agent,
        &format!("{path}?scheme=file&path=/nonexistent/x&timeout=0"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"kind\":\"not_found\""), "{body}");
    stop.cancel();
}

#[tokio::test]
async fn healthd_monitors_through_healthd_agent() {
    let (agent, stop) = start_agent(None).await;
    let up = upstream(&stop).await;
    let (running, monitor) = first_check(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \":memory:\"\n[[monitor]]\nname = \"behind-agent\"\nurl = \"http://{up}/\"\ninterval = \"1s\"\nagent = {{ url = \"http://{agent}\" }}\n"
    ))
    .await;
    assert_eq!(monitor.detail(), "HTTP 200 OK");
    running.shutdown(Duration::from_secs(1)).await;
    stop.cancel();
}

/// Issues a certificate for `names` from `ca` and writes it and its key into `dir` as
/// `<name>.pem` and `<name>-key.pem`; returns their paths.
fn issue(
    ca: &TestCa,
    dir: &tempfile::TempDir,
    name: &str,
    names: &[&str],
    purpose: KeyUsage,
) -> (PathBuf, PathBuf) {
    ca.issue(names.iter().map(|n| (*n).to_owned()).collect(), purpose)
        .write(dir.path(), name)
}

/// An agent probe for `agent_url` trusting `ca`, with the client certificate `client`.
fn agent_probe(agent_url: &Url, ca: &Path, client: Option<(PathBuf, PathBuf)>) -> AgentProbe {
    let config = HealthCheckConfig {
        timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let (cert, key) = client.unzip();
    let spec = AgentSpec {
        ca: Some(ca.to_owned()),
        cert,
        key,
        ..AgentSpec::new(agent_url.clone())
    };
    AgentProbe::try_new(&config, spec).unwrap()
}

#[tokio::test]
async fn mutual_tls_accepts_our_client_and_rejects_others() {
    let pki = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write(dir.path(), "ca.pem");
    let (server_cert, server_key) = issue(
        &pki,
        &dir,
        "server",
        &["127.0.0.1", "localhost"],
        KeyUsage::ServerAuth,
    );
    let (client_cert, client_key) =
        issue(&pki, &dir, "client", &["client.test"], KeyUsage::ClientAuth);
    let tls = server_config(&server_cert, &server_key, Some(&ca)).unwrap();
    let (agent, stop) = start_agent(Some(Arc::new(tls))).await;
    let up = upstream(&stop).await;
    let target = Url::parse(&format!("http://{up}/")).unwrap();
    let agent_url = Url::parse(&format!("https://127.0.0.1:{}", agent.port())).unwrap();

    let with_cert = agent_probe(
        &agent_url,
        &ca,
        Some((client_cert.clone(), client_key.clone())),
    );
    let result = with_cert.check(&target).await.unwrap();
    assert!(result.healthy, "{result:?}");

    let without = agent_probe(&agent_url, &ca, None);
    let err = without.check(&target).await.unwrap_err();
    assert_ne!(err.kind(), CheckKind::Ok, "{err}");

    // A client certificate from another CA is refused too.
    let other = TestCa::new();
    let foreign = issue(
        &other,
        &dir,
        "foreign",
        &["client.test"],
        KeyUsage::ClientAuth,
    );
    let foreign = agent_probe(&agent_url, &ca, Some(foreign));
    assert!(foreign.check(&target).await.is_err());

    // The whole daemon, configured with the same files, monitors through the agent.
    let (running, _) = first_check(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \":memory:\"\n[[monitor]]\nname = \"mtls\"\nurl = \"http://{up}/\"\nagent = {{ url = \"https://127.0.0.1:{}\", ca = {:?}, cert = {:?}, key = {:?} }}\n",
        agent.port(),
        ca,
        client_cert,
        client_key
    ))
    .await;
    running.shutdown(Duration::from_secs(1)).await;
    stop.cancel();
}
