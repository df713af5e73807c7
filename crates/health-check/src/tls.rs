//! TLS client setup on rustls with the ring provider, and TLS failures classified.
//!
//! Every `ClientConfig` is built with an explicit ring [`CryptoProvider`], so the crate
//! never depends on a process-wide default provider (and never pulls in aws-lc-rs).

use std::{
    io,
    path::Path,
    sync::{Arc, OnceLock},
};

use health_types::CheckKind;
use tokio::net::TcpStream;
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{
        self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    },
};

use crate::failure::{Failure, classify_io};

/// The ring provider every config of this crate uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which server certificates a client accepts.
#[derive(Clone, Debug)]
pub(crate) enum Trust {
    /// Any certificate (`tls_verify = false`); signatures are still checked.
    #[cfg_attr(
        not(feature = "http"),
        allow(dead_code, reason = "only the HTTP probes skip verification")
    )]
    AnyCertificate,
    /// Certificates chaining to the system's roots or the webpki (Mozilla) roots.
    SystemRoots,
    /// Certificates chaining to these roots only.
    Roots(Arc<RootCertStore>),
}

/// A client certificate chain and its key, for mutual TLS.
#[derive(Debug)]
pub(crate) struct ClientAuth {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

/// Builds a client config on the ring provider.
///
/// `alpn` lists the protocols offered, most preferred first.
pub(crate) fn client_config(
    trust: &Trust,
    alpn: &[&[u8]],
    auth: Option<ClientAuth>,
) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?;
    let builder = match trust {
        Trust::AnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))),
        Trust::SystemRoots => builder.with_root_certificates(system_roots()),
        Trust::Roots(roots) => builder.with_root_certificates(roots.clone()),
    };
    let mut config = match auth {
        Some(ClientAuth { chain, key }) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|err| format!("client certificate: {err}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The system's roots plus the webpki roots, loaded once per process.
pub(crate) fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let native = rustls_native_certs::load_native_certs();
            for err in &native.errors {
                tracing::debug!(error = %err, "skipping unreadable system certificates");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "loaded system root certificates");
            Arc::new(roots)
        })
        .clone()
}

/// Reads every certificate of a PEM file.
pub(crate) fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem =
        std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{}: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// Reads a CA file (PEM) into a root store.
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots
            .add(cert)
            .map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok(roots)
}

/// Reads the first private key of a PEM file.
pub(crate) fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem =
        std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| format!("{}: {err}", path.display()))
}

/// Runs a TLS handshake over `tcp` for `host` (a name or a literal address).
pub(crate) async fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Failure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_owned()).map_err(|_| {
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

/// Classifies an I/O error from a TLS stream: rustls errors (bad certificate, protocol
/// mismatch) are kind `tls`; socket errors keep their own kind.
pub(crate) fn classify_tls(err: &io::Error) -> Failure {
    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Failure::target(CheckKind::Tls, format!("tls: {tls}"));
    }
    classify_io(err)
}

/// Accepts any server certificate, as `tls_verify = false` asks; handshake signatures are
/// still verified, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_for_every_trust() {
        for trust in [
            Trust::AnyCertificate,
            Trust::SystemRoots,
            Trust::Roots(Arc::new(RootCertStore::empty())),
        ] {
            let config = client_config(&trust, &[b"h2", b"http/1.1"], None).unwrap();
            assert_eq!(
                config.alpn_protocols,
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            );
        }
    }

    #[test]
    fn rustls_errors_are_tls_failures() {
        let err = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let failure = classify_tls(&err);
        assert_eq!(failure.kind, CheckKind::Tls);
        assert!(failure.detail.starts_with("tls: "), "{}", failure.detail);
    }

    #[test]
    fn missing_files_are_reported_with_their_path() {
        let err = load_certificates(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
