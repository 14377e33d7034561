//! The end-to-end scenarios of the tracing contract, run by each telemetry
//! mode's test binary.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt as _;
use kafka_handler::testing::{unique_topic, EmbeddedBroker, TestRecord};
use kafka_handler::{handlers, kafka_handler, HandlerError, Key, Processor, Record, Shutdown};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceId};
use opentelemetry::Context;
use rdkafka::message::{Header, OwnedHeaders};

use super::{
    assert_child_of, assert_continues, assert_process_attributes, attribute, current_span_contexts,
    new_topic, new_topic_with_dlq, retarget, send, start_consumer, stop_consumer, telemetry,
    traced, traced_headers, wait_until, Mode,
};

const WAIT: Duration = Duration::from_secs(30);

/// What a handler saw while it ran.
#[derive(Clone, Debug)]
pub struct Seen {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<String>,
    /// `Context::current()`'s span when the handler started.
    otel: SpanContext,
    /// `tracing::Span::current()`'s OpenTelemetry span.
    traced: SpanContext,
    /// `Context::current()`'s span after the handler yielded (async only).
    after_yield: Option<SpanContext>,
}

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

fn seen_on(topic: &str) -> Vec<Seen> {
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|s| s.topic == topic)
        .cloned()
        .collect()
}

fn remember(
    record: &Record<'_>,
    key: Key<'_>,
    after_yield: Option<SpanContext>,
    at_start: (SpanContext, SpanContext),
) {
    SEEN.lock().unwrap().push(Seen {
        topic: record.topic().to_owned(),
        partition: record.partition(),
        offset: record.offset(),
        key: key.as_str().map(str::to_owned),
        otel: at_start.0,
        traced: at_start.1,
        after_yield,
    });
}

#[kafka_handler(topics = ["observe"], group = "observe")]
fn observe_sync(record: &Record<'_>, key: Key<'_>) {
    remember(record, key, None, current_span_contexts());
}

#[kafka_handler(topics = ["observe"], group = "observe")]
async fn observe_async(record: &Record<'_>, key: Key<'_>) {
    let at_start = current_span_contexts();
    // Yield a few times: on a multi-thread runtime the rest may run on
    // another worker thread.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    let after = Context::current().span().span_context().clone();
    remember(record, key, Some(after), at_start);
}

#[kafka_handler(topics = ["explode"], group = "explode")]
fn explode(record: &Record<'_>) {
    if record.offset() % 2 == 1 {
        panic!("boom at offset {}", record.offset());
    }
}

/// Fails every attempt, after yielding, having noted what was current.
#[kafka_handler(topics = ["refuse"], group = "refuse",
                retries = 1, backoff = "10ms", dlq = "refuse.dlq")]
async fn refuse(record: &Record<'_>, key: Key<'_>) -> Result<(), HandlerError> {
    let at_start = current_span_contexts();
    tokio::task::yield_now().await;
    let after = Context::current().span().span_context().clone();
    remember(record, key, Some(after), at_start);
    Err(HandlerError::transient("refused"))
}

#[kafka_handler(topics = ["stall"], group = "stall")]
async fn stall() {
    std::future::pending::<()>().await;
}

/// 300 records from 300 producer traces over 3 partitions, interleaved: each
/// process span continues its own producer's trace, with the contract's
/// attributes, and is current inside the handler.
pub async fn continuity(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "continuity", 3).await;

    let keys: Vec<String> = (0..300).map(|i| format!("order-{i}")).collect();
    let mut producers: HashMap<String, SpanContext> = HashMap::new();
    let mut records = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (producer, headers) = traced_headers(&topic);
        producers.insert(key.clone(), producer);
        let mut record = TestRecord::new(&topic, b"{}")
            .key(key.as_bytes())
            .partition(i as i32 % 3);
        record.headers = headers;
        records.push(record);
    }
    futures_util::future::join_all(records.into_iter().map(|r| send(&broker, r))).await;

    let (shutdown, handle) =
        start_consumer(&broker, retarget(handlers![observe_async], &topic, &group));
    wait_until(WAIT, "300 records handled", || seen_on(&topic).len() >= 300).await;
    stop_consumer(shutdown, handle).await;

    let observed = seen_on(&topic);
    assert_eq!(observed.len(), 300, "300 handler calls, one per record");
    let seen: HashMap<String, Seen> = observed
        .into_iter()
        .map(|s| (s.key.clone().unwrap(), s))
        .collect();
    assert_eq!(seen.len(), 300, "every record handled, none twice");
    let spans = telemetry.spans_named(&format!("process {topic}"));
    assert_eq!(spans.len(), 300, "one process span per record");
    let mut partitions = HashSet::new();
    for span in &spans {
        let key = attribute(span, "messaging.kafka.message.key")
            .unwrap()
            .to_string();
        let producer = &producers[&key];
        let record = &seen[&key];
        assert_eq!(
            span.span_context.trace_id(),
            producer.trace_id(),
            "{key}: producer's trace"
        );
        assert_eq!(
            span.parent_span_id,
            producer.span_id(),
            "{key}: producer span is the parent"
        );
        assert_process_attributes(
            span,
            &topic,
            record.partition,
            record.offset,
            &group,
            Some(&key),
        );
        assert_eq!(
            record.otel.span_id(),
            span.span_context.span_id(),
            "{key}: Context::current() is the process span"
        );
        assert_eq!(
            record.after_yield.as_ref().unwrap().span_id(),
            span.span_context.span_id(),
            "{key}: still current after yielding"
        );
        if mode == Mode::TracingLayer {
            assert_eq!(
                record.traced.span_id(),
                span.span_context.span_id(),
                "{key}: tracing::Span::current() is the process span"
            );
        }
        partitions.insert(record.partition);
    }
    assert_eq!(
        partitions.len(),
        3,
        "records came from all three partitions"
    );
}

/// Records with and without a `traceparent`, alternating: a record without
/// one is a new root, never a child of the record before it.
pub async fn no_leaks_between_records(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    for (label, handler) in [
        ("sync", handlers![observe_sync]),
        ("async", handlers![observe_async]),
    ] {
        let (topic, group) = new_topic(&broker, &format!("alternate-{label}"), 1).await;
        let mut producers = HashMap::new();
        for i in 0..40 {
            let key = format!("{i}");
            let mut record = TestRecord::new(&topic, b"x").key(key.as_bytes());
            if i % 2 == 0 {
                let (producer, headers) = traced_headers(&topic);
                producers.insert(key.clone(), producer);
                record.headers = headers;
            }
            send(&broker, record).await;
        }
        let (shutdown, handle) = start_consumer(&broker, retarget(handler, &topic, &group));
        wait_until(WAIT, "40 records handled", || seen_on(&topic).len() >= 40).await;
        stop_consumer(shutdown, handle).await;

        let mut spans = telemetry.spans_named(&format!("process {topic}"));
        assert_eq!(spans.len(), 40, "{label}: one span per record");
        spans.sort_by_key(|s| {
            attribute(s, "messaging.kafka.offset").map(|v| v.to_string().parse::<i64>().unwrap())
        });
        let mut previous_trace = TraceId::INVALID;
        for span in &spans {
            let key = attribute(span, "messaging.kafka.message.key")
                .unwrap()
                .to_string();
            let producer = producers.get(&key);
            assert_continues(span, producer, &format!("{label} {key}"));
            if producer.is_none() {
                assert_ne!(
                    span.span_context.trace_id(),
                    previous_trace,
                    "{label} {key}: not the previous record's trace"
                );
            }
            previous_trace = span.span_context.trace_id();
        }
    }
}

fn assert_nothing_current(after: &str) {
    assert!(
        !Context::current().has_active_span(),
        "a context is still attached after {after}"
    );
    assert!(
        tracing::Span::current().is_none(),
        "a tracing span is still entered after {after}"
    );
}

/// Driving handlers directly: after every record, whether it succeeded,
/// yielded across awaits, panicked or was cancelled, nothing stays current.
pub async fn nothing_current_after_a_record(mode: Mode) {
    let telemetry = telemetry(mode);
    let topic = unique_topic("direct");
    let (producer, headers) = traced_headers(&topic);
    let traced = headers
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: value.as_deref(),
            })
        });
    let processors: Vec<(&str, Processor)> = [
        ("a sync handler", handlers![observe_sync]),
        ("an async handler that yields", handlers![observe_async]),
        ("a panicking handler", handlers![explode]),
    ]
    .into_iter()
    .map(|(label, handlers)| {
        (
            label,
            Processor::new(retarget(handlers, &topic, "direct").remove(0)),
        )
    })
    .collect();

    assert_nothing_current("set-up");
    for (label, processor) in &processors {
        for offset in 0..6 {
            let headers = (offset % 3 != 2).then_some(&traced);
            let key = format!("{label}-{offset}");
            let record = Record::new(&topic, 0, offset, Some(key.as_bytes()), Some(b"x"), headers);
            let outcome = processor.process(&record).await;
            if label.contains("panicking") && offset % 2 == 1 {
                let error = outcome.expect_err("a panic is a failure");
                assert_eq!(error.kind(), kafka_handler::ErrorKind::Panic);
                assert!(error.message().contains("boom"), "{error}");
            } else {
                outcome.expect("the handler succeeds");
            }
            assert_nothing_current(&format!("{label} at offset {offset}"));
        }
    }

    let spans = telemetry.spans_named(&format!("process {topic}"));
    assert_eq!(spans.len(), 18);
    for span in &spans {
        let offset: i64 = attribute(span, "messaging.kafka.offset")
            .unwrap()
            .to_string()
            .parse()
            .unwrap();
        if offset % 3 == 2 {
            assert_eq!(
                span.parent_span_id,
                SpanId::INVALID,
                "a record without headers is a root"
            );
            assert_ne!(span.span_context.trace_id(), producer.trace_id());
        } else {
            assert_eq!(span.parent_span_id, producer.span_id());
        }
    }
    let panics: Vec<_> = spans
        .iter()
        .filter(|s| attribute(s, "error.type").map(|v| v.to_string()) == Some("panic".into()))
        .collect();
    assert_eq!(panics.len(), 3, "every panic is marked error.type = panic");
    for span in panics {
        assert!(matches!(
            span.status,
            opentelemetry::trace::Status::Error { .. }
        ));
        let exception = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .expect("an exception event");
        assert!(exception
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "exception.message"
                && kv.value.to_string().contains("boom")));
    }

    // Cancellation: the handler's future is dropped mid-await.
    let stall = Processor::new(retarget(handlers![stall], &topic, "direct").remove(0));
    let record = Record::new(&topic, 0, 100, None, Some(b"x"), Some(&traced));
    {
        let mut future = std::pin::pin!(stall.process(&record));
        assert!(
            future.as_mut().now_or_never().is_none(),
            "the stalled handler is pending"
        );
    }
    assert_nothing_current("a cancelled handler");
    let cancelled: Vec<_> = telemetry
        .spans_named(&format!("process {topic}"))
        .into_iter()
        .filter(|s| attribute(s, "messaging.kafka.offset") == Some(100i64.into()))
        .collect();
    assert_eq!(cancelled.len(), 1, "the cancelled attempt's span is ended");
    assert_eq!(
        attribute(&cancelled[0], "error.type"),
        Some("cancelled".into())
    );
    assert_eq!(cancelled[0].parent_span_id, producer.span_id());
}

/// Malformed `traceparent` values start a new root, without a panic; flags
/// `03` (sampled plus the W3C random bit) continue the trace, and so do
/// flags `09` (sampled plus a bit W3C has not defined, which is dropped).
pub async fn malformed_headers(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "malformed", 1).await;

    let (producer, headers) = traced_headers(&topic);
    let valid = String::from_utf8(headers[0].1.clone().unwrap()).unwrap();
    let trace_hex = &valid[3..35];
    let span_hex = &valid[36..52];
    let malformed: Vec<(&str, Option<Vec<u8>>)> = vec![
        (
            "version-ff",
            Some(format!("ff{}", &valid[2..]).into_bytes()),
        ),
        ("upper-case", Some(valid.to_uppercase().into_bytes())),
        (
            "short-trace-id",
            Some(valid.replacen(trace_hex, &trace_hex[1..], 1).into_bytes()),
        ),
        (
            "long-span-id",
            Some(
                valid
                    .replacen(span_hex, &format!("{span_hex}0"), 1)
                    .into_bytes(),
            ),
        ),
        (
            "zero-trace-id",
            Some(valid.replacen(trace_hex, &"0".repeat(32), 1).into_bytes()),
        ),
        (
            "zero-span-id",
            Some(valid.replacen(span_hex, &"0".repeat(16), 1).into_bytes()),
        ),
        (
            "trailing-data-v00",
            Some(format!("{valid}-00").into_bytes()),
        ),
        ("one-digit-flags", Some(valid.as_bytes()[..54].to_vec())),
        (
            "plus-sign",
            Some(
                valid
                    .replacen(&format!("-{}", &span_hex[..1]), "-+", 1)
                    .into_bytes(),
            ),
        ),
        (
            "non-hex",
            Some(valid.replacen(&trace_hex[..1], "g", 1).into_bytes()),
        ),
        ("missing-fields", Some(valid.as_bytes()[..35].to_vec())),
        ("empty", Some(Vec::new())),
        ("garbage", Some(b"hello, world".to_vec())),
        ("not-utf8", Some(vec![0xff, 0xfe, 0x00, 0x9f])),
        (
            "oversized",
            Some(format!("cc{}-{}", &valid[2..], "a".repeat(9000)).into_bytes()),
        ),
        ("null-value", None),
    ];
    for (name, value) in &malformed {
        let mut record = TestRecord::new(&topic, b"x").key(name.as_bytes());
        record.headers = vec![("traceparent", value.clone())];
        send(&broker, record).await;
    }
    let continued = ["flags-03", "flags-09"];
    for key in continued {
        let flags = &key["flags-".len()..];
        send(
            &broker,
            TestRecord::new(&topic, b"x")
                .key(key.as_bytes())
                .header("traceparent", format!("{}{flags}", &valid[..53])),
        )
        .await;
    }

    let (shutdown, handle) =
        start_consumer(&broker, retarget(handlers![observe_sync], &topic, &group));
    let expected = malformed.len() + continued.len();
    wait_until(WAIT, "every record handled", || {
        seen_on(&topic).len() >= expected
    })
    .await;
    stop_consumer(shutdown, handle).await;

    let spans = telemetry.spans_named(&format!("process {topic}"));
    assert_eq!(spans.len(), expected);
    for span in &spans {
        let key = attribute(span, "messaging.kafka.message.key")
            .unwrap()
            .to_string();
        if continued.contains(&key.as_str()) {
            assert_eq!(
                span.span_context.trace_id(),
                producer.trace_id(),
                "{key}: continues the trace"
            );
            assert_eq!(span.parent_span_id, producer.span_id(), "{key}");
            assert!(span.span_context.is_sampled(), "{key}: sampled");
        } else {
            assert_eq!(
                span.parent_span_id,
                SpanId::INVALID,
                "{key}: a malformed traceparent gives a root"
            );
            assert_ne!(
                span.span_context.trace_id(),
                producer.trace_id(),
                "{key}: not the producer's trace"
            );
        }
    }
}

static STOP_AT: Mutex<Option<(String, i64, Shutdown)>> = Mutex::new(None);

#[kafka_handler(topics = ["commits"], group = "commits")]
fn count_and_maybe_stop(record: &Record<'_>, key: Key<'_>) {
    remember(record, key, None, current_span_contexts());
    if let Some((topic, offset, shutdown)) = &*STOP_AT.lock().unwrap() {
        if topic == record.topic() && *offset == record.offset() {
            shutdown.trigger();
        }
    }
}

/// Handle part of a topic, stop gracefully, restart in the same group: the
/// new consumer resumes right after the last handled record.
pub async fn resumes_after_the_last_handled_record(mode: Mode) {
    telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "commits", 1).await;
    for i in 0..20 {
        send(
            &broker,
            TestRecord::new(&topic, b"x").key(format!("{i}").as_bytes()),
        )
        .await;
    }

    // The first consumer stops itself while handling offset 7.
    let (shutdown, handle) = start_consumer(
        &broker,
        retarget(handlers![count_and_maybe_stop], &topic, &group),
    );
    *STOP_AT.lock().unwrap() = Some((topic.clone(), 7, shutdown.clone()));
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("the first consumer stops")
        .unwrap()
        .unwrap();
    let first: Vec<i64> = seen_on(&topic).iter().map(|s| s.offset).collect();
    assert_eq!(
        first,
        (0..=7).collect::<Vec<_>>(),
        "the first consumer handles offsets 0 to 7, then stops"
    );

    let (shutdown, handle) = start_consumer(
        &broker,
        retarget(handlers![count_and_maybe_stop], &topic, &group),
    );
    wait_until(WAIT, "all 20 records handled", || {
        seen_on(&topic).len() >= 20
    })
    .await;
    stop_consumer(shutdown, handle).await;
    let all: Vec<i64> = seen_on(&topic).iter().map(|s| s.offset).collect();
    assert_eq!(
        all,
        (0..20).collect::<Vec<_>>(),
        "nothing lost, nothing handled twice"
    );
}

/// A record whose handler fails every attempt: each attempt is a span of the
/// producer's trace, current inside the handler (also after it yields), and
/// the dead-letter copy's consumer continues the same trace under the
/// `send {dlq}` span.
pub async fn retried_then_dead_lettered(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "refuse", 1).await;
    let (producer, record) = traced(TestRecord::new(&topic, b"x").key(b"order-9"));
    send(&broker, record).await;

    let refusing = retarget(handlers![refuse], &topic, &group)
        .remove(0)
        .with_dlq(&dlq);
    let dlq_group = unique_topic("refused");
    let observing = retarget(handlers![observe_sync], &dlq, &dlq_group).remove(0);
    let (shutdown, running) = start_consumer(&broker, vec![refusing, observing]);
    wait_until(WAIT, "the dead-letter copy observed", || {
        !seen_on(&dlq).is_empty()
    })
    .await;
    stop_consumer(shutdown, running).await;

    let attempts = telemetry.process_spans(&topic);
    assert_eq!(attempts.len(), 2, "retries = 1: two attempts");
    let seen = seen_on(&topic);
    assert_eq!(seen.len(), 2);
    for (i, (span, seen)) in attempts.iter().zip(&seen).enumerate() {
        assert_process_attributes(span, &topic, 0, 0, &group, Some("order-9"));
        assert_child_of(span, &producer, "each attempt");
        assert_eq!(
            attribute(span, "kafka_handler.attempt"),
            Some((i as i64 + 1).into())
        );
        assert_eq!(attribute(span, "error.type"), Some("handler".into()));
        let own = &span.span_context;
        assert_eq!(&seen.otel, own, "Context::current() is attempt {}", i + 1);
        if mode == Mode::TracingLayer {
            assert_eq!(
                &seen.traced,
                own,
                "tracing::Span::current() is attempt {}",
                i + 1
            );
        }
        assert_eq!(
            seen.after_yield.as_ref(),
            Some(own),
            "still attempt {} after a yield",
            i + 1
        );
    }
    let sends = telemetry.spans_named(&format!("send {dlq}"));
    assert_eq!(sends.len(), 1);
    assert_child_of(&sends[0], &attempts[1].span_context, "the send");
    let copies = telemetry.process_spans(&dlq);
    assert_eq!(copies.len(), 1);
    assert_child_of(
        &copies[0],
        &sends[0].span_context,
        "the copy's process span",
    );
    assert_eq!(copies[0].span_context.trace_id(), producer.trace_id());
    assert_eq!(seen_on(&dlq)[0].otel, copies[0].span_context);
}
