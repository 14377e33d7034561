//! Watching OTLP exports (one warning when they stop getting through, one
//! line when they recover) and the console span and metric exporters.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::target::{OtlpTarget, Signal, TlsFiles, ENDPOINT};
use super::tls;
use crate::app::logs;
use crate::app::prometheus::PrometheusText;

/// Whether one signal's OTLP exports get through, and the one warning when
/// they stop.
#[derive(Debug)]
pub(super) struct ExportHealth {
    /// `spans`, `metrics` or `logs`.
    noun: &'static str,
    endpoint: String,
    /// The TLS files, for an `https://` endpoint.
    tls: Option<TlsFiles>,
    /// What to do about it.
    fix: String,
    failing: AtomicBool,
    shutting_down: Arc<AtomicBool>,
    /// An export failed during shutdown: fail the rest without trying.
    gave_up: AtomicBool,
    /// The exporter's timeout: an export that took this long got no answer.
    timeout: Duration,
    report: Report,
}

/// Where [`ExportHealth`] reports.
#[derive(Debug)]
enum Report {
    /// `tracing` events, target `kafka_handler`.
    Log,
    /// Kept for a test to read (`tracing`'s callsite cache makes events
    /// from threads shared by tests unreliable to capture).
    #[cfg(test)]
    Capture(std::sync::Mutex<Vec<String>>),
}

impl Report {
    /// Reports `message` as a warning.
    fn warn(&self, message: &str) {
        match self {
            Report::Log => tracing::warn!(target: "kafka_handler", "{message}"),
            #[cfg(test)]
            Report::Capture(lines) => push_line(lines, "WARN", message),
        }
    }

    /// Reports `message` as information.
    fn info(&self, message: &str) {
        match self {
            Report::Log => tracing::info!(target: "kafka_handler", "{message}"),
            #[cfg(test)]
            Report::Capture(lines) => push_line(lines, "INFO", message),
        }
    }
}

#[cfg(test)]
fn push_line(lines: &std::sync::Mutex<Vec<String>>, level: &str, message: &str) {
    if let Ok(mut lines) = lines.lock() {
        lines.push(format!("{level} {message}"));
    }
}

impl ExportHealth {
    /// The health of `signal`'s exports to `target`, which time out after
    /// `timeout`; failures while `shutting_down` is set give up the rest.
    pub(super) fn new(
        signal: &Signal,
        target: &OtlpTarget,
        timeout: Duration,
        shutting_down: &Arc<AtomicBool>,
    ) -> Arc<Self> {
        let endpoint_var = target.endpoint.source.unwrap_or(ENDPOINT);
        Arc::new(Self {
            noun: signal.noun,
            endpoint: target.endpoint.url.clone(),
            tls: target.endpoint.is_https().then(|| target.tls.clone()),
            fix: format!(
                "set {endpoint_var} to a reachable collector, or {}=none",
                signal.exporter
            ),
            failing: AtomicBool::new(false),
            shutting_down: Arc::clone(shutting_down),
            gave_up: AtomicBool::new(false),
            timeout,
            report: Report::Log,
        })
    }

    /// Whether the last export failed.
    pub(super) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// `Err` without trying when an export already failed during shutdown.
    fn check(&self) -> OTelSdkResult {
        if self.gave_up.load(Ordering::Acquire) {
            return Err(OTelSdkError::InternalFailure(format!(
                "{} not exported at exit: {} is unreachable",
                self.noun, self.endpoint
            )));
        }
        Ok(())
    }

    /// Logs the first failure after a success (or at start), and the
    /// first success after a failure; `took` is how long the export took.
    fn record(&self, result: &OTelSdkResult, took: Duration) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    let message = format!("{} are reaching {} again", self.noun, self.endpoint);
                    self.report.info(&message);
                }
            }
            Err(err) => {
                let shutting_down = self.shutting_down.load(Ordering::Acquire);
                if shutting_down {
                    self.gave_up.store(true, Ordering::Release);
                }
                if !self.failing.swap(true, Ordering::AcqRel) {
                    self.report.warn(&self.warning(err, took, !shutting_down));
                }
            }
        }
    }

    /// `spans are not reaching <endpoint>: <error>; <fix>`, with why: no
    /// answer within the timeout, or (when `diagnose`, as it may take a
    /// second) why a connection cannot be made.
    fn warning(&self, err: &OTelSdkError, took: Duration, diagnose: bool) -> String {
        let mut detail = match err {
            OTelSdkError::InternalFailure(reason) => reason.clone(),
            other => other.to_string(),
        };
        let cause = if took + Duration::from_millis(50) >= self.timeout {
            Some(format!("no answer within {:?}", self.timeout))
        } else if diagnose {
            connection_problem(&self.endpoint, self.tls.as_ref())
        } else {
            None
        };
        let tls_refused = cause.as_deref().is_some_and(|c| c.starts_with("TLS: "));
        if let Some(cause) = cause {
            let _ = write!(detail, " ({cause})");
        }
        let fix = if tls_refused { TLS_FIX } else { &self.fix };
        format!(
            "{} are not reaching {}: {detail}; {fix}",
            self.noun, self.endpoint
        )
    }
}

/// What to do when the TLS session fails.
const TLS_FIX: &str = "check OTEL_EXPORTER_OTLP_CERTIFICATE (the CA that signed the \
                       collector's certificate; unset, the system's roots) and, for mutual \
                       TLS, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _CLIENT_KEY";

/// Why a TCP connection to `endpoint`'s host cannot be made, or with `tls`
/// a TLS session, if it cannot (the OTLP/HTTP errors say only "network
/// error", whether the port is closed or the certificate is wrong).
fn connection_problem(endpoint: &str, tls: Option<&TlsFiles>) -> Option<String> {
    let uri: hyper::Uri = endpoint.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default_port);
    let addr = match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs.next()?,
        Err(err) => return Some(format!("cannot resolve {host}: {err}")),
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(tcp) => tls.and_then(|files| tls::handshake_problem(files, host, tcp)),
        Err(err) => Some(format!("connecting to {addr}: {err}")),
    }
}

/// An exporter whose results are reported to an [`ExportHealth`].
pub(super) struct Watched<E> {
    /// The exporter that does the work.
    pub(super) inner: E,
    /// Where its results go.
    pub(super) health: Arc<ExportHealth>,
}

impl<E> fmt::Debug for Watched<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("endpoint", &self.health.endpoint)
            .finish_non_exhaustive()
    }
}

impl<E> Watched<E> {
    /// Runs `export` (unless an export already failed during shutdown) and
    /// reports its result.
    async fn watch(
        &self,
        export: impl std::future::Future<Output = OTelSdkResult>,
    ) -> OTelSdkResult {
        self.health.check()?;
        let started = Instant::now();
        let result = export.await;
        self.health.record(&result, started.elapsed());
        result
    }
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.watch(self.inner.export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Watched<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.watch(self.inner.export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.watch(self.inner.export(metrics)).await
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

// ---------------------------------------------------------------------------
// Console exporters.

/// Writes each span to stdout as one line (`OTEL_TRACES_EXPORTER=console`).
#[derive(Debug)]
pub(super) struct ConsoleSpans;

impl SpanExporter for ConsoleSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut text = String::new();
        for span in &batch {
            write_span(&mut text, span);
        }
        write_stdout(&text)
    }
}

/// `process orders [consumer] trace_id=.. span_id=.. parent_id=.. status=..
/// duration=.. scope=.. <attributes> event=.. link=..`
fn write_span(out: &mut String, span: &SpanData) {
    let context = &span.span_context;
    let _ = write!(
        out,
        "{} [{}] trace_id={} span_id={} parent_id=",
        span.name,
        kind_name(&span.span_kind),
        context.trace_id(),
        context.span_id(),
    );
    if span.parent_span_id == opentelemetry::trace::SpanId::INVALID {
        out.push('-');
    } else {
        let _ = write!(out, "{}", span.parent_span_id);
    }
    out.push_str(" status=");
    match &span.status {
        Status::Unset => out.push_str("unset"),
        Status::Ok => out.push_str("ok"),
        Status::Error { description } => {
            out.push_str("error:");
            logs::push_logfmt_value(out, description);
        }
    }
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    let _ = write!(
        out,
        " duration={duration:?} scope={}",
        span.instrumentation_scope.name()
    );
    for attribute in &span.attributes {
        let _ = write!(out, " {}=", attribute.key);
        logs::push_logfmt_value(out, &attribute.value.as_str());
    }
    for event in span.events.iter() {
        out.push_str(" event=");
        logs::push_logfmt_value(out, &event.name);
    }
    for link in span.links.iter() {
        let linked = &link.span_context;
        let _ = write!(out, " link={}/{}", linked.trace_id(), linked.span_id());
    }
    out.push('\n');
}

/// The span kind, lower case.
fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

/// Writes the metrics to stdout in the Prometheus text format, after a
/// `# metrics at <time>` line (`OTEL_METRICS_EXPORTER=console`).
///
/// The periodic reader gives the interval and the last export at shutdown;
/// the text is what its [`PrometheusText`] view (registered with the same
/// provider, after this exporter's reader) answers at that moment, so the
/// console prints exactly what `/metrics` serves.
#[derive(Debug)]
pub(super) struct ConsoleMetrics(pub(super) PrometheusText);

impl PushMetricExporter for ConsoleMetrics {
    async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
        let mut text = String::from("# metrics at ");
        logs::write_timestamp(&mut text, SystemTime::now());
        text.push('\n');
        text.push_str(&self.0.render());
        write_stdout(&text)
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// Writes `text` to stdout at once.
fn write_stdout(text: &str) -> OTelSdkResult {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| OTelSdkError::InternalFailure(format!("writing to stdout: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Mutex;

    use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::super::subscriber::tests::{text_layer, Lines};
    use super::super::target::{Endpoint, Protocol, DEFAULT_OTLP_TIMEOUT, TRACES};

    /// An exporter that fails while `fail` is set.
    #[derive(Debug, Clone, Default)]
    struct Flaky {
        fail: Arc<AtomicBool>,
    }

    impl SpanExporter for Flaky {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            if self.fail.load(Ordering::Relaxed) {
                Err(OTelSdkError::InternalFailure(
                    "HTTP export failed: network error".into(),
                ))
            } else {
                Ok(())
            }
        }
    }

    fn target(url: &str, timeout: Duration) -> OtlpTarget {
        OtlpTarget {
            protocol: Protocol::HttpProtobuf,
            endpoint: Endpoint {
                url: url.to_owned(),
                source: None,
            },
            timeout,
            compression: Default::default(),
            tls: Default::default(),
        }
    }

    /// The health of trace exports to `url`, with the default timeout.
    fn health_of(url: &str, shutting_down: &Arc<AtomicBool>) -> Arc<ExportHealth> {
        let target = target(url, DEFAULT_OTLP_TIMEOUT);
        ExportHealth::new(&TRACES, &target, DEFAULT_OTLP_TIMEOUT, shutting_down)
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn a_failing_endpoint_warns_once_then_reports_recovery() {
        let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/v1/traces", closed.local_addr().expect("addr"));
        drop(closed);
        let flaky = Flaky::default();
        let shutting_down = Arc::new(AtomicBool::new(false));
        let mut health = health_of(&url, &shutting_down);
        Arc::get_mut(&mut health).expect("unshared").report = Report::Capture(Mutex::default());
        let watched = Watched {
            inner: flaky.clone(),
            health: Arc::clone(&health),
        };
        flaky.fail.store(true, Ordering::Relaxed);
        for _ in 0..3 {
            assert!(block_on(watched.export(Vec::new())).is_err());
        }
        assert!(health.is_failing());
        flaky.fail.store(false, Ordering::Relaxed);
        assert!(block_on(watched.export(Vec::new())).is_ok());
        assert!(block_on(watched.export(Vec::new())).is_ok());
        assert!(!health.is_failing());

        let Report::Capture(lines) = &health.report else {
            unreachable!("set above");
        };
        let lines = lines.lock().expect("lines").clone();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        let expected = format!(
            "WARN spans are not reaching {url}: HTTP export failed: network error (connecting to "
        );
        assert!(lines[0].starts_with(&expected), "{lines:#?}");
        assert!(
            lines[0].ends_with(
                "; set OTEL_EXPORTER_OTLP_ENDPOINT to a reachable collector, \
                 or OTEL_TRACES_EXPORTER=none"
            ),
            "{lines:#?}"
        );
        assert_eq!(lines[1], format!("INFO spans are reaching {url} again"));
    }

    /// The warning itself goes through `tracing`, target `kafka_handler`.
    #[test]
    fn export_warnings_are_logged_under_kafka_handler() {
        // With a single live dispatcher, `tracing` computes a callsite's
        // interest from the registering thread's default alone; another
        // test's exporter thread (no subscriber) could then disable this
        // callsite for good. A second live dispatcher makes it ask all.
        let _second = tracing::Dispatch::new(tracing_subscriber::registry());
        let shutting_down = Arc::new(AtomicBool::new(true));
        let health = health_of("http://localhost:4318/v1/traces", &shutting_down);
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(text_layer(&lines));
        tracing::subscriber::with_default(subscriber, || {
            health.record(
                &Err(OTelSdkError::InternalFailure("refused".into())),
                Duration::ZERO,
            );
        });
        let text = lines.text();
        assert!(
            text.contains(
                " WARN kafka_handler: spans are not reaching http://localhost:4318/v1/traces: \
                 refused; set OTEL_EXPORTER_OTLP_ENDPOINT"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_export_that_times_out_says_so() {
        let health = health_of("http://collector:4318/v1/traces", &Arc::default());
        let err = OTelSdkError::InternalFailure("HTTP export failed: network error".into());
        assert_eq!(
            health.warning(&err, DEFAULT_OTLP_TIMEOUT, true),
            "spans are not reaching http://collector:4318/v1/traces: HTTP export failed: \
             network error (no answer within 10s); set OTEL_EXPORTER_OTLP_ENDPOINT to a \
             reachable collector, or OTEL_TRACES_EXPORTER=none"
        );
        assert!(!health
            .warning(&err, Duration::from_millis(10), false)
            .contains("no answer"));
    }

    #[test]
    fn after_a_failure_during_shutdown_the_rest_fail_at_once() {
        let flaky = Flaky::default();
        flaky.fail.store(true, Ordering::Relaxed);
        let shutting_down = Arc::new(AtomicBool::new(true));
        let health = health_of("http://localhost:4318/v1/traces", &shutting_down);
        let watched = Watched {
            inner: flaky.clone(),
            health,
        };
        assert!(block_on(watched.export(Vec::new())).is_err());
        flaky.fail.store(false, Ordering::Relaxed);
        let err = block_on(watched.export(Vec::new())).expect_err("not tried");
        assert!(err.to_string().contains("not exported at exit"), "{err}");
    }

    #[test]
    fn console_spans_are_one_readable_line() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("kafka-handler");
        tracer.in_span("send orders", |parent| {
            let span = tracer
                .span_builder("process orders")
                .with_kind(SpanKind::Consumer)
                .with_attributes([
                    KeyValue::new("messaging.system", "kafka"),
                    KeyValue::new("messaging.kafka.offset", 7),
                    KeyValue::new("note", "two words"),
                ])
                .start_with_context(&tracer, &parent);
            let cx = parent.with_span(span);
            cx.span().add_event("exception", vec![]);
            cx.span().set_status(Status::error("boom"));
        });
        let spans = exporter.get_finished_spans().expect("spans");
        let child = spans
            .iter()
            .find(|s| s.name == "process orders")
            .expect("child");
        let parent = spans
            .iter()
            .find(|s| s.name == "send orders")
            .expect("parent");
        let mut line = String::new();
        write_span(&mut line, child);
        let duration = child
            .end_time
            .duration_since(child.start_time)
            .expect("ended");
        assert_eq!(
            line,
            format!(
                "process orders [consumer] trace_id={} span_id={} parent_id={} status=error:boom \
                 duration={duration:?} scope=kafka-handler messaging.system=kafka \
                 messaging.kafka.offset=7 note=\"two words\" event=exception\n",
                child.span_context.trace_id(),
                child.span_context.span_id(),
                parent.span_context.span_id(),
            )
        );
        let mut root = String::new();
        write_span(&mut root, parent);
        assert!(root.contains(" parent_id=- status=unset "), "{root}");
    }
}
