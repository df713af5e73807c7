//! The TLS handshake of a check, on the configs of [`health_types::tls`], and what a
//! check reports of the peer's leaf certificate ([`CertInfo`], parsed with
//! `x509-parser`).

use std::{io, sync::Arc};

use health_types::{
    CertInfo, CheckKind,
    tls::{rustls::pki_types::ServerName, server_name},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream, rustls::ClientConfig};

use crate::failure::{Failure, classify_tls};

/// Runs a TLS handshake over `tcp` for `host` (a name or a literal address), or for
/// `name` when one is configured (`tls.server_name`: sent by SNI and verified instead
/// of the host).
pub(crate) async fn handshake_as(
    config: Arc<ClientConfig>,
    host: &str,
    name: Option<&ServerName<'static>>,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Failure> {
    let name = match name {
        Some(name) => name.clone(),
        None => server_name(host).ok_or_else(|| {
            Failure::checker(
                CheckKind::Config,
                format!("tls: {host:?} is not a valid server name"),
            )
        })?,
    };
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

/// The peer's leaf certificate of a finished handshake, if it showed one that parses.
pub(crate) fn peer_cert(tls: &TlsStream<TcpStream>) -> Option<Arc<CertInfo>> {
    let leaf = tls.get_ref().1.peer_certificates()?.first()?;
    cert_info(leaf.as_ref()).map(Arc::new)
}

/// `not_after`, subject (RFC 4514, or the first DNS name when the subject is empty) and
/// serial (lowercase hex, without leading zero bytes) of a DER certificate.
pub(crate) fn cert_info(der: &[u8]) -> Option<CertInfo> {
    use x509_parser::{extensions::GeneralName, prelude::FromDer};

    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let mut subject = cert.subject().to_string();
    if subject.is_empty()
        && let Ok(Some(names)) = cert.subject_alternative_name()
    {
        subject = names
            .value
            .general_names
            .iter()
            .find_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            })
            .unwrap_or_default();
    }
    let raw = cert.raw_serial();
    let significant = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let mut serial = String::with_capacity(2 * raw.len().max(1));
    for byte in &raw[significant..] {
        serial.push(char::from(HEX[usize::from(byte >> 4)]));
        serial.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    if serial.is_empty() {
        serial.push('0');
    }
    Some(CertInfo {
        not_after: cert.validity().not_after.timestamp(),
        subject,
        serial,
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_show_expiry_subject_and_serial() {
        let mut params = rcgen::CertificateParams::new(vec!["api.test".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x9a, 0x01]));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "api.test");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = cert_info(cert.der()).unwrap();
        assert_eq!(info.not_after, 1_936_742_400);
        assert_eq!(info.subject, "CN=api.test");
        assert_eq!(info.serial, "9a01");
        assert!(cert_info(b"not a certificate").is_none());
    }
}
