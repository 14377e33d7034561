//! The failure path: retries under the producer's trace, dead-letter copies
//! that keep it, commits only after the copy is acknowledged.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    attribute, header, header_values, new_topic, read_all, send, start_consumer, stop_consumer,
    telemetry, traced_headers, wait_until, Mode,
};
use kafka_handler::testing::{unique_topic, EmbeddedBroker, TestRecord};
use kafka_handler::{Backoff, Handler, HandlerError, Record};
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::Value;
use rdkafka::message::Message as _;

const FAST: Backoff = Backoff::constant(Duration::from_millis(10));

/// A handler that fails (transiently) its first `failures` calls.
fn flaky(topic: &str, group: &str, failures: u32, calls: Arc<AtomicU32>) -> Handler {
    Handler::sync("tests::flaky", [topic], group, move |_: &Record<'_>| {
        if calls.fetch_add(1, Ordering::SeqCst) < failures {
            Err(HandlerError::transient("database unavailable"))
        } else {
            Ok(())
        }
    })
    .with_backoff(FAST)
}

fn attempt(span: &opentelemetry_sdk::trace::SpanData) -> Option<Value> {
    attribute(span, "kafka_handler.attempt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_under_the_producers_trace() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "flaky", 1).await;
    let dlq = unique_topic("flaky-dlq");
    let (producer, headers) = traced_headers(&topic);
    let mut record = TestRecord::new(&topic, b"x");
    record.headers = headers;
    send(&broker, record).await;

    let calls = Arc::new(AtomicU32::new(0));
    let handler = flaky(&topic, &group, 2, calls.clone()).with_dlq(&dlq);
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    let name = format!("process {topic}");
    wait_until(Duration::from_secs(30), "three attempts", || {
        telemetry.spans_named(&name).len() >= 3
    })
    .await;
    stop_consumer(shutdown, running).await;

    let mut spans = telemetry.spans_named(&name);
    spans.sort_by_key(|span| span.start_time);
    assert_eq!(spans.len(), 3, "one span per attempt, no more");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    for (i, span) in spans.iter().enumerate() {
        assert_eq!(
            span.span_context.trace_id(),
            producer.trace_id(),
            "no new trace per retry"
        );
        assert_eq!(
            span.parent_span_id,
            producer.span_id(),
            "every attempt's parent is the producer"
        );
        assert_eq!(attempt(span), Some(Value::I64(i as i64 + 1)));
    }
    for failed in &spans[..2] {
        assert!(matches!(failed.status, Status::Error { .. }));
        assert_eq!(attribute(failed, "error.type"), Some("handler".into()));
        assert!(failed.events.iter().any(|e| e.name == "exception"));
    }
    assert_eq!(spans[2].status, Status::Unset);
    assert!(telemetry.spans_named(&format!("send {dlq}")).is_empty());
    assert!(
        read_all(&broker, &dlq).await.is_empty(),
        "no dead-letter copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_is_dead_lettered_in_its_trace() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "doomed", 1).await;
    let dlq = unique_topic("doomed-dlq");
    broker.create_topic(&dlq, 1).await.unwrap();
    let (producer, headers) = traced_headers(&topic);
    let mut record = TestRecord::new(&topic, b"{\"id\":7}")
        .key(b"order-7")
        .header("tenant", "acme");
    record.headers.extend(headers);
    let (partition, offset) = send(&broker, record).await;

    let calls = Arc::new(AtomicU32::new(0));
    let doomed = flaky(&topic, &group, u32::MAX, calls.clone())
        .with_retries(2)
        .with_dlq(&dlq);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen_by_dlq_handler = seen.clone();
    let dlq_group = unique_topic("doomed-dlq-group");
    let inspect = Handler::sync(
        "tests::inspect",
        [&dlq],
        &dlq_group,
        move |record: &Record<'_>| {
            let headers = record.headers();
            seen_by_dlq_handler.lock().unwrap().push(
                String::from_utf8_lossy(headers.get("dlq.error.message").unwrap_or_default())
                    .into_owned(),
            );
            Ok(())
        },
    );
    let (shutdown, running) = start_consumer(&broker, vec![doomed, inspect]);
    wait_until(
        Duration::from_secs(30),
        "the DLQ handler sees the copy",
        || !seen.lock().unwrap().is_empty(),
    )
    .await;
    stop_consumer(shutdown, running).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "retries + 1 attempts");

    // Exactly one copy, with every header.
    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 1, "exactly one dead-letter copy");
    let copy = &copies[0];
    assert_eq!(copy.key(), Some(&b"order-7"[..]));
    assert_eq!(copy.payload(), Some(&b"{\"id\":7}"[..]));
    assert_eq!(
        header(copy, "tenant").as_deref(),
        Some("acme"),
        "non-trace headers kept"
    );
    assert_eq!(header_values(copy, "traceparent").len(), 1);
    assert_eq!(header(copy, "dlq.original.topic"), Some(topic.clone()));
    assert_eq!(
        header(copy, "dlq.original.partition"),
        Some(partition.to_string())
    );
    assert_eq!(
        header(copy, "dlq.original.offset"),
        Some(offset.to_string())
    );
    let timestamp: i64 = header(copy, "dlq.original.timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        copy.timestamp().to_millis(),
        Some(timestamp),
        "the copy keeps the timestamp"
    );
    assert_eq!(header(copy, "dlq.group"), Some(group.clone()));
    assert_eq!(header(copy, "dlq.handler").as_deref(), Some("tests::flaky"));
    assert_eq!(header(copy, "dlq.attempts").as_deref(), Some("3"));
    assert_eq!(header(copy, "dlq.error.type").as_deref(), Some("handler"));
    assert_eq!(
        header(copy, "dlq.error.message").as_deref(),
        Some("database unavailable")
    );

    // The trace: producer → 3 attempts; attempt 3 → send {dlq} → DLQ handler.
    let mut attempts = telemetry.spans_named(&format!("process {topic}"));
    attempts.sort_by_key(|span| span.start_time);
    assert_eq!(attempts.len(), 3);
    let sends = telemetry.spans_named(&format!("send {dlq}"));
    assert_eq!(sends.len(), 1);
    let send_span = &sends[0];
    assert_eq!(send_span.span_kind, SpanKind::Producer);
    assert_eq!(send_span.span_context.trace_id(), producer.trace_id());
    assert_eq!(send_span.parent_span_id, attempts[2].span_context.span_id());
    assert_eq!(
        attribute(send_span, "messaging.destination.name"),
        Some(dlq.clone().into())
    );
    assert_eq!(
        attribute(send_span, "messaging.operation.type"),
        Some("send".into())
    );
    let dlq_spans = telemetry.spans_named(&format!("process {dlq}"));
    assert_eq!(dlq_spans.len(), 1);
    assert_eq!(dlq_spans[0].span_context.trace_id(), producer.trace_id());
    assert_eq!(
        dlq_spans[0].parent_span_id,
        send_span.span_context.span_id()
    );
    assert_ne!(dlq_spans[0].parent_span_id, SpanId::INVALID);
}
