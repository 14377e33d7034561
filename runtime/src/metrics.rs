//! The consumer's metrics, on the global meter provider: the OpenTelemetry
//! messaging metrics (processing duration, records consumed and sent), the
//! lag of each assigned partition, and the failure path's counters.
//!
//! Instruments are created when a consumer starts (`Consumer::run`), so a
//! meter provider installed before `run` is the one used; a
//! [`TracedProducer`](crate::TracedProducer) creates its counter on its first
//! send.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{global, InstrumentationScope, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use opentelemetry_semantic_conventions::metric as semconv_metric;
use rdkafka::error::KafkaError;

use crate::lock;

/// `messaging.process.duration`: how long each handler attempt took, in
/// seconds; one measurement per attempt at a record, and one per delivery
/// of a batch. Failed attempts carry `error.type`.
pub const PROCESS_DURATION: &str = semconv_metric::MESSAGING_PROCESS_DURATION;
/// `messaging.client.consumed.messages`: records delivered to the
/// application (retries are not counted again).
pub const CONSUMED: &str = semconv_metric::MESSAGING_CLIENT_CONSUMED_MESSAGES;
/// `messaging.client.sent.messages`: records sent through a
/// [`TracedProducer`](crate::TracedProducer) or as dead-letter copies,
/// acknowledged or not (`error.type` on failure).
pub const SENT: &str = semconv_metric::MESSAGING_CLIENT_SENT_MESSAGES;
/// Records of an assigned partition not committed yet: the high watermark
/// minus the group's committed offset, from librdkafka's statistics
/// (`statistics.interval.ms`, 5 s unless set). Partitions without a
/// committed offset are not reported.
pub const CONSUMER_LAG: &str = "kafka_handler.consumer.lag";
/// Records copied to a dead-letter topic (and then committed).
pub const DEAD_LETTERED: &str = "kafka_handler.dead_letter.messages";
/// Failed attempts to send a dead-letter copy; the record stays uncommitted
/// and its lane waits until one succeeds.
pub const DEAD_LETTER_SEND_FAILURES: &str = "kafka_handler.dead_letter.send_failures";
/// Attempts after a record's first.
pub const RETRIES: &str = "kafka_handler.retries";
/// Records of an assigned partition the consumer holds: taken from the
/// partition and not committable yet (waiting for their lane, in flight, or
/// ended above a record that has not). A partition is paused when it holds
/// a full window (at least 1,024 records, and twice the handler's
/// `max_in_flight`), so this stays bounded whatever the backlog.
pub const HELD: &str = "kafka_handler.consumer.held";

/// The bucket boundaries of [`PROCESS_DURATION`], in seconds: the semantic
/// conventions' recommendation for messaging durations.
const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// kafka-handler's meter, from the global provider as it is now.
fn meter() -> Meter {
    global::meter_with_scope(
        InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}

/// The instruments, created from the global meter provider when a consumer
/// starts (so a provider installed before `run` is the one used).
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    process_duration: Histogram<f64>,
    consumed: Counter<u64>,
    sent: Counter<u64>,
    dead_lettered: Counter<u64>,
    send_failures: Counter<u64>,
    retries: Counter<u64>,
}

impl Metrics {
    /// The instruments of the global meter provider.
    pub(crate) fn new() -> Self {
        Self::with_meter(&meter())
    }

    /// The instruments of `meter`.
    pub(crate) fn with_meter(meter: &Meter) -> Self {
        Self {
            process_duration: meter
                .f64_histogram(PROCESS_DURATION)
                .with_unit("s")
                .with_description("Duration of each handler attempt at a record, or at a batch")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            consumed: meter
                .u64_counter(CONSUMED)
                .with_unit("{message}")
                .with_description("Records delivered to the handlers")
                .build(),
            sent: sent_counter(meter),
            dead_lettered: meter
                .u64_counter(DEAD_LETTERED)
                .with_unit("{message}")
                .with_description("Records copied to a dead-letter topic after their last attempt")
                .build(),
            send_failures: meter
                .u64_counter(DEAD_LETTER_SEND_FAILURES)
                .with_unit("{error}")
                .with_description(
                    "Dead-letter sends the broker did not acknowledge; the record stays uncommitted",
                )
                .build(),
            retries: meter
                .u64_counter(RETRIES)
                .with_unit("{attempt}")
                .with_description("Attempts at a record after its first")
                .build(),
        }
    }

    /// Observes `lags` in [`CONSUMER_LAG`] for as long as it lives: the
    /// callback holds it weakly, so a stopped consumer is neither kept
    /// alive nor reported.
    pub(crate) fn observe_lag(lags: Weak<Mutex<Vec<PartitionLag>>>) {
        meter()
            .i64_observable_gauge(CONSUMER_LAG)
            .with_unit("{message}")
            .with_description("Records of an assigned partition not committed yet")
            .with_callback(move |observer| {
                let Some(lags) = lags.upgrade() else { return };
                for lag in lock(&lags).iter().filter(|lag| lag.lag >= 0) {
                    observer.observe(lag.lag, &lag.attributes);
                }
            })
            .build();
    }

    /// Observes what `held` returns (each partition's group, topic,
    /// partition and records held) in [`HELD`], until it returns `None`
    /// (the consumer stopped).
    pub(crate) fn observe_held(
        held: impl Fn() -> Option<Vec<(Arc<str>, i32, usize)>> + Send + Sync + 'static,
        group: Arc<str>,
    ) {
        meter()
            .i64_observable_gauge(HELD)
            .with_unit("{message}")
            .with_description(
                "Records of an assigned partition taken and not committable yet: waiting, \
                 in flight, or ended above one that has not",
            )
            .with_callback(move |observer| {
                let Some(held) = held() else { return };
                for (topic, partition, records) in held {
                    observer.observe(
                        i64::try_from(records).unwrap_or(i64::MAX),
                        &[
                            KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.clone()),
                            KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic),
                            KeyValue::new(
                                semconv::MESSAGING_DESTINATION_PARTITION_ID,
                                partition.to_string(),
                            ),
                        ],
                    );
                }
            })
            .build();
    }

    /// Counts one record sent to `topic`, failed with `error` or not.
    pub(crate) fn sent(&self, topic: &str, error: Option<&KafkaError>) {
        record_sent(&self.sent, topic, error);
    }

    pub(crate) fn dead_lettered(&self, group: &str, topic: &str, dlq: &str, error_type: &str) {
        self.dead_lettered.add(
            1,
            &[
                KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.to_owned()),
                KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic.to_owned()),
                KeyValue::new("kafka_handler.dlq", dlq.to_owned()),
                KeyValue::new(semconv::ERROR_TYPE, error_type.to_owned()),
            ],
        );
    }

    pub(crate) fn send_failed(&self, group: &str, dlq: &str, error_type: &str) {
        self.send_failures.add(
            1,
            &[
                KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.to_owned()),
                KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, dlq.to_owned()),
                KeyValue::new(semconv::ERROR_TYPE, error_type.to_owned()),
            ],
        );
    }

    pub(crate) fn retried(&self, group: &str, topic: &str) {
        self.retries.add(
            1,
            &[
                KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.to_owned()),
                KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic.to_owned()),
            ],
        );
    }
}

/// The [`SENT`] counter of `meter`.
fn sent_counter(meter: &Meter) -> Counter<u64> {
    meter
        .u64_counter(SENT)
        .with_unit("{message}")
        .with_description("Records sent to the brokers, acknowledged or not")
        .build()
}

/// The [`SENT`] counter, for a producer outside a running consumer.
pub(crate) fn sent_messages() -> Counter<u64> {
    sent_counter(&meter())
}

/// Counts one record sent to `topic` on `counter`, with `error.type` (the
/// librdkafka error code's name) when it failed.
pub(crate) fn record_sent(counter: &Counter<u64>, topic: &str, error: Option<&KafkaError>) {
    let system = KeyValue::new(semconv::MESSAGING_SYSTEM, "kafka");
    let operation = KeyValue::new(semconv::MESSAGING_OPERATION_NAME, "send");
    let destination = KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic.to_owned());
    match error {
        None => counter.add(1, &[system, operation, destination]),
        Some(err) => counter.add(
            1,
            &[
                system,
                operation,
                destination,
                KeyValue::new(semconv::ERROR_TYPE, crate::error::error_type(err)),
            ],
        ),
    }
}

/// One assigned partition's lag, as librdkafka's statistics last had it.
#[derive(Debug)]
pub(crate) struct PartitionLag {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The group's committed offset (negative: none).
    pub(crate) committed: i64,
    /// The high watermark minus the committed offset (negative: unknown).
    pub(crate) lag: i64,
    /// The group, topic and partition, for [`CONSUMER_LAG`].
    pub(crate) attributes: [KeyValue; 3],
}

impl PartitionLag {
    pub(crate) fn new(group: &str, topic: &str, partition: i32, committed: i64, lag: i64) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            committed,
            lag,
            attributes: [
                KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.to_owned()),
                KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic.to_owned()),
                KeyValue::new(
                    semconv::MESSAGING_DESTINATION_PARTITION_ID,
                    partition.to_string(),
                ),
            ],
        }
    }
}

/// A handler's per-record metrics in a running consumer: the instruments,
/// and each partition's attributes, built once, so that a record costs one
/// histogram measurement and one counter increment, without allocating.
#[derive(Debug)]
pub(crate) struct ProcessMetrics {
    metrics: Metrics,
    group: Arc<str>,
    /// Per topic of the handler, the attributes of each partition seen so
    /// far, indexed by partition. Written once per partition.
    topics: RwLock<Vec<TopicAttributes>>,
}

#[derive(Debug)]
struct TopicAttributes {
    topic: String,
    partitions: Vec<Option<PartitionAttributes>>,
}

/// What a partition's measurements carry.
#[derive(Debug)]
struct PartitionAttributes {
    /// [`PROCESS_DURATION`]'s: system, operation `process`, topic,
    /// partition, group.
    process: [KeyValue; 5],
    /// [`CONSUMED`]'s: the same, with operation `poll`.
    consumed: [KeyValue; 5],
}

impl PartitionAttributes {
    fn new(group: &str, topic: &str, partition: i32) -> Self {
        let common = [
            KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic.to_owned()),
            KeyValue::new(
                semconv::MESSAGING_DESTINATION_PARTITION_ID,
                partition.to_string(),
            ),
            KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.to_owned()),
        ];
        let with = |operation: &'static str| {
            let [topic, partition, group] = common.clone();
            [
                KeyValue::new(semconv::MESSAGING_SYSTEM, "kafka"),
                KeyValue::new(semconv::MESSAGING_OPERATION_NAME, operation),
                topic,
                partition,
                group,
            ]
        };
        Self {
            process: with("process"),
            // Kafka's name for the operation that delivers records.
            consumed: with("poll"),
        }
    }
}

impl ProcessMetrics {
    pub(crate) fn new(metrics: Metrics, group: Arc<str>) -> Self {
        Self {
            metrics,
            group,
            topics: RwLock::default(),
        }
    }

    /// Records one attempt at `records` records (0 for a retry: they were
    /// delivered before) of `topic`/`partition` that took `elapsed` and
    /// failed with `error_type`, or not.
    pub(crate) fn attempted(
        &self,
        topic: &str,
        partition: i32,
        records: u64,
        elapsed: Duration,
        error_type: Option<&'static str>,
    ) {
        self.with_attributes(topic, partition, |attributes| {
            let seconds = elapsed.as_secs_f64();
            let histogram = &self.metrics.process_duration;
            match error_type {
                None => histogram.record(seconds, &attributes.process),
                Some(error_type) => {
                    // Failures are rare: their attributes are built each time.
                    let mut failed = attributes.process.to_vec();
                    failed.push(KeyValue::new(semconv::ERROR_TYPE, error_type));
                    histogram.record(seconds, &failed);
                }
            }
            if records > 0 {
                self.metrics.consumed.add(records, &attributes.consumed);
            }
        });
    }

    /// Runs `f` on the attributes of `topic`/`partition`, built on the
    /// partition's first record.
    fn with_attributes(&self, topic: &str, partition: i32, f: impl FnOnce(&PartitionAttributes)) {
        let Ok(slot) = usize::try_from(partition) else {
            // Not a partition records come from; never cached.
            return f(&PartitionAttributes::new(&self.group, topic, partition));
        };
        {
            let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
            let cached = topics
                .iter()
                .find(|t| t.topic == topic)
                .and_then(|t| t.partitions.get(slot)?.as_ref());
            if let Some(attributes) = cached {
                return f(attributes);
            }
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let index = match topics.iter().position(|t| t.topic == topic) {
            Some(index) => index,
            None => {
                topics.push(TopicAttributes {
                    topic: topic.to_owned(),
                    partitions: Vec::new(),
                });
                topics.len() - 1
            }
        };
        let partitions = &mut topics[index].partitions;
        if partitions.len() <= slot {
            partitions.resize_with(slot + 1, || None);
        }
        f(partitions[slot]
            .get_or_insert_with(|| PartitionAttributes::new(&self.group, topic, partition)));
    }
}
