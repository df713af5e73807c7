//! The TLS handshake of a check, on the configs of [`health_types::tls`].

use std::{io, sync::Arc};

use health_types::{CheckKind, tls::server_name};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream, rustls::ClientConfig};

use crate::failure::{Failure, classify_tls};

/// Runs a TLS handshake over `tcp` for `host` (a name or a literal address).
pub(crate) async fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Failure> {
    let name = server_name(host).ok_or_else(|| {
        Failure::checker(
            CheckKind::Config,
            format!("tls: {host:?} is not a valid server name"),
        )
    })?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|err| match err.kind() {
            // A peer that hangs up mid-handshake does not speak TLS (or refuses us).
            io::ErrorKind::UnexpectedEof => Failure::target(
                CheckKind::Tls,
                "tls: connection closed during the handshake",
            ),
            _ => classify_tls(&err),
        })
}
