//! `#[kafka_handler(publish = "..")]`: what a handler returns is produced
//! under a `send` span that is a child of the record's `process` span, in
//! every output form, and the input record's offset is committed only after
//! the broker acknowledged its outputs.
//!
//! The `publish` topic is part of the generated code, so every test runs a
//! broker of its own and uses the topic names the handlers were written
//! with.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    committed, error_type, header_values, read_all, send, start_consumer, start_consumer_with,
    stop_consumer, telemetry, traced, wait_for_commits, wait_until, Mode,
};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{handlers, kafka_handler, HandlerError, Json, Output, TracedProducer};
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry::Context;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct Order {
    id: u64,
    cents: u64,
}

#[derive(Serialize)]
struct Invoice {
    order: u64,
    cents: u64,
}

/// Bills an order by returning its invoice.
#[kafka_handler(topics = ["orders"], group = "billing", publish = "invoices")]
async fn bill(order: Json<Order>) -> Result<Json<Invoice>, HandlerError> {
    if order.cents == 0 {
        return Err(HandlerError::permanent("an order of nothing"));
    }
    Ok(Json(Invoice {
        order: order.id,
        cents: order.cents,
    }))
}

/// A plain `fn` returning zero or more outputs, each with its own key and
/// a header.
#[kafka_handler(topics = ["lines"], group = "splitter", publish = "words")]
fn split(line: &str) -> Vec<Output<String>> {
    line.split_whitespace()
        .map(|word| {
            Output::new(word.to_uppercase())
                .key(word)
                .header("source", "split")
        })
        .collect()
}

/// Zero or one output, without a key.
#[kafka_handler(topics = ["readings"], group = "alarms", publish = "alarms")]
fn alarm(reading: &str) -> Option<Output<&'static str>> {
    (reading == "hot").then(|| Output::new("too hot").without_key())
}

async fn create(broker: &EmbeddedBroker, topics: &[&str]) {
    for topic in topics {
        broker.create_topic(topic, 1).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_returned_value_is_sent_in_the_records_trace_under_its_key() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    create(&broker, &["orders", "invoices"]).await;
    let (origin, record) =
        traced(TestRecord::new("orders", br#"{"id":7,"cents":250}"#).key(b"order-7"));
    send(&broker, record).await;

    let (shutdown, running) = start_consumer(&broker, handlers![bill]);
    // Committed only once the invoice was acknowledged: then it is there.
    wait_for_commits(WAIT, &broker, "billing", "orders", &[1]).await;
    let invoices = read_all(&broker, "invoices").await;
    stop_consumer(shutdown, running).await;

    assert_eq!(invoices.len(), 1, "one invoice");
    let invoice = &invoices[0];
    assert_eq!(invoice.payload(), Some(&br#"{"order":7,"cents":250}"#[..]));
    assert_eq!(invoice.key(), Some(&b"order-7"[..]), "the input's key");
    let traceparents = header_values(invoice, "traceparent");
    assert_eq!(traceparents.len(), 1, "exactly one traceparent");

    let spans = telemetry.spans_named("send invoices");
    let send_span = spans
        .iter()
        .find(|s| s.span_context.trace_id() == origin.trace_id())
        .expect("a send span in the order's trace");
    let process = telemetry
        .process_spans("orders")
        .into_iter()
        .find(|s| s.span_context.trace_id() == origin.trace_id())
        .expect("the order's process span");
    assert_eq!(send_span.span_kind, SpanKind::Producer);
    assert_eq!(
        send_span.parent_span_id,
        process.span_context.span_id(),
        "send is a child of process"
    );
    assert!(
        send_span.end_time <= process.end_time,
        "the record ended after its output was acknowledged"
    );
    assert_eq!(
        traceparents[0],
        format!(
            "00-{}-{}-01",
            origin.trace_id(),
            send_span.span_context.span_id()
        ),
        "the invoice continues the order's trace from its send span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_options_keys_and_headers() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    create(&broker, &["lines", "words", "readings", "alarms"]).await;
    for line in ["red green", "", "blue"] {
        send(
            &broker,
            TestRecord::new("lines", line.as_bytes()).key(b"line"),
        )
        .await;
    }
    for reading in ["cold", "hot", "mild"] {
        send(
            &broker,
            TestRecord::new("readings", reading.as_bytes()).key(b"sensor"),
        )
        .await;
    }

    let (shutdown, running) = start_consumer(&broker, handlers![split, alarm]);
    // Every input committed, the empty line and the quiet readings too, and
    // only after their outputs were acknowledged.
    wait_for_commits(WAIT, &broker, "splitter", "lines", &[3]).await;
    wait_for_commits(WAIT, &broker, "alarms", "readings", &[3]).await;
    let words = read_all(&broker, "words").await;
    let alarms = read_all(&broker, "alarms").await;
    stop_consumer(shutdown, running).await;

    let words: Vec<(String, String, Vec<String>)> = words
        .iter()
        .map(|m| {
            (
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
                header_values(m, "source"),
            )
        })
        .collect();
    assert_eq!(
        words,
        [
            ("red".into(), "RED".into(), vec!["split".into()]),
            ("green".into(), "GREEN".into(), vec!["split".into()]),
            ("blue".into(), "BLUE".into(), vec!["split".into()]),
        ],
        "one output per word, in order, each with its key and header"
    );
    assert_eq!(alarms.len(), 1, "one alarm, for the hot reading");
    assert_eq!(alarms[0].payload(), Some(&b"too hot"[..]));
    assert_eq!(alarms[0].key(), None, "without a key");
    assert!(
        alarms[0].headers().is_some_and(|h| h.count() == 1),
        "the trace header only"
    );
}

/// Attempts of `book`.
static BOOKED: AtomicUsize = AtomicUsize::new(0);

/// Books a payment into the ledger: its output is what it returns.
#[kafka_handler(topics = ["payments"], group = "ledger", publish = "ledger",
                retries = 1000, backoff = "20ms..100ms")]
async fn book(payment: &str) -> String {
    BOOKED.fetch_add(1, Ordering::SeqCst);
    format!("booked {payment}")
}

/// A handler of the same group that publishes nothing: its commits show
/// that the group commits while `book` waits.
#[kafka_handler(topics = ["pings"], group = "ledger")]
fn ping(_payload: &[u8]) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_output_holds_the_inputs_commit_until_it_is_acknowledged() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    create(&broker, &["payments", "ledger", "pings"]).await;
    send(&broker, TestRecord::new("payments", b"p-1").key(b"acct-1")).await;
    // The broker refuses the output topic, as it does a principal without
    // write access.
    broker
        .topic_error(
            "ledger",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    let producer = TracedProducer::from_config(
        ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("message.timeout.ms", "2000")
            .set("topic.metadata.refresh.interval.ms", "200"),
    )
    .unwrap();
    let (shutdown, running) =
        start_consumer_with(&broker, handlers![book, ping], |b| b.producer(producer));
    wait_until(WAIT, "two attempts at the payment", || {
        BOOKED.load(Ordering::SeqCst) >= 2
    })
    .await;
    // A record of the same group, handled and committed after the payment
    // failed: commits flow, and the payment's is held.
    send(&broker, TestRecord::new("pings", b"ping")).await;
    wait_for_commits(WAIT, &broker, "ledger", "pings", &[1]).await;
    assert_eq!(
        committed(&broker, "ledger", "payments", 1).await,
        [None],
        "the payment is not committed while its output is refused"
    );
    assert!(read_all(&broker, "ledger").await.is_empty());

    broker
        .topic_error("ledger", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    wait_for_commits(WAIT, &broker, "ledger", "payments", &[1]).await;
    let ledger = read_all(&broker, "ledger").await;
    stop_consumer(shutdown, running).await;

    assert_eq!(
        ledger.len(),
        1,
        "exactly the one output: refused sends wrote nothing"
    );
    assert_eq!(ledger[0].payload(), Some(&b"booked p-1"[..]));
    assert_eq!(ledger[0].key(), Some(&b"acct-1"[..]));
    let failed: Vec<_> = telemetry
        .process_spans("payments")
        .into_iter()
        .filter(|s| error_type(s).is_some())
        .collect();
    assert!(!failed.is_empty(), "failed attempts are recorded");
    for span in failed {
        assert_eq!(
            error_type(&span).map(|v| v.to_string()),
            Some("publish".to_owned())
        );
    }
}

/// Returns a value JSON cannot encode (a map with non-string keys).
#[kafka_handler(topics = ["shapes"], group = "shapes", publish = "areas",
                retries = 3, backoff = "10ms", dlq = "shapes.dlq")]
fn area(_shape: &[u8]) -> Json<std::collections::HashMap<(u8, u8), u8>> {
    Json([((1, 2), 3)].into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_cannot_be_encoded_is_dead_lettered_at_once() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    create(&broker, &["shapes", "areas", "shapes.dlq"]).await;
    send(&broker, TestRecord::new("shapes", b"square")).await;
    let (shutdown, running) = start_consumer(&broker, handlers![area]);
    wait_for_commits(WAIT, &broker, "shapes", "shapes", &[1]).await;
    let copies = read_all(&broker, "shapes.dlq").await;
    stop_consumer(shutdown, running).await;

    assert_eq!(copies.len(), 1, "dead-lettered");
    assert!(read_all(&broker, "areas").await.is_empty());
    let attempts = telemetry.process_spans("shapes");
    assert_eq!(attempts.len(), 1, "permanent: not retried");
    assert_eq!(
        error_type(&attempts[0]).map(|v| v.to_string()),
        Some("publish".to_owned())
    );
}

/// The context inside a publishing handler is the record's, as in any
/// other handler.
#[kafka_handler(topics = ["echo-in"], group = "echo", publish = "echo-out")]
async fn echo(payload: &[u8]) -> Vec<u8> {
    assert!(Context::current().span().span_context().is_valid());
    payload.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_published_as_they_are() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    create(&broker, &["echo-in", "echo-out"]).await;
    send(&broker, TestRecord::new("echo-in", &[0, 159, 146, 150])).await;
    let (shutdown, running) = start_consumer(&broker, handlers![echo]);
    wait_for_commits(WAIT, &broker, "echo", "echo-in", &[1]).await;
    let out = read_all(&broker, "echo-out").await;
    stop_consumer(shutdown, running).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload(), Some(&[0, 159, 146, 150][..]));
    assert_eq!(out[0].key(), None, "the input had no key");
}

/// First attempts at the fragile order.
static FRAGILE: AtomicUsize = AtomicUsize::new(0);

/// Packs orders in batches, publishing one parcel per order in that order's
/// own scope; the fragile order fails its first attempt, alone.
#[kafka_handler(topics = ["packing"], group = "packing", publish = "parcels",
                batch(max_records = 10, max_wait = "20ms"), retries = 3, backoff = "10ms")]
async fn pack(orders: kafka_handler::Batch<'_, &str>) {
    for order in &orders {
        order
            .publish(|name| async move {
                if *name == "fragile" && FRAGILE.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(HandlerError::transient("dropped it"));
                }
                Ok(Output::new(format!("parcel for {name}")))
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_publishes_each_records_outputs_in_that_records_trace() {
    let telemetry = telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    create(&broker, &["packing", "parcels"]).await;
    let mut origins = Vec::new();
    for name in ["apple", "fragile", "pear"] {
        let (origin, record) =
            traced(TestRecord::new("packing", name.as_bytes()).key(name.as_bytes()));
        send(&broker, record).await;
        origins.push((name, origin));
    }
    let (shutdown, running) = start_consumer(&broker, handlers![pack]);
    wait_for_commits(WAIT, &broker, "packing", "packing", &[3]).await;
    let parcels = read_all(&broker, "parcels").await;
    stop_consumer(shutdown, running).await;

    let mut payloads: Vec<&[u8]> = parcels.iter().map(|m| m.payload().unwrap()).collect();
    payloads.sort();
    assert_eq!(
        payloads,
        [
            &b"parcel for apple"[..],
            b"parcel for fragile",
            b"parcel for pear"
        ],
        "one parcel per order; the failed attempt published nothing"
    );
    assert!(
        FRAGILE.load(Ordering::SeqCst) >= 2,
        "the fragile order was retried"
    );
    let sends = telemetry.spans_named("send parcels");
    for (name, origin) in &origins {
        let parcel = parcels
            .iter()
            .find(|m| m.key() == Some(name.as_bytes()))
            .unwrap_or_else(|| panic!("the parcel of {name}"));
        let traceparent = &header_values(parcel, "traceparent")[0];
        assert!(
            traceparent.starts_with(&format!("00-{}-", origin.trace_id())),
            "the parcel of {name} continues {name}'s own trace: {traceparent}"
        );
        let send_span = sends
            .iter()
            .find(|s| s.span_context.trace_id() == origin.trace_id())
            .unwrap_or_else(|| panic!("a send span in {name}'s trace"));
        let process = telemetry.process_spans("packing").into_iter().find(|s| {
            s.span_context.span_id() == send_span.parent_span_id
                && s.span_context.trace_id() == origin.trace_id()
        });
        assert!(
            process.is_some(),
            "the send of {name}'s parcel is a child of {name}'s process span"
        );
    }
}
