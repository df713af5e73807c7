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
    let cert = result.cert.expect("a grpcs result carries the certificate");
    assert!(cert.not_after > 0 && !cert.serial.is_empty(), "{cert:?}");
    // A second check on the kept channel still knows it.
    assert!(check(&probe, &target).await.cert.is_some());

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

    // Cleartext gRPC to a TLS port is not HTTP/2.
    let probe = GrpcProbe::try_new(&config(1000)).unwrap();
    let result = check(&probe, &url("grpc", server.addr, "")).await;
    assert!(!result.healthy, "{result:?}");
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
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
