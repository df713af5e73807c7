//! Test servers (scripted HTTP, raw TCP, TLS) and generated certificates shared by the
//! integration tests. Every server binds to loopback on port 0 and lives as long as its
//! handle.
#![allow(dead_code, unreachable_pub, reason = "each test binary uses a subset")]

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use health_types::HealthCheckConfig;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        server::WebPkiClientVerifier,
    },
};
use url::Url;

/// A config with a short timeout and defaults for the rest.
pub fn config(timeout_ms: u64) -> HealthCheckConfig {
    HealthCheckConfig {
        timeout: Duration::from_millis(timeout_ms),
        ..Default::default()
    }
}

/// What a scripted HTTP server saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: Version,
    pub headers: Vec<(String, String)>,
}

/// Answers a request.
pub type Handler = Arc<dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync>;

/// A response with `status` and a short body.
pub fn respond(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(status).expect("a valid status code");
    response
}

/// A handler answering 200 `ok`.
pub fn ok_handler() -> Handler {
    Arc::new(|_| respond(200, "ok"))
}

/// A server task that counts the connections it accepts and aborts on drop.
pub struct Server {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// `scheme://addr/`.
    pub fn url(&self, scheme: &str) -> Url {
        self.url_with(scheme, "/")
    }

    /// `scheme://addr<path>`.
    pub fn url_with(&self, scheme: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://{}{path}", self.addr)).expect("a valid test URL")
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests seen so far (scripted HTTP servers only).
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("no test thread panicked").clone()
    }
}

/// An HTTP/1.1 and HTTP/2 (prior knowledge, or ALPN with `tls`) server on `bind`.
pub async fn http_server(bind: &str, tls: Option<Arc<ServerConfig>>, handler: Handler) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    raw_server_with(bind, seen, move |stream| {
        let handler = handler.clone();
        let recorder = recorder.clone();
        let tls = tls.clone();
        async move {
            let service = service_fn(move |request: Request<Incoming>| {
                recorder
                    .lock()
                    .expect("no test thread panicked")
                    .push(Seen {
                        method: request.method().to_string(),
                        uri: request.uri().to_string(),
                        version: request.version(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.to_string(), v.to_str().unwrap_or("<binary>").to_owned())
                            })
                            .collect(),
                    });
                let response = handler(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(config) => {
                    if let Ok(stream) = TlsAcceptor::from(config).accept(stream).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        }
    })
    .await
}

/// A TCP server on `bind` that hands every connection to `handle`.
pub async fn raw_server<F, Fut>(bind: &str, handle: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    raw_server_with(bind, Arc::new(Mutex::new(Vec::new())), handle).await
}

async fn raw_server_with<F, Fut>(bind: &str, seen: Arc<Mutex<Vec<Seen>>>, handle: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(bind).await.expect("loopback is bindable");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(stream));
        }
    });
    Server {
        addr,
        connections,
        seen,
        task,
    }
}

/// Reads one request head (up to the blank line, at most 64 KiB).
pub async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// Writes `bytes`, ignoring a peer that went away.
pub async fn write(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
}

/// A loopback port with nothing listening (bound, then released).
pub async fn closed_port(bind: &str) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.expect("loopback is bindable");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// A certificate and its key, DER and PEM.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Identity {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
pub fn self_signed() -> Identity {
    let key = KeyPair::generate().expect("key generation works");
    let cert = CertificateParams::new(loopback_names())
        .expect("valid names")
        .self_signed(&key)
        .expect("self-signing works");
    Identity {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn loopback_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

/// A test certificate authority issuing server and client certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("empty names are valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key generation works");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signing works"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .expect("the CA certificate parses");
        roots
    }

    fn issue(&self, names: Vec<String>, purpose: ExtendedKeyUsagePurpose) -> Identity {
        let key = KeyPair::generate().expect("key generation works");
        let mut params = CertificateParams::new(names).expect("valid names");
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).expect("signing works");
        Identity {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for the loopback names.
    pub fn server(&self) -> Identity {
        self.issue(loopback_names(), ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    pub fn client(&self) -> Identity {
        self.issue(
            vec!["client.test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// A TLS server config on the ring provider offering `alpn`, requiring client
/// certificates from `client_ca` when given.
pub fn server_tls(
    identity: &Identity,
    alpn: &[&[u8]],
    client_ca: Option<RootCertStore>,
) -> Arc<ServerConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions");
    let builder = match client_ca {
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier builds"),
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(identity.chain.clone(), identity.key())
        .expect("the test certificate fits its key");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the temp dir is writable");
    path
}
