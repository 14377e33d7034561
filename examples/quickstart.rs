//! The quickstart: traced records in, one trace per record out.
//!
//! Starts the embedded broker (librdkafka's mock cluster, or the cluster in
//! `KAFKA_BROKERS`), produces orders from a "checkout" service, each in its
//! own trace, plus one order without trace headers and one with a malformed
//! `traceparent`. Three `#[kafka_handler]` functions in three consumer
//! groups handle them: billing and audit one record at a time, the
//! warehouse in batches. Billing order 4 keeps failing: it is retried twice,
//! then dead-lettered to `orders.dlq`, where a review handler picks it up in
//! the same trace. Every resulting trace is printed as a tree, with each
//! span's links: a warehouse batch is one `process orders` span in a trace
//! of its own, linked to the producer of each order in it that carries a
//! trace context, and each order packed gets its own `process orders` span
//! in that order's trace, linked back to the batch span.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_handler::propagation::Propagation;
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{handlers, Consumer, Shutdown};
use kafka_handler_examples::orders::{
    audit, bill, mail, pack, review, AUDITED, BILLED, MAILED, PACKED, REVIEWED,
};
use opentelemetry::trace::{
    SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer, TracerProvider as _,
};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;

const TOPIC: &str = "orders";

/// The checkout service: a server span, then a producer span whose context
/// travels in the record's `traceparent`.
async fn checkout(broker: &EmbeddedBroker, order_id: u64, cents: u64) {
    let tracer = global::tracer("checkout");
    let request = tracer
        .span_builder("POST /checkout")
        .with_kind(SpanKind::Server)
        .start_with_context(&tracer, &Context::new());
    let request_cx = Context::new().with_span(request);
    let send = tracer
        .span_builder(format!("send {TOPIC}"))
        .with_kind(SpanKind::Producer)
        .with_attributes([KeyValue::new("messaging.system", "kafka")])
        .start_with_context(&tracer, &request_cx);
    let send_cx = request_cx.with_span(send);
    let mut carrier = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&send_cx, &mut carrier));

    let key = format!("order-{order_id}");
    let payload = format!(r#"{{"id":{order_id},"cents":{cents}}}"#);
    let mut record = TestRecord::new(TOPIC, payload.as_bytes()).key(key.as_bytes());
    for (name, value) in &carrier {
        record = record.header(
            if name == "traceparent" {
                "traceparent"
            } else {
                "tracestate"
            },
            value.as_bytes(),
        );
    }
    broker
        .send(record)
        .await
        .expect("the broker accepts the order");
    send_cx.span().end();
    request_cx.span().end();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exporter = InMemorySpanExporter::default();
    // A batch span has one link per record, and the SDK keeps 128 links per
    // span by default: `pack`'s batches (100 at most) fit. A handler with a
    // larger `max_records` needs `.with_max_links_per_span(max_records)`
    // here (or `OTEL_SPAN_LINK_COUNT_LIMIT`).
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    global::set_tracer_provider(provider.clone());
    Propagation::default().install();
    let logs = tracing_subscriber::fmt::layer()
        .compact()
        .with_target(false)
        .with_writer(std::io::stderr);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("quickstart")))
        .with(logs)
        .with(
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::Level::INFO)
                .with_target("librdkafka", tracing::Level::WARN),
        );
    tracing::subscriber::set_global_default(subscriber)?;

    let broker = EmbeddedBroker::start()?;
    println!(
        "broker: {} ({})",
        broker.bootstrap_servers(),
        if broker.is_mock() {
            "embedded mock cluster"
        } else {
            "KAFKA_BROKERS"
        }
    );
    if broker.is_mock() {
        broker.create_topic(TOPIC, 2).await?;
        broker.create_topic("orders.dlq", 1).await?;
        broker.create_topic("invoices", 1).await?;
    }

    // Four orders in four traces; billing order 4 keeps failing.
    for (id, cents) in [(1, 1250), (2, 990), (3, 4200), (4, 0)] {
        checkout(&broker, id, cents).await;
    }
    // One record without trace headers, one with a malformed traceparent:
    // each starts a new trace of its own.
    broker
        .send(TestRecord::new(TOPIC, br#"{"id":5,"cents":100}"#).key(b"order-5"))
        .await?;
    broker
        .send(
            TestRecord::new(TOPIC, br#"{"id":6,"cents":100}"#)
                .key(b"order-6")
                .header("traceparent", "00-NOT-A-VALID-TRACEPARENT-01"),
        )
        .await?;
    // Billing: five succeed and one is dead-lettered; audit and the
    // warehouse: all six.
    let done = || {
        BILLED.load(Ordering::Relaxed) == 5
            && AUDITED.load(Ordering::Relaxed) == 6
            && REVIEWED.load(Ordering::Relaxed) == 1
            && PACKED.load(Ordering::Relaxed) == 6
            && MAILED.load(Ordering::Relaxed) == 5
    };

    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handlers(handlers![bill, audit, review, pack, mail])
        .tracer_provider(provider.clone());
    for (key, value) in broker.consumer_properties() {
        builder = builder.set(key, value);
    }
    let consumer = builder.build()?;
    let shutdown = Shutdown::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "not done within 30 s: {} of 5 billed, {} of 6 audited, {} of 1 reviewed, \
                 {} of 6 packed",
                BILLED.load(Ordering::Relaxed),
                AUDITED.load(Ordering::Relaxed),
                REVIEWED.load(Ordering::Relaxed),
                PACKED.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.trigger();
    running.await??;

    print_traces(&exporter.get_finished_spans()?);
    Ok(())
}

/// Prints spans as one tree per trace; under each span, where its links
/// point (a batch span's producers, a batched record's batch span).
fn print_traces(spans: &[SpanData]) {
    let by_id: HashMap<SpanId, &SpanData> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    let mut traces: Vec<(TraceId, Vec<&SpanData>)> = Vec::new();
    for span in spans {
        let trace_id = span.span_context.trace_id();
        match traces.iter_mut().find(|(id, _)| *id == trace_id) {
            Some((_, members)) => members.push(span),
            None => traces.push((trace_id, vec![span])),
        }
    }
    traces.sort_by_key(|(_, members)| members.iter().map(|s| s.start_time).min());
    println!("\n{} traces:", traces.len());
    for (trace_id, mut members) in traces {
        members.sort_by_key(|s| s.start_time);
        println!("\ntrace {trace_id}");
        let ids: Vec<SpanId> = members.iter().map(|s| s.span_context.span_id()).collect();
        let roots: Vec<&SpanData> = members
            .iter()
            .copied()
            .filter(|s| !ids.contains(&s.parent_span_id))
            .collect();
        for (i, root) in roots.iter().enumerate() {
            print_span(root, &members, &by_id, "", i + 1 == roots.len());
        }
    }
}

fn print_span(
    span: &SpanData,
    all: &[&SpanData],
    by_id: &HashMap<SpanId, &SpanData>,
    prefix: &str,
    last: bool,
) {
    let attribute = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let mut details = Vec::new();
    for (label, key) in [
        ("group", "messaging.consumer.group.name"),
        ("partition", "messaging.destination.partition.id"),
        ("offset", "messaging.kafka.offset"),
        ("key", "messaging.kafka.message.key"),
        ("batch.message_count", "messaging.batch.message_count"),
        ("attempt", "kafka_handler.attempt"),
        ("error.type", "error.type"),
    ] {
        match attribute(key) {
            // First attempts are the norm; show only retries.
            Some(value) if label == "attempt" && value == "1" => {}
            Some(value) => details.push(format!("{label}={value}")),
            None => {}
        }
    }
    if attribute("messaging.batch.message_count").is_some() {
        // A batch span: one link per record with a valid context.
        details.push(format!("links={}", span.links.len()));
        if span.links.dropped_count > 0 {
            details.push(format!("dropped_links={}", span.links.dropped_count));
        }
    }
    if let Status::Error { description } = &span.status {
        details.push(format!("status=Error({description})"));
    }
    println!(
        "{prefix}{} {}  span={}{}{}",
        if last { "└─" } else { "├─" },
        describe(span),
        span.span_context.span_id(),
        if details.is_empty() { "" } else { " " },
        details.join(" ")
    );
    let children: Vec<&SpanData> = all
        .iter()
        .copied()
        .filter(|s| s.parent_span_id == span.span_context.span_id())
        .collect();
    let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
    let link_prefix = format!(
        "{child_prefix}{}",
        if children.is_empty() { " " } else { "│" }
    );
    for link in span.links.iter() {
        let target = &link.span_context;
        let described = by_id
            .get(&target.span_id())
            .map(|linked| {
                let batch = linked
                    .attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "messaging.batch.message_count")
                    .map(|kv| format!(" (batch of {})", kv.value))
                    .unwrap_or_default();
                format!("{}{batch} ", describe(linked))
            })
            .unwrap_or_default();
        println!(
            "{link_prefix}  ⇢ link: {described}span={} in trace {}",
            target.span_id(),
            target.trace_id()
        );
    }
    for (i, child) in children.iter().enumerate() {
        print_span(child, all, by_id, &child_prefix, i + 1 == children.len());
    }
}

/// A span's name and kind.
fn describe(span: &SpanData) -> String {
    let kind = match span.span_kind {
        SpanKind::Server => " [server]",
        SpanKind::Producer => " [producer]",
        SpanKind::Consumer => " [consumer]",
        _ => "",
    };
    format!("{}{kind}", span.name)
}
