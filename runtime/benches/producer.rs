//! The producer side: records/s through rdkafka's `FutureProducer` against
//! the same records through `kafka_handler::TracedProducer`, in one run.
//!
//! Each run sends `BENCH_RECORDS` records (default 100,000; a 100-byte
//! payload, a key and one non-trace header) to 8 partitions of the
//! embedded broker, with up to `BENCH_IN_FLIGHT` sends awaiting their
//! acknowledgement at once (default 2,000), and is timed from the first send
//! to the last acknowledgement. Configurations:
//!
//! - `raw FutureProducer`: the baseline;
//! - `TracedProducer, tracing off`: no tracer provider (the global no-op),
//!   so the work is the header rebuild and the W3C injection of an invalid
//!   context (nothing is written);
//! - `TracedProducer, unsampled`: the SDK installed with `AlwaysOff`: a
//!   non-recording span per record, its context injected;
//! - `TracedProducer, 100% sampled`: the SDK with `AlwaysOn`, the batch span
//!   processor, an exporter that counts and discards.
//!
//! The set is repeated `BENCH_REPEATS` times (default 5) in a rotated order;
//! the table reports medians and ratios against the raw producer of the same
//! process. Run it with `cargo bench -p kafka-handler --bench producer`.

mod common;

use std::time::{Duration, Instant};

use common::{env_u64, median, round_order, Telemetry};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use kafka_handler::TracedProducer;
use opentelemetry::global;
use opentelemetry::trace::noop::NoopTracerProvider;
use opentelemetry_sdk::trace::Sampler;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const TOPIC: &str = "bench-produce";
const CONFIGS: [&str; 4] = ["raw", "traced-off", "traced-unsampled", "traced-sampled"];

fn config(broker: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "60000");
    config
}

/// Sends `records` records through `send`, keeping `in_flight` unanswered
/// at most; records/s and the number of failed sends.
async fn run<F, Fut>(records: u64, in_flight: usize, send: F) -> (f64, u64)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut failed = 0;
    for i in 0..records {
        if pending.len() >= in_flight && !pending.next().await.unwrap_or(true) {
            failed += 1;
        }
        pending.push(send(i));
    }
    while let Some(ok) = pending.next().await {
        if !ok {
            failed += 1;
        }
    }
    (records as f64 / start.elapsed().as_secs_f64(), failed)
}

fn main() {
    let (runtime, broker) = common::start();
    let records = env_u64("BENCH_RECORDS", 100_000);
    let in_flight = env_u64("BENCH_IN_FLIGHT", 2_000) as usize;
    let repeats = env_u64("BENCH_REPEATS", 5) as usize;
    runtime.block_on(async {
        broker
            .create_topic(TOPIC, 8)
            .await
            .expect("the bench topic");
    });
    let payload = [b'x'; 100];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    let mut spans: Vec<u64> = Vec::new();
    for repeat in 0..repeats {
        for index in round_order(repeat, CONFIGS.len()) {
            let name = CONFIGS[index];
            let telemetry = match name {
                "traced-unsampled" => Some(Telemetry::install_with(|b| {
                    b.with_sampler(Sampler::AlwaysOff)
                })),
                "traced-sampled" => Some(Telemetry::install_with(|b| {
                    b.with_sampler(Sampler::AlwaysOn)
                })),
                _ => {
                    global::set_tracer_provider(NoopTracerProvider::new());
                    None
                }
            };
            let producer: FutureProducer = config(broker.bootstrap_servers())
                .create()
                .expect("a producer");
            let traced = TracedProducer::new(producer.clone());
            let raw = name == "raw";
            let (rate, failed) = runtime.block_on(run(records, in_flight, |i| {
                let (producer, traced) = (&producer, &traced);
                let key = format!("key-{}", i % 1000);
                async move {
                    let headers = OwnedHeaders::new().insert(Header {
                        key: "tenant",
                        value: Some("acme"),
                    });
                    let record = FutureRecord::to(TOPIC)
                        .payload(&payload[..])
                        .key(key.as_str())
                        .headers(headers);
                    let timeout = Duration::from_secs(30);
                    if raw {
                        producer.send(record, timeout).await.is_ok()
                    } else {
                        traced.send(record, timeout).await.is_ok()
                    }
                }
            }));
            assert_eq!(failed, 0, "{name}: every send acknowledged");
            if let Some(telemetry) = telemetry {
                let exported = telemetry.finish();
                if name == "traced-sampled" {
                    spans.push(exported);
                }
            }
            println!(
                "repeat {}/{repeats} {name:>16}: {records} records, {rate:.0} records/s",
                repeat + 1
            );
            rates[index].push(rate);
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let raw = medians[0];
    println!(
        "\nProducer: {records} records (100-byte payload, key, one header), {in_flight} in \
         flight, 8 partitions; medians of {repeats} runs\n"
    );
    println!("| producer | records/s | × raw |\n|---|---|---|");
    let labels = [
        "raw rdkafka `FutureProducer`",
        "`TracedProducer`, tracing off (no provider)",
        "`TracedProducer`, SDK installed, unsampled",
        "`TracedProducer`, 100% sampled",
    ];
    for (label, rate) in labels.iter().zip(&medians) {
        println!("| {label} | {rate:.0} | {:.2}× |", rate / raw);
    }
    println!(
        "\nspans exported per sampled run: {spans:?} of {records} (the batch span processor \
         drops spans when its queue is full)"
    );
}
