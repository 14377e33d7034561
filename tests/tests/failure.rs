//! The failure path: retries under the producer's trace, dead-letter copies
//! that keep it, commits only after the copy is acknowledged.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    assert_unique_headers, attribute, committed, header, header_values, new_topic, read_all, send,
    start_consumer, start_consumer_with, stop_consumer, telemetry, traced_headers, traceparent_of,
    wait_for, wait_until, Mode, Telemetry,
};
use kafka_handler::testing::{unique_topic, EmbeddedBroker, TestRecord};
use kafka_handler::{Backoff, Handler, HandlerError, Record};
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaRespErr;

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

const WAIT: Duration = Duration::from_secs(30);

/// The `dlq.*` headers every copy of a record with a timestamp carries.
const DLQ_HEADERS: [&str; 9] = [
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.original.timestamp",
    "dlq.group",
    "dlq.handler",
    "dlq.attempts",
    "dlq.error.type",
    "dlq.error.message",
];

/// (partition, offset) of every handler call, in call order.
type Calls = Arc<Mutex<Vec<(i32, i64)>>>;

/// The offsets of `partition` among `calls`, in call order.
fn offsets(calls: &Calls, partition: i32) -> Vec<i64> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| *p == partition)
        .map(|(_, offset)| *offset)
        .collect()
}

fn is_error(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
}

/// The `send {dlq}` spans that ended with an error, and those that did not.
fn sends(telemetry: &Telemetry, dlq: &str) -> (Vec<SpanData>, Vec<SpanData>) {
    telemetry
        .spans_named(&format!("send {dlq}"))
        .into_iter()
        .partition(is_error)
}

fn dead_lettered(telemetry: &Telemetry, dlq: &str) -> u64 {
    telemetry.counter(
        "kafka_handler.dead_letter.messages",
        &[("kafka_handler.dlq", dlq)],
    )
}

fn send_failures(telemetry: &Telemetry, dlq: &str, error_type: &str) -> u64 {
    telemetry.counter(
        "kafka_handler.dead_letter.send_failures",
        &[
            ("messaging.destination.name", dlq),
            ("error.type", error_type),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_of_a_dead_letter_copy_keeps_one_trace_and_one_set_of_headers() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "chain", 1).await;
    let (dlq1, dlq1_group) = new_topic(&broker, "chain-dlq1", 1).await;
    let (dlq2, _) = new_topic(&broker, "chain-dlq2", 1).await;
    let (producer, headers) = traced_headers(&topic);
    let mut record = TestRecord::new(&topic, b"{\"id\":9}")
        .key(b"order-9")
        .header("tenant", "acme");
    record.headers.extend(headers);
    send(&broker, record).await;

    let first = Handler::sync("tests::chain_first", [&topic], &group, |_: &Record<'_>| {
        Err(HandlerError::transient("database unavailable"))
    })
    .with_retries(1)
    .with_backoff(FAST)
    .with_dlq(&dlq1);
    let second = Handler::sync(
        "tests::chain_second",
        [&dlq1],
        &dlq1_group,
        |_: &Record<'_>| Err(HandlerError::permanent("order 9 breaks a rule")),
    )
    .with_backoff(FAST)
    .with_dlq(&dlq2);
    let (shutdown, running) = start_consumer(&broker, vec![first, second]);
    wait_until(WAIT, "the second dead-letter send", || {
        !sends(telemetry, &dlq2).1.is_empty()
    })
    .await;
    stop_consumer(shutdown, running).await;

    let first_copies = read_all(&broker, &dlq1).await;
    assert_eq!(first_copies.len(), 1, "one copy in the first DLQ");
    let copies = read_all(&broker, &dlq2).await;
    assert_eq!(copies.len(), 1, "one copy in the second DLQ");
    let copy = &copies[0];
    assert_unique_headers(copy);
    for name in DLQ_HEADERS {
        assert_eq!(
            header_values(copy, name).len(),
            1,
            "{name} replaced, not appended"
        );
    }
    assert_eq!(header_values(copy, "traceparent").len(), 1);
    assert_eq!(copy.key(), Some(&b"order-9"[..]));
    assert_eq!(copy.payload(), Some(&b"{\"id\":9}"[..]));
    assert_eq!(header(copy, "tenant").as_deref(), Some("acme"));
    assert_eq!(header(copy, "dlq.original.topic"), Some(dlq1.clone()));
    assert_eq!(header(copy, "dlq.original.partition").as_deref(), Some("0"));
    assert_eq!(header(copy, "dlq.original.offset").as_deref(), Some("0"));
    assert_eq!(header(copy, "dlq.group"), Some(dlq1_group.clone()));
    assert_eq!(
        header(copy, "dlq.handler").as_deref(),
        Some("tests::chain_second")
    );
    assert_eq!(header(copy, "dlq.attempts").as_deref(), Some("1"));
    assert_eq!(header(copy, "dlq.error.type").as_deref(), Some("handler"));
    assert_eq!(
        header(copy, "dlq.error.message").as_deref(),
        Some("order 9 breaks a rule")
    );

    // producer → 2 attempts → send {dlq1} → process {dlq1} → send {dlq2}.
    let mut attempts = telemetry.spans_named(&format!("process {topic}"));
    attempts.sort_by_key(|span| span.start_time);
    assert_eq!(attempts.len(), 2, "retries 1: two attempts");
    let (failed, first_sends) = sends(telemetry, &dlq1);
    assert!(failed.is_empty());
    assert_eq!(first_sends.len(), 1);
    assert_eq!(
        first_sends[0].parent_span_id,
        attempts[1].span_context.span_id()
    );
    let second_attempts = telemetry.spans_named(&format!("process {dlq1}"));
    assert_eq!(second_attempts.len(), 1, "a permanent failure: one attempt");
    let second_attempt = &second_attempts[0];
    assert_eq!(
        second_attempt.span_context.trace_id(),
        producer.trace_id(),
        "the DLQ handler's span is in the original trace"
    );
    assert_eq!(
        second_attempt.parent_span_id,
        first_sends[0].span_context.span_id()
    );
    assert_eq!(
        attribute(second_attempt, "error.type"),
        Some("handler".into())
    );
    let (failed, second_sends) = sends(telemetry, &dlq2);
    assert!(failed.is_empty());
    assert_eq!(second_sends.len(), 1);
    let second_send = &second_sends[0];
    assert_eq!(second_send.span_kind, SpanKind::Producer);
    assert_eq!(second_send.span_context.trace_id(), producer.trace_id());
    assert_eq!(
        second_send.parent_span_id,
        second_attempt.span_context.span_id()
    );
    assert_eq!(
        header(copy, "traceparent"),
        Some(traceparent_of(second_send)),
        "the copy carries the second send span's context"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_dead_letter_send_is_retried_and_holds_back_its_partition() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group) = new_topic(&broker, "rejected", 1).await;
    let (dlq, _) = new_topic(&broker, "rejected-dlq", 1).await;
    let (producer, headers) = traced_headers(&topic);
    let mut record = TestRecord::new(&topic, b"doomed").partition(0);
    record.headers = headers;
    assert_eq!(send(&broker, record).await, (0, 0));
    for _ in 1..=4 {
        send(&broker, TestRecord::new(&topic, b"fine").partition(0)).await;
    }
    // After the test's own records: the next three Produce requests are the
    // dead-letter producer's.
    broker
        .fail_produce_requests(&[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3])
        .unwrap();

    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let handler = Handler::sync(
        "tests::rejected",
        [&topic],
        &group,
        move |record: &Record<'_>| {
            recorded
                .lock()
                .unwrap()
                .push((record.partition(), record.offset()));
            if record.offset() == 0 {
                Err(HandlerError::transient("database unavailable"))
            } else {
                Ok(())
            }
        },
    )
    .with_retries(0)
    // Slow enough that commits (every 200 ms) would show a premature one.
    .with_backoff(Backoff::constant(Duration::from_millis(600)))
    .with_dlq(&dlq);
    let (shutdown, running) = start_consumer(&broker, vec![handler]);

    let mut checked_while_failing = 0;
    for failures in 1..=3 {
        wait_until(
            WAIT,
            &format!("{failures} failed dead-letter sends"),
            || sends(telemetry, &dlq).0.len() >= failures,
        )
        .await;
        let offset = committed(&broker, &group, &topic, 1).await[0];
        let handled = offsets(&calls, 0);
        if !sends(telemetry, &dlq).1.is_empty() {
            // The errors ran out meanwhile: the record may be committed now.
            continue;
        }
        checked_while_failing += 1;
        assert!(
            offset.is_none_or(|offset| offset <= 0),
            "committed {offset:?} past the record whose copy was not acknowledged"
        );
        assert_eq!(
            handled,
            [0],
            "nothing after the record is handled while its copy is not acknowledged"
        );
    }
    assert!(checked_while_failing >= 2);

    wait_until(WAIT, "the later records handled", || {
        offsets(&calls, 0) == [0, 1, 2, 3, 4]
    })
    .await;
    wait_until(WAIT, "the dead-letter metric", || {
        dead_lettered(telemetry, &dlq) == 1
    })
    .await;
    stop_consumer(shutdown, running).await;

    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(5)]);
    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 1, "exactly one copy");
    assert_eq!(
        header(&copies[0], "dlq.original.offset").as_deref(),
        Some("0")
    );
    let (failed, acked) = sends(telemetry, &dlq);
    // librdkafka fails the next copy locally while it remembers the
    // topic's authorization error, so there may be more failures than
    // rejected requests.
    assert!(failed.len() >= 3, "one failed send per rejected request");
    assert_eq!(acked.len(), 1);
    let attempt = telemetry.spans_named(&format!("process {topic}"));
    let attempt = attempt
        .iter()
        .find(|span| attribute(span, "messaging.kafka.offset") == Some(Value::I64(0)))
        .unwrap();
    for send_span in failed.iter().chain(&acked) {
        assert_eq!(send_span.span_context.trace_id(), producer.trace_id());
        assert_eq!(send_span.parent_span_id, attempt.span_context.span_id());
    }
    for send_span in &failed {
        assert_eq!(
            attribute(send_span, "error.type"),
            Some("TopicAuthorizationFailed".into())
        );
        assert!(send_span.events.iter().any(|e| e.name == "exception"));
    }
    assert_eq!(
        header(&copies[0], "traceparent"),
        Some(traceparent_of(&acked[0])),
        "the copy carries the acknowledged send's context"
    );
    assert_eq!(
        send_failures(telemetry, &dlq, "TopicAuthorizationFailed"),
        failed.len() as u64,
        "every failed send counted"
    );
    assert_eq!(dead_lettered(telemetry, &dlq), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_send_during_a_broker_outage_is_retried_until_acknowledged() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = Arc::new(EmbeddedBroker::mock().unwrap());
    let (topic, group) = new_topic(&broker, "outage-dlq", 1).await;
    let (dlq, _) = new_topic(&broker, "outage-dlq-dlq", 1).await;
    send(&broker, TestRecord::new(&topic, b"doomed").partition(0)).await;
    send(&broker, TestRecord::new(&topic, b"fine").partition(0)).await;

    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let down = Arc::new(AtomicBool::new(false));
    let take_down = (broker.clone(), down.clone());
    let handler = Handler::sync(
        "tests::outage",
        [&topic],
        &group,
        move |record: &Record<'_>| {
            recorded
                .lock()
                .unwrap()
                .push((record.partition(), record.offset()));
            if record.offset() != 0 {
                return Ok(());
            }
            // The copy is sent right after this returns: into the outage.
            if !take_down.1.swap(true, Ordering::SeqCst) {
                take_down.0.broker_down(1).unwrap();
            }
            Err(HandlerError::permanent("order breaks a rule"))
        },
    )
    .with_backoff(FAST)
    .with_dlq(&dlq);
    let (shutdown, running) = start_consumer_with(&broker, vec![handler], |builder| {
        builder
            .dead_letter_set("message.timeout.ms", "1500")
            // The member outlives the outage: this test is about the copy,
            // not about a rebalance (one would abort the send and the new
            // owner would dead-letter the record again).
            .set("session.timeout.ms", "30000")
    });

    wait_until(WAIT, "a failed dead-letter send", || {
        !sends(telemetry, &dlq).0.is_empty()
    })
    .await;
    assert!(down.load(Ordering::SeqCst));
    assert!(
        sends(telemetry, &dlq).1.is_empty(),
        "no send acknowledged while the broker is down"
    );
    broker.broker_up(1).unwrap();

    wait_until(Duration::from_secs(60), "an acknowledged send", || {
        !sends(telemetry, &dlq).1.is_empty()
    })
    .await;
    wait_for(
        Duration::from_secs(60),
        "the record and the next committed",
        || async { committed(&broker, &group, &topic, 1).await == [Some(2)] },
    )
    .await;
    assert!(
        !running.is_finished(),
        "the consumer kept running through the outage"
    );
    stop_consumer(shutdown, running).await;

    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 1, "exactly one copy");
    assert_eq!(header(&copies[0], "dlq.attempts").as_deref(), Some("1"));
    let (failed, acked) = sends(telemetry, &dlq);
    assert_eq!(acked.len(), 1);
    assert!(
        failed
            .iter()
            .all(|span| attribute(span, "error.type") == Some("MessageTimedOut".into())),
        "failed sends time out: {:?}",
        failed
            .iter()
            .map(|span| attribute(span, "error.type"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        send_failures(telemetry, &dlq, "MessageTimedOut"),
        failed.len() as u64
    );
    assert_eq!(
        offsets(&calls, 0).last(),
        Some(&1),
        "the next record handled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_topic_a_failing_record_holds_only_its_partition() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "held", 3).await;
    send(&broker, TestRecord::new(&topic, b"doomed").partition(0)).await;
    for i in 0..50 {
        send(
            &broker,
            TestRecord::new(&topic, b"fine").partition(1 + i % 2),
        )
        .await;
    }
    for _ in 1..=3 {
        send(&broker, TestRecord::new(&topic, b"behind").partition(0)).await;
    }

    let handler = |calls: &Calls, fail: bool| {
        let recorded = calls.clone();
        Handler::sync(
            "tests::held",
            [&topic],
            &group,
            move |record: &Record<'_>| {
                recorded
                    .lock()
                    .unwrap()
                    .push((record.partition(), record.offset()));
                if fail && (record.partition(), record.offset()) == (0, 0) {
                    Err(HandlerError::transient("database unavailable"))
                } else {
                    Ok(())
                }
            },
        )
        .with_retries(1)
        .with_backoff(FAST)
    };
    let calls: Calls = Arc::default();
    let (shutdown, running) = start_consumer(&broker, vec![handler(&calls, true)]);
    let all: Vec<i64> = (0..25).collect();
    wait_until(
        WAIT,
        "partitions 1 and 2 handled, and the held record attempted again",
        || {
            let mut one = offsets(&calls, 1);
            let mut two = offsets(&calls, 2);
            one.sort_unstable();
            two.sort_unstable();
            one == all && two == all && offsets(&calls, 0).len() >= 5
        },
    )
    .await;
    let held = offsets(&calls, 0);
    assert!(
        held.iter().all(|offset| *offset == 0),
        "nothing behind the held record is handled: {held:?}"
    );
    stop_consumer(shutdown, running).await;
    assert!(offsets(&calls, 0).iter().all(|offset| *offset == 0));
    let offsets_now = committed(&broker, &group, &topic, 3).await;
    assert!(
        offsets_now[0].is_none_or(|offset| offset <= 0),
        "the held record is not committed: {offsets_now:?}"
    );
    assert_eq!(offsets_now[1..], [Some(25), Some(25)]);
    let mut attempts = telemetry.spans_named(&format!("process {topic}"));
    attempts
        .retain(|span| attribute(span, "messaging.destination.partition.id") == Some("0".into()));
    attempts.sort_by_key(|span| span.start_time);
    for (i, span) in attempts.iter().enumerate() {
        assert_eq!(
            attribute(span, "kafka_handler.attempt"),
            Some(Value::I64(i as i64 + 1))
        );
        assert!(is_error(span));
    }

    // Restarted with a handler that passes: the held record and those
    // behind it are handled, in order; nothing was lost.
    let after: Calls = Arc::default();
    let (shutdown, running) = start_consumer(&broker, vec![handler(&after, false)]);
    wait_until(WAIT, "partition 0 handled after the restart", || {
        offsets(&after, 0) == [0, 1, 2, 3]
    })
    .await;
    stop_consumer(shutdown, running).await;
    assert_eq!(offsets(&after, 0), [0, 1, 2, 3]);
    assert!(
        offsets(&after, 1).is_empty() && offsets(&after, 2).is_empty(),
        "the committed partitions are not handled again"
    );
    assert_eq!(
        committed(&broker, &group, &topic, 3).await,
        [Some(4), Some(25), Some(25)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_is_retried_then_dead_lettered() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "slow", 1).await;
    let (dlq, _) = new_topic(&broker, "slow-dlq", 1).await;
    let (producer, headers) = traced_headers(&topic);
    let mut record = TestRecord::new(&topic, b"slow");
    record.headers = headers;
    send(&broker, record).await;

    let finished = Arc::new(AtomicU32::new(0));
    let finished_by_handler = finished.clone();
    let handler = Handler::asynchronous("tests::slow", [&topic], &group, move |_| {
        let finished = finished_by_handler.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    })
    .with_timeout(Duration::from_millis(50))
    .with_retries(1)
    .with_backoff(FAST)
    .with_dlq(&dlq);
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    wait_until(WAIT, "the dead-letter send", || {
        !sends(telemetry, &dlq).1.is_empty()
    })
    .await;
    stop_consumer(shutdown, running).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "every attempt cancelled"
    );

    let mut attempts = telemetry.spans_named(&format!("process {topic}"));
    attempts.sort_by_key(|span| span.start_time);
    assert_eq!(attempts.len(), 2, "a timeout is transient: retried");
    for (i, span) in attempts.iter().enumerate() {
        assert!(is_error(span));
        assert_eq!(attribute(span, "error.type"), Some("timeout".into()));
        assert_eq!(
            attribute(span, "kafka_handler.attempt"),
            Some(Value::I64(i as i64 + 1))
        );
        assert_eq!(span.parent_span_id, producer.span_id());
    }
    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(
        header(&copies[0], "dlq.error.type").as_deref(),
        Some("timeout")
    );
    assert_eq!(header(&copies[0], "dlq.attempts").as_deref(), Some("2"));
    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_dead_lettered_and_the_partition_moves_on() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "panics", 1).await;
    let (dlq, _) = new_topic(&broker, "panics-dlq", 1).await;
    for _ in 0..4 {
        send(&broker, TestRecord::new(&topic, b"x").partition(0)).await;
    }

    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let handler = Handler::sync(
        "tests::panics",
        [&topic],
        &group,
        move |record: &Record<'_>| {
            recorded
                .lock()
                .unwrap()
                .push((record.partition(), record.offset()));
            assert_ne!(record.offset(), 0, "offset 0 is poison");
            Ok(())
        },
    )
    .with_retries(1)
    .with_backoff(FAST)
    .with_dlq(&dlq);
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    wait_until(WAIT, "the records after the panicking one", || {
        offsets(&calls, 0) == [0, 0, 1, 2, 3]
    })
    .await;
    stop_consumer(shutdown, running).await;

    let mut attempts = telemetry.spans_named(&format!("process {topic}"));
    attempts.retain(|span| attribute(span, "messaging.kafka.offset") == Some(Value::I64(0)));
    assert_eq!(attempts.len(), 2, "a panic is transient: retried");
    for span in &attempts {
        assert!(is_error(span));
        assert_eq!(attribute(span, "error.type"), Some("panic".into()));
    }
    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 1);
    let copy = &copies[0];
    assert_eq!(header(copy, "dlq.error.type").as_deref(), Some("panic"));
    assert_eq!(header(copy, "dlq.attempts").as_deref(), Some("2"));
    assert!(
        header(copy, "dlq.error.message")
            .unwrap()
            .contains("offset 0 is poison"),
        "the panic message is kept"
    );
    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_lettered_after_one_attempt() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "permanent", 1).await;
    let (dlq, _) = new_topic(&broker, "permanent-dlq", 1).await;
    send(&broker, TestRecord::new(&topic, b"{\"amount\":-1}")).await;

    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let handler = Handler::sync(
        "tests::permanent",
        [&topic],
        &group,
        move |_: &Record<'_>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::permanent("negative amount -1"))
        },
    )
    .with_retries(3)
    .with_backoff(FAST)
    .with_dlq(&dlq);
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    wait_until(WAIT, "the dead-letter send", || {
        !sends(telemetry, &dlq).1.is_empty()
    })
    .await;
    wait_until(WAIT, "the dead-letter metric", || {
        dead_lettered(telemetry, &dlq) >= 1
    })
    .await;
    stop_consumer(shutdown, running).await;

    assert_eq!(calls.load(Ordering::SeqCst), 1, "no retries");
    let attempts = telemetry.spans_named(&format!("process {topic}"));
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attribute(&attempts[0], "error.type"),
        Some("handler".into())
    );
    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(header(&copies[0], "dlq.attempts").as_deref(), Some("1"));
    assert_eq!(
        header(&copies[0], "dlq.error.type").as_deref(),
        Some("handler")
    );
    assert_eq!(dead_lettered(telemetry, &dlq), 1);
    assert_eq!(
        telemetry.counter(
            "kafka_handler.dead_letter.messages",
            &[
                ("kafka_handler.dlq", &dlq),
                ("messaging.destination.name", &topic),
                ("messaging.consumer.group.name", &group),
                ("error.type", "handler"),
            ],
        ),
        1,
        "the metric's attributes"
    );
    assert_eq!(
        telemetry.counter(
            "kafka_handler.retries",
            &[("messaging.destination.name", &topic)]
        ),
        0
    );
    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(1)]);
}

/// When a record's lane is aborted (its partition revoked, or the consumer
/// shutting down) while its dead-letter copy is in flight, the `send {dlq}`
/// span ends as cancelled, not as a send that looks acknowledged: librdkafka
/// may still deliver that copy, and the new owner dead-letters the record
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_dead_letter_send_is_not_reported_as_sent() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = Arc::new(EmbeddedBroker::mock().unwrap());
    let (topic, group) = new_topic(&broker, "cancelled-send", 1).await;
    let (dlq, _) = new_topic(&broker, "cancelled-send-dlq", 1).await;
    send(&broker, TestRecord::new(&topic, b"doomed")).await;

    let down = Arc::new(AtomicBool::new(false));
    let take_down = (broker.clone(), down.clone());
    let handler = Handler::sync(
        "tests::cancelled_send",
        [&topic],
        &group,
        move |_: &Record<'_>| {
            if !take_down.1.swap(true, Ordering::SeqCst) {
                take_down.0.broker_down(1).unwrap();
            }
            Err(HandlerError::permanent("order breaks a rule"))
        },
    )
    .with_backoff(FAST)
    .with_dlq(&dlq);
    // The copy stays in flight for 30 s (the producer's default timeout),
    // while the member's 1.5 s session runs out: the partition is revoked
    // and the lane sending the copy aborted.
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    wait_until(WAIT, "the send span of the aborted lane", || {
        !telemetry.spans_named(&format!("send {dlq}")).is_empty()
    })
    .await;
    broker.broker_up(1).unwrap();
    let spans = telemetry.spans_named(&format!("send {dlq}"));
    stop_consumer(shutdown, running).await;
    for span in &spans {
        assert!(
            is_error(span) || attribute(span, "messaging.kafka.offset").is_some(),
            "a send span ended before the broker could answer, yet it is neither an error \
             nor acknowledged: status {:?}, attributes {:?}",
            span.status,
            span.attributes
        );
    }
}
