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

/// The client TLS side of a check's config, shared by the HTTP connector and the gRPC
/// probe.
pub(crate) struct ClientSetup {
    /// The config for the configured target: its trust, minimum version and client
    /// certificate.
    pub(crate) own: Arc<ClientConfig>,
    /// The same without the client certificate, for other hosts a redirect leads to
    /// (the very same config when there is no certificate).
    pub(crate) foreign: Arc<ClientConfig>,
    /// The name to verify instead of the URL's host (`tls.server_name`).
    pub(crate) server_name: Option<ServerName<'static>>,
}

/// The client TLS setup of `config`: `tls_verify`, the `tls` table (`ca`, `cert`/`key`,
/// `server_name`, `min_version`) and `extra_ca` (roots added to the system's: the HTTP
/// client's `ca_file`), offering `alpn`.
///
/// `tls.ca` is read even without `tls_verify`, so a wrong path is found when the config
/// is loaded; a file that cannot be read is a config error naming the key and the file.
pub(crate) fn client_setup(
    config: &health_types::HealthCheckConfig,
    alpn: &[&[u8]],
    extra_ca: Option<&std::path::Path>,
) -> Result<ClientSetup, health_types::ConfigError> {
    use health_types::{
        ConfigError, TlsVersion,
        tls::{ClientAuth, Trust, client_config_from, load_roots, server_name, system_roots},
    };

    let file_error = |key: &'static str, path: &std::path::Path| {
        let value = format!("{:?}", path.display().to_string());
        move |reason: health_types::tls::TlsError| ConfigError::Invalid {
            key,
            value,
            reason: reason.to_string(),
        }
    };
    let options = &config.tls;
    options.validate()?;
    let own_roots = match &options.ca {
        Some(path) => Some(load_roots(path).map_err(file_error("tls.ca", path))?),
        None => None,
    };
    let trust = match (own_roots, extra_ca, config.tls_verify) {
        (_, _, false) => Trust::AnyCertificate,
        (Some(roots), _, true) => Trust::Roots(Arc::new(roots)),
        (None, None, true) => Trust::SystemRoots,
        (None, Some(path), true) => {
            let mut roots = (*system_roots()).clone();
            let extra = load_roots(path).map_err(file_error("ca_file", path))?;
            roots.roots.extend(extra.roots);
            Trust::Roots(Arc::new(roots))
        }
    };
    let auth = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            Some(
                ClientAuth::load(cert, key).map_err(|reason| ConfigError::Invalid {
                    key: "tls",
                    value: format!(
                        "{{ cert = {:?}, key = {:?} }}",
                        cert.display().to_string(),
                        key.display().to_string()
                    ),
                    reason: reason.to_string(),
                })?,
            )
        }
        _ => None,
    };
    let min_version = options.min_version.unwrap_or(TlsVersion::Tls12);
    let build = |auth| {
        client_config_from(&trust, alpn, auth, min_version)
            .map(Arc::new)
            .map_err(|reason| ConfigError::Invalid {
                key: "tls",
                value: format!("tls_verify = {}", config.tls_verify),
                reason: reason.to_string(),
            })
    };
    let has_auth = auth.is_some();
    let own = build(auth)?;
    let foreign = if has_auth { build(None)? } else { own.clone() };
    let server_name = match &options.server_name {
        Some(name) => Some(server_name(name).ok_or_else(|| ConfigError::Invalid {
            key: "tls.server_name",
            value: format!("{name:?}"),
            reason: "is not a DNS name or an IP address".to_owned(),
        })?),
        None => None,
    };
    Ok(ClientSetup {
        own,
        foreign,
        server_name,
    })
}

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
