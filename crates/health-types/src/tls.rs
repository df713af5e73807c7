//! The one TLS setup of the toolkit (feature `tls`): rustls on the ring provider, PEM
//! loading (CA, certificate chain, private key), client configs for every trust mode
//! and the server config of the daemon's agent.
//!
//! Every config is built with an explicit ring [`CryptoProvider`], so nothing depends on
//! a process-wide default provider (and aws-lc-rs never enters the build). This is the
//! only I/O health-types does: reading the PEM files a config names, once, when it is
//! loaded.

use std::{
    path::Path,
    sync::{Arc, OnceLock},
};

pub use rustls;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::WebPkiClientVerifier,
};

use crate::TlsVersion;

/// A TLS file or setting that could not be used; the message names the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl From<&str> for TlsError {
    fn from(reason: &str) -> Self {
        TlsError(reason.to_owned())
    }
}

impl TlsError {
    fn at(path: &Path, reason: impl std::fmt::Display) -> Self {
        TlsError(format!("{}: {reason}", path.display()))
    }
}

/// The ring provider every config of the toolkit uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which server certificates a client accepts.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Any certificate (`tls_verify = false`); handshake signatures are still checked,
    /// so the peer must hold the key of the certificate it shows.
    AnyCertificate,
    /// Certificates chaining to the system's roots or the webpki (Mozilla) roots.
    SystemRoots,
    /// Certificates chaining to the webpki (Mozilla) roots only: the same answer on
    /// every machine (the notifiers use it).
    WebpkiRoots,
    /// Certificates chaining to these roots only.
    Roots(Arc<RootCertStore>),
}

/// A client certificate chain and its key, for mutual TLS.
#[derive(Debug)]
pub struct ClientAuth {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl ClientAuth {
    /// Loads a chain and its key from PEM files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(ClientAuth {
            chain: load_certificates(cert)?,
            key: load_private_key(key)?,
        })
    }
}

/// A client config on the ring provider; `alpn` lists the protocols offered, most
/// preferred first. TLS 1.2 and 1.3 are accepted.
pub fn client_config(
    trust: &Trust,
    alpn: &[&[u8]],
    auth: Option<ClientAuth>,
) -> Result<ClientConfig, TlsError> {
    client_config_from(trust, alpn, auth, TlsVersion::Tls12)
}

/// A client config as [`client_config`] makes, accepting only `min_version` and later
/// (`tls.min_version`: 1.3 leaves TLS 1.2 out).
pub fn client_config_from(
    trust: &Trust,
    alpn: &[&[u8]],
    auth: Option<ClientAuth>,
    min_version: TlsVersion,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls12 => rustls::ALL_VERSIONS,
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|err| TlsError(err.to_string()))?;
    let builder = match trust {
        Trust::AnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))),
        Trust::SystemRoots => builder.with_root_certificates(system_roots()),
        Trust::WebpkiRoots => builder.with_root_certificates(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        Trust::Roots(roots) => builder.with_root_certificates(roots.clone()),
    };
    let mut config = match auth {
        Some(ClientAuth { chain, key }) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|err| TlsError(format!("client certificate: {err}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A server config for `cert` and `key` (PEM), requiring client certificates signed by
/// `client_ca` when given; offers `h2` and `http/1.1`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let chain = load_certificates(cert)?;
    let key = load_private_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError(err.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider)
                    .build()
                    .map_err(|err| TlsError::at(ca, err))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|err| TlsError::at(cert, err))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The system's roots plus the webpki roots, loaded once per process.
pub fn system_roots() -> Arc<RootCertStore> {
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

/// Reads every certificate of a PEM file; an empty file is an error.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem =
        std::fs::read(path).map_err(|err| TlsError::at(path, format!("cannot read: {err}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::at(path, err))?;
    if certs.is_empty() {
        return Err(TlsError::at(path, "no certificate found"));
    }
    Ok(certs)
}

/// Reads a CA file (PEM) into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots.add(cert).map_err(|err| TlsError::at(path, err))?;
    }
    Ok(roots)
}

/// Reads the first private key of a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem =
        std::fs::read(path).map_err(|err| TlsError::at(path, format!("cannot read: {err}")))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| TlsError::at(path, err))
}

/// The server name to verify for `host` (a name or a literal address, IPv6 brackets
/// allowed).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).ok()
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
            Trust::WebpkiRoots,
            Trust::Roots(Arc::new(RootCertStore::empty())),
        ] {
            let config = client_config(&trust, &[b"h2", b"http/1.1"], None).unwrap();
            assert_eq!(
                config.alpn_protocols,
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            );
        }
    }

    /// The `supported_versions` a config's ClientHello offers (TLS 1.3 as 0x0304, 1.2 as
    /// 0x0303), read from the hello it writes.
    fn offered_versions(config: ClientConfig) -> Vec<u16> {
        let name = rustls::pki_types::ServerName::try_from("example.test").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let u16_at = |at: usize| u16::from_be_bytes([hello[at], hello[at + 1]]);
        // Record header (5), handshake header (4), legacy version (2), random (32).
        let mut at = 5 + 4 + 2 + 32;
        at += 1 + usize::from(hello[at]); // session id
        at += 2 + usize::from(u16_at(at)); // cipher suites
        at += 1 + usize::from(hello[at]); // compression methods
        let end = at + 2 + usize::from(u16_at(at));
        at += 2;
        while at + 4 <= end {
            let (kind, len) = (u16_at(at), usize::from(u16_at(at + 2)));
            if kind == 0x002b {
                let list = &hello[at + 5..at + 5 + usize::from(hello[at + 4])];
                return list
                    .chunks(2)
                    .map(|v| u16::from_be_bytes([v[0], v[1]]))
                    .collect();
            }
            at += 4 + len;
        }
        panic!("the ClientHello has no supported_versions extension");
    }

    #[test]
    fn configs_offer_the_versions_from_their_minimum() {
        let config =
            client_config_from(&Trust::AnyCertificate, &[b"h2"], None, TlsVersion::Tls12).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(offered_versions(config), vec![0x0304, 0x0303]);
        let config =
            client_config_from(&Trust::AnyCertificate, &[b"h2"], None, TlsVersion::Tls13).unwrap();
        assert_eq!(offered_versions(config), vec![0x0304]);
    }

    #[test]
    fn missing_files_are_reported_with_their_path() {
        let err = load_certificates(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let err = load_private_key(Path::new("/nonexistent/key.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
    }
}
