//! Producing traced records to the embedded broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_handler::testing::EmbeddedBroker;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;

/// Counts failed deliveries.
#[derive(Default)]
pub(crate) struct DeliveryCounter {
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A producer of records with one sampled `traceparent` header each.
pub(crate) struct TracedProducer {
    producer: ThreadedProducer<DeliveryCounter>,
}

impl TracedProducer {
    /// A producer to `broker` with `batch.size=1000000`,
    /// `queue.buffering.max.messages=500000`, `message.timeout.ms=60000`,
    /// plus the bench's own `settings` (`linger.ms`, `batch.num.messages`, ...).
    pub(crate) fn new(broker: &EmbeddedBroker, settings: &[(&str, &str)]) -> Self {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "500000")
            .set("message.timeout.ms", "60000");
        for &(key, value) in settings {
            config.set(key, value);
        }
        let producer = config
            .create_with_context(DeliveryCounter::default())
            .expect("creating the producer");
        TracedProducer { producer }
    }

    /// Sends `payload` to `topic`'s `partition` with the header
    /// `traceparent: 00-4bf92f3577b34da6{trace:016x}-{span:016x}-01` (a
    /// unique trace id per `trace`, a span id derived from it), waiting
    /// while the producer's queue is full.
    pub(crate) fn send(
        &self,
        topic: &str,
        partition: i32,
        payload: &[u8],
        trace: u64,
    ) -> KafkaResult<()> {
        self.send_keyed(topic, partition, None, payload, trace)
    }

    /// As [`Self::send`], with the record key `key` (none when `None`).
    pub(crate) fn send_keyed(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
        trace: u64,
    ) -> KafkaResult<()> {
        let traceparent = format!(
            "00-{:016x}{:016x}-{:016x}-01",
            0x4bf9_2f35_77b3_4da6_u64,
            trace,
            trace.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
        );
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: "traceparent",
            value: Some(traceparent.as_str()),
        });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(partition)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) => return Err(err),
            }
        }
    }

    /// Waits until every record sent is delivered or has failed; the number
    /// of failed deliveries so far.
    pub(crate) fn flush(&self) -> u64 {
        self.producer
            .flush(Duration::from_secs(120))
            .expect("flushing the producer");
        self.producer.context().failed.load(Ordering::Relaxed)
    }

    /// `topic`'s `partition`'s low and high watermarks.
    pub(crate) fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        self.producer
            .client()
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("fetching watermarks")
    }
}
