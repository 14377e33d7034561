//! Certificates made for one test: a CA, a server certificate for
//! `127.0.0.1` and `localhost`, and a client certificate, all signed by the
//! CA and written as PEM files into a directory of their own (removed on
//! drop), for the `OTEL_EXPORTER_OTLP_*CERTIFICATE` variables of a child
//! process; plus the rustls server configuration a receiver serves them
//! with.
//!
//! Two `TestPki`s share nothing: the CA file of one does not verify the
//! other's server, and the other's client certificate is unknown to it.
//! That is how a test gets a wrong CA or a stranger's client certificate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Whether a receiver asks for client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Plain TLS: any client.
    Off,
    /// Mutual TLS: a client certificate signed by the CA is required.
    Required,
}

/// A CA with a server and a client certificate, as files and as DER.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// Makes the certificates and writes `ca.pem`, `client.pem` and
    /// `client.key` into a fresh directory.
    pub fn new() -> Self {
        Self::named("kafka-handler")
    }

    /// As [`new`](Self::new), with a CA named after `name` (`{name} test
    /// CA`), which is what a client's verification error then names.
    pub fn named(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kafka-handler-pki-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating the certificates' directory");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a CA key"))
            .expect("a self-signed CA");

        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(names).expect("leaf parameters");
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("a leaf key");
            let certificate = params
                .signed_by(&key, &ca)
                .expect("a leaf signed by the CA");
            (certificate, key)
        };
        let (server, server_key) = leaf(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(
            vec!["otlp-client".to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).expect("writing a PEM file");
        };
        write("ca.pem", ca.pem());
        write("client.pem", client.pem());
        write("client.key", client_key.serialize_pem());
        Self {
            ca: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
            dir,
        }
    }

    /// The CA certificate (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The client certificate (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
    pub fn client_certificate_file(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client's private key (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server configuration with the server certificate, offering HTTP/2
    /// and HTTP/1.1 (ALPN), verifying client certificates against the CA
    /// when `client_auth` says so.
    pub fn server_config(&self, client_auth: ClientAuth) -> Arc<ServerConfig> {
        #[allow(deprecated)] // ring: see the runtime's telemetry/tls.rs.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("default protocol versions");
        let builder = match client_auth {
            ClientAuth::Off => builder.with_no_client_auth(),
            ClientAuth::Required => {
                let mut roots = RootCertStore::empty();
                roots.add(self.ca.clone()).expect("the CA as a root");
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("a client certificate verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = builder
            .with_single_cert(self.server_chain.clone(), key)
            .expect("the server certificate and key");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
