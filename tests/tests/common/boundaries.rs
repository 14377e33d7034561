//! The record's trace across task and thread boundaries, run by each
//! telemetry mode's `boundaries` test binary: work a handler spawns through
//! `kafka_handler::context` is a child of the record's span (and a plain
//! spawn is not), and an async handler keeps its context on every poll,
//! also after resuming on another worker thread.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kafka_handler::context::{self, in_current_context, InCurrentContext as _};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{handlers, kafka_handler, Key, Record};
use opentelemetry::global;
use opentelemetry::trace::{Span as _, SpanContext, SpanId, Tracer as _};
use opentelemetry_sdk::trace::SpanData;

use super::{
    assert_child_of, attribute, int_attribute, new_topic, only_span, retarget, send,
    start_consumer, stop_consumer, telemetry, traced, wait_until, Current, Mode,
};

const WAIT: Duration = Duration::from_secs(30);

/// Each way of starting work from a handler: whether it carries the record's
/// trace.
const CARRIED: [&str; 5] = [
    "context::spawn",
    "context::spawn_blocking",
    "context::spawn_thread",
    "tokio::spawn(fut.in_current_context())",
    "std::thread::spawn(in_current_context(f))",
];
const NOT_CARRIED: [&str; 2] = ["plain tokio::spawn", "plain std::thread::spawn"];

/// (topic, record key, how the work was started) → what was current in it.
static SPAWNED: Mutex<Vec<(String, String, &'static str, Current)>> = Mutex::new(Vec::new());

/// Inside started work: notes what is current, and creates one span on the
/// global tracer and one `tracing` span, both named after `how` and `key`.
fn work(topic: &str, key: &str, how: &'static str) {
    let current = Current::now();
    global::tracer("boundaries")
        .start(format!("{how} otel {key}"))
        .end();
    let name = format!("{how} tracing {key}");
    tracing::info_span!("work", otel.name = name.as_str()).in_scope(|| {});
    SPAWNED
        .lock()
        .unwrap()
        .push((topic.to_owned(), key.to_owned(), how, current));
}

/// Starts work every way there is, awaiting each.
#[kafka_handler(topics = ["spread"], group = "spread")]
async fn spread(record: &Record<'_>, key: Key<'_>) {
    let topic = record.topic().to_owned();
    let key = key.as_str().expect("a UTF-8 key").to_owned();
    let (t, k) = (topic.clone(), key.clone());
    context::spawn(async move { work(&t, &k, CARRIED[0]) })
        .await
        .unwrap();
    let (t, k) = (topic.clone(), key.clone());
    context::spawn_blocking(move || work(&t, &k, CARRIED[1]))
        .await
        .unwrap();
    let (t, k) = (topic.clone(), key.clone());
    let thread = context::spawn_thread(move || work(&t, &k, CARRIED[2]));
    tokio::task::block_in_place(|| thread.join()).unwrap();
    let (t, k) = (topic.clone(), key.clone());
    tokio::spawn(async move { work(&t, &k, CARRIED[3]) }.in_current_context())
        .await
        .unwrap();
    let (t, k) = (topic.clone(), key.clone());
    let thread = std::thread::spawn(in_current_context(move || work(&t, &k, CARRIED[4])));
    tokio::task::block_in_place(|| thread.join()).unwrap();

    // Without the helpers, nothing follows the work.
    let (t, k) = (topic.clone(), key.clone());
    tokio::spawn(async move { work(&t, &k, NOT_CARRIED[0]) })
        .await
        .unwrap();
    let (t, k) = (topic, key);
    let thread = std::thread::spawn(move || work(&t, &k, NOT_CARRIED[1]));
    tokio::task::block_in_place(|| thread.join()).unwrap();
}

/// Three traced records, each handled by [`spread`]: the spans the work
/// started through `kafka_handler::context` creates (on the global tracer
/// and, with the layer, through `tracing`) are children of the record's
/// `process` span, in the producer's trace, and both contexts are current in
/// that work; the spans of plainly spawned work are not.
pub async fn spawned_work_is_a_child_of_the_record(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "spread", 1).await;
    let mut producers = HashMap::new();
    for i in 0..3 {
        let key = format!("order-{i}");
        let (producer, record) = traced(TestRecord::new(&topic, b"x").key(key.as_bytes()));
        send(&broker, record).await;
        producers.insert(key, producer);
    }

    let (shutdown, running) = start_consumer(&broker, retarget(handlers![spread], &topic, &group));
    let expected = producers.len() * (CARRIED.len() + NOT_CARRIED.len());
    let spawned_on_topic = || {
        SPAWNED
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, ..)| *t == topic)
            .cloned()
            .collect::<Vec<_>>()
    };
    wait_until(WAIT, "every record's work done", || {
        spawned_on_topic().len() >= expected
    })
    .await;
    stop_consumer(shutdown, running).await;

    let processes = telemetry.process_spans(&topic);
    assert_eq!(processes.len(), 3, "one process span per record");
    let spans = telemetry.exporter.get_finished_spans().unwrap();
    let spawned = spawned_on_topic();
    assert_eq!(spawned.len(), expected, "each record's work ran once");
    for process in &processes {
        let key = attribute(process, "messaging.kafka.message.key")
            .unwrap()
            .to_string();
        let producer = &producers[&key];
        assert_child_of(process, producer, &format!("{key}: the process span"));
        let record = &process.span_context;
        let current = |how: &str| -> Current {
            spawned
                .iter()
                .find(|(_, k, h, _)| *k == key && *h == how)
                .unwrap_or_else(|| panic!("{key}: no work started with {how}"))
                .3
                .clone()
        };

        for how in CARRIED {
            let what = format!("{key}, {how}");
            let current = current(how);
            assert_eq!(
                &current.otel, record,
                "{what}: Context::current() is the record's span"
            );
            let otel = only_span(&spans, &format!("{how} otel {key}"));
            assert_child_of(&otel, record, &format!("{what}: a global-tracer span"));
            assert_eq!(otel.span_context.trace_id(), producer.trace_id());
            if mode == Mode::TracingLayer {
                assert_eq!(
                    &current.traced, record,
                    "{what}: tracing::Span::current() is the record's span"
                );
                let traced = only_span(&spans, &format!("{how} tracing {key}"));
                assert_child_of(&traced, record, &format!("{what}: a tracing span"));
                assert_eq!(traced.span_context.trace_id(), producer.trace_id());
            }
        }

        for how in NOT_CARRIED {
            let what = format!("{key}, {how}");
            let current = current(how);
            assert!(
                !current.otel.is_valid(),
                "{what}: no context follows the work ({:?})",
                current.otel
            );
            assert!(
                !current.traced.is_valid(),
                "{what}: no tracing span follows the work"
            );
            let mut started = vec![only_span(&spans, &format!("{how} otel {key}"))];
            if mode == Mode::TracingLayer {
                started.push(only_span(&spans, &format!("{how} tracing {key}")));
            }
            for span in started {
                assert_ne!(
                    span.parent_span_id,
                    record.span_id(),
                    "{what}: {} is not a child of the record's span",
                    span.name
                );
                assert_eq!(
                    span.parent_span_id,
                    SpanId::INVALID,
                    "{what}: {} is a root",
                    span.name
                );
                assert_ne!(
                    span.span_context.trace_id(),
                    producer.trace_id(),
                    "{what}: {} is not in the producer's trace",
                    span.name
                );
            }
        }
    }
}

/// How many times [`hop`] suspends per record.
const HOPS: usize = 6;
/// How many records [`hop`] handles: enough for at least one of them to
/// resume on another worker thread.
const HOP_RECORDS: usize = 200;

/// (topic, offset) → what was current before each suspension and at the end.
static HOPPED: Mutex<Vec<(String, i64, Vec<Current>)>> = Mutex::new(Vec::new());

/// Notes what is current, then suspends in a way that tends to resume on
/// another worker thread, [`HOPS`] times.
#[kafka_handler(topics = ["hop"], group = "hop")]
async fn hop(record: &Record<'_>) {
    let mut steps = Vec::with_capacity(HOPS + 1);
    for step in 0..HOPS {
        steps.push(Current::now());
        match step % 3 {
            // Woken from a thread outside the runtime: the task goes to the
            // shared queue, and any worker may pick it up.
            0 => {
                let (done, wait) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || done.send(()));
                wait.await.unwrap();
            }
            // Woken by another task, on whatever worker runs (or steals) it.
            1 => {
                let (done, wait) = tokio::sync::oneshot::channel();
                tokio::spawn(async move { done.send(()) });
                wait.await.unwrap();
            }
            // Woken by the timer.
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    steps.push(Current::now());
    HOPPED
        .lock()
        .unwrap()
        .push((record.topic().to_owned(), record.offset(), steps));
}

/// [`HOP_RECORDS`] traced records, each handled by [`hop`] on a runtime with
/// four workers: before and after every suspension both
/// `Context::current()` and (with the layer) `tracing::Span::current()` are
/// the record's span, and at least one handler resumed on a different thread
/// than the one it was suspended on, so the cross-thread case is the one
/// checked.
pub async fn async_handler_keeps_its_context_across_threads(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "hop", 1).await;
    let records: Vec<(SpanContext, TestRecord<'_>)> = (0..HOP_RECORDS)
        .map(|_| traced(TestRecord::new(&topic, b"x")))
        .collect();
    let producers: Vec<SpanContext> = records.iter().map(|(p, _)| p.clone()).collect();
    let offsets =
        futures_util::future::join_all(records.into_iter().map(|(_, r)| send(&broker, r))).await;

    let (shutdown, running) = start_consumer(&broker, retarget(handlers![hop], &topic, &group));
    let hopped_on_topic = || {
        HOPPED
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, ..)| *t == topic)
            .map(|(_, offset, steps)| (*offset, steps.clone()))
            .collect::<HashMap<i64, Vec<Current>>>()
    };
    wait_until(WAIT, "every record handled", || {
        hopped_on_topic().len() >= HOP_RECORDS
    })
    .await;
    stop_consumer(shutdown, running).await;

    let hopped = hopped_on_topic();
    let processes: HashMap<i64, SpanData> = telemetry
        .process_spans(&topic)
        .into_iter()
        .map(|span| (int_attribute(&span, "messaging.kafka.offset"), span))
        .collect();
    assert_eq!(processes.len(), HOP_RECORDS, "one process span per record");
    let mut resumed_elsewhere = 0;
    for ((_, offset), producer) in offsets.iter().zip(&producers) {
        let process = &processes[offset];
        assert_child_of(
            process,
            producer,
            &format!("offset {offset}: the process span"),
        );
        let record = &process.span_context;
        let steps = &hopped[offset];
        assert_eq!(steps.len(), HOPS + 1);
        for (step, current) in steps.iter().enumerate() {
            assert_eq!(
                &current.otel, record,
                "offset {offset}, step {step}: Context::current() is the record's span"
            );
            if mode == Mode::TracingLayer {
                assert_eq!(
                    &current.traced, record,
                    "offset {offset}, step {step}: tracing::Span::current() is the record's span"
                );
            }
        }
        resumed_elsewhere += steps
            .windows(2)
            .filter(|pair| pair[0].thread != pair[1].thread)
            .count();
    }
    assert!(
        resumed_elsewhere > 0,
        "in {HOP_RECORDS} records of {HOPS} suspensions each, no handler resumed on another \
         thread than the one it was suspended on: the cross-thread case was not exercised"
    );
    eprintln!(
        "{resumed_elsewhere} of {} resumptions were on another thread",
        HOP_RECORDS * HOPS
    );
}
