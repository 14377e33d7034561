//! Kafka over TLS for tests: a certificate authority made for one test, and
//! a TLS terminator in front of the mock cluster.
//!
//! librdkafka's mock cluster listens in plaintext only. [`TlsProxy`] accepts
//! TLS connections with rustls (another TLS stack than the client's
//! OpenSSL, so neither side can agree with itself), then forwards the
//! decrypted bytes to the mock broker. With the mock advertising the
//! proxy's address
//! ([`EmbeddedBroker::advertise_broker`](kafka_handler::testing::EmbeddedBroker::advertise_broker))
//! every connection a client makes after bootstrapping goes through it too.
//! The proxy counts completed handshakes and keeps why each failed one
//! failed, so a test can tell a TLS client from a plaintext one, and a
//! verifying client from one that is not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::sasl::SaslUser;

/// A certificate authority, a server certificate it signed for
/// `127.0.0.1` and `localhost`, and a client certificate it signed, as PEM
/// files in a directory of their own (removed on drop).
pub struct TestPki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// A new CA named `name`, with its certificates.
    pub fn generate(name: &str) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kh-pki-{name}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating the PKI directory");

        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<String>, common_name: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(names).expect("certificate parameters");
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.extended_key_usages = vec![usage];
            let cert = params
                .signed_by(&key, &issuer)
                .expect("a signed certificate");
            (cert, key)
        };
        let (server, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "broker",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(
            Vec::new(),
            "orders-consumer",
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let write = |file: &str, pem: String| {
            std::fs::write(dir.join(file), pem).expect("writing a PEM file");
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

    /// The CA certificate, for `ssl.ca.location`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The client certificate, for `ssl.certificate.location`.
    pub fn client_certificate_file(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client certificate's private key, for `ssl.key.location`.
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// The directory the files are in (for more files of the test's own).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn server_config(&self, verify_clients: bool) -> ServerConfig {
        // ring rather than rustls' default aws-lc-rs, whose C build is far
        // longer; ring's lack of post-quantum key exchange (the deprecation)
        // does not matter to a test terminator.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if verify_clients {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.clone()).expect("the CA as a root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder
            .with_single_cert(
                self.server_chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
            )
            .expect("the server certificate and key")
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the proxy saw.
#[derive(Default)]
struct Seen {
    handshakes: AtomicUsize,
    failed: Mutex<Vec<String>>,
    authenticated: AtomicUsize,
}

/// A TLS terminator on 127.0.0.1 in front of one plaintext broker, on a
/// runtime of its own (stopped on drop).
pub struct TlsProxy {
    addr: SocketAddr,
    seen: Arc<Seen>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TlsProxy {
    /// TLS with the server certificate of `pki`, no client certificates.
    pub fn start(upstream: &str, pki: &TestPki) -> Self {
        Self::with_config(upstream, pki.server_config(false), None)
    }

    /// Mutual TLS: clients must present a certificate `pki`'s CA signed.
    pub fn start_mutual(upstream: &str, pki: &TestPki) -> Self {
        Self::with_config(upstream, pki.server_config(true), None)
    }

    /// TLS, then SASL: the proxy answers the client's SaslHandshake and
    /// SaslAuthenticate requests itself (the mock cluster has no SASL) and
    /// accepts only `user`; everything else goes to the broker.
    pub fn start_sasl(upstream: &str, pki: &TestPki, user: SaslUser) -> Self {
        Self::with_config(upstream, pki.server_config(false), Some(user))
    }

    fn with_config(upstream: &str, config: ServerConfig, sasl: Option<SaslUser>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the proxy's address");
        let seen = Arc::new(Seen::default());
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let upstream = upstream.to_owned();
        let sasl = sasl.map(Arc::new);
        let accepting = Arc::clone(&seen);
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                let sasl = sasl.clone();
                let seen = Arc::clone(&accepting);
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(client).await {
                        Ok(tls) => tls,
                        Err(err) => {
                            seen.failed.lock().unwrap().push(err.to_string());
                            return;
                        }
                    };
                    seen.handshakes.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut broker) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    if let Some(user) = sasl {
                        match crate::sasl::authenticate(&mut tls, &mut broker, &user).await {
                            Ok(true) => {
                                seen.authenticated.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(false) | Err(_) => return,
                        }
                    }
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        });
        Self {
            addr,
            seen,
            runtime: Some(runtime),
        }
    }

    /// `127.0.0.1:port`, for `--brokers`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// TLS handshakes that completed.
    pub fn handshakes(&self) -> usize {
        self.seen.handshakes.load(Ordering::SeqCst)
    }

    /// Why each failed handshake failed, in rustls' words.
    pub fn failed_handshakes(&self) -> Vec<String> {
        self.seen.failed.lock().unwrap().clone()
    }

    /// Connections that passed SASL.
    pub fn authenticated(&self) -> usize {
        self.seen.authenticated.load(Ordering::SeqCst)
    }

    /// What it saw, for a failing test's message.
    pub fn dump(&self) -> String {
        format!(
            "TLS proxy {}: {} handshakes, {} authenticated, failed: {:?}",
            self.addr,
            self.handshakes(),
            self.authenticated(),
            self.failed_handshakes()
        )
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
