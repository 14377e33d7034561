//! `#[kafka_handler(publish = "..")]`: what a handler returns is produced
//! under a `send` span that is a child of the record's `process` span, in
//! every output form, and the input record's offset is committed only after
//! the broker acknowledged its outputs.
//!
//! Each test runs its handlers in a `TestApp` (a broker of its own: the
//! `publish` topic is part of the generated code).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kafka_handler::testing::TestApp;
use kafka_handler::{handlers, kafka_handler, Error, HandlerError, Json, Output, TracedProducer};
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry::Context;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_returned_value_is_sent_in_the_records_trace_under_its_key() -> Result<(), Error> {
    let app = TestApp::start(handlers![bill]).await?;
    let offset = app
        .send_keyed("orders", Some(b"order-7"), json!({"id": 7, "cents": 250}))
        .await?;
    let outcome = app.outcome_of("orders", offset).await?;
    assert!(outcome.is_handled(), "{outcome}");
    let invoice = app.next_record("invoices").await?;
    assert_eq!(invoice.payload(), Some(&br#"{"order":7,"cents":250}"#[..]));
    assert_eq!(invoice.key(), Some(&b"order-7"[..]), "the input's key");
    assert_eq!(
        outcome.outputs(),
        [kafka_handler::testing::Sent {
            topic: "invoices".into(),
            offset: invoice.offset()
        }]
    );

    let trace = app.trace_of(&outcome);
    trace.assert_parent_of("send invoices");
    let send_span = trace.span("send invoices");
    let process = trace.span("process orders");
    assert_eq!(send_span.span_kind, SpanKind::Producer);
    assert!(
        send_span.end_time <= process.end_time,
        "the record ended after its output was acknowledged"
    );
    assert_eq!(
        header_values(&invoice, "traceparent"),
        [format!(
            "00-{}-{}-01",
            outcome.trace_id(),
            send_span.span_context.span_id()
        )],
        "exactly one traceparent: the invoice continues the order's trace from its send span"
    );
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_options_keys_and_headers() -> Result<(), Error> {
    let app = TestApp::start(handlers![split, alarm]).await?;
    for line in ["red green", "", "blue"] {
        let offset = app.send_keyed("lines", Some(b"line"), line).await?;
        assert!(app.outcome_of("lines", offset).await?.is_handled());
    }
    for reading in ["cold", "hot", "mild"] {
        let offset = app.send_keyed("readings", Some(b"sensor"), reading).await?;
        assert!(app.outcome_of("readings", offset).await?.is_handled());
    }
    let mut words = Vec::new();
    for _ in 0..3 {
        let m = app.next_record("words").await?;
        words.push((
            String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
            String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
            header_values(&m, "source"),
        ));
    }
    assert_eq!(
        words,
        [
            ("red".into(), "RED".into(), vec!["split".into()]),
            ("green".into(), "GREEN".into(), vec!["split".into()]),
            ("blue".into(), "BLUE".into(), vec!["split".into()]),
        ],
        "one output per word, in order, each with its key and header"
    );
    let alarm = app.next_record("alarms").await?;
    assert_eq!(alarm.payload(), Some(&b"too hot"[..]));
    assert_eq!(alarm.key(), None, "without a key");
    assert!(
        alarm.headers().is_some_and(|h| h.count() == 1),
        "the trace header only"
    );
    app.stop().await?;
    Ok(())
}

/// The values of every header named `name`, as text.
fn header_values(message: &OwnedMessage, name: &str) -> Vec<String> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter(|h| h.key == name)
                .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The end (high watermark) of partition 0 of `topic`.
fn end_offset(app: &TestApp, topic: &str) -> i64 {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", app.broker().bootstrap_servers())
        .create()
        .expect("a watermark reader");
    reader
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks")
        .1
}

/// What `group` has committed on partition 0 of `topic`.
fn committed(app: &TestApp, group: &str, topic: &str) -> Option<i64> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", app.broker().bootstrap_servers())
        .set("group.id", group)
        .create()
        .expect("an offset reader");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    match committed.elements()[0].offset() {
        rdkafka::Offset::Offset(offset) => Some(offset),
        _ => None,
    }
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
async fn a_refused_output_holds_the_inputs_commit_until_it_is_acknowledged() -> Result<(), Error> {
    let app = TestApp::start_with(handlers![book, ping], |builder, broker| {
        // Deliveries that fail fast, and the topic's metadata read again
        // soon after the broker lets it be written.
        builder.producer(
            TracedProducer::from_config(
                ClientConfig::new()
                    .set("bootstrap.servers", broker.bootstrap_servers())
                    .set("message.timeout.ms", "2000")
                    .set("topic.metadata.refresh.interval.ms", "200"),
            )
            .unwrap(),
        )
    })
    .await?;
    // The broker refuses the output topic, as it does a principal without
    // write access.
    app.broker().topic_error(
        "ledger",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    )?;
    let payment = app.send_keyed("payments", Some(b"acct-1"), "p-1").await?;
    app.wait_until("two attempts at the payment", || {
        BOOKED.load(Ordering::SeqCst) >= 2
    })
    .await?;
    // A record of the same group, handled and committed after the payment
    // failed: commits flow, and the payment's is held.
    let pinged = app.send("pings", "ping").await?;
    app.outcome_of("pings", pinged).await?;
    app.wait_until("the ping committed", || {
        committed(&app, "ledger", "pings") == Some(1)
    })
    .await?;
    assert_eq!(
        committed(&app, "ledger", "payments"),
        None,
        "the payment is not committed while its output is refused"
    );

    app.broker()
        .topic_error("ledger", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)?;
    let outcome = app.outcome_of("payments", payment).await?;
    assert!(outcome.is_handled(), "{outcome}");
    assert!(outcome.attempts() >= 2, "{outcome}");
    assert_eq!(
        outcome.error_type().as_deref(),
        Some("publish"),
        "{outcome}"
    );
    app.wait_until("the payment committed", || {
        committed(&app, "ledger", "payments") == Some(1)
    })
    .await?;
    let booked = app.next_record("ledger").await?;
    assert_eq!(booked.payload(), Some(&b"booked p-1"[..]));
    assert_eq!(booked.key(), Some(&b"acct-1"[..]));
    assert_eq!(
        outcome.outputs().len(),
        1,
        "exactly the one output: refused sends wrote nothing"
    );
    assert_eq!(
        end_offset(&app, "ledger"),
        1,
        "and nothing else in the ledger"
    );
    app.stop().await
}

/// Returns a value JSON cannot encode (a map with non-string keys).
#[kafka_handler(topics = ["shapes"], group = "shapes", publish = "areas",
                retries = 3, backoff = "10ms", dlq = "shapes.dlq")]
fn area(_shape: &[u8]) -> Json<std::collections::HashMap<(u8, u8), u8>> {
    Json([((1, 2), 3)].into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_cannot_be_encoded_is_dead_lettered_at_once() -> Result<(), Error> {
    let app = TestApp::start(handlers![area]).await?;
    let offset = app.send("shapes", "square").await?;
    let outcome = app.outcome_of("shapes", offset).await?;
    assert!(outcome.is_dead_lettered(), "{outcome}");
    assert_eq!(outcome.attempts(), 1, "permanent: not retried");
    assert_eq!(outcome.error_type().as_deref(), Some("publish"));
    assert!(outcome.outputs().is_empty());
    assert_eq!(
        app.next_record("shapes.dlq").await?.payload(),
        Some(&b"square"[..])
    );
    app.stop().await
}

/// The context inside a publishing handler is the record's, as in any
/// other handler.
#[kafka_handler(topics = ["echo-in"], group = "echo", publish = "echo-out")]
async fn echo(payload: &[u8]) -> Vec<u8> {
    assert!(Context::current().span().span_context().is_valid());
    payload.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_published_as_they_are() -> Result<(), Error> {
    let app = TestApp::start(handlers![echo]).await?;
    let offset = app.send("echo-in", &[0u8, 159, 146, 150][..]).await?;
    assert!(app.outcome_of("echo-in", offset).await?.is_handled());
    let out = app.next_record("echo-out").await?;
    assert_eq!(out.payload(), Some(&[0, 159, 146, 150][..]));
    assert_eq!(out.key(), None, "the input had no key");
    app.stop().await
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
async fn a_batch_publishes_each_records_outputs_in_that_records_trace() -> Result<(), Error> {
    let app = TestApp::start(handlers![pack]).await?;
    let mut sent = Vec::new();
    for name in ["apple", "fragile", "pear"] {
        sent.push((
            name,
            app.send_keyed("packing", Some(name.as_bytes()), name)
                .await?,
        ));
    }
    for (name, offset) in sent {
        let outcome = app.outcome_of("packing", offset).await?;
        assert!(outcome.is_handled(), "{outcome}");
        let expected_attempts = if name == "fragile" { 2 } else { 1 };
        assert_eq!(outcome.attempts(), expected_attempts, "{outcome}");
        let outputs = outcome.outputs();
        assert_eq!(
            outputs.len(),
            1,
            "{name}: one parcel, the failed attempt published nothing"
        );
        // Its own trace: the send is a child of this record's process span.
        app.trace_of(&outcome).assert_parent_of("send parcels");
    }
    let mut parcels = Vec::new();
    for _ in 0..3 {
        let parcel = app.next_record("parcels").await?;
        parcels.push(String::from_utf8(parcel.payload().unwrap().to_vec()).unwrap());
    }
    parcels.sort();
    assert_eq!(
        parcels,
        ["parcel for apple", "parcel for fragile", "parcel for pear"]
    );
    assert_eq!(end_offset(&app, "parcels"), 3, "no other parcel");
    app.stop().await
}
