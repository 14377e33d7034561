//! End to end, on the embedded broker: a consumer configured for `b3`
//! continues a B3 trace and ignores `traceparent`, and one configured for
//! `tracecontext` does the reverse. The global propagator is process-wide,
//! so this binary holds one test that installs each in turn.

mod common;

use std::time::Duration;

use kafka_handler::propagation::{Format, Propagation};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::Handler;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::SpanData;

use common::{
    assert_continues, attribute, new_topic, run_until, send, telemetry_with_propagation,
    wait_until, Mode, Telemetry,
};

const WAIT: Duration = Duration::from_secs(30);

const W3C_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const W3C_SPAN: &str = "00f067aa0ba902b7";
const B3_TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const B3_SPAN: &str = "e457b5a2e4d86bd1";
const B3_MULTI_TRACE: &str = "a3ce929d0e0e4736";
const B3_MULTI_SPAN: &str = "53995c3f42cd8ad8";

fn remote(trace: &str, span: &str) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex(trace).unwrap(),
        SpanId::from_hex(span).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

fn traceparent() -> Vec<u8> {
    format!("00-{W3C_TRACE}-{W3C_SPAN}-01").into_bytes()
}

fn b3() -> Vec<u8> {
    format!("{B3_TRACE}-{B3_SPAN}-1").into_bytes()
}

/// The `process {topic}` span of the record with key `key`.
fn span_of(telemetry: &Telemetry, topic: &str, key: &str) -> SpanData {
    telemetry
        .process_spans(topic)
        .into_iter()
        .find(|span| attribute(span, "messaging.kafka.message.key") == Some(key.to_owned().into()))
        .unwrap_or_else(|| panic!("a process span for {key}"))
}

/// A record's headers: (name, value).
type Headers = Vec<(&'static str, Vec<u8>)>;

/// Consumes `records` (key, headers) from a new topic with the installed
/// propagation, and returns the topic once every record has its span.
async fn consume(
    broker: &EmbeddedBroker,
    telemetry: &'static Telemetry,
    prefix: &str,
    records: Vec<(&'static str, Headers)>,
) -> String {
    let (topic, group) = new_topic(broker, prefix, 1).await;
    let count = records.len();
    for (key, headers) in records {
        let mut record = TestRecord::new(&topic, b"order").key(key.as_bytes());
        for (name, value) in headers {
            record = record.header(name, value);
        }
        send(broker, record).await;
    }
    let handler = Handler::sync("tests::b3_only", [&topic], &group, |_record| Ok(()));
    let waited = topic.clone();
    run_until(broker, vec![handler], async move {
        wait_until(WAIT, "a process span per record", || {
            telemetry.process_spans(&waited).len() == count
        })
        .await;
    })
    .await;
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b3_consumer_continues_b3_and_ignores_traceparent_and_the_reverse() {
    let telemetry = telemetry_with_propagation(Mode::OtelOnly, &"b3".parse().unwrap());
    let broker = EmbeddedBroker::start().unwrap();

    // Configured for b3: the B3 context wins, a traceparent alone is not
    // read, and the multiple headers in Java's spelling are.
    let topic = consume(
        &broker,
        telemetry,
        "b3-only",
        vec![
            ("both", vec![("traceparent", traceparent()), ("b3", b3())]),
            ("traceparent-only", vec![("traceparent", traceparent())]),
            (
                "b3-multi",
                vec![
                    ("X-B3-TraceId", B3_MULTI_TRACE.into()),
                    ("X-B3-SpanId", B3_MULTI_SPAN.into()),
                    ("X-B3-Sampled", b"1".to_vec()),
                ],
            ),
        ],
    )
    .await;
    let b3_producer = remote(B3_TRACE, B3_SPAN);
    let both = span_of(telemetry, &topic, "both");
    assert_continues(&both, Some(&b3_producer), "b3: both headers");
    let alone = span_of(telemetry, &topic, "traceparent-only");
    assert_continues(&alone, None, "b3: traceparent alone");
    assert_ne!(
        alone.span_context.trace_id(),
        TraceId::from_hex(W3C_TRACE).unwrap(),
        "b3: the traceparent's trace is not continued"
    );
    let padded = format!("{}{B3_MULTI_TRACE}", "0".repeat(16));
    let multi = span_of(telemetry, &topic, "b3-multi");
    assert_continues(
        &multi,
        Some(&remote(&padded, B3_MULTI_SPAN)),
        "b3: X-B3-* headers",
    );

    // The reverse: configured for tracecontext, the traceparent wins and a
    // b3 header alone is not read.
    Propagation::new([Format::TraceContext, Format::Baggage]).install();
    let topic = consume(
        &broker,
        telemetry,
        "tracecontext-only",
        vec![
            ("both", vec![("traceparent", traceparent()), ("b3", b3())]),
            ("b3-only", vec![("b3", b3())]),
        ],
    )
    .await;
    let both = span_of(telemetry, &topic, "both");
    assert_continues(
        &both,
        Some(&remote(W3C_TRACE, W3C_SPAN)),
        "tracecontext: both headers",
    );
    let alone = span_of(telemetry, &topic, "b3-only");
    assert_continues(&alone, None, "tracecontext: b3 alone");
    assert_ne!(
        alone.span_context.trace_id(),
        TraceId::from_hex(B3_TRACE).unwrap(),
        "tracecontext: the b3 trace is not continued"
    );
}
