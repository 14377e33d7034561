//! The consumers written directly on rdkafka, which kafka-handler is
//! measured against: the raw `BaseConsumer` poll loop (the floor), the same
//! work on a `StreamConsumer`, and the hand-written traced `StreamConsumer`
//! loop (what users write today).

use std::hint::black_box;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use kafka_handler::testing::EmbeddedBroker;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers as _, Message as _};
use rdkafka::ClientConfig;

use crate::common::consumer_properties;
use crate::{RunResult, RUN_LIMIT, TOPIC};

fn consumer_config(broker: &EmbeddedBroker, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (key, value) in consumer_properties(broker) {
        config.set(key, value);
    }
    config
}

/// The floor: a `BaseConsumer` poll loop reading payload and headers.
pub(super) fn run_raw(broker: &EmbeddedBroker, group: &str, expected: u64) -> RunResult {
    let consumer: BaseConsumer = consumer_config(broker, group)
        .create()
        .expect("creating the consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribing");
    let deadline = Instant::now() + RUN_LIMIT;
    let mut read = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    while read < expected && Instant::now() < deadline {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match polled {
            Ok(message) => message,
            Err(err) => {
                eprintln!("consumer error: {err}");
                continue;
            }
        };
        black_box(message.payload());
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                black_box((header.key, header.value));
            }
        }
        read += 1;
        last = Instant::now();
        first.get_or_insert(last);
    }
    RunResult {
        read,
        elapsed: first.map_or(Duration::ZERO, |first| last - first),
        exported: None,
        batches: None,
    }
}

/// The same work as [`run_raw`] on a `StreamConsumer` (`stream().next()`),
/// without tracing: what the consumer type alone costs.
pub(super) fn run_raw_stream(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    group: &str,
    expected: u64,
) -> RunResult {
    drive_stream(runtime, broker, group, expected, |message| {
        black_box(message.payload());
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                black_box((header.key, header.value));
            }
        }
    })
}

/// Reads `expected` records with a `StreamConsumer` in a fresh group,
/// calling `per_message` on each; times the first record to the last.
fn drive_stream(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    group: &str,
    expected: u64,
    mut per_message: impl FnMut(&BorrowedMessage<'_>),
) -> RunResult {
    runtime.block_on(async {
        let consumer: StreamConsumer = consumer_config(broker, group)
            .create()
            .expect("creating the consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribing");
        let deadline = tokio::time::sleep(RUN_LIMIT);
        tokio::pin!(deadline);
        let mut stream = consumer.stream();
        let mut read = 0u64;
        let mut first = None;
        let mut last = Instant::now();
        while read < expected {
            let polled = tokio::select! {
                polled = stream.next() => polled,
                () = &mut deadline => break,
            };
            let message = match polled {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    eprintln!("consumer error: {err}");
                    continue;
                }
                None => break,
            };
            per_message(&message);
            read += 1;
            last = Instant::now();
            first.get_or_insert(last);
        }
        drop(stream);
        RunResult {
            read,
            elapsed: first.map_or(Duration::ZERO, |first| last - first),
            exported: None,
            batches: None,
        }
    })
}

/// An OpenTelemetry extractor over rdkafka headers: the last header of a
/// key wins.
struct HeaderExtractor<'a>(&'a BorrowedHeaders);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|header| header.key == key)
            .last()?
            .value
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}

/// What users write today: a `StreamConsumer` loop with a hand-made span.
pub(super) fn run_hand_written(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    group: &str,
    expected: u64,
) -> RunResult {
    let tracer = global::tracer("hand-written");
    let group_name: String = group.to_owned();
    drive_stream(runtime, broker, group, expected, |message| {
        let parent = match message.headers() {
            Some(headers) => global::get_text_map_propagator(|propagator| {
                propagator.extract(&HeaderExtractor(headers))
            }),
            None => Context::new(),
        };
        let span = tracer
            .span_builder(format!("process {}", message.topic()))
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new(semconv::MESSAGING_SYSTEM, "kafka"),
                KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, "process"),
                KeyValue::new(
                    semconv::MESSAGING_DESTINATION_NAME,
                    message.topic().to_owned(),
                ),
                KeyValue::new(
                    semconv::MESSAGING_DESTINATION_PARTITION_ID,
                    message.partition().to_string(),
                ),
                KeyValue::new(semconv::MESSAGING_KAFKA_OFFSET, message.offset()),
                KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group_name.clone()),
            ])
            .start_with_context(&tracer, &parent);
        let cx = parent.with_span(span);
        {
            let _attached = cx.clone().attach();
            // The no-op handler.
            black_box(message.payload());
        }
        cx.span().end();
    })
}
