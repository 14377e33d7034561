//! Poison records do not block other partitions: the throughput of the
//! healthy partitions while one partition retries a record that always
//! fails, against the same consumer when nothing fails, in records/s on the
//! embedded broker (librdkafka's in-process mock cluster).
//!
//! Every run gets a fresh 4-partition topic and a fresh consumer group. The
//! bench produces `BENCH_RECORDS_PER_PARTITION` records (default 50 000) to
//! each partition: a 16-byte payload plus one sampled `traceparent` header
//! with a unique trace id, about 95 bytes on the wire, in message sets of
//! 5 000 records whatever the production rate (a long `linger.ms`), so that
//! every scenario's partitions hold the same message sets (the mock's Fetch
//! returns one message set per partition per request). The mock silently
//! drops the oldest message sets beyond 5 MiB per partition (about 55 000 of
//! these records), so the bench counts what it kept with the watermarks and
//! expects exactly that. It then reads the topic from the earliest offset
//! with the `kafka_handler::Consumer` and a synchronous no-op handler
//! (`Handler::sync`), in three scenarios:
//!
//! - `healthy`: every record succeeds.
//! - `poison`: the same, except that the first record of partition 0 fails
//!   (transiently) on every attempt. The handler has no dead-letter topic,
//!   `retries = u32::MAX` and backoff `BENCH_BACKOFF_MIN_MS..BENCH_BACKOFF_MAX_MS`
//!   (default `1ms..50ms`): partition 0 is paused and its record retried in
//!   a lane for the whole run, an attempt every 25 to 50 ms once the backoff
//!   reaches its cap (the retry path runs, rather than sleeping for
//!   seconds). The bench counts the attempts, in the whole run and while
//!   timed.
//! - `p0-empty` (reference): every record succeeds, and partition 0 has no
//!   records. In `healthy` the one consumer loop also handles partition 0's
//!   records, interleaved with the others, so partitions 1..=3 get about
//!   three quarters of it; in `poison` they get all of it. This scenario is
//!   partitions 1..=3 with partition 0 silent and nothing retrying, so that
//!   `poison ÷ p0-empty` is the cost of the retrying lane itself.
//!
//! Each run's figure is the records/s of partitions 1..=3: the number of
//! their records over the wall time from the first of them handled to the
//! last (group join and shutdown are excluded; the consumer is shut down at
//! the last one). The table also gives the records/s of all partitions in
//! the same window (partition 0's records handled meanwhile included): what
//! the consumer handles in all.
//!
//! Telemetry is on in every run, as in the end-to-end bench's `100% sampled`:
//! a fresh SDK provider per run (default `ParentBased(AlwaysOn)` sampler,
//! the batch span processor with its default configuration, an exporter that
//! counts and discards), kafka-handler's default propagation
//! (`Propagation::default().install()`: W3C trace context and baggage) as
//! the global propagator, no `tracing` subscriber. Consumers get
//! `session.timeout.ms=1500`, `heartbeat.interval.ms=100`
//! (`EmbeddedBroker::consumer_properties`) and `fetch.queue.backoff.ms=10`
//! (see `end_to_end.rs` for why;
//! `BENCH_FETCH_QUEUE_BACKOFF_MS=default` keeps librdkafka's 1000).
//!
//! The three scenarios run `BENCH_ROUNDS` times (default 7), in a rotated
//! order each round, reversed every other round; the table reports medians.
//! The target: partitions 1..=3 while partition 0 retries stay within the
//! normal range of `healthy` (at least 0.90×). The mock's rate is a property
//! of the mock: compare the ratios, not the absolute figures.
//!
//! Run it with `cargo bench -p kafka-handler --bench poison`
//! (`BENCH_RECORDS_PER_PARTITION=10000 BENCH_ROUNDS=3` for a quicker run).
//! A timed window is about 0.4 s at the default size; for longer windows,
//! compress what the producer sends so that more records fit in the mock's
//! 5 MiB: `BENCH_COMPRESSION=lz4 BENCH_RECORDS_PER_PARTITION=150000` (about
//! 0.8 s; lz4 keeps about 175 000 of these records per partition; the
//! consumer then also decompresses).

mod common;

use common::produce::TracedProducer;
use common::{consumer_properties, env_u64, median, round_order, run_consumer, Telemetry};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_handler::testing::EmbeddedBroker;
use kafka_handler::{Backoff, Consumer, Handler, HandlerError, Record, Shutdown};

const PARTITIONS: i32 = 4;
/// The partition whose first record fails in the `poison` scenario.
const POISONED: i32 = 0;
const PAYLOAD_BYTES: usize = 16;
/// Records per message set (producer batch); about 475 KB.
const BATCH_RECORDS: u64 = 5_000;
/// A run that has not handled every healthy record after this long is
/// reported as is.
const RUN_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Scenarios.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Healthy,
    Poison,
    P0Empty,
}

const SCENARIOS: [Scenario; 3] = [Scenario::Healthy, Scenario::Poison, Scenario::P0Empty];

impl Scenario {
    fn slug(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::Poison => "poison",
            Scenario::P0Empty => "p0-empty",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy: every record succeeds",
            Scenario::Poison => "poison: partition 0's first record always fails (held, retried)",
            Scenario::P0Empty => "reference: partition 0 empty, every record succeeds",
        }
    }

    /// Whether partition 0 gets records.
    fn fills_partition_0(self) -> bool {
        self != Scenario::P0Empty
    }
}

// ---------------------------------------------------------------------------
// The handler and its bookkeeping.

/// What one run's handler counts. The handler runs on the consumer's task
/// (attempts in the retry lane too), so there is no contention; atomics and
/// a mutex because `Handler::sync` wants `Send + Sync`.
struct Tally {
    /// The offset of the record of partition 0 that always fails, if any.
    poison_offset: Option<i64>,
    /// Records of partitions 1..=3 the run expects.
    expected: u64,
    /// Records of partitions 1..=3 handled.
    handled: AtomicU64,
    /// Records of partition 0 handled (successfully).
    partition_0: AtomicU64,
    /// Attempts at the poison record (the first one included).
    attempts: AtomicU64,
    times: Mutex<Times>,
    shutdown: Shutdown,
}

/// The first and last healthy record handled.
#[derive(Default)]
struct Times {
    first: Option<Snapshot>,
    last: Option<Snapshot>,
}

/// When a healthy record was handled, and the partition 0 counts then.
#[derive(Clone, Copy)]
struct Snapshot {
    at: Instant,
    /// Attempts at the poison record so far.
    attempts: u64,
    /// Records of partition 0 handled so far.
    partition_0: u64,
}

impl Tally {
    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            attempts: self.attempts.load(Ordering::Relaxed),
            partition_0: self.partition_0.load(Ordering::Relaxed),
        }
    }

    fn handle(&self, record: &Record<'_>) -> Result<(), HandlerError> {
        black_box(record.payload());
        if record.partition() == POISONED {
            if Some(record.offset()) == self.poison_offset {
                self.attempts.fetch_add(1, Ordering::Relaxed);
                return Err(HandlerError::transient("poison record"));
            }
            self.partition_0.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let handled = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        if handled == 1 {
            self.times().first = Some(self.snapshot());
        }
        if handled == self.expected {
            self.times().last = Some(self.snapshot());
            self.shutdown.trigger();
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Producing.

/// What the broker holds of a topic: each partition's low and high
/// watermarks.
struct Held {
    watermarks: Vec<(i64, i64)>,
}

impl Held {
    /// Records of partitions 1..=3.
    fn healthy(&self) -> u64 {
        self.watermarks
            .iter()
            .enumerate()
            .filter(|(partition, _)| *partition as i32 != POISONED)
            .map(|(_, (low, high))| (high - low) as u64)
            .sum()
    }

    /// Partition 0's first offset, when it has a record.
    fn first_of_partition_0(&self) -> Option<i64> {
        let (low, high) = self.watermarks[POISONED as usize];
        (high > low).then_some(low)
    }
}

/// Creates `topic` and produces `per_partition` traced records to each
/// partition (none to partition 0 unless `partition_0`).
fn produce(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    topic: &str,
    per_partition: u64,
    partition_0: bool,
    compression: &str,
) -> Held {
    runtime
        .block_on(broker.create_topic(topic, PARTITIONS))
        .expect("creating the topic");
    // Full batches of `BATCH_RECORDS` whatever the production rate, so that
    // every scenario's partitions hold the same message sets (`flush` sends
    // the last, partial batch at once).
    let batch_records = BATCH_RECORDS.to_string();
    let producer = TracedProducer::new(
        broker,
        &[
            ("linger.ms", "1000"),
            ("batch.num.messages", &batch_records),
            ("compression.type", compression),
        ],
    );
    let partitions: Vec<i32> = (0..PARTITIONS)
        .filter(|&p| partition_0 || p != POISONED)
        .collect();
    let mut payload = [b'x'; PAYLOAD_BYTES];
    let mut i = 0u64;
    for _ in 0..per_partition {
        for &partition in &partitions {
            i += 1;
            payload[..8].copy_from_slice(&i.to_be_bytes());
            if let Err(err) = producer.send(topic, partition, &payload, i) {
                panic!("producing record {i}: {err}");
            }
        }
    }
    let failed = producer.flush();
    if failed > 0 {
        eprintln!("{failed} of {i} deliveries to {topic} failed");
    }
    let watermarks = (0..PARTITIONS)
        .map(|partition| producer.watermarks(topic, partition))
        .collect();
    Held { watermarks }
}

// ---------------------------------------------------------------------------
// One run.

/// The bench's knobs.
struct Options {
    per_partition: u64,
    backoff: Backoff,
    compression: String,
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct RunResult {
    /// Records of partitions 1..=3 handled, and how many the broker held.
    handled: u64,
    expected: u64,
    /// Records of partition 0 handled: in the whole run, and during `elapsed`.
    partition_0: u64,
    partition_0_in_window: u64,
    /// First to last record of partitions 1..=3.
    elapsed: Duration,
    /// Attempts at the poison record: during `elapsed`, and in the whole run.
    attempts_in_window: u64,
    attempts: u64,
    spans_exported: u64,
}

impl RunResult {
    /// Records/s of partitions 1..=3.
    fn records_per_sec(&self) -> f64 {
        self.handled as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Records/s of all partitions during the same window: what the
    /// consumer handled in all.
    fn all_per_sec(&self) -> f64 {
        (self.handled + self.partition_0_in_window) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn run(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    scenario: Scenario,
    seq: u64,
    options: &Options,
) -> RunResult {
    let topic = format!("bench-poison-{}-{seq}", scenario.slug());
    let group = format!("bench-poison-{}-{seq}", scenario.slug());
    let held = produce(
        runtime,
        broker,
        &topic,
        options.per_partition,
        scenario.fills_partition_0(),
        &options.compression,
    );
    let poison_offset = match scenario {
        Scenario::Poison => Some(
            held.first_of_partition_0()
                .expect("partition 0 holds records"),
        ),
        Scenario::Healthy | Scenario::P0Empty => None,
    };
    let shutdown = Shutdown::new();
    let tally = Arc::new(Tally {
        poison_offset,
        expected: held.healthy(),
        handled: AtomicU64::new(0),
        partition_0: AtomicU64::new(0),
        attempts: AtomicU64::new(0),
        times: Mutex::new(Times::default()),
        shutdown: shutdown.clone(),
    });

    // Installed before `build`: the consumer's processors take the global
    // tracer as it is then.
    let telemetry = Telemetry::install();
    let handler = {
        let tally = tally.clone();
        Handler::sync(
            "bench::poison",
            [topic.as_str()],
            group.as_str(),
            move |record| tally.handle(record),
        )
        .with_retries(u32::MAX)
        .with_backoff(options.backoff)
    };
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handler(handler)
        .tracer_provider(telemetry.provider.clone());
    for (key, value) in consumer_properties(broker) {
        builder = builder.set(key, value);
    }
    let consumer = builder.build().expect("a valid consumer configuration");
    run_consumer(runtime, consumer, shutdown, RUN_LIMIT);
    let spans_exported = telemetry.finish();

    let times = tally.times();
    let end = times.last.unwrap_or_else(|| tally.snapshot());
    let (elapsed, attempts_in_window, partition_0_in_window) = match times.first {
        Some(first) => (
            end.at - first.at,
            end.attempts - first.attempts,
            end.partition_0 - first.partition_0,
        ),
        None => (Duration::ZERO, 0, 0),
    };
    RunResult {
        handled: tally.handled.load(Ordering::Relaxed),
        expected: tally.expected,
        partition_0: tally.partition_0.load(Ordering::Relaxed),
        partition_0_in_window,
        elapsed,
        attempts_in_window,
        attempts: tally.attempts.load(Ordering::Relaxed),
        spans_exported,
    }
}

// ---------------------------------------------------------------------------
// The rounds and the report.

fn main() {
    let per_partition = env_u64("BENCH_RECORDS_PER_PARTITION", 50_000).max(1);
    let rounds = env_u64("BENCH_ROUNDS", 7).max(1) as usize;
    let backoff_min = Duration::from_millis(env_u64("BENCH_BACKOFF_MIN_MS", 1));
    let backoff_max = Duration::from_millis(env_u64("BENCH_BACKOFF_MAX_MS", 50)).max(backoff_min);
    let backoff = Backoff::exponential(backoff_min, backoff_max);
    let compression = std::env::var("BENCH_COMPRESSION").unwrap_or_else(|_| "none".to_owned());
    let options = Options {
        per_partition,
        backoff,
        compression,
    };
    let (runtime, broker) = common::start();

    let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); SCENARIOS.len()];
    let mut seq = 0;
    for round in 0..rounds {
        for index in round_order(round, SCENARIOS.len()) {
            let scenario = SCENARIOS[index];
            seq += 1;
            let result = run(&runtime, &broker, scenario, seq, &options);
            eprintln!(
                "round {}/{rounds} {:>8}: partitions 1..=3: {} of {} held ({} produced) in {:.3?} = {:.0} records/s; \
                 partition 0: {} handled, {} poison attempts ({} while timed); {} spans exported",
                round + 1,
                scenario.slug(),
                result.handled,
                result.expected,
                3 * options.per_partition,
                result.elapsed,
                result.records_per_sec(),
                result.partition_0,
                result.attempts,
                result.attempts_in_window,
                result.spans_exported,
            );
            results[index].push(result);
        }
    }

    let median_of = |index: usize, rate: fn(&RunResult) -> f64| {
        median(&mut results[index].iter().map(rate).collect::<Vec<_>>())
    };
    let of = |scenario: Scenario| {
        SCENARIOS
            .iter()
            .position(|s| *s == scenario)
            .expect("a scenario")
    };
    let healthy = median_of(of(Scenario::Healthy), RunResult::records_per_sec);
    println!();
    println!(
        "Poison record: {PARTITIONS} partitions, {per_partition} records produced per partition \
         (compression {}), 100% sampled; poison backoff {backoff}, retries u32::MAX, no \
         dead-letter topic; records/s of partitions 1..=3, first to last of them; medians of \
         {rounds} runs each",
        options.compression
    );
    println!();
    println!(
        "| scenario | records/s of 1..=3 (median) | µs/record | × healthy | runs (records/s of 1..=3) | all partitions, records/s (median) | records of 1..=3 handled | partition 0 handled (while timed) | poison attempts (while timed, rate) | spans exported |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (index, (scenario, runs)) in SCENARIOS.iter().zip(&results).enumerate() {
        let median = median_of(index, RunResult::records_per_sec);
        let all = median_of(index, RunResult::all_per_sec);
        let per_run = join(runs, |r| format!("{:.0}k", r.records_per_sec() / 1000.0));
        let handled = if runs.iter().all(|r| r.handled == r.expected) {
            "all".to_owned()
        } else {
            join(runs, |r| format!("{}/{}", r.handled, r.expected))
        };
        let partition_0 = if scenario.fills_partition_0() {
            join(runs, |r| {
                format!("{} ({})", r.partition_0, r.partition_0_in_window)
            })
        } else {
            "—".to_owned()
        };
        let attempts = if *scenario == Scenario::Poison {
            join(runs, |r| {
                format!(
                    "{} ({}, {:.0}/s)",
                    r.attempts,
                    r.attempts_in_window,
                    r.attempts_in_window as f64 / r.elapsed.as_secs_f64().max(1e-9)
                )
            })
        } else {
            "—".to_owned()
        };
        let exported: u64 = runs.iter().map(|r| r.spans_exported).sum();
        let ended: u64 = runs
            .iter()
            .map(|r| r.handled + r.partition_0 + r.attempts)
            .sum();
        println!(
            "| {} | {median:.0} | {:.2} | {:.2}× | {per_run} | {all:.0} | {handled} | {partition_0} | {attempts} | {exported} / {ended} ({:.1}%) |",
            scenario.describe(),
            1e6 / median.max(1e-9),
            median / healthy,
            100.0 * exported as f64 / ended.max(1) as f64,
        );
    }

    let poison = median_of(of(Scenario::Poison), RunResult::records_per_sec);
    let empty = median_of(of(Scenario::P0Empty), RunResult::records_per_sec);
    let healthy_all = median_of(of(Scenario::Healthy), RunResult::all_per_sec);
    let poison_all = median_of(of(Scenario::Poison), RunResult::all_per_sec);
    let ratio = poison / healthy;
    let verdict = |met: bool| if met { "met" } else { "**missed**" };
    println!();
    println!("| target | measured | |");
    println!("|---|---|---|");
    println!(
        "| partitions 1..=3 while partition 0 retries: within the normal range of healthy (≥ 0.90×) | {ratio:.2}× ({poison:.0} vs {healthy:.0} records/s) | {} |",
        verdict(ratio >= 0.9)
    );
    println!(
        "| (reading) all partitions: poison ÷ healthy, what the consumer handles in all | {:.2}× ({poison_all:.0} vs {healthy_all:.0} records/s) | |",
        poison_all / healthy_all
    );
    println!(
        "| (reading) partitions 1..=3: poison ÷ partition 0 empty, the cost of the retrying lane itself | {:.2}× ({poison:.0} vs {empty:.0} records/s) | |",
        poison / empty
    );
}

/// One formatted figure per run, comma-separated.
fn join(runs: &[RunResult], format: impl Fn(&RunResult) -> String) -> String {
    runs.iter().map(format).collect::<Vec<_>>().join(", ")
}
