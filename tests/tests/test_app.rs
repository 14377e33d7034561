//! `TestApp`, the harness users test their handlers with: outcomes,
//! outputs and traces of records, read from the spans, with bounded waits.

use std::sync::atomic::{AtomicUsize, Ordering};

use kafka_handler::testing::TestApp;
use kafka_handler::{handlers, kafka_handler, HandlerError, Json};
use rdkafka::Message as _;
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

static FLAKY: AtomicUsize = AtomicUsize::new(0);

/// Bills orders; an order of nothing is refused for good, order 13 fails
/// its first attempt.
#[kafka_handler(topics = ["orders"], group = "billing", publish = "invoices",
                retries = 2, backoff = "10ms", dlq = "orders.dlq")]
async fn bill(order: Json<Order>) -> Result<Json<Invoice>, HandlerError> {
    if order.cents == 0 {
        return Err(HandlerError::permanent("an order of nothing"));
    }
    if order.id == 13 && FLAKY.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(HandlerError::transient("gateway busy"));
    }
    tracing::info_span!("charge card").in_scope(|| ());
    Ok(Json(Invoice {
        order: order.id,
        cents: order.cents,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_outputs_and_traces() -> Result<(), kafka_handler::Error> {
    let app = TestApp::start(handlers![bill]).await?;

    let paid = app.send("orders", json!({"id": 1, "cents": 250})).await?;
    let outcome = app.outcome_of("orders", paid).await?;
    assert!(outcome.is_handled(), "{outcome}");
    assert_eq!(outcome.attempts(), 1);
    assert_eq!(outcome.error_type(), None);
    let invoice = app.next_record("invoices").await?;
    assert_eq!(invoice.payload(), Some(&br#"{"order":1,"cents":250}"#[..]));
    assert_eq!(outcome.outputs().len(), 1);
    assert_eq!(outcome.outputs()[0].topic, "invoices");
    assert_eq!(outcome.outputs()[0].offset, invoice.offset());
    let trace = app.trace_of(&outcome);
    trace.assert_parent_of("send invoices");
    assert_eq!(
        trace.span("send orders").span_context.trace_id(),
        outcome.trace_id()
    );

    let flaky = app.send("orders", json!({"id": 13, "cents": 99})).await?;
    let outcome = app.outcome_of("orders", flaky).await?;
    assert!(outcome.is_handled(), "{outcome}");
    assert_eq!(outcome.attempts(), 2, "{outcome}");
    assert_eq!(outcome.error_type().as_deref(), Some("handler"));
    assert_eq!(outcome.error_message().as_deref(), Some("gateway busy"));

    let nothing = app.send("orders", json!({"id": 2, "cents": 0})).await?;
    let outcome = app.outcome_of("orders", nothing).await?;
    assert!(outcome.is_dead_lettered(), "{outcome}");
    assert!(!outcome.is_handled());
    assert_eq!(outcome.attempts(), 1, "permanent: not retried");
    assert!(outcome.outputs().is_empty());
    let copy = app.next_record("orders.dlq").await?;
    let copied: serde_json::Value = serde_json::from_slice(copy.payload().unwrap()).unwrap();
    assert_eq!(copied, json!({"id": 2, "cents": 0}), "the record as sent");
    app.trace_of(&outcome).assert_parent_of("send orders.dlq");

    let garbage = app.send("orders", "not json").await?;
    let outcome = app.outcome_of("orders", garbage).await?;
    assert!(outcome.is_dead_lettered());
    assert_eq!(outcome.error_type().as_deref(), Some("deserialization"));

    // The metrics of the app's consumer.
    let filter = [("messaging.destination.name", "orders")];
    assert_eq!(
        app.counter("messaging.client.consumed.messages", &filter),
        4
    );
    assert_eq!(
        app.counter("kafka_handler.retries", &filter),
        1,
        "order 13, once"
    );
    assert_eq!(
        app.counter("kafka_handler.dead_letter.messages", &filter),
        2
    );

    // The invoices in order: the second is the flaky order's.
    let second = app.next_record("invoices").await?;
    assert_eq!(second.payload(), Some(&br#"{"order":13,"cents":99}"#[..]));
    app.stop().await
}

/// Never succeeds, and has no dead-letter topic: its records are held.
#[kafka_handler(topics = ["stuck"], group = "stuck", retries = 0, backoff = "10ms")]
fn refuse(_payload: &[u8]) -> Result<(), HandlerError> {
    Err(HandlerError::transient("never"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_never_ends_fails_the_wait_with_what_was_seen() {
    let app = TestApp::start(handlers![refuse])
        .await
        .unwrap()
        .with_wait(std::time::Duration::from_secs(2));
    let offset = app.send("stuck", "x").await.unwrap();
    let error = app
        .outcome_of("stuck", offset)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "the record at offset 0 of `stuck` did not end within 2s: stuck@0: failing after"
        ),
        "{error}"
    );
    assert!(error.contains("last error (handler): never"), "{error}");
    let error = app.next_record("nowhere").await.unwrap_err().to_string();
    assert!(error.contains("`nowhere`"), "{error}");
    let error = app
        .outcome_of("elsewhere", 0)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(error, "no handler of this app consumes `elsewhere`");
}

/// Two apps in one process, each with a record at the same offset of a
/// topic of the same name: each sees its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_side_by_side_keep_their_records_apart() -> Result<(), kafka_handler::Error> {
    // Not `orders`: the other tests of this binary count its metrics.
    let elsewhere = || -> Vec<kafka_handler::Handler> {
        handlers![bill]
            .into_iter()
            .map(|h| h.with_topics(["orders-elsewhere"]))
            .collect()
    };
    let first = TestApp::start(elsewhere()).await?;
    let second = TestApp::start(elsewhere()).await?;
    let paid = first
        .send("orders-elsewhere", json!({"id": 3, "cents": 1}))
        .await?;
    let refused = second
        .send("orders-elsewhere", json!({"id": 4, "cents": 0}))
        .await?;
    assert_eq!(paid, refused, "the same offset");
    let outcome = first.outcome_of("orders-elsewhere", paid).await?;
    assert!(outcome.is_handled(), "{outcome}");
    let outcome = second.outcome_of("orders-elsewhere", refused).await?;
    assert!(outcome.is_dead_lettered(), "{outcome}");
    first.stop().await?;
    second.stop().await
}
