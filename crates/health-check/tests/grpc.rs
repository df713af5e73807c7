//! GrpcProbe (`grpc://`, `grpcs://`) against a real tonic-health server on loopback,
//! in cleartext and over TLS with a certificate made by the test (rcgen).
#![cfg(feature = "grpc")]
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use health_check::{GrpcProbe, build_probe};
use health_types::{
    CheckKind, CheckResult, HealthCheckConfig, Probe, Target, TlsOptions, test_util::TestCa,
};
use support::{closed_port, config};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::Instant,
};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig, server::TlsStream};
use tonic::transport::{Server, server::Connected};
use tonic_health::{ServingStatus, server::health_reporter};
use url::Url;

/// A gRPC server on loopback with the health service: the whole server and `pkg.Up`
/// serving, `pkg.Down` not serving.
struct HealthServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server-side TLS stream that tonic can serve (it asks each connection for its
/// connect info).
struct Tls(TlsStream<TcpStream>);

impl Connected for Tls {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

async fn health_server(tls: Option<Arc<ServerConfig>>) -> HealthServer {
    let (reporter, service) = health_reporter();
    reporter
        .set_service_status("pkg.Up", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("pkg.Down", ServingStatus::NotServing)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Server::builder().add_service(service);
    let task = match tls {
        None => {
            let incoming = futures_util::stream::unfold(listener, |listener| async move {
                let accepted = listener.accept().await.map(|(stream, _)| stream);
                Some((accepted, listener))
            });
            tokio::spawn(async move {
                let _keep = reporter;
                let _ = router.serve_with_incoming(incoming).await;
            })
        }
        Some(config) => {
            let acceptor = TlsAcceptor::from(config);
            let incoming = futures_util::stream::unfold(
                (listener, acceptor),
                |(listener, acceptor)| async move {
                    // Bounded by the test: a client that fails its handshake is skipped.
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            return None;
                        };
                        if let Ok(tls) = acceptor.accept(stream).await {
                            return Some((Ok::<_, io::Error>(Tls(tls)), (listener, acceptor)));
                        }
                    }
                },
            );
            tokio::spawn(async move {
                let _keep = reporter;
                let _ = router.serve_with_incoming(incoming).await;
            })
        }
    };
    HealthServer { addr, task }
}

fn url(scheme: &str, addr: SocketAddr, service: &str) -> Url {
    Url::parse(&format!("{scheme}://{addr}/{service}")).unwrap()
}

async fn check(probe: &GrpcProbe, url: &Url) -> CheckResult {
    probe.check(url).await.expect("the server could be checked")
}

fn verdict(result: &CheckResult) -> (bool, CheckKind, &str) {
    (result.healthy, result.kind, result.detail.as_str())
}

#[tokio::test]
async fn serving_and_not_serving_services() {
    let server = health_server(None).await;
    let probe = GrpcProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &url("grpc", server.addr, "")).await;
    assert_eq!(verdict(&result), (true, CheckKind::Ok, "SERVING"));
    let result = check(&probe, &url("grpc", server.addr, "pkg.Up")).await;
    assert_eq!(verdict(&result), (true, CheckKind::Ok, "SERVING"));
    let result = check(&probe, &url("grpc", server.addr, "pkg.Down")).await;
    assert_eq!(verdict(&result), (false, CheckKind::Status, "NOT_SERVING"));
    let result = check(&probe, &url("grpc", server.addr, "pkg.Nobody")).await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Status,
            "grpc: service \"pkg.Nobody\" unknown (NOT_FOUND)"
        )
    );
    // The same channel served every check, and still does.
    let result = check(&probe, &url("grpc", server.addr, "pkg.Up")).await;
    assert!(result.healthy, "{result:?}");
}

#[tokio::test]
async fn a_server_without_the_health_service_is_a_protocol_failure() {
    // A gRPC server with no service at all answers UNIMPLEMENTED to every call.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, service) = health_reporter();
    let router = Server::builder().add_optional_service(Some(service).filter(|_| false));
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let task = tokio::spawn(async move {
        let _ = router.serve_with_incoming(incoming).await;
    });
    let probe = GrpcProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &url("grpc", addr, "")).await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Protocol,
            "grpc: the server has no health service (UNIMPLEMENTED)"
        )
    );
    task.abort();
}

#[tokio::test]
async fn grpcs_with_and_without_verification() {
    let ca = TestCa::new();
    let identity = ca.server();
    let server = health_server(Some(identity.server_config(&[b"h2"], None))).await;
    let target = url("grpcs", server.addr, "pkg.Up");

    // tls_verify false (the default): any certificate; the result shows it.
    let probe = GrpcProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &target).await;
    assert_eq!(verdict(&result), (true, CheckKind::Ok, "SERVING"));
    let cert = result
        .cert
        .clone()
        .expect("a grpcs result carries the certificate");
    assert!(cert.not_after > 0 && !cert.serial.is_empty(), "{cert:?}");
    // The check opened the connection: its phases (no lookup for an address).
    let phases = result.phases;
    assert!(
        phases.dns.is_none()
            && phases.connect.is_some()
            && phases.tls.is_some()
            && phases.first_byte.is_some(),
        "{phases:?}"
    );
    // A second check on the kept channel still knows it, and made no connection.
    let again = check(&probe, &target).await;
    assert!(again.cert.is_some(), "{again:?}");
    assert!(
        again.phases.connect.is_none() && again.phases.first_byte.is_some(),
        "{again:?}"
    );
    // Unhealthy answers carry it too: the expiry is seen while the service is down.
    for service in ["pkg.Down", "pkg.Nobody"] {
        let down = check(&probe, &url("grpcs", server.addr, service)).await;
        assert_eq!(
            (down.healthy, down.kind),
            (false, CheckKind::Status),
            "{down:?}"
        );
        assert_eq!(down.cert.as_deref(), Some(&*cert), "{service}: {down:?}");
    }

    // tls_verify true with the CA that issued the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path(), "ca.pem");
    let verified = |ca: std::path::PathBuf| HealthCheckConfig {
        tls_verify: true,
        tls: TlsOptions {
            ca: Some(ca),
            ..Default::default()
        },
        ..config(2000)
    };
    let probe = GrpcProbe::try_new(&verified(ca_file)).unwrap();
    assert_eq!(
        verdict(&check(&probe, &target).await),
        (true, CheckKind::Ok, "SERVING")
    );

    // tls.server_name: the certificate is for the loopback names, not this one.
    let renamed = HealthCheckConfig {
        tls: TlsOptions {
            server_name: Some("api.example".to_owned()),
            ..verified(ca.write(dir.path(), "ca2.pem")).tls
        },
        ..verified(ca.write(dir.path(), "ca3.pem"))
    };
    let result = check(&GrpcProbe::try_new(&renamed).unwrap(), &target).await;
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::Tls),
        "{result:?}"
    );

    // tls_verify true against another CA: a TLS failure.
    let other = TestCa::new().write(dir.path(), "other.pem");
    let probe = GrpcProbe::try_new(&verified(other)).unwrap();
    let result = check(&probe, &target).await;
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::Tls),
        "{result:?}"
    );
    assert!(
        result.detail.starts_with("tls: invalid peer certificate"),
        "{result:?}"
    );

    // Cleartext gRPC to a TLS port is not HTTP/2: the TLS server hangs up on it.
    let probe = GrpcProbe::try_new(&config(1000)).unwrap();
    let result = check(&probe, &url("grpc", server.addr, "")).await;
    assert_eq!(
        verdict(&result),
        (false, CheckKind::Reset, "grpc: connection reset")
    );
}

#[tokio::test]
async fn tls_min_version_applies_to_grpcs() {
    use tokio_rustls::rustls::version::TLS12;

    // A server that speaks TLS 1.2 only.
    let identity = TestCa::new().server();
    let mut tls12 = ServerConfig::builder_with_provider(health_types::tls::provider())
        .with_protocol_versions(&[&TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key())
        .unwrap();
    tls12.alpn_protocols = vec![b"h2".to_vec()];
    let server = health_server(Some(Arc::new(tls12))).await;
    let target = url("grpcs", server.addr, "pkg.Up");
    let with_min = |min_version| HealthCheckConfig {
        tls: TlsOptions {
            min_version,
            ..Default::default()
        },
        ..config(2000)
    };
    let result = check(&GrpcProbe::try_new(&with_min(None)).unwrap(), &target).await;
    assert_eq!(verdict(&result), (true, CheckKind::Ok, "SERVING"));
    let probe = GrpcProbe::try_new(&with_min(Some(health_types::TlsVersion::Tls13))).unwrap();
    let result = check(&probe, &target).await;
    assert_eq!(
        (result.healthy, result.kind),
        (false, CheckKind::Tls),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_refused_port_and_a_black_hole() {
    let closed = closed_port("127.0.0.1:0").await;
    let probe = GrpcProbe::try_new(&config(1000)).unwrap();
    let result = check(&probe, &url("grpc", closed, "")).await;
    assert_eq!(
        verdict(&result),
        (false, CheckKind::Refused, "connection refused")
    );

    // Accepts, never answers: cut at the timeout.
    let hole = support::black_hole("127.0.0.1:0").await;
    let probe = GrpcProbe::try_new(&config(300)).unwrap();
    let started = Instant::now();
    let result = check(&probe, &url("grpc", hole.addr, "")).await;
    let elapsed = started.elapsed();
    assert_eq!(
        verdict(&result),
        (false, CheckKind::Timeout, "timed out after 300ms")
    );
    assert!(elapsed < Duration::from_millis(800), "{elapsed:?}");
    // The stuck channel was dropped: the next check connects afresh.
    let result = check(&probe, &url("grpc", hole.addr, "")).await;
    assert_eq!(result.kind, CheckKind::Timeout, "{result:?}");
    assert_eq!(hole.connections(), 2);
}

#[test]
fn grpc_urls_are_validated_by_build_probe() {
    for (text, needle) in [
        ("grpc://127.0.0.1", "port"),
        ("grpcs://127.0.0.1:443/?x=1", "no query"),
    ] {
        let err = build_probe(
            &HealthCheckConfig::default(),
            &Target::Url(Url::parse(text).unwrap()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(needle) && err.contains(text.split('/').nth(2).unwrap()),
            "{text}: {err}"
        );
    }
    let missing_ca = HealthCheckConfig {
        tls_verify: true,
        tls: TlsOptions {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = GrpcProbe::try_new(&missing_ca).unwrap_err().to_string();
    assert!(
        err.contains("`tls.ca`") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
    // Read even when nothing is verified: a wrong path is found at load.
    let unverified = HealthCheckConfig {
        tls_verify: false,
        ..missing_ca
    };
    let err = GrpcProbe::try_new(&unverified).unwrap_err().to_string();
    assert!(
        err.contains("`tls.ca`") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
    let missing_key = HealthCheckConfig {
        tls: TlsOptions {
            cert: Some("/nonexistent/client.pem".into()),
            key: Some("/nonexistent/client.key".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = GrpcProbe::try_new(&missing_key).unwrap_err().to_string();
    assert!(
        err.contains("`tls`") && err.contains("/nonexistent/client.pem"),
        "{err}"
    );
    assert!(!err.contains("a grpcs client config"), "{err}");
}

/// A health service answering by the service asked: `huge` an INTERNAL status with a
/// 10 000-character message, `slow` the server's own DEADLINE_EXCEEDED.
struct Scripted;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Scripted {
    async fn check(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        match request.into_inner().service.as_str() {
            "huge" => Err(tonic::Status::internal("x".repeat(10_000))),
            "slow" => Err(tonic::Status::deadline_exceeded("backend too slow")),
            _ => Ok(tonic::Response::new(
                tonic_health::pb::HealthCheckResponse { status: 1 },
            )),
        }
    }

    type WatchStream =
        futures_util::stream::Empty<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
}

#[tokio::test]
async fn a_long_status_message_is_cut_and_a_servers_deadline_keeps_the_channel() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let incoming = futures_util::stream::unfold(listener, move |listener| {
        let counter = counter.clone();
        async move {
            let accepted = listener.accept().await.map(|(stream, _)| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                stream
            });
            Some((accepted, listener))
        }
    });
    let router =
        Server::builder().add_service(tonic_health::pb::health_server::HealthServer::new(Scripted));
    let task = tokio::spawn(async move {
        let _ = router.serve_with_incoming(incoming).await;
    });
    let probe = GrpcProbe::try_new(&config(2000)).unwrap();
    let result = check(&probe, &url("grpc", addr, "huge")).await;
    assert_eq!((result.healthy, result.kind), (false, CheckKind::Status));
    assert!(
        result.detail.starts_with("grpc: INTERNAL: xxx") && result.detail.len() < 300,
        "{} characters: {:.60}…",
        result.detail.len(),
        result.detail
    );
    let result = check(&probe, &url("grpc", addr, "slow")).await;
    assert_eq!(
        verdict(&result),
        (
            false,
            CheckKind::Timeout,
            "grpc: the server says the deadline was exceeded (DEADLINE_EXCEEDED): backend too slow"
        )
    );
    let result = check(&probe, &url("grpc", addr, "")).await;
    assert_eq!(verdict(&result), (true, CheckKind::Ok, "SERVING"));
    // One connection served all three: neither answer dropped the channel.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    task.abort();
}
