//! The agent server (SPEC §5 "Agent server") and the round trip healthd monitor →
//! healthd agent → upstream, in plain HTTP and with mutual TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use health_check::{AgentProbe, AgentProbeConfig};
use health_monitor::HealthMonitor;
use health_types::{CheckKind, HealthCheckConfig, Probe, Status, Url};
use healthd::{agent, config::DaemonConfig, daemon};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// A loopback HTTP upstream answering 200 to everything.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    addr
}

async fn start_agent(
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(agent::serve(listener, tls, stop.clone()));
    (addr, stop)
}

/// One plain HTTP/1.1 GET; returns the status, the content type and the body.
async fn get(addr: SocketAddr, target: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (head[9..12].parse().unwrap(), content_type, body.to_owned())
}

#[tokio::test]
async fn the_agent_answers_the_protocol() {
    let up = upstream().await;
    let (agent, stop) = start_agent(None).await;
    let path = agent::HEALTH_PATH;

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
            "supported schemes are http, https, h2c, tcp",
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
    let up = upstream().await;
    let (agent, stop) = start_agent(None).await;
    let config = DaemonConfig::parse(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[monitor]]\nname = \"behind-agent\"\nurl = \"http://{up}/\"\ninterval = \"1s\"\nagent = {{ url = \"http://{agent}\" }}\n"
    ))
    .unwrap();
    let running = daemon::start(&config, Vec::new()).await.unwrap();
    let monitor = running.monitors[0].clone();
    let mut rx = monitor.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.checks() >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(monitor.status(), Status::Healthy, "{}", monitor.detail());
    assert_eq!(monitor.detail(), "HTTP 200 OK");
    running.shutdown(Duration::from_secs(1)).await;
    stop.cancel();
}

struct Pki {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki {
            dir: tempfile::tempdir().unwrap(),
            issuer,
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn ca(&self) -> PathBuf {
        self.write("ca.pem", &self.issuer.pem())
    }

    /// Issues a certificate; returns the paths of its PEM certificate and key.
    fn issue(
        &self,
        name: &str,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            self.write(&format!("{name}.pem"), &cert.pem()),
            self.write(&format!("{name}-key.pem"), &key.serialize_pem()),
        )
    }
}

#[tokio::test]
async fn mutual_tls_accepts_our_client_and_rejects_others() {
    let up = upstream().await;
    let pki = Pki::new();
    let ca = pki.ca();
    let (server_cert, server_key) = pki.issue(
        "server",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = pki.issue(
        "client",
        &["client.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let tls = agent::tls_config(&server_cert, &server_key, Some(&ca)).unwrap();
    let (agent, stop) = start_agent(Some(Arc::new(tls))).await;
    let config = HealthCheckConfig {
        timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let target = Url::parse(&format!("http://{up}/")).unwrap();
    let agent_url = Url::parse(&format!("https://127.0.0.1:{}", agent.port())).unwrap();

    let with_cert = AgentProbe::try_new(
        &config,
        AgentProbeConfig {
            url: agent_url.clone(),
            ca_file: Some(ca.clone()),
            cert_file: Some(client_cert.clone()),
            key_file: Some(client_key.clone()),
        },
    )
    .unwrap();
    let result = with_cert.check(&target).await.unwrap();
    assert!(result.healthy, "{result:?}");

    let without = AgentProbe::try_new(
        &config,
        AgentProbeConfig {
            url: agent_url.clone(),
            ca_file: Some(ca.clone()),
            cert_file: None,
            key_file: None,
        },
    )
    .unwrap();
    let err = without.check(&target).await.unwrap_err();
    assert_ne!(err.kind(), CheckKind::Ok, "{err}");

    // A client certificate from another CA is refused too.
    let other = Pki::new();
    let (foreign_cert, foreign_key) = other.issue(
        "foreign",
        &["client.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let foreign = AgentProbe::try_new(
        &config,
        AgentProbeConfig {
            url: agent_url,
            ca_file: Some(ca.clone()),
            cert_file: Some(foreign_cert),
            key_file: Some(foreign_key),
        },
    )
    .unwrap();
    assert!(foreign.check(&target).await.is_err());

    // The whole daemon, configured with the same files, monitors through the agent.
    let config = DaemonConfig::parse(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[monitor]]\nname = \"mtls\"\nurl = \"http://{up}/\"\nagent = {{ url = \"https://127.0.0.1:{}\", ca = {:?}, cert = {:?}, key = {:?} }}\n",
        agent.port(),
        ca,
        client_cert,
        client_key
    ))
    .unwrap();
    let running = daemon::start(&config, Vec::new()).await.unwrap();
    let monitor = running.monitors[0].clone();
    let mut rx = monitor.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.checks() >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(monitor.status(), Status::Healthy, "{}", monitor.detail());
    running.shutdown(Duration::from_secs(1)).await;
    stop.cancel();
}
