//! End-to-end consumer throughput, in records/s, on the embedded broker
//! (librdkafka's in-process mock cluster).
//!
//! The bench produces `BENCH_RECORDS` records (default 200 000; 100-byte
//! payload plus one sampled `traceparent` header each, unique trace ids) over
//! 16 partitions of one topic, counts what the mock actually kept (the sum of
//! high minus low watermarks: the mock silently drops old data beyond about
//! 5 MiB per partition), then reads the whole topic from the earliest offset
//! with a fresh consumer group per run, in six configurations:
//!
//! - `raw BaseConsumer`: rdkafka's `BaseConsumer` poll loop reading the
//!   payload and iterating the headers. The floor, and the baseline of every
//!   ratio.
//! - `raw StreamConsumer`: the same work on a `StreamConsumer`
//!   (`stream().next()`), no tracing: what the consumer type alone costs.
//! - `hand-written, tracing off` / `hand-written, 100% sampled`: a
//!   `StreamConsumer` loop that extracts the context with the global
//!   propagator (an `Extractor` over the headers), starts a `process {topic}`
//!   consumer span with 6 semconv attributes, attaches it, calls the no-op
//!   handler, ends the span: what users write today.
//! - `kafka-handler, tracing off` / `kafka-handler, 100% sampled`: the
//!   `kafka_handler::Consumer` with a no-op `#[kafka_handler]` function that
//!   counts records in a static and triggers the `Shutdown` at the last one.
//!
//! "Tracing off" means no tracer provider is installed (the global no-op).
//! "100% sampled" installs a fresh SDK provider per run: the default
//! `ParentBased(AlwaysOn)` sampler, the batch span processor with its default
//! configuration, and an exporter that counts and discards; the table reports
//! how many spans reached it. The global propagator is
//! `TraceContextPropagator` throughout, so extraction runs even with tracing
//! off. No `tracing` subscriber is installed.
//!
//! Every consumer gets the same properties: `session.timeout.ms=1500`,
//! `heartbeat.interval.ms=100` (`EmbeddedBroker::consumer_properties`),
//! `auto.offset.reset=earliest`, and `fetch.queue.backoff.ms=10`. The last
//! one matters: with librdkafka's default (1000 ms), a consumer slower than
//! the fetcher lets 100 000 messages (`queued.min.messages`) pile up, every
//! partition's fetch then backs off for a second, and the run measures that
//! stall rather than the consumer (about 5.5 µs/record for every
//! configuration, the raw one included when it happens to cross the
//! threshold). `BENCH_FETCH_QUEUE_BACKOFF_MS=default` reproduces it.
//!
//! Each run's time is the wall time from the first record handled to the last
//! one (group join and shutdown are excluded). The set of six runs is
//! repeated `BENCH_REPEATS` times (default 5), in a rotated order each time,
//! reversed every other time, and the table reports medians and ratios
//! against the raw `BaseConsumer` of the same process. The mock's rate is a
//! property of the mock: compare the ratios, not the absolute figures.
//!
//! Run it with `cargo bench -p kafka-handler --bench end_to_end`
//! (`BENCH_RECORDS=50000 cargo bench ...` for a quicker run).

mod common;

use common::produce::TracedProducer;
use common::{consumer_properties, env_u64, median, round_order, run_consumer, Telemetry};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use kafka_handler::testing::EmbeddedBroker;
use kafka_handler::{handlers, kafka_handler, Consumer, Shutdown};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::noop::NoopTracerProvider;
use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers as _, Message as _};
use rdkafka::ClientConfig;

const TOPIC: &str = "bench-e2e";
const PARTITIONS: i32 = 16;
const PAYLOAD_BYTES: usize = 100;
/// A run that has not read everything after this long is reported as is.
const RUN_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The kafka-handler handler and its completion detection.

/// Records handled in the current kafka-handler run.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// How many records the current run expects.
static EXPECTED: AtomicU64 = AtomicU64::new(u64::MAX);
/// The current run's first and last record times, and its shutdown handle.
static RUN: Mutex<RunState> = Mutex::new(RunState {
    first: None,
    last: None,
    shutdown: None,
});

struct RunState {
    first: Option<Instant>,
    last: Option<Instant>,
    shutdown: Option<Shutdown>,
}

#[kafka_handler(topics = ["bench-e2e"], group = "bench")]
fn count(payload: &[u8]) {
    black_box(payload);
    let handled = HANDLED.fetch_add(1, Ordering::Relaxed) + 1;
    if handled == 1 {
        lock_run().first = Some(Instant::now());
    }
    if handled == EXPECTED.load(Ordering::Relaxed) {
        let mut run = lock_run();
        run.last = Some(Instant::now());
        if let Some(shutdown) = &run.shutdown {
            shutdown.trigger();
        }
    }
}

fn lock_run() -> std::sync::MutexGuard<'static, RunState> {
    RUN.lock().unwrap_or_else(|poison| poison.into_inner())
}

// ---------------------------------------------------------------------------
// Producing.

/// Produces `records` traced records to [`TOPIC`]; returns how many the
/// broker holds (the sum of high minus low watermarks).
fn produce(broker: &EmbeddedBroker, records: u64) -> u64 {
    let producer = TracedProducer::new(
        broker,
        &[("linger.ms", "5"), ("batch.num.messages", "10000")],
    );
    let start = Instant::now();
    let mut payload = [b'x'; PAYLOAD_BYTES];
    for i in 0..records {
        payload[..8].copy_from_slice(&i.to_be_bytes());
        let partition = (i % PARTITIONS as u64) as i32;
        if let Err(err) = producer.send(TOPIC, partition, &payload, i + 1) {
            panic!("producing record {i}: {err}");
        }
    }
    let failed = producer.flush();
    let mut held = 0;
    for partition in 0..PARTITIONS {
        let (low, high) = producer.watermarks(TOPIC, partition);
        held += (high - low) as u64;
    }
    eprintln!(
        "produced {records} records in {:.2?} ({failed} failed deliveries); the broker holds {held}",
        start.elapsed()
    );
    held
}

// ---------------------------------------------------------------------------
// The consumers.

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct RunResult {
    read: u64,
    elapsed: Duration,
    spans_exported: Option<u64>,
}

impl RunResult {
    fn records_per_sec(&self) -> f64 {
        self.read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

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
fn run_raw(broker: &EmbeddedBroker, group: &str, expected: u64) -> RunResult {
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
        spans_exported: None,
    }
}

/// The same work as [`run_raw`] on a `StreamConsumer` (`stream().next()`),
/// without tracing: what the consumer type alone costs.
fn run_raw_stream(
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
            spans_exported: None,
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
fn run_hand_written(
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

/// The kafka-handler `Consumer` with a counting no-op handler.
fn run_kafka_handler(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    group: &str,
    expected: u64,
    telemetry: Option<&Telemetry>,
) -> RunResult {
    let shutdown = Shutdown::new();
    HANDLED.store(0, Ordering::Relaxed);
    EXPECTED.store(expected, Ordering::Relaxed);
    *lock_run() = RunState {
        first: None,
        last: None,
        shutdown: Some(shutdown.clone()),
    };
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handlers(handlers![count])
        .group(group);
    for (key, value) in consumer_properties(broker) {
        builder = builder.set(key, value);
    }
    if let Some(telemetry) = telemetry {
        builder = builder.tracer_provider(telemetry.provider.clone());
    }
    let consumer = builder.build().expect("a valid consumer configuration");
    run_consumer(runtime, consumer, shutdown, RUN_LIMIT);
    let mut run = lock_run();
    let read = HANDLED.load(Ordering::Relaxed);
    let elapsed = match (run.first, run.last) {
        (Some(first), Some(last)) => last - first,
        (Some(first), None) => first.elapsed(),
        _ => Duration::ZERO,
    };
    run.shutdown = None;
    RunResult {
        read,
        elapsed,
        spans_exported: None,
    }
}

// ---------------------------------------------------------------------------
// The runs and the report.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Raw,
    RawStream,
    HandWritten { sampled: bool },
    KafkaHandler { sampled: bool },
}

const KINDS: [Kind; 6] = [
    Kind::Raw,
    Kind::RawStream,
    Kind::HandWritten { sampled: false },
    Kind::HandWritten { sampled: true },
    Kind::KafkaHandler { sampled: false },
    Kind::KafkaHandler { sampled: true },
];

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Raw => "raw `BaseConsumer` poll loop (floor)",
            Kind::RawStream => "raw `StreamConsumer` loop, no tracing (reference)",
            Kind::HandWritten { sampled: false } => {
                "hand-written `StreamConsumer` + OTel, tracing off"
            }
            Kind::HandWritten { sampled: true } => {
                "hand-written `StreamConsumer` + OTel, 100% sampled"
            }
            Kind::KafkaHandler { sampled: false } => "kafka-handler `Consumer`, tracing off",
            Kind::KafkaHandler { sampled: true } => "kafka-handler `Consumer`, 100% sampled",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::RawStream => "stream",
            Kind::HandWritten { sampled: false } => "hand-off",
            Kind::HandWritten { sampled: true } => "hand-on",
            Kind::KafkaHandler { sampled: false } => "kh-off",
            Kind::KafkaHandler { sampled: true } => "kh-on",
        }
    }

    fn sampled(self) -> bool {
        matches!(
            self,
            Kind::HandWritten { sampled: true } | Kind::KafkaHandler { sampled: true }
        )
    }

    fn run(
        self,
        runtime: &tokio::runtime::Runtime,
        broker: &EmbeddedBroker,
        group: &str,
        expected: u64,
    ) -> RunResult {
        // Tracing off: the global no-op provider, as `Telemetry::finish`
        // leaves it.
        let telemetry = if self.sampled() {
            Some(Telemetry::install())
        } else {
            global::set_tracer_provider(NoopTracerProvider::new());
            None
        };
        let mut result = match self {
            Kind::Raw => run_raw(broker, group, expected),
            Kind::RawStream => run_raw_stream(runtime, broker, group, expected),
            Kind::HandWritten { .. } => run_hand_written(runtime, broker, group, expected),
            Kind::KafkaHandler { .. } => {
                run_kafka_handler(runtime, broker, group, expected, telemetry.as_ref())
            }
        };
        result.spans_exported = telemetry.map(Telemetry::finish);
        result
    }
}

fn main() {
    let records = env_u64("BENCH_RECORDS", 200_000);
    let repeats = env_u64("BENCH_REPEATS", 5).max(1) as usize;
    let (runtime, broker) = common::start();
    runtime
        .block_on(broker.create_topic(TOPIC, PARTITIONS))
        .expect("creating the topic");
    let expected = produce(&broker, records);

    let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); KINDS.len()];
    let mut group_seq = 0;
    for repeat in 0..repeats {
        for index in round_order(repeat, KINDS.len()) {
            let kind = KINDS[index];
            group_seq += 1;
            let group = format!("bench-{}-{group_seq}", kind.slug());
            let result = kind.run(&runtime, &broker, &group, expected);
            eprintln!(
                "repeat {}/{repeats} {:>8}: read {} in {:.3?} = {:.0} records/s{}",
                repeat + 1,
                kind.slug(),
                result.read,
                result.elapsed,
                result.records_per_sec(),
                result
                    .spans_exported
                    .map(|n| format!(", {n} spans exported"))
                    .unwrap_or_default()
            );
            results[index].push(result);
        }
    }

    let medians: Vec<f64> = results
        .iter()
        .map(|runs| {
            median(
                &mut runs
                    .iter()
                    .map(RunResult::records_per_sec)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let raw = medians[0];
    println!();
    println!(
        "End to end: {records} records produced, {expected} held by the mock over {PARTITIONS} partitions; \
         medians of {repeats} runs each"
    );
    println!();
    println!(
        "| consumer | records/s (median) | µs/record | × raw | runs (records/s) | records read | spans exported |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((kind, runs), median) in KINDS.iter().zip(&results).zip(&medians) {
        let per_run: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.0}k", r.records_per_sec() / 1000.0))
            .collect();
        let reads: Vec<u64> = runs.iter().map(|r| r.read).collect();
        let all_read = reads.iter().all(|&r| r == expected);
        let spans = if kind.sampled() {
            let exported: u64 = runs.iter().filter_map(|r| r.spans_exported).sum();
            let read: u64 = reads.iter().sum();
            format!(
                "{exported} / {read} ({:.1}%)",
                100.0 * exported as f64 / read.max(1) as f64
            )
        } else {
            "—".to_owned()
        };
        println!(
            "| {} | {:.0} | {:.2} | {:.2}× | {} | {} | {spans} |",
            kind.describe(),
            median,
            1e6 / median.max(1e-9),
            median / raw,
            per_run.join(", "),
            if all_read {
                format!("all {expected}")
            } else {
                format!("{reads:?} of {expected}")
            },
        );
    }

    let ratio = |kind: Kind| medians[KINDS.iter().position(|k| *k == kind).expect("a kind")] / raw;
    let kh_on = ratio(Kind::KafkaHandler { sampled: true });
    let kh_off = ratio(Kind::KafkaHandler { sampled: false });
    let hand_on = ratio(Kind::HandWritten { sampled: true });
    let hand_off = ratio(Kind::HandWritten { sampled: false });
    let verdict = |met: bool| if met { "met" } else { "**missed**" };
    println!();
    println!("| target | measured | |");
    println!("|---|---|---|");
    println!(
        "| kafka-handler 100% sampled ≥ 0.85× raw | {kh_on:.2}× | {} |",
        verdict(kh_on >= 0.85)
    );
    println!(
        "| kafka-handler tracing off ≥ 0.95× raw | {kh_off:.2}× | {} |",
        verdict(kh_off >= 0.95)
    );
    println!(
        "| never slower than hand-written, 100% sampled | {kh_on:.2}× vs {hand_on:.2}× raw (kafka-handler ÷ hand-written = {:.2}) | {} |",
        kh_on / hand_on,
        verdict(kh_on >= hand_on)
    );
    println!(
        "| never slower than hand-written, tracing off | {kh_off:.2}× vs {hand_off:.2}× raw (kafka-handler ÷ hand-written = {:.2}) | {} |",
        kh_off / hand_off,
        verdict(kh_off >= hand_off)
    );
}
