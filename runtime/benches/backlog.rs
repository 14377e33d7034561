//! Peak memory with a backlog: the consumer's resident memory while a slow
//! handler works through a large backlog, at two backlog sizes, to show
//! that what the consumer holds is bounded by its windows and not by the
//! backlog.
//!
//! Each backlog size runs in a child process of the bench (the bench runs
//! itself with `BENCH_BACKLOG_CHILD=<records>`), so that each gets a clean
//! heap and its own peak (`VmHWM`): in one process, the second size would
//! reuse memory the allocator kept from the first, and hide its growth. A
//! child:
//!
//! 1. starts the embedded broker (librdkafka's in-process mock cluster, so
//!    its log is part of the process's memory) and produces the backlog to a
//!    fresh 64-partition topic: an 8-byte payload (`BENCH_PAYLOAD_BYTES`)
//!    plus one sampled `traceparent` header per record, about 90 bytes on
//!    the wire, round
//!    robin over the partitions, through a producer whose queue is kept
//!    small (`queue.buffering.max.messages=20000`) so that producing leaves
//!    little freed memory behind for the consumer to reuse unseen. The mock
//!    keeps about 5 MiB or 100k message sets per partition; the child counts
//!    what it kept with the watermarks (at 1M records, about 1.4 MiB per
//!    partition, so it should keep everything).
//! 2. drops the producer, waits a second, then reads the baseline: `VmRSS`
//!    and `VmHWM` from `/proc/self/status`, and resets `VmHWM` to the
//!    current RSS (`echo 5 > /proc/self/clear_refs`).
//! 3. runs the `kafka_handler::Consumer` for `BENCH_CONSUME_SECS` (default
//!    10) with one handler, [`slow`]: an `async fn` that sleeps
//!    `BENCH_HANDLER_MS` (default 10 ms), ordering by partition (64 in
//!    flight, about 6,400 records/s in all: far less than the backlog).
//!    Every 100 ms a thread samples `VmRSS` and `VmHWM`; every 500 ms it
//!    also collects the `kafka_handler.consumer.held` gauge (an SDK meter
//!    provider with a periodic reader into an in-memory exporter, flushed
//!    on demand) and sums it over the partitions.
//! 4. reports, on one line of its standard output, what it measured.
//!
//! The parent runs the sizes of `BENCH_BACKLOG_SIZES` (default
//! `250000,1000000`) `BENCH_REPEATS` times (default 1; in alternating order
//! when more) and prints a table: the RSS before consuming, the peak while
//! consuming, the growth, and the records held. The growth should be about
//! the same at both sizes.
//!
//! Consumer properties: `session.timeout.ms=1500`, `heartbeat.interval.ms=100`,
//! `auto.offset.reset=earliest`, `fetch.queue.backoff.ms=10` (as in the
//! other benches), and librdkafka's defaults for the prefetch queue:
//! `queued.max.messages.kbytes=65536` (64 MiB for the consumer's one queue)
//! and `queued.min.messages=100000` (per partition), `fetch.max.bytes=52428800`,
//! `max.partition.fetch.bytes=1048576`. `BENCH_QUEUED_MAX_KBYTES=<n>` sets
//! the first. The consumer pauses a partition when it holds a window of its
//! records (1,024 here: at least 1,024, and twice `max_in_flight`), and
//! resumes it at half.
//!
//! Run it with `cargo bench -p kafka-handler --bench backlog`.

mod common;

use common::produce::TracedProducer;
use common::{consumer_properties, env_u64, run_consumer};
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_handler::metrics::HELD;
use kafka_handler::{handlers, kafka_handler, Consumer, Shutdown};
use opentelemetry::global;
use opentelemetry::metrics::noop::NoopMeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

const TOPIC: &str = "bench-backlog";
const PARTITIONS: i32 = 64;
/// The payload size unless `BENCH_PAYLOAD_BYTES` says otherwise (at least 8:
/// the record's number).
const PAYLOAD_BYTES: usize = 8;

fn payload_bytes() -> usize {
    env_u64("BENCH_PAYLOAD_BYTES", PAYLOAD_BYTES as u64).max(8) as usize
}
/// The environment variable that makes the bench a child measuring one size.
const CHILD_ENV: &str = "BENCH_BACKLOG_CHILD";
/// The prefix of a child's result line.
const RESULT_PREFIX: &str = "BACKLOG_RESULT";
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Collect the held gauge every this many samples.
const HELD_EVERY: u32 = 5;

// ---------------------------------------------------------------------------
// The handler.

/// Records handled so far.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// The handler's latency, in milliseconds (set once in the child).
static HANDLER_MS: AtomicU64 = AtomicU64::new(10);

#[kafka_handler(topics = ["bench-backlog"], group = "bench-backlog")]
async fn slow(payload: &[u8]) {
    black_box(payload);
    tokio::time::sleep(Duration::from_millis(HANDLER_MS.load(Ordering::Relaxed))).await;
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// Memory.

/// `field` of `/proc/self/status`, in kB (`VmRSS`, `VmHWM`).
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets `VmHWM` to the current RSS; whether the kernel took it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The `kafka_handler.consumer.held` gauge now: the records held over all
/// partitions, and the most of one partition.
fn held(provider: &SdkMeterProvider, exporter: &InMemoryMetricExporter) -> Option<(i64, i64)> {
    provider.force_flush().ok()?;
    let metrics = exporter.get_finished_metrics().ok()?;
    exporter.reset();
    let latest = metrics.last()?;
    let mut found = None;
    for scope in latest.scope_metrics() {
        for metric in scope.metrics().filter(|metric| metric.name() == HELD) {
            if let AggregatedMetrics::I64(MetricData::Gauge(gauge)) = metric.data() {
                let (mut total, mut most) = (0, 0);
                for point in gauge.data_points() {
                    total += point.value();
                    most = most.max(point.value());
                }
                found = Some((total, most));
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------
// The child: one backlog size.

/// What a child measured.
#[derive(Clone, Debug, Default)]
struct Measured {
    records: u64,
    kept: u64,
    produce_secs: f64,
    /// RSS and peak before consuming, in kB (the peak before the reset).
    baseline_rss: u64,
    baseline_hwm: u64,
    /// Whether `VmHWM` was reset to the baseline RSS.
    hwm_reset: bool,
    /// The most `VmRSS` sampled while consuming, the RSS at the end of the
    /// window, and `VmHWM` then, in kB.
    peak_rss: u64,
    end_rss: u64,
    end_hwm: u64,
    /// The most records held over all partitions in one collection, and of
    /// one partition.
    held_total: i64,
    held_partition: i64,
    handled: u64,
    consume_secs: f64,
    /// RSS over time: (seconds since the consumer started, kB), one a second.
    timeline: Vec<(f64, u64)>,
}

impl Measured {
    fn to_line(&self) -> String {
        let timeline: Vec<String> = self
            .timeline
            .iter()
            .map(|(at, kb)| format!("{at:.1}:{kb}"))
            .collect();
        format!(
            "{RESULT_PREFIX} records={} kept={} produce_secs={:.2} baseline_rss={} baseline_hwm={} \
             hwm_reset={} peak_rss={} end_rss={} end_hwm={} held_total={} held_partition={} \
             handled={} consume_secs={:.2} timeline={}",
            self.records,
            self.kept,
            self.produce_secs,
            self.baseline_rss,
            self.baseline_hwm,
            self.hwm_reset,
            self.peak_rss,
            self.end_rss,
            self.end_hwm,
            self.held_total,
            self.held_partition,
            self.handled,
            self.consume_secs,
            timeline.join(","),
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(RESULT_PREFIX)?;
        let mut m = Measured::default();
        for pair in rest.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            match key {
                "records" => m.records = value.parse().ok()?,
                "kept" => m.kept = value.parse().ok()?,
                "produce_secs" => m.produce_secs = value.parse().ok()?,
                "baseline_rss" => m.baseline_rss = value.parse().ok()?,
                "baseline_hwm" => m.baseline_hwm = value.parse().ok()?,
                "hwm_reset" => m.hwm_reset = value.parse().ok()?,
                "peak_rss" => m.peak_rss = value.parse().ok()?,
                "end_rss" => m.end_rss = value.parse().ok()?,
                "end_hwm" => m.end_hwm = value.parse().ok()?,
                "held_total" => m.held_total = value.parse().ok()?,
                "held_partition" => m.held_partition = value.parse().ok()?,
                "handled" => m.handled = value.parse().ok()?,
                "consume_secs" => m.consume_secs = value.parse().ok()?,
                "timeline" => {
                    m.timeline = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .filter_map(|s| {
                            let (at, kb) = s.split_once(':')?;
                            Some((at.parse().ok()?, kb.parse().ok()?))
                        })
                        .collect();
                }
                _ => {}
            }
        }
        Some(m)
    }
}

fn child(records: u64) {
    HANDLER_MS.store(env_u64("BENCH_HANDLER_MS", 10), Ordering::Relaxed);
    let consume = Duration::from_secs(env_u64("BENCH_CONSUME_SECS", 10).max(1));
    let (runtime, broker) = common::start();
    runtime
        .block_on(broker.create_topic(TOPIC, PARTITIONS))
        .expect("creating the topic");

    // Produce the backlog.
    let start = Instant::now();
    let kept = {
        let producer = TracedProducer::new(
            &broker,
            &[
                ("linger.ms", "5"),
                ("batch.num.messages", "10000"),
                ("queue.buffering.max.messages", "20000"),
            ],
        );
        let mut payload = vec![0u8; payload_bytes()];
        for i in 0..records {
            payload[..8].copy_from_slice(&i.to_be_bytes());
            let partition = (i % PARTITIONS as u64) as i32;
            if let Err(err) = producer.send(TOPIC, partition, &payload, i + 1) {
                panic!("producing record {i}: {err}");
            }
        }
        let failed = producer.flush();
        let kept: u64 = (0..PARTITIONS)
            .map(|partition| {
                let (low, high) = producer.watermarks(TOPIC, partition);
                (high - low) as u64
            })
            .sum();
        eprintln!(
            "child {records}: produced {records} records in {:.2?} ({failed} failed deliveries); \
             the broker holds {kept}",
            start.elapsed()
        );
        kept
    };
    let produce_secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));

    // The held gauge: an SDK meter provider, installed before the consumer
    // starts (its instruments are created then).
    let exporter = InMemoryMetricExporter::default();
    let reader = PeriodicReader::builder(exporter.clone())
        .with_interval(Duration::from_secs(3600))
        .build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    global::set_meter_provider(provider.clone());

    let baseline_rss = status_kb("VmRSS");
    let baseline_hwm = status_kb("VmHWM");
    let hwm_reset = reset_peak();

    // Sample while the consumer runs.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let provider = provider.clone();
        let exporter = exporter.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let (mut peak, mut held_total, mut held_partition) = (0u64, 0i64, 0i64);
            let mut timeline = Vec::new();
            let mut next_mark = 0.0;
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let rss = status_kb("VmRSS");
                peak = peak.max(rss);
                let at = started.elapsed().as_secs_f64();
                if at >= next_mark {
                    timeline.push((at, rss));
                    next_mark += 1.0;
                }
                n += 1;
                if n % HELD_EVERY == 0 {
                    if let Some((total, most)) = held(&provider, &exporter) {
                        held_total = held_total.max(total);
                        held_partition = held_partition.max(most);
                    }
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            (peak, held_total, held_partition, timeline)
        })
    };

    let shutdown = Shutdown::new();
    let handler = handlers![slow].remove(0);
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handler(handler);
    for (key, value) in consumer_properties(&broker) {
        builder = builder.set(key, value);
    }
    if let Ok(kbytes) = std::env::var("BENCH_QUEUED_MAX_KBYTES") {
        builder = builder.set("queued.max.messages.kbytes", kbytes);
    }
    let consumer = builder.build().expect("a valid consumer configuration");
    let consuming = Instant::now();
    // The watchdog stops it after `consume`; then it finishes what is in
    // flight and commits.
    run_consumer(&runtime, consumer, shutdown, consume);
    let consume_secs = consuming.elapsed().as_secs_f64();
    let end_rss = status_kb("VmRSS");
    let end_hwm = status_kb("VmHWM");
    stop.store(true, Ordering::Relaxed);
    let (peak_rss, held_total, held_partition, timeline) =
        sampler.join().expect("the sampling thread");
    global::set_meter_provider(NoopMeterProvider::new());
    let _ = provider.shutdown();

    let measured = Measured {
        records,
        kept,
        produce_secs,
        baseline_rss,
        baseline_hwm,
        hwm_reset,
        peak_rss: peak_rss.max(end_rss),
        end_rss,
        end_hwm,
        held_total,
        held_partition,
        handled: HANDLED.load(Ordering::Relaxed),
        consume_secs,
        timeline,
    };
    println!("{}", measured.to_line());
}

// ---------------------------------------------------------------------------
// The parent: every size, in a child each.

fn run_child(records: u64) -> Measured {
    let exe = std::env::current_exe().expect("the bench's own path");
    let output = Command::new(exe)
        .env(CHILD_ENV, records.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child for {records} records failed: {}\n{stdout}",
        output.status
    );
    stdout
        .lines()
        .find_map(Measured::parse)
        .unwrap_or_else(|| panic!("no result from the child for {records} records:\n{stdout}"))
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn main() {
    if let Ok(records) = std::env::var(CHILD_ENV) {
        child(
            records
                .parse()
                .expect("BENCH_BACKLOG_CHILD: a number of records"),
        );
        return;
    }
    let sizes: Vec<u64> = std::env::var("BENCH_BACKLOG_SIZES")
        .unwrap_or_else(|_| "250000,1000000".to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .replace('_', "")
                .parse()
                .expect("BENCH_BACKLOG_SIZES: numbers")
        })
        .collect();
    let repeats = env_u64("BENCH_REPEATS", 1).max(1) as usize;
    let handler_ms = env_u64("BENCH_HANDLER_MS", 10);
    let consume_secs = env_u64("BENCH_CONSUME_SECS", 10).max(1);
    let mut results: Vec<Vec<Measured>> = vec![Vec::new(); sizes.len()];
    for repeat in 0..repeats {
        let order: Vec<usize> = if repeat % 2 == 0 {
            (0..sizes.len()).collect()
        } else {
            (0..sizes.len()).rev().collect()
        };
        for index in order {
            let measured = run_child(sizes[index]);
            eprintln!(
                "repeat {}/{repeats} {:>8} records: RSS {:.1} MiB before consuming, peak {:.1} MiB \
                 (+{:.1} MiB), {} handled, held at most {} ({} in one partition)",
                repeat + 1,
                sizes[index],
                mib(measured.baseline_rss),
                mib(measured.peak_rss),
                mib(measured.peak_rss.saturating_sub(measured.baseline_rss)),
                measured.handled,
                measured.held_total,
                measured.held_partition,
            );
            results[index].push(measured);
        }
    }

    let queued_max_kbytes =
        std::env::var("BENCH_QUEUED_MAX_KBYTES").unwrap_or_else(|_| "65536 (default)".to_owned());
    println!();
    println!(
        "Backlog: {PARTITIONS} partitions, {}-byte payload + `traceparent` per record; \
         handler `async fn` sleeping {handler_ms} ms, `ordering = \"partition\"` (64 in flight), \
         consumed for {consume_secs} s; each size in a child process of its own.",
        payload_bytes()
    );
    println!(
        "Consumer properties: session.timeout.ms=1500, heartbeat.interval.ms=100, \
         auto.offset.reset=earliest, fetch.queue.backoff.ms=10; queued.max.messages.kbytes={queued_max_kbytes}, \
         queued.min.messages=100000, fetch.max.bytes=52428800, max.partition.fetch.bytes=1048576 \
         (librdkafka defaults). The mock broker runs in the same process: its log is in the baseline."
    );
    println!();
    println!(
        "| backlog produced | kept by the mock | RSS before consuming | peak RSS while consuming | \
         RSS growth | VmHWM growth | RSS at the end | held (max, all partitions / one partition) | \
         records handled |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (size, runs) in sizes.iter().zip(&results) {
        for m in runs {
            let hwm_growth = if m.hwm_reset {
                format!("+{:.1} MiB", mib(m.end_hwm.saturating_sub(m.baseline_rss)))
            } else {
                format!("(not reset; {:.1} MiB)", mib(m.end_hwm))
            };
            println!(
                "| {size} | {} | {:.1} MiB | {:.1} MiB | **+{:.1} MiB** | {hwm_growth} | {:.1} MiB | \
                 {} / {} | {} in {:.1} s |",
                m.kept,
                mib(m.baseline_rss),
                mib(m.peak_rss),
                mib(m.peak_rss.saturating_sub(m.baseline_rss)),
                mib(m.end_rss),
                m.held_total,
                m.held_partition,
                m.handled,
                m.consume_secs,
            );
        }
    }
    println!();
    println!("RSS over time while consuming (MiB, one sample a second, first run of each size):");
    for (size, runs) in sizes.iter().zip(&results) {
        if let Some(m) = runs.first() {
            let line: Vec<String> = m
                .timeline
                .iter()
                .map(|(at, kb)| format!("{at:.0}s {:.0}", mib(*kb)))
                .collect();
            println!("- {size}: {}", line.join(", "));
        }
    }
    let growth = |runs: &Vec<Measured>| {
        let mut g: Vec<f64> = runs
            .iter()
            .map(|m| mib(m.peak_rss.saturating_sub(m.baseline_rss)))
            .collect();
        common::median(&mut g)
    };
    if results.len() >= 2 {
        let (small, large) = (growth(&results[0]), growth(&results[results.len() - 1]));
        let ratio = large / small.max(1e-9);
        println!();
        println!(
            "verdict: RSS growth {:.1} MiB at {} records, {:.1} MiB at {} records ({ratio:.2}×): {}",
            small,
            sizes[0],
            large,
            sizes[sizes.len() - 1],
            if (large - small).abs() <= 16.0 || ratio <= 1.25 {
                "about the same: memory does not grow with the backlog"
            } else {
                "**grows with the backlog**"
            }
        );
    }
}
