//! End-to-end consumer throughput, in records/s, on the embedded broker
//! (librdkafka's in-process mock cluster).
//!
//! The bench produces `BENCH_RECORDS` records (default 200 000; 100-byte
//! payload plus one sampled `traceparent` header each, unique trace ids) over
//! 16 partitions of one topic, counts what the mock actually kept (the sum of
//! high minus low watermarks: the mock silently drops old data beyond about
//! 5 MiB per partition), then reads the whole topic from the earliest offset
//! with a fresh consumer group per run, in thirteen configurations:
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
//!   It is a synchronous `fn` whose calls return within 1 ms, so it runs
//!   inline, on the group's task, with no hand-off (a synchronous handler
//!   moves to Tokio's blocking pool only after 3 calls in a row over 1 ms,
//!   which a no-op does not make).
//! - `kafka-handler async, tracing off` / `.. 100% sampled`: the same no-op
//!   as an `async fn`, which also runs on the group's task (polled once
//!   when it starts, and done then). The like-for-like comparison with
//!   ruststream, whose handlers are async.
//! - `kafka-handler batch, tracing off` / `kafka-handler batch, 100%
//!   sampled`: the same `Consumer` with a batch handler,
//!   `batch(max_records = 500, max_wait = "50ms")`, that walks its batch and
//!   does the same work for each record inside the record's own scope
//!   (`record.process(|payload| ..)`: the record's context and its own
//!   `process` span, linked to the batch's `process` span, which links every
//!   record's producer). The trace-correct way to write a batch handler.
//! - `kafka-handler, tracing off, SDK metrics`: the single-record
//!   configuration with an SDK meter provider installed (a periodic reader
//!   every second, exporting to a sink that discards), so the per-record
//!   metrics (one `messaging.process.duration` measurement and one
//!   `messaging.client.consumed.messages` increment) are recorded; every
//!   other configuration runs with the global no-op meter provider.
//! - `ruststream, tracing off` / `ruststream, 100% sampled`: the closest
//!   Rust peer, ruststream-rdkafka 0.7.1 (on the same rdkafka 0.39 and
//!   opentelemetry 0.33), with an async handler calling the same no-op
//!   (`impl Handle<Payload<'_>>`, a borrowed view of the payload: no codec,
//!   no copy), on a `KafkaTopic` with the same consumer properties,
//!   `StartOffset::Earliest` and `Commit::Tracked` (per-record
//!   acknowledgement, at-least-once like kafka-handler), default workers.
//!   Sampled, the app gets ruststream's `OpenTelemetry::consume_layer()`,
//!   whose span per delivery is a `tracing` span: it reaches OpenTelemetry
//!   through the tracing-opentelemetry layer of a global `tracing`
//!   subscriber ([`Bridge`], what `ruststream::otel::Otel::init` installs),
//!   which the bench switches on (at INFO) for these runs only. Its spans
//!   are roots: they do not continue the producer's trace.
//!
//! "Tracing off" means no tracer provider is installed (the global no-op).
//! "100% sampled" installs a fresh SDK provider per run: the default
//! `ParentBased(AlwaysOn)` sampler, the batch span processor with a queue of
//! `BENCH_SPAN_QUEUE` spans (default 262,144; the SDK's default of 2,048
//! dropped about 0.5% of the spans at these rates, since the processor drops
//! spans when its queue is full) and its default export batch (512),
//! `max_links_per_span` raised from the SDK's 128 to 1024 (a 500-record batch
//! span has 500 links; no other span has more than one, so the limit changes
//! nothing for them), and an exporter that counts spans and links and
//! discards them; the table reports how many spans reached it against how
//! many the run should have exported (one per record read, plus one per
//! batch for the batch handler), marks any shortfall, and reports that no
//! link was dropped. The global propagator is kafka-handler's default
//! throughout (`Propagation::default().install()`: W3C trace context and
//! baggage, read with kafka-handler's own parser; what the quickstart and
//! the generated binaries install), so extraction runs even with tracing
//! off; the hand-written loop extracts through it too, so it stays
//! comparable. The global `tracing` subscriber ([`Bridge`]) is off except
//! in the sampled ruststream runs: for every other configuration it is as
//! if none were installed.
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
//! one (group join and shutdown are excluded). For the batch handler, "handled"
//! is the record's `process` scope: the first batch's records arrive before
//! the clock starts, but partitions arrive in runs of thousands of records,
//! so that is one batch (about 0.5 ms). Its runs also end with a tail: a
//! partition's last batch is partial when a batch was cut by `max_wait`
//! before (a partition's records stop arriving for more than 50 ms while the
//! consumer reads the others), and it waits for `max_wait`. The batch table
//! reports that tail and the rate up to the end of the last full batch
//! beside the first-to-last rate. The set of thirteen runs is
//! repeated `BENCH_REPEATS` times (default 5), in a rotated order each time,
//! reversed every other time, and the table reports medians and ratios
//! against the raw `BaseConsumer` of the same process (and against ruststream
//! of the same tracing). The mock's rate is a
//! property of the mock: compare the ratios, not the absolute figures.
//!
//! Run it with `cargo bench -p kafka-handler --bench end_to_end`
//! (`BENCH_RECORDS=50000 cargo bench ...` for a quicker run). For profiling,
//! `BENCH_ONLY=kh-on,batch-on` runs only the configurations named (by the
//! names of the per-run lines) and skips the tables, and
//! `BENCH_BATCH_TIMELINE=1` prints every call of the batch handler.
//!
//! This file holds the kafka-handler handlers and runs, and the orchestration.
//! The other consumers, the meter provider and the tables live in
//! `end_to_end/` (not in `common/`, which every bench compiles: they use this
//! bench's own items): `rdkafka_loops.rs` (the raw loops and the hand-written
//! one), `ruststream.rs` (the peer and its `tracing` bridge),
//! `meter_provider.rs`, and `report.rs`.

mod common;
#[path = "end_to_end/meter_provider.rs"]
mod meter_provider;
#[path = "end_to_end/rdkafka_loops.rs"]
mod rdkafka_loops;
#[path = "end_to_end/report.rs"]
mod report;
#[path = "end_to_end/ruststream.rs"]
mod ruststream;

use common::produce::TracedProducer;
use common::{consumer_properties, env_u64, round_order, run_consumer, Exported, Telemetry};
use meter_provider::{install_meter_provider, uninstall_meter_provider};
use rdkafka_loops::{run_hand_written, run_raw, run_raw_stream};
use report::Report;
use ruststream::{run_ruststream, Bridge};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_handler::testing::EmbeddedBroker;
use kafka_handler::{
    handlers, kafka_handler, Batch, BatchOptions, Consumer, HandlerFactory, Shutdown,
};
use opentelemetry::global;
use opentelemetry::trace::noop::NoopTracerProvider;

const TOPIC: &str = "bench-e2e";
const PARTITIONS: i32 = 16;
const PAYLOAD_BYTES: usize = 100;
/// A run that has not read everything after this long is reported as is.
const RUN_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The kafka-handler handler and its completion detection.

/// Records handled in the current run (kafka-handler or ruststream).
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

/// The no-op handler as a synchronous function: its calls return well
/// within 1 ms, so it runs inline on the group's task, no hand-off.
#[kafka_handler(topics = ["bench-e2e"], group = "bench")]
fn count(payload: &[u8]) {
    count_record(payload);
}

/// The same no-op as an `async fn`: it runs on the group's task too, polled
/// once when it starts (and done then), no hand-off.
#[kafka_handler(topics = ["bench-e2e"], group = "bench")]
async fn count_async(payload: &[u8]) {
    count_record(payload);
}

/// The batch handler: every record of the batch handled in its own scope
/// (its own context and `process` span, linked to the batch span), with the
/// same work as [`count`].
#[kafka_handler(
    topics = ["bench-e2e"],
    group = "bench",
    batch(max_records = 500, max_wait = "50ms")
)]
fn count_batch(batch: Batch<'_, &[u8]>) {
    let start = Instant::now();
    for record in &batch {
        record.process(|payload| count_record(payload));
    }
    note_batch(start, &batch);
}

/// The no-op handler's work on one record: count it, time the first and the
/// last, and trigger the shutdown at the last.
#[inline(always)]
fn count_record(payload: &[u8]) {
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

/// The batch handler's `max_records` and `max_wait` (as in its attribute).
const BATCH_MAX_RECORDS: usize = 500;
const BATCH_MAX_WAIT: Duration = Duration::from_millis(50);
/// The batch handler's calls in the current run.
static BATCHES: Mutex<BatchStats> = Mutex::new(BatchStats::new());

/// What the batch handler's calls of one run saw.
#[derive(Clone, Debug)]
struct BatchStats {
    /// Calls, and how many of them had `BATCH_MAX_RECORDS` records (the
    /// others were cut by `max_wait`).
    calls: u64,
    full: u64,
    /// Time spent inside the calls.
    busy: Duration,
    /// The end of the last full call, and the records handled by then.
    last_full: Option<(Instant, u64)>,
    /// Every call (start, duration, records, partition), when
    /// `BENCH_BATCH_TIMELINE` is set.
    timeline: Option<Vec<(Instant, Duration, usize, i32)>>,
}

impl BatchStats {
    const fn new() -> Self {
        Self {
            calls: 0,
            full: 0,
            busy: Duration::ZERO,
            last_full: None,
            timeline: None,
        }
    }
}

/// Notes one call of the batch handler, which started at `start`.
fn note_batch(start: Instant, batch: &Batch<'_, &[u8]>) {
    let end = Instant::now();
    let mut stats = BATCHES.lock().unwrap_or_else(|poison| poison.into_inner());
    stats.calls += 1;
    stats.busy += end - start;
    if batch.len() >= BATCH_MAX_RECORDS {
        stats.full += 1;
        stats.last_full = Some((end, HANDLED.load(Ordering::Relaxed)));
    }
    if let Some(timeline) = &mut stats.timeline {
        timeline.push((start, end - start, batch.len(), batch.partition()));
    }
}

fn lock_run() -> std::sync::MutexGuard<'static, RunState> {
    RUN.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Resets the count for a run of a consumer whose handler calls
/// [`count_record`] and that expects `expected` records; the run's shutdown
/// handle, triggered at the last record.
fn start_counting(expected: u64) -> Shutdown {
    let shutdown = Shutdown::new();
    HANDLED.store(0, Ordering::Relaxed);
    EXPECTED.store(expected, Ordering::Relaxed);
    *lock_run() = RunState {
        first: None,
        last: None,
        shutdown: Some(shutdown.clone()),
    };
    shutdown
}

/// What the run [`start_counting`] started counted: the records handled,
/// timed from the first to the last (to now when the last never came).
fn finish_counting() -> RunResult {
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
        exported: None,
        batches: None,
    }
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
// What a run measures, and the kafka-handler runs (the other consumers are
// in `end_to_end/`).

/// What the batch handler's calls of one run amounted to.
#[derive(Clone, Copy, Debug)]
struct BatchRun {
    calls: u64,
    full: u64,
    busy: Duration,
    /// Records handled up to the end of the last full batch, and the time
    /// from the first record to then: the run without its end-of-input tail
    /// (the last, partial, batches of partitions wait for `max_wait`).
    to_last_full: Option<(u64, Duration)>,
}

impl BatchRun {
    fn records_per_sec_to_last_full(&self) -> Option<f64> {
        let (read, elapsed) = self.to_last_full?;
        Some(read as f64 / elapsed.as_secs_f64().max(1e-9))
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct RunResult {
    read: u64,
    elapsed: Duration,
    /// What the exporter was handed (sampled runs).
    exported: Option<Exported>,
    /// Batches delivered, and how many were full (batch handler runs).
    batches: Option<BatchRun>,
}

impl RunResult {
    fn records_per_sec(&self) -> f64 {
        self.read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Which no-op handler a kafka-handler run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KhHandler {
    /// [`count`], a synchronous function.
    Sync,
    /// [`count_async`], an `async fn`.
    Async,
    /// [`count_batch`], the batch handler.
    Batch,
}

/// The kafka-handler `Consumer` with a counting no-op handler.
fn run_kafka_handler(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    group: &str,
    expected: u64,
    telemetry: Option<&Telemetry>,
    handler: KhHandler,
) -> RunResult {
    *BATCHES.lock().unwrap_or_else(|poison| poison.into_inner()) = BatchStats {
        timeline: std::env::var_os("BENCH_BATCH_TIMELINE").map(|_| Vec::new()),
        ..BatchStats::new()
    };
    let shutdown = start_counting(expected);
    let handlers = match handler {
        KhHandler::Sync => handlers![count],
        KhHandler::Async => handlers![count_async],
        KhHandler::Batch => handlers![count_batch],
    };
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handlers(handlers)
        .group(group);
    for (key, value) in consumer_properties(broker) {
        builder = builder.set(key, value);
    }
    if let Some(telemetry) = telemetry {
        builder = builder.tracer_provider(telemetry.provider.clone());
    }
    let consumer = builder.build().expect("a valid consumer configuration");
    run_consumer(runtime, consumer, shutdown, RUN_LIMIT);
    let first = lock_run().first;
    let mut result = finish_counting();
    if handler == KhHandler::Batch {
        result.batches = Some(batch_run(first));
    }
    result
}

/// The batch handler's calls of the run that started at `first`; prints
/// their timeline when `BENCH_BATCH_TIMELINE` is set.
fn batch_run(first: Option<Instant>) -> BatchRun {
    let stats = std::mem::replace(
        &mut *BATCHES.lock().unwrap_or_else(|poison| poison.into_inner()),
        BatchStats::new(),
    );
    if let (Some(timeline), Some(first)) = (&stats.timeline, first) {
        for (index, (start, took, records, partition)) in timeline.iter().enumerate() {
            eprintln!(
                "  batch #{index:<4} at {:>10.3?} took {took:>10.3?}: {records:>3} records of partition {partition}{}",
                start.saturating_duration_since(first),
                if *records < BATCH_MAX_RECORDS { " (cut by max_wait)" } else { "" }
            );
        }
    }
    BatchRun {
        calls: stats.calls,
        full: stats.full,
        busy: stats.busy,
        to_last_full: first
            .zip(stats.last_full)
            .map(|(first, (end, read))| (read, end - first)),
    }
}

// ---------------------------------------------------------------------------
// The runs.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Raw,
    RawStream,
    HandWritten {
        sampled: bool,
    },
    /// The synchronous no-op, [`count`] (inline, on the group's task).
    KafkaHandler {
        sampled: bool,
    },
    /// The `async fn` no-op, [`count_async`] (the group's task).
    KafkaHandlerAsync {
        sampled: bool,
    },
    KafkaHandlerBatch {
        sampled: bool,
    },
    /// Tracing off, SDK meter provider installed.
    KafkaHandlerMetered,
    /// ruststream-rdkafka with an async no-op.
    RustStream {
        sampled: bool,
    },
}

const KINDS: [Kind; 13] = [
    Kind::Raw,
    Kind::RawStream,
    Kind::HandWritten { sampled: false },
    Kind::HandWritten { sampled: true },
    Kind::KafkaHandler { sampled: false },
    Kind::KafkaHandler { sampled: true },
    Kind::KafkaHandlerAsync { sampled: false },
    Kind::KafkaHandlerAsync { sampled: true },
    Kind::KafkaHandlerBatch { sampled: false },
    Kind::KafkaHandlerBatch { sampled: true },
    Kind::KafkaHandlerMetered,
    Kind::RustStream { sampled: false },
    Kind::RustStream { sampled: true },
];

/// `max_links_per_span` of every sampled run's provider: the SDK's default
/// (128) would drop 372 of a 500-record batch span's links.
const MAX_LINKS_PER_SPAN: u32 = 1024;

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
            Kind::KafkaHandler { sampled: false } => {
                "kafka-handler `Consumer`, sync `fn` handler (inline), tracing off"
            }
            Kind::KafkaHandler { sampled: true } => {
                "kafka-handler `Consumer`, sync `fn` handler (inline), 100% sampled"
            }
            Kind::KafkaHandlerAsync { sampled: false } => {
                "kafka-handler `Consumer`, `async fn` handler, tracing off"
            }
            Kind::KafkaHandlerAsync { sampled: true } => {
                "kafka-handler `Consumer`, `async fn` handler, 100% sampled"
            }
            Kind::KafkaHandlerBatch { sampled: false } => {
                "kafka-handler batch handler (500 / 50ms, `process` per record), tracing off"
            }
            Kind::KafkaHandlerBatch { sampled: true } => {
                "kafka-handler batch handler (500 / 50ms, `process` per record), 100% sampled"
            }
            Kind::KafkaHandlerMetered => {
                "kafka-handler `Consumer`, sync `fn` handler, tracing off, SDK metrics"
            }
            Kind::RustStream { sampled: false } => {
                "ruststream-rdkafka 0.7.1, async handler, `Commit::Tracked`, tracing off"
            }
            Kind::RustStream { sampled: true } => {
                "ruststream-rdkafka 0.7.1, async handler, `Commit::Tracked`, OTel consume layer + tracing bridge, 100% sampled"
            }
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
            Kind::KafkaHandlerAsync { sampled: false } => "kha-off",
            Kind::KafkaHandlerAsync { sampled: true } => "kha-on",
            Kind::KafkaHandlerBatch { sampled: false } => "batch-off",
            Kind::KafkaHandlerBatch { sampled: true } => "batch-on",
            Kind::KafkaHandlerMetered => "kh-metrics",
            Kind::RustStream { sampled: false } => "rs-off",
            Kind::RustStream { sampled: true } => "rs-on",
        }
    }

    fn sampled(self) -> bool {
        matches!(
            self,
            Kind::HandWritten { sampled: true }
                | Kind::KafkaHandler { sampled: true }
                | Kind::KafkaHandlerAsync { sampled: true }
                | Kind::KafkaHandlerBatch { sampled: true }
                | Kind::RustStream { sampled: true }
        )
    }

    /// The ruststream configuration of the same tracing, to compare with.
    fn peer(self) -> Kind {
        Kind::RustStream {
            sampled: self.sampled(),
        }
    }

    /// The spans a sampled run should export: one `process` span per record,
    /// plus one per batch for the batch handler; one `ruststream.consume`
    /// span per delivery for ruststream.
    fn expected_spans(self, result: &RunResult) -> u64 {
        result.read + result.batches.map_or(0, |b| b.calls)
    }

    fn run(
        self,
        runtime: &tokio::runtime::Runtime,
        broker: &EmbeddedBroker,
        bridge: &Bridge,
        group: &str,
        expected: u64,
    ) -> RunResult {
        // Tracing off: the global no-op provider, as `Telemetry::finish`
        // leaves it. Sampled: the same provider for every configuration; the
        // link limit only matters to batch spans (the others have at most
        // one link), and the queue is sized so that no span is dropped.
        let telemetry = if self.sampled() {
            Some(Telemetry::install_with(|builder| {
                builder.with_max_links_per_span(MAX_LINKS_PER_SPAN)
            }))
        } else {
            global::set_tracer_provider(NoopTracerProvider::new());
            None
        };
        let kh = |handler| {
            run_kafka_handler(
                runtime,
                broker,
                group,
                expected,
                telemetry.as_ref(),
                handler,
            )
        };
        let mut result = match self {
            Kind::Raw => run_raw(broker, group, expected),
            Kind::RawStream => run_raw_stream(runtime, broker, group, expected),
            Kind::HandWritten { .. } => run_hand_written(runtime, broker, group, expected),
            Kind::KafkaHandler { .. } => kh(KhHandler::Sync),
            Kind::KafkaHandlerAsync { .. } => kh(KhHandler::Async),
            Kind::KafkaHandlerBatch { .. } => kh(KhHandler::Batch),
            Kind::KafkaHandlerMetered => {
                let meter_provider = install_meter_provider();
                let result =
                    run_kafka_handler(runtime, broker, group, expected, None, KhHandler::Sync);
                uninstall_meter_provider(meter_provider);
                result
            }
            Kind::RustStream { .. } => {
                run_ruststream(runtime, broker, group, expected, telemetry.as_ref(), bridge)
            }
        };
        result.exported = telemetry.map(Telemetry::finish_tally);
        result
    }
}

fn main() {
    let records = env_u64("BENCH_RECORDS", 200_000);
    let repeats = env_u64("BENCH_REPEATS", 5).max(1) as usize;
    assert_eq!(
        <count_batch as HandlerFactory>::handler().options().batch,
        Some(BatchOptions::new(BATCH_MAX_RECORDS, BATCH_MAX_WAIT)),
        "the batch handler's attribute and BATCH_MAX_RECORDS / BATCH_MAX_WAIT disagree"
    );
    let bridge = Bridge::install();
    let (runtime, broker) = common::start();
    runtime
        .block_on(broker.create_topic(TOPIC, PARTITIONS))
        .expect("creating the topic");
    let expected = produce(&broker, records);

    let only_var = std::env::var("BENCH_ONLY").ok();
    let only: Option<Vec<&str>> = only_var.as_deref().map(|v| v.split(',').collect());
    let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); KINDS.len()];
    let mut group_seq = 0;
    for repeat in 0..repeats {
        for index in round_order(repeat, KINDS.len()) {
            let kind = KINDS[index];
            if !only.as_ref().is_none_or(|only| only.contains(&kind.slug())) {
                continue;
            }
            group_seq += 1;
            let group = format!("bench-{}-{group_seq}", kind.slug());
            let result = kind.run(&runtime, &broker, &bridge, &group, expected);
            eprintln!(
                "repeat {}/{repeats} {:>10}: read {} in {:.3?} = {:.0} records/s{}{}",
                repeat + 1,
                kind.slug(),
                result.read,
                result.elapsed,
                result.records_per_sec(),
                result
                    .batches
                    .map(|b| format!(
                        ", {} batches ({} cut by max_wait), {:.1?} in the handler, {:.1?} after the last full batch",
                        b.calls,
                        b.calls - b.full,
                        b.busy,
                        b.to_last_full
                            .map_or(Duration::ZERO, |(_, to)| result.elapsed.saturating_sub(to))
                    ))
                    .unwrap_or_default(),
                result
                    .exported
                    .map(|e| format!(
                        ", {} of {} spans exported ({} short; {} links kept, {} dropped, at most {} on one span)",
                        e.spans,
                        kind.expected_spans(&result),
                        kind.expected_spans(&result).saturating_sub(e.spans),
                        e.links,
                        e.dropped_links,
                        e.max_links
                    ))
                    .unwrap_or_default()
            );
            results[index].push(result);
        }
    }

    if only.is_some() {
        // Some configurations did not run: no table.
        return;
    }
    Report::new(&results).print(records, expected, repeats);
}
