//! Test helpers shared by every crate's tests (feature `test-util`): a certificate
//! authority that issues loopback server and client certificates with rcgen.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
};

use crate::tls::provider;

/// A certificate and its key, DER and PEM.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain (the leaf only).
    pub chain: Vec<CertificateDer<'static>>,
    /// The key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The key, PEM.
    pub key_pem: String,
}

impl Identity {
    /// The private key, for rustls.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `<name>.pem` and `<name>-key.pem` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (
            write_file(dir, &format!("{name}.pem"), &self.cert_pem),
            write_file(dir, &format!("{name}-key.pem"), &self.key_pem),
        )
    }

    /// A TLS server config on the ring provider with this identity, offering `alpn`
    /// and requiring client certificates from `client_ca` when given.
    pub fn server_config(
        &self,
        alpn: &[&[u8]],
        client_ca: Option<RootCertStore>,
    ) -> Arc<ServerConfig> {
        let provider = provider();
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
            .with_single_cert(self.chain.clone(), self.key())
            .expect("the test certificate fits its key");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// The names every loopback certificate carries: `localhost`, `127.0.0.1`, `::1`.
fn loopback_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
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

/// A test certificate authority issuing server and client certificates.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("empty names are valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key generation works");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signing works"),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/name`; returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write_file(dir, name, &self.pem())
    }

    /// A root store holding only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .expect("the CA certificate parses");
        roots
    }

    /// A certificate for `names` with one extended key usage.
    pub fn issue(&self, names: Vec<String>, purpose: ExtendedKeyUsagePurpose) -> Identity {
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

    /// A client certificate (`client.test`).
    pub fn client(&self) -> Identity {
        self.issue(
            vec!["client.test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the temp dir is writable");
    path
}

pub use rcgen::ExtendedKeyUsagePurpose as KeyUsage;
