//! Traces, metrics and logs from the standard `OTEL_*` environment variables.
//!
//! [`Telemetry::init`] reads the OpenTelemetry SDK environment variables
//! (strictly: a value this binary cannot honour is an error that names the
//! fix, never silently ignored), then installs the global tracer and meter
//! providers, the propagator and the `tracing` subscriber (log lines, the
//! tracing-opentelemetry layer, and with `OTEL_LOGS_EXPORTER=otlp` the
//! OpenTelemetry log bridge). [`Telemetry::shutdown`] flushes them, bounded
//! by the export timeout.
//!
//! The parsing is pure: every reader takes an [`Env`] lookup, so tests
//! need not touch the process environment.
//!
//! An unreachable OTLP endpoint never blocks or fails the consumer: spans
//! are queued and exported by the SDK's background threads, and the first
//! failed export logs one warning naming the endpoint and the fix, then
//! nothing until exports succeed again.
//!
//! The parts: [`env`] reads the SDK's variables and [`target`] where each
//! signal goes, [`otlp`] builds the OTLP exporters (with [`tls`] for
//! `https://`), [`export`] watches OTLP exports and holds the console
//! exporters, [`subscriber`] builds the `tracing` subscriber; this module
//! builds the providers and shuts them down.

mod env;
mod export;
mod otlp;
mod subscriber;
mod target;
mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use opentelemetry::global;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanExporter,
};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::EnvFilter;

use super::logs::{self, LogFormat};
use super::prometheus::PrometheusText;
use crate::propagation::Propagation;
use env::{
    capped, process_env, BatchSettings, Config, Env, LogSettings, MetricSettings, TraceSettings,
};
use export::{ConsoleMetrics, ConsoleSpans, ExportHealth, Watched};
use subscriber::{env_filter, kafka_handler_tracer, subscriber};
use target::{Exporter, LOGS, METRICS, TRACES};

/// What the command line adds to the `OTEL_*` variables.
#[derive(Debug)]
pub(crate) struct TelemetryOptions {
    /// Text for terminals, JSON for machines.
    pub(crate) log_format: LogFormat,
    /// An `EnvFilter` directive string (`RUST_LOG` syntax).
    pub(crate) log_filter: String,
    /// The largest `max_records` of the batch handlers that will run (0 without any).
    pub(crate) max_batch_records: usize,
    /// Whether `--metrics-addr` was given: keep a reader for Prometheus text.
    pub(crate) prometheus: bool,
}

/// The installed providers; [`Telemetry::shutdown`] flushes them.
#[derive(Debug)]
pub(crate) struct Telemetry {
    traces: Option<Pipeline<SdkTracerProvider>>,
    metrics: Option<Pipeline<SdkMeterProvider>>,
    logs: Option<Pipeline<SdkLoggerProvider>>,
    prometheus: Option<PrometheusText>,
    /// Set when shutdown starts: exports that fail then are not retried.
    shutting_down: Arc<AtomicBool>,
}

impl Telemetry {
    /// Installs the global tracer and meter providers, the propagator and
    /// the `tracing` subscriber. Call it inside the tokio runtime's context
    /// (`Runtime::enter`) but not from an async task. The error names the fix.
    ///
    /// Everything is read and built before anything is installed, so an
    /// error leaves the process as it was.
    pub(crate) fn init(options: &TelemetryOptions) -> Result<Self, String> {
        tls::install_process_provider();
        let env = Env::new(&process_env);
        let config = Config::read(env, options.max_batch_records, &super::binary_name())?;
        let propagation = Propagation::from_env().map_err(|err| err.to_string())?;
        let filter = env_filter(&options.log_filter)?;
        let telemetry = Self::build(&config, options.prometheus)?;
        if let Err(err) = telemetry.install(filter, options.log_format, &propagation) {
            telemetry.shutdown_quietly();
            return Err(err);
        }
        tracing::info!(
            target: "kafka_handler",
            traces = %config.traces.exporter,
            metrics = %config.metrics.exporter,
            logs = %config.logs.exporter,
            prometheus = options.prometheus,
            propagators = %propagation,
            "telemetry configured"
        );
        Ok(telemetry)
    }

    /// Builds the providers `config` asks for, installing nothing.
    fn build(config: &Config, prometheus: bool) -> Result<Self, String> {
        let resource = Resource::builder()
            .with_attributes(config.resource.clone())
            .build();
        let shutting_down = Arc::new(AtomicBool::new(false));
        let traces = build_traces(&config.traces, &resource, &shutting_down)?;
        let prometheus = prometheus.then(PrometheusText::new);
        let mut built = Self {
            metrics: None,
            traces,
            logs: None,
            prometheus,
            shutting_down,
        };
        let rest = build_metrics(
            &config.metrics,
            resource.clone(),
            built.prometheus.as_ref(),
            &built.shutting_down,
        )
        .and_then(|metrics| {
            built.metrics = metrics;
            build_logs(&config.logs, resource, &built.shutting_down)
        });
        match rest {
            Ok(logs) => Ok(Self { logs, ..built }),
            Err(err) => {
                built.shutdown_quietly();
                Err(err)
            }
        }
    }

    /// Installs the subscriber (it fails when one is installed already),
    /// then the propagator and the providers, globally.
    fn install(
        &self,
        filter: EnvFilter,
        format: LogFormat,
        propagation: &Propagation,
    ) -> Result<(), String> {
        let tracer = self
            .traces
            .as_ref()
            .map(|t| kafka_handler_tracer(&t.provider));
        let logger = self.logs.as_ref().map(|l| &l.provider);
        let subscriber = subscriber(filter, logs::stderr_layer(format), tracer, logger);
        tracing::subscriber::set_global_default(subscriber).map_err(|_| {
            "a global tracing subscriber is already installed; \
             the generated main installs its own"
                .to_owned()
        })?;
        propagation.install();
        if let Some(traces) = &self.traces {
            global::set_tracer_provider(traces.provider.clone());
        }
        if let Some(metrics) = &self.metrics {
            global::set_meter_provider(metrics.provider.clone());
        }
        Ok(())
    }

    /// Shuts the providers down at once, exporting nothing more (after
    /// `init` failed past building them).
    fn shutdown_quietly(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let timeout = Duration::from_millis(100);
        if let Some(traces) = &self.traces {
            let _ = traces.provider.shutdown_with_timeout(timeout);
        }
        if let Some(metrics) = &self.metrics {
            let _ = metrics.provider.shutdown_with_timeout(timeout);
        }
        if let Some(logs) = &self.logs {
            let _ = logs.provider.shutdown_with_timeout(timeout);
        }
    }

    /// The Prometheus text view of the metrics, when asked for.
    pub(crate) fn prometheus(&self) -> Option<PrometheusText> {
        self.prometheus.clone()
    }

    /// Flushes and shuts down every provider; failures are logged.
    ///
    /// Every span ended so far is exported (the tracer provider's shutdown
    /// drains its queue) and the meter provider makes a last export. It
    /// returns after the export timeout (plus a quarter of a second) at the
    /// latest, whatever the endpoint does: once an export fails during
    /// shutdown, the remaining batches are not tried, and what is still
    /// running after the timeout is abandoned with a warning.
    pub(crate) fn shutdown(self) {
        self.shutting_down.store(true, Ordering::Release);
        shutdown_pipelines(self.traces, self.metrics, self.logs);
    }
}

/// How long shutdown waits for a console or Prometheus-only pipeline.
const DEFAULT_FLUSH_BUDGET: Duration = Duration::from_secs(5);
/// What shutdown waits beyond the export timeout, for an export that ends
/// at its timeout to be reported (and the queue behind it failed at once).
const FLUSH_GRACE: Duration = Duration::from_millis(250);

/// An installed provider with what shutdown needs.
#[derive(Debug)]
struct Pipeline<P> {
    provider: P,
    /// The OTLP export's health, when the signal goes over OTLP.
    health: Option<Arc<ExportHealth>>,
    /// How long shutdown may wait for this provider.
    budget: Duration,
}

/// The tracer provider, or `None` when traces are not exported.
fn build_traces(
    settings: &TraceSettings,
    resource: &Resource,
    shutting_down: &Arc<AtomicBool>,
) -> Result<Option<Pipeline<SdkTracerProvider>>, String> {
    let (processor, health, budget) = match &settings.exporter {
        Exporter::None => return Ok(None),
        Exporter::Console => (
            batch_processor(ConsoleSpans, settings.batch),
            None,
            DEFAULT_FLUSH_BUDGET,
        ),
        Exporter::Otlp(target) => {
            let timeout = settings.export_timeout(target);
            let health = ExportHealth::new(&TRACES, target, timeout, shutting_down);
            let exporter = Watched {
                inner: otlp::span_exporter(target, timeout)?,
                health: Arc::clone(&health),
            };
            (
                batch_processor(exporter, settings.batch),
                Some(health),
                timeout,
            )
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(settings.sampler.clone())
        .with_span_limits(settings.limits)
        .with_resource(resource.clone())
        .build();
    Ok(Some(Pipeline {
        provider,
        health,
        budget,
    }))
}

/// A batch span processor with `settings`, exporting to `exporter`.
fn batch_processor<E: SpanExporter + 'static>(
    exporter: E,
    settings: BatchSettings,
) -> BatchSpanProcessor {
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(settings.max_queue_size)
                .with_scheduled_delay(settings.scheduled_delay)
                .with_max_export_batch_size(settings.max_export_batch_size)
                .build(),
        )
        .build()
}

/// The meter provider, or `None` when metrics go nowhere (no exporter and
/// no Prometheus view).
fn build_metrics(
    settings: &MetricSettings,
    resource: Resource,
    prometheus: Option<&PrometheusText>,
    shutting_down: &Arc<AtomicBool>,
) -> Result<Option<Pipeline<SdkMeterProvider>>, String> {
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    let mut view = prometheus.cloned();
    let mut health = None;
    let mut budget = DEFAULT_FLUSH_BUDGET;
    match &settings.exporter {
        Exporter::None if prometheus.is_none() => return Ok(None),
        Exporter::None => {}
        Exporter::Console => {
            // The console prints the Prometheus view's text: the one of
            // `/metrics` when it is served, else one of its own.
            let console = view.get_or_insert_with(PrometheusText::new).clone();
            let reader = PeriodicReader::builder(ConsoleMetrics(console))
                .with_interval(settings.interval)
                .build();
            builder = builder.with_reader(reader);
        }
        Exporter::Otlp(target) => {
            budget = capped(target.timeout, settings.export_timeout);
            let watched = ExportHealth::new(&METRICS, target, budget, shutting_down);
            let exporter = Watched {
                inner: otlp::metric_exporter(target, budget, settings.temporality)?,
                health: Arc::clone(&watched),
            };
            let reader = PeriodicReader::builder(exporter)
                .with_interval(settings.interval)
                .build();
            builder = builder.with_reader(reader);
            health = Some(watched);
        }
    }
    // After the console's reader: the provider shuts its readers down in
    // the order they were added, so the console's last export still reads it.
    if let Some(view) = view {
        builder = builder.with_reader(view.reader());
    }
    Ok(Some(Pipeline {
        provider: builder.build(),
        health,
        budget,
    }))
}

/// The logger provider, or `None` when logs go to stderr only.
fn build_logs(
    settings: &LogSettings,
    resource: Resource,
    shutting_down: &Arc<AtomicBool>,
) -> Result<Option<Pipeline<SdkLoggerProvider>>, String> {
    let target = match &settings.exporter {
        Exporter::None => return Ok(None),
        Exporter::Otlp(target) => target,
        Exporter::Console => unreachable!("OTEL_LOGS_EXPORTER offers no console exporter"),
    };
    let timeout = settings.export_timeout(target);
    let health = ExportHealth::new(&LOGS, target, timeout, shutting_down);
    let exporter = Watched {
        inner: otlp::log_exporter(target, timeout)?,
        health: Arc::clone(&health),
    };
    let batch = settings.batch;
    let processor = BatchLogProcessor::builder(exporter)
        .with_batch_config(
            opentelemetry_sdk::logs::BatchConfigBuilder::default()
                .with_max_queue_size(batch.max_queue_size)
                .with_scheduled_delay(batch.scheduled_delay)
                .with_max_export_batch_size(batch.max_export_batch_size)
                .build(),
        )
        .build();
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(processor)
        .with_resource(resource)
        .build();
    Ok(Some(Pipeline {
        provider,
        health: Some(health),
        budget: timeout,
    }))
}

/// Shuts the pipelines down in parallel, waiting at most the longest of
/// their budgets plus [`FLUSH_GRACE`].
fn shutdown_pipelines(
    traces: Option<Pipeline<SdkTracerProvider>>,
    metrics: Option<Pipeline<SdkMeterProvider>>,
    logs: Option<Pipeline<SdkLoggerProvider>>,
) {
    let budget = [
        traces.as_ref().map(|t| t.budget),
        metrics.as_ref().map(|m| m.budget),
        logs.as_ref().map(|l| l.budget),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or_default();
    let deadline = Instant::now() + budget + FLUSH_GRACE;
    let pending = [
        traces.map(|t| t.spawn_flush("spans")),
        metrics.map(|m| m.spawn_flush("metrics")),
        logs.map(|l| l.spawn_flush("logs")),
    ];
    for flush in pending.into_iter().flatten() {
        flush.wait(deadline, budget);
    }
}

/// A provider shutdown can flush.
trait Provider: Send + 'static {
    /// Exports what is left and shuts down, waiting at most `budget`.
    fn flush_and_shut_down(&self, budget: Duration) -> OTelSdkResult;
}

impl Provider for SdkTracerProvider {
    fn flush_and_shut_down(&self, budget: Duration) -> OTelSdkResult {
        let flushed = self.force_flush();
        flushed.and(self.shutdown_with_timeout(budget))
    }
}

impl Provider for SdkLoggerProvider {
    fn flush_and_shut_down(&self, budget: Duration) -> OTelSdkResult {
        let flushed = self.force_flush();
        flushed.and(self.shutdown_with_timeout(budget))
    }
}

impl Provider for SdkMeterProvider {
    /// The meter provider's shutdown makes a last export itself.
    fn flush_and_shut_down(&self, budget: Duration) -> OTelSdkResult {
        self.shutdown_with_timeout(budget)
    }
}

impl<P: Provider> Pipeline<P> {
    /// Flushes and shuts the provider down on a thread of its own.
    fn spawn_flush(self, noun: &'static str) -> Flush {
        let Self {
            provider,
            health,
            budget,
        } = self;
        Flush::spawn(noun, health, move || provider.flush_and_shut_down(budget))
    }
}

/// A flush running on its own thread.
struct Flush {
    noun: &'static str,
    health: Option<Arc<ExportHealth>>,
    done: mpsc::Receiver<OTelSdkResult>,
}

impl Flush {
    fn spawn(
        noun: &'static str,
        health: Option<Arc<ExportHealth>>,
        flush: impl FnOnce() -> OTelSdkResult + Send + 'static,
    ) -> Self {
        let (sender, done) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("flush-{noun}"))
            .spawn(move || {
                let _ = sender.send(flush());
            });
        if let Err(err) = spawned {
            tracing::warn!(target: "kafka_handler", "flushing {noun} at exit: {err}");
        }
        Self { noun, health, done }
    }

    /// Waits until `deadline`; logs a failure the health warning has not
    /// already reported.
    fn wait(self, deadline: Instant, budget: Duration) {
        let noun = self.noun;
        let already_reported = || self.health.as_ref().is_some_and(|h| h.is_failing());
        match self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) if already_reported() => {}
            Ok(Err(err)) => {
                tracing::warn!(target: "kafka_handler", "flushing {noun} at exit: {err}");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
                target: "kafka_handler",
                "gave up flushing {noun} at exit after {budget:?} (the export timeout); \
                 the rest are lost"
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{Sampler, SpanLimits};

    use target::{Endpoint, OtlpTarget, Protocol};

    /// A listener that accepts connections and never answers.
    fn black_hole() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, format!("http://{addr}"))
    }

    fn otlp_settings(protocol: Protocol, url: String, timeout: Duration) -> TraceSettings {
        TraceSettings {
            exporter: Exporter::Otlp(OtlpTarget {
                protocol,
                endpoint: Endpoint { url, source: None },
                timeout,
                compression: Default::default(),
                tls: Default::default(),
            }),
            sampler: Sampler::AlwaysOn,
            limits: SpanLimits::default(),
            batch: BatchSettings {
                max_queue_size: 65_536,
                scheduled_delay: Duration::from_secs(60),
                max_export_batch_size: 512,
                export_timeout: None,
            },
        }
    }

    /// Spans to an endpoint that never answers: shutdown returns within
    /// about the export timeout, not once per batch of the queue.
    #[test]
    fn shutdown_with_an_unresponsive_endpoint_is_bounded_by_the_export_timeout() {
        for protocol in [Protocol::HttpProtobuf, Protocol::Grpc] {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let _entered = runtime.enter();
            let (_listener, base) = black_hole();
            let url = match protocol {
                Protocol::HttpProtobuf => format!("{base}/v1/traces"),
                Protocol::Grpc => base,
            };
            let timeout = Duration::from_millis(300);
            let shutting_down = Arc::new(AtomicBool::new(false));
            let traces = build_traces(
                &otlp_settings(protocol, url, timeout),
                &Resource::builder_empty().build(),
                &shutting_down,
            )
            .expect("valid")
            .expect("exported");
            let health = Arc::clone(traces.health.as_ref().expect("otlp"));
            let tracer = traces.provider.tracer("test");
            for _ in 0..2_000 {
                tracer.in_span("work", |_| {});
            }
            let started = Instant::now();
            shutting_down.store(true, Ordering::Release);
            shutdown_pipelines(Some(traces), None, None);
            let took = started.elapsed();
            let bound = timeout + FLUSH_GRACE + Duration::from_millis(500);
            assert!(took < bound, "{protocol:?}: took {took:?}");
            let reported = Instant::now() + Duration::from_secs(2);
            while !health.is_failing() && Instant::now() < reported {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                health.is_failing(),
                "{protocol:?}: the export must have failed"
            );
        }
    }

    /// A refused connection over gRPC fails the export (on the processor's
    /// own thread, outside the runtime) without panicking.
    #[test]
    fn grpc_exports_fail_cleanly_when_the_connection_is_refused() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let shutting_down = Arc::new(AtomicBool::new(false));
        let traces = build_traces(
            &otlp_settings(Protocol::Grpc, url, Duration::from_secs(2)),
            &Resource::builder_empty().build(),
            &shutting_down,
        )
        .expect("valid")
        .expect("exported");
        traces.provider.tracer("test").in_span("work", |_| {});
        assert!(traces.provider.force_flush().is_err());
        assert!(traces.health.as_ref().expect("otlp").is_failing());
        let _ = traces.provider.shutdown();
    }
}
