//! `healthd agent`: serves GoDoxy's agent protocol (SPEC §5, "Agent server"), so that a
//! healthd elsewhere can check targets only this host can reach.
//!
//! `GET /godoxy/agent/health?scheme=&host=&path=&timeout=<ms>&method=` runs one probe and
//! answers `200 application/json {"healthy","detail","latency"(ns),"kind"}`; a check that
//! could not be carried out answers `502` with the error as plain text; a bad request
//! answers `400` with the reason as plain text. With `--cert`/`--key` it serves HTTPS;
//! with `--client-ca` it also requires and verifies client certificates.

use std::{collections::HashMap, io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Query,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use health_check::AGENT_HEALTH_PATH;
use health_types::{
    ErrorChain, HealthCheckConfig, Scheme, Url,
    tls::{TlsError, rustls::ServerConfig, server_config},
    unsupported_reason,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{daemon::shutdown_signal, probe::check_url};

/// Timeout used when the request gives none (or zero, or garbage).
const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// GoDoxy's name for a file check, besides our `file`.
const FILESERVER: &str = "fileserver";

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
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
    #[error("tls")]
    Tls(#[from] TlsError),
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
        config.method = method.parse().map_err(|e| ErrorChain(&e).to_string())?;
    }
    let url = if scheme == FILESERVER || scheme == Scheme::File.as_str() {
        let path = params
            .get("path")
            .filter(|p| !p.is_empty())
            .ok_or("missing `path`")?;
        Url::from_file_path(path)
            .map_err(|()| format!("invalid `path` = {path:?}: must be absolute"))?
    } else if let Ok(scheme) = scheme.parse::<Scheme>() {
        let host = params
            .get("host")
            .filter(|h| !h.is_empty())
            .ok_or("missing `host`")?;
        let base = if scheme.is_http() { "/" } else { "" };
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
    } else {
        // Every scheme a probe checks, and GoDoxy's `fileserver`.
        return Err(format!(
            "{}, {FILESERVER}",
            unsupported_reason(scheme, &Scheme::ALL)
        ));
    };
    Ok((url, config))
}

async fn health(Query(params): Query<HashMap<String, String>>) -> Response {
    let (url, config) = match target(&params) {
        Ok(target) => target,
        Err(reason) => return bad_request(reason),
    };
    match check_url(&config, &url).await {
        Err(e) => bad_request(ErrorChain(&e).to_string()),
        Ok(Ok(result)) => axum::Json(result).into_response(),
        Ok(Err(e)) => plain(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// The agent's router.
fn router() -> Router {
    Router::new().route(AGENT_HEALTH_PATH, get(health))
}

/// Serves the agent protocol on `listener` until `stop` is cancelled, over TLS when
/// `tls` is set (`health_types::tls::server_config` builds one from PEM files).
pub async fn serve_agent(
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
pub(crate) async fn serve_until_signal(
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<(), AgentError> {
    let tls = match (&cert, &key) {
        (Some(cert), Some(key)) => Some(Arc::new(server_config(cert, key, client_ca.as_deref())?)),
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
        "healthd agent: {}://{addr}{AGENT_HEALTH_PATH}{}",
        if tls.is_some() { "https" } else { "http" },
        if client_ca.is_some() {
            " (client certificates required)"
        } else {
            ""
        }
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve_agent(listener, tls, stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    Ok(())
}

#[cfg(test)]
mod tests;
