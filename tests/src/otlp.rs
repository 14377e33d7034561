//! An OTLP/HTTP receiver (protobuf bodies) that keeps what it receives.
//!
//! [`OtlpReceiver::start`] serves `POST /v1/traces` and `POST /v1/metrics`
//! on `127.0.0.1:0`, on a thread of its own (so it keeps answering whatever
//! the test's runtime does). Point a process at it with
//! `OTEL_EXPORTER_OTLP_ENDPOINT=`[`endpoint()`](OtlpReceiver::endpoint) and
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
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
    /// The status answered; 0 for a request a hanging receiver holds.
    pub status: u16,
    /// Why the body was rejected, for a status other than 200.
    pub error: Option<String>,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    metric_names: Vec<String>,
    requests: Vec<ReceivedRequest>,
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
    received: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Starts a receiver that decodes and keeps every export.
    pub fn start() -> Self {
        Self::with(Behaviour::Answer)
    }

    /// Starts a "collector" that accepts connections and requests but never
    /// answers them: an exporter's flush waits until its timeout.
    pub fn hanging() -> Self {
        Self::with(Behaviour::Hang)
    }

    fn with(behaviour: Behaviour) -> Self {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the OTLP receiver");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("a bound address").port();
        let received = Arc::new(Mutex::new(Received::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let state = Arc::clone(&received);
        let thread = std::thread::Builder::new()
            .name(format!("otlp-receiver-{port}"))
            .spawn(move || serve(listener, state, behaviour, stopped))
            .expect("spawning the OTLP receiver thread");
        Self {
            port,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.lock().requests.clone()
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
             {names:?}",
            self.endpoint(),
            received.requests.len(),
            rejected.len(),
        )
    }

    /// Waits until `condition` holds for the spans received so far, then
    /// returns them. Panics after `limit` with `what`, a summary of what
    /// arrived, and `diagnostics()` (e.g. the exporting process's output).
    pub async fn wait_for_spans(
        &self,
        limit: Duration,
        what: &str,
        mut condition: impl FnMut(&[ReceivedSpan]) -> bool,
        diagnostics: impl FnOnce() -> String,
    ) -> Vec<ReceivedSpan> {
        crate::wait_for(
            limit,
            what,
            || {
                let received = self.lock();
                condition(&received.spans).then(|| received.spans.clone())
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
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let received = Arc::clone(&received);
                    async move { Ok::<_, Infallible>(answer(request, &received, behaviour).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // Dropping the runtime cancels the connections still open (a hanging
    // request among them).
}

async fn answer(
    request: Request<Incoming>,
    received: &Mutex<Received>,
    behaviour: Behaviour,
) -> Response<Full<Bytes>> {
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
    let content_encoding = header("content-encoding");
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return respond(StatusCode::BAD_REQUEST, Bytes::new()),
    };
    if behaviour == Behaviour::Hang {
        // Seen, never answered: the exporter now waits for its timeout.
        received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .push(ReceivedRequest {
                method,
                path,
                content_type,
                status: 0,
                error: None,
            });
        std::future::pending::<()>().await;
        unreachable!("a hanging receiver never answers");
    }
    let (status, answer, error) = decode(
        &method,
        &path,
        &content_type,
        &content_encoding,
        &body,
        received,
    );
    let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
    received.requests.push(ReceivedRequest {
        method,
        path,
        content_type,
        status: status.as_u16(),
        error,
    });
    respond(status, answer)
}

fn decode(
    method: &str,
    path: &str,
    content_type: &str,
    content_encoding: &str,
    body: &[u8],
    received: &Mutex<Received>,
) -> (StatusCode, Bytes, Option<String>) {
    if !path.starts_with("/v1/") {
        return (
            StatusCode::NOT_FOUND,
            Bytes::new(),
            Some("not under /v1/".into()),
        );
    }
    if path != "/v1/traces" && path != "/v1/metrics" {
        // Logs, profiles: accepted and ignored.
        return (StatusCode::OK, Bytes::new(), None);
    }
    if method != "POST" {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::new(),
            Some(format!("{method}, not POST")),
        );
    }
    if !content_encoding.is_empty() && content_encoding != "identity" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Bytes::new(),
            Some(format!(
                "content-encoding {content_encoding} is not supported"
            )),
        );
    }
    if content_type != "application/x-protobuf" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Bytes::new(),
            Some(format!(
                "content-type {content_type:?}, not application/x-protobuf"
            )),
        );
    }
    if path == "/v1/traces" {
        match ExportTraceServiceRequest::decode(body) {
            Ok(request) => {
                let spans = flatten_spans(request);
                received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .spans
                    .extend(spans);
                let answer = ExportTraceServiceResponse::default().encode_to_vec();
                (StatusCode::OK, answer.into(), None)
            }
            Err(err) => (
                StatusCode::BAD_REQUEST,
                Bytes::new(),
                Some(format!("not an ExportTraceServiceRequest: {err}")),
            ),
        }
    } else {
        match ExportMetricsServiceRequest::decode(body) {
            Ok(request) => {
                let names = request
                    .resource_metrics
                    .into_iter()
                    .flat_map(|r| r.scope_metrics)
                    .flat_map(|s| s.metrics)
                    .map(|m| m.name);
                received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .metric_names
                    .extend(names);
                let answer = ExportMetricsServiceResponse::default().encode_to_vec();
                (StatusCode::OK, answer.into(), None)
            }
            Err(err) => (
                StatusCode::BAD_REQUEST,
                Bytes::new(),
                Some(format!("not an ExportMetricsServiceRequest: {err}")),
            ),
        }
    }
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
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
