//! The `tracing` subscriber: the `EnvFilter`, the log lines (OpenTelemetry's
//! internal logs at `warn` and above only), the tracing-opentelemetry layer
//! and the OpenTelemetry log bridge; neither of the last two sees the
//! exporters' own crates.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::Layer as _;

use crate::app::logs::LogLayer;

/// The tracer the tracing-opentelemetry layer starts spans on: the same
/// scope as the runtime's own tracer, so a `process` span has one scope
/// whichever way it is started.
pub(super) fn kafka_handler_tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer_with_scope(
        InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}

/// The `EnvFilter` for `directives` (`info` when blank).
pub(super) fn env_filter(directives: &str) -> Result<EnvFilter, String> {
    let directives = match directives.trim() {
        "" => "info",
        directives => directives,
    };
    EnvFilter::builder().parse(directives).map_err(|err| {
        format!(
            "log filter {directives:?}: {err}; expected RUST_LOG syntax, \
             e.g. info or warn,kafka_handler=debug"
        )
    })
}

/// The crates the OTLP exporters run on. Their spans must never become
/// OpenTelemetry spans, nor their events OpenTelemetry log records:
/// exporting one would make more (a feedback loop).
const EXPORTER_CRATES: [&str; 7] = [
    "hyper",
    "hyper_util",
    "h2",
    "tonic",
    "tower",
    "reqwest",
    "tokio_util",
];

/// Whether `target` belongs to the exporters' own crates (or to
/// OpenTelemetry's).
fn is_exporter_target(target: &str) -> bool {
    target.starts_with("opentelemetry")
        || EXPORTER_CRATES.iter().any(|name| {
            target
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Lets OpenTelemetry's internal logs through at `warn` and `error` only
/// (with its `internal-logs` feature they are `tracing` events with
/// targets such as `opentelemetry_sdk`).
fn internal_logs_at_warn(metadata: &Metadata<'_>) -> bool {
    !(metadata.target().starts_with("opentelemetry") && *metadata.level() > Level::WARN)
}

/// The subscriber: `filter` for everything, the log lines, the
/// tracing-opentelemetry layer on `tracer` when traces are exported, and
/// the log bridge to `logger` when logs are (neither for the exporters'
/// crates). A bridged record carries the trace and span ids of the
/// OpenTelemetry context current when it is logged: inside a handler, the
/// record's `process` span. The tracing-opentelemetry layer skips the per-span
/// `busy_ns`/`idle_ns` and thread attributes: two clock reads per poll and
/// an allocation per span, on every record's `process` span, for numbers
/// that mean little for async handlers hopping threads.
pub(super) fn subscriber<W>(
    filter: EnvFilter,
    log_layer: LogLayer<W>,
    tracer: Option<SdkTracer>,
    logger: Option<&SdkLoggerProvider>,
) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let otel_layer = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_filter(filter_fn(|metadata| !is_exporter_target(metadata.target())))
    });
    let log_bridge = logger.map(|provider| {
        OpenTelemetryTracingBridge::new(provider)
            .with_filter(filter_fn(|metadata| !is_exporter_target(metadata.target())))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(log_layer.with_filter(filter_fn(internal_logs_at_warn)))
        .with(otel_layer)
        .with(log_bridge)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use crate::app::logs::LogFormat;

    #[test]
    fn log_filters_are_checked() {
        assert!(env_filter("").is_ok());
        assert!(env_filter("warn,kafka_handler=debug").is_ok());
        let err = env_filter("info,kafka_handler=loud").expect_err("must be a configuration error");
        assert!(
            err.starts_with("log filter \"info,kafka_handler=loud\""),
            "{err}"
        );
    }

    #[test]
    fn exporter_targets_are_recognised() {
        for target in [
            "hyper",
            "hyper::proto::h1",
            "hyper_util::client",
            "h2::codec",
            "tonic::transport",
            "tower::buffer",
            "reqwest::connect",
            "opentelemetry_sdk",
            "opentelemetry-otlp",
        ] {
            assert!(is_exporter_target(target), "{target}");
        }
        for target in ["kafka_handler", "hyperion", "billing::h2o", "app"] {
            assert!(!is_exporter_target(target), "{target}");
        }
    }

    /// Captures log lines.
    pub(in crate::app::telemetry) use crate::app::logs::tests::Buffer as Lines;

    /// A text log layer (no colours) writing to `lines`.
    pub(in crate::app::telemetry) fn text_layer(lines: &Lines) -> LogLayer<Lines> {
        LogLayer::new(LogFormat::Text, false, lines.clone())
    }

    #[test]
    fn the_subscriber_bridges_user_spans_but_not_the_exporters_own() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let lines = Lines::default();
        let filter = env_filter("trace").expect("filter");
        let subscriber = subscriber(
            filter,
            text_layer(&lines),
            Some(kafka_handler_tracer(&provider)),
            None,
        );
        let mut ids = String::new();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!(target: "billing", "charge card").in_scope(|| {
                let cx = tracing::Span::current().context();
                ids = format!(
                    "trace_id={} span_id={}",
                    cx.span().span_context().trace_id(),
                    cx.span().span_context().span_id()
                );
                tracing::info!(target: "billing", "charged");
            });
            tracing::info_span!(target: "hyper::client::pool", "connect").in_scope(|| {});
            tracing::info_span!(target: "h2", "poll").in_scope(|| {});
            tracing::debug!(target: "opentelemetry_sdk", "internal chatter");
            tracing::warn!(target: "opentelemetry_sdk", "internal warning");
        });
        let names: Vec<String> = exporter
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .map(|span| span.name.into_owned())
            .collect();
        assert_eq!(names, ["charge card"]);
        let text = lines.text();
        assert!(text.contains(&format!("billing: charged {ids}")), "{text}");
        assert!(text.contains("internal warning"), "{text}");
        assert!(!text.contains("internal chatter"), "{text}");
    }
}
