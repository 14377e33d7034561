//! `--health-addr` and `--metrics-addr`: `/livez`, `/readyz` and `/metrics`
//! over HTTP/1.1. Each answers GET and HEAD (GET's headers, no body);
//! another method is `405 Method Not Allowed` with `Allow: GET, HEAD`, and a
//! path the address does not serve is `404` whatever the method.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::prometheus::PrometheusText;
use crate::{Health, Shutdown};

/// What one listener serves.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    /// `/livez` and `/readyz`.
    pub(crate) health: Option<Health>,
    /// `/metrics`.
    pub(crate) metrics: Option<PrometheusText>,
    /// Once triggered, `/readyz` answers 503: the consumer is draining.
    pub(crate) shutdown: Shutdown,
}

/// A response before it becomes HTTP: status, content type, body, and the
/// `Allow` header of a 405.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The methods every endpoint answers (RFC 9110's `Allow`).
const ALLOWED: &str = "GET, HEAD";

impl Reply {
    fn text(status: StatusCode, body: String) -> Self {
        Self {
            status,
            content_type: TEXT,
            body,
            allow: None,
        }
    }
}

/// What a path names on one address.
enum Endpoint<'a> {
    Livez(&'a Health),
    Readyz(&'a Health),
    Metrics(&'a PrometheusText),
}

impl Endpoints {
    /// The answer to `method` on `path`: 404 for a path this address does
    /// not serve, whatever the method; 405 with `Allow: GET, HEAD` for
    /// another method on one it serves; else the endpoint's answer (HEAD
    /// answers as GET, [`into_response`] leaves out the body).
    fn reply(&self, method: &Method, path: &str) -> Reply {
        let Some(endpoint) = self.endpoint(path) else {
            return Reply::text(
                StatusCode::NOT_FOUND,
                format!("no such endpoint; this address serves {}\n", self.paths()),
            );
        };
        if method != Method::GET && method != Method::HEAD {
            return Reply {
                allow: Some(ALLOWED),
                ..Reply::text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{path} answers {ALLOWED}\n"),
                )
            };
        }
        match endpoint {
            Endpoint::Livez(health) => probe(health.liveness()),
            Endpoint::Readyz(_) if self.shutdown.is_triggered() => Reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down: finishing records in flight, then committing\n".into(),
            ),
            Endpoint::Readyz(health) => probe(health.readiness()),
            Endpoint::Metrics(metrics) => Reply {
                content_type: PROMETHEUS,
                ..Reply::text(StatusCode::OK, metrics.render())
            },
        }
    }

    /// What `path` names on this address, if it serves it.
    fn endpoint(&self, path: &str) -> Option<Endpoint<'_>> {
        match path {
            "/livez" => self.health.as_ref().map(Endpoint::Livez),
            "/readyz" => self.health.as_ref().map(Endpoint::Readyz),
            "/metrics" => self.metrics.as_ref().map(Endpoint::Metrics),
            _ => None,
        }
    }

    /// The paths served, for the log line and the 404 body.
    pub(crate) fn paths(&self) -> String {
        let mut paths = Vec::new();
        if self.health.is_some() {
            paths.extend(["/livez", "/readyz"]);
        }
        if self.metrics.is_some() {
            paths.push("/metrics");
        }
        paths.join(", ")
    }
}

fn probe(probe: crate::Probe) -> Reply {
    let status = if probe.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Reply::text(status, probe.report().to_owned())
}

/// Binds `addr`; the error names the flag to change.
pub(crate) async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot listen on {addr} for {flag}: {err} (choose another {flag})"))
}

/// Serves `endpoints` on `listener` until the runtime stops, one task per
/// connection.
pub(crate) fn serve(listener: TcpListener, endpoints: Endpoints) {
    let endpoints = Arc::new(endpoints);
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(target: "kafka_handler", error = %err, "accepting an HTTP connection failed");
                    continue;
                }
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let reply = endpoints.reply(request.method(), request.uri().path());
                    let head = request.method() == Method::HEAD;
                    async move { Ok::<_, Infallible>(into_response(reply, head)) }
                });
                // A client that goes away mid-request is not worth a log line.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// `reply` as HTTP. The answer to a HEAD request has GET's headers,
/// `Content-Length` included, and no body.
fn into_response(reply: Reply, head: bool) -> Response<Full<Bytes>> {
    let length = reply.body.len();
    let body = if head { String::new() } else { reply.body };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if head {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    if let Some(allow) = reply.allow {
        headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    fn endpoints(health: bool) -> Endpoints {
        Endpoints {
            health: health.then(Health::default),
            metrics: None,
            shutdown: Shutdown::new(),
        }
    }

    /// Health and metrics on one address.
    fn both() -> Endpoints {
        Endpoints {
            metrics: Some(PrometheusText::new()),
            ..endpoints(true)
        }
    }

    const KNOWN: [&str; 3] = ["/livez", "/readyz", "/metrics"];

    /// Methods other than GET and HEAD, an extension method among them.
    fn other_methods() -> Vec<Method> {
        let mut methods = vec![
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
        ];
        methods.push(Method::from_bytes(b"PURGE").expect("a method"));
        methods
    }

    #[test]
    fn routes() {
        let health = endpoints(true);
        let live = health.reply(&Method::GET, "/livez");
        assert_eq!(live.status, StatusCode::OK, "{live:?}");
        let ready = health.reply(&Method::GET, "/readyz");
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
        let missing = health.reply(&Method::GET, "/metrics");
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.body.contains("/livez, /readyz"), "{missing:?}");
        let post = health.reply(&Method::POST, "/livez");
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);

        let none = endpoints(false);
        assert_eq!(
            none.reply(&Method::GET, "/livez").status,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn unknown_paths_are_404_whatever_the_method() {
        let health = endpoints(true);
        let metrics = Endpoints {
            health: None,
            metrics: Some(PrometheusText::new()),
            shutdown: Shutdown::new(),
        };
        let mut methods = other_methods();
        methods.extend([Method::GET, Method::HEAD]);
        let cases = [
            (&health, "/metrics"),
            (&health, "/"),
            (&health, "/livez/"),
            (&health, "/LIVEZ"),
            (&health, "/nosuch"),
            (&metrics, "/livez"),
            (&metrics, "/readyz"),
            (&metrics, "/metrics/x"),
        ];
        for (endpoints, path) in cases {
            for method in &methods {
                let reply = endpoints.reply(method, path);
                assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
                assert_eq!(reply.allow, None, "{method} {path}");
                let response = into_response(reply, false);
                assert!(response.headers().get(ALLOW).is_none(), "{method} {path}");
            }
        }
    }

    #[test]
    fn other_methods_on_known_paths_are_405_with_allow() {
        let both = both();
        for path in KNOWN {
            for method in other_methods() {
                let reply = both.reply(&method, path);
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert!(reply.body.contains("GET, HEAD"), "{reply:?}");
                let response = into_response(reply, false);
                assert_eq!(
                    response.headers().get(ALLOW).map(HeaderValue::as_bytes),
                    Some(&b"GET, HEAD"[..]),
                    "{method} {path}"
                );
            }
        }
        // While draining too: the method is wrong before the probe is asked.
        both.shutdown.trigger();
        let post = both.reply(&Method::POST, "/readyz");
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED, "{post:?}");
    }

    #[test]
    fn head_answers_as_get_without_a_body() {
        let both = both();
        for path in KNOWN.into_iter().chain(["/nosuch"]) {
            let get = both.reply(&Method::GET, path);
            let head = both.reply(&Method::HEAD, path);
            assert_eq!(head, get, "{path}");
            let length = get.body.len().to_string();
            let get = into_response(get, false);
            let head = into_response(head, true);
            assert_eq!(head.status(), get.status(), "{path}");
            assert_eq!(
                head.headers().get(CONTENT_TYPE),
                get.headers().get(CONTENT_TYPE),
                "{path}"
            );
            assert_eq!(
                head.headers()
                    .get(CONTENT_LENGTH)
                    .map(HeaderValue::as_bytes),
                Some(length.as_bytes()),
                "{path}"
            );
            assert_eq!(head.body().size_hint().exact(), Some(0), "{path}");
            assert_eq!(
                get.body().size_hint().exact(),
                length.parse().ok(),
                "{path}"
            );
        }
    }

    #[test]
    fn not_ready_while_draining() {
        let health = endpoints(true);
        health.shutdown.trigger();
        let ready = health.reply(&Method::GET, "/readyz");
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(ready.body.starts_with("shutting down"), "{ready:?}");
        assert_eq!(health.reply(&Method::GET, "/livez").status, StatusCode::OK);
    }

    /// `method path` over a connection of its own, the raw answer.
    fn exchange(addr: SocketAddr, method: &str, path: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    }

    /// Through hyper, on a socket: the status lines, `Allow`, and HEAD's
    /// `Content-Length` without a body.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_over_http() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"), "--health-addr")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let endpoints = endpoints(true);
        let body = endpoints.reply(&Method::GET, "/livez").body;
        serve(listener, endpoints);
        let answers = tokio::task::spawn_blocking(move || {
            [
                ("GET", "/livez"),
                ("HEAD", "/livez"),
                ("DELETE", "/livez"),
                ("DELETE", "/nosuch"),
                ("HEAD", "/nosuch"),
            ]
            .map(|(method, path)| exchange(addr, method, path))
        })
        .await
        .expect("requests");
        let [get, head, delete, missing, head_missing] = &answers;
        let lower = |answer: &str| answer.to_ascii_lowercase();

        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.ends_with(&format!("\r\n\r\n{body}")), "{get}");
        assert!(
            lower(get).contains(&format!("content-length: {}\r\n", body.len())),
            "{get}"
        );

        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            lower(head).contains(&format!("content-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(head.ends_with("\r\n\r\n"), "no body: {head}");

        assert!(
            delete.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{delete}"
        );
        assert!(lower(delete).contains("allow: get, head\r\n"), "{delete}");

        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        assert!(!lower(missing).contains("allow:"), "{missing}");
        assert!(
            head_missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{head_missing}"
        );
        assert!(
            head_missing.ends_with("\r\n\r\n"),
            "no body: {head_missing}"
        );
    }
}
