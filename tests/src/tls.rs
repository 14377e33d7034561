//! Kafka over TLS for tests: a TLS terminator in front of the mock cluster,
//! serving the certificates of a [`TestPki`] made for the test.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::pki::{ClientAuth, TestPki};
use crate::sasl::SaslUser;

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
        Self::with_config(upstream, pki.server_config(ClientAuth::Off), None)
    }

    /// Mutual TLS: clients must present a certificate `pki`'s CA signed.
    pub fn start_mutual(upstream: &str, pki: &TestPki) -> Self {
        Self::with_config(upstream, pki.server_config(ClientAuth::Required), None)
    }

    /// TLS, then SASL: the proxy answers the client's SaslHandshake and
    /// SaslAuthenticate requests itself (the mock cluster has no SASL) and
    /// accepts only `user`; everything else goes to the broker.
    pub fn start_sasl(upstream: &str, pki: &TestPki, user: SaslUser) -> Self {
        Self::with_config(upstream, pki.server_config(ClientAuth::Off), Some(user))
    }

    fn with_config(upstream: &str, config: Arc<ServerConfig>, sasl: Option<SaslUser>) -> Self {
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
        let acceptor = TlsAcceptor::from(config);
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
