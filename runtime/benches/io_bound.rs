//! I/O-bound handlers: how close the consumer comes to the concurrency its
//! `ordering` and `max_in_flight` allow, on the embedded broker (librdkafka's
//! in-process mock cluster).
//!
//! The handler is one `async fn` ([`wait`]) that awaits
//! `tokio::time::sleep(latency)`: `BENCH_LATENCY_US` microseconds, default
//! [`DEFAULT_LATENCY`] (5 ms). It is retargeted to each configuration with
//! `handlers![wait].remove(0).with_topics(..).with_group(..).with_ordering(..)
//! .with_max_in_flight(..)`:
//!
//! | configuration | topic | records (default) | bound |
//! |---|---|---|---|
//! | `partition`: `ordering = "partition"`, default `max_in_flight` (64) | 16 partitions | `BENCH_RECORDS` (3,200) | 16 / latency |
//! | `key`: `ordering = "key"`, `max_in_flight = 64` | 1 partition, 1,000 distinct keys | `BENCH_KEYED_RECORDS` (6,400) | 64 / latency |
//! | `none`: `ordering = "none"`, `max_in_flight = 64` | the same records as `key`, on a topic of its own | `BENCH_KEYED_RECORDS` | 64 / latency |
//! | `serial` (reference): `ordering = "partition"`, `max_in_flight = 1` | 16 partitions | `BENCH_SERIAL_RECORDS` (400) | 1 / latency |
//! | `key-rdkafka`, `none-rdkafka` (diagnostic): `key` and `none` with librdkafka's own `fetch.wait.max.ms=500` and `fetch.queue.backoff.ms=1000` | as `key` | `BENCH_KEYED_RECORDS` | 64 / latency |
//!
//! Why the diagnostic rows: on one partition, `key` and `none` drain a
//! window of records (1,024) faster than the partition delivers them. The
//! runtime pauses the partition at a full window and resumes it at half;
//! pausing discards what librdkafka had prefetched, and after the resume
//! no record of the partition arrives until the Fetch request already
//! waiting at the broker (at the end of the log, for up to
//! `fetch.wait.max.ms`) returns, or librdkafka's fetch backoff
//! (`fetch.queue.backoff.ms`) has passed. The runtime sets them to 100 and
//! 10 ms; the diagnostic rows show what librdkafka's defaults (500 and
//! 1,000 ms) would cost. (When no fetch was in flight at the pause,
//! librdkafka's broker thread would only notice the resume at its next
//! wake-up, up to a second later; the runtime wakes it with a request to
//! the partition's leader.)
//!
//! The keyed records come in blocks of 1,000, each block a shuffled
//! permutation of the 1,000 keys: every key occurs once per block, two
//! records of one key are a block apart on average (and as close as
//! neighbours across a block boundary), and the order is not the keys'.
//! Each record is a 16-byte payload plus one sampled `traceparent` header.
//!
//! Every configuration has its own topic, produced once; every run gets a
//! fresh consumer group reading from the earliest offset. A run's time is
//! from the first record *handled* (its handler starting) to the last one
//! handled (its handler ending), so a run that keeps the bound's concurrency
//! all the time reaches exactly the bound; group join and shutdown are
//! excluded. The handler also counts the records in flight, and the table
//! reports the most seen at once.
//!
//! The bounds assume the handler takes exactly `latency`. Tokio's timer has
//! a 1 ms granularity and wakes a sleep at the tick after its deadline, so
//! the bench also measures what `tokio::time::sleep(latency)` really takes
//! on this machine (`BENCH_SLEEP_SAMPLES` sequential sleeps on a task of the
//! same runtime per round, default 100, so 300 over three rounds; the
//! median) and prints every bound with that measured latency too: a
//! shortfall against the nominal bound that the measured bound explains is
//! the timer's, not the runtime's.
//!
//! Tracing is off (the global no-op provider; the global propagator is
//! kafka-handler's default, `Propagation::default().install()`: W3C trace
//! context and baggage, so extraction runs). Consumers get
//! `session.timeout.ms=1500`, `heartbeat.interval.ms=100`,
//! `auto.offset.reset=earliest` and `fetch.queue.backoff.ms=10`, as in the
//! end-to-end bench.
//!
//! The configurations run `BENCH_REPEATS` rounds (default 3), in a rotated
//! order each round, reversed every other round; the tables report medians.
//! Targets: `partition` ≥ 0.9 × its bound, `key` and `none` ≥ 0.8 × theirs
//! (the nominal bounds).
//!
//! Run it with `cargo bench -p kafka-handler --bench io_bound`
//! (`BENCH_ONLY=key,none` runs only the configurations named and skips the
//! tables). For experiments: `BENCH_MAX_IN_FLIGHT` (the `key` and `none`
//! configurations' `max_in_flight`, default 64; the window is at least
//! twice it), `BENCH_CONSUMER_PROPS=key=value,..` (more consumer
//! properties for every configuration), and `BENCH_LOG=<filter>` (a `tracing`
//! subscriber on standard error; `kafka_handler=debug` shows every pause and
//! resume with its time; it also changes the runtime's span path, so don't
//! compare its figures).

mod common;

use common::produce::TracedProducer;
use common::{consumer_properties, env_u64, median, round_order, run_consumer};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use kafka_handler::testing::EmbeddedBroker;
use kafka_handler::{handlers, kafka_handler, Consumer, ProcessingOrder, Shutdown};

/// The handler's latency unless `BENCH_LATENCY_US` says otherwise.
const DEFAULT_LATENCY: Duration = Duration::from_millis(5);
const PARTITIONS: i32 = 16;
const KEYS: u64 = 1_000;
const PAYLOAD_BYTES: usize = 16;
/// `max_in_flight` of the `key` and `none` configurations, unless
/// `BENCH_MAX_IN_FLIGHT` says otherwise.
const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// A run that has not handled every record after this long is reported as is.
const RUN_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The handler and its bookkeeping.

/// The handler's latency, in microseconds (set once in `main`).
static LATENCY_US: AtomicU64 = AtomicU64::new(0);

/// `max_in_flight` of the `key` and `none` configurations.
fn max_in_flight() -> usize {
    env_u64("BENCH_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT as u64).max(1) as usize
}

fn latency() -> Duration {
    Duration::from_micros(LATENCY_US.load(Ordering::Relaxed))
}

/// The one I/O-bound handler, retargeted to each configuration.
#[kafka_handler(topics = ["bench-io"], group = "bench-io")]
async fn wait(payload: &[u8]) {
    black_box(payload);
    RUN.started();
    tokio::time::sleep(latency()).await;
    RUN.ended();
}

/// The origin of the times [`Run`] keeps, as nanoseconds.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What the current run's handler calls saw.
struct Run {
    /// When the first handler call started, and the last one ended (ns
    /// since [`EPOCH`]).
    first_start: AtomicU64,
    last_end: AtomicU64,
    handled: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    expected: AtomicU64,
    shutdown: Mutex<Option<Shutdown>>,
}

static RUN: Run = Run {
    first_start: AtomicU64::new(u64::MAX),
    last_end: AtomicU64::new(0),
    handled: AtomicU64::new(0),
    in_flight: AtomicU64::new(0),
    peak_in_flight: AtomicU64::new(0),
    expected: AtomicU64::new(u64::MAX),
    shutdown: Mutex::new(None),
};

impl Run {
    fn reset(&self, expected: u64, shutdown: Shutdown) {
        self.first_start.store(u64::MAX, Ordering::Relaxed);
        self.last_end.store(0, Ordering::Relaxed);
        self.handled.store(0, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
        self.peak_in_flight.store(0, Ordering::Relaxed);
        self.expected.store(expected, Ordering::Relaxed);
        *self.lock_shutdown() = Some(shutdown);
    }

    fn lock_shutdown(&self) -> std::sync::MutexGuard<'_, Option<Shutdown>> {
        self.shutdown
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn started(&self) {
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::trace!(target: "io_bound", in_flight, "handler started");
        self.peak_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        self.first_start.fetch_min(now_ns(), Ordering::Relaxed);
    }

    fn ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.last_end.fetch_max(now_ns(), Ordering::Relaxed);
        let handled = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        if handled == self.expected.load(Ordering::Relaxed) {
            if let Some(shutdown) = &*self.lock_shutdown() {
                shutdown.trigger();
            }
        }
    }

    /// The run's result; forgets the shutdown handle.
    fn finish(&self) -> RunResult {
        self.lock_shutdown().take();
        let first = self.first_start.load(Ordering::Relaxed);
        let last = self.last_end.load(Ordering::Relaxed);
        RunResult {
            handled: self.handled.load(Ordering::Relaxed),
            elapsed: Duration::from_nanos(last.saturating_sub(first)),
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
        }
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct RunResult {
    handled: u64,
    elapsed: Duration,
    peak_in_flight: u64,
}

impl RunResult {
    fn records_per_sec(&self) -> f64 {
        self.handled as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

// ---------------------------------------------------------------------------
// The configurations.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    Partition,
    Key,
    Unordered,
    Serial,
    /// `Key` and `Unordered` with librdkafka's own fetch timings
    /// ([`RDKAFKA_FETCH_DEFAULTS`]; diagnostic).
    KeyRdkafkaDefaults,
    UnorderedRdkafkaDefaults,
}

const CONFIGS: [Config; 6] = [
    Config::Partition,
    Config::Key,
    Config::Unordered,
    Config::Serial,
    Config::KeyRdkafkaDefaults,
    Config::UnorderedRdkafkaDefaults,
];

/// librdkafka's defaults of the fetch timings the runtime lowers, set
/// explicitly by the diagnostic configurations.
const RDKAFKA_FETCH_DEFAULTS: [(&str, &str); 2] = [
    ("fetch.wait.max.ms", "500"),
    ("fetch.queue.backoff.ms", "1000"),
];

impl Config {
    fn slug(self) -> &'static str {
        match self {
            Config::Partition => "partition",
            Config::Key => "key",
            Config::Unordered => "none",
            Config::Serial => "serial",
            Config::KeyRdkafkaDefaults => "key-rdkafka",
            Config::UnorderedRdkafkaDefaults => "none-rdkafka",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Config::Partition => {
                "`ordering = \"partition\"` (default `max_in_flight`), 16 partitions"
            }
            Config::Key => "`ordering = \"key\"`, `max_in_flight = 64`, 1 partition, 1,000 keys",
            Config::Unordered => "`ordering = \"none\"`, `max_in_flight = 64`, 1 partition",
            Config::Serial => {
                "reference: `ordering = \"partition\"`, `max_in_flight = 1`, 16 partitions"
            }
            Config::KeyRdkafkaDefaults => {
                "diagnostic: `key` as above, with librdkafka's `fetch.wait.max.ms=500`, `fetch.queue.backoff.ms=1000`"
            }
            Config::UnorderedRdkafkaDefaults => {
                "diagnostic: `none` as above, with librdkafka's `fetch.wait.max.ms=500`, `fetch.queue.backoff.ms=1000`"
            }
        }
    }

    fn ordering(self) -> ProcessingOrder {
        match self {
            Config::Partition | Config::Serial => ProcessingOrder::Partition,
            Config::Key | Config::KeyRdkafkaDefaults => ProcessingOrder::Key,
            Config::Unordered | Config::UnorderedRdkafkaDefaults => ProcessingOrder::Unordered,
        }
    }

    /// `max_in_flight`, when the configuration sets one.
    fn max_in_flight(self) -> Option<usize> {
        match self {
            Config::Partition => None,
            Config::Serial => Some(1),
            _ => Some(max_in_flight()),
        }
    }

    fn partitions(self) -> i32 {
        match self {
            Config::Partition | Config::Serial => PARTITIONS,
            _ => 1,
        }
    }

    /// Whether the records have keys.
    fn keyed(self) -> bool {
        self.partitions() == 1
    }

    /// The consumer properties of this configuration beyond the common ones.
    fn properties(self) -> Vec<(String, String)> {
        match self {
            Config::KeyRdkafkaDefaults | Config::UnorderedRdkafkaDefaults => RDKAFKA_FETCH_DEFAULTS
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The most records that may be in flight at once.
    fn concurrency(self) -> u64 {
        match self {
            Config::Partition => PARTITIONS as u64,
            Config::Serial => 1,
            _ => max_in_flight() as u64,
        }
    }

    /// How the bound reads (`16 / latency`).
    fn bound_formula(self) -> String {
        format!("{} / latency", self.concurrency())
    }

    /// The target, as a fraction of the nominal bound.
    fn target(self) -> Option<f64> {
        match self {
            Config::Partition => Some(0.9),
            Config::Key | Config::Unordered => Some(0.8),
            _ => None,
        }
    }

    fn records(self) -> u64 {
        match self {
            Config::Partition => env_u64("BENCH_RECORDS", 3_200).max(1_600),
            Config::Serial => env_u64("BENCH_SERIAL_RECORDS", 400).max(1),
            _ => env_u64("BENCH_KEYED_RECORDS", 6_400).max(2_000),
        }
    }

    fn topic(self) -> String {
        format!("bench-io-{}", self.slug())
    }
}

// ---------------------------------------------------------------------------
// Producing.

/// SplitMix64: a small deterministic generator for the key shuffle.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of each of `records` records: blocks of [`KEYS`] records, each a
/// shuffled permutation of the keys.
fn key_sequence(records: u64) -> Vec<u64> {
    let mut state = 0x5eed_u64;
    let mut keys = Vec::with_capacity(records as usize);
    while (keys.len() as u64) < records {
        let mut block: Vec<u64> = (0..KEYS).collect();
        for i in (1..block.len()).rev() {
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            block.swap(i, j);
        }
        keys.extend(block);
    }
    keys.truncate(records as usize);
    keys
}

/// Creates `config`'s topic and produces its records; returns how many the
/// broker holds (the sum of high minus low watermarks).
fn produce(runtime: &tokio::runtime::Runtime, broker: &EmbeddedBroker, config: Config) -> u64 {
    let topic = config.topic();
    let partitions = config.partitions();
    let records = config.records();
    runtime
        .block_on(broker.create_topic(&topic, partitions))
        .expect("creating the topic");
    let producer = TracedProducer::new(broker, &[("linger.ms", "5")]);
    let keys = config.keyed().then(|| key_sequence(records));
    let mut payload = [b'x'; PAYLOAD_BYTES];
    for i in 0..records {
        payload[..8].copy_from_slice(&i.to_be_bytes());
        let partition = (i % partitions as u64) as i32;
        let key = keys
            .as_ref()
            .map(|keys| format!("key-{:04}", keys[i as usize]));
        if let Err(err) = producer.send_keyed(
            &topic,
            partition,
            key.as_deref().map(str::as_bytes),
            &payload,
            i + 1,
        ) {
            panic!("producing record {i} to {topic}: {err}");
        }
    }
    let failed = producer.flush();
    let held: u64 = (0..partitions)
        .map(|partition| {
            let (low, high) = producer.watermarks(&topic, partition);
            (high - low) as u64
        })
        .sum();
    eprintln!(
        "{topic}: produced {records} records over {partitions} partition(s) ({failed} failed \
         deliveries); the broker holds {held}"
    );
    held
}

// ---------------------------------------------------------------------------
// Running.

fn run(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    config: Config,
    group: &str,
    expected: u64,
) -> RunResult {
    let shutdown = Shutdown::new();
    RUN.reset(expected, shutdown.clone());
    let mut handler = handlers![wait]
        .remove(0)
        .with_topics([config.topic()])
        .with_group(group)
        .with_ordering(config.ordering());
    if let Some(max_in_flight) = config.max_in_flight() {
        handler = handler.with_max_in_flight(max_in_flight);
    }
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handler(handler);
    for (key, value) in consumer_properties(broker) {
        builder = builder.set(key, value);
    }
    for (key, value) in config.properties().into_iter().chain(extra_properties()) {
        builder = builder.set(key, value);
    }
    let consumer = builder.build().expect("a valid consumer configuration");
    run_consumer(runtime, consumer, shutdown, RUN_LIMIT);
    RUN.finish()
}

/// Extra consumer properties from `BENCH_CONSUMER_PROPS` (`key=value,...`),
/// for experiments.
fn extra_properties() -> Vec<(String, String)> {
    std::env::var("BENCH_CONSUMER_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// `samples` sequential `tokio::time::sleep(latency())` on a task of
/// `runtime`: how long each took, in seconds.
fn measure_sleeps(runtime: &tokio::runtime::Runtime, samples: u64) -> Vec<f64> {
    runtime
        .block_on(async move {
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(samples as usize);
                for _ in 0..samples {
                    let start = Instant::now();
                    tokio::time::sleep(latency()).await;
                    took.push(start.elapsed().as_secs_f64());
                }
                took
            })
            .await
        })
        .expect("the sleeping task")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn main() {
    let latency_us = env_u64("BENCH_LATENCY_US", DEFAULT_LATENCY.as_micros() as u64).max(1);
    LATENCY_US.store(latency_us, Ordering::Relaxed);
    let latency = latency();
    let repeats = env_u64("BENCH_REPEATS", 3).max(1) as usize;
    let sleep_samples = env_u64("BENCH_SLEEP_SAMPLES", 100).max(1);
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        // Diagnostics: the runtime's own events (`kafka_handler=debug` shows
        // every pause and resume), with their time.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_writer(std::io::stderr)
            .init();
    }
    let (runtime, broker) = common::start();
    let expected: Vec<u64> = CONFIGS
        .iter()
        .map(|&config| produce(&runtime, &broker, config))
        .collect();

    let only_var = std::env::var("BENCH_ONLY").ok();
    let only: Option<Vec<&str>> = only_var.as_deref().map(|v| v.split(',').collect());
    let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); CONFIGS.len()];
    let mut sleeps: Vec<f64> = Vec::new();
    let mut group_seq = 0;
    for repeat in 0..repeats {
        let round_sleeps = measure_sleeps(&runtime, sleep_samples);
        let mut sorted = round_sleeps.clone();
        eprintln!(
            "repeat {}/{repeats} sleep({latency:?}): median {:.3} ms over {sleep_samples}",
            repeat + 1,
            median(&mut sorted) * 1e3
        );
        sleeps.extend(round_sleeps);
        for index in round_order(repeat, CONFIGS.len()) {
            let config = CONFIGS[index];
            if !only
                .as_ref()
                .is_none_or(|only| only.contains(&config.slug()))
            {
                continue;
            }
            group_seq += 1;
            let group = format!("bench-io-{}-{group_seq}", config.slug());
            let result = run(&runtime, &broker, config, &group, expected[index]);
            eprintln!(
                "repeat {}/{repeats} {:>9}: handled {} of {} in {:.3?} = {:.0} records/s, \
                 at most {} in flight",
                repeat + 1,
                config.slug(),
                result.handled,
                expected[index],
                result.elapsed,
                result.records_per_sec(),
                result.peak_in_flight,
            );
            results[index].push(result);
        }
    }
    if only.is_some() {
        return;
    }

    sleeps.sort_by(f64::total_cmp);
    let measured = median(&mut sleeps.clone());
    let nominal = latency.as_secs_f64();
    println!();
    println!(
        "I/O-bound handler: an `async fn` awaiting `tokio::time::sleep({latency:?})`; medians of \
         {repeats} rounds; each run timed from the first handler call's start to the last one's end."
    );
    println!(
        "`tokio::time::sleep({latency:?})` on this machine ({} sequential sleeps on a task of the \
         bench's runtime): median {:.3} ms, min {:.3} ms, p90 {:.3} ms, max {:.3} ms \
         ({:.3}× nominal).",
        sleeps.len(),
        measured * 1e3,
        sleeps[0] * 1e3,
        percentile(&sleeps, 0.9) * 1e3,
        sleeps[sleeps.len() - 1] * 1e3,
        measured / nominal,
    );
    println!();
    println!(
        "| configuration | records held | bound | bound at {:.0} ms (nominal) | bound at {:.3} ms \
         (measured sleep) | records/s (median) | × nominal bound | × measured bound | most in \
         flight | runs (records/s) |",
        nominal * 1e3,
        measured * 1e3
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (index, config) in CONFIGS.iter().enumerate() {
        let runs = &results[index];
        let rate = median(
            &mut runs
                .iter()
                .map(RunResult::records_per_sec)
                .collect::<Vec<_>>(),
        );
        let nominal_bound = config.concurrency() as f64 / nominal;
        let measured_bound = config.concurrency() as f64 / measured;
        let peak = runs.iter().map(|r| r.peak_in_flight).max().unwrap_or(0);
        let per_run: Vec<String> = runs
            .iter()
            .map(|r| {
                let complete = if r.handled == expected[index] {
                    String::new()
                } else {
                    format!(" ({} of {} handled)", r.handled, expected[index])
                };
                format!("{:.0}{complete}", r.records_per_sec())
            })
            .collect();
        println!(
            "| {} | {} | {} | {:.0}/s | {:.0}/s | {:.0} | {:.3}× | {:.3}× | {peak} | {} |",
            config.describe(),
            expected[index],
            config.bound_formula(),
            nominal_bound,
            measured_bound,
            rate,
            rate / nominal_bound,
            rate / measured_bound,
            per_run.join(", "),
        );
        ratios.push((rate / nominal_bound, rate / measured_bound));
    }

    println!();
    println!("| target | × nominal bound | × measured-sleep bound | verdict |");
    println!("|---|---|---|---|");
    for (index, config) in CONFIGS.iter().enumerate() {
        let Some(target) = config.target() else {
            continue;
        };
        let (ratio, ratio_measured) = ratios[index];
        println!(
            "| `{}` ≥ {target:.1} × {} | {ratio:.3}× | {ratio_measured:.3}× | {} |",
            config.slug(),
            config.bound_formula(),
            if ratio >= target {
                "met".to_owned()
            } else if ratio_measured >= target {
                "**missed** against the nominal bound; met against the measured sleep (the timer)"
                    .to_owned()
            } else {
                "**missed**".to_owned()
            }
        );
    }
    println!();
    for (index, config) in CONFIGS.iter().enumerate() {
        let (ratio, ratio_measured) = ratios[index];
        match config.target() {
            Some(target) => println!(
                "verdict: {} {} the target ({ratio:.3}× of {} ≥ {target:.1}; {ratio_measured:.3}× \
                 with the measured sleep)",
                config.slug(),
                if ratio >= target { "meets" } else { "misses" },
                config.bound_formula(),
            ),
            None => println!(
                "verdict: {} (no target) reaches {ratio:.3}× of {} ({ratio_measured:.3}× \
                 with the measured sleep)",
                config.slug(),
                config.bound_formula(),
            ),
        }
    }
}
