//! The batch contract's end-to-end scenarios, run by each telemetry mode's
//! test binary: one batch span linked to every record's producer, and each
//! record's scope under that record's own context and span.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{handlers, kafka_handler, Batch, Handler, Json, Record};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::trace::SpanData;

use super::{
    assert_continues, attribute, current_span_contexts, error_type, int_attribute, new_topic,
    new_topic_with_dlq, read_all, retarget, send, start_consumer, stop_consumer, telemetry,
    traced_headers, wait_until, Mode, TestHeaders,
};

const WAIT: Duration = Duration::from_secs(30);

/// What was current at one point of a batch handler.
#[derive(Clone, Debug)]
struct Current {
    topic: String,
    /// The record whose scope it was, `None` outside every scope.
    record: Option<(i32, i64)>,
    /// `Context::current()`'s span.
    otel: SpanContext,
    /// `tracing::Span::current()`'s OpenTelemetry span.
    traced: SpanContext,
    /// `Context::current()`'s span after the scope yielded (async scopes).
    after_yield: Option<SpanContext>,
}

static CURRENT: Mutex<Vec<Current>> = Mutex::new(Vec::new());

fn note(topic: &str, record: Option<&Record<'_>>, after_yield: Option<SpanContext>) {
    let (otel, traced) = current_span_contexts();
    note_at(topic, record, (otel, traced), after_yield);
}

fn note_at(
    topic: &str,
    record: Option<&Record<'_>>,
    (otel, traced): (SpanContext, SpanContext),
    after_yield: Option<SpanContext>,
) {
    CURRENT.lock().unwrap().push(Current {
        topic: topic.to_owned(),
        record: record.map(|r| (r.partition(), r.offset())),
        otel,
        traced,
        after_yield,
    });
}

fn noted(topic: &str) -> Vec<Current> {
    CURRENT
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.topic == topic)
        .cloned()
        .collect()
}

/// Walks its batch, each record in its scope: a sync scope for even offsets,
/// an async scope that yields for odd ones. Notes what is current inside
/// each scope, before the first, between them and after the last.
#[kafka_handler(topics = ["walk"], group = "walk", batch(max_records = 500, max_wait = "50ms"))]
async fn walk(batch: Batch<'_, &Record<'_>>) {
    let topic = batch.topic();
    note(topic, None, None);
    for item in &batch {
        if item.record().offset() % 2 == 0 {
            item.process(|record| note(topic, Some(record), None));
        } else {
            item.process_async(|record| async move {
                let at_start = current_span_contexts();
                tokio::task::yield_now().await;
                let after = Context::current().span().span_context().clone();
                note_at(topic, Some(record), at_start, Some(after));
            })
            .await;
        }
        note(topic, None, None);
    }
}

/// The finished batch spans of `topic` (those with a message count).
pub fn batch_spans(spans: &[SpanData]) -> Vec<SpanData> {
    spans
        .iter()
        .filter(|s| attribute(s, "messaging.batch.message_count").is_some())
        .cloned()
        .collect()
}

/// The finished per-record spans of `topic` (those with an attempt number).
pub fn record_spans(spans: &[SpanData]) -> Vec<SpanData> {
    spans
        .iter()
        .filter(|s| attribute(s, "kafka_handler.attempt").is_some())
        .cloned()
        .collect()
}

fn message_count(span: &SpanData) -> i64 {
    match attribute(span, "messaging.batch.message_count") {
        Some(Value::I64(n)) => n,
        other => panic!("messaging.batch.message_count is {other:?}"),
    }
}

fn position(span: &SpanData) -> (i32, i64) {
    let partition = attribute(span, "messaging.destination.partition.id")
        .expect("a partition id")
        .to_string()
        .parse()
        .expect("a numeric partition id");
    (partition, int_attribute(span, "messaging.kafka.offset"))
}

/// Issue test 1 and 2: 500 records from 500 traces over two partitions.
/// Each batch span links exactly its records' producers; each record's span
/// sits under its own producer and is current (for OpenTelemetry and
/// `tracing`) inside its scope, also after a yield; outside the scopes only
/// the batch span is current.
pub async fn batch_links_and_record_traces(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "walk", 2).await;

    let mut records = Vec::new();
    let mut producers = Vec::new();
    for i in 0..500 {
        let (producer, headers) = traced_headers(&topic);
        producers.push(producer);
        let mut record = TestRecord::new(&topic, b"{}").partition(i % 2);
        record.headers = headers;
        records.push(record);
    }
    let positions =
        futures_util::future::join_all(records.into_iter().map(|r| send(&broker, r))).await;
    let producer_at: HashMap<(i32, i64), SpanContext> = positions
        .into_iter()
        .zip(producers.iter().cloned())
        .collect();
    let producer_traces: HashSet<TraceId> = producers.iter().map(|p| p.trace_id()).collect();
    assert_eq!(producer_traces.len(), 500, "500 distinct producer traces");

    let (shutdown, handle) = start_consumer(&broker, retarget(handlers![walk], &topic, &group));
    wait_until(WAIT, "500 records walked", || {
        noted(&topic).iter().filter(|c| c.record.is_some()).count() >= 500
    })
    .await;
    stop_consumer(shutdown, handle).await;

    let spans = telemetry.spans_named(&format!("process {topic}"));
    let batches = batch_spans(&spans);
    let per_record = record_spans(&spans);
    assert_eq!(spans.len(), batches.len() + per_record.len());

    // The batch spans: all 500 records, one link per record, to the right
    // producer; parent is the ambient context (none here), not a record's.
    assert!(batches.len() >= 2, "one batch per partition at least");
    assert_eq!(batches.iter().map(message_count).sum::<i64>(), 500);
    let mut linked: Vec<SpanContext> = Vec::new();
    for batch in &batches {
        assert_eq!(batch.span_kind, SpanKind::Consumer);
        assert!(message_count(batch) <= 500);
        assert_eq!(
            batch.links.links.len() as i64,
            message_count(batch),
            "one link per record of the batch"
        );
        assert_eq!(batch.links.dropped_count, 0, "no link dropped");
        assert_eq!(
            batch.parent_span_id,
            SpanId::INVALID,
            "the batch is a root here"
        );
        assert!(
            !producer_traces.contains(&batch.span_context.trace_id()),
            "the batch span is in no record's trace"
        );
        assert_eq!(
            attribute(batch, "messaging.operation.type").map(|v| v.to_string()),
            Some("process".to_owned())
        );
        assert_eq!(
            attribute(batch, "messaging.destination.name").map(|v| v.to_string()),
            Some(topic.clone())
        );
        assert_eq!(
            attribute(batch, "messaging.consumer.group.name").map(|v| v.to_string()),
            Some(group.clone())
        );
        linked.extend(batch.links.links.iter().map(|l| l.span_context.clone()));
    }
    let linked_ids: HashSet<(TraceId, SpanId)> = linked
        .iter()
        .map(|cx| (cx.trace_id(), cx.span_id()))
        .collect();
    let producer_ids: HashSet<(TraceId, SpanId)> = producers
        .iter()
        .map(|cx| (cx.trace_id(), cx.span_id()))
        .collect();
    assert_eq!(linked.len(), 500, "500 links in all");
    assert_eq!(
        linked_ids, producer_ids,
        "each producer linked exactly once"
    );
    let batch_ids: HashSet<SpanId> = batches.iter().map(|b| b.span_context.span_id()).collect();

    // The per-record spans: each under its own producer, linked to its batch.
    assert_eq!(per_record.len(), 500, "one span per record");
    let mut record_span_at: HashMap<(i32, i64), SpanContext> = HashMap::new();
    for span in &per_record {
        let at = position(span);
        let producer = &producer_at[&at];
        assert_eq!(
            span.span_context.trace_id(),
            producer.trace_id(),
            "{at:?}: its producer's trace"
        );
        assert_eq!(
            span.parent_span_id,
            producer.span_id(),
            "{at:?}: child of its producer"
        );
        assert_eq!(int_attribute(span, "kafka_handler.attempt"), 1);
        assert_eq!(span.links.links.len(), 1, "{at:?}: one link, to its batch");
        assert!(batch_ids.contains(&span.links.links[0].span_context.span_id()));
        assert!(
            record_span_at
                .insert(at, span.span_context.clone())
                .is_none(),
            "{at:?} has one span"
        );
    }

    // What the handler saw.
    let seen = noted(&topic);
    let inside: Vec<&Current> = seen.iter().filter(|c| c.record.is_some()).collect();
    assert_eq!(inside.len(), 500);
    for current in inside {
        let at = current.record.unwrap();
        let own = &record_span_at[&at];
        assert_eq!(
            current.otel.span_id(),
            own.span_id(),
            "{at:?}: Context::current() in scope"
        );
        if let Some(after) = &current.after_yield {
            assert_eq!(after.span_id(), own.span_id(), "{at:?}: after a yield");
        }
        if mode == Mode::TracingLayer {
            assert_eq!(
                current.traced.span_id(),
                own.span_id(),
                "{at:?}: tracing in scope"
            );
        }
    }
    assert!(
        seen.iter().any(|c| c.after_yield.is_some()),
        "async scopes were walked"
    );
    let outside: Vec<&Current> = seen.iter().filter(|c| c.record.is_none()).collect();
    assert_eq!(
        outside.len(),
        500 + batches.len(),
        "before and after every scope"
    );
    for current in outside {
        assert!(
            batch_ids.contains(&current.otel.span_id()),
            "outside the scopes, Context::current() is the batch span"
        );
        assert!(!producer_traces.contains(&current.otel.trace_id()));
        assert!(!producer_traces.contains(&current.traced.trace_id()));
        if mode == Mode::TracingLayer {
            assert!(batch_ids.contains(&current.traced.span_id()));
        }
    }
}

#[derive(serde::Deserialize)]
struct Item {
    #[allow(dead_code)]
    n: u32,
}

static DECODED: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

#[kafka_handler(topics = ["mixed"], group = "mixed", batch(max_records = 500, max_wait = "100ms"),
                dlq = "mixed.dlq", retries = 0)]
fn mixed(batch: Batch<'_, Json<Item>>) {
    for item in &batch {
        item.process(|_| {
            let record = item.record();
            DECODED
                .lock()
                .unwrap()
                .push((record.topic().to_owned(), record.offset()));
        });
    }
}

/// Issue test 5: records with a valid context, without headers, with each
/// kind of malformed `traceparent`, and with an undecodable payload, in one
/// partition. Links only for valid contexts; records without one are new
/// roots; a bad payload fails alone and is dead-lettered in its own trace.
pub async fn batch_of_mixed_records(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "mixed", 1).await;

    let (_, template) = traced_headers(&topic);
    let valid = String::from_utf8(template[0].1.clone().unwrap()).unwrap();
    let malformed: Vec<Vec<u8>> = vec![
        format!("ff{}", &valid[2..]).into_bytes(),
        valid.to_uppercase().into_bytes(),
        valid
            .replacen(&valid[3..35], &"0".repeat(32), 1)
            .into_bytes(),
        b"garbage".to_vec(),
        vec![0xff, 0xfe, 0x00],
        vec![b'0'; 9 * 1024],
    ];
    // (kind, producer context when valid, record)
    let mut sent: Vec<(&str, Option<SpanContext>, i64)> = Vec::new();
    for i in 0..24 {
        let (kind, producer, headers, payload): (&str, _, TestHeaders, &[u8]) = match i % 4 {
            0 => {
                let (producer, headers) = traced_headers(&topic);
                ("valid", Some(producer), headers, b"{\"n\":1}")
            }
            1 => ("none", None, Vec::new(), b"{\"n\":1}"),
            2 => (
                "malformed",
                None,
                vec![(
                    "traceparent",
                    Some(malformed[(i / 4) % malformed.len()].clone()),
                )],
                b"{\"n\":1}",
            ),
            _ => {
                let (producer, headers) = traced_headers(&topic);
                ("bad-json", Some(producer), headers, b"{\"n\":")
            }
        };
        let mut record = TestRecord::new(&topic, payload).partition(0);
        record.headers = headers;
        let (_, offset) = send(&broker, record).await;
        sent.push((kind, producer, offset));
    }

    let handlers: Vec<Handler> = retarget(handlers![mixed], &topic, &group)
        .into_iter()
        .map(|h| h.with_dlq(&dlq))
        .collect();
    let (shutdown, handle) = start_consumer(&broker, handlers);
    wait_until(WAIT, "18 records decoded and 6 dead-lettered", || {
        DECODED
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == topic)
            .count()
            >= 18
            && telemetry.dead_letter_sends(&dlq).1.len() >= 6
    })
    .await;
    stop_consumer(shutdown, handle).await;

    let spans = telemetry.spans_named(&format!("process {topic}"));
    let batches = batch_spans(&spans);
    assert_eq!(batches.iter().map(message_count).sum::<i64>(), 24);
    let linked: HashSet<SpanId> = batches
        .iter()
        .flat_map(|b| b.links.links.iter().map(|l| l.span_context.span_id()))
        .collect();
    let valid_producers: HashSet<SpanId> = sent
        .iter()
        .filter_map(|(_, producer, _)| producer.as_ref().map(SpanContext::span_id))
        .collect();
    assert_eq!(
        linked, valid_producers,
        "links exactly for the valid contexts"
    );
    assert_eq!(
        batches.iter().map(|b| b.links.links.len()).sum::<usize>(),
        12,
        "12 valid contexts, one link each"
    );

    let per_record = record_spans(&spans);
    assert_eq!(per_record.len(), 24, "one span per record, decoded or not");
    let by_offset: HashMap<i64, &SpanData> = per_record
        .iter()
        .map(|s| (int_attribute(s, "messaging.kafka.offset"), s))
        .collect();
    let mut roots = HashSet::new();
    for (kind, producer, offset) in &sent {
        let span = by_offset[offset];
        assert_continues(span, producer.as_ref(), &format!("{kind} @{offset}"));
        if producer.is_none() {
            assert!(
                roots.insert(span.span_context.trace_id()),
                "a trace of its own"
            );
        }
        if *kind == "bad-json" {
            assert_eq!(error_type(span), Some(Value::from("deserialization")));
        } else {
            assert_eq!(error_type(span), None, "{kind} @{offset} succeeded");
        }
    }

    // Exactly the bad payloads were dead-lettered, each copy in its
    // producer's trace.
    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 6);
    let (_, acked) = telemetry.dead_letter_sends(&dlq);
    for copy in &copies {
        let offset: i64 = super::header(copy, "dlq.original.offset")
            .unwrap()
            .parse()
            .unwrap();
        let (kind, producer, _) = sent.iter().find(|(_, _, o)| *o == offset).unwrap();
        assert_eq!(*kind, "bad-json");
        let traceparent = super::header(copy, "traceparent").unwrap();
        assert!(
            traceparent.contains(&producer.as_ref().unwrap().trace_id().to_string()),
            "the copy of @{offset} continues its producer's trace"
        );
        let send_span = acked
            .iter()
            .find(|s| traceparent.contains(&s.span_context.span_id().to_string()))
            .expect("the copy carries its send span");
        assert_eq!(
            send_span.parent_span_id,
            by_offset[&offset].span_context.span_id()
        );
    }
}
