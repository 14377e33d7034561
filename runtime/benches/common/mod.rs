//! What the benchmarks share.

#[allow(dead_code)] // per_record does not produce.
pub(crate) mod produce;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_handler::propagation::Propagation;
use kafka_handler::testing::EmbeddedBroker;
use kafka_handler::{Consumer, Shutdown};
use opentelemetry::global;
use opentelemetry::trace::noop::NoopTracerProvider;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfig, BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    TracerProviderBuilder,
};

/// Installs kafka-handler's default propagation as the global propagator
/// ([`install_propagation`]), and starts a multi-threaded tokio runtime and
/// the embedded (mock) broker.
#[allow(dead_code)] // per_record has no broker.
pub(crate) fn start() -> (tokio::runtime::Runtime, EmbeddedBroker) {
    install_propagation();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let broker = EmbeddedBroker::mock().expect("starting the mock broker");
    (runtime, broker)
}

/// The batch span processor's queue in every sampled run:
/// `BENCH_SPAN_QUEUE`, default 262,144 (the SDK's default of 2,048 dropped
/// about 0.5% of the spans at these rates).
pub(crate) fn span_queue() -> usize {
    env_u64("BENCH_SPAN_QUEUE", 262_144).max(1) as usize
}

/// A batch span processor configuration whose queue drops no span at the
/// benches' rates ([`span_queue`]).
pub(crate) fn sized_batch_config() -> BatchConfig {
    BatchConfigBuilder::default()
        .with_max_queue_size(span_queue())
        .build()
}

/// Installs `Propagation::default()` as the global propagator: W3C trace
/// context and baggage, read with kafka-handler's own parser. What users of
/// the quickstart and of the generated binaries (`OTEL_PROPAGATORS` unset)
/// get, and what every consumer, the hand-written loop included, extracts
/// through.
pub(crate) fn install_propagation() {
    Propagation::default().install();
}

/// A span exporter that counts the spans it is handed and drops them.
#[allow(dead_code)] // Only per_record uses it; the others use `Tally`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Discard(pub(crate) Arc<AtomicU64>);

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A span exporter that counts the spans it is handed, their links, and
/// the links the SDK dropped from them (over `max_links_per_span`), and
/// drops them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    spans: Arc<AtomicU64>,
    links: Arc<AtomicU64>,
    dropped_links: Arc<AtomicU64>,
    max_links: Arc<AtomicU64>,
}

impl SpanExporter for Tally {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let (mut links, mut dropped, mut max) = (0u64, 0u64, 0u64);
        for span in &batch {
            let kept = span.links.links.len() as u64;
            links += kept;
            dropped += u64::from(span.links.dropped_count);
            max = max.max(kept);
        }
        self.spans.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.links.fetch_add(links, Ordering::Relaxed);
        self.dropped_links.fetch_add(dropped, Ordering::Relaxed);
        self.max_links.fetch_max(max, Ordering::Relaxed);
        Ok(())
    }
}

/// What a run's exporter was handed.
#[allow(dead_code)] // Only the end-to-end bench reads the links.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Exported {
    pub(crate) spans: u64,
    /// Links kept on the exported spans.
    pub(crate) links: u64,
    /// Links the SDK dropped (beyond `max_links_per_span`).
    pub(crate) dropped_links: u64,
    /// The most links one exported span kept.
    pub(crate) max_links: u64,
}

/// A run's sampled tracer provider and its exporter's tally.
#[allow(dead_code)] // per_record builds its own provider.
pub(crate) struct Telemetry {
    pub(crate) provider: SdkTracerProvider,
    tally: Tally,
}

#[allow(dead_code)] // per_record builds its own provider; poison keeps the default limits.
impl Telemetry {
    /// Installs a fresh SDK provider as the global one: the default
    /// `ParentBased(AlwaysOn)` sampler, the default span limits, the batch
    /// span processor with its default configuration, and an exporter that
    /// counts and discards.
    pub(crate) fn install() -> Self {
        Self::install_with(|builder| builder)
    }

    /// As [`Self::install`], keeping up to `max_links` links per span (the
    /// SDK's default is 128; a batch span links every record of its batch).
    pub(crate) fn install_with_max_links(max_links: u32) -> Self {
        Self::install_with(|builder| builder.with_max_links_per_span(max_links))
    }

    /// As [`Self::install`], with the provider builder adjusted by
    /// `configure` (a sampler, span limits).
    pub(crate) fn install_with(
        configure: impl FnOnce(TracerProviderBuilder) -> TracerProviderBuilder,
    ) -> Self {
        Self::install_with_processor(sized_batch_config(), configure)
    }

    /// As [`Self::install_with`], with the batch span processor configured
    /// by `batch` (its queue, which drops spans when full, and its export
    /// batch size).
    pub(crate) fn install_with_processor(
        batch: BatchConfig,
        configure: impl FnOnce(TracerProviderBuilder) -> TracerProviderBuilder,
    ) -> Self {
        let tally = Tally::default();
        let processor = BatchSpanProcessor::builder(tally.clone())
            .with_batch_config(batch)
            .build();
        let provider = configure(SdkTracerProvider::builder())
            .with_span_processor(processor)
            .build();
        global::set_tracer_provider(provider.clone());
        Telemetry { provider, tally }
    }

    /// Puts the global no-op provider back, flushes and shuts down this one;
    /// the number of spans exported.
    pub(crate) fn finish(self) -> u64 {
        self.finish_tally().spans
    }

    /// As [`Self::finish`]; what was exported, links included.
    pub(crate) fn finish_tally(self) -> Exported {
        global::set_tracer_provider(NoopTracerProvider::new());
        if let Err(err) = self.provider.force_flush() {
            eprintln!("flushing spans failed: {err}");
        }
        if let Err(err) = self.provider.shutdown() {
            eprintln!("shutting the provider down failed: {err}");
        }
        Exported {
            spans: self.tally.spans.load(Ordering::Relaxed),
            links: self.tally.links.load(Ordering::Relaxed),
            dropped_links: self.tally.dropped_links.load(Ordering::Relaxed),
            max_links: self.tally.max_links.load(Ordering::Relaxed),
        }
    }
}

/// The environment variable `name` as a number (`_` separators allowed),
/// or `default` when it is unset or not a number.
pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The median of `values` (sorts them).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The order of round `round`'s runs of `n` configurations (their indices):
/// rotated by one each round, and reversed every other round, so that no
/// configuration always runs first or right after the same neighbour.
#[allow(dead_code)] // per_record rotates without reversing.
pub(crate) fn round_order(round: usize, n: usize) -> impl Iterator<Item = usize> {
    let offset = round % n;
    (0..n).map(move |i| {
        let position = if round % 2 == 0 { i } else { n - 1 - i };
        (position + offset) % n
    })
}

/// The properties every consumer of the end-to-end and poison benches gets:
/// the broker's fast group timings and the fetch queue backoff.
#[allow(dead_code)] // per_record has no broker.
pub(crate) fn consumer_properties(broker: &EmbeddedBroker) -> Vec<(String, String)> {
    let mut properties = broker.consumer_properties();
    if let Some(backoff) = fetch_queue_backoff_ms() {
        properties.push(("fetch.queue.backoff.ms".to_owned(), backoff.to_string()));
    }
    properties
}

/// `fetch.queue.backoff.ms` for every consumer: `BENCH_FETCH_QUEUE_BACKOFF_MS`,
/// default 10; `default` keeps librdkafka's (1000).
#[allow(dead_code)] // per_record has no broker.
fn fetch_queue_backoff_ms() -> Option<u64> {
    match std::env::var("BENCH_FETCH_QUEUE_BACKOFF_MS") {
        Ok(value) if value == "default" => None,
        Ok(value) => Some(
            value
                .parse()
                .expect("BENCH_FETCH_QUEUE_BACKOFF_MS: a number or `default`"),
        ),
        Err(_) => Some(10),
    }
}

/// Runs `consumer` on `runtime` until `shutdown` is triggered, or for `limit`
/// at the most (a watchdog triggers it then).
#[allow(dead_code)] // per_record has no consumer.
pub(crate) fn run_consumer(
    runtime: &tokio::runtime::Runtime,
    consumer: Consumer,
    shutdown: Shutdown,
    limit: Duration,
) {
    runtime.block_on(async {
        let watchdog = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                shutdown.trigger();
            })
        };
        consumer.run(shutdown).await.expect("the consumer runs");
        watchdog.abort();
    });
}
