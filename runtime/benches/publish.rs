//! Publishing a handler's return value (`publish = "topic"`) against the
//! same output sent by hand through the handler's `TracedProducer`
//! argument, in one run: consume-transform-produce records/s on the
//! embedded broker.
//!
//! Each run gets a fresh mock broker. The bench produces `BENCH_RECORDS`
//! records (default 50,000; a 100-byte payload, a key and a sampled
//! `traceparent`) to 8 partitions of `bench-in`, then reads them with the
//! `kafka_handler::Consumer` and one of two handlers, each of which
//! produces the payload, under the input's key, to `bench-out`:
//!
//! - `publish`: `#[kafka_handler(publish = "bench-out")] async fn(&[u8]) -> Vec<u8>`;
//! - `by hand`: `async fn(&[u8], &Record, &TracedProducer) -> Result<(), HandlerError>`
//!   that builds the `FutureRecord`, sends it, awaits the delivery and maps
//!   its error: what a handler wrote before `publish`.
//!
//! Both run with `ordering = "none"` and `max_in_flight = 1000`, so sends
//! overlap, and 100% sampled (an SDK provider, the batch span processor, an
//! exporter that counts and discards). A run is timed from the first
//! handler call to the moment `bench-out` holds every output (its
//! watermarks, polled every 5 ms): every output acknowledged.
//!
//! The two run `BENCH_ROUNDS` times (default 5), alternating which goes
//! first; the table reports medians and the ratio. Run it with
//! `cargo bench -p kafka-handler --bench publish`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::produce::TracedProducer as BenchProducer;
use common::{consumer_properties, env_u64, median, Telemetry};
use kafka_handler::testing::EmbeddedBroker;
use kafka_handler::{
    handlers, kafka_handler, Consumer, Handler, HandlerError, ProcessingOrder, Record, Shutdown,
    TracedProducer,
};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;

const INPUT: &str = "bench-in";
const OUTPUT: &str = "bench-out";
const PARTITIONS: i32 = 8;
const PAYLOAD_BYTES: usize = 100;
const MAX_IN_FLIGHT: usize = 1_000;
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// When the run's first handler call happened.
static FIRST: Mutex<Option<Instant>> = Mutex::new(None);
static STARTED: AtomicBool = AtomicBool::new(false);

fn started() {
    if !STARTED.swap(true, Ordering::Relaxed) {
        *FIRST.lock().unwrap() = Some(Instant::now());
    }
}

/// The payload, published to `bench-out` under the input's key.
#[kafka_handler(topics = ["bench-in"], group = "bench-publish", publish = "bench-out")]
async fn published(payload: &[u8]) -> Vec<u8> {
    started();
    payload.to_vec()
}

/// The same output, sent by hand.
#[kafka_handler(topics = ["bench-in"], group = "bench-by-hand")]
async fn by_hand(
    payload: &[u8],
    record: &Record<'_>,
    producer: &TracedProducer,
) -> Result<(), HandlerError> {
    started();
    let mut output = FutureRecord::<[u8], [u8]>::to(OUTPUT).payload(payload);
    output.key = record.key();
    producer
        .send(output, rdkafka::util::Timeout::Never)
        .await
        .map(drop)
        .map_err(|(err, _)| HandlerError::transient(err))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Publish,
    ByHand,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Publish => "publish = \"bench-out\"",
            Variant::ByHand => "TracedProducer::send by hand",
        }
    }

    fn handler(self) -> Handler {
        let handler = match self {
            Variant::Publish => handlers![published],
            Variant::ByHand => handlers![by_hand],
        }
        .remove(0);
        handler
            .with_ordering(ProcessingOrder::Unordered)
            .with_max_in_flight(MAX_IN_FLIGHT)
    }
}

fn main() {
    let records = env_u64("BENCH_RECORDS", 50_000);
    let rounds = env_u64("BENCH_ROUNDS", 5) as usize;
    common::install_propagation();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Variant::Publish, Variant::ByHand]
        } else {
            [Variant::ByHand, Variant::Publish]
        };
        for variant in order {
            let rate = run(&runtime, variant, records);
            eprintln!("round {round}: {}: {rate:.0} records/s", variant.name());
            rates[variant as usize].push(rate);
        }
    }
    let publish = median(&mut rates[Variant::Publish as usize]);
    let by_hand = median(&mut rates[Variant::ByHand as usize]);
    println!();
    println!("publish bench: {records} records, {PARTITIONS} partitions, 100% sampled, medians of {rounds} rounds");
    println!("| handler | records/s | × by hand |");
    println!("|---|---|---|");
    println!("| {} | {by_hand:.0} | 1.00 |", Variant::ByHand.name());
    println!(
        "| {} | {publish:.0} | {:.2} |",
        Variant::Publish.name(),
        publish / by_hand
    );
}

/// One run: a fresh broker, `records` inputs, the consumer until every
/// output is acknowledged; records/s.
fn run(runtime: &tokio::runtime::Runtime, variant: Variant, records: u64) -> f64 {
    STARTED.store(false, Ordering::Relaxed);
    *FIRST.lock().unwrap() = None;
    let broker = EmbeddedBroker::mock().expect("the mock broker");
    runtime.block_on(async {
        broker.create_topic(INPUT, PARTITIONS).await.unwrap();
        broker.create_topic(OUTPUT, PARTITIONS).await.unwrap();
    });
    let producer = BenchProducer::new(&broker, &[("linger.ms", "5")]);
    let payload = [b'x'; PAYLOAD_BYTES];
    for i in 0..records {
        let key = format!("key-{i}");
        producer
            .send_keyed(
                INPUT,
                (i % PARTITIONS as u64) as i32,
                Some(key.as_bytes()),
                &payload,
                i,
            )
            .expect("producing the inputs");
    }
    assert_eq!(producer.flush(), 0, "every input delivered");
    let telemetry = Telemetry::install();
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handlers(vec![variant.handler()])
        .shutdown_timeout(Duration::from_secs(10));
    for (key, value) in consumer_properties(&broker) {
        builder = builder.set(key, value);
    }
    let consumer = builder.build().expect("a consumer");
    let shutdown = Shutdown::new();
    let done: Arc<OnceLock<Instant>> = Arc::default();
    let watcher = {
        let shutdown = shutdown.clone();
        let done = done.clone();
        let brokers = broker.bootstrap_servers().to_owned();
        std::thread::spawn(move || {
            let reader: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()
                .expect("a watermark reader");
            let deadline = Instant::now() + RUN_LIMIT;
            while Instant::now() < deadline {
                let total: i64 = (0..PARTITIONS)
                    .map(|p| {
                        reader
                            .fetch_watermarks(OUTPUT, p, Duration::from_secs(5))
                            .map_or(0, |(_, high)| high)
                    })
                    .sum();
                if total as u64 >= records {
                    let _ = done.set(Instant::now());
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            shutdown.trigger();
        })
    };
    common::run_consumer(runtime, consumer, shutdown, RUN_LIMIT);
    watcher.join().expect("the watcher");
    let spans = telemetry.finish();
    let first = FIRST.lock().unwrap().expect("a handler call");
    let end = *done.get().expect("every output acknowledged in time");
    assert!(spans >= 2 * records, "every process and send span exported");
    records as f64 / (end - first).as_secs_f64()
}
