//! Metrics as Prometheus text, for `--metrics-addr`.
//!
//! A [`PrometheusText`] owns the SDK's pull reader ([`ManualReader`]),
//! registered with the meter provider beside the OTLP push reader; each
//! [`render`](PrometheusText::render) collects and writes the text
//! exposition format 0.0.4, converting names as the OpenTelemetry
//! "Prometheus and OpenMetrics compatibility" specification says:
//!
//! - metric and label names: characters outside `[a-zA-Z0-9_:]` become
//!   `_` (runs of `_` collapse in metric names), a leading digit is
//!   prefixed (`_` for metrics, `key_` for labels);
//! - the unit becomes a suffix (`s` → `_seconds`, `By` → `_bytes`,
//!   `m/s` → `_meters_per_second`, ...), `{message}`-style annotations are
//!   dropped, and `1` becomes `_ratio` on gauges only;
//! - monotonic sums are counters with `_total`, non-monotonic sums (up/down
//!   counters) and gauges are gauges, histograms are `_bucket{le=".."}`
//!   (cumulative, ending in `+Inf`), `_sum` and `_count`;
//! - the resource becomes `target_info`, its attributes as labels.
//!
//! Exponential histograms are not rendered (no instrument here makes them).

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write as _};
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, Gauge, Histogram, Metric, MetricData, ResourceMetrics, Sum,
};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use opentelemetry_sdk::Resource;

/// Renders the current metrics in the Prometheus text exposition format.
///
/// Cloning is cheap: clones share the one reader.
#[derive(Clone, Debug)]
pub(crate) struct PrometheusText {
    reader: Arc<ManualReader>,
}

impl PrometheusText {
    /// A view with its own cumulative pull reader, not yet registered: pass
    /// [`Self::reader`] to the meter provider's `with_reader`.
    pub(crate) fn new() -> Self {
        Self {
            reader: Arc::new(
                ManualReader::builder()
                    .with_temporality(Temporality::Cumulative)
                    .build(),
            ),
        }
    }

    /// The reader to register with the meter provider (it shares this
    /// view's reader).
    pub(crate) fn reader(&self) -> SharedReader {
        SharedReader(Arc::clone(&self.reader))
    }

    /// The metrics now, as `text/plain; version=0.0.4`. Empty when the
    /// reader is not registered or the provider has shut down.
    pub(crate) fn render(&self) -> String {
        let mut metrics = ResourceMetrics::default();
        match self.reader.collect(&mut metrics) {
            Ok(()) => render(&metrics),
            Err(_) => String::new(),
        }
    }
}

/// A [`ManualReader`] shared between the meter provider and a
/// [`PrometheusText`] (the provider takes its readers by value).
#[derive(Debug)]
pub(crate) struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// `metrics` in the Prometheus text format: `target_info` first, then one
/// family per metric name, in name order; series sorted by their labels.
pub(crate) fn render(metrics: &ResourceMetrics) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            add_metric(&mut families, metric);
        }
    }
    let mut out = String::new();
    write_target_info(&mut out, metrics.resource());
    for (name, family) in &families {
        family.write(&mut out, name);
    }
    out
}

/// The samples of one metric name, with its metadata.
#[derive(Debug)]
struct Family {
    kind: Kind,
    help: String,
    /// Rendered series, each keyed by its sorted label text (so output is
    /// stable whatever order the SDK hands data points in).
    series: Vec<(String, String)>,
}

impl Family {
    /// Writes the family's `# HELP`, `# TYPE` and samples as `name`.
    fn write(&self, out: &mut String, name: &str) {
        if !self.help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&self.help));
        }
        let _ = writeln!(out, "# TYPE {name} {}", self.kind.as_str());
        let mut series: Vec<&(String, String)> = self.series.iter().collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, text) in series {
            out.push_str(text);
        }
    }
}

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A monotonic sum.
    Counter,
    /// A gauge, or a non-monotonic sum.
    Gauge,
    /// An explicit-bucket histogram.
    Histogram,
}

impl Kind {
    /// The `# TYPE` name.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Adds `metric`'s series to the family of its Prometheus name.
fn add_metric(families: &mut BTreeMap<String, Family>, metric: &Metric) {
    let Some(kind) = kind_of(metric.data()) else {
        return;
    };
    let name = metric_name(metric.name(), metric.unit(), kind);
    let family = families.entry(name.clone()).or_insert_with(|| Family {
        kind,
        help: metric.description().to_owned(),
        series: Vec::new(),
    });
    // Two instruments (from different scopes) converting to one name but
    // of different types cannot share a family: the first one wins.
    if family.kind != kind {
        return;
    }
    match metric.data() {
        AggregatedMetrics::F64(data) => add_series(family, &name, data),
        AggregatedMetrics::U64(data) => add_series(family, &name, data),
        AggregatedMetrics::I64(data) => add_series(family, &name, data),
    }
}

/// The Prometheus type of `data`; `None` for what is not rendered.
fn kind_of(data: &AggregatedMetrics) -> Option<Kind> {
    /// The type of one number type's data.
    fn of<T>(data: &MetricData<T>) -> Option<Kind> {
        match data {
            MetricData::Gauge(_) => Some(Kind::Gauge),
            MetricData::Sum(sum) if sum.is_monotonic() => Some(Kind::Counter),
            MetricData::Sum(_) => Some(Kind::Gauge),
            MetricData::Histogram(_) => Some(Kind::Histogram),
            MetricData::ExponentialHistogram(_) => None,
        }
    }
    match data {
        AggregatedMetrics::F64(data) => of(data),
        AggregatedMetrics::U64(data) => of(data),
        AggregatedMetrics::I64(data) => of(data),
    }
}

/// Adds the series of `data` to `family`.
fn add_series<T: Number>(family: &mut Family, name: &str, data: &MetricData<T>) {
    match data {
        MetricData::Gauge(gauge) => add_gauge(family, name, gauge),
        MetricData::Sum(sum) => add_sum(family, name, sum),
        MetricData::Histogram(histogram) => add_histogram(family, name, histogram),
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// One `name{labels} value` per gauge data point.
fn add_gauge<T: Number>(family: &mut Family, name: &str, gauge: &Gauge<T>) {
    for point in gauge.data_points() {
        let labels = Labels::from_attributes(point.attributes());
        let text = format!("{name}{} {}\n", labels.text(), point.value().prom());
        family.series.push((labels.text(), text));
    }
}

/// One `name{labels} value` per sum data point.
fn add_sum<T: Number>(family: &mut Family, name: &str, sum: &Sum<T>) {
    for point in sum.data_points() {
        let labels = Labels::from_attributes(point.attributes());
        let text = format!("{name}{} {}\n", labels.text(), point.value().prom());
        family.series.push((labels.text(), text));
    }
}

/// Cumulative `_bucket`s, `_sum` and `_count` per histogram data point.
fn add_histogram<T: Number>(family: &mut Family, name: &str, histogram: &Histogram<T>) {
    for point in histogram.data_points() {
        let labels = Labels::from_attributes(point.attributes());
        let mut text = String::new();
        let mut cumulative = 0u64;
        let mut counts = point.bucket_counts();
        for bound in point.bounds() {
            cumulative += counts.next().unwrap_or(0);
            let le = labels.with("le", &format_f64(bound));
            let _ = writeln!(text, "{name}_bucket{le} {cumulative}");
        }
        let le = labels.with("le", "+Inf");
        let _ = writeln!(text, "{name}_bucket{le} {}", point.count());
        let _ = writeln!(text, "{name}_sum{} {}", labels.text(), point.sum().prom());
        let _ = writeln!(text, "{name}_count{} {}", labels.text(), point.count());
        family.series.push((labels.text(), text));
    }
}

/// `target_info`, the resource's attributes as labels, when it has any.
fn write_target_info(out: &mut String, resource: &Resource) {
    if resource.is_empty() {
        return;
    }
    let labels = Labels::from_pairs(resource.iter().map(|(k, v)| (k.as_str(), v)));
    out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
    let _ = writeln!(out, "target_info{} 1", labels.text());
}

/// A sample value, written as Prometheus reads it.
trait Number: Copy {
    /// The value in the text format.
    fn prom(self) -> String;
}

impl Number for u64 {
    fn prom(self) -> String {
        self.to_string()
    }
}

impl Number for i64 {
    fn prom(self) -> String {
        self.to_string()
    }
}

impl Number for f64 {
    fn prom(self) -> String {
        format_f64(self)
    }
}

/// `value` as Prometheus writes floats: `+Inf`, `-Inf`, `NaN`, else the
/// shortest decimal that reads back as the same value.
fn format_f64(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        value.to_string()
    }
}

/// Sanitized, sorted labels of one series.
#[derive(Debug, Default)]
struct Labels {
    /// `(sanitized name, escaped value)`, sorted by name, names unique.
    pairs: Vec<(String, String)>,
}

impl Labels {
    /// Labels from a data point's attributes.
    fn from_attributes<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> Self {
        Self::from_pairs(attributes.map(|kv| (kv.key.as_str(), &kv.value)))
    }

    /// Labels from attribute pairs. Attributes whose names sanitize to the
    /// same label have their values joined with `;`, in the order of
    /// their original names (as the specification says).
    fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a Value)>) -> Self {
        let mut originals: Vec<(&str, &Value)> = pairs.collect();
        originals.sort_by(|a, b| a.0.cmp(b.0));
        let mut merged: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in originals {
            let value = value.as_str();
            merged
                .entry(label_name(key))
                .and_modify(|joined| {
                    joined.push(';');
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        Self {
            pairs: merged
                .into_iter()
                .map(|(name, value)| (name, escape_label_value(&value)))
                .collect(),
        }
    }

    /// `{a="1",b="2"}`, or nothing without labels.
    fn text(&self) -> String {
        self.render(None)
    }

    /// The labels plus one more, last (used for `le`).
    fn with(&self, name: &str, value: &str) -> String {
        self.render(Some((name, value)))
    }

    /// `{a="1",..}` with `extra` last; nothing when there is no label.
    fn render(&self, extra: Option<(&str, &str)>) -> String {
        if self.pairs.is_empty() && extra.is_none() {
            return String::new();
        }
        let mut text = String::from("{");
        let all = self
            .pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(extra);
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = write!(text, "{name}=\"{value}\"");
        }
        text.push('}');
        text
    }
}

/// The Prometheus name of an OpenTelemetry metric: sanitized, with the
/// unit's suffix and, for counters, `_total`.
pub(crate) fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut prom = sanitize_metric_name(name);
    if let Some(suffix) = unit_suffix(unit, kind) {
        if !prom.ends_with(&format!("_{suffix}")) && prom != suffix {
            prom.push('_');
            prom.push_str(&suffix);
        }
    }
    if kind == Kind::Counter && !prom.ends_with("_total") {
        prom.push_str("_total");
    }
    prom
}

/// Characters outside `[a-zA-Z0-9_:]` become `_`, runs of `_` collapse,
/// and a leading digit gets a `_` prefix.
fn sanitize_metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Characters outside `[a-zA-Z0-9_]` become `_`, and a leading digit gets
/// a `key_` prefix.
fn label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The name suffix for a UCUM `unit`, or `None`: annotations (`{..}`)
/// dropped, well-known units spelt out, `x/y` as `x_per_y`, `1` as
/// `ratio` on gauges only.
fn unit_suffix(unit: &str, kind: Kind) -> Option<String> {
    let unit = strip_annotations(unit);
    let unit = unit.trim();
    if unit.is_empty() {
        return None;
    }
    if unit == "1" {
        return (kind == Kind::Gauge).then(|| "ratio".to_owned());
    }
    let suffix = match unit.split_once('/') {
        Some((numerator, denominator)) => {
            let per = per_unit_name(denominator.trim());
            match unit_name(numerator.trim()) {
                "" => format!("per_{per}"),
                numerator => format!("{numerator}_per_{per}"),
            }
        }
        None => unit_name(unit).to_owned(),
    };
    let suffix = sanitize_metric_name(&suffix);
    let suffix = suffix.trim_matches('_');
    (!suffix.is_empty()).then(|| suffix.to_owned())
}

/// `unit` without its `{...}` annotations.
fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The spelt-out name of a unit, as the specification maps them; other
/// units as given.
fn unit_name(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        other => other,
    }
}

/// The name of a unit after `/`.
fn per_unit_name(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// A label value escaped for the text format: `\`, `"` and newlines.
fn escape_label_value(value: &str) -> String {
    escape(value, true)
}

/// HELP text escaped for the text format: `\` and newlines.
fn escape_help(help: &str) -> String {
    escape(help, false)
}

/// `text` with backslashes and newlines escaped, and double quotes when
/// `quotes`.
fn escape(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

impl Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    fn provider(view: &PrometheusText) -> SdkMeterProvider {
        SdkMeterProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("billing")
                    .with_attribute(KeyValue::new("deployment.environment", "prod \"eu\""))
                    .build(),
            )
            .with_reader(view.reader())
            .build()
    }

    #[test]
    fn renders_a_counter_a_histogram_and_a_gauge_with_their_attributes() {
        let view = PrometheusText::new();
        let provider = provider(&view);
        let meter = provider.meter("kafka-handler");
        let consumed = meter
            .u64_counter("messaging.client.consumed.messages")
            .with_unit("{message}")
            .with_description("Records handed to handlers")
            .build();
        consumed.add(3, &[KeyValue::new("messaging.destination.name", "orders")]);
        consumed.add(
            1,
            &[KeyValue::new("messaging.destination.name", "invoices")],
        );
        let duration = meter
            .f64_histogram("messaging.process.duration")
            .with_unit("s")
            .with_description("Handler time")
            .with_boundaries(vec![0.01, 0.1, 1.0])
            .build();
        let attrs = [
            KeyValue::new("messaging.consumer.group.name", "billing"),
            KeyValue::new("error.type", "a\\b\nc"),
        ];
        for value in [0.0078125, 0.0625, 0.5, 4.0] {
            duration.record(value, &attrs);
        }
        let lag = meter
            .i64_gauge("kafka_handler.consumer.lag")
            .with_unit("{message}")
            .build();
        lag.record(
            42,
            &[KeyValue::new("messaging.destination.partition.id", "0")],
        );

        let expected = "\
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{deployment_environment=\"prod \\\"eu\\\"\",service_name=\"billing\"} 1
# TYPE kafka_handler_consumer_lag gauge
kafka_handler_consumer_lag{messaging_destination_partition_id=\"0\"} 42
# HELP messaging_client_consumed_messages_total Records handed to handlers
# TYPE messaging_client_consumed_messages_total counter
messaging_client_consumed_messages_total{messaging_destination_name=\"invoices\"} 1
messaging_client_consumed_messages_total{messaging_destination_name=\"orders\"} 3
# HELP messaging_process_duration_seconds Handler time
# TYPE messaging_process_duration_seconds histogram
messaging_process_duration_seconds_bucket{error_type=\"a\\\\b\\nc\",messaging_consumer_group_name=\"billing\",le=\"0.01\"} 1
messaging_process_duration_seconds_bucket{error_type=\"a\\\\b\\nc\",messaging_consumer_group_name=\"billing\",le=\"0.1\"} 2
messaging_process_duration_seconds_bucket{error_type=\"a\\\\b\\nc\",messaging_consumer_group_name=\"billing\",le=\"1\"} 3
messaging_process_duration_seconds_bucket{error_type=\"a\\\\b\\nc\",messaging_consumer_group_name=\"billing\",le=\"+Inf\"} 4
messaging_process_duration_seconds_sum{error_type=\"a\\\\b\\nc\",messaging_consumer_group_name=\"billing\"} 4.5703125
messaging_process_duration_seconds_count{error_type=\"a\\\\b\\nc\",messaging_consumer_group_name=\"billing\"} 4
";
        assert_eq!(view.render(), expected);
    }

    #[test]
    fn up_down_counters_are_gauges_and_unregistered_views_render_nothing() {
        let unregistered = PrometheusText::new();
        assert_eq!(unregistered.render(), "");

        let view = PrometheusText::new();
        let provider = SdkMeterProvider::builder()
            .with_resource(Resource::builder_empty().build())
            .with_reader(view.reader())
            .build();
        let in_flight = provider
            .meter("m")
            .i64_up_down_counter("kafka_handler.in_flight")
            .with_unit("{record}")
            .build();
        in_flight.add(5, &[]);
        in_flight.add(-2, &[]);
        assert_eq!(
            view.render(),
            "# TYPE kafka_handler_in_flight gauge\nkafka_handler_in_flight 3\n"
        );
        provider.shutdown().expect("shutdown");
        assert_eq!(view.render(), "", "nothing after shutdown");
    }

    #[test]
    fn converts_names_units_and_counter_suffixes() {
        let cases = [
            (
                "messaging.process.duration",
                "s",
                Kind::Histogram,
                "messaging_process_duration_seconds",
            ),
            (
                "messaging.client.sent.messages",
                "{message}",
                Kind::Counter,
                "messaging_client_sent_messages_total",
            ),
            (
                "kafka_handler.dead_letter.messages",
                "{message}",
                Kind::Counter,
                "kafka_handler_dead_letter_messages_total",
            ),
            (
                "kafka_handler.retries",
                "{attempt}",
                Kind::Counter,
                "kafka_handler_retries_total",
            ),
            (
                "kafka_handler.consumer.lag",
                "{message}",
                Kind::Gauge,
                "kafka_handler_consumer_lag",
            ),
            (
                "http.server.request.size",
                "By",
                Kind::Histogram,
                "http_server_request_size_bytes",
            ),
            ("cpu.utilization", "1", Kind::Gauge, "cpu_utilization_ratio"),
            ("cpu.time", "1", Kind::Counter, "cpu_time_total"),
            ("speed", "m/s", Kind::Gauge, "speed_meters_per_second"),
            ("rate", "{packet}/s", Kind::Gauge, "rate_per_second"),
            ("latency_seconds", "s", Kind::Histogram, "latency_seconds"),
            ("requests_total", "", Kind::Counter, "requests_total"),
            ("2xx..responses--x", "", Kind::Gauge, "_2xx_responses_x"),
            ("temp", "Cel", Kind::Gauge, "temp_celsius"),
        ];
        for (name, unit, kind, expected) in cases {
            assert_eq!(
                metric_name(name, unit, kind),
                expected,
                "{name} [{unit}] {kind}"
            );
        }
    }

    #[test]
    fn sanitizes_label_names_and_merges_collisions() {
        let a = Value::from("1");
        let b = Value::from("2");
        let c = Value::from(true);
        let labels = Labels::from_pairs([("a.b", &b), ("a_b", &a), ("9lives", &c)].into_iter());
        assert_eq!(labels.text(), "{a_b=\"2;1\",key_9lives=\"true\"}");
        assert_eq!(label_name("http.method"), "http_method");
    }

    #[test]
    fn formats_floats_as_prometheus_reads_them() {
        assert_eq!(format_f64(1.0), "1");
        assert_eq!(format_f64(0.005), "0.005");
        assert_eq!(format_f64(f64::INFINITY), "+Inf");
        assert_eq!(format_f64(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_f64(f64::NAN), "NaN");
    }
}
