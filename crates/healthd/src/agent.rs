//! `healthd agent`: serves GoDoxy's agent protocol (SPEC §5, "Agent server"), so that a
//! healthd elsewhere can check targets only this host can reach.
//!
//! `GET /godoxy/agent/health?scheme=&host=&path=&timeout=<ms>&method=` runs one probe and
//! answers `200 application/json {"healthy","detail","latency"(ns),"kind"}`; a check that
//! could not be carried out answers `502` with the error as plain text; a bad request
//! answers `400` with the reason as plain text. With `--cert`/`--key` it serves HTTPS;
//! with `--client-ca` it also requires and verifies client certificates.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    extract::Query,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use health_types::{HealthCheckConfig, Url};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        crypto::ring::default_provider,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::error_chain,
    daemon::{check_url, shutdown_signal},
};

/// The agent's health endpoint (the path health-check's `AgentProbe` asks).
pub use health_check::AGENT_HEALTH_PATH as HEALTH_PATH;
/// Timeout used when the request gives none (or zero, or garbage).
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Schemes the agent checks (`file` and `fileserver` take `path`, the rest `host`).
pub const AGENT_SCHEMES: [&str; 11] = [
    "http",
    "https",
    "h2c",
    "tcp",
    "tcp4",
    "tcp6",
    "udp",
    "udp4",
    "udp6",
    "fileserver",
    "file",
];

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The TLS files could not be used.
    #[error("tls: {0}")]
    Tls(String),
}

fn bad_request(reason: impl Into<String>) -> Response {
    plain(StatusCode::BAD_REQUEST, reason.into())
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Builds the target URL and config of one agent request.
fn target(params: &HashMap<String, String>) -> Result<(Url, HealthCheckConfig), String> {
    let scheme = params
        .get("scheme")
        .filter(|s| !s.is_empty())
        .ok_or("missing `scheme`")?
        .as_str();
    let timeout = params
        .get("timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map_or(DEFAULT_AGENT_TIMEOUT, Duration::from_millis);
    let mut config = HealthCheckConfig {
        timeout,
        ..Default::default()
    };
    if let Some(method) = params.get("method").filter(|m| !m.is_empty()) {
        config.method = method.parse().map_err(|e| error_chain(&e))?;
    }
    let url = match scheme {
        "fileserver" | "file" => {
            let path = params
                .get("path")
                .filter(|p| !p.is_empty())
                .ok_or("missing `path`")?;
            Url::from_file_path(path)
                .map_err(|()| format!("invalid `path` = {path:?}: must be absolute"))?
        }
        "http" | "https" | "h2c" | "tcp" | "tcp4" | "tcp6" | "udp" | "udp4" | "udp6" => {
            let host = params
                .get("host")
                .filter(|h| !h.is_empty())
                .ok_or("missing `host`")?;
            let base = if scheme.starts_with("http") || scheme == "h2c" {
                "/"
            } else {
                ""
            };
            let url = Url::parse(&format!("{scheme}://{host}{base}"))
                .map_err(|e| format!("invalid `host` = {host:?}: {e}"))?;
            if let Some(path) = params.get("path").filter(|p| !p.is_empty()) {
                config.path = if path.starts_with('/') {
                    path.clone()
                } else {
                    format!("/{path}")
                };
            }
            url
        }
        other => {
            return Err(format!(
                "unsupported `scheme` = {other:?}: supported schemes are {}",
                AGENT_SCHEMES.join(", ")
            ));
        }
    };
    config.validate().map_err(|e| error_chain(&e))?;
    Ok((url, config))
}

async fn health(Query(params): Query<HashMap<String, String>>) -> Response {
    let (url, config) = match target(&params) {
        Ok(target) => target,
        Err(reason) => return bad_request(reason),
    };
    match check_url(&config, &url).await {
        Err(e) => bad_request(error_chain(&e)),
        Ok(Ok(result)) => axum::Json(result).into_response(),
        Ok(Err(e)) => plain(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// The agent's router.
pub fn router() -> Router {
    Router::new().route(HEALTH_PATH, get(health))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| AgentError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(AgentError::Tls(format!(
            "{}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The TLS server config for `cert`/`key`, requiring client certificates signed by
/// `client_ca` when given.
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, AgentError> {
    let provider = Arc::new(default_provider());
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| AgentError::Tls(format!("{}: {e}", key.display())))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Tls(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| AgentError::Tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| AgentError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| AgentError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the agent on `listener` until `stop` is cancelled, over TLS when `tls` is set.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    stop: CancellationToken,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, router())
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    };
    let acceptor = TlsAcceptor::from(tls);
    let service = TowerToHyperService::new(router());
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "agent: accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "agent: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

/// `healthd agent`: serves until SIGINT or SIGTERM.
pub async fn serve_until_signal(
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<(), AgentError> {
    let tls = match (&cert, &key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls_config(cert, key, client_ca.as_deref())?)),
        _ => None,
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(listen);
    println!(
        "healthd agent: {}://{addr}{HEALTH_PATH}{}",
        if tls.is_some() { "https" } else { "http" },
        if client_ca.is_some() {
            " (client certificates required)"
        } else {
            ""
        }
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, tls, stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    Ok(())
}
