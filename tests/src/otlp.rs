//! An OTLP receiver that keeps what it receives: OTLP/HTTP (protobuf
//! bodies) and OTLP/gRPC (in `otlp/grpc.rs`) on the same port, plain or
//! over TLS, gzip-compressed or not.
//!
//! [`OtlpReceiver::start`] serves `POST /v1/{traces,metrics,logs}` and the
//! collector's three gRPC `Export` calls on `127.0.0.1:0`, on a thread of
//! its own (so it keeps answering whatever the test's runtime does). Point
//! a process at it with
//! `OTEL_EXPORTER_OTLP_ENDPOINT=`[`endpoint()`](OtlpReceiver::endpoint) and
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` or `grpc`.
//! [`OtlpReceiver::start_tls`] serves the same over TLS (with the
//! configuration of a [`TestPki`](crate::pki::TestPki)); a handshake that
//! fails is kept in [`tls_failures`](OtlpReceiver::tls_failures).
//!
//! Every request says how its body came: its `content-encoding` (or
//! `grpc-encoding`) and whether the body was gzip indeed.

mod grpc;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtlpStatusCode;
use prost::Message as _;

/// An attribute value, as the tests compare them.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A floating-point number.
    Double(f64),
    /// Anything else (arrays, maps, bytes), in its debug form.
    Other(String),
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Int(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Double(x) => write!(f, "{x}"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// One span as received, ids in lower-case hex.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// The resource's attributes (`service.name`, ...).
    pub resource: BTreeMap<String, AttributeValue>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// The span's name, e.g. `process orders`.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// `INTERNAL`, `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER` or `UNSPECIFIED`.
    pub kind: &'static str,
    /// The span's attributes.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// `UNSET`, `OK` or `ERROR`.
    pub status: &'static str,
    /// The status message (set with `ERROR`).
    pub status_message: String,
    /// The names of the span's events (`exception`, ...).
    pub events: Vec<String>,
    /// The (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The attribute `key`, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes.get(key)
    }

    /// The string attribute `key`; panics, naming the span, when it is
    /// missing or not a string.
    pub fn str_attribute(&self, key: &str) -> &str {
        match self.attributes.get(key) {
            Some(AttributeValue::Str(s)) => s,
            other => panic!("{key} is {other:?}, not a string, on {self:#?}"),
        }
    }

    /// The integer attribute `key`; panics, naming the span, when it is
    /// missing or not an integer.
    pub fn int_attribute(&self, key: &str) -> i64 {
        match self.attributes.get(key) {
            Some(AttributeValue::Int(n)) => *n,
            other => panic!("{key} is {other:?}, not an integer, on {self:#?}"),
        }
    }

    /// The resource attribute `key` as text, if present.
    pub fn resource_attribute(&self, key: &str) -> Option<String> {
        self.resource.get(key).map(ToString::to_string)
    }

    /// `(topic, partition, offset)` of a `process {topic}` span of one
    /// record, from its messaging attributes; `None` for a batch span (no
    /// offset) or a span without them.
    pub fn record(&self) -> Option<(String, i32, i64)> {
        let topic = match self.attributes.get("messaging.destination.name") {
            Some(AttributeValue::Str(s)) => s.clone(),
            _ => return None,
        };
        let partition = match self.attributes.get("messaging.destination.partition.id") {
            Some(AttributeValue::Str(s)) => s.parse().ok()?,
            Some(AttributeValue::Int(n)) => i32::try_from(*n).ok()?,
            _ => return None,
        };
        let offset = match self.attributes.get("messaging.kafka.offset") {
            Some(AttributeValue::Int(n)) => *n,
            _ => return None,
        };
        Some((topic, partition, offset))
    }
}

/// One log record as received, ids in lower-case hex.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedLog {
    /// The resource's attributes (`service.name`, ...).
    pub resource: BTreeMap<String, AttributeValue>,
    /// The body: the event's message.
    pub body: String,
    /// `INFO`, `WARN`, ...
    pub severity_text: String,
    /// The trace id, when the record was logged inside a span.
    pub trace_id: Option<String>,
    /// The span id, when the record was logged inside a span.
    pub span_id: Option<String>,
    /// The record's attributes (the event's fields).
    pub attributes: BTreeMap<String, AttributeValue>,
}

/// One HTTP request the receiver answered (or, hanging, took and left
/// unanswered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path, e.g. `/v1/traces`.
    pub path: String,
    /// The `content-type` header ("" without one).
    pub content_type: String,
    /// The `content-encoding` header, or for gRPC `grpc-encoding` ("" without).
    pub content_encoding: String,
    /// Whether the body (gRPC: the message) was gzip-compressed.
    pub gzipped: bool,
    /// The status answered; 0 for a request a hanging receiver holds.
    pub status: u16,
    /// Why the body was rejected, for a status other than 200.
    pub error: Option<String>,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    metric_names: Vec<String>,
    logs: Vec<ReceivedLog>,
    requests: Vec<ReceivedRequest>,
    tls_failures: Vec<String>,
}

/// What an export carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

/// What the receiver does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Decode, keep, answer 200.
    Answer,
    /// Read the request and never answer (until the receiver is dropped):
    /// a collector that hangs.
    Hang,
}

/// An OTLP/HTTP receiver on 127.0.0.1; stops when dropped.
pub struct OtlpReceiver {
    port: u16,
    tls: bool,
    received: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("port", &self.port)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Starts a receiver that decodes and keeps every export.
    pub fn start() -> Self {
        Self::with(Behaviour::Answer, None)
    }

    /// Starts a receiver like [`start`](Self::start), over TLS with
    /// `config` (see [`TestPki::server_config`](crate::pki::TestPki::server_config)).
    pub fn start_tls(config: Arc<rustls::ServerConfig>) -> Self {
        Self::with(Behaviour::Answer, Some(config))
    }

    /// Starts a "collector" that accepts connections and requests but never
    /// answers them: an exporter's flush waits until its timeout.
    pub fn hanging() -> Self {
        Self::with(Behaviour::Hang, None)
    }

    fn with(behaviour: Behaviour, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the OTLP receiver");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("a bound address").port();
        let received = Arc::new(Mutex::new(Received::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let state = Arc::clone(&received);
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let uses_tls = acceptor.is_some();
        let thread = std::thread::Builder::new()
            .name(format!("otlp-receiver-{port}"))
            .spawn(move || serve(listener, state, behaviour, acceptor, stopped))
            .expect("spawning the OTLP receiver thread");
        Self {
            port,
            tls: uses_tls,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` over TLS), for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn lock(&self) -> MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// The spans named `name` received so far.
    pub fn spans_named(&self, name: &str) -> Vec<ReceivedSpan> {
        self.lock()
            .spans
            .iter()
            .filter(|span| span.name == name)
            .cloned()
            .collect()
    }

    /// How many spans named `name` arrived so far.
    pub fn count_named(&self, name: &str) -> usize {
        self.lock()
            .spans
            .iter()
            .filter(|span| span.name == name)
            .count()
    }

    /// The names of the metrics received so far (one entry per metric per
    /// export).
    pub fn metric_names(&self) -> Vec<String> {
        self.lock().metric_names.clone()
    }

    /// Every log record received so far, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.lock().logs.clone()
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.lock().requests.clone()
    }

    /// Why each failed TLS handshake failed, so far (e.g. a client that
    /// does not trust the server's CA, or no client certificate).
    pub fn tls_failures(&self) -> Vec<String> {
        self.lock().tls_failures.clone()
    }

    /// What arrived, in short: for failure messages.
    pub fn summary(&self) -> String {
        let received = self.lock();
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for span in &received.spans {
            *names.entry(&span.name).or_default() += 1;
        }
        let rejected: Vec<_> = received
            .requests
            .iter()
            .filter(|r| r.status != 200)
            .collect();
        format!(
            "the OTLP receiver at {} got {} requests ({} rejected: {rejected:?}), spans by name: \
             {names:?}, {} log records, {} failed TLS handshakes: {:?}",
            self.endpoint(),
            received.requests.len(),
            rejected.len(),
            received.logs.len(),
            received.tls_failures.len(),
            received.tls_failures,
        )
    }

    /// Waits until `condition` holds for the spans received so far, then
    /// returns them. Panics after `limit` with `what`, a summary of what
    /// arrived, and `diagnostics()` (e.g. the exporting process's output).
    pub async fn wait_for_spans(
        &self,
        limit: Duration,
        what: &str,
        condition: impl FnMut(&[ReceivedSpan]) -> bool,
        diagnostics: impl FnOnce() -> String,
    ) -> Vec<ReceivedSpan> {
        self.wait_for_kept(limit, what, |r| &r.spans, condition, diagnostics)
            .await
    }

    /// Waits until `condition` holds for the log records received so far,
    /// then returns them; panics like [`wait_for_spans`](Self::wait_for_spans).
    pub async fn wait_for_logs(
        &self,
        limit: Duration,
        what: &str,
        condition: impl FnMut(&[ReceivedLog]) -> bool,
        diagnostics: impl FnOnce() -> String,
    ) -> Vec<ReceivedLog> {
        self.wait_for_kept(limit, what, |r| &r.logs, condition, diagnostics)
            .await
    }

    /// Waits until `condition` holds for what `kept` picks of what arrived.
    async fn wait_for_kept<T: Clone>(
        &self,
        limit: Duration,
        what: &str,
        kept: impl Fn(&Received) -> &Vec<T>,
        mut condition: impl FnMut(&[T]) -> bool,
        diagnostics: impl FnOnce() -> String,
    ) -> Vec<T> {
        crate::wait_for(
            limit,
            what,
            || {
                let received = self.lock();
                let kept = kept(&received);
                condition(kept).then(|| kept.clone())
            },
            || format!("{}\n{}", self.summary(), diagnostics()),
        )
        .await
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: std::net::TcpListener,
    received: Arc<Mutex<Received>>,
    behaviour: Behaviour,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the OTLP receiver");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        loop {
            let stream = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let received = Arc::clone(&received);
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = {
                    let received = Arc::clone(&received);
                    service_fn(move |request| {
                        let received = Arc::clone(&received);
                        async move {
                            Ok::<_, Infallible>(answer(request, &received, behaviour).await)
                        }
                    })
                };
                // HTTP/1.1 for OTLP/HTTP, HTTP/2 (prior knowledge, or ALPN
                // over TLS) for gRPC.
                let http = auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Err(err) => lock(&received).tls_failures.push(err.to_string()),
                    },
                }
            });
        }
    });
    // Dropping the runtime cancels the connections still open (a hanging
    // request among them).
}

fn lock(received: &Mutex<Received>) -> MutexGuard<'_, Received> {
    received.lock().unwrap_or_else(|e| e.into_inner())
}

/// A response's body: one message (OTLP/HTTP), or a gRPC message and
/// trailers.
type AnswerBody = BoxBody<Bytes, Infallible>;

async fn answer(
    request: Request<Incoming>,
    received: &Mutex<Received>,
    behaviour: Behaviour,
) -> Response<AnswerBody> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header("content-type");
    let grpc = content_type.starts_with("application/grpc");
    let content_encoding = header(if grpc {
        "grpc-encoding"
    } else {
        "content-encoding"
    });
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return respond(StatusCode::BAD_REQUEST, Bytes::new()),
    };
    let mut seen = ReceivedRequest {
        method,
        path,
        content_type,
        content_encoding,
        gzipped: false,
        status: 0,
        error: None,
    };
    if behaviour == Behaviour::Hang {
        // Seen, never answered: the exporter now waits for its timeout.
        lock(received).requests.push(seen);
        std::future::pending::<()>().await;
        unreachable!("a hanging receiver never answers");
    }
    let response = if grpc {
        answer_grpc(&mut seen, &body, received)
    } else {
        answer_http(&mut seen, &body, received)
    };
    lock(received).requests.push(seen);
    response
}

/// Answers a gRPC call (HTTP status 200; the outcome is in the trailers).
fn answer_grpc(
    seen: &mut ReceivedRequest,
    body: &[u8],
    received: &Mutex<Received>,
) -> Response<AnswerBody> {
    let result = match grpc::signal_of(&seen.path) {
        None => Err(format!("no gRPC method {}", seen.path)),
        Some(signal) => {
            grpc::unframe(body, &seen.content_encoding).and_then(|(message, gzipped)| {
                seen.gzipped = gzipped;
                store(signal, &message, received)
            })
        }
    };
    seen.status = 200;
    seen.error = result.as_ref().err().cloned();
    let mut response = Response::new(grpc::answer(result).boxed());
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Answers an OTLP/HTTP request.
fn answer_http(
    seen: &mut ReceivedRequest,
    body: &[u8],
    received: &Mutex<Received>,
) -> Response<AnswerBody> {
    let (status, answer, error) = match decode_http(seen, body, received) {
        Ok(answer) => (StatusCode::OK, Bytes::from(answer), None),
        Err((status, error)) => (status, Bytes::new(), Some(error)),
    };
    seen.status = status.as_u16();
    seen.error = error;
    respond(status, answer)
}

fn decode_http(
    seen: &mut ReceivedRequest,
    body: &[u8],
    received: &Mutex<Received>,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let signal = match seen.path.as_str() {
        "/v1/traces" => Signal::Traces,
        "/v1/metrics" => Signal::Metrics,
        "/v1/logs" => Signal::Logs,
        path if path.starts_with("/v1/") => {
            // Profiles and the like: accepted and ignored.
            return Ok(Vec::new());
        }
        _ => return Err((StatusCode::NOT_FOUND, "not under /v1/".into())),
    };
    if seen.method != "POST" {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{}, not POST", seen.method),
        ));
    }
    let unsupported = |why: String| (StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
    let body = match seen.content_encoding.as_str() {
        "" | "identity" => body.to_vec(),
        "gzip" => {
            seen.gzipped = true;
            gunzip(body).map_err(|err| (StatusCode::BAD_REQUEST, err))?
        }
        other => {
            return Err(unsupported(format!(
                "content-encoding {other} is not supported"
            )))
        }
    };
    if seen.content_type != "application/x-protobuf" {
        return Err(unsupported(format!(
            "content-type {:?}, not application/x-protobuf",
            seen.content_type
        )));
    }
    store(signal, &body, received).map_err(|err| (StatusCode::BAD_REQUEST, err))
}

/// `body` un-gzipped, or why it is not gzip.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|err| format!("the body is not gzip: {err}"))?;
    Ok(out)
}

/// Decodes one export of `signal` and keeps what it carries; the encoded
/// (empty) response.
fn store(signal: Signal, message: &[u8], received: &Mutex<Received>) -> Result<Vec<u8>, String> {
    match signal {
        Signal::Traces => {
            let request = ExportTraceServiceRequest::decode(message)
                .map_err(|err| format!("not an ExportTraceServiceRequest: {err}"))?;
            lock(received).spans.extend(flatten_spans(request));
            Ok(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Signal::Metrics => {
            let request = ExportMetricsServiceRequest::decode(message)
                .map_err(|err| format!("not an ExportMetricsServiceRequest: {err}"))?;
            let names = request
                .resource_metrics
                .into_iter()
                .flat_map(|r| r.scope_metrics)
                .flat_map(|s| s.metrics)
                .map(|m| m.name);
            lock(received).metric_names.extend(names);
            Ok(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        Signal::Logs => {
            let request = ExportLogsServiceRequest::decode(message)
                .map_err(|err| format!("not an ExportLogsServiceRequest: {err}"))?;
            lock(received).logs.extend(flatten_logs(request));
            Ok(ExportLogsServiceResponse::default().encode_to_vec())
        }
    }
}

fn flatten_logs(request: ExportLogsServiceRequest) -> Vec<ReceivedLog> {
    let mut out = Vec::new();
    for resource_logs in request.resource_logs {
        let resource = attributes(
            resource_logs
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        for record in resource_logs
            .scope_logs
            .into_iter()
            .flat_map(|s| s.log_records)
        {
            let id = |bytes: &[u8]| (bytes.iter().any(|b| *b != 0)).then(|| hex(bytes));
            out.push(ReceivedLog {
                resource: resource.clone(),
                body: value(record.body).to_string(),
                severity_text: record.severity_text,
                trace_id: id(&record.trace_id),
                span_id: id(&record.span_id),
                attributes: attributes(record.attributes),
            });
        }
    }
    out
}

fn respond(status: StatusCode, body: Bytes) -> Response<AnswerBody> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}

fn flatten_spans(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = attributes(
            resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                let kind = SpanKind::try_from(span.kind)
                    .map(|kind| match kind {
                        SpanKind::Unspecified => "UNSPECIFIED",
                        SpanKind::Internal => "INTERNAL",
                        SpanKind::Server => "SERVER",
                        SpanKind::Client => "CLIENT",
                        SpanKind::Producer => "PRODUCER",
                        SpanKind::Consumer => "CONSUMER",
                    })
                    .unwrap_or("UNKNOWN");
                let (status, status_message) = match span.status {
                    Some(status) => (
                        match OtlpStatusCode::try_from(status.code) {
                            Ok(OtlpStatusCode::Ok) => "OK",
                            Ok(OtlpStatusCode::Error) => "ERROR",
                            _ => "UNSET",
                        },
                        status.message,
                    ),
                    None => ("UNSET", String::new()),
                };
                out.push(ReceivedSpan {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty()
                        && span.parent_span_id.iter().any(|b| *b != 0))
                    .then(|| hex(&span.parent_span_id)),
                    kind,
                    attributes: attributes(span.attributes),
                    status,
                    status_message,
                    events: span.events.into_iter().map(|e| e.name).collect(),
                    links: span
                        .links
                        .into_iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    out
}

fn attributes(pairs: Vec<KeyValue>) -> BTreeMap<String, AttributeValue> {
    pairs
        .into_iter()
        .map(|kv| (kv.key, value(kv.value)))
        .collect()
}

fn value(value: Option<AnyValue>) -> AttributeValue {
    match value.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => AttributeValue::Str(s),
        Some(any_value::Value::IntValue(n)) => AttributeValue::Int(n),
        Some(any_value::Value::BoolValue(b)) => AttributeValue::Bool(b),
        Some(any_value::Value::DoubleValue(x)) => AttributeValue::Double(x),
        other => AttributeValue::Other(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
