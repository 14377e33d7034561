//! The closest Rust peer, ruststream-rdkafka 0.7.1, with an async handler
//! calling the same no-op as the kafka-handler runs, and the global
//! `tracing` subscriber ([`Bridge`]) that carries its spans to
//! OpenTelemetry in the sampled runs.

use std::convert::Infallible;

use kafka_handler::testing::EmbeddedBroker;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use ruststream::otel::OpenTelemetry;
use ruststream::runtime::{
    subscriber, AppInfo, Deserialized, Handle, HandlerOutcome, Input, RustStream, SoloDeserialized,
    SubscriberSettings as _,
};
use ruststream_rdkafka::{Commit, KafkaBroker, KafkaTopic, StartOffset};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::{reload, Registry};

use crate::common::{consumer_properties, Telemetry};
use crate::{count_record, finish_counting, start_counting, RunResult, RUN_LIMIT, TOPIC};

/// A record's payload as it arrived: ruststream's self-deserializing input
/// that borrows the payload (no codec, no copy).
struct Payload<'a>(&'a [u8]);

impl Deserialized for Payload<'_> {
    type Output<'a> = Payload<'a>;
    type Error = Infallible;

    fn from_payload(payload: &[u8]) -> Result<Payload<'_>, Infallible> {
        Ok(Payload(payload))
    }
}

impl Input for Payload<'_> {
    type Axis = SoloDeserialized<Payload<'static>>;
}

/// The no-op handler as a ruststream handler: the same [`count_record`].
struct CountRustStream;

impl Handle<Payload<'_>> for CountRustStream {
    async fn handle(
        &self,
        record: &Payload<'_>,
        _outs: &(),
        _ctx: &mut ruststream::runtime::Context<'_>,
    ) -> Result<(), HandlerOutcome> {
        count_record(record.0);
        Ok(())
    }
}

/// A ruststream-rdkafka service with [`CountRustStream`] on [`TOPIC`]: the
/// same consumer properties as every other run, `StartOffset::Earliest`,
/// `Commit::Tracked` (at-least-once: `enable.auto.offset.store=false`, each
/// acknowledged record's offset stored, auto-commit flushing them; the
/// closest to kafka-handler's commits after handling), default workers.
/// With `telemetry`, the app gets ruststream's `OpenTelemetry` consume layer
/// (a `ruststream.consume` `tracing` span per delivery) and the bench's
/// `tracing` bridge sends those spans to the run's provider.
pub(super) fn run_ruststream(
    runtime: &tokio::runtime::Runtime,
    broker: &EmbeddedBroker,
    group: &str,
    expected: u64,
    telemetry: Option<&Telemetry>,
    bridge: &Bridge,
) -> RunResult {
    let shutdown = start_counting(expected);
    let topic = || {
        let mut topic = KafkaTopic::new(TOPIC)
            .group(group)
            .start(StartOffset::Earliest)
            .commit(Commit::Tracked);
        for (key, value) in consumer_properties(broker) {
            topic = topic.config(key, value);
        }
        topic
    };
    let kafka = KafkaBroker::new([broker.bootstrap_servers().to_owned()]);
    let stop = async {
        tokio::select! {
            () = shutdown.triggered() => {}
            () = tokio::time::sleep(RUN_LIMIT) => {}
        }
    };
    let app = RustStream::new(AppInfo::new("bench-e2e", "0.1.0"));
    let outcome = match telemetry {
        None => runtime.block_on(
            app.with_broker(kafka, |b| {
                let topic = topic();
                b.include(
                    subscriber(TOPIC, CountRustStream)
                        .build()
                        .map_source(|_| topic),
                );
            })
            .run_until(stop),
        ),
        Some(telemetry) => {
            bridge.enable(&telemetry.provider);
            let outcome = runtime.block_on(
                app.layer(OpenTelemetry::new().consume_layer())
                    .with_broker(kafka, |b| {
                        let topic = topic();
                        b.include(
                            subscriber(TOPIC, CountRustStream)
                                .build()
                                .map_source(|_| topic),
                        );
                    })
                    .run_until(stop),
            );
            bridge.disable();
            outcome
        }
    };
    if let Err(err) = outcome {
        eprintln!("the ruststream service failed: {err}");
    }
    finish_counting()
}

type LevelLayer = reload::Layer<LevelFilter, Registry>;
type BelowBridge = Layered<LevelLayer, Registry>;
type BridgeLayer = tracing_opentelemetry::OpenTelemetryLayer<BelowBridge, SdkTracer>;

/// The global `tracing` subscriber: a registry, a level filter, and the
/// tracing-opentelemetry layer, both reloadable. Off (`LevelFilter::OFF`:
/// every callsite's interest is "never" and the global max level is off, as
/// with no subscriber at all) except during the sampled ruststream runs,
/// whose spans are `tracing` spans and reach OpenTelemetry only through
/// such a layer (what `ruststream::otel::Otel::init` installs). Every other
/// configuration runs with it off, so the kafka-handler and hand-written
/// runs see no `tracing` subscriber, as before.
pub(super) struct Bridge {
    level: reload::Handle<LevelFilter, Registry>,
    layer: reload::Handle<BridgeLayer, BelowBridge>,
}

impl Bridge {
    pub(super) fn install() -> Self {
        let (level, level_handle) = reload::Layer::new(LevelFilter::OFF);
        let idle = SdkTracerProvider::builder().build().tracer("idle");
        let (layer, layer_handle) =
            reload::Layer::new(tracing_opentelemetry::layer().with_tracer(idle));
        tracing::subscriber::set_global_default(Registry::default().with(level).with(layer))
            .expect("no other global tracing subscriber");
        Bridge {
            level: level_handle,
            layer: layer_handle,
        }
    }

    /// Sends `tracing` spans at `INFO` and above to `provider`.
    pub(super) fn enable(&self, provider: &SdkTracerProvider) {
        self.layer
            .reload(tracing_opentelemetry::layer().with_tracer(provider.tracer("ruststream")))
            .expect("reloading the bridge");
        self.level
            .reload(LevelFilter::INFO)
            .expect("reloading the level");
    }

    pub(super) fn disable(&self) {
        self.level
            .reload(LevelFilter::OFF)
            .expect("reloading the level");
    }
}
