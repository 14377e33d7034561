//! Metrics as Prometheus text, for `--metrics-addr` and
//! `OTEL_METRICS_EXPORTER=console`.
//!
//! `opentelemetry-prometheus` does the conversion the OpenTelemetry
//! "Prometheus and OpenMetrics compatibility" specification describes (names
//! and labels sanitized, the unit as a suffix, `_total` on counters, the
//! resource as `target_info`) into a `prometheus` registry, whose text
//! encoder writes the exposition format 0.0.4. The one setting we change is
//! `scope_info_enabled(false)`: the exporter would otherwise add
//! `otel_scope_name`/`otel_scope_version` labels to every series, which
//! `/metrics` never had, so every series users scrape would change identity.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry_prometheus::PrometheusExporter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, Pipeline, Temporality};
use prometheus::{Registry, TextEncoder};

/// Renders the current metrics in the Prometheus text exposition format.
///
/// Cloning is cheap: clones share the one registry and reader.
#[derive(Clone, Debug)]
pub(crate) struct PrometheusText {
    registry: Registry,
    reader: Arc<Reader>,
}

/// The exporter (the pull reader behind the registry's collector), and
/// whether the provider has shut it down.
#[derive(Debug)]
struct Reader {
    exporter: PrometheusExporter,
    /// Set as the provider shuts the reader down. A scrape then answers
    /// nothing without collecting: the exporter would log each failed
    /// collection as an error, and `/metrics` is served until the process
    /// exits, after telemetry has shut down.
    shut_down: AtomicBool,
}

impl PrometheusText {
    /// A view with its own registry and cumulative pull reader, not yet
    /// registered: pass [`Self::reader`] to the meter provider's
    /// `with_reader`.
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            // Registering fails only for a collector already in the
            // registry, and this registry is new.
            .expect("a new registry accepts its first collector");
        Self {
            registry,
            reader: Arc::new(Reader {
                exporter,
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// The reader to register with the meter provider (it shares this
    /// view's exporter).
    pub(crate) fn reader(&self) -> SharedReader {
        SharedReader(Arc::clone(&self.reader))
    }

    /// The metrics now, as `text/plain; version=0.0.4`. Empty when the
    /// reader is not registered or the provider has shut down.
    pub(crate) fn render(&self) -> String {
        if self.reader.shut_down.load(Ordering::Acquire) {
            return String::new();
        }
        // The encoder refuses only families without a name or without
        // samples, and `gather` leaves out the empty ones.
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// A [`PrometheusExporter`] shared between the meter provider, which takes
/// its readers by value, and a [`PrometheusText`].
#[derive(Debug)]
pub(crate) struct SharedReader(Arc<Reader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.exporter.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.exporter.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.exporter.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shut_down.store(true, Ordering::Release);
        self.0.exporter.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.exporter.temporality(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::logs::tests::Buffer;
    use crate::metrics::{Metrics, ProcessMetrics};
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use opentelemetry_sdk::Resource;

    fn provider(view: &PrometheusText) -> SdkMeterProvider {
        SdkMeterProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("orders")
                    .with_attribute(KeyValue::new("deployment.environment", "prod \"eu\""))
                    .build(),
            )
            .with_reader(view.reader())
            .build()
    }

    /// The names, types, labels and buckets `/metrics` served before it was
    /// built on `opentelemetry-prometheus` (captured from `orders_consumer`),
    /// from kafka-handler's own instruments and recording code.
    #[test]
    fn renders_the_consumer_metrics_under_the_names_users_scrape() {
        let view = PrometheusText::new();
        let provider = provider(&view);
        let metrics = Metrics::with_meter(&provider.meter("kafka-handler"));
        let process = ProcessMetrics::new(metrics.clone(), "billing".into());
        process.attempted("orders", 2, 1, Duration::from_millis(20), Some("handler"));
        process.attempted("orders", 2, 0, Duration::from_millis(3), None);
        metrics.retried("billing", "orders");
        metrics.dead_lettered("billing", "orders", "orders.dlq", "handler");
        metrics.send_failed("billing", "orders.dlq", "MessageTimedOut");
        metrics.sent("invoices", None);

        let labels = "messaging_consumer_group_name=\"billing\",\
                      messaging_destination_name=\"orders\",\
                      messaging_destination_partition_id=\"2\"";
        let failed = format!(
            "error_type=\"handler\",{labels},messaging_operation_name=\"process\",\
             messaging_system=\"kafka\""
        );
        let ok =
            format!("{labels},messaging_operation_name=\"process\",messaging_system=\"kafka\"");
        let bounds = [
            "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5",
            "5", "7.5", "10", "+Inf",
        ];
        let buckets = |labels: &str, below: usize| -> String {
            bounds
                .iter()
                .enumerate()
                .map(|(i, le)| {
                    let count = u8::from(i >= below);
                    format!("messaging_process_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}\n")
                })
                .collect()
        };
        let expected = format!(
            "\
# HELP kafka_handler_dead_letter_messages_total Records copied to a dead-letter topic after their last attempt
# TYPE kafka_handler_dead_letter_messages_total counter
kafka_handler_dead_letter_messages_total{{error_type=\"handler\",kafka_handler_dlq=\"orders.dlq\",messaging_consumer_group_name=\"billing\",messaging_destination_name=\"orders\"}} 1
# HELP kafka_handler_dead_letter_send_failures_total Dead-letter sends the broker did not acknowledge; the record stays uncommitted
# TYPE kafka_handler_dead_letter_send_failures_total counter
kafka_handler_dead_letter_send_failures_total{{error_type=\"MessageTimedOut\",messaging_consumer_group_name=\"billing\",messaging_destination_name=\"orders.dlq\"}} 1
# HELP kafka_handler_retries_total Attempts at a record after its first
# TYPE kafka_handler_retries_total counter
kafka_handler_retries_total{{messaging_consumer_group_name=\"billing\",messaging_destination_name=\"orders\"}} 1
# HELP messaging_client_consumed_messages_total Records delivered to the handlers
# TYPE messaging_client_consumed_messages_total counter
messaging_client_consumed_messages_total{{{labels},messaging_operation_name=\"poll\",messaging_system=\"kafka\"}} 1
# HELP messaging_client_sent_messages_total Records sent to the brokers, acknowledged or not
# TYPE messaging_client_sent_messages_total counter
messaging_client_sent_messages_total{{messaging_destination_name=\"invoices\",messaging_operation_name=\"send\",messaging_system=\"kafka\"}} 1
# HELP messaging_process_duration_seconds Duration of each handler attempt at a record, or at a batch
# TYPE messaging_process_duration_seconds histogram
{ok_buckets}messaging_process_duration_seconds_sum{{{ok}}} 0.003
messaging_process_duration_seconds_count{{{ok}}} 1
{failed_buckets}messaging_process_duration_seconds_sum{{{failed}}} 0.02
messaging_process_duration_seconds_count{{{failed}}} 1
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{{deployment_environment=\"prod \\\"eu\\\"\",service_name=\"orders\"}} 1
",
            failed_buckets = buckets(&failed, 2),
            ok_buckets = buckets(&ok, 0),
        );
        assert_eq!(view.render(), expected);
    }

    /// Gauges keep their name (no `_total`, and `{message}` adds no
    /// suffix); up/down counters are gauges; label values are escaped.
    #[test]
    fn renders_gauges_and_escapes_label_values() {
        let view = PrometheusText::new();
        let provider = SdkMeterProvider::builder()
            .with_resource(Resource::builder_empty().build())
            .with_reader(view.reader())
            .build();
        let meter = provider.meter("kafka-handler");
        meter
            .i64_gauge(crate::metrics::CONSUMER_LAG)
            .with_unit("{message}")
            .build()
            .record(
                42,
                &[KeyValue::new("messaging.destination.name", "a\\b\n\"c\"")],
            );
        let in_flight = meter
            .i64_up_down_counter("kafka_handler.in_flight")
            .with_unit("{record}")
            .build();
        in_flight.add(5, &[]);
        in_flight.add(-2, &[]);
        assert_eq!(
            view.render(),
            "\
# TYPE kafka_handler_consumer_lag gauge
kafka_handler_consumer_lag{messaging_destination_name=\"a\\\\b\\n\\\"c\\\"\"} 42
# TYPE kafka_handler_in_flight gauge
kafka_handler_in_flight 3
"
        );
    }

    #[test]
    fn renders_nothing_unregistered_or_after_shutdown() {
        assert_eq!(PrometheusText::new().render(), "");

        let view = PrometheusText::new();
        let provider = provider(&view);
        provider
            .meter("m")
            .u64_counter("kafka_handler.retries")
            .build()
            .add(1, &[]);
        assert!(view.render().contains("kafka_handler_retries_total 1"));
        provider.shutdown().expect("shutdown");
        assert_eq!(view.render(), "", "nothing after shutdown");
    }

    /// `/metrics` is served until the process exits, after telemetry shut
    /// down: a scrape then logs nothing (the exporter would log its failed
    /// collection as an error).
    #[test]
    fn a_scrape_after_shutdown_logs_nothing() {
        // As in telemetry::export's tests: a second live dispatcher keeps
        // another test's thread from disabling the exporter's callsite.
        let _second = tracing::Dispatch::new(tracing_subscriber::registry());
        let view = PrometheusText::new();
        let provider = provider(&view);
        provider.shutdown().expect("shutdown");
        let logs = Buffer::default();
        let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).finish();
        tracing::subscriber::with_default(subscriber, || assert_eq!(view.render(), ""));
        assert_eq!(logs.text(), "");
    }
}
