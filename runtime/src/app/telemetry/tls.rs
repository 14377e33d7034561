//! TLS to the collector: one rustls client configuration, built from a
//! signal's `OTEL_EXPORTER_OTLP_*CERTIFICATE` / `*CLIENT_KEY` files, for
//! both protocols (reqwest for OTLP/HTTP, a hyper-rustls connector under
//! tonic for gRPC), so an `https://` endpoint is verified the same way
//! whichever protocol carries the exports.
//!
//! Without a CA file the system's roots verify the collector (what a SaaS
//! backend's public certificate needs); with one, only its certificates do
//! (a private CA), as the OTLP exporter specification and the other SDKs
//! read the variable. The files are read and checked when the binary
//! starts: a missing file, a file without a certificate, or a key that
//! does not fit the certificate is a configuration error naming the
//! variable, not a failed export later.

use std::io::{ErrorKind, Read as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::target::{PemFile, TlsFiles};

/// The client configuration for `files`, without ALPN (the transport
/// sets its own).
pub(super) fn client_config(files: &TlsFiles) -> Result<ClientConfig, String> {
    let roots = match &files.certificate {
        Some(file) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(file)? {
                roots.add(certificate).map_err(|err| {
                    format!("{}={}: not a CA certificate: {err}", file.var, file.path)
                })?;
            }
            roots
        }
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS for OTLP exports: {err}"))?
        .with_root_certificates(roots);
    match &files.client {
        None => Ok(builder.with_no_client_auth()),
        Some(client) => {
            let chain = certificates(&client.certificate)?;
            let key = private_key(&client.key)?;
            builder.with_client_auth_cert(chain, key).map_err(|err| {
                format!(
                    "{}={} with {}={}: {err}; give the private key of the client certificate",
                    client.certificate.var,
                    client.certificate.path,
                    client.key.var,
                    client.key.path
                )
            })
        }
    }
}

/// A configuration that trusts nothing, for a client that never speaks
/// TLS (an `http://` endpoint) but is built with one.
pub(super) fn unused_config() -> ClientConfig {
    ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth()
}

/// Installs ring as rustls's process-wide crypto provider, unless one is
/// installed already. reqwest is built with rustls but without a provider
/// of its own (so that no second crypto library is compiled in), and looks
/// for the process-wide one whenever any client is built: the OTLP
/// crate's, or one the application builds itself.
pub(super) fn install_process_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        #[allow(deprecated)] // See ring_provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The crypto provider: ring, not aws-lc-rs, because it builds with the C
/// compiler the build already needs and nothing more. rustls 0.23.48
/// deprecates it for lacking post-quantum key exchange, which telemetry
/// export can do without.
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in `file`: at least one.
fn certificates(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, String> {
    let unreadable = |err: rustls::pki_types::pem::Error| {
        format!("{}={}: {}", file.var, file.path, pem_problem(&err))
    };
    let certificates = CertificateDer::pem_file_iter(&file.path)
        .map_err(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    if certificates.is_empty() {
        return Err(format!(
            "{}={}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
            file.var, file.path
        ));
    }
    Ok(certificates)
}

/// The private key in `file` (PKCS #8, PKCS #1 or SEC1 PEM).
fn private_key(file: &PemFile) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(&file.path).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{}={}: no PEM private key (-----BEGIN PRIVATE KEY-----) in the file",
            file.var, file.path
        ),
        other => format!("{}={}: {}", file.var, file.path, pem_problem(&other)),
    })
}

/// What is wrong with a PEM file, in words.
fn pem_problem(err: &rustls::pki_types::pem::Error) -> String {
    match err {
        rustls::pki_types::pem::Error::Io(err) => format!("cannot read it: {err}"),
        other => format!("not a valid PEM file: {other:?}"),
    }
}

/// The system's root certificates (the files `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` name, else the distribution's bundle).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(String::new, |err| format!(" ({err})"));
        return Err(format!(
            "no system root certificates found to verify the https:// collector{why}; \
             install the ca-certificates package, or set OTEL_EXPORTER_OTLP_CERTIFICATE \
             to the collector's CA file"
        ));
    }
    Ok(roots)
}

/// Why a TLS session with `host` over `tcp` fails, if it does: the check
/// of the collector's certificate, or the collector's alert when it
/// refuses the client's (which, in TLS 1.3, comes after the client's side
/// of the handshake, so one read waits a second for it).
pub(super) fn handshake_problem(
    files: &TlsFiles,
    host: &str,
    mut tcp: TcpStream,
) -> Option<String> {
    let config = match client_config(files) {
        Ok(config) => config,
        Err(err) => return Some(err),
    };
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let mut session = ClientConnection::new(Arc::new(config), name).ok()?;
    let wait = Some(Duration::from_secs(1));
    let _ = tcp.set_read_timeout(wait).and(tcp.set_write_timeout(wait));
    let refused =
        |err: std::io::Error| (err.kind() == ErrorKind::InvalidData).then(|| format!("TLS: {err}"));
    if let Err(err) = session.complete_io(&mut tcp) {
        return refused(err);
    }
    rustls::Stream::new(&mut session, &mut tcp)
        .read(&mut [0; 1])
        .err()
        .and_then(refused)
}
