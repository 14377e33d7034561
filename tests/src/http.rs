//! A blocking HTTP client for the health and metrics endpoints, on
//! `reqwest` (which reads `Content-Length` and chunked bodies alike).
//!
//! The callers are synchronous polls inside async tests, and
//! `reqwest::blocking` refuses to run on a Tokio runtime's thread: each
//! request runs on a thread of its own.

use std::time::Duration;

use reqwest::Method;

/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A response: status code, headers (names lower-cased) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// `(name, value)` pairs, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET http://{addr}{path}` with a 5 s timeout. An error means no HTTP
/// response (refused, reset, timed out, malformed).
pub fn get(addr: &str, path: &str) -> Result<HttpResponse, String> {
    request(addr, "GET", path)
}

/// `{method} http://{addr}{path}`, without a request body, with a 5 s
/// timeout. The answer to HEAD has GET's headers and no body. An error
/// means no HTTP response.
pub fn request(addr: &str, method: &str, path: &str) -> Result<HttpResponse, String> {
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|err| format!("{method:?} is not an HTTP method: {err}"))?;
    let url = format!("http://{addr}{path}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| send(method.clone(), &url))
            .join()
            .unwrap_or_else(|_| Err(format!("{method} {url}: the request thread panicked")))
    })
}

/// Sends `method url` and reads the whole answer, off any async runtime.
fn send(method: Method, url: &str) -> Result<HttpResponse, String> {
    let failed = |err: reqwest::Error| format!("{method} {url}: {err}");
    // The workspace's reqwest has no crypto provider of its own (rustls on
    // ring is the process's, as the generated binaries install it); building
    // a client needs one even for plain http://.
    #[allow(deprecated)] // ring, as the runtime's TLS (app/telemetry/tls.rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Loopback addresses only: a proxy from the environment must not
    // answer for the process under test.
    let client = reqwest::blocking::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .map_err(failed)?;
    let response = client.request(method.clone(), url).send().map_err(failed)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let body = response.text().map_err(failed)?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
