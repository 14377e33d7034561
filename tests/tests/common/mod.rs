//! Shared set-up for the end-to-end tests: telemetry with the SDK's
//! in-memory exporter, an embedded broker, traced test records, bounded waits.

#![allow(dead_code, unreachable_pub)]

pub mod batches;
pub mod boundaries;
pub mod concurrency;
pub mod scenarios;

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use kafka_handler::testing::{unique_topic, EmbeddedBroker, TestRecord};
use kafka_handler::{Backoff, Consumer, ConsumerBuilder, Handler, Shutdown};
use opentelemetry::trace::{
    SpanContext, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{global, Context, KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;

/// How the test binary installs telemetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The OpenTelemetry SDK plus a `tracing` subscriber with the
    /// tracing-opentelemetry layer: the layer owns the process span.
    TracingLayer,
    /// The OpenTelemetry SDK only: the runtime starts the span itself.
    OtelOnly,
}

pub struct Telemetry {
    pub mode: Mode,
    pub exporter: InMemorySpanExporter,
    pub provider: SdkTracerProvider,
    /// The global meter provider's exporter (cumulative sums).
    pub metrics: InMemoryMetricExporter,
    pub meter_provider: SdkMeterProvider,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Installs telemetry once per test binary. Every test of a binary must ask
/// for the same mode.
pub fn telemetry(mode: Mode) -> &'static Telemetry {
    let telemetry = TELEMETRY.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        // A batch span links every record of its batch: room for the
        // largest batches the tests cut (the SDK's default is 128).
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_max_links_per_span(1024)
            .build();
        global::set_tracer_provider(provider.clone());
        global::set_text_map_propagator(TraceContextPropagator::new());
        // Installed before any consumer starts: the runtime creates its
        // instruments from the global meter provider in `Consumer::run`.
        let metrics = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        global::set_meter_provider(meter_provider.clone());
        if mode == Mode::TracingLayer {
            use tracing_subscriber::layer::SubscriberExt as _;
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")));
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other subscriber is installed");
        }
        Telemetry {
            mode,
            exporter,
            provider,
            metrics,
            meter_provider,
        }
    });
    assert_eq!(telemetry.mode, mode, "one telemetry mode per test binary");
    telemetry
}

/// [`telemetry`], then `propagation` installed as the global text-map
/// propagator in place of the W3C one [`telemetry`] installs: for a test
/// binary whose consumers read other formats. Installing again replaces it.
pub fn telemetry_with_propagation(
    mode: Mode,
    propagation: &kafka_handler::propagation::Propagation,
) -> &'static Telemetry {
    let telemetry = telemetry(mode);
    propagation.install();
    telemetry
}

impl Telemetry {
    /// Finished spans named `name`.
    pub fn spans_named(&self, name: &str) -> Vec<SpanData> {
        self.exporter
            .get_finished_spans()
            .expect("in-memory exporter")
            .into_iter()
            .filter(|span| span.name == name)
            .collect()
    }

    /// The finished `process {topic}` spans, in the order they started.
    pub fn process_spans(&self, topic: &str) -> Vec<SpanData> {
        let mut spans = self.spans_named(&format!("process {topic}"));
        spans.sort_by_key(|span| span.start_time);
        spans
    }

    /// The finished `send {dlq}` spans: those that ended with an error, and
    /// those that did not.
    pub fn dead_letter_sends(&self, dlq: &str) -> (Vec<SpanData>, Vec<SpanData>) {
        self.spans_named(&format!("send {dlq}"))
            .into_iter()
            .partition(is_error)
    }

    /// The current total of the `u64` counter `name` over the data points
    /// that carry every attribute of `filter` (0 when there are none).
    /// Filter by a test's own topic, so tests sharing the binary do not see
    /// each other's counts.
    pub fn counter(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        self.meter_provider
            .force_flush()
            .expect("flushing the meter provider");
        let exports = self
            .metrics
            .get_finished_metrics()
            .expect("in-memory metric exporter");
        kafka_handler::testing::counter_total(&exports, name, filter)
            .unwrap_or_else(|| panic!("{name} is not a u64 counter"))
    }
}

/// Headers as [`TestRecord::headers`] holds them.
pub type TestHeaders = Vec<(&'static str, Option<Vec<u8>>)>;

/// A producer span for a test record, ended, and the headers that carry it.
pub fn traced_headers(topic: &str) -> (SpanContext, TestHeaders) {
    let tracer = global::tracer("test-producer");
    let span = tracer
        .span_builder(format!("send {topic}"))
        .with_kind(SpanKind::Producer)
        .start_with_context(&tracer, &Context::new());
    let cx = Context::new().with_span(span);
    let span_context = cx.span().span_context().clone();
    let mut carrier: HashMap<String, String> = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&cx, &mut carrier));
    cx.span().end();
    let value = carrier
        .remove("traceparent")
        .expect("the propagator writes a traceparent");
    (
        span_context,
        vec![("traceparent", Some(value.into_bytes()))],
    )
}

/// `record` with the headers of a new, ended producer span appended, and
/// that span's context.
pub fn traced(mut record: TestRecord<'_>) -> (SpanContext, TestRecord<'_>) {
    let (producer, headers) = traced_headers(record.topic);
    record.headers.extend(headers);
    (producer, record)
}

/// A topic no other test uses, created with `partitions` partitions, and a
/// group name no other test uses.
pub async fn new_topic(broker: &EmbeddedBroker, prefix: &str, partitions: i32) -> (String, String) {
    let topic = unique_topic(prefix);
    broker.create_topic(&topic, partitions).await.unwrap();
    (topic, unique_topic(&format!("{prefix}-group")))
}

/// [`new_topic`], and a one-partition dead-letter topic named after it:
/// (topic, group, dead-letter topic).
pub async fn new_topic_with_dlq(
    broker: &EmbeddedBroker,
    prefix: &str,
    partitions: i32,
) -> (String, String, String) {
    let (topic, group) = new_topic(broker, prefix, partitions).await;
    let (dlq, _) = new_topic(broker, &format!("{prefix}-dlq"), 1).await;
    (topic, group, dlq)
}

/// Produces `record` and waits for the broker's acknowledgement.
pub async fn send(broker: &EmbeddedBroker, record: TestRecord<'_>) -> (i32, i64) {
    broker
        .send(record)
        .await
        .expect("the broker accepts the record")
}

/// The backoff between the tests' retries: short, so that they run fast.
pub const FAST: Backoff = Backoff::constant(Duration::from_millis(10));

/// `handler`, retrying a failed record `retries` times ([`FAST`]), then
/// sending a copy of it to `dlq`.
pub fn dead_lettering(handler: Handler, retries: u32, dlq: &str) -> Handler {
    handler
        .with_retries(retries)
        .with_backoff(FAST)
        .with_dlq(dlq)
}

/// Starts a consumer for `handlers` on `broker` with test timings.
pub fn start_consumer(
    broker: &EmbeddedBroker,
    handlers: Vec<Handler>,
) -> (Shutdown, JoinHandle<Result<(), kafka_handler::Error>>) {
    start_consumer_with(broker, handlers, |builder| builder)
}

/// [`start_consumer`], with more settings.
pub fn start_consumer_with(
    broker: &EmbeddedBroker,
    handlers: Vec<Handler>,
    configure: impl FnOnce(ConsumerBuilder) -> ConsumerBuilder,
) -> (Shutdown, JoinHandle<Result<(), kafka_handler::Error>>) {
    let consumer = build_consumer(broker, handlers, configure);
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(consumer.run(shutdown.clone()));
    (shutdown, handle)
}

/// A consumer for `handlers` on `broker` with test timings, configured
/// further by `configure`.
fn build_consumer(
    broker: &EmbeddedBroker,
    handlers: Vec<Handler>,
    configure: impl FnOnce(ConsumerBuilder) -> ConsumerBuilder,
) -> Consumer {
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handlers(handlers)
        .commit_interval(Duration::from_millis(200))
        .shutdown_timeout(Duration::from_secs(10));
    for (key, value) in broker.consumer_properties() {
        builder = builder.set(key, value);
    }
    configure(builder)
        .build()
        .expect("a valid consumer configuration")
}

/// Stops a consumer and checks it stopped cleanly.
pub async fn stop_consumer(
    shutdown: Shutdown,
    handle: JoinHandle<Result<(), kafka_handler::Error>>,
) {
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the consumer stops within 30 s of shutdown")
        .expect("the consumer task does not panic")
        .expect("the consumer stops without error");
}

/// Polls `condition` every 10 ms until it holds, failing with `what` after
/// `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `group` has committed `ends` on `topic` (one end per
/// partition, from partition 0), polling the broker, failing after `limit`.
pub async fn wait_for_commits(
    limit: Duration,
    broker: &EmbeddedBroker,
    group: &str,
    topic: &str,
    ends: &[i64],
) {
    let expected: Vec<Option<i64>> = ends.iter().copied().map(Some).collect();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let now = committed(broker, group, topic, ends.len() as i32).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for group {group} to commit {expected:?} on \
             {topic}; committed: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a consumer for `handlers`, awaits `until` (the waits for what
/// the test needs to have happened), then stops the consumer cleanly.
pub async fn run_until(
    broker: &EmbeddedBroker,
    handlers: Vec<Handler>,
    until: impl Future<Output = ()>,
) {
    let (shutdown, running) = start_consumer(broker, handlers);
    until.await;
    stop_consumer(shutdown, running).await;
}

/// Waits until a dead-letter copy sent to `dlq` is acknowledged (a
/// `send {dlq}` span without an error), failing after `limit`.
pub async fn wait_for_acknowledged_copy(telemetry: &Telemetry, dlq: &str, limit: Duration) {
    wait_until(limit, &format!("an acknowledged copy in {dlq}"), || {
        !telemetry.dead_letter_sends(dlq).1.is_empty()
    })
    .await;
}

/// `handlers` consuming `topic` in `group` instead of their own.
pub fn retarget(handlers: Vec<Handler>, topic: &str, group: &str) -> Vec<Handler> {
    handlers
        .into_iter()
        .map(|h| h.with_topics([topic]).with_group(group))
        .collect()
}

/// The integer attribute `key` of `span`; panics when it is missing or not
/// an integer.
pub fn int_attribute(span: &SpanData, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Value::I64(n)) => n,
        other => panic!("{key} is {other:?}"),
    }
}

/// Asserts that `span` is a child of `producer` in its trace, or, without
/// one, the root of a new trace.
pub fn assert_continues(span: &SpanData, producer: Option<&SpanContext>, what: &str) {
    match producer {
        Some(producer) => {
            assert_eq!(
                span.span_context.trace_id(),
                producer.trace_id(),
                "{what}: its producer's trace"
            );
            assert_eq!(
                span.parent_span_id,
                producer.span_id(),
                "{what}: a child of its producer"
            );
        }
        None => assert_eq!(
            span.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "{what}: no context, a new root"
        ),
    }
}

/// The spans `Context::current()` and `tracing::Span::current()` name
/// (the latter invalid without the tracing-opentelemetry layer).
pub fn current_span_contexts() -> (SpanContext, SpanContext) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    (
        Context::current().span().span_context().clone(),
        tracing::Span::current()
            .context()
            .span()
            .span_context()
            .clone(),
    )
}

/// What is current somewhere: the OpenTelemetry context's span and
/// `tracing::Span::current()`'s OpenTelemetry span (invalid without the
/// layer, or with no span entered).
#[derive(Clone, Debug)]
pub struct Current {
    pub otel: SpanContext,
    pub traced: SpanContext,
    pub thread: std::thread::ThreadId,
}

impl Current {
    pub fn now() -> Self {
        let (otel, traced) = current_span_contexts();
        Self {
            otel,
            traced,
            thread: std::thread::current().id(),
        }
    }
}

/// The one span of `spans` named `name`; fails when there is none or more.
pub fn only_span(spans: &[SpanData], name: &str) -> SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "exactly one span named {name:?}: {found:?}");
    found[0].clone()
}

/// The value of attribute `key` on `span`.
pub fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// The `error.type` attribute of `span`.
pub fn error_type(span: &SpanData) -> Option<Value> {
    attribute(span, "error.type")
}

/// Whether `span` ended with an error status.
pub fn is_error(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
}

/// Asserts that `span` is a child of `parent`: in its trace, with it as
/// the parent.
pub fn assert_child_of(span: &SpanData, parent: &SpanContext, what: &str) {
    assert_eq!(
        span.span_context.trace_id(),
        parent.trace_id(),
        "{what}: the parent's trace"
    );
    assert_eq!(span.parent_span_id, parent.span_id(), "{what}: the parent");
}

/// Asserts the attributes TRACING.md requires on a process span.
pub fn assert_process_attributes(
    span: &SpanData,
    topic: &str,
    partition: i32,
    offset: i64,
    group: &str,
    key: Option<&str>,
) {
    let expect = |name: &str, value: Value| {
        assert_eq!(
            attribute(span, name),
            Some(value.clone()),
            "{name} on {} (offset {offset})",
            span.name
        );
    };
    assert_eq!(span.span_kind, SpanKind::Consumer);
    assert_eq!(span.name, format!("process {topic}"));
    let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    keys.sort_unstable();
    let count = keys.len();
    keys.dedup();
    assert_eq!(
        keys.len(),
        count,
        "an attribute is set twice on {}: {keys:?}",
        span.name
    );
    expect("messaging.system", "kafka".into());
    expect("messaging.operation.type", "process".into());
    expect("messaging.operation.name", "process".into());
    expect("messaging.destination.name", topic.to_owned().into());
    expect(
        "messaging.destination.partition.id",
        partition.to_string().into(),
    );
    expect("messaging.kafka.offset", offset.into());
    expect("messaging.consumer.group.name", group.to_owned().into());
    match key {
        Some(key) => expect("messaging.kafka.message.key", key.to_owned().into()),
        None => assert_eq!(attribute(span, "messaging.kafka.message.key"), None),
    }
    assert_eq!(attribute(span, "messaging.kafka.message.tombstone"), None);
}

/// The contract's end-to-end tests for one telemetry mode: each test binary
/// expands it once with its own mode.
#[macro_export]
macro_rules! contract_tests {
    ($mode:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn each_record_continues_its_producers_trace() {
            common::scenarios::continuity($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_record_without_headers_is_a_new_root() {
            common::scenarios::no_leaks_between_records($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn nothing_stays_current_after_a_record() {
            common::scenarios::nothing_current_after_a_record($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn malformed_traceparents_start_new_traces() {
            common::scenarios::malformed_headers($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_restarted_consumer_resumes_after_the_last_handled_record() {
            common::scenarios::resumes_after_the_last_handled_record($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn each_attempt_and_the_dead_letter_copy_stay_in_the_producers_trace() {
            common::scenarios::retried_then_dead_lettered($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_batch_span_links_each_record_and_each_record_keeps_its_trace() {
            common::batches::batch_links_and_record_traces($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_batch_links_only_valid_contexts_and_dead_letters_bad_payloads_alone() {
            common::batches::batch_of_mixed_records($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn spawned_tasks_and_threads_continue_the_records_span() {
            common::boundaries::spawned_work_is_a_child_of_the_record($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn an_async_handler_keeps_its_context_when_it_resumes_on_another_thread() {
            common::boundaries::async_handler_keeps_its_context_across_threads($mode).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn records_in_flight_side_by_side_each_keep_their_own_context() {
            common::concurrency::records_in_flight_keep_their_own_context($mode).await;
        }
    };
}

/// Every record in `topic` now, read from the beginning of each partition
/// without a consumer group. Empty when the topic does not exist.
pub async fn read_all(broker: &EmbeddedBroker, topic: &str) -> Vec<OwnedMessage> {
    let brokers = broker.bootstrap_servers().to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "kafka-handler-tests-reader")
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .create()
            .expect("a reader");
        let timeout = Duration::from_secs(10);
        let Ok(metadata) = consumer.fetch_metadata(Some(&topic), timeout) else {
            return Vec::new();
        };
        let Some(partitions) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
        else {
            return Vec::new();
        };
        let mut list = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, timeout)
                .expect("watermarks");
            if high > low {
                list.add_partition_offset(&topic, partition, Offset::Offset(low))
                    .unwrap();
                ends.insert(partition, high);
            }
        }
        let mut records = Vec::new();
        if ends.is_empty() {
            return records;
        }
        consumer.assign(&list).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !ends.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out reading {topic}"
            );
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("a record").detach();
                if ends.get(&message.partition()) == Some(&(message.offset() + 1)) {
                    ends.remove(&message.partition());
                }
                records.push(message);
            }
        }
        records
    })
    .await
    .expect("the reader does not panic")
}

/// The offset `group` has committed for each of `topic`'s first
/// `partitions` partitions (`None`: nothing committed).
pub async fn committed(
    broker: &EmbeddedBroker,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let brokers = broker.bootstrap_servers().to_owned();
    let group = group.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("an offset reader");
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(
                |partition| match committed.find_partition(&topic, partition) {
                    Some(elem) => match elem.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    },
                    None => None,
                },
            )
            .collect()
    })
    .await
    .expect("the offset reader does not panic")
}

/// The one record in `dlq`; fails when there is none or more than one.
pub async fn only_copy(broker: &EmbeddedBroker, dlq: &str) -> OwnedMessage {
    let mut copies = read_all(broker, dlq).await;
    assert_eq!(copies.len(), 1, "exactly one dead-letter copy in {dlq}");
    copies.remove(0)
}

/// Asserts, for each `(key, value)`, that header `key` appears once on
/// `message`, with the text `value`.
pub fn assert_headers(message: &OwnedMessage, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            header(message, key).as_deref(),
            Some(*value),
            "header {key}"
        );
    }
}

/// The value of header `key` on `message`, as text; panics if it repeats.
pub fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    let values: Vec<String> = header_values(message, key);
    assert!(
        values.len() <= 1,
        "header {key} appears {} times",
        values.len()
    );
    values.into_iter().next()
}

/// Every value of header `key` on `message`, as text.
pub fn header_values(message: &OwnedMessage, key: &str) -> Vec<String> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter(|h| h.key == key)
                .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that no header key repeats on `message`.
pub fn assert_unique_headers(message: &OwnedMessage) {
    let mut keys: Vec<String> = message
        .headers()
        .map(|headers| headers.iter().map(|h| h.key.to_owned()).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    let count = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), count, "a header repeats: {keys:?}");
}

/// The `traceparent` a W3C propagator writes for a sampled span.
pub fn traceparent_of(span: &SpanData) -> String {
    format!(
        "00-{}-{}-01",
        span.span_context.trace_id(),
        span.span_context.span_id()
    )
}

/// Whether the data point with `attributes` carries every `(key, value)`
/// of `filter`, and, when `error_type` is given, that `error.type` (`None`
/// within it: none at all).
fn point_matches<'a>(
    attributes: impl Iterator<Item = &'a KeyValue>,
    filter: &[(&str, &str)],
    error_type: Option<Option<&str>>,
) -> bool {
    let attributes: Vec<&KeyValue> = attributes.collect();
    let value = |key: &str| {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    };
    filter
        .iter()
        .all(|(key, expected)| value(key).as_deref() == Some(*expected))
        && error_type.is_none_or(|expected| value("error.type").as_deref() == expected)
}

impl Telemetry {
    /// Runs `read` on metric `name` in the newest export that has it, after
    /// a flush (`None` when no export has it). With `newest_only`, only the
    /// export this flush produced is looked at: for gauges, whose data
    /// points are those of the last collection only.
    fn read_metric<T>(
        &self,
        name: &str,
        newest_only: bool,
        read: impl Fn(&opentelemetry_sdk::metrics::data::Metric) -> T,
    ) -> Option<T> {
        self.meter_provider
            .force_flush()
            .expect("flushing the meter provider");
        let exports = self
            .metrics
            .get_finished_metrics()
            .expect("in-memory metric exporter");
        let take = if newest_only { 1 } else { exports.len() };
        exports.iter().rev().take(take).find_map(|export| {
            export
                .scope_metrics()
                .flat_map(|scope| scope.metrics())
                .find(|metric| metric.name() == name)
                .map(&read)
        })
    }

    /// The data points of the `f64` histogram `name` that carry every
    /// attribute of `filter` and the `error.type` given (`None`: without
    /// one): the sum of their counts, and the attributes of each.
    pub fn histogram(
        &self,
        name: &str,
        filter: &[(&str, &str)],
        error_type: Option<&str>,
    ) -> (u64, Vec<Vec<KeyValue>>) {
        self.read_metric(name, false, |metric| {
            let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                panic!("{name} is not an f64 histogram: {:?}", metric.data());
            };
            let points: Vec<_> = histogram
                .data_points()
                .filter(|point| point_matches(point.attributes(), filter, Some(error_type)))
                .collect();
            (
                points.iter().map(|point| point.count()).sum(),
                points
                    .iter()
                    .map(|point| point.attributes().cloned().collect())
                    .collect(),
            )
        })
        .unwrap_or_default()
    }

    /// The values of the `i64` gauge `name` now, of the data points that
    /// carry every attribute of `filter`.
    pub fn gauge(&self, name: &str, filter: &[(&str, &str)]) -> Vec<i64> {
        self.read_metric(name, true, |metric| {
            let AggregatedMetrics::I64(MetricData::Gauge(gauge)) = metric.data() else {
                panic!("{name} is not an i64 gauge: {:?}", metric.data());
            };
            gauge
                .data_points()
                .filter(|point| point_matches(point.attributes(), filter, None))
                .map(|point| point.value())
                .collect()
        })
        .unwrap_or_default()
    }
}

/// [`start_consumer_with`], and the consumer's health, taken before `run`
/// (checked to report `not started`).
pub fn start_consumer_with_health(
    broker: &EmbeddedBroker,
    handlers: Vec<Handler>,
    configure: impl FnOnce(ConsumerBuilder) -> ConsumerBuilder,
) -> (
    Shutdown,
    JoinHandle<Result<(), kafka_handler::Error>>,
    kafka_handler::Health,
) {
    let consumer = build_consumer(broker, handlers, configure);
    let health = consumer.health();
    assert!(
        !health.readiness().is_healthy(),
        "not ready before run: {}",
        health.readiness().report()
    );
    assert!(health.readiness().report().contains(": not started\n"));
    assert!(health.liveness().is_healthy(), "live before run");
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(consumer.run(shutdown.clone()));
    (shutdown, handle, health)
}
