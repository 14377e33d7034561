//! [`TestApp`]: your handlers on an embedded broker, in a test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{FutureExt as _, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tracing_subscriber::layer::SubscriberExt as _;

use super::outcome::{RecordOutcome, Trace};
use super::EmbeddedBroker;
use crate::error::Error;
use crate::propagation::Propagation;
use crate::publish::IntoPayload;
use crate::{Consumer, ConsumerBuilder, Handler, Shutdown, TracedProducer};

/// How long [`TestApp`]'s waits last by default.
const WAIT: Duration = Duration::from_secs(20);

/// Your handlers, running on an embedded broker, for a `#[tokio::test]`:
/// send records, wait for what became of each (handled, retried,
/// dead-lettered, what it published) and look at its trace, without
/// parsing headers or sleeping.
///
/// ```no_run
/// # use kafka_handler::{handlers, kafka_handler, HandlerError, Json};
/// # #[derive(serde::Deserialize)] struct Order { cents: u64 }
/// # #[derive(serde::Serialize)] struct Invoice { cents: u64 }
/// # #[kafka_handler(topics = ["orders"], group = "billing", publish = "invoices",
/// #                 retries = 1, backoff = "10ms", dlq = "orders.dlq")]
/// # async fn bill(order: Json<Order>) -> Result<Json<Invoice>, HandlerError> {
/// #     if order.cents == 0 { return Err(HandlerError::permanent("nothing to bill")); }
/// #     Ok(Json(Invoice { cents: order.cents }))
/// # }
/// use kafka_handler::testing::TestApp;
/// use rdkafka::Message as _;
///
/// # async fn test() -> Result<(), kafka_handler::Error> {
/// let app = TestApp::start(handlers![bill]).await?;
/// let offset = app.send("orders", serde_json::json!({"cents": 250})).await?;
/// let outcome = app.outcome_of("orders", offset).await?;
/// assert!(outcome.is_handled());
/// let invoice = app.next_record("invoices").await?;
/// assert_eq!(invoice.payload(), Some(&br#"{"cents":250}"#[..]));
/// app.trace_of(&outcome).assert_parent_of("send invoices");
///
/// let offset = app.send("orders", serde_json::json!({"cents": 0})).await?;
/// assert!(app.outcome_of("orders", offset).await?.is_dead_lettered());
/// app.stop().await
/// # }
/// ```
///
/// What it does:
///
/// - starts an [`EmbeddedBroker`] (librdkafka's mock cluster, or the
///   `KAFKA_BROKERS` cluster) and creates every topic the handlers consume,
///   dead-letter to or publish to, with one partition each, so that an
///   offset names a record;
/// - installs, once per test process, a global tracer provider that keeps
///   every span in memory, kafka-handler's default propagation, and (unless
///   the test set one) a global `tracing` subscriber whose
///   tracing-opentelemetry layer makes `tracing` spans in handlers spans of
///   the record's trace; each record [`send`](Self::send) sends starts a
///   trace of its own, and records are told apart by their trace, so apps
///   running side by side in one process never see each other's records;
/// - runs a [`Consumer`] of the handlers (retries, dead letters, outputs
///   and all), committing every 100 ms;
/// - waits on conditions with a bounded timeout (20 s by default) and fails
///   with what it saw, never a fixed sleep.
pub struct TestApp {
    broker: EmbeddedBroker,
    producer: TracedProducer,
    shutdown: Shutdown,
    running: Mutex<Option<JoinHandle<Result<(), Error>>>>,
    /// The topics the handlers consume, with their groups.
    groups: Vec<(String, String)>,
    /// A reader per topic read with `next_record`, and its position.
    readers: Mutex<HashMap<String, BaseConsumer>>,
    wait: Duration,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp")
            .field("broker", &self.broker)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl TestApp {
    /// Starts `handlers` on a new embedded broker.
    pub async fn start(handlers: Vec<Handler>) -> Result<Self, Error> {
        Self::start_with(handlers, |builder, _| builder).await
    }

    /// As [`start`](Self::start), with the consumer's builder adjusted by
    /// `configure` (`.max_in_flight(..)`, `.set(..)`, or a producer of your
    /// own for the handlers, on the broker it is given).
    pub async fn start_with(
        handlers: Vec<Handler>,
        configure: impl FnOnce(ConsumerBuilder, &EmbeddedBroker) -> ConsumerBuilder,
    ) -> Result<Self, Error> {
        collector();
        let broker = EmbeddedBroker::start()?;
        let mut topics: Vec<&str> = Vec::new();
        let mut groups = Vec::new();
        for handler in &handlers {
            for topic in handler.topics() {
                topics.push(topic);
                groups.push((topic.clone(), handler.group().to_owned()));
            }
            let options = handler.options();
            topics.extend(options.dlq.as_deref());
            topics.extend(options.publish.as_deref());
        }
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            broker.create_topic(topic, 1).await?;
        }
        let producer = TracedProducer::from_config(
            ClientConfig::new()
                .set("bootstrap.servers", broker.bootstrap_servers())
                .set("message.timeout.ms", "10000"),
        )?;
        let mut builder = Consumer::builder()
            .brokers(broker.bootstrap_servers())
            .handlers(handlers)
            .commit_interval(Duration::from_millis(100))
            .shutdown_timeout(Duration::from_secs(10));
        for (key, value) in broker.consumer_properties() {
            builder = builder.set(key, value);
        }
        let consumer = configure(builder, &broker).build()?;
        let shutdown = Shutdown::new();
        let running = tokio::spawn(consumer.run(shutdown.clone()));
        Ok(Self {
            broker,
            producer,
            shutdown,
            running: Mutex::new(Some(running)),
            groups,
            readers: Mutex::default(),
            wait: WAIT,
        })
    }

    /// How long the waits of this app last (default 20 s).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The broker, for what the app does not wrap.
    pub fn broker(&self) -> &EmbeddedBroker {
        &self.broker
    }

    /// Produces `payload` (anything a handler can publish: `Json<T>`, a
    /// `serde_json::Value`, `&str`, bytes) to `topic` in a trace of its
    /// own, and returns its offset.
    pub async fn send(&self, topic: &str, payload: impl IntoPayload) -> Result<i64, Error> {
        self.send_keyed(topic, None, payload).await
    }

    /// As [`send`](Self::send), with a key.
    pub async fn send_keyed(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: impl IntoPayload,
    ) -> Result<i64, Error> {
        let payload = payload
            .into_payload()
            .map_err(|err| Error::Test(format!("encoding a record for `{topic}`: {err}")))?;
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&payload)
            .partition(0);
        record.key = key;
        // No current context: the send span starts the record's trace.
        let delivery = self
            .producer
            .send(record, Timeout::After(self.wait))
            .with_context(opentelemetry::Context::new())
            .await
            .map_err(|(err, _)| Error::kafka(format!("producing to `{topic}`"), err))?;
        Ok(delivery.offset)
    }

    /// What became of the record at `offset` of `topic` (partition 0), once
    /// it has ended: handled, or given up on and dead-lettered. Fails after
    /// the wait with what its attempts so far say (a record without a
    /// dead-letter topic that keeps failing is held, and never ends).
    pub async fn outcome_of(&self, topic: &str, offset: i64) -> Result<RecordOutcome, Error> {
        let group = self
            .groups
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, group)| group.clone())
            .ok_or_else(|| Error::Test(format!("no handler of this app consumes `{topic}`")))?;
        let deadline = tokio::time::Instant::now() + self.wait;
        // Other apps in this process may have a record at the same offset
        // of a topic of the same name: this one is told apart by its trace.
        let trace_id = self.trace_id_of(topic, offset, deadline).await?;
        loop {
            let outcome = RecordOutcome::from_spans(&spans(), topic, &group, offset, trace_id);
            if outcome.has_ended() {
                return Ok(outcome);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Test(format!(
                    "the record at offset {offset} of `{topic}` did not end within {:?}: {outcome}",
                    self.wait
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The trace the record at `offset` of `topic` carries (its
    /// `traceparent`), read from this app's broker; `None` when it has no
    /// valid one.
    async fn trace_id_of(
        &self,
        topic: &str,
        offset: i64,
        deadline: tokio::time::Instant,
    ) -> Result<Option<TraceId>, Error> {
        let reader = self.reader(topic, Offset::Offset(offset))?;
        loop {
            match reader.poll(Duration::ZERO) {
                Some(Ok(message)) => {
                    let traceparent = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .filter(|header| header.key == "traceparent")
                            .last()
                            .and_then(|header| header.value)
                    });
                    return Ok(traceparent
                        .and_then(|value| std::str::from_utf8(value).ok())
                        .and_then(|value| value.get(3..35))
                        .and_then(|hex| TraceId::from_hex(hex).ok())
                        .filter(|id| *id != TraceId::INVALID));
                }
                Some(Err(err)) => return Err(Error::kafka(format!("reading `{topic}`"), err)),
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Test(format!(
                        "no record at offset {offset} of `{topic}` within {:?}",
                        self.wait
                    )))
                }
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// A consumer of partition 0 of `topic` from `offset`, outside any
    /// group's membership.
    fn reader(&self, topic: &str, offset: Offset) -> Result<BaseConsumer, Error> {
        let failed = |err| Error::kafka(format!("reading `{topic}`"), err);
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("group.id", "kafka-handler-test-app-reader")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(failed)?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, 0, offset)
            .map_err(failed)?;
        reader.assign(&list).map_err(failed)?;
        Ok(reader)
    }

    /// The next record of `topic` this app has not returned yet, from the
    /// start of the topic (partition 0); waits for it.
    pub async fn next_record(&self, topic: &str) -> Result<OwnedMessage, Error> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if let Some(message) = self.poll_reader(topic)? {
                return Ok(message);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Test(format!(
                    "no further record in `{topic}` within {:?}",
                    self.wait
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn poll_reader(&self, topic: &str) -> Result<Option<OwnedMessage>, Error> {
        let mut readers = crate::lock(&self.readers);
        if !readers.contains_key(topic) {
            readers.insert(topic.to_owned(), self.reader(topic, Offset::Beginning)?);
        }
        let reader = &readers[topic];
        // librdkafka fetches in its own threads: take what has arrived,
        // without blocking the test's runtime.
        match reader.poll(Duration::ZERO) {
            Some(Ok(message)) => Ok(Some(message.detach())),
            Some(Err(err)) => Err(Error::kafka(format!("reading `{topic}`"), err)),
            None => Ok(None),
        }
    }

    /// Waits until `condition` holds (polled every 10 ms), failing with
    /// `what` after the wait.
    pub async fn wait_until(
        &self,
        what: &str,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + self.wait;
        while !condition() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Test(format!(
                    "timed out after {:?} waiting for {what}",
                    self.wait
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// The value of the `u64` counter `name` (see [`crate::metrics`]:
    /// `messaging.client.consumed.messages`, `kafka_handler.retries`,
    /// `kafka_handler.dead_letter.messages`, ...), summed over its data
    /// points that carry every attribute of `filter`; 0 when there are none.
    /// Counters are the process's: filter by a topic or group of this app
    /// when apps run side by side.
    pub fn counter(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        collector();
        let Some(metrics) = METRICS.get() else {
            return 0;
        };
        if let Err(err) = metrics.provider.force_flush() {
            tracing::warn!(target: "kafka_handler", error = %err, "flushing the test metrics failed");
        }
        let Ok(exports) = metrics.exporter.get_finished_metrics() else {
            return 0;
        };
        counter_total(&exports, name, filter).unwrap_or(0)
    }

    /// Every span of `outcome`'s trace, finished so far.
    pub fn trace_of(&self, outcome: &RecordOutcome) -> Trace {
        Trace::new(outcome, spans())
    }

    /// Stops the consumer (committing what was handled) and checks it
    /// stopped without error.
    pub async fn stop(self) -> Result<(), Error> {
        self.shutdown.trigger();
        let running = crate::lock(&self.running).take();
        match running {
            Some(running) => running
                .await
                .map_err(|err| Error::Test(format!("the test app's consumer panicked: {err}")))?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Every finished span of this process, kept in memory.
#[derive(Clone, Debug, Default)]
struct Collected(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collected {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        crate::lock(&self.0).extend(batch);
        Ok(())
    }
}

/// The process's metrics, kept in memory.
struct Metrics {
    exporter: InMemoryMetricExporter,
    provider: SdkMeterProvider,
}

/// The process's span collector and metrics, installed (with
/// kafka-handler's default propagation) on first use.
fn collector() -> &'static Collected {
    static COLLECTED: OnceLock<Collected> = OnceLock::new();
    COLLECTED.get_or_init(|| {
        let exporter = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        global::set_meter_provider(meter_provider.clone());
        let _ = METRICS.set(Metrics {
            exporter,
            provider: meter_provider,
        });
        let collected = Collected::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(collected.clone())
            .with_max_links_per_span(1024)
            .build();
        global::set_tracer_provider(provider.clone());
        Propagation::default().install();
        // `tracing` spans inside handlers become spans of the record's trace
        // too, unless the test installed a subscriber of its own.
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("kafka-handler-test-app")),
        );
        let _ = tracing::subscriber::set_global_default(subscriber);
        collected
    })
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// A copy of every span finished so far.
fn spans() -> Vec<SpanData> {
    crate::lock(&collector().0).clone()
}

/// The total of the `u64` counter `name` in `exports` (what an in-memory
/// metric exporter kept), over its data points that carry every attribute
/// of `filter`: 0 when it has none, `None` when `name` is not a `u64`
/// counter. Sums are cumulative: the newest export that has the counter
/// holds its total.
pub fn counter_total(
    exports: &[ResourceMetrics],
    name: &str,
    filter: &[(&str, &str)],
) -> Option<u64> {
    for export in exports.iter().rev() {
        let found = export
            .scope_metrics()
            .flat_map(|scope| scope.metrics())
            .find(|metric| metric.name() == name);
        let Some(metric) = found else { continue };
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
            return None;
        };
        return Some(
            sum.data_points()
                .filter(|point| {
                    filter.iter().all(|(key, value)| {
                        point
                            .attributes()
                            .any(|kv| kv.key.as_str() == *key && kv.value.as_str() == *value)
                    })
                })
                .map(|point| point.value())
                .sum(),
        );
    }
    Some(0)
}
