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
    AgentSpec, CheckKind, HealthCheckConfig, Probe, Scheme, Status, Url,
    test_util::{KeyUsage, TestCa},
    tls::{rustls::ServerConfig, server_config},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{AGENT_SCHEMES, AgentCheck, AgentPolicy, AllowEntry, MAX_AGENT_TIMEOUT, serve_agent};
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

async fn start_agent(
    tls: Option<Arc<ServerConfig>>,
    policy: AgentPolicy,
) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_agent(listener, tls, policy, stop.clone()));
    (addr, stop)
}

/// A policy admitting the networks and names of `allow`.
fn allowing(allow: &[&str]) -> AgentPolicy {
    AgentPolicy::default().with_allow(allow.iter().map(|a| a.parse().unwrap()).collect())
}

/// Asks `agent` for the check of `query`; returns the status, content type and body.
async fn ask(agent: SocketAddr, query: &str) -> (u16, String, String) {
    get(agent, &format!("{AGENT_HEALTH_PATH}?{query}")).await
}

/// Asserts that `agent` answers `query` with `status` and a plain-text body containing
/// `reason`.
async fn assert_plain(agent: SocketAddr, query: &str, status: u16, reason: &str) {
    let (got, content_type, body) = ask(agent, query).await;
    assert_eq!(got, status, "{query}: {body}");
    assert!(
        content_type.starts_with("text/plain"),
        "{query}: {content_type}"
    );
    assert!(body.contains(reason), "{query}: {body}");
}

/// Asserts that `agent` answers `query` with 200 and a result of `kind`; returns it.
async fn assert_result(agent: SocketAddr, query: &str, kind: &str) -> serde_json::Value {
    let (status, _, body) = ask(agent, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["kind"], kind, "{query}: {body}");
    json
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
    let root = tempfile::tempdir().unwrap();
    let policy = AgentPolicy::default().with_file_root(root.path()).unwrap();
    let (agent, stop) = start_agent(None, policy).await;
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
    let file = tempfile::NamedTempFile::new_in(root.path()).unwrap();
    let query = format!("scheme=fileserver&path={}/inside", file.path().display());
    assert_plain(agent, &query, 502, "inside").await;

    // A missing file is a healthy answer about an unhealthy target.
    let missing = root.path().join("nonexistent/x");
    let query = format!("scheme=file&path={}&timeout=0", missing.display());
    assert_result(agent, &query, "not_found").await;
    stop.cancel();
}

#[tokio::test]
async fn without_a_file_root_every_file_check_is_refused() {
    let (agent, stop) = start_agent(None, AgentPolicy::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let present = dir.path().join("present");
    std::fs::write(&present, "x").unwrap();
    for query in [
        "scheme=fileserver&path=/etc/shadow".to_owned(),
        "scheme=file&path=/etc/shadow".to_owned(),
        "scheme=fileserver&path=/".to_owned(),
        format!("scheme=file&path={}", present.display()),
    ] {
        assert_plain(agent, &query, 403, "without --file-root").await;
    }
    stop.cancel();
}

#[tokio::test]
async fn file_checks_stay_under_the_file_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("inside"), "x").unwrap();
    std::fs::write(dir.path().join("secret"), "x").unwrap();
    // Symbolic links out of the root: to its parent, and to a file next to it.
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("secret")).unwrap();
    let policy = AgentPolicy::default().with_file_root(&root).unwrap();
    let (agent, stop) = start_agent(None, policy).await;
    let r = root.display();

    // Inside, by any spelling (even through a link that leaves and comes back).
    for path in [
        format!("{r}/inside"),
        format!("{r}/sub/../inside"),
        format!("{r}/up/root/inside"),
        format!("{r}/"),
    ] {
        let json = assert_result(agent, &format!("scheme=fileserver&path={path}"), "ok").await;
        assert_eq!(json["healthy"], true, "{path}");
    }
    // Missing under the root: answered, not refused.
    for path in [format!("{r}/missing"), format!("{r}/no/such/dir")] {
        assert_result(agent, &format!("scheme=file&path={path}"), "not_found").await;
    }
    // Escapes: by `..`, by a link, by `..` after a missing directory, or plainly.
    for path in [
        format!("{r}/../secret"),
        format!("{r}/sub/../../secret"),
        format!("{r}/secret"),
        format!("{r}/up/secret"),
        format!("{r}/up"),
        format!("{r}/missing/../../secret"),
        format!("{r}/up/missing"),
        "/etc/shadow".to_owned(),
        "/".to_owned(),
    ] {
        let query = format!("scheme=fileserver&path={path}");
        assert_plain(agent, &query, 403, "outside --file-root").await;
    }
    stop.cancel();
}

#[test]
fn the_file_root_must_be_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = AgentPolicy::default()
        .with_file_root(&dir.path().join("missing"))
        .unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    let file = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
    let not_dir = AgentPolicy::default()
        .with_file_root(file.path())
        .unwrap_err();
    assert_eq!(not_dir.kind(), std::io::ErrorKind::NotADirectory);
}

#[test]
fn allow_entries_are_networks_addresses_or_host_names() {
    let entry = |text: &str| text.parse::<AllowEntry>();
    for (text, same_as) in [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("fd00::/8", "fd00::/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("::1", "::1/128"),
        ("[::1]", "::1/128"),
        ("Nas.LAN", "nas.lan"),
        ("db-1_a", "db-1_a"),
    ] {
        assert_eq!(entry(text).unwrap(), entry(same_as).unwrap(), "{text}");
    }
    assert_ne!(entry("10.0.0.0/8").unwrap(), entry("10.0.0.0/9").unwrap());
    for text in [
        "10.0.0.0/33",
        "10.0.0/8",
        "10.0.0.256",
        "",
        "nas lan",
        "a..b",
        "host/x",
        "::1]",
    ] {
        let err = entry(text).unwrap_err();
        assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
    }
}

/// The check of a request with the query parameters `params`.
fn parse(params: &[(&str, &str)]) -> Result<AgentCheck, String> {
    let params = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    AgentCheck::parse(&params)
}

#[test]
fn timeouts_are_capped_at_60_s() {
    let timeout = |ms: &str| {
        parse(&[("scheme", "tcp"), ("host", "127.0.0.1:1"), ("timeout", ms)])
            .unwrap()
            .config
            .timeout
    };
    assert_eq!(MAX_AGENT_TIMEOUT, Duration::from_secs(60));
    assert_eq!(timeout("99999999999"), MAX_AGENT_TIMEOUT);
    assert_eq!(timeout("60001"), MAX_AGENT_TIMEOUT);
    assert_eq!(timeout("60000"), MAX_AGENT_TIMEOUT);
    assert_eq!(timeout("1500"), Duration::from_millis(1500));
    assert_eq!(timeout("0"), Duration::from_secs(10));
    assert_eq!(timeout("soon"), Duration::from_secs(10));
}

#[tokio::test]
async fn a_host_is_a_bare_host_and_port() {
    let check = |scheme: &str, host: &str| parse(&[("scheme", scheme), ("host", host)]);
    for host in [
        "127.0.0.1:19040/evil?x=1",
        "127.0.0.1:19040/evil",
        "127.0.0.1?x=1",
        "127.0.0.1#x",
        "user@127.0.0.1",
        "user:pw@127.0.0.1:80",
        "127.0.0.1\\x",
        "127.0.0.1 :80",
        "127.0.0.1\t",
    ] {
        for scheme in ["http", "tcp"] {
            let reason = check(scheme, host).unwrap_err();
            assert!(reason.contains("invalid `host`"), "{host}: {reason}");
        }
    }
    for (host, url) in [
        ("127.0.0.1:19040", "http://127.0.0.1:19040/"),
        ("[::1]:19040", "http://[::1]:19040/"),
        ("[::1]", "http://[::1]/"),
        ("Nas.lan:8080", "http://nas.lan:8080/"),
    ] {
        assert_eq!(check("http", host).unwrap().url.as_str(), url);
    }
    // Over HTTP, as the issue found it.
    let (agent, stop) = start_agent(None, AgentPolicy::default()).await;
    assert_plain(
        agent,
        "scheme=http&host=127.0.0.1:19040/evil?x=1",
        400,
        "`host`",
    )
    .await;
    assert_plain(agent, "scheme=tcp&host=a%40127.0.0.1:1", 400, "`host`").await;
    stop.cancel();
}

#[tokio::test]
async fn allow_admits_covered_targets_and_refuses_the_others() {
    let stop = CancellationToken::new();
    let up = upstream(&stop).await;
    let port = up.port();
    let (agent, stop_agent) = start_agent(None, allowing(&["127.0.0.1/32"])).await;
    for query in [
        format!("scheme=tcp&host=127.0.0.1:{port}"),
        format!("scheme=http&host=127.0.0.1:{port}&path=/x"),
        // A name is resolved, and its address is covered.
        format!("scheme=tcp4&host=localhost:{port}"),
        format!("scheme=tcp&host=127.1:{port}"),
    ] {
        let json = assert_result(agent, &query, "ok").await;
        assert_eq!(json["healthy"], true, "{query}");
    }
    for (host, reason) in [
        (
            "127.0.0.2",
            "target 127.0.0.2 is outside every --allow entry",
        ),
        ("[::1]", "target [::1] is outside"),
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        ("[::ffff:127.0.0.2]", "outside"),
        ("no-such-host.invalid", "no-such-host.invalid"),
    ] {
        let query = format!("scheme=tcp&host={host}:{port}&timeout=1000");
        assert_plain(agent, &query, 403, reason).await;
    }
    stop_agent.cancel();

    // Host entries admit the name as written (any case), not its address; a name that
    // resolves outside the networks is refused.
    let (agent, stop_agent) = start_agent(None, allowing(&["127.0.0.2/32", "LocalHost"])).await;
    for host in ["localhost", "LOCALHOST"] {
        let query = format!("scheme=tcp&host={host}:{port}");
        let json = assert_result(agent, &query, "ok").await;
        assert_eq!(json["healthy"], true, "{query}");
    }
    // Admitted, though nothing listens there.
    assert_result(
        agent,
        &format!("scheme=http&host=127.0.0.2:{port}"),
        "refused",
    )
    .await;
    for (host, reason) in [
        ("127.0.0.1", "target 127.0.0.1 is outside"),
        (
            "127.1",
            "target 127.1 resolves to 127.0.0.1, which is outside",
        ),
    ] {
        assert_plain(
            agent,
            &format!("scheme=tcp&host={host}:{port}"),
            403,
            reason,
        )
        .await;
    }
    stop_agent.cancel();
    stop.cancel();
}

#[tokio::test]
async fn a_name_admitted_by_its_addresses_is_checked_at_the_address_checked() {
    let policy = allowing(&["127.0.0.0/8", "::1/128"]);
    let admitted = |scheme: &str, host: &str| {
        let mut check = parse(&[("scheme", scheme), ("host", host)]).unwrap();
        let policy = policy.clone();
        async move {
            policy.admit(&mut check).await.unwrap();
            check
        }
    };
    let check = admitted("tcp4", "localhost:7").await;
    assert_eq!(check.url.as_str(), "tcp4://127.0.0.1:7");
    let check = admitted("http", "localhost:8").await;
    let host = check.url.host_str().unwrap();
    assert!(host == "127.0.0.1" || host == "[::1]", "{}", check.url);
    assert_eq!(check.config.headers["host"], "localhost:8");
    // TLS needs the name: it stays.
    let check = admitted("https", "localhost").await;
    assert_eq!(check.url.as_str(), "https://localhost/");
    assert!(check.config.headers.is_empty());
}

#[tokio::test]
async fn healthd_monitors_through_healthd_agent() {
    let (agent, stop) = start_agent(None, AgentPolicy::default()).await;
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
    let (agent, stop) = start_agent(Some(Arc::new(tls)), AgentPolicy::default()).await;
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

#[test]
fn a_grpc_checks_path_is_its_service_and_dns_is_not_offered() {
    let check = parse(&[
        ("scheme", "grpc"),
        ("host", "10.0.0.7:50051"),
        ("path", "/orders.v1.Orders"),
    ])
    .unwrap();
    assert_eq!(check.url.as_str(), "grpc://10.0.0.7:50051/orders.v1.Orders");
    assert_eq!(check.config.path, "/");
    let check = parse(&[("scheme", "http"), ("host", "h:1"), ("path", "/health")]).unwrap();
    assert_eq!(
        (check.url.path(), check.config.path.as_str()),
        ("/", "/health")
    );
    let err = parse(&[("scheme", "dns"), ("host", "10.0.0.53")]).unwrap_err();
    assert!(
        err.contains("\"dns\"") && err.contains("icmp, grpc, grpcs, fileserver"),
        "{err}"
    );
}

#[test]
fn the_agent_offers_every_scheme_but_dns_in_order() {
    let expected: Vec<Scheme> = Scheme::ALL
        .into_iter()
        .filter(|s| *s != Scheme::Dns)
        .collect();
    assert_eq!(AGENT_SCHEMES.to_vec(), expected);
}
