//! Batch handlers: how batches are cut, per-record outcomes through the
//! retry and dead-letter path, and commits.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::batches::{batch_spans, record_spans};
use common::{
    assert_continues, error_type, header, int_attribute, new_topic, new_topic_with_dlq, read_all,
    retarget, send, start_consumer, stop_consumer, telemetry, traced, wait_for_commits, wait_until,
    Mode, Telemetry, FAST,
};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{handlers, kafka_handler, Batch, HandlerError, Record};
use opentelemetry::trace::SpanContext;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;

const WAIT: Duration = Duration::from_secs(30);

fn telemetry_() -> &'static Telemetry {
    telemetry(Mode::OtelOnly)
}

/// Every call of a batch handler: its topic and its records' offsets.
static CALLS: Mutex<Vec<(String, Vec<i64>)>> = Mutex::new(Vec::new());

/// Every record whose scope ran: (topic, offset), in order.
static HANDLED: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

fn note_call(batch: &Batch<'_, &Record<'_>>) {
    CALLS.lock().unwrap().push((
        batch.topic().to_owned(),
        batch.iter().map(|r| r.record().offset()).collect(),
    ));
}

fn note_handled(record: &Record<'_>) {
    HANDLED
        .lock()
        .unwrap()
        .push((record.topic().to_owned(), record.offset()));
}

/// The batches `topic`'s handler was called with, as offsets.
fn calls(topic: &str) -> Vec<Vec<i64>> {
    CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, offsets)| offsets.clone())
        .collect()
}

/// The offsets of `topic` whose scope ran, in order.
fn handled(topic: &str) -> Vec<i64> {
    HANDLED
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, offset)| *offset)
        .collect()
}

/// `count` traced records on partition 0 of `topic`: their producers, by offset.
async fn send_traced(broker: &EmbeddedBroker, topic: &str, count: usize) -> Vec<SpanContext> {
    let mut producers = Vec::new();
    for i in 0..count {
        let (producer, record) = traced(TestRecord::new(topic, b"{}").partition(0));
        let (_, offset) = send(broker, record).await;
        assert_eq!(offset, i as i64, "a fresh one-partition topic");
        producers.push(producer);
    }
    producers
}

#[kafka_handler(topics = ["partial"], group = "partial",
                batch(max_records = 500, max_wait = "50ms"), dlq = "partial.dlq", retries = 3)]
fn partial(batch: Batch<'_, &Record<'_>>) {
    note_call(&batch);
    for item in &batch {
        item.process(|record| {
            note_handled(record);
            match record.offset() {
                3 | 17 => Err(HandlerError::permanent("order breaks a business rule")),
                _ => Ok(()),
            }
        });
    }
}

/// Issue test 3: records 3 and 17 fail permanently. Exactly those two are
/// dead-lettered, each in its own trace; all others commit; after a restart
/// nothing is handled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_records_are_dead_lettered_alone_and_the_rest_commit() {
    let telemetry = telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "partial", 1).await;
    let producers = send_traced(&broker, &topic, 30).await;
    let handler = || {
        retarget(handlers![partial], &topic, &group)
            .into_iter()
            .map(|h| h.with_dlq(&dlq).with_backoff(FAST))
            .collect::<Vec<_>>()
    };

    let (shutdown, running) = start_consumer(&broker, handler());
    wait_for_commits(WAIT, &broker, &group, &topic, &[30]).await;
    wait_until(WAIT, "two acknowledged copies", || {
        telemetry.dead_letter_sends(&dlq).1.len() >= 2
    })
    .await;
    stop_consumer(shutdown, running).await;

    let mut once: Vec<i64> = handled(&topic);
    once.sort_unstable();
    assert_eq!(
        once,
        (0..30).collect::<Vec<_>>(),
        "each record handled once: permanent failures are not retried"
    );

    let copies = read_all(&broker, &dlq).await;
    let mut dead: Vec<i64> = copies
        .iter()
        .map(|c| header(c, "dlq.original.offset").unwrap().parse().unwrap())
        .collect();
    dead.sort_unstable();
    assert_eq!(dead, [3, 17], "exactly records 3 and 17 dead-lettered");

    let spans = telemetry.process_spans(&topic);
    let (_, sends) = telemetry.dead_letter_sends(&dlq);
    for copy in &copies {
        let offset: i64 = header(copy, "dlq.original.offset")
            .unwrap()
            .parse()
            .unwrap();
        let producer = &producers[offset as usize];
        let failed = record_spans(&spans)
            .into_iter()
            .find(|s| int_attribute(s, "messaging.kafka.offset") == offset)
            .expect("the record's span");
        assert_eq!(
            failed.span_context.trace_id(),
            producer.trace_id(),
            "@{offset}: its own trace"
        );
        assert_eq!(failed.parent_span_id, producer.span_id());
        assert_eq!(error_type(&failed), Some(Value::from("handler")));
        let traceparent = header(copy, "traceparent").unwrap();
        let send_span = sends
            .iter()
            .find(|s| traceparent.contains(&s.span_context.span_id().to_string()))
            .expect("the copy carries its send span's context");
        assert_eq!(
            send_span.span_context.trace_id(),
            producer.trace_id(),
            "@{offset}: the copy stays in its trace"
        );
        assert_eq!(
            send_span.parent_span_id,
            failed.span_context.span_id(),
            "@{offset}: sent from its failed span"
        );
    }
    assert_eq!(
        telemetry.counter(
            "kafka_handler.retries",
            &[("messaging.destination.name", &topic)]
        ),
        0
    );

    // After a restart only a new record is handled.
    let before = handled(&topic).len();
    let (shutdown, running) = start_consumer(&broker, handler());
    send(&broker, TestRecord::new(&topic, b"{}").partition(0)).await;
    wait_until(WAIT, "the new record handled", || {
        handled(&topic).contains(&30)
    })
    .await;
    stop_consumer(shutdown, running).await;
    assert_eq!(
        handled(&topic)[before..],
        [30],
        "nothing handled again after the restart"
    );
}

/// (topic, offset) of records that failed once already.
static FAILED_ONCE: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

#[kafka_handler(topics = ["flaky"], group = "flaky", batch(max_records = 500, max_wait = "50ms"),
                backoff = "10ms")]
async fn flaky(batch: Batch<'_, &Record<'_>>) {
    note_call(&batch);
    for item in &batch {
        item.process_async(|record| async move {
            note_handled(record);
            let first_time = {
                let mut failed = FAILED_ONCE.lock().unwrap();
                let key = (record.topic().to_owned(), record.offset());
                let first = record.offset() == 5 && !failed.contains(&key);
                if first {
                    failed.push(key);
                }
                first
            };
            tokio::task::yield_now().await;
            if first_time {
                Err(HandlerError::transient("database unavailable"))
            } else {
                Ok(())
            }
        })
        .await;
    }
}

/// A record that fails transiently is retried alone, in a batch of one,
/// under an attempt-2 span in its own trace; the batch is not handled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_record_is_retried_alone_in_its_own_trace() {
    let telemetry = telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "flaky", 1).await;
    let producers = send_traced(&broker, &topic, 20).await;

    let (shutdown, running) = start_consumer(&broker, retarget(handlers![flaky], &topic, &group));
    wait_for_commits(WAIT, &broker, &group, &topic, &[20]).await;
    stop_consumer(shutdown, running).await;

    let batches = calls(&topic);
    assert!(
        batches.contains(&vec![5]),
        "the retry is a batch of record 5 alone: {batches:?}"
    );
    let mut delivered: Vec<i64> = batches
        .iter()
        .filter(|b| **b != [5])
        .flatten()
        .copied()
        .collect();
    delivered.sort_unstable();
    assert_eq!(
        delivered,
        (0..20).collect::<Vec<_>>(),
        "every record delivered once in a batch"
    );
    assert_eq!(handled(&topic).iter().filter(|o| **o == 5).count(), 2);

    let spans = telemetry.process_spans(&topic);
    assert_eq!(
        batch_spans(&spans)
            .iter()
            .map(|b| int_attribute(b, "messaging.batch.message_count"))
            .sum::<i64>(),
        20,
        "the retry opened no batch span"
    );
    let attempts: Vec<SpanData> = record_spans(&spans)
        .into_iter()
        .filter(|s| int_attribute(s, "messaging.kafka.offset") == 5)
        .collect();
    assert_eq!(attempts.len(), 2, "two attempts at record 5");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(
            int_attribute(attempt, "kafka_handler.attempt"),
            n as i64 + 1
        );
        assert_continues(attempt, Some(&producers[5]), "record 5");
    }
    assert_eq!(error_type(&attempts[0]), Some(Value::from("handler")));
    assert_eq!(error_type(&attempts[1]), None);
    assert_eq!(
        attempts[0].links.links.len(),
        1,
        "attempt 1 links its batch"
    );
    assert_eq!(
        telemetry.counter(
            "kafka_handler.retries",
            &[("messaging.destination.name", &topic)]
        ),
        1
    );
}

/// Topics whose handler already failed a whole batch.
static BATCH_FAILED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[kafka_handler(topics = ["whole"], group = "whole", batch(max_records = 500, max_wait = "50ms"),
                backoff = "10ms")]
fn whole(batch: Batch<'_, &Record<'_>>) -> Result<(), HandlerError> {
    note_call(&batch);
    let mut failed = BATCH_FAILED.lock().unwrap();
    if !failed.contains(&batch.topic().to_owned()) {
        failed.push(batch.topic().to_owned());
        return Err(HandlerError::transient("bulk insert failed"));
    }
    for item in &batch {
        item.process(|record| note_handled(record));
    }
    Ok(())
}

/// A whole-batch error fails every record of the batch; each is retried
/// alone, in offset order, and all commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_batch_error_fails_every_record() {
    let telemetry = telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "whole", 1).await;
    let producers = send_traced(&broker, &topic, 10).await;

    let (shutdown, running) = start_consumer(&broker, retarget(handlers![whole], &topic, &group));
    wait_for_commits(WAIT, &broker, &group, &topic, &[10]).await;
    stop_consumer(shutdown, running).await;

    let batches = calls(&topic);
    assert_eq!(
        batches[0],
        (0..10).collect::<Vec<_>>(),
        "one batch of all ten"
    );
    assert_eq!(
        batches[1..],
        (0..10).map(|o| vec![o]).collect::<Vec<_>>(),
        "then each record alone, in order"
    );
    assert_eq!(handled(&topic), (0..10).collect::<Vec<_>>());

    let spans = telemetry.process_spans(&topic);
    let batch = &batch_spans(&spans)[0];
    assert_eq!(
        error_type(batch),
        Some(Value::from("handler")),
        "the batch span failed"
    );
    for (offset, producer) in producers.iter().enumerate() {
        let attempts: Vec<SpanData> = record_spans(&spans)
            .into_iter()
            .filter(|s| int_attribute(s, "messaging.kafka.offset") == offset as i64)
            .collect();
        assert_eq!(
            attempts.len(),
            2,
            "@{offset}: the failed batch's attempt, then its own"
        );
        assert_eq!(error_type(&attempts[0]), Some(Value::from("handler")));
        assert_eq!(error_type(&attempts[1]), None);
        for attempt in &attempts {
            assert_continues(attempt, Some(producer), &format!("@{offset}"));
        }
    }
    assert_eq!(
        telemetry.counter(
            "kafka_handler.retries",
            &[("messaging.destination.name", &topic)]
        ),
        10
    );
}

#[kafka_handler(topics = ["sized"], group = "sized", batch(max_records = 100, max_wait = "1h"))]
fn sized(batch: Batch<'_, &Record<'_>>) {
    note_call(&batch);
}

/// Records already in the partition are cut at `max_records`, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_delivered_at_max_records() {
    telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "sized", 1).await;
    for _ in 0..300 {
        send(&broker, TestRecord::new(&topic, b"{}").partition(0)).await;
    }
    let (shutdown, running) = start_consumer(&broker, retarget(handlers![sized], &topic, &group));
    wait_for_commits(WAIT, &broker, &group, &topic, &[300]).await;
    stop_consumer(shutdown, running).await;
    let batches = calls(&topic);
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [100, 100, 100],
        "cut at max_records; max_wait (1h) never passed"
    );
    assert_eq!(
        batches.concat(),
        (0..300).collect::<Vec<_>>(),
        "in offset order"
    );
}

#[kafka_handler(topics = ["trickle"], group = "trickle", batch(max_records = 1000, max_wait = "20ms"))]
fn trickle(batch: Batch<'_, &Record<'_>>) {
    note_call(&batch);
}

/// Issue test 4: a trickle is delivered once `max_wait` has passed, in small
/// batches, not held until `max_records` arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_is_delivered_after_max_wait() {
    telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "trickle", 1).await;
    let (shutdown, running) = start_consumer(&broker, retarget(handlers![trickle], &topic, &group));
    for i in 0..10 {
        send(&broker, TestRecord::new(&topic, b"{}").partition(0)).await;
        // The next record is sent only once this one was delivered: with
        // 1000 records per batch, only `max_wait` can have cut it.
        wait_until(WAIT, &format!("record {i} delivered"), || {
            calls(&topic).concat().len() > i
        })
        .await;
    }
    stop_consumer(shutdown, running).await;
    let sizes: Vec<usize> = calls(&topic).iter().map(Vec::len).collect();
    assert_eq!(sizes, [1; 10], "ten batches of one");
}

#[kafka_handler(topics = ["held"], group = "held", batch(max_records = 500, max_wait = "50ms"),
                backoff = "10ms")]
fn held(batch: Batch<'_, &Record<'_>>) {
    note_call(&batch);
    for item in &batch {
        item.process(|record| {
            note_handled(record);
            if record.partition() == 0 && record.offset() == 3 {
                return Err(HandlerError::permanent("no dead-letter topic for this one"));
            }
            Ok(())
        });
    }
}

/// Without a dead-letter topic a failed record of a batch is held: the
/// records before it commit, nothing after it does while it fails, and the
/// other partition flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_record_stops_its_partitions_commits_at_itself() {
    telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "held", 2).await;
    for partition in [0, 1] {
        for _ in 0..10 {
            send(&broker, TestRecord::new(&topic, b"{}").partition(partition)).await;
        }
    }
    let (shutdown, running) = start_consumer(&broker, retarget(handlers![held], &topic, &group));
    wait_for_commits(WAIT, &broker, &group, &topic, &[3, 10]).await;
    wait_until(WAIT, "the held record attempted five times", || {
        calls(&topic)
            .iter()
            .filter(|offsets| **offsets == [3])
            .count()
            >= 5
    })
    .await;
    stop_consumer(shutdown, running).await;
    assert_eq!(
        common::committed(&broker, &group, &topic, 2).await,
        [Some(3), Some(10)],
        "partition 0 commits up to its held record, and no further"
    );
}
