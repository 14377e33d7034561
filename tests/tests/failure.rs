//! The failure path: retries under the producer's trace, dead-letter copies
//! that keep it, commits only after the copy is acknowledged.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    assert_child_of, assert_headers, assert_unique_headers, attribute, committed, dead_lettering,
    error_type, header, header_values, is_error, new_topic, new_topic_with_dlq, only_copy,
    read_all, run_until, send, start_consumer, start_consumer_with, stop_consumer, telemetry,
    traced, traceparent_of, wait_for_acknowledged_copy, wait_for_commits, wait_until, Mode,
    Telemetry, FAST,
};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{Backoff, Handler, HandlerError, Outcome, Record};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::types::RDKafkaRespErr;

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

/// The record both dead-letter chains start from: a key, a JSON payload and
/// a tenant header.
const ORDER: &[u8] = b"{\"id\":7}";
const ORDER_KEY: &[u8] = b"order-7";

/// [`ORDER`], on `topic`, in a producer span's trace.
fn traced_order(topic: &str) -> (SpanContext, TestRecord<'_>) {
    traced(
        TestRecord::new(topic, ORDER)
            .key(ORDER_KEY)
            .header("tenant", "acme"),
    )
}

/// Asserts that `copy` keeps [`ORDER`]'s key, payload and tenant header,
/// with one traceparent.
fn assert_keeps_the_order(copy: &OwnedMessage) {
    assert_eq!(copy.key(), Some(ORDER_KEY));
    assert_eq!(copy.payload(), Some(ORDER));
    assert_headers(copy, &[("tenant", "acme")]);
    assert_eq!(header_values(copy, "traceparent").len(), 1);
}

/// (partition, offset) of every handler call, in call order.
type Calls = Arc<Mutex<Vec<(i32, i64)>>>;

/// A handler named `name` for `group` on `topic` that notes each call's
/// (partition, offset) in `calls`, then returns what `outcome` makes of the
/// record.
fn recording(
    name: &'static str,
    topic: &str,
    group: &str,
    calls: &Calls,
    outcome: impl Fn(&Record<'_>) -> Outcome + Send + Sync + 'static,
) -> Handler {
    let recorded = calls.clone();
    Handler::sync(name, [topic], group, move |record: &Record<'_>| {
        recorded
            .lock()
            .unwrap()
            .push((record.partition(), record.offset()));
        outcome(record)
    })
}

/// How many calls `calls` holds.
fn count(calls: &Calls) -> usize {
    calls.lock().unwrap().len()
}

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

/// The transient failure the handlers below report.
fn unavailable() -> HandlerError {
    HandlerError::transient("database unavailable")
}

/// A handler that fails (transiently) its first `failures` calls.
fn flaky(topic: &str, group: &str, failures: usize, calls: &Calls) -> Handler {
    let so_far = calls.clone();
    recording("tests::flaky", topic, group, calls, move |_| {
        // `so_far` already holds this call.
        if count(&so_far) <= failures {
            Err(unavailable())
        } else {
            Ok(())
        }
    })
    .with_backoff(FAST)
}

/// Fails the record at partition 0, offset 0 (transiently); passes the rest.
fn fail_the_first_record(record: &Record<'_>) -> Outcome {
    if (record.partition(), record.offset()) == (0, 0) {
        Err(unavailable())
    } else {
        Ok(())
    }
}

/// Fails the record at offset 0 permanently, the first time taking broker 1
/// of `broker` down (and setting `down`) just before its dead-letter copy
/// is sent; passes the rest.
fn fail_into_an_outage(
    broker: &Arc<EmbeddedBroker>,
    down: &Arc<AtomicBool>,
) -> impl Fn(&Record<'_>) -> Outcome + Send + Sync + 'static {
    let (broker, down) = (broker.clone(), down.clone());
    move |record: &Record<'_>| {
        if record.offset() != 0 {
            return Ok(());
        }
        // The copy is sent right after this returns: into the outage.
        if !down.swap(true, Ordering::SeqCst) {
            broker.broker_down(1).unwrap();
        }
        Err(HandlerError::permanent("order breaks a rule"))
    }
}

/// Sends `count` records holding `payload` to `partition` of `topic`.
async fn send_records(
    broker: &EmbeddedBroker,
    topic: &str,
    partition: i32,
    payload: &[u8],
    count: usize,
) {
    for _ in 0..count {
        send(broker, TestRecord::new(topic, payload).partition(partition)).await;
    }
}

/// Asserts that `attempts`, in order, are attempts 1, 2, … of one record.
fn assert_numbered(attempts: &[SpanData]) {
    for (i, span) in attempts.iter().enumerate() {
        assert_eq!(
            attribute(span, "kafka_handler.attempt"),
            Some(Value::I64(i as i64 + 1)),
            "attempt {}",
            i + 1
        );
    }
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
async fn a_transient_failure_is_retried_under_the_producers_trace() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "flaky", 1).await;
    let (producer, record) = traced(TestRecord::new(&topic, b"x"));
    send(&broker, record).await;

    let calls: Calls = Arc::default();
    let handler = flaky(&topic, &group, 2, &calls).with_dlq(&dlq);
    let attempted = wait_until(WAIT, "three attempts", || {
        telemetry.process_spans(&topic).len() >= 3
    });
    run_until(&broker, vec![handler], attempted).await;

    let spans = telemetry.process_spans(&topic);
    assert_eq!(spans.len(), 3, "one span per attempt, no more");
    assert_eq!(count(&calls), 3);
    assert_numbered(&spans);
    for span in &spans {
        assert_child_of(span, &producer, "no new trace per retry");
    }
    for failed in &spans[..2] {
        assert!(is_error(failed));
        assert_eq!(error_type(failed), Some("handler".into()));
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
    let (dlq, dlq_group) = new_topic(&broker, "doomed-dlq", 1).await;
    let (producer, record) = traced_order(&topic);
    let (partition, offset) = send(&broker, record).await;

    let calls: Calls = Arc::default();
    let doomed = dead_lettering(flaky(&topic, &group, usize::MAX, &calls), 2, &dlq);
    let inspected: Calls = Arc::default();
    let inspect = recording("tests::inspect", &dlq, &dlq_group, &inspected, |_| Ok(()));
    let copy_handled = wait_until(WAIT, "the DLQ handler sees the copy", || {
        count(&inspected) > 0
    });
    run_until(&broker, vec![doomed, inspect], copy_handled).await;
    assert_eq!(count(&calls), 3, "retries + 1 attempts");

    // Exactly one copy, with every header.
    let copy = only_copy(&broker, &dlq).await;
    assert_keeps_the_order(&copy);
    assert_headers(
        &copy,
        &[
            ("dlq.original.topic", &topic),
            ("dlq.original.partition", &partition.to_string()),
            ("dlq.original.offset", &offset.to_string()),
            ("dlq.group", &group),
            ("dlq.handler", "tests::flaky"),
            ("dlq.attempts", "3"),
            ("dlq.error.type", "handler"),
            ("dlq.error.message", "database unavailable"),
        ],
    );
    let timestamp: i64 = header(&copy, "dlq.original.timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        copy.timestamp().to_millis(),
        Some(timestamp),
        "the copy keeps the timestamp"
    );

    // The trace: producer → 3 attempts; attempt 3 → send {dlq} → DLQ handler.
    let attempts = telemetry.process_spans(&topic);
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
    let dlq_spans = telemetry.process_spans(&dlq);
    assert_eq!(dlq_spans.len(), 1);
    assert_child_of(&dlq_spans[0], &send_span.span_context, "the DLQ handler");
    assert_ne!(dlq_spans[0].parent_span_id, SpanId::INVALID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_of_a_dead_letter_copy_keeps_one_trace_and_one_set_of_headers() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "chain", 1).await;
    let (dlq1, dlq1_group) = new_topic(&broker, "chain-dlq1", 1).await;
    let (dlq2, _) = new_topic(&broker, "chain-dlq2", 1).await;
    let (producer, record) = traced_order(&topic);
    send(&broker, record).await;

    let first = Handler::sync("tests::chain_first", [&topic], &group, |_: &Record<'_>| {
        Err(unavailable())
    });
    let first = dead_lettering(first, 1, &dlq1);
    let second = Handler::sync(
        "tests::chain_second",
        [&dlq1],
        &dlq1_group,
        |_: &Record<'_>| Err(HandlerError::permanent("order 7 breaks a rule")),
    )
    .with_backoff(FAST)
    .with_dlq(&dlq2);
    let second_copy = wait_for_acknowledged_copy(telemetry, &dlq2, WAIT);
    run_until(&broker, vec![first, second], second_copy).await;

    only_copy(&broker, &dlq1).await;
    let copy = only_copy(&broker, &dlq2).await;
    assert_unique_headers(&copy);
    for name in DLQ_HEADERS {
        assert_eq!(
            header_values(&copy, name).len(),
            1,
            "{name} replaced, not appended"
        );
    }
    assert_keeps_the_order(&copy);
    assert_headers(
        &copy,
        &[
            ("dlq.original.topic", &dlq1),
            ("dlq.original.partition", "0"),
            ("dlq.original.offset", "0"),
            ("dlq.group", &dlq1_group),
            ("dlq.handler", "tests::chain_second"),
            ("dlq.attempts", "1"),
            ("dlq.error.type", "handler"),
            ("dlq.error.message", "order 7 breaks a rule"),
        ],
    );

    // producer → 2 attempts → send {dlq1} → process {dlq1} → send {dlq2}.
    let attempts = telemetry.process_spans(&topic);
    assert_eq!(attempts.len(), 2, "retries 1: two attempts");
    let (failed, first_sends) = telemetry.dead_letter_sends(&dlq1);
    assert!(failed.is_empty());
    assert_eq!(first_sends.len(), 1);
    assert_eq!(
        first_sends[0].parent_span_id,
        attempts[1].span_context.span_id()
    );
    let second_attempts = telemetry.process_spans(&dlq1);
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
    assert_eq!(error_type(second_attempt), Some("handler".into()));
    let (failed, second_sends) = telemetry.dead_letter_sends(&dlq2);
    assert!(failed.is_empty());
    assert_eq!(second_sends.len(), 1);
    let second_send = &second_sends[0];
    assert_eq!(second_send.span_kind, SpanKind::Producer);
    assert_child_of(second_send, &second_attempt.span_context, "the second send");
    assert_eq!(
        header(&copy, "traceparent"),
        Some(traceparent_of(second_send)),
        "the copy carries the second send span's context"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_dead_letter_send_is_retried_and_holds_back_its_partition() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "rejected", 1).await;
    let (producer, record) = traced(TestRecord::new(&topic, b"doomed").partition(0));
    assert_eq!(send(&broker, record).await, (0, 0));
    send_records(&broker, &topic, 0, b"fine", 4).await;
    // After the test's own records: the next three Produce requests are the
    // dead-letter producer's.
    broker
        .fail_produce_requests(&[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3])
        .unwrap();

    let calls: Calls = Arc::default();
    let handler = recording(
        "tests::rejected",
        &topic,
        &group,
        &calls,
        fail_the_first_record,
    )
    .with_retries(0)
    // Slow enough that commits (every 200 ms) would show a premature one.
    .with_backoff(Backoff::constant(Duration::from_millis(600)))
    .with_dlq(&dlq);
    let held_back = async {
        let mut checked_while_failing = 0;
        for failures in 1..=3 {
            wait_until(
                WAIT,
                &format!("{failures} failed dead-letter sends"),
                || telemetry.dead_letter_sends(&dlq).0.len() >= failures,
            )
            .await;
            let offset = committed(&broker, &group, &topic, 1).await[0];
            let handled = offsets(&calls, 0);
            if !telemetry.dead_letter_sends(&dlq).1.is_empty() {
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
    };
    run_until(&broker, vec![handler], held_back).await;

    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(5)]);
    let copy = only_copy(&broker, &dlq).await;
    assert_headers(&copy, &[("dlq.original.offset", "0")]);
    let (failed, acked) = telemetry.dead_letter_sends(&dlq);
    // librdkafka fails the next copy locally while it remembers the
    // topic's authorization error, so there may be more failures than
    // rejected requests.
    assert!(failed.len() >= 3, "one failed send per rejected request");
    assert_eq!(acked.len(), 1);
    let attempts = telemetry.process_spans(&topic);
    let attempt = attempts
        .iter()
        .find(|span| attribute(span, "messaging.kafka.offset") == Some(Value::I64(0)))
        .unwrap();
    for send_span in failed.iter().chain(&acked) {
        assert_eq!(send_span.span_context.trace_id(), producer.trace_id());
        assert_eq!(send_span.parent_span_id, attempt.span_context.span_id());
    }
    for send_span in &failed {
        assert_eq!(
            error_type(send_span),
            Some("TopicAuthorizationFailed".into())
        );
        assert!(send_span.events.iter().any(|e| e.name == "exception"));
    }
    assert_eq!(
        header(&copy, "traceparent"),
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
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "outage-dlq", 1).await;
    send(&broker, TestRecord::new(&topic, b"doomed").partition(0)).await;
    send(&broker, TestRecord::new(&topic, b"fine").partition(0)).await;

    let calls: Calls = Arc::default();
    let down = Arc::new(AtomicBool::new(false));
    let into_the_outage = fail_into_an_outage(&broker, &down);
    let handler = recording("tests::outage", &topic, &group, &calls, into_the_outage)
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
        !telemetry.dead_letter_sends(&dlq).0.is_empty()
    })
    .await;
    assert!(down.load(Ordering::SeqCst));
    assert!(
        telemetry.dead_letter_sends(&dlq).1.is_empty(),
        "no send acknowledged while the broker is down"
    );
    broker.broker_up(1).unwrap();

    let limit = Duration::from_secs(60);
    wait_for_acknowledged_copy(telemetry, &dlq, limit).await;
    // The record and the next committed.
    wait_for_commits(limit, &broker, &group, &topic, &[2]).await;
    assert!(
        !running.is_finished(),
        "the consumer kept running through the outage"
    );
    stop_consumer(shutdown, running).await;

    let copy = only_copy(&broker, &dlq).await;
    assert_headers(&copy, &[("dlq.attempts", "1")]);
    let (failed, acked) = telemetry.dead_letter_sends(&dlq);
    assert_eq!(acked.len(), 1);
    assert!(
        failed
            .iter()
            .all(|span| error_type(span) == Some("MessageTimedOut".into())),
        "failed sends time out: {:?}",
        failed.iter().map(error_type).collect::<Vec<_>>()
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
    send_records(&broker, &topic, 0, b"doomed", 1).await;
    for partition in [1, 2] {
        send_records(&broker, &topic, partition, b"fine", 25).await;
    }
    send_records(&broker, &topic, 0, b"behind", 3).await;

    let handler = |calls: &Calls, fail: bool| {
        recording("tests::held", &topic, &group, calls, move |record| {
            if fail {
                fail_the_first_record(record)
            } else {
                Ok(())
            }
        })
        .with_retries(1)
        .with_backoff(FAST)
    };
    let calls: Calls = Arc::default();
    let all: Vec<i64> = (0..25).collect();
    let held_only_partition_0 = async {
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
    };
    run_until(&broker, vec![handler(&calls, true)], held_only_partition_0).await;
    assert!(offsets(&calls, 0).iter().all(|offset| *offset == 0));
    let offsets_now = committed(&broker, &group, &topic, 3).await;
    assert!(
        offsets_now[0].is_none_or(|offset| offset <= 0),
        "the held record is not committed: {offsets_now:?}"
    );
    assert_eq!(offsets_now[1..], [Some(25), Some(25)]);
    let mut attempts = telemetry.process_spans(&topic);
    attempts
        .retain(|span| attribute(span, "messaging.destination.partition.id") == Some("0".into()));
    assert_numbered(&attempts);
    for span in &attempts {
        assert!(is_error(span));
    }

    // Restarted with a handler that passes: the held record and those
    // behind it are handled, in order; nothing was lost.
    let after: Calls = Arc::default();
    let caught_up = wait_until(WAIT, "partition 0 handled after the restart", || {
        offsets(&after, 0) == [0, 1, 2, 3]
    });
    run_until(&broker, vec![handler(&after, false)], caught_up).await;
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
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "slow", 1).await;
    let (producer, record) = traced(TestRecord::new(&topic, b"slow"));
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
    .with_timeout(Duration::from_millis(50));
    let handler = dead_lettering(handler, 1, &dlq);
    let copied = wait_for_acknowledged_copy(telemetry, &dlq, WAIT);
    run_until(&broker, vec![handler], copied).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "every attempt cancelled"
    );

    let attempts = telemetry.process_spans(&topic);
    assert_eq!(attempts.len(), 2, "a timeout is transient: retried");
    assert_numbered(&attempts);
    for span in &attempts {
        assert!(is_error(span));
        assert_eq!(error_type(span), Some("timeout".into()));
        assert_child_of(span, &producer, "every attempt");
    }
    let copy = only_copy(&broker, &dlq).await;
    assert_headers(
        &copy,
        &[("dlq.error.type", "timeout"), ("dlq.attempts", "2")],
    );
    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_dead_lettered_and_the_partition_moves_on() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "panics", 1).await;
    send_records(&broker, &topic, 0, b"x", 4).await;

    let calls: Calls = Arc::default();
    let handler = recording("tests::panics", &topic, &group, &calls, |record| {
        assert_ne!(record.offset(), 0, "offset 0 is poison");
        Ok(())
    });
    let handler = dead_lettering(handler, 1, &dlq);
    let moved_on = wait_until(WAIT, "the records after the panicking one", || {
        offsets(&calls, 0) == [0, 0, 1, 2, 3]
    });
    run_until(&broker, vec![handler], moved_on).await;

    let mut attempts = telemetry.process_spans(&topic);
    attempts.retain(|span| attribute(span, "messaging.kafka.offset") == Some(Value::I64(0)));
    assert_eq!(attempts.len(), 2, "a panic is transient: retried");
    for span in &attempts {
        assert!(is_error(span));
        assert_eq!(error_type(span), Some("panic".into()));
    }
    let copy = only_copy(&broker, &dlq).await;
    assert_headers(&copy, &[("dlq.error.type", "panic"), ("dlq.attempts", "2")]);
    assert!(
        header(&copy, "dlq.error.message")
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
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "permanent", 1).await;
    send(&broker, TestRecord::new(&topic, b"{\"amount\":-1}")).await;

    let calls: Calls = Arc::default();
    let handler = recording("tests::permanent", &topic, &group, &calls, |_| {
        Err(HandlerError::permanent("negative amount -1"))
    });
    let handler = dead_lettering(handler, 3, &dlq);
    let counted = async {
        wait_for_acknowledged_copy(telemetry, &dlq, WAIT).await;
        wait_until(WAIT, "the dead-letter metric", || {
            dead_lettered(telemetry, &dlq) >= 1
        })
        .await;
    };
    run_until(&broker, vec![handler], counted).await;

    assert_eq!(count(&calls), 1, "no retries");
    let attempts = telemetry.process_spans(&topic);
    assert_eq!(attempts.len(), 1);
    assert_eq!(error_type(&attempts[0]), Some("handler".into()));
    let copy = only_copy(&broker, &dlq).await;
    assert_headers(
        &copy,
        &[("dlq.attempts", "1"), ("dlq.error.type", "handler")],
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
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "cancelled-send", 1).await;
    send(&broker, TestRecord::new(&topic, b"doomed")).await;

    let down = Arc::new(AtomicBool::new(false));
    let into_the_outage = fail_into_an_outage(&broker, &down);
    let handler = Handler::sync("tests::cancelled_send", [&topic], &group, into_the_outage)
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

/// A held partition is revoked when a second member joins, and comes back
/// when it leaves: the retry on the old owner stops, the partition is not
/// left paused on re-assignment, nothing behind the record is handled while
/// it fails, and once the handler heals the whole partition is handled and
/// committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_partition_survives_rebalances() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "rebalanced", 2).await;
    send_records(&broker, &topic, 0, b"doomed", 1).await;
    send_records(&broker, &topic, 0, b"behind", 3).await;
    send_records(&broker, &topic, 1, b"fine", 10).await;

    let healed = Arc::new(AtomicBool::new(false));
    let calls: Calls = Arc::default();
    let handler = || {
        let healed = healed.clone();
        recording("tests::rebalanced", &topic, &group, &calls, move |record| {
            if healed.load(Ordering::SeqCst) {
                Ok(())
            } else {
                fail_the_first_record(record)
            }
        })
        .with_retries(1)
        .with_backoff(FAST)
    };
    let unique = |partition| {
        let mut handled = offsets(&calls, partition);
        handled.sort_unstable();
        handled.dedup();
        handled
    };

    let (first_stop, first) = start_consumer(&broker, vec![handler()]);
    wait_until(
        WAIT,
        "partition 1 handled and the poison record attempted",
        || unique(1).len() == 10 && offsets(&calls, 0).len() >= 3,
    )
    .await;
    let (second_stop, second) = start_consumer(&broker, vec![handler()]);
    send_records(&broker, &topic, 1, b"more", 10).await;
    wait_until(WAIT, "partition 1 flowing after the member joined", || {
        unique(1).len() == 20
    })
    .await;
    stop_consumer(second_stop, second).await;
    let attempts = offsets(&calls, 0).len();
    wait_until(
        WAIT,
        "the poison record attempted again once its partition is back with the first member",
        || offsets(&calls, 0).len() >= attempts + 3,
    )
    .await;
    assert_eq!(
        unique(0),
        [0],
        "nothing behind the failing record is handled"
    );

    healed.store(true, Ordering::SeqCst);
    wait_until(WAIT, "partition 0 handled once the handler heals", || {
        unique(0) == [0, 1, 2, 3]
    })
    .await;
    stop_consumer(first_stop, first).await;
    assert_eq!(
        committed(&broker, &group, &topic, 2).await,
        [Some(4), Some(20)]
    );
}
