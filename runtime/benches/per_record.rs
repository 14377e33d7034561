//! Per-record cost of the `#[kafka_handler]` wrapper: a bare call of a no-op
//! handler against `Processor::process` on the same in-memory record (100-byte
//! payload, one valid `traceparent` header, no key), in four telemetry
//! configurations:
//!
//! - (a) no tracer provider installed (the global no-op);
//! - (b) the SDK installed, the record unsampled (`traceparent` flags `00`,
//!   the default `ParentBased(AlwaysOn)` sampler);
//! - (c) the SDK sampling 100% (flags `01`), batch span processor with its
//!   default configuration, an exporter that discards;
//! - (d) as (c), plus a `tracing` subscriber with the tracing-opentelemetry
//!   layer, which then owns the span.
//!
//! The global propagator is kafka-handler's default in every configuration:
//! `Propagation::default().install()` (W3C trace context and baggage, with
//! kafka-handler's own parser), what the quickstart and the generated
//! binaries install.
//! A further column times `kafka_handler::propagation::extract_parent_context`
//! alone on the same record: the share of the wrapper spent in extraction.
//! For (c) and (d) the table also reports how many of the spans ended reached
//! the exporter (the default batch processor drops spans when its queue of
//! 2048 is full).
//!
//! Each configuration runs in its own child process (the bench re-executes
//! itself), so one configuration's globals (tracer provider, `tracing`
//! callsite interest) cannot leak into another's; the order of the
//! configurations rotates from round to round. The table reports the median
//! over the rounds. A sync handler's `process` future completes on its first
//! poll, so it is driven with `futures_util::FutureExt::now_or_never` (one
//! poll with a no-op waker, no executor): the measured cost is the wrapper's
//! own, with nothing added for scheduling.
//!
//! Run it with `cargo bench -p kafka-handler --bench per_record`.
//! Environment: `BENCH_ROUNDS` (default 5), `BENCH_SAMPLE_MS` (length of one
//! timed sample, default 300). `per_record --child c` runs configuration (c)
//! alone, for a profiler (`valgrind --tool=callgrind`).

mod common;

use common::{env_u64, median, Discard};
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use kafka_handler::propagation::extract_parent_context;
use kafka_handler::{handlers, kafka_handler, Processor, Record};
use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use rdkafka::message::{Header, OwnedHeaders};

#[kafka_handler(topics = ["bench"], group = "bench")]
fn noop(payload: &[u8]) {
    black_box(payload);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    NoProvider,
    Unsampled,
    Sampled,
    SampledTracingLayer,
}

const CONFIGS: [Config; 4] = [
    Config::NoProvider,
    Config::Unsampled,
    Config::Sampled,
    Config::SampledTracingLayer,
];

impl Config {
    fn code(self) -> &'static str {
        match self {
            Config::NoProvider => "a",
            Config::Unsampled => "b",
            Config::Sampled => "c",
            Config::SampledTracingLayer => "d",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        CONFIGS.into_iter().find(|c| c.code() == code)
    }

    fn describe(self) -> &'static str {
        match self {
            Config::NoProvider => "(a) no provider (global no-op)",
            Config::Unsampled => "(b) SDK, record unsampled (flags 00)",
            Config::Sampled => "(c) SDK, 100% sampled, batch + discard",
            Config::SampledTracingLayer => "(d) = (c) + tracing-opentelemetry layer",
        }
    }

    /// The target for the wrapper's overhead, in ns.
    fn target_ns(self) -> Option<f64> {
        match self {
            Config::Unsampled => Some(150.0),
            Config::Sampled => Some(1_000.0),
            Config::NoProvider | Config::SampledTracingLayer => None,
        }
    }

    fn flags(self) -> &'static str {
        match self {
            Config::Unsampled => "00",
            _ => "01",
        }
    }
}

/// What one child process measured.
#[derive(Clone, Copy, Debug)]
struct Sample {
    bare_ns: f64,
    wrapper_ns: f64,
    extract_ns: f64,
    spans_ended: u64,
    spans_exported: u64,
}

fn sample_duration() -> Duration {
    Duration::from_millis(env_u64("BENCH_SAMPLE_MS", 300))
}

/// ns per call of `f`: calibrates an iteration count that takes about
/// `sample`, then takes the median of three timed samples.
fn measure(sample: Duration, mut f: impl FnMut()) -> f64 {
    let mut iters: u64 = 1_000;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        let elapsed = start.elapsed();
        if elapsed >= Duration::from_millis(20) {
            let per_iter = elapsed.as_secs_f64() / iters as f64;
            iters = ((sample.as_secs_f64() / per_iter) as u64).max(1);
            break;
        }
        iters *= 4;
    }
    let mut samples: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    median(&mut samples)
}

/// Runs one configuration in this process.
fn run_child(config: Config) -> Sample {
    common::install_propagation();
    let exported = Arc::new(AtomicU64::new(0));
    let provider = (config != Config::NoProvider).then(|| {
        let processor = BatchSpanProcessor::builder(Discard(exported.clone()))
            .with_batch_config(common::sized_batch_config())
            .build();
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build()
    });
    if let Some(provider) = &provider {
        global::set_tracer_provider(provider.clone());
    }
    let _subscriber = match (&provider, config) {
        (Some(provider), Config::SampledTracingLayer) => {
            use tracing_subscriber::layer::SubscriberExt as _;
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
            Some(tracing::subscriber::set_default(subscriber))
        }
        _ => None,
    };

    // Built after the provider switch: a processor keeps the tracer it found.
    let processor = Processor::new(handlers![noop].remove(0));
    let traceparent = format!(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{}",
        config.flags()
    );
    let headers = OwnedHeaders::new().insert(Header {
        key: "traceparent",
        value: Some(traceparent.as_str()),
    });
    let payload = [b'x'; 100];
    let record = Record::new("bench", 3, 42, None, Some(&payload), Some(&headers));

    let sample = sample_duration();
    let bare_ns = measure(sample / 3, || noop(black_box(&payload)));
    // The part of the wrapper spent extracting the producer's context.
    let extract_ns = measure(sample / 3, || {
        black_box(extract_parent_context(black_box(&record).headers()));
    });
    let mut spans_ended = 0u64;
    let wrapper_ns = measure(sample, || {
        let outcome = processor
            .process(black_box(&record))
            .now_or_never()
            .expect("a sync handler completes on its first poll");
        spans_ended += 1;
        black_box(outcome).expect("the no-op handler succeeds");
    });
    drop(_subscriber);
    let spans_exported = match &provider {
        Some(provider) => {
            provider.force_flush().expect("flushing spans");
            provider.shutdown().expect("shutting the provider down");
            exported.load(Ordering::Relaxed)
        }
        None => 0,
    };
    Sample {
        bare_ns,
        wrapper_ns,
        extract_ns,
        spans_ended,
        spans_exported,
    }
}

fn spawn_child(config: Config) -> Sample {
    let exe = std::env::current_exe().expect("the bench's own path");
    let output = Command::new(exe)
        .args(["--child", config.code()])
        .output()
        .expect("running a child process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child {} failed: {}\n{stdout}{}",
        config.code(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("the child prints a RESULT line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    Sample {
        bare_ns: fields[0].parse().expect("bare ns"),
        wrapper_ns: fields[1].parse().expect("wrapper ns"),
        extract_ns: fields[2].parse().expect("extract ns"),
        spans_ended: fields[3].parse().expect("spans ended"),
        spans_exported: fields[4].parse().expect("spans exported"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let code = args.get(pos + 1).map(String::as_str).unwrap_or_default();
        let config = Config::from_code(code).expect("--child a|b|c|d");
        let s = run_child(config);
        println!(
            "RESULT {} {} {} {} {}",
            s.bare_ns, s.wrapper_ns, s.extract_ns, s.spans_ended, s.spans_exported
        );
        return;
    }

    let rounds = env_u64("BENCH_ROUNDS", 5) as usize;
    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..rounds {
        for i in 0..CONFIGS.len() {
            let index = (i + round) % CONFIGS.len();
            let config = CONFIGS[index];
            let sample = spawn_child(config);
            eprintln!(
                "round {}/{rounds} {}: bare {:.1} ns, wrapper {:.1} ns",
                round + 1,
                config.code(),
                sample.bare_ns,
                sample.wrapper_ns
            );
            results[index].push(sample);
        }
    }

    println!();
    println!(
        "Per-record cost, ns/record, median of {rounds} rounds (min–max of the wrapper in brackets). \
         \"Of which extraction\": `extract_parent_context` alone on the same record."
    );
    println!();
    println!(
        "| configuration | bare | wrapper | overhead (wrapper − bare) | wrapper / bare | target (overhead) | met | of which extraction | spans exported / ended |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (config, samples) in CONFIGS.iter().zip(&results) {
        let mut bare: Vec<f64> = samples.iter().map(|s| s.bare_ns).collect();
        let mut wrapper: Vec<f64> = samples.iter().map(|s| s.wrapper_ns).collect();
        let mut overhead: Vec<f64> = samples.iter().map(|s| s.wrapper_ns - s.bare_ns).collect();
        let bare = median(&mut bare);
        let wrapper_median = median(&mut wrapper);
        // `median` sorted the samples.
        let (min, max) = (wrapper[0], wrapper[wrapper.len() - 1]);
        let wrapper = wrapper_median;
        let overhead = median(&mut overhead);
        let mut extract: Vec<f64> = samples.iter().map(|s| s.extract_ns).collect();
        let extract = median(&mut extract);
        let (target, met) = match config.target_ns() {
            Some(target) => (
                format!("< {target:.0} ns"),
                if overhead < target { "yes" } else { "**no**" },
            ),
            None => ("—".to_owned(), "—"),
        };
        let ended: u64 = samples.iter().map(|s| s.spans_ended).sum();
        let exported: u64 = samples.iter().map(|s| s.spans_exported).sum();
        let spans = match config {
            Config::Sampled | Config::SampledTracingLayer => format!(
                "{exported} / {ended} ({:.1}%)",
                100.0 * exported as f64 / ended.max(1) as f64
            ),
            Config::Unsampled => format!("{exported} (unsampled)"),
            Config::NoProvider => "— (no SDK)".to_owned(),
        };
        println!(
            "| {} | {bare:.1} | {wrapper:.1} ({min:.0}–{max:.0}) | {overhead:.1} | {:.0}× | {target} | {met} | {extract:.0} | {spans} |",
            config.describe(),
            wrapper / bare.max(0.001),
        );
    }
}
