//! `--health-addr` and `--metrics-addr`: `/livez`, `/readyz` and `/metrics`
//! over HTTP/1.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
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

/// A response before it becomes HTTP: status, content type, body.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: String,
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Endpoints {
    fn reply(&self, method: &Method, path: &str) -> Reply {
        let text = |status, body: String| Reply {
            status,
            content_type: TEXT,
            body,
        };
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        }
        match (path, &self.health, &self.metrics) {
            ("/livez", Some(health), _) => probe(health.liveness()),
            ("/readyz", Some(_), _) if self.shutdown.is_triggered() => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down: finishing records in flight, then committing\n".into(),
            ),
            ("/readyz", Some(health), _) => probe(health.readiness()),
            ("/metrics", _, Some(metrics)) => Reply {
                status: StatusCode::OK,
                content_type: PROMETHEUS,
                body: metrics.render(),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                format!("no such endpoint; this address serves {}\n", self.paths()),
            ),
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
    Reply {
        status: if probe.is_healthy() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        content_type: TEXT,
        body: probe.report().to_owned(),
    }
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

fn into_response(reply: Reply, head: bool) -> Response<Full<Bytes>> {
    let body = if head { String::new() } else { reply.body };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = reply.status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(health: bool) -> Endpoints {
        Endpoints {
            health: health.then(Health::default),
            metrics: None,
            shutdown: Shutdown::new(),
        }
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
    fn not_ready_while_draining() {
        let health = endpoints(true);
        health.shutdown.trigger();
        let ready = health.reply(&Method::GET, "/readyz");
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(ready.body.starts_with("shutting down"), "{ready:?}");
        assert_eq!(health.reply(&Method::GET, "/livez").status, StatusCode::OK);
    }
}
