//! The metrics of the tracing contract, through the SDK's meter provider:
//! processing duration, records consumed and sent, consumer lag.
//!
//! Every test of this binary shares the global meter provider, so each
//! reads only the data points of its own (unique) topics.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    new_topic, new_topic_with_dlq, send, start_consumer, start_consumer_with, stop_consumer,
    telemetry, wait_for_commits, wait_until, Mode, FAST,
};
use kafka_handler::metrics::{CONSUMED, CONSUMER_LAG, PROCESS_DURATION, SENT};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{Handler, HandlerError, Outcome, Record, TracedProducer};
use opentelemetry::KeyValue;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientConfig;

const WAIT: Duration = Duration::from_secs(30);

/// Produces `count` records with `payload` to `partition` of `topic`.
async fn send_records(
    broker: &EmbeddedBroker,
    topic: &str,
    partition: i32,
    payload: &[u8],
    count: usize,
) {
    for _ in 0..count {
        send(broker, TestRecord::new(topic, payload).partition(partition)).await;
    }
}

/// The value of `key` among `attributes`, as text.
fn value_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_is_one_duration_and_each_record_is_consumed_once() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "durations", 2).await;
    send_records(&broker, &topic, 0, b"fine", 2).await;
    send_records(&broker, &topic, 0, b"bad", 1).await;
    send_records(&broker, &topic, 1, b"fine", 2).await;

    // The bad record fails twice (one retry), then goes to the dead-letter topic.
    let handler = Handler::sync(
        "tests::durations",
        [&topic],
        &group,
        |record: &Record<'_>| {
            if record.payload() == Some(b"bad".as_slice()) {
                Err(HandlerError::transient("no good"))
            } else {
                Ok(())
            }
        },
    )
    .with_retries(1)
    .with_backoff(FAST)
    .with_dlq(&dlq);
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    let topic_filter = [("messaging.destination.name", topic.as_str())];
    wait_until(WAIT, "five records consumed", || {
        telemetry.counter(CONSUMED, &topic_filter) == 5
    })
    .await;
    wait_until(WAIT, "the dead-letter copy sent", || {
        telemetry.counter(SENT, &[("messaging.destination.name", dlq.as_str())]) == 1
    })
    .await;
    stop_consumer(shutdown, running).await;

    let partition = |id: &'static str| {
        [
            ("messaging.destination.name", topic.as_str()),
            ("messaging.destination.partition.id", id),
        ]
    };
    // Successful attempts: two per partition, without `error.type`.
    let (ok_0, points) = telemetry.histogram(PROCESS_DURATION, &partition("0"), None);
    assert_eq!(ok_0, 2, "successful attempts on partition 0");
    assert_eq!(
        telemetry
            .histogram(PROCESS_DURATION, &partition("1"), None)
            .0,
        2
    );
    let attributes = &points[0];
    for (key, expected) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.name", "process"),
        ("messaging.destination.name", topic.as_str()),
        ("messaging.destination.partition.id", "0"),
        ("messaging.consumer.group.name", group.as_str()),
    ] {
        assert_eq!(
            value_of(attributes, key).as_deref(),
            Some(expected),
            "{key}"
        );
    }
    assert_eq!(attributes.len(), 5, "no other attribute: {attributes:?}");
    // The failing record: two attempts, each with `error.type`.
    let (failed, _) = telemetry.histogram(PROCESS_DURATION, &partition("0"), Some("handler"));
    assert_eq!(failed, 2, "one measurement per failed attempt");

    // Consumed: each record once, retries not counted again.
    assert_eq!(telemetry.counter(CONSUMED, &partition("0")), 3);
    assert_eq!(telemetry.counter(CONSUMED, &partition("1")), 2);
    assert_eq!(
        telemetry.counter(
            CONSUMED,
            &[
                ("messaging.destination.name", topic.as_str()),
                ("messaging.system", "kafka"),
                ("messaging.operation.name", "poll"),
                ("messaging.consumer.group.name", group.as_str()),
            ]
        ),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivery_is_one_duration() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group) = new_topic(&broker, "batch-durations", 1).await;
    send_records(&broker, &topic, 0, b"fine", 6).await;

    let deliveries = Arc::new(AtomicU64::new(0));
    let counted = deliveries.clone();
    let handler = Handler::batch("tests::batch_durations", [&topic], &group, move |input| {
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = input.records().len();
        Box::pin(async move { Ok(()) })
    });
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    let filter = [("messaging.destination.name", topic.as_str())];
    wait_until(WAIT, "six records consumed", || {
        telemetry.counter(CONSUMED, &filter) == 6
    })
    .await;
    stop_consumer(shutdown, running).await;

    let (measured, _) = telemetry.histogram(PROCESS_DURATION, &filter, None);
    assert_eq!(measured, deliveries.load(Ordering::SeqCst));
    assert!(
        measured < 6,
        "a delivery of several records is one measurement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_producer_sends_are_counted_with_their_errors() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, _) = new_topic(&broker, "sent", 1).await;
    let producer = TracedProducer::from_config(
        ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("message.timeout.ms", "10000"),
    )
    .unwrap();
    for _ in 0..3 {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&topic).payload(b"x"),
                Duration::from_secs(5),
            )
            .await
            .expect("delivered");
    }
    broker
        .fail_produce_requests(&[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED])
        .unwrap();
    let rejected = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic).payload(b"x"),
            Duration::from_secs(5),
        )
        .await;
    assert!(rejected.is_err(), "the broker rejects the fourth");

    let filter = [
        ("messaging.destination.name", topic.as_str()),
        ("messaging.system", "kafka"),
        ("messaging.operation.name", "send"),
    ];
    assert_eq!(telemetry.counter(SENT, &filter), 4, "every send is counted");
    let failed = [
        ("messaging.destination.name", topic.as_str()),
        ("error.type", "TopicAuthorizationFailed"),
    ];
    assert_eq!(
        telemetry.counter(SENT, &failed),
        1,
        "the failed one with its error.type"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_gauge_counts_uncommitted_records_until_they_are_committed() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group) = new_topic(&broker, "lag", 1).await;
    send_records(&broker, &topic, 0, b"first", 1).await;
    send_records(&broker, &topic, 0, b"held", 2).await;

    // Records after the first fail until `release` is set: retried (and
    // uncommitted) meanwhile.
    let release = Arc::new(AtomicBool::new(false));
    let released = release.clone();
    let handler = Handler::sync(
        "tests::lag",
        [&topic],
        &group,
        move |record: &Record<'_>| -> Outcome {
            if record.offset() > 0 && !released.load(Ordering::SeqCst) {
                return Err(HandlerError::transient("not yet"));
            }
            Ok(())
        },
    )
    .with_retries(u32::MAX)
    .with_backoff(FAST);
    let (shutdown, running) = start_consumer_with(&broker, vec![handler], |builder| {
        builder.set("statistics.interval.ms", "100")
    });
    let filter = [
        ("messaging.destination.name", topic.as_str()),
        ("messaging.destination.partition.id", "0"),
        ("messaging.consumer.group.name", group.as_str()),
    ];
    wait_for_commits(WAIT, &broker, &group, &topic, &[1]).await;
    wait_until(WAIT, "a lag of 2 (3 records, 1 committed)", || {
        telemetry.gauge(CONSUMER_LAG, &filter) == [2]
    })
    .await;

    release.store(true, Ordering::SeqCst);
    wait_for_commits(WAIT, &broker, &group, &topic, &[3]).await;
    wait_until(WAIT, "a lag of 0 once everything is committed", || {
        telemetry.gauge(CONSUMER_LAG, &filter) == [0]
    })
    .await;
    stop_consumer(shutdown, running).await;
    wait_until(WAIT, "no lag reported for a stopped consumer", || {
        telemetry.gauge(CONSUMER_LAG, &filter).is_empty()
    })
    .await;
}
