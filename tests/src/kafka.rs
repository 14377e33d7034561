//! Kafka from the test's side: producing traced orders, reading what a
//! group committed, reading a topic back.

use std::time::Duration;

use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

/// `--set` flags that make a consumer join and rebalance quickly on the
/// mock cluster (it rebalances after `session.timeout.ms - 1000`).
pub const FAST_GROUP_FLAGS: [&str; 6] = [
    "--set",
    "session.timeout.ms=1500",
    "--set",
    "heartbeat.interval.ms=100",
    "--set",
    "fetch.wait.max.ms=50",
];

/// A W3C trace context the test made up, to send in a `traceparent`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits: the "producer span" the consumer's span
    /// must be a child of.
    pub span_id: String,
}

impl TraceParent {
    /// Random ids.
    pub fn random() -> Self {
        let ids = RandomIdGenerator::default();
        Self {
            trace_id: ids.new_trace_id().to_string(),
            span_id: ids.new_span_id().to_string(),
        }
    }

    /// The `traceparent` header value, sampled.
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// A producer for `brokers` (acknowledged by the leader, 10 s timeout).
pub fn producer(brokers: &str) -> FutureProducer {
    producer_with(brokers, &[])
}

/// [`producer`] with librdkafka properties `overrides` set over its own
/// (for example a longer `message.timeout.ms` to ride out an outage).
pub fn producer_with(brokers: &str, overrides: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .set("message.timeout.ms", "10000");
    for (key, value) in overrides {
        config.set(*key, *value);
    }
    config.create().expect("creating a producer")
}

/// A produced record: where it landed and the context it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Produced {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The trace context in its `traceparent`, if any.
    pub parent: Option<TraceParent>,
}

/// Produces the order `{"id":id,"cents":cents}` with key `order-{id}` to
/// `topic`, with a `traceparent` of `parent` when given, and waits for the
/// acknowledgement. Panics when the broker does not acknowledge it.
pub async fn send_order(
    producer: &FutureProducer,
    topic: &str,
    id: u64,
    cents: u64,
    parent: Option<&TraceParent>,
) -> Produced {
    send(producer, topic, None, id, cents, parent).await
}

/// [`send_order`] to `partition` of `topic` rather than the one the key
/// hashes to, without a trace context.
pub async fn send_order_to_partition(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    id: u64,
    cents: u64,
) -> Produced {
    send(producer, topic, Some(partition), id, cents, None).await
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    id: u64,
    cents: u64,
    parent: Option<&TraceParent>,
) -> Produced {
    let payload = format!(r#"{{"id":{id},"cents":{cents}}}"#);
    let key = format!("order-{id}");
    let mut headers = OwnedHeaders::new();
    let traceparent = parent.map(TraceParent::header);
    if let Some(value) = &traceparent {
        headers = headers.insert(Header {
            key: "traceparent",
            value: Some(value.as_str()),
        });
    }
    let mut record = FutureRecord::to(topic)
        .key(&key)
        .payload(&payload)
        .headers(headers);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    let delivery = producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap_or_else(|(err, _)| panic!("producing order {id} to {topic}: {err}"));
    Produced {
        topic: topic.to_owned(),
        partition: delivery.partition,
        offset: delivery.offset,
        parent: parent.cloned(),
    }
}

/// The offsets `group` committed on partitions `0..partitions` of `topic`
/// (`None` where it committed none). Blocks for up to 5 s; an error (e.g.
/// the coordinator not known yet) is returned as text.
pub fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<Option<i64>>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|err| format!("creating a consumer: {err}"))?;
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(5))
        .map_err(|err| format!("reading the offsets {group} committed on {topic}: {err}"))?;
    Ok((0..partitions)
        .map(
            |partition| match committed.find_partition(topic, partition) {
                Some(elem) => match elem.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                },
                None => None,
            },
        )
        .collect())
}

/// Reads every record of `topic` (partitions `0..partitions`) up to the
/// high watermarks as they are now, without a group. Panics when that takes
/// longer than `limit`.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    limit: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", kafka_handler::testing::unique_topic("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("creating a consumer");
    let mut ends = Vec::new();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(5))
            .unwrap_or_else(|err| panic!("watermarks of {topic}/{partition}: {err}"));
        ends.push(high);
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a valid offset");
    }
    consumer.assign(&list).expect("assigning partitions");
    let deadline = std::time::Instant::now() + limit;
    let mut records = Vec::new();
    let mut next = vec![0_i64; partitions as usize];
    while next.iter().zip(&ends).any(|(n, end)| n < end) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} reading {topic} up to {ends:?}; read up to {next:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                next[message.partition() as usize] = message.offset() + 1;
                records.push(message.detach());
            }
            Some(Err(err)) => panic!("reading {topic}: {err}"),
            None => {}
        }
    }
    records
}
