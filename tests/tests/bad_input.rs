//! Bad and unusual input: records that fail to decode, panic or break a
//! rule, tombstones, huge payloads and odd headers. Every record is handled
//! or dead-lettered exactly once, with the right cause, and committed.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use common::{
    assert_child_of, assert_headers, attribute, committed, dead_lettering, error_type, header,
    header_values, is_error, new_topic, new_topic_with_dlq, only_copy, read_all, run_until, send,
    telemetry, traced, traced_headers, wait_for_acknowledged_copy, wait_for_commits, Mode,
    Telemetry,
};
use kafka_handler::testing::{unique_topic, EmbeddedBroker, TestRecord};
use kafka_handler::{
    handlers, kafka_handler, ErrorKind, FromRecord, Handler, HandlerError, Json, Processor, Record,
    RecordMeta,
};
use opentelemetry::trace::Status;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use serde::Deserialize;

const WAIT: Duration = Duration::from_secs(60);

/// Panics the handlers below raise on purpose start with this; the panic
/// hook keeps them out of the test output.
const EXPECTED_PANIC: &str = "bad-input test panic:";

fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if !message.starts_with(EXPECTED_PANIC) {
                default(info);
            }
        }));
    });
}

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    /// What the handler does with it: `ok`, `reject` or `panic`.
    #[serde(default)]
    outcome: String,
}

fn retarget(handler: Vec<Handler>, topic: &str, group: &str) -> Handler {
    let handler = handler.into_iter().next().expect("one handler");
    handler.with_topics([topic]).with_group(group)
}

/// The (partition, offset) a dead-letter copy names.
fn original_position(copy: &OwnedMessage) -> (i32, i64) {
    let partition = header(copy, "dlq.original.partition")
        .expect("dlq.original.partition")
        .parse()
        .expect("a decimal partition");
    let offset = header(copy, "dlq.original.offset")
        .expect("dlq.original.offset")
        .parse()
        .expect("a decimal offset");
    (partition, offset)
}

/// Every header of `message`, in order.
fn all_headers(message: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

/// Every header of `message` as `key=value` text, for failure messages.
fn headers_text(message: &OwnedMessage) -> Vec<String> {
    all_headers(message)
        .into_iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={}", String::from_utf8_lossy(&value)),
            None => format!("{key} (null)"),
        })
        .collect()
}

/// The headers a dead-letter copy carries over from its record: all but the
/// trace headers and the `dlq.*` headers.
fn carried_headers(copy: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    all_headers(copy)
        .into_iter()
        .filter(|(key, _)| key != "traceparent" && key != "tracestate" && !key.starts_with("dlq."))
        .collect()
}

/// The trace id (32 hex digits) of a W3C `traceparent` value.
fn trace_id_of(traceparent: &str) -> &str {
    traceparent
        .split('-')
        .nth(1)
        .expect("a traceparent with a trace id")
}

/// Waits until a copy in `dlq` is acknowledged and `group` has committed
/// `topic`'s one partition up to `end`.
async fn wait_for_dead_letter(
    telemetry: &Telemetry,
    broker: &EmbeddedBroker,
    dlq: &str,
    group: &str,
    topic: &str,
    end: i64,
) {
    wait_for_acknowledged_copy(telemetry, dlq, WAIT).await;
    wait_for_commits(WAIT, broker, group, topic, &[end]).await;
}

/// The one attempt at a record on `topic`, which failed to deserialize:
/// a permanent failure, so never retried.
fn the_failed_decode(telemetry: &Telemetry, topic: &str) -> SpanData {
    let mut spans = telemetry.process_spans(topic);
    assert_eq!(spans.len(), 1, "one attempt, no retries: {spans:#?}");
    let span = spans.remove(0);
    assert_eq!(error_type(&span), Some("deserialization".into()));
    span
}

/// Asserts that `copy` is the dead-letter copy of the record at `position`,
/// with its `key` and `payload`, sent after one attempt because the record
/// did not deserialize; returns the error message it carries.
fn assert_undecodable_copy(
    copy: &OwnedMessage,
    position: (i32, i64),
    key: &[u8],
    payload: Option<&[u8]>,
) -> String {
    assert_eq!(original_position(copy), position);
    assert_eq!(copy.payload(), payload, "the payload is kept as it was");
    assert_eq!(copy.key(), Some(key));
    assert_headers(
        copy,
        &[("dlq.error.type", "deserialization"), ("dlq.attempts", "1")],
    );
    header(copy, "dlq.error.message").expect("dlq.error.message")
}

// ---------------------------------------------------------------------------
// 1. A mix of good and bad records: each handled or dead-lettered, once.

/// (partition, offset) of every call of `mixed`, and of those that passed.
static MIXED_CALLS: Mutex<Vec<(i32, i64)>> = Mutex::new(Vec::new());
static MIXED_HANDLED: Mutex<Vec<(i32, i64)>> = Mutex::new(Vec::new());

#[kafka_handler(topics = ["bad-input-mixed"], group = "bad-input-mixed")]
fn mixed(order: Json<Order>, meta: &RecordMeta) -> Result<(), HandlerError> {
    let position = (meta.partition(), meta.offset());
    MIXED_CALLS.lock().unwrap().push(position);
    match order.outcome.as_str() {
        "ok" => {
            MIXED_HANDLED.lock().unwrap().push(position);
            Ok(())
        }
        "reject" => Err(HandlerError::permanent(format!(
            "order {} breaks a business rule",
            order.id
        ))),
        "panic" => panic!("{EXPECTED_PANIC} order {}", order.id),
        other => panic!("unexpected outcome {other:?} in order {}", order.id),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fate {
    Ok,
    Reject,
    Panic,
    BadJson,
}

impl Fate {
    fn of(i: usize) -> Self {
        // 10 % rejected, 5 % panic, 5 % bad JSON. With `partition_of`, the
        // last record of every partition (996 to 999) is a bad one, so the
        // partition's end is committed only once its copy is acknowledged.
        match i % 20 {
            16 => Fate::Panic,
            17 => Fate::BadJson,
            18 | 19 => Fate::Reject,
            _ => Fate::Ok,
        }
    }

    /// `dlq.error.type` and `dlq.attempts` of its dead-letter copy (retries 1).
    fn dead_letter(self) -> Option<(&'static str, &'static str)> {
        match self {
            Fate::Ok => None,
            Fate::Reject => Some(("handler", "1")),
            Fate::Panic => Some(("panic", "2")),
            Fate::BadJson => Some(("deserialization", "1")),
        }
    }

    /// How many times the handler function itself runs for the record.
    fn calls(self) -> usize {
        match self {
            Fate::Ok | Fate::Reject => 1,
            Fate::Panic => 2,
            Fate::BadJson => 0,
        }
    }
}

/// Record i's partition: every partition gets records of every fate.
fn partition_of(i: usize, partitions: i32) -> i32 {
    ((i + i / 20) % partitions as usize) as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_handled_or_dead_lettered_exactly_once() {
    const RECORDS: usize = 1000;
    const PARTITIONS: i32 = 4;
    quiet_expected_panics();
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "mixed", PARTITIONS).await;
    let (dlq, _) = new_topic(&broker, "mixed-dlq", 2).await;

    let payloads: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| match Fate::of(i) {
            Fate::Ok => format!(r#"{{"id":{i},"outcome":"ok"}}"#).into_bytes(),
            Fate::Reject => format!(r#"{{"id":{i},"outcome":"reject"}}"#).into_bytes(),
            Fate::Panic => format!(r#"{{"id":{i},"outcome":"panic"}}"#).into_bytes(),
            Fate::BadJson => format!("not json at all {i} {{").into_bytes(),
        })
        .collect();
    let positions = futures_util::future::join_all(payloads.iter().enumerate().map(|(i, p)| {
        send(
            &broker,
            TestRecord::new(&topic, p).partition(partition_of(i, PARTITIONS)),
        )
    }))
    .await;
    let records: HashMap<(i32, i64), usize> = positions
        .iter()
        .enumerate()
        .map(|(i, &position)| (position, i))
        .collect();
    assert_eq!(records.len(), RECORDS);
    let mut ends = vec![0; PARTITIONS as usize];
    for &(partition, offset) in records.keys() {
        let end = &mut ends[partition as usize];
        *end = (*end).max(offset + 1);
    }
    assert_eq!(ends, [250; PARTITIONS as usize], "an even spread");
    for (partition, &end) in ends.iter().enumerate() {
        let last = records[&(partition as i32, end - 1)];
        assert_ne!(
            Fate::of(last),
            Fate::Ok,
            "partition {partition} ends on a bad record"
        );
    }

    let handler = dead_lettering(retarget(handlers![mixed], &topic, &group), 1, &dlq);
    // All committed means all resolved: handled, or the copy acknowledged.
    let resolved = wait_for_commits(Duration::from_secs(180), &broker, &group, &topic, &ends);
    run_until(&broker, vec![handler], resolved).await;
    assert_eq!(
        committed(&broker, &group, &topic, PARTITIONS).await,
        ends.iter().copied().map(Some).collect::<Vec<_>>(),
        "after a clean shutdown the group's offsets are the partitions' ends"
    );

    // Handled: exactly the good records, each once.
    let handled = MIXED_HANDLED.lock().unwrap().clone();
    let handled_set: HashSet<(i32, i64)> = handled.iter().copied().collect();
    assert_eq!(handled.len(), handled_set.len(), "a record handled twice");
    let good: HashSet<(i32, i64)> = records
        .iter()
        .filter(|(_, &i)| Fate::of(i) == Fate::Ok)
        .map(|(&position, _)| position)
        .collect();
    assert_eq!(good.len(), 800);
    let mut lost: Vec<_> = good.difference(&handled_set).collect();
    lost.sort_unstable();
    assert!(lost.is_empty(), "good records not handled: {lost:?}");
    let mut wrongly: Vec<_> = handled_set.difference(&good).collect();
    wrongly.sort_unstable();
    assert!(wrongly.is_empty(), "bad records handled: {wrongly:?}");

    // Dead-lettered: exactly the bad ones, each once, with its cause.
    let copies = read_all(&broker, &dlq).await;
    let mut dead: HashMap<(i32, i64), &OwnedMessage> = HashMap::new();
    let mut fates: HashMap<Fate, usize> = HashMap::new();
    for copy in &copies {
        let position = original_position(copy);
        assert!(
            dead.insert(position, copy).is_none(),
            "record {position:?} dead-lettered twice"
        );
        let i = *records
            .get(&position)
            .unwrap_or_else(|| panic!("a copy of an unknown record {position:?}"));
        let fate = Fate::of(i);
        let (error_type, attempts) = fate
            .dead_letter()
            .unwrap_or_else(|| panic!("record {i} ({position:?}) was good but dead-lettered"));
        assert!(
            !handled_set.contains(&position),
            "record {i} both handled and dead-lettered"
        );
        assert_eq!(header(copy, "dlq.original.topic"), Some(topic.clone()));
        assert_eq!(
            header(copy, "dlq.error.type").as_deref(),
            Some(error_type),
            "record {i} ({fate:?})"
        );
        assert_eq!(
            header(copy, "dlq.attempts").as_deref(),
            Some(attempts),
            "record {i} ({fate:?})"
        );
        assert_eq!(header(copy, "dlq.group"), Some(group.clone()));
        assert_eq!(
            copy.payload(),
            Some(&payloads[i][..]),
            "record {i}: payload kept"
        );
        assert_eq!(header_values(copy, "traceparent").len(), 1);
        let message = header(copy, "dlq.error.message").unwrap_or_default();
        match fate {
            Fate::Reject => assert_eq!(message, format!("order {i} breaks a business rule")),
            Fate::Panic => assert_eq!(message, format!("{EXPECTED_PANIC} order {i}")),
            Fate::BadJson => assert!(message.contains("expected"), "record {i}: {message}"),
            Fate::Ok => unreachable!(),
        }
        *fates.entry(fate).or_default() += 1;
    }
    assert_eq!(fates.get(&Fate::Reject), Some(&100), "{fates:?}");
    assert_eq!(fates.get(&Fate::Panic), Some(&50), "{fates:?}");
    assert_eq!(fates.get(&Fate::BadJson), Some(&50), "{fates:?}");
    assert_eq!(copies.len(), 200, "one copy per bad record, no more");
    assert_eq!(
        handled_set.len() + dead.len(),
        RECORDS,
        "every record handled or dead-lettered"
    );

    // Attempts: the handler ran once per good or rejected record, twice per
    // panicking one (retries 1), never for bad JSON (permanent).
    let mut calls: HashMap<(i32, i64), usize> = HashMap::new();
    for position in MIXED_CALLS.lock().unwrap().iter() {
        *calls.entry(*position).or_default() += 1;
    }
    for (&position, &i) in &records {
        let fate = Fate::of(i);
        assert_eq!(
            calls.get(&position).copied().unwrap_or_default(),
            fate.calls(),
            "handler calls for record {i} ({fate:?}) at {position:?}"
        );
    }
    // One process span per attempt, each failure with its class.
    let mut spans_by_type: HashMap<Option<String>, usize> = HashMap::new();
    for span in telemetry.spans_named(&format!("process {topic}")) {
        *spans_by_type
            .entry(error_type(&span).map(|v| v.to_string()))
            .or_default() += 1;
    }
    let expected: HashMap<Option<String>, usize> = [
        (None, 800),
        (Some("handler".to_owned()), 100),
        (Some("panic".to_owned()), 100),
        (Some("deserialization".to_owned()), 50),
    ]
    .into_iter()
    .collect();
    assert_eq!(spans_by_type, expected);
}

// ---------------------------------------------------------------------------
// 2. Invalid JSON alone.

static STRICT_CALLS: AtomicU32 = AtomicU32::new(0);

#[kafka_handler(topics = ["bad-input-strict"], group = "bad-input-strict")]
fn strict(_order: Json<Order>) {
    STRICT_CALLS.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_is_dead_lettered_at_once_with_serdes_message() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "invalid-json", 1).await;
    let payload = br#"{"id": oops}"#;
    let (producer, record) = traced(TestRecord::new(&topic, payload).key(b"order-1"));
    let (partition, offset) = send(&broker, record).await;

    // Retries would be allowed: a decoding failure must skip them.
    let handler = dead_lettering(retarget(handlers![strict], &topic, &group), 3, &dlq);
    let copied = wait_for_dead_letter(telemetry, &broker, &dlq, &group, &topic, offset + 1);
    run_until(&broker, vec![handler], copied).await;

    assert_eq!(
        STRICT_CALLS.load(Ordering::SeqCst),
        0,
        "the handler never sees a payload it cannot decode"
    );
    let span = the_failed_decode(telemetry, &topic);
    assert!(is_error(&span), "{span:#?}");
    assert_eq!(span.span_context.trace_id(), producer.trace_id());
    let exception = span
        .events
        .iter()
        .find(|event| event.name == "exception")
        .expect("an exception event");
    let exception_message = exception
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .map(|kv| kv.value.to_string())
        .unwrap_or_default();
    assert!(
        exception_message.contains("expected value at line 1 column"),
        "{exception_message}"
    );

    let copy = only_copy(&broker, &dlq).await;
    let message = assert_undecodable_copy(&copy, (partition, offset), b"order-1", Some(payload));
    assert!(
        message.contains("expected value at line 1 column"),
        "serde's message: {message}"
    );
    assert_eq!(message, exception_message, "the span and the copy agree");
}

// ---------------------------------------------------------------------------
// 3. Tombstones.

static TOMBSTONE_CALLS: AtomicU32 = AtomicU32::new(0);

#[kafka_handler(topics = ["bad-input-tombstone"], group = "bad-input-tombstone")]
fn needs_a_body(_order: Json<Order>) {
    TOMBSTONE_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// The ids `maybe` received, `None` for a tombstone.
static MAYBE_SEEN: Mutex<Vec<Option<u64>>> = Mutex::new(Vec::new());

#[kafka_handler(topics = ["bad-input-maybe"], group = "bad-input-maybe")]
fn maybe(order: Option<Json<Order>>) {
    MAYBE_SEEN.lock().unwrap().push(order.map(|o| o.id));
}

fn tombstone(topic: &str) -> TestRecord<'_> {
    TestRecord {
        topic,
        key: Some(b"order-9"),
        payload: None,
        ..TestRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_fails_a_json_handler_as_deserialization() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "tombstone", 1).await;
    let (partition, offset) = send(&broker, tombstone(&topic)).await;

    let handler = dead_lettering(retarget(handlers![needs_a_body], &topic, &group), 2, &dlq);
    let copied = wait_for_dead_letter(telemetry, &broker, &dlq, &group, &topic, offset + 1);
    run_until(&broker, vec![handler], copied).await;

    assert_eq!(TOMBSTONE_CALLS.load(Ordering::SeqCst), 0);
    let span = the_failed_decode(telemetry, &topic);
    assert_eq!(
        attribute(&span, "messaging.kafka.message.tombstone"),
        Some(Value::Bool(true))
    );

    let copy = only_copy(&broker, &dlq).await;
    // The copy is a tombstone too.
    let message = assert_undecodable_copy(&copy, (partition, offset), b"order-9", None);
    assert!(message.contains("tombstone"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_json_handler_receives_a_tombstone_as_none() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "maybe", 1).await;
    send(&broker, tombstone(&topic)).await;
    let (_, last) = send(&broker, TestRecord::new(&topic, br#"{"id":2}"#)).await;

    // A dead-letter topic, so that a failed tombstone would not hold up the
    // record behind it.
    let handler = dead_lettering(retarget(handlers![maybe], &topic, &group), 0, &dlq);
    let end = [last + 1];
    let handled = wait_for_commits(WAIT, &broker, &group, &topic, &end);
    run_until(&broker, vec![handler], handled).await;

    assert_eq!(*MAYBE_SEEN.lock().unwrap(), [None, Some(2)]);
    assert!(
        read_all(&broker, &dlq).await.is_empty(),
        "nothing dead-lettered"
    );
    let mut spans = telemetry.process_spans(&topic);
    spans.sort_by_key(|span| attribute(span, "messaging.kafka.offset").map(|v| v.to_string()));
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(error_type(span), None, "{span:#?}");
        assert_eq!(span.status, Status::Unset);
    }
    assert_eq!(
        attribute(&spans[0], "messaging.kafka.message.tombstone"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        attribute(&spans[1], "messaging.kafka.message.tombstone"),
        None
    );
}

/// Every payload extractor: without `Option` a tombstone is a permanent
/// deserialization failure naming the tombstone, with `Option` it is `None`.
#[tokio::test]
async fn every_payload_extractor_treats_a_tombstone_alike() {
    telemetry(Mode::OtelOnly);
    fn rejects(what: &str, extract: impl Fn(&Record<'_>) -> Result<(), HandlerError>) {
        let record = Record::new("t", 0, 0, None, None, None);
        match extract(&record) {
            Ok(()) => panic!("{what} accepted a tombstone"),
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::Deserialization, "{what}");
                assert!(error.is_permanent(), "{what}");
                assert!(error.message().contains("tombstone"), "{what}: {error}");
            }
        }
    }
    rejects("&[u8]", |r| <&[u8]>::from_record(r).map(drop));
    rejects("&str", |r| <&str>::from_record(r).map(drop));
    rejects("String", |r| String::from_record(r).map(drop));
    rejects("Json<Order>", |r| <Json<Order>>::from_record(r).map(drop));

    let record = Record::new("t", 0, 0, None, None, None);
    assert_eq!(<Option<&[u8]>>::from_record(&record).unwrap(), None);
    assert_eq!(<Option<&str>>::from_record(&record).unwrap(), None);
    assert_eq!(<Option<String>>::from_record(&record).unwrap(), None);
    assert!(<Option<Json<Order>>>::from_record(&record)
        .unwrap()
        .is_none());

    // Through a processor, as the consumer calls it.
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let handler = Handler::sync("tests::text", ["t"], "g", move |record: &Record<'_>| {
        let _text = <&str>::from_record(record)?;
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let error = Processor::new(handler).process(&record).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Deserialization);
    assert!(error.is_permanent());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// 4. A 1 MiB payload, 100 headers, repeated header keys.

const MIB: usize = 1_048_576;

/// What a handler saw: (offset, payload, headers).
type Seen = Vec<(i64, Vec<u8>, Vec<(String, Option<Vec<u8>>)>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_and_unusual_headers_survive_handling_and_dead_lettering() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "unusual", 1).await;
    let failing_group = unique_topic("unusual-failing-group");

    // A 1 MiB payload that is not all one byte.
    let big: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let (big_producer, big_record) = traced(TestRecord::new(&topic, &big));

    // 100 headers, no trace context.
    let names: Vec<String> = (0..100).map(|i| format!("h{i:03}")).collect();
    let mut many_record = TestRecord::new(&topic, b"many");
    for (i, name) in names.iter().enumerate() {
        many_record = many_record.header(name, format!("value-{i}"));
    }
    let many_expected: Vec<(String, Option<Vec<u8>>)> = many_record
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();

    // Repeated keys: two traceparents (the last decides), two tenants.
    let (first, first_headers) = traced_headers(&topic);
    let (last, last_headers) = traced_headers(&topic);
    let mut repeated_record = TestRecord::new(&topic, b"repeated");
    repeated_record.headers = first_headers;
    repeated_record = repeated_record.header("tenant", "acme");
    repeated_record.headers.extend(last_headers);
    repeated_record = repeated_record.header("tenant", "globex");
    let repeated_expected: Vec<(String, Option<Vec<u8>>)> = repeated_record
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();

    let (_, big_offset) = send(&broker, big_record).await;
    let (_, many_offset) = send(&broker, many_record).await;
    let (_, repeated_offset) = send(&broker, repeated_record).await;

    // One group handles them; another fails each permanently.
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let seen_by_handler = seen.clone();
    let handles = Handler::sync(
        "tests::handles",
        [&topic],
        &group,
        move |record: &Record<'_>| {
            let payload = <&[u8]>::from_record(record)?;
            let headers = record
                .headers()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
                .collect();
            seen_by_handler
                .lock()
                .unwrap()
                .push((record.offset(), payload.to_vec(), headers));
            Ok(())
        },
    );
    let rejects = Handler::sync(
        "tests::rejects",
        [&topic],
        &failing_group,
        |record: &Record<'_>| {
            Err(HandlerError::permanent(format!(
                "offset {} rejected",
                record.offset()
            )))
        },
    );
    let rejects = dead_lettering(rejects, 3, &dlq);
    let end = [repeated_offset + 1];
    let both_committed = async {
        wait_for_commits(WAIT, &broker, &group, &topic, &end).await;
        wait_for_commits(WAIT, &broker, &failing_group, &topic, &end).await;
    };
    run_until(&broker, vec![handles, rejects], both_committed).await;

    // Handled, whole.
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    seen.sort_by_key(|(offset, _, _)| *offset);
    let offsets: Vec<i64> = seen.iter().map(|(offset, _, _)| *offset).collect();
    assert_eq!(offsets, [big_offset, many_offset, repeated_offset]);
    assert_eq!(seen[0].1.len(), MIB);
    assert!(seen[0].1 == big, "the 1 MiB payload arrives intact");
    assert_eq!(seen[1].2, many_expected, "all 100 headers, in order");
    assert_eq!(seen[2].2, repeated_expected, "repeated keys, in order");

    // The handling group's spans: the last traceparent is the parent.
    let spans = telemetry.process_spans(&topic);
    let span_at = |group: &str, offset: i64| -> SpanData {
        let matching: Vec<&SpanData> = spans
            .iter()
            .filter(|span| {
                attribute(span, "messaging.consumer.group.name") == Some(group.to_owned().into())
                    && attribute(span, "messaging.kafka.offset") == Some(offset.into())
            })
            .collect();
        assert_eq!(matching.len(), 1, "one span for offset {offset} in {group}");
        matching[0].clone()
    };
    assert_child_of(&span_at(&group, big_offset), &big_producer, "1 MiB record");
    let repeated_span = span_at(&group, repeated_offset);
    assert_child_of(&repeated_span, &last, "the last traceparent decides");
    assert_ne!(repeated_span.span_context.trace_id(), first.trace_id());
    let many_span = span_at(&group, many_offset);
    assert_eq!(error_type(&many_span), None);
    for offset in [big_offset, many_offset, repeated_offset] {
        assert_eq!(
            error_type(&span_at(&failing_group, offset)),
            Some("handler".into()),
            "permanent: one attempt at offset {offset}"
        );
    }

    // Dead-lettered, whole.
    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 3, "one copy per record");
    let copy_of = |offset: i64| -> &OwnedMessage {
        copies
            .iter()
            .find(|copy| original_position(copy).1 == offset)
            .unwrap_or_else(|| panic!("no copy of offset {offset}"))
    };
    let big_copy = copy_of(big_offset);
    let many_copy = copy_of(many_offset);
    let repeated_copy = copy_of(repeated_offset);
    for copy in [big_copy, many_copy, repeated_copy] {
        assert_headers(
            copy,
            &[("dlq.error.type", "handler"), ("dlq.attempts", "1")],
        );
        assert_eq!(
            header_values(copy, "traceparent").len(),
            1,
            "exactly one traceparent: {:?}",
            headers_text(copy)
        );
    }
    assert_eq!(big_copy.payload().map(<[u8]>::len), Some(MIB));
    assert!(
        big_copy.payload() == Some(&big[..]),
        "the 1 MiB payload is copied intact"
    );
    let traceparent = |copy: &OwnedMessage| header(copy, "traceparent").unwrap();
    assert_eq!(
        trace_id_of(&traceparent(big_copy)),
        big_producer.trace_id().to_string(),
        "the copy stays in the producer's trace"
    );
    assert_eq!(
        carried_headers(many_copy),
        many_expected,
        "all 100 headers are copied, in order"
    );
    assert_eq!(many_copy.payload(), Some(&b"many"[..]));
    assert_eq!(
        header_values(repeated_copy, "tenant"),
        ["acme", "globex"],
        "both tenants, in order"
    );
    assert_eq!(
        carried_headers(repeated_copy),
        [
            ("tenant".to_owned(), Some(b"acme".to_vec())),
            ("tenant".to_owned(), Some(b"globex".to_vec())),
        ]
    );
    assert_eq!(
        trace_id_of(&traceparent(repeated_copy)),
        last.trace_id().to_string(),
        "the copy continues the trace of the last traceparent"
    );
    assert_ne!(
        header(repeated_copy, "traceparent"),
        repeated_expected
            .iter()
            .find(|(k, _)| k == "traceparent")
            .and_then(|(_, v)| v.clone())
            .map(|v| String::from_utf8(v).unwrap()),
        "the copy's traceparent is the send span's, not the original's"
    );
}

/// Regression: rdkafka panics on a header name that is not UTF-8 (its
/// `Headers::try_get` unwraps the name's conversion), and such names reach
/// the consumer as sent: Kafka's protocol carries header names as bytes, and
/// a Go or C producer can write any. The consumer read every record's
/// headers through rdkafka to extract its trace context, so one such record
/// took it down. Now the header is skipped: the record is handled, continues
/// its trace, and is dead-lettered with its other headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_skipped() {
    use kafka_handler::testing::with_raw_header;
    use rdkafka::message::OwnedHeaders;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;

    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "raw-names", 1).await;
    let failing_group = unique_topic("raw-names-failing-group");

    let (producer_span, trace_headers) = traced_headers(&topic);
    let mut headers = with_raw_header(OwnedHeaders::new(), b"trace\xffparent", Some(b"x"));
    for (name, value) in &trace_headers {
        headers = with_raw_header(headers, name.as_bytes(), value.as_deref());
    }
    headers = with_raw_header(headers, b"\xc3\x28", None);
    headers = with_raw_header(headers, b"tenant", Some(b"acme"));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .unwrap();
    let raw_offset = producer
        .send(
            FutureRecord::<(), [u8]>::to(&topic)
                .payload(b"raw")
                .headers(headers),
            WAIT,
        )
        .await
        .expect("the broker accepts the record")
        .offset;
    let (_, next_offset) = send(&broker, TestRecord::new(&topic, b"next")).await;

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let seen_by_handler = seen.clone();
    let handles = Handler::sync("tests::handles", [&topic], &group, move |record| {
        let headers = record
            .headers()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
            .collect();
        let payload = <&[u8]>::from_record(record)?.to_vec();
        seen_by_handler
            .lock()
            .unwrap()
            .push((record.offset(), payload, headers));
        Ok(())
    });
    let rejects = Handler::sync(
        "tests::rejects",
        [&topic],
        &failing_group,
        |_: &Record<'_>| Err(HandlerError::permanent("rejected")),
    );
    let rejects = dead_lettering(rejects, 0, &dlq);
    let end = [next_offset + 1];
    let both_committed = async {
        wait_for_commits(WAIT, &broker, &group, &topic, &end).await;
        wait_for_commits(WAIT, &broker, &failing_group, &topic, &end).await;
    };
    run_until(&broker, vec![handles, rejects], both_committed).await;

    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    seen.sort_by_key(|(offset, _, _)| *offset);
    let offsets: Vec<i64> = seen.iter().map(|(offset, _, _)| *offset).collect();
    assert_eq!(offsets, [raw_offset, next_offset]);
    let names: Vec<&str> = seen[0].2.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["traceparent", "tenant"],
        "the UTF-8 names, in order"
    );

    let spans = telemetry.process_spans(&topic);
    let raw_span = spans
        .iter()
        .find(|span| {
            attribute(span, "messaging.consumer.group.name") == Some(group.clone().into())
                && attribute(span, "messaging.kafka.offset") == Some(raw_offset.into())
        })
        .expect("the record's span");
    assert_child_of(raw_span, &producer_span, "the record continues its trace");

    let copies = read_all(&broker, &dlq).await;
    assert_eq!(copies.len(), 2, "one copy per record");
    let copy = copies
        .iter()
        .find(|copy| original_position(copy).1 == raw_offset)
        .expect("a copy of the record");
    assert_eq!(
        carried_headers(copy),
        [("tenant".to_owned(), Some(b"acme".to_vec()))]
    );
    assert_eq!(copy.payload(), Some(&b"raw"[..]));
}
